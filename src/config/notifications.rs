//! `[notifications]`: telling a human that a request waits for them (docs/operations.md,
//! "Approval notifications"). Every key is in docs/configuration.md.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::de_duration;

/// The events a webhook may subscribe to.
pub const NOTIFIED_EVENTS: [&str; 1] = ["ciba.requested"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Longest one delivery attempt may take (connect, TLS, request, answer).
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// The wait before the first retry; each further one doubles it (with jitter).
    #[serde(deserialize_with = "de_duration")]
    pub retry_initial: Duration,
    /// The longest wait between two retries.
    #[serde(deserialize_with = "de_duration")]
    pub retry_max: Duration,
    /// A message not delivered this long after its event is given up (audited).
    #[serde(deserialize_with = "de_duration")]
    pub give_up_after: Duration,
    /// How long delivered and given-up messages stay in the outbox before they are purged.
    #[serde(deserialize_with = "de_duration")]
    pub keep_settled: Duration,
    pub webhooks: Vec<WebhookConfig>,
    pub smtp: SmtpConfig,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
            give_up_after: Duration::from_secs(24 * 3600),
            keep_settled: Duration::from_secs(7 * 24 * 3600),
            webhooks: Vec::new(),
            smtp: SmtpConfig::default(),
        }
    }
}

/// A receiver of signed webhooks (Standard Webhooks signatures).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the receiver in logs and the audit log (never its URL, which may hold a secret).
    pub name: String,
    /// `http(s)://host[:port]/path`: an operator's own endpoint, so loopback and private
    /// addresses are allowed.
    pub url: String,
    /// A file holding the signing secret (`whsec_` + base64, or any other text of at least 32
    /// bytes); relative to the config file.
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the secret (not a `MANDATE_*` one).
    pub secret_env: Option<String>,
    /// The events sent to it; empty: all of [`NOTIFIED_EVENTS`].
    #[serde(default)]
    pub events: Vec<String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// How mail reaches an SMTP server. `host` unset: no mail is sent.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: Option<String>,
    pub port: u16,
    /// `starttls` (upgrade after connecting, required), `tls` (implicit TLS, port 465 usually)
    /// or `none` (plain text: a relay on this machine or in tests only).
    pub security: String,
    /// The `From:` address.
    pub from: Option<String>,
    pub username: Option<String>,
    /// A file holding the password for `username`; relative to the config file.
    pub password_file: Option<PathBuf>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: 587,
            security: "starttls".into(),
            from: None,
            username: None,
            password_file: None,
        }
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("from", &self.from)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Whether `s` looks like one mail address (`local@domain`, printable, bounded). The mailer
/// parses it fully at start; this keeps a config with a stray space or newline from loading.
pub fn is_mail_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && s.len() <= 254
        && s.chars()
            .all(|c| c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control()))
        && !s.contains(['<', '>', ',', ';', '"'])
}

impl NotificationsConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return Err(
                "key `notifications.timeout`: must be more than zero and at most 60s".into(),
            );
        }
        if self.retry_initial < Duration::from_secs(1) || self.retry_initial > self.retry_max {
            return Err(
                "keys `notifications.retry_initial`, `notifications.retry_max`: need 1s <= retry_initial <= retry_max"
                    .into(),
            );
        }
        if self.give_up_after < self.retry_max
            || self.give_up_after > Duration::from_secs(30 * 24 * 3600)
        {
            return Err(
                "key `notifications.give_up_after`: must be at least `retry_max` and at most 30d"
                    .into(),
            );
        }
        if self.keep_settled < Duration::from_secs(60) {
            return Err("key `notifications.keep_settled`: must be at least 1m".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = format!("notifications.webhooks[{i}] (name `{}`)", w.name);
            super::identifier(&key, "name", &w.name)?;
            if !names.insert(w.name.as_str()) {
                return Err(format!("{key}: another webhook has the same name"));
            }
            let lower = w.url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://"))
                || w.url.parse::<http::Uri>().is_err()
            {
                return Err(format!("{key}: url must be an absolute http(s) URL"));
            }
            if w.secret_file.is_some() == w.secret_env.is_some() {
                return Err(format!(
                    "{key}: set exactly one of secret_file or secret_env"
                ));
            }
            if let Some(env) = &w.secret_env {
                if env.is_empty() || env.starts_with("MANDATE_") {
                    return Err(format!(
                        "{key}: secret_env names a variable, not one starting with MANDATE_ \
                         (those are config overrides)"
                    ));
                }
            }
            if let Some(e) = w
                .events
                .iter()
                .find(|e| !NOTIFIED_EVENTS.contains(&e.as_str()))
            {
                return Err(format!(
                    "{key}: `{e}` is not an event that notifies (only {NOTIFIED_EVENTS:?})"
                ));
            }
        }
        let smtp = &self.smtp;
        if !matches!(smtp.security.as_str(), "starttls" | "tls" | "none") {
            return Err(format!(
                "key `notifications.smtp.security`: `{}` is none of `starttls`, `tls`, `none`",
                smtp.security
            ));
        }
        if smtp.host.is_some() != smtp.from.is_some() {
            return Err(
                "keys `notifications.smtp.host`, `notifications.smtp.from`: set both to send mail"
                    .into(),
            );
        }
        if let Some(from) = smtp.from.as_deref().filter(|f| !is_mail_address(f)) {
            return Err(format!(
                "key `notifications.smtp.from`: {from:?} is not a mail address"
            ));
        }
        if smtp.username.is_some() != smtp.password_file.is_some() {
            return Err(
                "keys `notifications.smtp.username`, `notifications.smtp.password_file`: set both or neither"
                    .into(),
            );
        }
        if smtp.username.is_some() && smtp.security == "none" {
            return Err(
                "key `notifications.smtp.username`: a password is never sent without TLS (security = \"none\")"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml(text, "t.toml", env).map_err(|e| e.message)
    }

    const HOOK: &str =
        "[[notifications.webhooks]]\nname = \"chat\"\nurl = \"https://hooks.example/x\"\n";

    #[test]
    fn the_smtp_table_is_overridden_by_nested_env_names() {
        let c = load(
            "",
            &[
                ("MANDATE_NOTIFICATIONS_SMTP_HOST", "smtp.example.com"),
                ("MANDATE_NOTIFICATIONS_SMTP_FROM", "mandate@example.com"),
                ("MANDATE_NOTIFICATIONS_SMTP_PORT", "465"),
                ("MANDATE_NOTIFICATIONS_GIVE_UP_AFTER", "2h"),
            ],
        )
        .unwrap();
        let smtp = &c.notifications.smtp;
        assert_eq!(smtp.host.as_deref(), Some("smtp.example.com"));
        assert_eq!(
            (smtp.port, smtp.from.as_deref()),
            (465, Some("mandate@example.com"))
        );
        assert_eq!(c.notifications.give_up_after.as_secs(), 7200);
    }

    #[test]
    fn notification_settings_that_can_only_be_wrong_are_refused() {
        let file = |f: &str| format!("{HOOK}secret_file = \"{f}\"\n");
        for (text, says) in [
            (HOOK.to_string(), "exactly one of secret_file or secret_env"),
            (
                format!("{}secret_env = \"HOOK\"\n", file("s")),
                "exactly one of secret_file or secret_env",
            ),
            (format!("{HOOK}secret_env = \"MANDATE_HOOK\"\n"), "MANDATE_"),
            (format!("{}events = [\"token.issued\"]\n", file("s")), "not an event"),
            (format!("{}{}", file("s"), file("t")), "same name"),
            (
                file("s").replace("https://hooks.example/x", "ftp://hooks.example/x"),
                "http(s) URL",
            ),
            (
                "[notifications.smtp]\nhost = \"smtp.example.com\"\n".into(),
                "set both",
            ),
            (
                "[notifications.smtp]\nhost = \"h\"\nfrom = \"not an address\"\n".into(),
                "not a mail address",
            ),
            (
                "[notifications.smtp]\nhost = \"h\"\nfrom = \"a@b\"\nsecurity = \"none\"\n\
                 username = \"u\"\npassword_file = \"p\"\n"
                    .into(),
                "never sent without TLS",
            ),
            (
                "[notifications.smtp]\nsecurity = \"ssl\"\n".into(),
                "none of `starttls`",
            ),
            (
                "[notifications]\nretry_initial = \"1h\"\nretry_max = \"1m\"\n".into(),
                "retry_initial <= retry_max",
            ),
            (
                "[notifications]\ngive_up_after = \"1s\"\n".into(),
                "give_up_after",
            ),
            (
                "[[users]]\nusername = \"alice\"\npassword = \"p\"\nemail = \"alice@example.com\\nBcc: eve@example.com\"\n"
                    .into(),
                "not a mail address",
            ),
        ] {
            let err = load(&text, &[]).expect_err(&text);
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(load(&file("s"), &[]).is_ok());
    }
}
