//! The mail channel: a plain-text message to the human's configured address, through the
//! configured SMTP server (lettre: STARTTLS, implicit TLS, or plain for a local relay).
//!
//! The message says who asks (agent, client, the chain), for what (scopes, audience), the
//! client's binding message, when the request expires and where to decide. The client's words
//! stay in the body: CIBA already refuses a binding message with a control character, so it
//! cannot end a line, and no header carries anything a client chose (the subject names the
//! agent and scopes, which are configured or validated identifiers; lettre encodes headers).

use std::path::Path;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{ApprovalNeeded, read_secret, rfc3339, summary};
use crate::config::SmtpConfig;

/// Streams of this channel are `email:<username>`.
pub(super) const STREAM: &str = "email:";

pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
}

/// Why a mail was not sent: worth retrying (the server, the network) or not (the address).
pub(super) enum MailError {
    Transient(String),
    Permanent(String),
}

impl Mailer {
    /// `None` when no SMTP host is configured.
    pub(super) fn new(
        c: &SmtpConfig,
        base: &Path,
        timeout: Duration,
    ) -> Result<Option<Self>, String> {
        let (Some(host), Some(from)) = (&c.host, &c.from) else {
            return Ok(None);
        };
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("from {from:?} is not a mail address: {e}"))?;
        let builder = match c.security.as_str() {
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| format!("host {host:?}: {e}"))?,
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| format!("host {host:?}: {e}"))?,
            _ => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str()),
        };
        let mut builder = builder.port(c.port).timeout(Some(timeout));
        if let (Some(user), Some(file)) = (&c.username, &c.password_file) {
            builder = builder.credentials(Credentials::new(user.clone(), read_secret(base, file)?));
        }
        Ok(Some(Self {
            transport: builder.build(),
            from,
            timeout,
        }))
    }

    /// One attempt to hand the mail to the SMTP server.
    pub(super) async fn send(
        &self,
        to: &Address,
        event_id: &str,
        facts: &ApprovalNeeded,
    ) -> Result<(), MailError> {
        let domain = self.from.email.domain();
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to.clone()))
            .subject(format!("Approval needed: {}", summary(facts)))
            .message_id(Some(format!("<{event_id}@{domain}>")))
            .header(ContentType::TEXT_PLAIN)
            .body(text(facts))
            .map_err(|e| MailError::Permanent(format!("cannot build the mail: {e}")))?;
        // lettre bounds each read and write by the timeout; this bounds the whole exchange.
        let sent = tokio::time::timeout(self.timeout * 3, self.transport.send(message)).await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => Err(MailError::Permanent(format!(
                "the SMTP server refused: {e}"
            ))),
            Ok(Err(e)) => Err(MailError::Transient(format!("SMTP: {e}"))),
            Err(_) => Err(MailError::Transient("the SMTP exchange timed out".into())),
        }
    }
}

/// The mail's text: everything the human needs to decide, nothing that grants anything.
pub(super) fn text(f: &ApprovalNeeded) -> String {
    let mut t = format!(
        "Hello {},\n\n{} asks to act for you and waits for your decision.\n\n",
        f.user, f.agent
    );
    t.push_str(&format!("Agent:      {}\n", f.agent));
    t.push_str(&format!("Acting as:  {}\n", f.chain.join(", acting for ")));
    t.push_str(&format!("Client:     {}\n", f.client));
    t.push_str(&format!("Scopes:     {}\n", f.scopes.join(" ")));
    if !f.high_risk.is_empty() {
        t.push_str(&format!("High risk:  {}\n", f.high_risk.join(" ")));
    }
    if !f.audience.is_empty() {
        t.push_str(&format!("Audience:   {}\n", f.audience.join(" ")));
    }
    if let Some(m) = &f.binding_message {
        t.push_str(&format!("The client says: \"{m}\"\n"));
        t.push_str("(Check that this is what the application in front of you shows.)\n");
    }
    t.push_str(&format!(
        "\nThe request expires at {}.\nApprove or deny it, signed in, at:\n{}\n\n\
         If you did not expect this request, deny it.\n",
        rfc3339(f.expires_at),
        f.approvals_url
    ));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_tells_who_asks_for_what_and_where_to_decide() {
        let f = ApprovalNeeded {
            request: "r1".into(),
            user: "alice".into(),
            client: "agent-runtime".into(),
            agent: "agent:build-bot".into(),
            chain: vec!["agent:build-bot".into(), "alice".into()],
            scopes: vec!["orders:read".into(), "payments:write".into()],
            high_risk: vec!["payments:write".into()],
            audience: vec!["orders-api".into()],
            binding_message: Some("pay invoice 42".into()),
            expires_at: 1_700_000_300,
            approvals_url: "https://as.example/approvals".into(),
        };
        let t = text(&f);
        for part in [
            "Hello alice",
            "agent:build-bot",
            "Client:     agent-runtime",
            "Scopes:     orders:read payments:write",
            "High risk:  payments:write",
            "Audience:   orders-api",
            "\"pay invoice 42\"",
            "2023-11-14T22:18:20Z",
            "https://as.example/approvals\n",
        ] {
            assert!(t.contains(part), "{part} in {t}");
        }
        assert!(!t.contains("r1"), "the request id is not needed to decide");
    }
}
