//! The webhook channel: a JSON POST a chat tool can take (`text`, one line), with the facts as
//! structured fields (`data`), signed as the Standard Webhooks specification says, so receivers
//! verify it with its libraries or a few lines of their own (docs/operations.md):
//!
//! - `webhook-id`: the message's stable id (the same on every retry: deduplicate on it);
//! - `webhook-timestamp`: seconds since the Unix epoch, of this attempt;
//! - `webhook-signature`: `v1,` then the base64 of HMAC-SHA256 under the secret over
//!   `{webhook-id}.{webhook-timestamp}.{body}`. A receiver refuses a timestamp far from its
//!   clock (5 minutes), which bounds a replay.
//!
//! The URL is the operator's, so it may be plain http on loopback; it is never logged (chat
//! tools put their secret in it). One attempt is bounded by `notifications.timeout` as a
//! whole; only the response's status is read (a 2xx delivers), never its body, and its head
//! is bounded.

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Uri, header};
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{ApprovalNeeded, read_secret, rfc3339, subscribed, summary};
use crate::config::WebhookConfig;

/// Streams of this channel are `webhook:<name>`.
pub(super) const STREAM: &str = "webhook:";
/// Shortest secret accepted, in bytes (HMAC-SHA256's key: RFC 2104 §3 asks for at least the
/// output length; Standard Webhooks secrets decode to 24 to 64 bytes).
const MIN_SECRET: usize = 24;
const MAX_HEAD_BYTES: usize = 16 * 1024;

pub(super) struct Webhook {
    uri: Uri,
    tls: Option<TlsConnector>,
    key: hmac::Key,
    events: Vec<String>,
    timeout: Duration,
}

/// The HMAC key of a secret: a Standard Webhooks secret (`whsec_` + base64) is its decoded
/// bytes; any other text is its own bytes.
fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let bytes = match secret.strip_prefix("whsec_") {
        Some(b64) => STANDARD
            .decode(b64)
            .map_err(|_| "a whsec_ secret must be base64 after the prefix".to_string())?,
        None => secret.as_bytes().to_vec(),
    };
    if bytes.len() < MIN_SECRET {
        return Err(format!("the secret must be at least {MIN_SECRET} bytes"));
    }
    Ok(bytes)
}

/// `{id}.{timestamp}.{body}`: what the signature covers.
pub fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{id}.{timestamp}.").into_bytes();
    out.extend_from_slice(body);
    out
}

/// The `webhook-signature` value for `secret` (as configured: `whsec_…` or plain text).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_of(secret)?);
    Ok(signature(&key, id, timestamp, body))
}

fn signature(key: &hmac::Key, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = hmac::sign(key, &signed_content(id, timestamp, body));
    format!("v1,{}", STANDARD.encode(tag.as_ref()))
}

/// Slack's escaping of `&`, `<` and `>` (the rest of its markup needs them): a binding message
/// cannot make a link, a mention or a channel-wide ping.
fn escape_chat(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The body: `text` for a chat tool, the facts in `data` for a program.
pub(super) fn body(kind: &str, facts: &ApprovalNeeded, now: i64) -> Vec<u8> {
    let mut text = format!("Approval needed: {}.", summary(facts));
    if let Some(m) = &facts.binding_message {
        text.push_str(&format!(" The client says: \u{201c}{m}\u{201d}."));
    }
    text.push_str(&format!(
        " Approve or deny before {} at {}",
        rfc3339(facts.expires_at),
        facts.approvals_url
    ));
    let body = json!({
        "type": kind,
        "timestamp": rfc3339(now),
        "text": escape_chat(&text),
        "data": facts,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Webhook {
    pub(super) fn new(c: &WebhookConfig, base: &Path, timeout: Duration) -> Result<Self, String> {
        let secret = match (&c.secret_file, &c.secret_env) {
            (Some(f), _) => read_secret(base, f)?,
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| format!("the environment variable {var} is not set"))?
                .trim()
                .to_string(),
            (None, None) => return Err("no secret".into()),
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key_of(&secret)?);
        let uri: Uri = c.url.parse().map_err(|_| "url is not a URL".to_string())?;
        let tls = match uri.scheme_str() {
            Some("https") => Some(tls_connector()?),
            Some("http") => None,
            _ => return Err("url must be http or https".into()),
        };
        if uri.host().is_none() {
            return Err("url has no host".into());
        }
        Ok(Self {
            uri,
            tls,
            key,
            events: subscribed(&c.events),
            timeout,
        })
    }

    pub(super) fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == kind)
    }

    /// One attempt: `Ok` on a 2xx, else why not (the caller retries).
    pub(super) async fn post(&self, id: &str, timestamp: i64, body: Vec<u8>) -> Result<(), String> {
        let signature = signature(&self.key, id, timestamp, &body);
        match tokio::time::timeout(self.timeout, self.exchange(id, timestamp, signature, body))
            .await
        {
            Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
            Ok(Ok(status)) => Err(format!("the receiver answered HTTP {status}")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn exchange(
        &self,
        id: &str,
        timestamp: i64,
        signature: String,
        body: Vec<u8>,
    ) -> Result<u16, String> {
        let headers = [
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        exchange(
            &self.uri,
            self.tls.as_ref(),
            "application/json",
            &headers,
            body,
        )
        .await
    }
}

/// One bounded POST of `body` to `uri` (the caller bounds its time): connect, TLS when `tls`,
/// HTTP/1.1 with `headers`; only the answer's status is read, its head bounded, never its body.
pub(crate) async fn exchange(
    uri: &Uri,
    tls: Option<&TlsConnector>,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<u16, String> {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    exchange_on(tcp, uri, tls, content_type, headers, body).await
}

/// [`exchange`] over a connection made already (to an address vetted by the caller: a
/// receiver's URL is resolved and checked once, and the connection goes where was checked).
pub(crate) async fn exchange_on(
    tcp: TcpStream,
    uri: &Uri,
    tls: Option<&TlsConnector>,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<u16, String> {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| "the URL's host is not a TLS server name".to_string())?;
            Box::new(
                (tls.connect(name, tcp).await).map_err(|e| format!("TLS handshake failed: {e}"))?,
            )
        }
    };
    let (mut sender, conn) = http1::Builder::new()
        .max_headers(64)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let mut request = http::Request::post(path)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::USER_AGENT,
            concat!("mandate/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| "cannot build the request (a header value is invalid)".to_string())?;
    let exchange = async move {
        let response =
            (sender.send_request(request).await).map_err(|e| format!("the request failed: {e}"))?;
        Ok::<u16, String>(response.status().as_u16())
    };
    // Driven here, not spawned: the connection ends with this future (at the timeout too).
    tokio::pin!(exchange, conn);
    tokio::select! {
        r = &mut exchange => r,
        _ = &mut conn => exchange.await,
    }
}

/// TLS for https receivers: aws-lc-rs and the Mozilla roots, HTTP/1.1 by ALPN.
pub(crate) fn tls_connector() -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(std::sync::Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(message: Option<&str>) -> ApprovalNeeded {
        ApprovalNeeded {
            request: "r1".into(),
            user: "alice".into(),
            client: "agent-runtime".into(),
            agent: "agent:build-bot".into(),
            chain: vec!["agent:build-bot".into(), "alice".into()],
            scopes: vec!["payments:write".into()],
            high_risk: vec!["payments:write".into()],
            audience: vec!["orders-api".into()],
            binding_message: message.map(str::to_string),
            expires_at: 1_700_000_300,
            approvals_url: "https://as.example/approvals".into(),
        }
    }

    /// The Standard Webhooks specification's own example: its secret, id, timestamp and
    /// body give its signature.
    #[test]
    fn signs_as_the_standard_webhooks_example() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn short_or_malformed_secrets_are_refused() {
        assert!(key_of("too-short").is_err());
        assert!(key_of("whsec_!!!").is_err());
        assert!(key_of("whsec_AAAA").is_err());
        assert!(key_of("a plain secret of at least 24 bytes").is_ok());
    }

    /// A binding message is the client's text: in JSON it stays one string, and in the chat
    /// text it can make no link, mention or markup of Slack's.
    #[test]
    fn a_binding_message_cannot_break_the_json_or_the_chat_text() {
        let evil = r#"", "text": "pwned <https://evil.example|Approve here> <!channel> &"#;
        let b = body("ciba.requested", &facts(Some(evil)), 1_700_000_000);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["data"]["binding_message"], evil);
        let text = v["text"].as_str().unwrap();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(
            text.contains("&lt;https://evil.example|Approve here&gt;"),
            "{text}"
        );
        assert!(text.contains("&lt;!channel&gt; &amp;"), "{text}");
        assert!(text.ends_with("at https://as.example/approvals"), "{text}");
        assert_eq!(v["type"], "ciba.requested");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20Z");
    }
}
