//! # mandate-agent: the agent side of mandate
//!
//! An agent proves what it is and gets a short-lived agent token, then acts only through
//! delegated tokens (RFC 8693) bound to the human it acts for:
//!
//! - [`Attester`]: how the agent proves itself — a registered P-256 key ([`SoftwareKey`]) or,
//!   with the `tpm` feature, a TPM quote by an attestation key ([`tpm::TpmAttester`], which also
//!   enrolls an agent zero-touch by its EK certificate and credential activation);
//! - [`AgentSession`]: holds the agent token and attests again before it expires; exchanges a
//!   human's token for a delegated one ([`AgentSession::act_for`]) and hands a narrower one to a
//!   sub-agent ([`AgentSession::delegate`]);
//! - [`Client`]: the HTTP calls; token-endpoint calls go through the `oauth2` crate.

pub mod client;
pub mod dpop;
pub mod session;
pub mod software;
#[cfg(feature = "tpm")]
pub mod tpm;

pub use client::{Client, Exchange, ExchangeResponse};
pub use dpop::DpopKey;
/// The `oauth2` crate the token-endpoint calls go through (for `TokenResponse` and friends).
pub use oauth2;
pub use session::{AgentSession, Attester};
pub use software::SoftwareKey;

/// What can go wrong on the agent side. Never carries a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("HTTP: {0}")]
    Http(String),
    /// The server answered an RFC 6749 §5.2 error.
    #[error("server refused ({status}): {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Server {
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("unexpected answer: {0}")]
    Protocol(String),
    #[error("TPM: {0}")]
    Tpm(String),
}

/// The certificates (DER) in PEM text, in order: what `ek_chain` takes.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, Error> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match (line, body.as_mut()) {
            ("-----BEGIN CERTIFICATE-----", None) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b)) => {
                out.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(b.as_bytes())
                        .map_err(|_| Error::Config("a PEM certificate is not base64".into()))?,
                );
                body = None;
            }
            (l, Some(b)) => b.push_str(l),
            _ => {}
        }
    }
    if body.is_some() || out.is_empty() {
        return Err(Error::Config("no complete PEM certificate found".into()));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::pem_certificates;

    #[test]
    fn pem_certificates_come_out_in_order() {
        let pem = "junk\n-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nBA\nUG\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_certificates(pem).unwrap(),
            vec![vec![1, 2, 3], vec![4, 5, 6]]
        );
        assert!(pem_certificates("-----BEGIN CERTIFICATE-----\nAQID\n").is_err());
        assert!(pem_certificates("nothing here").is_err());
    }
}
