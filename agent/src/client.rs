//! HTTP calls to the authorization server: attestation (`/attest/*`, mandate's own endpoints)
//! and the token endpoint. Token-endpoint calls go through the `oauth2` crate: its HTTP client,
//! its client-authentication types and its RFC 6749 §5.1/§5.2 response types, so the exchange
//! speaks to any RFC 8693 server. (`oauth2` 5 has no RFC 8693 request builder; the form is built
//! here, the rest is the crate's.)

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use oauth2::basic::{BasicErrorResponse, BasicTokenType};
use oauth2::http::{HeaderValue, Method, Request, header};
use oauth2::{
    AsyncHttpClient, ClientId, ClientSecret, ExtraTokenFields, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use crate::Error;

/// RFC 8693 §2.1 grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3 token types.
pub const TT_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const TT_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// RFC 8693 §2.2.1 fields beyond RFC 6749's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExchangeFields {
    pub issued_token_type: Option<String>,
}
impl ExtraTokenFields for ExchangeFields {}

/// A token endpoint response of an exchange.
pub type ExchangeResponse = StandardTokenResponse<ExchangeFields, BasicTokenType>;

/// An RFC 8693 delegation request: `subject_token` is the authority handed down (a human's
/// token, or a delegated one), `actor_token` the agent token of whoever will act with it.
#[derive(Debug, Clone, Default)]
pub struct Exchange<'a> {
    pub subject_token: &'a str,
    pub actor_token: &'a str,
    /// Space-separated scopes; none asks for the subject token's.
    pub scope: Option<&'a str>,
    /// `audience` values (RFC 8693 §2.1), each sent as its own parameter.
    pub audience: &'a [&'a str],
    /// A DPoP proof for `POST {issuer}/token` (RFC 9449), signed by the key the new token is to
    /// be bound to ([`crate::DpopKey::proof`], [`crate::tpm::TpmAttester::dpop_proof`]); a
    /// bound `actor_token` needs its own key's proof.
    pub dpop: Option<&'a str>,
}

/// The agent token `/attest` answers with.
#[derive(Debug, Clone, Deserialize)]
pub struct AgentToken {
    pub agent_token: String,
    pub expires_in: u64,
}

/// The credential-activation challenge of `/attest/enroll`.
#[derive(Debug, Clone, Deserialize)]
pub struct EnrollChallenge {
    pub enrollment_id: String,
    pub credential_blob: String,
    pub encrypted_secret: String,
    pub expires_in: u64,
}

/// A client of one authorization server, as one OAuth client.
#[derive(Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    token_url: TokenUrl,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("client_id", &self.client_id.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `issuer` is the server's base URL; the token endpoint is `{issuer}/token`.
    pub fn new(issuer: &str, client_id: &str, client_secret: Option<&str>) -> Result<Self, Error> {
        let base = Url::parse(issuer.trim_end_matches('/'))
            .map_err(|e| Error::Config(format!("issuer `{issuer}` is not a URL: {e}")))?;
        let token_url = TokenUrl::new(format!("{}/token", base.as_str().trim_end_matches('/')))
            .map_err(|e| Error::Config(format!("token endpoint: {e}")))?;
        let http = reqwest::Client::builder()
            // RFC 6749 §5.1 answers are never redirects; following one would leak the form.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            base,
            http,
            client_id: ClientId::new(client_id.to_string()),
            client_secret: client_secret.map(|s| ClientSecret::new(s.to_string())),
            token_url,
        })
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// POSTs JSON to one of mandate's endpoints; an error answer becomes [`Error::Server`].
    pub(crate) async fn post_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, Error> {
        let resp = self
            .http
            .post(self.endpoint(path))
            .json(body)
            .send()
            .await
            .map_err(|e| Error::Http(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::Http(e.to_string()))?;
        if !status.is_success() {
            return Err(server_error(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(format!("{path}: {e}")))
    }

    /// `POST /attest/challenge` bound to `agent`: a single-use nonce, base64url.
    pub async fn challenge(&self, agent: &str) -> Result<String, Error> {
        let v: Value = self
            .post_json("/attest/challenge", &json!({ "agent": agent }))
            .await?;
        v["nonce"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Protocol("/attest/challenge answered without a nonce".into()))
    }

    /// `POST /attest` with `evidence` (a software `proof` or a TPM `quote`).
    pub async fn attest(
        &self,
        agent: &str,
        nonce: &str,
        evidence: Value,
    ) -> Result<AgentToken, Error> {
        self.attest_bound(agent, nonce, evidence, None).await
    }

    /// [`Self::attest`] with a DPoP proof for `POST {issuer}/attest` (RFC 9449): the agent
    /// token is bound to the proof's key, and then acts only in requests that key signs.
    pub async fn attest_bound(
        &self,
        agent: &str,
        nonce: &str,
        evidence: Value,
        dpop: Option<&str>,
    ) -> Result<AgentToken, Error> {
        let mut body = json!({ "agent": agent, "nonce": nonce });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), evidence) {
            b.extend(e);
        }
        let mut req = self.http.post(self.endpoint("/attest")).json(&body);
        if let Some(p) = dpop {
            req = req.header("DPoP", p);
        }
        let resp = req.send().await.map_err(|e| Error::Http(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::Http(e.to_string()))?;
        if !status.is_success() {
            return Err(server_error(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(format!("/attest: {e}")))
    }

    /// The URL of one of the server's endpoints (`/token`, `/attest`): what a DPoP proof's
    /// `htu` names.
    pub fn endpoint_url(&self, path: &str) -> String {
        self.endpoint(path)
    }

    /// `POST /attest/enroll`: EK, its certificate chain and the AK in, a challenge out.
    pub async fn enroll(
        &self,
        agent: &str,
        ek_public: &[u8],
        ek_certificate: Option<&[u8]>,
        ek_chain: &[Vec<u8>],
        ak_public: &[u8],
    ) -> Result<EnrollChallenge, Error> {
        let mut body = json!({
            "agent": agent,
            "ek_public": STANDARD.encode(ek_public),
            "ak_public": STANDARD.encode(ak_public),
            "ek_chain": ek_chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
        });
        if let Some(cert) = ek_certificate {
            body["ek_certificate"] = STANDARD.encode(cert).into();
        }
        self.post_json("/attest/enroll", &body).await
    }

    /// `POST /attest/enroll/activate` with what TPM2_ActivateCredential recovered.
    pub async fn activate(&self, enrollment_id: &str, secret: &[u8]) -> Result<Value, Error> {
        self.post_json(
            "/attest/enroll/activate",
            &json!({ "enrollment_id": enrollment_id, "secret": STANDARD.encode(secret) }),
        )
        .await
    }

    /// RFC 8693 token exchange at the token endpoint, through `oauth2`'s HTTP client, client
    /// authentication (RFC 6749 §2.3.1 Basic) and response types.
    pub async fn exchange(&self, x: &Exchange<'_>) -> Result<ExchangeResponse, Error> {
        let mut form = form_urlencoded_pairs(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", x.subject_token),
            ("subject_token_type", TT_ACCESS_TOKEN),
            ("actor_token", x.actor_token),
            ("actor_token_type", TT_JWT),
        ]);
        if let Some(scope) = x.scope {
            form.append_pair("scope", scope);
        }
        for a in x.audience {
            form.append_pair("audience", a);
        }
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.token_url.as_str())
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        if let Some(p) = x.dpop {
            req = req.header("DPoP", p);
        }
        match &self.client_secret {
            Some(secret) => {
                // RFC 6749 §2.3.1: each part form-urlencoded before Basic.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let basic = STANDARD.encode(format!(
                    "{}:{}",
                    enc(self.client_id.as_str()),
                    enc(secret.secret())
                ));
                req = req.header(header::AUTHORIZATION, format!("Basic {basic}"));
            }
            None => {
                form.append_pair("client_id", self.client_id.as_str());
            }
        }
        let req = req
            .body(form.finish().into_bytes())
            .map_err(|e| Error::Protocol(format!("building the token request: {e}")))?;
        let resp = self
            .http
            .call(req)
            .await
            .map_err(|e| Error::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(server_error(status, resp.body()));
        }
        serde_json::from_slice(resp.body()).map_err(|e| {
            Error::Protocol(format!(
                "token endpoint answered an unreadable token response: {e}"
            ))
        })
    }
}

fn form_urlencoded_pairs(
    pairs: &[(&str, &str)],
) -> url::form_urlencoded::Serializer<'static, String> {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s
}

/// An RFC 6749 §5.2 error body (mandate answers every endpoint's errors so), else the status.
fn server_error(status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<BasicErrorResponse>(body) {
        Ok(e) => Error::Server {
            status,
            error: e.error().to_string(),
            description: e.error_description().cloned(),
        },
        Err(_) => Error::Server {
            status,
            error: "http_error".into(),
            description: None,
        },
    }
}
