//! RFC 8935 push: one SET per `POST`, `Content-Type: application/secevent+jwt`, `Accept:
//! application/json`, with the `Authorization` header the operator configured. `202 Accepted`
//! delivers (§2.2); `400` is the receiver refusing this SET for good (§2.3: retrying it cannot
//! help), so it is given up; anything else, or no answer in time, is retried. Only the status
//! is read, never the body (the `err` of a 400 is the receiver's to log), and the head is
//! bounded, as a webhook's: a receiver that answers slowly or hugely costs one bounded attempt.
//! The endpoint and the credential are never logged: a stream is named by its `name`.

use std::path::Path;
use std::time::Duration;

use http::Uri;
use tokio_rustls::TlsConnector;

use crate::config::SsfStreamConfig;

/// The `Authorization` header value of a stream (from its file or variable), checked to be
/// one; `None` when neither is set.
pub fn credential(c: &SsfStreamConfig, base: &Path) -> Result<Option<String>, String> {
    let value = match (&c.authorization_header_file, &c.authorization_header_env) {
        (Some(f), _) => {
            let path = base.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            text.trim().to_string()
        }
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| format!("the environment variable {var} is not set"))?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if value.is_empty() || http::HeaderValue::from_str(&value).is_err() {
        return Err("the authorization header is empty or not a header value".into());
    }
    Ok(Some(value))
}

/// A stream's push endpoint, ready to send.
pub struct Push {
    uri: Uri,
    tls: Option<TlsConnector>,
    authorization: Option<String>,
    timeout: Duration,
}

/// Why a push did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// RFC 8935 §2.3: the receiver refused this SET (400): do not send it again.
    Refused(String),
    /// Worth another attempt.
    Transient(String),
}

impl Push {
    pub fn new(c: &SsfStreamConfig, base: &Path, timeout: Duration) -> Result<Self, String> {
        let authorization = credential(c, base)?;
        let url = c
            .endpoint_url
            .as_deref()
            .ok_or("a push stream needs endpoint_url")?;
        let uri: Uri = (url.parse()).map_err(|_| "endpoint_url is not a URL")?;
        let tls = match uri.scheme_str() {
            Some("https") => Some(crate::notify::tls_connector()?),
            Some("http") => None,
            _ => return Err("endpoint_url must be http or https".into()),
        };
        if uri.host().is_none() {
            return Err("endpoint_url has no host".into());
        }
        Ok(Self {
            uri,
            tls,
            authorization,
            timeout,
        })
    }

    /// One attempt at delivering `set` (a compact JWS).
    pub async fn post(&self, set: String) -> Result<(), PushError> {
        let mut headers = vec![("accept", "application/json".to_string())];
        if let Some(a) = &self.authorization {
            headers.push(("authorization", a.clone()));
        }
        let send = crate::notify::exchange(
            &self.uri,
            self.tls.as_ref(),
            "application/secevent+jwt",
            &headers,
            set.into_bytes(),
        );
        match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(status)) => judge(status),
            Ok(Err(e)) => Err(PushError::Transient(e)),
            Err(_) => Err(PushError::Transient(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// What a receiver's answer means (RFC 8935 §2.2, §2.3).
pub(super) fn judge(status: u16) -> Result<(), PushError> {
    match status {
        // §2.2: 202 Accepted. Other 2xx are taken as delivered too: the receiver has it.
        200..=299 => Ok(()),
        400 => Err(PushError::Refused(
            "the receiver refused the SET (HTTP 400, RFC 8935 §2.3)".into(),
        )),
        status => Err(PushError::Transient(format!(
            "the receiver answered HTTP {status}"
        ))),
    }
}
