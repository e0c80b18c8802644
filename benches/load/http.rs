//! One keep-alive HTTP/1.1 connection (raw hyper): requests go back to back on it, like a
//! resource server or an agent runtime holding a connection open to the authorization server.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub const FORM: &str = "application/x-www-form-urlencoded";
pub const JSON: &str = "application/json";

/// `Authorization: Basic base64(id:secret)` (RFC 6749 §2.3.1: both form-urlencoded first; our
/// ids and secrets need no encoding).
pub fn basic(id: &str, secret: &str) -> HeaderValue {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    HeaderValue::from_str(&format!("Basic {b64}")).unwrap_or(HeaderValue::from_static(""))
}

/// What one request answered.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    /// A short printable excerpt for error samples.
    pub fn excerpt(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let s: String = s.chars().take(160).collect();
        format!("HTTP {}: {s}", self.status)
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The string value of `"key":"..."` in a compact JSON object (what the server writes), without
/// parsing the whole document.
pub fn json_str<'a>(body: &'a [u8], key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let start = body.windows(pat.len()).position(|w| w == pat.as_bytes())? + pat.len();
    let rest = body.get(start..)?;
    let end = rest.iter().position(|b| *b == b'"')?;
    std::str::from_utf8(rest.get(..end)?).ok()
}

pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        let host = HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static(""));
        Self {
            addr,
            host,
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_some_and(|s| s.is_closed()) {
            self.sender = None;
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            stream
                .set_nodelay(true)
                .map_err(|e| format!("nodelay: {e}"))?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| "no connection".to_string())
    }

    /// POSTs `body` to `path`; a transport failure drops the connection (the next call opens a
    /// new one) and is returned as an error.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &'static str,
        auth: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<Answer, String> {
        self.post_with(path, content_type, auth, None, body).await
    }

    /// GETs `path` (no body); a transport failure drops the connection, as [`Self::post`].
    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.send(Method::GET, path, None, None, None, Bytes::new())
            .await
    }

    /// [`Self::post`] with a `DPoP` proof header (RFC 9449).
    pub async fn post_with(
        &mut self,
        path: &str,
        content_type: &'static str,
        auth: Option<&HeaderValue>,
        dpop: Option<String>,
        body: Bytes,
    ) -> Result<Answer, String> {
        self.send(Method::POST, path, Some(content_type), auth, dpop, body)
            .await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        auth: Option<&HeaderValue>,
        dpop: Option<String>,
        body: Bytes,
    ) -> Result<Answer, String> {
        let host = self.host.clone();
        let result = async {
            let sender = self.connect().await?;
            sender.ready().await.map_err(|e| format!("ready: {e}"))?;
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header(HOST, host);
            if let Some(ct) = content_type {
                req = req.header(CONTENT_TYPE, ct);
            }
            if let Some(a) = auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            if let Some(p) = dpop {
                req = req.header("DPoP", p);
            }
            let req = req
                .body(Full::new(body))
                .map_err(|e| format!("request: {e}"))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(Answer { status, body })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result.map_err(|e: String| format!("transport: {e}"))
    }
}
