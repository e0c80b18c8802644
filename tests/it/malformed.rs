//! Malformed requests: a deterministic generator sends 1,200 bad requests per backend over raw
//! TCP (so that bytes reqwest would refuse to produce — NUL, invalid UTF-8, broken framing — get
//! through) to every route of `src/http/mod.rs` and `src/web/mod.rs`, against the `mandate`
//! binary running as a child process. SPEC: "Never a 500 for bad input"; "Nothing an
//! unauthenticated caller sends is stored unbounded"; "connections that do not finish their
//! request head in bounded time are closed".
//!
//! Every request is bad in a way that must make the server refuse it: either a *fatal* mutation
//! (wrong method, repeated parameter, NUL, invalid UTF-8, wrong content type, oversize or
//! truncated body, broken chunked framing, oversize head, malformed request line or header,
//! bad client credentials, a malformed path), or a request whose content is wrong (unknown
//! agent, garbage token, a scope the client may not have, no browser session). Extra harmless
//! mutations (unknown parameters, long values, junk headers and cookies, valid chunked framing,
//! HTTP/1.0) ride along. Then:
//! - no response is a 5xx, and every error with a body is RFC-shaped JSON or an HTML page,
//!   never a framework's plain-text rejection;
//! - every request is answered, or its connection closed, within a few seconds;
//! - the server's peak RSS stays bounded;
//! - the database is unchanged except for audit entries of the kinds the product writes for
//!   refused attestations and enrollments and for introspections (which answer
//!   `{"active": false}` here).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::agents::{TestAgent, now};
use crate::helpers::{Backend, TestApp, TestDb, backends, spawn_app, test_db, write_config};
use crate::raw::{self, Outcome};

/// Requests per backend.
const REQUESTS: usize = 1200;
/// Concurrent raw connections.
const WORKERS: usize = 6;
/// How long one request may take before it counts as a hang.
const WAIT: Duration = Duration::from_secs(5);
/// How far above its idle size the server's heap (`RssAnon`) may go while it is flooded
/// (KiB): bodies are never buffered past `max_body_bytes`, heads past `max_header_bytes`, and
/// argon2 checks (19 MiB each) run one per core at a time. The server runs with a fixed glibc
/// mmap threshold so that freed argon2 blocks go back to the system: otherwise each malloc
/// arena keeps up to 64 MiB of them, and the figure measures the allocator, not the server.
const MAX_HEAP_GROWTH_KIB: u64 = 64 * 1024;
/// How much more the heap may hold, at rest, after the same requests are sent a third time than
/// after either earlier round (KiB): growth with the number of requests would be a leak or
/// something stored per request.
const MAX_HEAP_CREEP_KIB: u64 = 4 * 1024;
/// Audit entries the product writes for requests it refuses or answers `active: false`.
const ALLOWED_AUDIT: &[&str] = &[
    "agent.attestation_refused",
    "agent.enrollment_refused",
    "token.introspected",
];

// ---------------------------------------------------------------------------------------------
// The cases the security review found, one by one, on every backend.

/// `(status, content-type, body)` of one raw request to `app`.
async fn send(app: &TestApp, req: &str) -> (u16, String, String) {
    match raw::exchange(raw::addr_of(&app.url), req.as_bytes(), false, WAIT).await {
        Outcome::Response { status, head, body } => {
            let ct = head
                .lines()
                .find_map(|l| l.strip_prefix("content-type: "))
                .unwrap_or_default()
                .to_string();
            (status, ct, String::from_utf8_lossy(&body).into_owned())
        }
        other => panic!("no answer to {req:?}: {other:?}"),
    }
}

fn post(path: &str, content_type: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
}

/// RFC 6749 §5.2 `invalid_request` whose description says `what`.
fn assert_invalid_request(got: (u16, String, String), what: &str) {
    let (status, ct, body) = got;
    assert_eq!(status, 400, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "invalid_request", "{v}");
    let d = v["error_description"].as_str().unwrap();
    assert!(d.contains(what), "{d}");
}

/// Security review item 11: a NUL in a JSON string (here an agent name or an enrollment id)
/// was a 500 on PostgreSQL, which refuses NUL in `text`; it is `invalid_request` (RFC 6749
/// §5.2) on every backend, and nothing is stored.
#[tokio::test]
async fn nul_in_json_strings_is_invalid_request_on_every_backend() {
    for b in backends() {
        let app = spawn_app(b).await;
        let audit = app.audit_len().await;
        for (path, body) in [
            ("/attest/challenge", r#"{"agent": "a\u0000b"}"#),
            (
                "/attest",
                r#"{"agent": "a\u0000b", "nonce": "n", "proof": "p"}"#,
            ),
            (
                "/attest",
                r#"{"agent": "bot", "nonce": "\u0000", "proof": "p"}"#,
            ),
            (
                "/attest/enroll/activate",
                r#"{"enrollment_id": "\u0000", "secret": "AAAA"}"#,
            ),
        ] {
            let got = send(&app, &post(path, "application/json", body)).await;
            assert_invalid_request(got, "contains a NUL character");
        }
        // An agent name is an identifier: bounded, without control characters.
        let long = format!(r#"{{"agent": "{}"}}"#, "a".repeat(300));
        let got = send(&app, &post("/attest/challenge", "application/json", &long)).await;
        assert_invalid_request(got, "agent is longer than 256 bytes");
        let got = send(
            &app,
            &post(
                "/attest/challenge",
                "application/json",
                r#"{"agent": "a\nb"}"#,
            ),
        )
        .await;
        assert_invalid_request(got, "agent contains a control character");
        assert_eq!(
            app.audit_len().await,
            audit,
            "{b:?}: a refused request was audited"
        );
        app.stop().await;
    }
}

/// Item 11: form parameters (RFC 6749 §3.2) and the `/authorize` query (§3.1) with NUL or
/// bytes that are not UTF-8 once percent-decoded are refused — `invalid_request` at the API,
/// the error page on the web — instead of being passed on with replacement characters.
#[tokio::test]
async fn nul_and_invalid_utf8_in_parameters_are_refused_with_our_errors() {
    for b in backends() {
        let app = spawn_app(b).await;
        let form = "application/x-www-form-urlencoded";
        let got = send(
            &app,
            &post(
                "/token",
                form,
                "grant_type=client_credentials&client_id=a%00b",
            ),
        )
        .await;
        assert_invalid_request(got, "parameter `client_id` contains a NUL character");
        let got = send(&app, &post("/introspect", form, "token=%C3%28&client_id=x")).await;
        assert_invalid_request(got, "parameter `token` is not valid UTF-8");
        let got = send(&app, &post("/revoke", form, "token=x&%00=y")).await;
        assert_invalid_request(got, "a parameter name contains a NUL character");
        for target in [
            "/authorize?response_type=code&client_id=cli%00",
            "/authorize?response_type=code&client_id=%FF",
        ] {
            let (status, ct, body) = send(&app, &get(target)).await;
            assert_eq!(status, 400, "{target}");
            assert!(ct.starts_with("text/html"), "{target}: {ct}");
            assert!(body.contains("client_id"), "{body}");
        }
        let (status, ct, _) =
            send(&app, &post("/login", form, "username=al%00ice&password=x")).await;
        assert_eq!((status, ct.starts_with("text/html")), (400, true));
        app.stop().await;
    }
}

/// SPEC "Nothing an unauthenticated caller sends is stored unbounded": a sign-in with a
/// username that is no identifier (here 300 bytes; each one kept as a throttle key before) is
/// refused at once, costs no argon2 and is not counted, so an address sending many of them is
/// not locked out — and a normal failed sign-in after them is still only a 401.
#[tokio::test]
async fn overlong_usernames_are_refused_before_throttling() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut label_seed = b"login\0".to_vec();
    label_seed.extend_from_slice(b"seed");
    let csrf = mandate::crypto::b64url(&mandate::crypto::sha256(&label_seed));
    let sign_in = |user: &str| {
        let body = format!("username={user}&password=wrong&csrf_token={csrf}");
        format!(
            "POST /login HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncookie: mandate_csrf=seed\r\n\
             content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // More than the 20 failures an address is allowed (throttle::PER_ADDRESS).
    for i in 0..25 {
        let (status, ct, body) = send(&app, &sign_in(&format!("{i}{}", "u".repeat(300)))).await;
        assert_eq!(status, 400, "{body}");
        assert!(ct.starts_with("text/html"));
        assert!(body.contains("The username or password is incorrect."));
    }
    let (status, _, body) = send(&app, &sign_in("bob")).await;
    assert_eq!(
        status, 401,
        "the address was locked out by refused usernames: {body}"
    );
    app.stop().await;
}

/// Item 11: a path parameter that is not percent-encoded UTF-8, or decodes to a NUL, gets the
/// product's HTML error page, not axum's plain-text rejection.
#[tokio::test]
async fn malformed_session_ids_in_the_path_get_the_error_page() {
    for b in backends() {
        let app = spawn_app(b).await;
        for path in [
            "/sessions/%C3%28",
            "/sessions/%FF",
            "/sessions/%00",
            "/sessions/a%0Ab",
        ] {
            let (status, ct, body) = send(&app, &get(path)).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(ct.starts_with("text/html"), "{path}: {ct}");
            assert!(body.contains("This request cannot be completed"), "{body}");
        }
        // A `%` that starts no escape is kept as it is (WHATWG URL): an id like any other,
        // so the visitor is asked to sign in.
        let (status, ct, _) = send(&app, &get("/sessions/%ZZ")).await;
        assert_eq!((status, ct.starts_with("text/html")), (200, true));
        app.stop().await;
    }
}

/// RFC 9112 §6.1: a transfer coding the server does not understand (here `gzip` before
/// `chunked`, which hyper would frame and pass on undecoded) is refused, as is a body in a
/// content coding (RFC 9110 §8.4, 415 naming `identity`). The SPEC allows no 5xx for bad
/// input, so the first is a 400 rather than the 501 RFC 9112 suggests.
#[tokio::test]
async fn rfc9112_s6_1_codings_the_server_does_not_decode_are_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let body = "token=x";
    let chunked = |te: &str| {
        format!(
            "POST /revoke HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\
             content-type: application/x-www-form-urlencoded\r\ntransfer-encoding: {te}\r\n\r\n\
             {:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    for te in ["gzip, chunked", "chunked, chunked", "identity, chunked"] {
        let got = send(&app, &chunked(te)).await;
        assert_invalid_request(got, "transfer coding");
    }
    let req = format!(
        "POST /revoke HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-encoding: gzip\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, body) = send(&app, &req).await;
    assert_eq!(status, 415, "{body}");
    // Plain `chunked` is fine: the request reaches /revoke (which wants a client).
    let (status, _, body) = send(&app, &chunked("chunked")).await;
    assert_eq!(status, 401, "{body}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A small deterministic PRNG (SplitMix64): the same requests on every run and backend.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn printable(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| (b'!' + self.below(94) as u8) as char)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Requests as data, so that mutations can break any part of them.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `application/x-www-form-urlencoded` API endpoint (JSON errors).
    ApiForm,
    /// A web page's form (HTML errors).
    WebForm,
    /// `application/json` API endpoint.
    Json,
    /// A GET with a query string or a path parameter.
    Get,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
    /// A chunk size that is not hex.
    BadChunked,
    /// A chunk announced longer than what follows, then the client half-closes.
    TruncatedChunked,
    /// `content-length` larger than the body, then the client half-closes.
    ShortLength,
    /// Both `content-length` and `transfer-encoding: chunked`.
    LengthAndChunked,
}

#[derive(Clone, Debug)]
enum Body {
    None,
    /// Raw (already encoded) name/value pairs.
    Form(Vec<(String, String)>),
    Raw(Vec<u8>),
}

#[derive(Clone, Debug)]
struct Req {
    endpoint: &'static str,
    kind: Kind,
    method: Vec<u8>,
    path: Vec<u8>,
    /// Raw (already encoded) pairs of the query string.
    query: Vec<(String, String)>,
    version: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    content_type: Option<Vec<u8>>,
    basic: Option<(String, String)>,
    body: Body,
    framing: Framing,
    /// Raw bytes that replace the whole request line, when a mutation breaks it.
    request_line: Option<Vec<u8>>,
    half_close: bool,
    /// What was done to it, for the failure report.
    notes: Vec<String>,
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (enc(k), enc(v))).collect()
}

fn join(p: &[(String, String)]) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

impl Req {
    fn new(endpoint: &'static str, kind: Kind, method: &str, path: &str) -> Self {
        Self {
            endpoint,
            kind,
            method: method.as_bytes().to_vec(),
            path: path.as_bytes().to_vec(),
            query: Vec::new(),
            version: b"HTTP/1.1".to_vec(),
            headers: Vec::new(),
            content_type: None,
            basic: None,
            body: Body::None,
            framing: Framing::Length,
            request_line: None,
            half_close: false,
            notes: Vec::new(),
        }
    }

    fn form(mut self, list: &[(&str, &str)]) -> Self {
        self.body = Body::Form(pairs(list));
        self.content_type = Some(b"application/x-www-form-urlencoded".to_vec());
        self
    }

    fn json(mut self, v: Value) -> Self {
        self.body = Body::Raw(v.to_string().into_bytes());
        self.content_type = Some(b"application/json".to_vec());
        self
    }

    fn query(mut self, list: &[(&str, &str)]) -> Self {
        self.query = pairs(list);
        self
    }

    fn basic(mut self, id: &str, secret: &str) -> Self {
        self.basic = Some((id.into(), secret.into()));
        self
    }

    fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Body::None => Vec::new(),
            Body::Form(p) => join(p).into_bytes(),
            Body::Raw(b) => b.clone(),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.request_line {
            Some(line) => out.extend_from_slice(line),
            None => {
                out.extend_from_slice(&self.method);
                out.push(b' ');
                out.extend_from_slice(&self.path);
                if !self.query.is_empty() {
                    out.push(b'?');
                    out.extend_from_slice(join(&self.query).as_bytes());
                }
                out.push(b' ');
                out.extend_from_slice(&self.version);
            }
        }
        out.extend_from_slice(b"\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
        if let Some(ct) = &self.content_type {
            out.extend_from_slice(b"content-type: ");
            out.extend_from_slice(ct);
            out.extend_from_slice(b"\r\n");
        }
        if let Some((id, secret)) = &self.basic {
            let creds = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(id),
                enc(secret)
            ));
            out.extend_from_slice(format!("authorization: Basic {creds}\r\n").as_bytes());
        }
        for (k, v) in &self.headers {
            out.extend_from_slice(k);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        let body = self.body_bytes();
        let has_body = !body.is_empty() || !matches!(self.body, Body::None);
        match self.framing {
            Framing::Length if has_body => {
                out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(&body);
            }
            Framing::Length => out.extend_from_slice(b"\r\n"),
            Framing::Chunked | Framing::LengthAndChunked => {
                if self.framing == Framing::LengthAndChunked {
                    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
                }
                out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                for chunk in body.chunks(1000) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            Framing::BadChunked => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\nzz\r\n");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\r\n0\r\n\r\n");
            }
            Framing::TruncatedChunked => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                out.extend_from_slice(format!("{:x}\r\n", body.len() + 100).as_bytes());
                out.extend_from_slice(&body);
            }
            Framing::ShortLength => {
                out.extend_from_slice(
                    format!("content-length: {}\r\n\r\n", body.len() + 100).as_bytes(),
                );
                out.extend_from_slice(&body);
            }
        }
        out
    }

    /// The request as text, control bytes escaped, long runs shortened.
    fn describe(&self) -> String {
        let bytes = self.to_bytes();
        let mut s = String::new();
        for &b in bytes.iter().take(600) {
            match b {
                b'\r' => s.push_str("\\r"),
                b'\n' => s.push_str("\\n\n    "),
                0x20..=0x7e => s.push(b as char),
                _ => {
                    let _ = write!(s, "\\x{b:02x}");
                }
            }
        }
        if bytes.len() > 600 {
            let _ = write!(s, "... ({} bytes)", bytes.len());
        }
        format!("[{}] {:?}\n    {s}", self.endpoint, self.notes)
    }
}

// ---------------------------------------------------------------------------------------------
// What the generator starts from.

/// Live values, so that bad requests carry real tokens and ids next to what breaks them.
struct Seeds {
    access_token: String,
    agent_token: String,
    sid: String,
}

/// Templates: each endpoint with a request that the server would accept (`valid`: it must get
/// a fatal mutation) or one whose content is already refused.
fn templates(s: &Seeds, rng: &mut Rng) -> Vec<(Req, bool)> {
    use Kind::*;
    let token_type = "urn:ietf:params:oauth:token-type:access_token";
    let jwt_type = "urn:ietf:params:oauth:token-type:jwt";
    let garbage = rng.printable(40);
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    vec![
        // POST /token (RFC 6749 §3.2): valid, then refused grants.
        (
            Req::new("/token", ApiForm, "POST", "/token")
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "orders:read"),
                    ("audience", "orders-api"),
                ])
                .basic("agent-runtime", "s3cret"),
            true,
        ),
        (
            Req::new("/token", ApiForm, "POST", "/token")
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "payments:write"),
                ])
                .basic("agent-runtime", "s3cret"),
            false,
        ),
        (
            Req::new("/token", ApiForm, "POST", "/token")
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("audience", "no-such-rs"),
                ])
                .basic("agent-runtime", "s3cret"),
            false,
        ),
        (
            Req::new("/token", ApiForm, "POST", "/token")
                .form(&[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", "alice-password"),
                ])
                .basic("agent-runtime", "s3cret"),
            false,
        ),
        (
            Req::new("/token", ApiForm, "POST", "/token").form(&[
                ("grant_type", "authorization_code"),
                ("code", &garbage),
                ("redirect_uri", "http://127.0.0.1:9999/callback"),
                ("code_verifier", verifier),
                ("client_id", "cli"),
            ]),
            false,
        ),
        (
            Req::new("/token", ApiForm, "POST", "/token").form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &garbage),
                ("client_id", "cli"),
            ]),
            false,
        ),
        (
            Req::new("/token", ApiForm, "POST", "/token")
                .form(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("subject_token", &s.access_token),
                    ("subject_token_type", token_type),
                    ("actor_token", &s.agent_token),
                    ("actor_token_type", jwt_type),
                    ("scope", "orders:read"),
                ])
                .basic("agent-runtime", "s3cret"),
            false,
        ),
        (
            Req::new("/token", ApiForm, "POST", "/token")
                .form(&[
                    ("grant_type", "urn:openid:params:grant-type:ciba"),
                    ("auth_req_id", &garbage),
                ])
                .basic("agent-runtime", "s3cret"),
            false,
        ),
        // POST /introspect (RFC 7662 §2.1).
        (
            Req::new("/introspect", ApiForm, "POST", "/introspect")
                .form(&[("token", &s.access_token)])
                .basic("orders-api", "rs-secret"),
            true,
        ),
        (
            Req::new("/introspect", ApiForm, "POST", "/introspect")
                .form(&[("token", &garbage), ("token_type_hint", "access_token")])
                .basic("orders-api", "rs-secret"),
            false,
        ),
        (
            Req::new("/introspect", ApiForm, "POST", "/introspect")
                .form(&[("token", &s.access_token)])
                .basic("agent-runtime", "s3cret"),
            false,
        ),
        // POST /revoke (RFC 7009 §2.1).
        (
            Req::new("/revoke", ApiForm, "POST", "/revoke")
                .form(&[
                    ("token", &s.access_token),
                    ("token_type_hint", "access_token"),
                ])
                .basic("agent-runtime", "s3cret"),
            true,
        ),
        (
            Req::new("/revoke", ApiForm, "POST", "/revoke")
                .form(&[("token", &s.access_token)])
                .basic("other-client", "other-secret"),
            false,
        ),
        (
            Req::new("/revoke", ApiForm, "POST", "/revoke")
                .form(&[("token", &garbage)])
                .basic("agent-runtime", "s3cret"),
            false,
        ),
        // POST /bc-authorize (CIBA Core §7.1).
        (
            Req::new("/bc-authorize", ApiForm, "POST", "/bc-authorize")
                .form(&[
                    ("scope", "orders:read"),
                    ("login_hint", "alice"),
                    ("binding_message", "approve me"),
                    ("subject_token", &s.access_token),
                    ("actor_token", &s.agent_token),
                ])
                .basic("agent-runtime", "s3cret"),
            false,
        ),
        // JSON: /attest/challenge, /attest, /attest/enroll, /attest/enroll/activate.
        (
            Req::new("/attest/challenge", Json, "POST", "/attest/challenge")
                .json(json!({"agent": "build-bot"})),
            true,
        ),
        (
            Req::new("/attest/challenge", Json, "POST", "/attest/challenge").json(json!({})),
            true,
        ),
        (
            Req::new("/attest/challenge", Json, "POST", "/attest/challenge")
                .json(json!({"agent": "x".repeat(300)})),
            false,
        ),
        (
            Req::new("/attest", Json, "POST", "/attest").json(json!({
                "agent": "build-bot", "nonce": garbage, "proof": s.agent_token,
            })),
            false,
        ),
        (
            Req::new("/attest", Json, "POST", "/attest").json(json!({
                "agent": "nobody", "nonce": "AAAA", "quote": "AAAA", "signature": "AAAA",
                "pcrs": {"sha256": {"0": "00"}},
            })),
            false,
        ),
        (
            Req::new("/attest/enroll", Json, "POST", "/attest/enroll").json(json!({
                "agent": "squatter", "ek_public": "AAAA", "ek_certificate": "AAAA",
                "ek_chain": ["AAAA"], "ak_public": "AAAA",
            })),
            false,
        ),
        (
            Req::new(
                "/attest/enroll/activate",
                Json,
                "POST",
                "/attest/enroll/activate",
            )
            .json(json!({"enrollment_id": garbage, "secret": "AAAA"})),
            false,
        ),
        // Web pages (no browser session and no CSRF cookie: every POST is refused).
        (
            Req::new("/login", WebForm, "POST", "/login").form(&[
                ("username", "alice"),
                ("password", "alice-password"),
                ("csrf_token", &garbage),
            ]),
            false,
        ),
        (
            Req::new("/authorize", WebForm, "POST", "/authorize").form(&[
                ("response_type", "code"),
                ("client_id", "cli"),
                ("redirect_uri", "http://127.0.0.1:9999/callback"),
                ("code_challenge", verifier),
                ("code_challenge_method", "S256"),
                ("username", "alice"),
                ("password", "alice-password"),
            ]),
            false,
        ),
        (
            Req::new("/consent", WebForm, "POST", "/consent").form(&[
                ("decision", "approve"),
                ("csrf_token", &garbage),
                ("pending", "client_id=cli&response_type=code"),
            ]),
            false,
        ),
        (
            Req::new("/approvals", WebForm, "POST", "/approvals").form(&[
                ("request", &garbage),
                ("decision", "approve"),
                ("scope", "orders:read"),
                ("csrf_token", &garbage),
            ]),
            false,
        ),
        (
            Req::new("/sessions/revoke", WebForm, "POST", "/sessions/revoke")
                .form(&[("sid", &s.sid), ("csrf_token", &garbage)]),
            false,
        ),
        // GETs: read-only, any mutation goes.
        (
            Req::new("/authorize", Get, "GET", "/authorize").query(&[
                ("response_type", "code"),
                ("client_id", "cli"),
                ("redirect_uri", "http://127.0.0.1:9999/callback"),
                ("code_challenge", verifier),
                ("code_challenge_method", "S256"),
                ("state", "xyz"),
                ("scope", "orders:read"),
            ]),
            false,
        ),
        (
            Req::new(
                "/sessions/{sid}",
                Get,
                "GET",
                &format!("/sessions/{}", s.sid),
            ),
            false,
        ),
        (Req::new("/sessions", Get, "GET", "/sessions"), false),
        (Req::new("/approvals", Get, "GET", "/approvals"), false),
        (
            Req::new("/login", Get, "GET", "/login").query(&[("next", "/sessions")]),
            false,
        ),
        (Req::new("/jwks.json", Get, "GET", "/jwks.json"), false),
        (
            Req::new(
                "/.well-known",
                Get,
                "GET",
                "/.well-known/oauth-authorization-server",
            ),
            false,
        ),
        (
            Req::new(
                "/.well-known",
                Get,
                "GET",
                "/.well-known/openid-configuration",
            ),
            false,
        ),
        (Req::new("/healthz", Get, "GET", "/healthz"), false),
        (Req::new("/readyz", Get, "GET", "/readyz"), false),
        (
            Req::new("/static", Get, "GET", "/static/mandate.css"),
            false,
        ),
        (Req::new("unknown", Get, "GET", "/no/such/path"), false),
    ]
}

// ---------------------------------------------------------------------------------------------
// Mutations.

const FATAL: &[&str] = &[
    "method",
    "duplicate",
    "nul",
    "bad_utf8",
    "content_type",
    "oversize_body",
    "truncated_json",
    "framing",
    "huge_header",
    "many_headers",
    "request_line",
    "header_syntax",
    "bad_auth",
    "path",
];

/// Whether fatal mutation `m` applies to `r` (and so guarantees a refusal).
fn applies(m: &str, r: &Req) -> bool {
    let has_params = match &r.body {
        Body::Form(p) => !p.is_empty(),
        _ => false,
    } || !r.query.is_empty();
    match m {
        "duplicate" => r.kind != Kind::Get || !r.query.is_empty(),
        "nul" | "bad_utf8" => has_params || r.kind == Kind::Json,
        "content_type" | "oversize_body" | "framing" => {
            matches!(r.kind, Kind::ApiForm | Kind::WebForm | Kind::Json)
        }
        "truncated_json" => r.kind == Kind::Json,
        "bad_auth" => r.basic.is_some(),
        _ => true,
    }
}

fn param_list(r: &mut Req) -> Option<&mut Vec<(String, String)>> {
    match &mut r.body {
        Body::Form(p) if !p.is_empty() => Some(p),
        _ if !r.query.is_empty() => Some(&mut r.query),
        _ => None,
    }
}

/// Inserts `bad` (raw, already encoded) into a random parameter's value or name.
fn poison_param(r: &mut Req, rng: &mut Rng, bad: &str) {
    if let Some(p) = param_list(r) {
        let i = rng.below(p.len());
        let (k, v) = &mut p[i];
        if rng.chance(20) {
            k.push_str(bad);
        } else {
            let at = rng.below(v.len() + 1);
            let at = (0..=at).rev().find(|a| v.is_char_boundary(*a)).unwrap_or(0);
            v.insert_str(at, bad);
        }
    }
}

/// Inserts `bad` (raw JSON text) into a string value of the JSON body.
fn poison_json(r: &mut Req, rng: &mut Rng, bad: &[u8]) {
    if let Body::Raw(b) = &mut r.body {
        // After an opening quote of a value: find `": "` and insert after the quote.
        let spots: Vec<usize> = b
            .windows(3)
            .enumerate()
            .filter(|(_, w)| w == b"\":\"")
            .map(|(i, _)| i + 3)
            .collect();
        let at = if spots.is_empty() {
            // `{}`: add a member.
            *b = br#"{"agent":""}"#.to_vec();
            10
        } else {
            *rng.pick(&spots)
        };
        for (k, x) in bad.iter().enumerate() {
            b.insert(at + k, *x);
        }
    }
}

fn fatal(r: &mut Req, m: &str, rng: &mut Rng) {
    r.notes.push(format!("fatal:{m}"));
    match m {
        "method" => {
            let post_only = r.kind != Kind::Get;
            let choices: &[&str] = if post_only {
                &[
                    "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "post", "P0ST", "FOO",
                    "CONNECT",
                ]
            } else {
                &["POST", "PUT", "DELETE", "PATCH", "get", "BREW"]
            };
            r.method = rng.pick(choices).as_bytes().to_vec();
        }
        "duplicate" if r.kind == Kind::Json => {
            // A repeated member (serde refuses it), or with `{}` a trailing comma.
            if let Body::Raw(b) = &mut r.body {
                b.splice(1..1, br#""agent":"x","#.iter().copied());
            }
        }
        "duplicate" => {
            // RFC 6749 §3.2: a repeated single-valued parameter. `client_id` is read first by
            // every API endpoint; web forms lose their CSRF token to the repetition.
            let name = match r.kind {
                Kind::ApiForm => "client_id",
                Kind::WebForm => "csrf_token",
                _ => "client_id",
            };
            let target = if r.kind == Kind::Get {
                &mut r.query
            } else {
                match &mut r.body {
                    Body::Form(p) => p,
                    _ => &mut r.query,
                }
            };
            target.push((name.into(), "one".into()));
            target.push((name.into(), "two".into()));
        }
        "nul" => {
            if r.kind == Kind::Json {
                let bad: &[u8] = if rng.chance(80) { br"\u0000" } else { b"\x00" };
                poison_json(r, rng, bad);
            } else {
                poison_param(r, rng, "%00");
            }
        }
        "bad_utf8" => {
            if r.kind == Kind::Json {
                let bad: &[&[u8]] = &[b"\xff", b"\xc3\x28", b"\xed\xa0\x80", br"\ud800"];
                let b = *rng.pick(bad);
                poison_json(r, rng, b);
            } else {
                let bad = ["%FF", "%C3%28", "%ED%A0%80", "%C0%AF", "%E2%82"];
                let b = *rng.pick(&bad);
                poison_param(r, rng, b);
            }
        }
        "content_type" => {
            let choices: &[&[u8]] = if r.kind == Kind::Json {
                &[
                    b"text/plain",
                    b"application/x-www-form-urlencoded",
                    b"application/jsonp",
                    b"json",
                    b"multipart/form-data; boundary=x",
                ]
            } else {
                &[
                    b"text/plain",
                    b"application/json",
                    b"multipart/form-data; boundary=x",
                    b"application/x-www-form-urlencodedx",
                    b"application/xml",
                    b"",
                ]
            };
            r.content_type = if rng.chance(15) {
                None
            } else {
                Some(rng.pick(choices).to_vec())
            };
            if r.body_bytes().iter().all(u8::is_ascii_whitespace) {
                r.body = Body::Raw(b"{\"agent\":\"x\"}".to_vec());
            }
        }
        "oversize_body" => {
            let pad = "a".repeat(70_000 + rng.below(200_000));
            match &mut r.body {
                Body::Form(p) => p.push(("pad".into(), pad)),
                _ => {
                    r.body =
                        Body::Raw(format!("{{\"agent\":\"x\",\"pad\":\"{pad}\"}}").into_bytes())
                }
            }
            if rng.chance(30) {
                r.framing = Framing::Chunked;
            }
        }
        "truncated_json" => {
            let b = r.body_bytes();
            let cut = 1 + rng.below(b.len().saturating_sub(1).max(1));
            r.body = Body::Raw(b[..cut.min(b.len() - 1).max(1)].to_vec());
        }
        "framing" => {
            r.framing = *rng.pick(&[
                Framing::BadChunked,
                Framing::TruncatedChunked,
                Framing::ShortLength,
            ]);
            r.half_close = matches!(r.framing, Framing::TruncatedChunked | Framing::ShortLength);
            if r.body_bytes().is_empty() {
                r.body = Body::Raw(b"{}".to_vec());
            }
        }
        "huge_header" => {
            let names: [&[u8]; 4] = [b"x-big", b"cookie", b"user-agent", b"referer"];
            let name = *rng.pick(&names);
            r.headers
                .push((name.to_vec(), vec![b'a'; 17_000 + rng.below(50_000)]));
        }
        "many_headers" => {
            for i in 0..(101 + rng.below(200)) {
                r.headers
                    .push((format!("x-h{i}").into_bytes(), b"v".to_vec()));
            }
        }
        "request_line" => {
            let path = String::from_utf8_lossy(&r.path).into_owned();
            let method = String::from_utf8_lossy(&r.method).into_owned();
            let lines: Vec<Vec<u8>> = vec![
                format!("{method} {path} HTTP/9.9").into_bytes(),
                format!("{method} {path} HTTP/2.0").into_bytes(),
                format!("{method} {path}").into_bytes(),
                format!("{method}  {path} HTTP/1.1").into_bytes(),
                format!("{method} {path} HTTP/1.1 extra").into_bytes(),
                format!("{method} {path}\x00 HTTP/1.1").into_bytes(),
                format!("{method} /a b/{path} HTTP/1.1").into_bytes(),
                format!("{method}\x01 {path} HTTP/1.1").into_bytes(),
                format!("{method} {path}\x7f HTTP/1.1").into_bytes(),
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            ];
            r.request_line = Some(rng.pick(&lines).clone());
        }
        "header_syntax" => {
            let bad: &[(&[u8], &[u8])] = &[
                (b"bad header", b"x"),
                (b"x-nul", b"a\x00b"),
                (b"x-ctl", b"a\x01b"),
                (b"", b"empty-name"),
                (b"x-fold", b"a\r\n folded"),
                (b"x(y)", b"v"),
                (b"content-length", b"-1"),
                (b"content-length", b"12abc"),
                (b"transfer-encoding", b"gzip, chunked, identity"),
                (b"transfer-encoding", b"chunked, chunked"),
                (b"content-encoding", b"gzip"),
            ];
            let (k, v) = rng.pick(bad);
            r.headers.push((k.to_vec(), v.to_vec()));
            if k.starts_with(b"content-") || k == b"transfer-encoding" {
                // Announce a body the framing headers then contradict.
                if r.body_bytes().is_empty() {
                    r.body = Body::Raw(b"{}".to_vec());
                }
            }
        }
        "bad_auth" => {
            let choice = rng.below(4);
            match choice {
                0 => {
                    if let Some((_, s)) = &mut r.basic {
                        s.push('x');
                    }
                }
                1 => {
                    r.basic = None;
                    r.headers
                        .push((b"authorization".to_vec(), b"Basic !!!not-base64".to_vec()));
                }
                2 => {
                    r.basic = None;
                    let raw = base64::engine::general_purpose::STANDARD
                        .encode(b"agent-runtime\x00:s3cret");
                    r.headers.push((
                        b"authorization".to_vec(),
                        format!("Basic {raw}").into_bytes(),
                    ));
                }
                _ => {
                    r.basic = None;
                    r.headers
                        .push((b"authorization".to_vec(), b"Bearer abc".to_vec()));
                }
            }
        }
        "path" => {
            let bad = [
                "%ZZ",
                "%C3%28",
                "%00",
                "%FF",
                "%",
                "%2",
                "%E2%82",
                "..%2F..%2Fetc",
                "a%0Ab",
                "%7F",
                "%C0%80",
            ];
            let b = *rng.pick(&bad);
            if r.endpoint == "/sessions/{sid}" || rng.chance(30) {
                r.path = format!("/sessions/{b}").into_bytes();
            } else if rng.chance(50) {
                r.path.extend_from_slice(b.as_bytes());
            } else {
                let long = format!("{}/{}", String::from_utf8_lossy(&r.path), "x".repeat(3000));
                r.path = long.into_bytes();
            }
        }
        _ => unreachable!("{m}"),
    }
}

/// Harmless changes that never turn a refused request into an accepted one.
fn extra(r: &mut Req, rng: &mut Rng) {
    let which = rng.below(10);
    r.notes.push(format!("extra:{which}"));
    match which {
        0 => {
            if let Some(p) = param_list(r) {
                let v = rng.printable(20);
                p.push((format!("x_{}", rng.below(100)), enc(&v)));
            }
        }
        1 => {
            if let Some(p) = param_list(r) {
                p.push(("x_long".into(), "b".repeat(2_000 + rng.below(20_000))));
            }
        }
        2 => {
            let v = rng.printable(30);
            r.headers.push((b"x-junk".to_vec(), v.into_bytes()));
        }
        3 => r.headers.push((
            b"cookie".to_vec(),
            b"mandate_session=garbage; mandate_csrf=seed; other=1".to_vec(),
        )),
        4 => {
            if r.framing == Framing::Length && !matches!(r.body, Body::None) {
                r.framing = Framing::Chunked;
            }
        }
        5 => {
            if r.request_line.is_none() {
                r.version = b"HTTP/1.0".to_vec();
            }
        }
        6 => {
            if let Body::Form(p) = &mut r.body {
                p.push(("audience".into(), "orders-api".into()));
                p.push(("audience".into(), enc(&rng.printable(10))));
            }
        }
        8 => {
            // A `%` that starts no escape stays as it is (WHATWG URL §5.1).
            let broken = *rng.pick(&["%ZZ", "%", "%4", "100%", "%%41"]);
            if let Some(p) = param_list(r) {
                p.push(("x_escape".into(), broken.into()));
            }
        }
        7 => r
            .headers
            .push((b"accept".to_vec(), b"*/*, text/html;q=0.1".to_vec())),
        _ => r
            .headers
            .push((b"x-forwarded-for".to_vec(), b"10.0.0.1, ::1".to_vec())),
    }
}

/// The requests of one run: every template in turn, mutated.
fn generate(seeds: &Seeds, n: usize) -> Vec<Req> {
    let mut rng = Rng(0x006d_616e_6461_7465);
    let base = templates(seeds, &mut rng);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (template, valid) = &base[i % base.len()];
        let mut r = template.clone();
        if *valid || rng.chance(70) {
            let choices: Vec<&str> = FATAL.iter().copied().filter(|m| applies(m, &r)).collect();
            let m = *rng.pick(&choices);
            fatal(&mut r, m, &mut rng);
        }
        for _ in 0..rng.below(3) {
            extra(&mut r, &mut rng);
        }
        out.push(r);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The server under test, and what is in its database.

struct Server {
    child: tokio::process::Child,
    addr: SocketAddr,
}

/// `mandate serve` with key-rotation checks slowed down, so the only writes are requests'.
async fn spawn_server(db: &TestDb, extra: &str) -> Server {
    let config = write_config(db, extra);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("MANDATE_LOG", "error")
        .env("MANDATE_KEYS_CHECK_INTERVAL", "1h")
        .env("MALLOC_MMAP_THRESHOLD_", "262144")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("server did not start in 30s")
        .unwrap()
        .expect("server exited before listening");
    let url = line.strip_prefix("listening on ").unwrap().to_string();
    Server {
        child,
        addr: raw::addr_of(&url),
    }
}

/// A field of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Samples the server's anonymous resident memory (its heap and stacks: `RssAnon`; `VmRSS`
/// also counts the pages of the 300 MB debug binary it touched) until `stop`, and returns the
/// peak.
fn sample_heap(pid: u32, stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(status_kib(pid, "RssAnon:"));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak.max(status_kib(pid, "RssAnon:"))
    })
}

/// Every row of every table, as text, sorted per table.
async fn snapshot(db: &TestDb) -> BTreeMap<String, Vec<String>> {
    match db.backend {
        Backend::Sqlite => {
            let path = db.url.trim_start_matches("sqlite://").to_string();
            tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut tables: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                    .unwrap()
                    .query_map([], |row| row.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                tables.sort();
                let mut out = BTreeMap::new();
                for t in tables {
                    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
                    let cols = stmt.column_count();
                    let mut rows: Vec<String> = stmt
                        .query_map([], |row| {
                            Ok((0..cols)
                                .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                                .collect::<Vec<_>>()
                                .join("|"))
                        })
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap();
                    rows.sort();
                    out.insert(t, rows);
                }
                out
            })
            .await
            .unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let mut out = BTreeMap::new();
            for (t,) in tables {
                let rows: Vec<(String,)> =
                    sqlx::query_as(&format!("SELECT r::text FROM \"{t}\" r"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                let mut rows: Vec<String> = rows.into_iter().map(|(r,)| r).collect();
                rows.sort();
                out.insert(t, rows);
            }
            pool.close().await;
            out
        }
    }
}

/// The live values the generator mixes into requests: an access token, an agent token, and
/// the access token's session id.
async fn seed(addr: SocketAddr, bot: &TestAgent) -> Seeds {
    let url = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let v: Value = http
        .post(format!("{url}/token"))
        .basic_auth("agent-runtime", Some("s3cret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "orders:read"),
            ("audience", "orders-api"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access_token = v["access_token"].as_str().unwrap().to_string();
    let v: Value = http
        .post(format!("{url}/attest/challenge"))
        .json(&json!({"agent": bot.name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nonce = v["nonce"].as_str().unwrap().to_string();
    let claims = json!({"iss": bot.name, "sub": bot.name, "aud": url, "nonce": nonce,
        "iat": now(), "exp": now() + 60, "jti": format!("seed-{nonce}")});
    let proof = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &bot.key,
    )
    .unwrap();
    let resp = http
        .post(format!("{url}/attest"))
        .json(&json!({"agent": bot.name, "nonce": nonce, "proof": proof}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let agent_token = v["agent_token"].as_str().unwrap().to_string();
    let payload = access_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    Seeds {
        access_token,
        agent_token,
        sid: claims["sid"].as_str().unwrap_or("no-sid").to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The checks.

/// What is wrong with one answer, if anything.
fn judge(r: &Req, o: &Outcome, took: Duration) -> Option<String> {
    match o {
        Outcome::Hang { partial } => Some(format!(
            "no answer and no close within {took:?} (got {} bytes)",
            partial.len()
        )),
        Outcome::Closed => None,
        Outcome::Response { status, head, body } => {
            if *status >= 500 {
                return Some(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ));
            }
            if *status < 400 || body.is_empty() {
                return None;
            }
            let ct = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-type")
                        .then(|| v.trim().to_ascii_lowercase())
                })
                .unwrap_or_default();
            if ct.starts_with("text/html") {
                return None;
            }
            if ct.starts_with("application/json") {
                let v: Value = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(_) => return Some(format!("{status}: a JSON error that is not JSON")),
                };
                // RFC 6749 §5.2.
                if v["error"].is_string() && v["error_description"].is_string() {
                    return None;
                }
                return Some(format!(
                    "{status}: JSON error without error/error_description: {v}"
                ));
            }
            let _ = r;
            Some(format!(
                "{status} with content-type `{ct}` (a framework rejection?): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        }
    }
}

/// Sends every request (over [`WORKERS`] connections at a time) and judges every answer;
/// returns the failures and a count of outcomes, while sampling the server's heap.
async fn round(
    addr: SocketAddr,
    pid: u32,
    requests: &Arc<Vec<Req>>,
) -> (Vec<String>, BTreeMap<String, usize>, u64) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_heap(pid, stop.clone());
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let requests = requests.clone();
        workers.spawn(async move {
            let mut results = Vec::new();
            for i in (w..requests.len()).step_by(WORKERS) {
                let r = &requests[i];
                let t = Instant::now();
                let o = raw::exchange(addr, &r.to_bytes(), r.half_close, WAIT).await;
                results.push((i, o, t.elapsed()));
            }
            results
        });
    }
    let mut results = Vec::new();
    while let Some(r) = workers.join_next().await {
        results.extend(r.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let heap_peak = sampler.await.unwrap();
    results.sort_by_key(|(i, _, _)| *i);
    assert_eq!(results.len(), requests.len());
    let mut failures = Vec::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (i, o, took) in &results {
        let r = &requests[*i];
        let key = match o {
            Outcome::Response { status, .. } => status.to_string(),
            Outcome::Closed => "closed".into(),
            Outcome::Hang { .. } => "hang".into(),
        };
        *outcomes.entry(key).or_default() += 1;
        if let Some(why) = judge(r, o, *took) {
            failures.push(format!("#{i} {why}\n  {}", r.describe()));
        }
    }
    (failures, outcomes, heap_peak)
}

/// SPEC "Never a 500 for bad input" and the connection invariant, on every backend: 1,200
/// malformed requests, sent twice (RFC 6749 §3.2 repeated parameters and §5.2 error shape,
/// RFC 9112 framing errors, RFC 9110 §15.5 client errors) — no 5xx, no hang, bounded memory,
/// and nothing in the database changed but the audit entries the product writes on purpose.
#[tokio::test]
async fn malformed_requests_get_4xx_change_nothing_and_never_hang() {
    let bot = TestAgent::new("build-bot");
    let extra = format!(
        "{}\n[attestation]\nek_allowlist = [\"{}\"]\n",
        bot.toml(),
        "0".repeat(64)
    );
    for backend in backends() {
        let db = test_db(backend).await;
        let server = spawn_server(&db, &extra).await;
        let addr = server.addr;
        let pid = server.child.id().unwrap();
        let seeds = seed(addr, &bot).await;
        let heap_before = status_kib(pid, "RssAnon:");
        let before = snapshot(&db).await;
        let audit_before = before.get("audit_log").map_or(0, Vec::len);
        let requests = Arc::new(generate(&seeds, REQUESTS));

        // The same requests twice: the second round shows whether memory grows with the
        // number of requests (a leak, or something stored per request) or only with what is
        // in flight at once (argon2's 19 MiB per check, kept by the allocator after the first).
        let mut at_rest = Vec::new();
        for pass in 1..=3 {
            let start = Instant::now();
            let (failures, outcomes, heap_peak) = round(addr, pid, &requests).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            at_rest.push(status_kib(pid, "RssAnon:"));
            eprintln!(
                "{backend:?} round {pass}: {REQUESTS} requests in {:?}; outcomes {outcomes:?}; \
                 server heap {heap_before} KiB before, peak {heap_peak} KiB, then {} KiB",
                start.elapsed(),
                at_rest[pass - 1],
            );
            assert!(
                failures.is_empty(),
                "{backend:?}: {} bad answers, the first ones:\n{}",
                failures.len(),
                failures
                    .iter()
                    .take(15)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            assert!(
                heap_peak < heap_before + MAX_HEAP_GROWTH_KIB,
                "{backend:?}: the server's heap grew from {heap_before} KiB to {heap_peak} KiB"
            );
        }
        // Something is allocated once, lazily, on the first request of some kind (about 19 MiB,
        // an argon2 block's size), and which round first sends it depends on timing: compare the
        // last round with the largest before it, so only growth that repeats counts.
        let earlier = at_rest.iter().take(2).copied().max().unwrap_or_default();
        assert!(
            at_rest[2] < earlier + MAX_HEAP_CREEP_KIB,
            "{backend:?}: the server's heap keeps what requests leave behind: {at_rest:?} KiB"
        );
        // Still up.
        assert_eq!(
            raw::get_status(addr, "/healthz", Duration::from_secs(2)).await,
            Some(200)
        );

        // Nothing changed but the audit log, and only by entries of the allowed kinds.
        let after = snapshot(&db).await;
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>()
        );
        for (table, rows) in &before {
            if table == "audit_log" || table == "audit_head" {
                continue;
            }
            let now_rows = &after[table];
            assert!(
                rows == now_rows,
                "{backend:?}: table {table} changed:\nbefore {rows:#?}\nafter {now_rows:#?}"
            );
        }
        let audit_after = &after["audit_log"];
        for row in &before["audit_log"] {
            assert!(
                audit_after.contains(row),
                "{backend:?}: an audit entry changed"
            );
        }
        let store = mandate::store::open(&db.url, 2).await.unwrap();
        let entries = store.audit_entries(0, 1_000_000).await.unwrap();
        store.close().await;
        assert_eq!(entries.len(), audit_after.len());
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for e in entries.iter().skip(audit_before) {
            *kinds.entry(e.kind.as_str()).or_default() += 1;
        }
        eprintln!("{backend:?}: audit entries written: {kinds:?}");
        for kind in kinds.keys() {
            assert!(
                ALLOWED_AUDIT.contains(kind),
                "{backend:?}: a bad request wrote a `{kind}` audit entry"
            );
        }
        if audit_after.len() == audit_before {
            assert_eq!(before.get("audit_head"), after.get("audit_head"));
        }
        drop(server);
    }
}
