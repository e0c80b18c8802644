//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-03), the resolver
//! driven directly against real https servers on loopback: a test CA and a leaf certificate for
//! `127.0.0.1`/`localhost` made here, documents served by tokio-rustls on port 0, and servers
//! that misbehave in every way the draft's "Security Considerations" name. The server wiring
//! (`/authorize`, consent, metadata) is tested where it is made.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mandate::cimd::{AddressClass, DocumentRule, Refusal, Resolver, UrlRule};
use mandate::clock::{SharedClock, TestClock};
use mandate::config::CimdConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const START: i64 = 1_790_000_000;

/// A CA, and a server configuration with a leaf it signed for `localhost` and `127.0.0.1`.
struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "mandate test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

/// What a test server does once it has read a request head.
#[derive(Clone)]
enum Reply {
    /// These bytes, then close.
    Bytes(Vec<u8>),
    /// These bytes after a pause.
    Later(Duration, Vec<u8>),
    /// Nothing, ever (the connection stays open).
    Hang,
    /// A 200 head (Content-Length under the limit), then one byte of body every 200 ms.
    Trickle,
    /// A 200 head without Content-Length, then body as fast as it is read, forever.
    Endless,
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn json_response(doc: &serde_json::Value, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(extra);
    Reply::Bytes(response("200 OK", &headers, doc.to_string().as_bytes()))
}

/// A server on 127.0.0.1, port 0: counts the connections it accepted and keeps every request
/// head it read.
struct DocServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    reply: Arc<Mutex<Reply>>,
}

impl DocServer {
    /// `tls`: None serves plain HTTP on the port (a misconfigured "https" server).
    async fn start(tls: Option<Arc<rustls::ServerConfig>>, reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(reply));
        let (c, r, rep) = (connections.clone(), requests.clone(), reply.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, rep, tls) = (r.clone(), rep.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(cfg) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                            if let Ok(s) = acceptor.accept(tcp).await {
                                serve_one(s, r, rep).await;
                            }
                        }
                        None => serve_one(tcp, r, rep).await,
                    }
                });
            }
        });
        Self {
            addr,
            connections,
            requests,
            reply,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn hits(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn serve_one<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    requests: Arc<Mutex<Vec<String>>>,
    reply: Arc<Mutex<Reply>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        // A TLS ClientHello (record type 22) at a plain-HTTP server: it answers as one would.
        if head.first() == Some(&0x16) {
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                .await;
            return;
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    requests
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&head).into_owned());
    let reply = reply.lock().unwrap().clone();
    match reply {
        Reply::Bytes(b) => {
            let _ = s.write_all(&b).await;
        }
        Reply::Later(d, b) => {
            tokio::time::sleep(d).await;
            let _ = s.write_all(&b).await;
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Reply::Trickle => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if s.write_all(b" ").await.is_err() || s.flush().await.is_err() {
                    return;
                }
            }
        }
        Reply::Endless => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = [b' '; 1024];
            while s.write_all(&chunk).await.is_ok() {}
        }
    }
    let _ = s.shutdown().await;
}

/// A resolver trusting `pki`'s CA, loopback allowed, short timeouts, on a test clock.
struct Setup {
    resolver: Resolver,
    clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
}

fn setup(pki: &Pki, tweak: impl FnOnce(&mut CimdConfig)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let mut config = CimdConfig {
        enabled: true,
        allow_private_addresses: true,
        extra_ca_file: Some(PathBuf::from("ca.pem")),
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        ..CimdConfig::default()
    };
    tweak(&mut config);
    let clock = Arc::new(TestClock::new(START));
    let shared: SharedClock = clock.clone();
    let resolver = Resolver::new(&config, dir.path(), shared).unwrap();
    Setup {
        resolver,
        clock,
        _dir: dir,
    }
}

fn document(url: &str) -> serde_json::Value {
    json!({
        "client_id": url,
        "client_name": "Example MCP Client",
        "client_uri": "https://app.example.com",
        "redirect_uris": ["http://127.0.0.1:3000/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

/// A server that serves the good document for its own URL at `/client.json`.
async fn good_server(pki: &Pki, extra: &[(&str, &str)]) -> (DocServer, String) {
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    server.set(json_response(&document(&url), extra));
    (server, url)
}

/// Draft-03 "Client Information Discovery": the document is fetched with one GET of the URL
/// (Host from the URL, asking for JSON) and read into the typed client.
#[tokio::test]
async fn a_good_document_resolves_over_https_with_the_test_ca() {
    let pki = pki();
    let (server, url) = good_server(&pki, &[]).await;
    let s = setup(&pki, |_| {});
    let client = s.resolver.resolve(&url).await.unwrap();
    assert_eq!(client.client_id, url);
    assert_eq!(client.host, "127.0.0.1");
    assert_eq!(client.client_name.as_deref(), Some("Example MCP Client"));
    assert_eq!(client.redirect_uris, vec!["http://127.0.0.1:3000/callback"]);
    assert!(client.allows_redirect_uri("http://127.0.0.1:54321/callback"));
    assert!(client.allows_grant("refresh_token"));
    assert!(client.loopback_redirects_only());
    assert!(!client.listed);
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let head = requests[0].to_ascii_lowercase();
    assert!(head.starts_with("get /client.json http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nhost: 127.0.0.1:{}\r\n", server.addr.port())),
        "{head}"
    );
    assert!(head.contains("\r\naccept: application/json\r\n"), "{head}");
    // By name too: `localhost` resolves to loopback, SNI and certificate name are `localhost`.
    let by_name = format!("https://localhost:{}/client.json", server.addr.port());
    server.set(json_response(&document(&by_name), &[]));
    let client = s.resolver.resolve(&by_name).await.unwrap();
    assert_eq!(client.host, "localhost");
}

/// Draft-03 "Server Side Request Forgery (SSRF) Attacks": a URL that resolves to a special-use
/// address is refused before anything is sent to it, unless the operator allowed private
/// addresses; link-local stays refused even then.
#[tokio::test]
async fn loopback_is_refused_before_any_connection_unless_the_operator_allows_it() {
    let pki = pki();
    let (server, url) = good_server(&pki, &[]).await;
    let s = setup(&pki, |c| c.allow_private_addresses = false);
    assert_eq!(
        s.resolver.resolve(&url).await.unwrap_err(),
        Refusal::SpecialAddress(AddressClass::Loopback)
    );
    let by_name = format!("https://localhost:{}/client.json", server.addr.port());
    assert_eq!(
        s.resolver.resolve(&by_name).await.unwrap_err(),
        Refusal::SpecialAddress(AddressClass::Loopback)
    );
    let v6 = format!(
        "https://[::ffff:127.0.0.1]:{}/client.json",
        server.addr.port()
    );
    assert_eq!(
        s.resolver.resolve(&v6).await.unwrap_err(),
        Refusal::SpecialAddress(AddressClass::Loopback)
    );
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        0,
        "nothing may reach a refused address"
    );
    let open = setup(&pki, |c| c.allow_private_addresses = true);
    assert_eq!(
        open.resolver
            .resolve("https://169.254.169.254/latest/meta-data")
            .await
            .unwrap_err(),
        Refusal::SpecialAddress(AddressClass::LinkLocal)
    );
    assert!(open.resolver.resolve(&url).await.is_ok());
    // The refusal names the rule, never the address.
    let text = Refusal::SpecialAddress(AddressClass::Loopback).to_string();
    assert!(!text.contains("127.0.0.1"), "{text}");
}

/// Draft-03: the document's `client_id` MUST equal the URL (simple string comparison).
#[tokio::test]
async fn a_document_whose_client_id_differs_from_its_url_is_refused() {
    let pki = pki();
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let s = setup(&pki, |_| {});
    for other in [
        format!("{url}/"),
        server.url("/other.json"),
        format!("https://localhost:{}/client.json", server.addr.port()),
    ] {
        server.set(json_response(&document(&other), &[]));
        s.clock.advance(3600);
        assert_eq!(
            s.resolver.resolve(&url).await.unwrap_err(),
            Refusal::Document(DocumentRule::ClientIdMismatch),
            "{other}"
        );
    }
}

/// Draft-03 "Client Identifier URL": https only. An `http` URL is refused without a fetch; an
/// https URL whose server answers in plain HTTP fails the TLS handshake.
#[tokio::test]
async fn plain_http_is_refused() {
    let pki = pki();
    let plain = DocServer::start(None, Reply::Hang).await;
    let http_url = format!("http://127.0.0.1:{}/client.json", plain.addr.port());
    plain.set(json_response(&document(&http_url), &[]));
    let s = setup(&pki, |_| {});
    assert_eq!(
        s.resolver.resolve(&http_url).await.unwrap_err(),
        Refusal::Url(UrlRule::NotHttps)
    );
    assert_eq!(plain.connections.load(Ordering::SeqCst), 0);
    let https_url = plain.url("/client.json");
    assert_eq!(
        s.resolver.resolve(&https_url).await.unwrap_err(),
        Refusal::Tls
    );
    assert_eq!(plain.hits(), 0, "no request was sent in the clear");
}

/// Draft-03 "Client Information Discovery": the server MUST NOT follow redirects; a 3xx, to
/// another host or the same one, is a refusal that names it.
#[tokio::test]
async fn redirects_are_refused_never_followed() {
    let pki = pki();
    let (target, target_url) = good_server(&pki, &[]).await;
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let s = setup(&pki, |c| c.failure_ttl = Duration::ZERO);
    let same_host = server.url("/moved.json");
    for (status, location) in [
        ("302 Found", target_url.as_str()),
        ("301 Moved Permanently", same_host.as_str()),
        ("307 Temporary Redirect", same_host.as_str()),
        ("308 Permanent Redirect", target_url.as_str()),
    ] {
        server.set(Reply::Bytes(response(
            status,
            &[("Location", location), ("Content-Type", "application/json")],
            b"{}",
        )));
        let code: u16 = status[..3].parse().unwrap();
        let err = s.resolver.resolve(&url).await.unwrap_err();
        assert_eq!(err, Refusal::Redirect(code), "{status}");
        assert!(err.to_string().contains(&code.to_string()));
    }
    assert_eq!(target.connections.load(Ordering::SeqCst), 0);
    let paths: Vec<String> = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.lines().next().unwrap_or_default().to_string())
        .collect();
    assert!(
        paths.iter().all(|l| l.starts_with("GET /client.json ")),
        "{paths:?}"
    );
    // And other statuses are not documents either (draft-03: only 200).
    for (status, code) in [
        ("404 Not Found", 404),
        ("500 Internal Server Error", 500),
        ("204 No Content", 204),
    ] {
        server.set(Reply::Bytes(response(
            status,
            &[("Content-Type", "application/json")],
            b"",
        )));
        assert_eq!(
            s.resolver.resolve(&url).await.unwrap_err(),
            Refusal::Status(code)
        );
    }
}

/// Draft-03 "Maximum Response Size for Client Metadata Documents": 5 KB by default; a larger
/// Content-Length is refused at once, and a body without one is cut off at the limit instead of
/// being read to its (possibly endless) end.
#[tokio::test]
async fn a_document_too_large_or_endless_is_cut_off() {
    let pki = pki();
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let s = setup(&pki, |c| {
        c.failure_ttl = Duration::ZERO;
        c.timeout = Duration::from_secs(10);
    });
    let mut big = document(&url);
    big["padding"] = json!("x".repeat(6000));
    server.set(json_response(&big, &[]));
    assert_eq!(
        s.resolver.resolve(&url).await.unwrap_err(),
        Refusal::TooLarge(5120)
    );
    server.set(Reply::Endless);
    let started = Instant::now();
    assert_eq!(
        s.resolver.resolve(&url).await.unwrap_err(),
        Refusal::TooLarge(5120)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut off at the limit, not at the timeout: {:?}",
        started.elapsed()
    );
    // Just under the limit is fine.
    let mut fits = document(&url);
    let len = fits.to_string().len();
    fits["padding"] = json!("x".repeat(5120 - len - 14));
    assert!(fits.to_string().len() <= 5120);
    server.set(json_response(&fits, &[]));
    assert!(s.resolver.resolve(&url).await.is_ok());
}

/// A server that never answers, or trickles a byte at a time, costs at most `cimd.timeout`.
#[tokio::test]
async fn a_server_that_hangs_or_trickles_times_out() {
    let pki = pki();
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let s = setup(&pki, |c| {
        c.timeout = Duration::from_secs(1);
        c.failure_ttl = Duration::ZERO;
    });
    for reply in [Reply::Hang, Reply::Trickle] {
        server.set(reply);
        let started = Instant::now();
        assert_eq!(
            s.resolver.resolve(&url).await.unwrap_err(),
            Refusal::Timeout(1000)
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
}

#[tokio::test]
async fn a_document_not_served_as_json_or_not_json_is_refused() {
    let pki = pki();
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let s = setup(&pki, |c| c.failure_ttl = Duration::ZERO);
    let body = document(&url).to_string();
    for ct in [Some("text/html"), Some("text/plain"), None] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("Content-Type", c)).into_iter().collect();
        server.set(Reply::Bytes(response("200 OK", &headers, body.as_bytes())));
        assert_eq!(
            s.resolver.resolve(&url).await.unwrap_err(),
            Refusal::ContentType,
            "{ct:?}"
        );
    }
    server.set(Reply::Bytes(response(
        "200 OK",
        &[(
            "Content-Type",
            "application/oauth-client+json; charset=utf-8",
        )],
        body.as_bytes(),
    )));
    assert!(
        s.resolver.resolve(&url).await.is_ok(),
        "+json types are JSON"
    );
    s.clock.advance(86_400);
    for bad in [
        &b"{\"client_id\": "[..],
        b"<html></html>",
        b"[1, 2]",
        b"null",
    ] {
        server.set(Reply::Bytes(response(
            "200 OK",
            &[("Content-Type", "application/json")],
            bad,
        )));
        assert_eq!(
            s.resolver.resolve(&url).await.unwrap_err(),
            Refusal::NotJson
        );
    }
}

/// A certificate from a CA the server does not trust is a TLS refusal (and nothing is sent).
#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let trusted = pki();
    let other = pki();
    let (server, url) = good_server(&other, &[]).await;
    let s = setup(&trusted, |_| {});
    assert_eq!(s.resolver.resolve(&url).await.unwrap_err(), Refusal::Tls);
    assert_eq!(server.hits(), 0);
    // Without the extra CA file, the test CA is not trusted either: only webpki's roots are.
    let no_ca = setup(&other, |c| c.extra_ca_file = None);
    assert_eq!(
        no_ca.resolver.resolve(&url).await.unwrap_err(),
        Refusal::Tls
    );
}

/// Draft-03 "Metadata Caching": a document is kept as its headers say, within the operator's
/// bounds; `no-store` and `max-age=0` mean the minimum (60 s), never "fetch every time".
#[tokio::test]
async fn documents_are_cached_by_their_headers_within_the_bounds() {
    let pki = pki();
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let s = setup(&pki, |_| {});
    let cases: [(&[(&str, &str)], i64); 5] = [
        (&[], 300),
        (&[("Cache-Control", "max-age=3600")], 3600),
        (&[("Cache-Control", "no-store")], 60),
        (&[("Cache-Control", "max-age=0")], 60),
        (&[("Cache-Control", "max-age=31536000")], 86_400),
    ];
    let mut fetched = 0;
    for (headers, lifetime) in cases {
        server.set(json_response(&document(&url), headers));
        s.resolver.resolve(&url).await.unwrap();
        fetched += 1;
        assert_eq!(server.hits(), fetched, "{headers:?}: fetched");
        s.clock.advance(lifetime - 1);
        s.resolver.resolve(&url).await.unwrap();
        assert_eq!(
            server.hits(),
            fetched,
            "{headers:?}: cached until {lifetime}s"
        );
        s.clock.advance(1);
        // Expired: the next case's call fetches again.
    }
    s.resolver.resolve(&url).await.unwrap();
    assert_eq!(server.hits(), fetched + 1);
    assert_eq!(s.resolver.cached(), 1);
}

/// A failure is remembered for `failure_ttl`, so a flood of requests naming a bad URL costs one
/// fetch, not one each; after it the URL is fetched again (the draft: errors are not cached as
/// documents, and a fixed document is picked up).
#[tokio::test]
async fn failures_are_remembered_briefly_so_a_flood_costs_one_fetch() {
    let pki = pki();
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let s = setup(&pki, |c| c.failure_ttl = Duration::from_secs(10));
    server.set(Reply::Bytes(response("404 Not Found", &[], b"")));
    for _ in 0..20 {
        assert_eq!(
            s.resolver.resolve(&url).await.unwrap_err(),
            Refusal::Status(404)
        );
    }
    assert_eq!(server.hits(), 1);
    server.set(json_response(&document(&url), &[]));
    s.clock.advance(9);
    assert!(s.resolver.resolve(&url).await.is_err());
    s.clock.advance(1);
    assert!(s.resolver.resolve(&url).await.is_ok());
    assert_eq!(server.hits(), 2);
}

/// MCP 2026-07-28 "Trust Policies": the operator's lists decide before any fetch; a block wins.
#[tokio::test]
async fn blocked_and_unlisted_domains_are_refused_without_a_fetch() {
    let pki = pki();
    let (server, url) = good_server(&pki, &[]).await;
    let blocked = setup(&pki, |c| {
        c.allowed_domains = vec!["127.0.0.1".into()];
        c.blocked_domains = vec!["127.0.0.1".into()];
    });
    assert_eq!(
        blocked.resolver.resolve(&url).await.unwrap_err(),
        Refusal::Blocked
    );
    let unlisted = setup(&pki, |c| c.allowed_domains = vec!["*.example.com".into()]);
    assert_eq!(
        unlisted.resolver.resolve(&url).await.unwrap_err(),
        Refusal::NotAllowed
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    let listed = setup(&pki, |c| c.allowed_domains = vec!["127.0.0.1".into()]);
    assert!(listed.resolver.resolve(&url).await.unwrap().listed);
}

/// One fetch per URL at a time: callers that arrive while it runs wait for its result.
#[tokio::test]
async fn concurrent_callers_share_one_fetch() {
    let pki = pki();
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let body = response(
        "200 OK",
        &[("Content-Type", "application/json")],
        document(&url).to_string().as_bytes(),
    );
    server.set(Reply::Later(Duration::from_millis(300), body));
    let s = setup(&pki, |_| {});
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (r, u) = (s.resolver.clone(), url.clone());
            tokio::spawn(async move { r.resolve(&u).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(server.hits(), 1);
}

/// A caller that gives up (a client that hung up on `/authorize`) leaves nothing behind: the
/// next caller fetches afresh.
#[tokio::test]
async fn a_cancelled_fetch_leaves_nothing_behind() {
    let pki = pki();
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let s = setup(&pki, |_| {});
    let gave_up = tokio::time::timeout(Duration::from_millis(300), s.resolver.resolve(&url)).await;
    assert!(gave_up.is_err());
    server.set(json_response(&document(&url), &[]));
    assert!(s.resolver.resolve(&url).await.is_ok());
    assert_eq!(server.hits(), 2);
    assert_eq!(s.resolver.cached(), 1);
}

/// `cimd.max_concurrent_fetches` bounds the fetches under way over all URLs; a caller that
/// cannot start one within the timeout is told the server is busy (and that is not remembered).
#[tokio::test]
async fn the_global_fetch_bound_holds() {
    let pki = pki();
    let hanging = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let (good, good_url) = good_server(&pki, &[]).await;
    let s = setup(&pki, |c| {
        c.max_concurrent_fetches = 1;
        c.timeout = Duration::from_secs(1);
    });
    // Two fetches that hang: the first holds the one permit for 1 s, the second takes it next.
    let mut hung = Vec::new();
    for path in ["/a.json", "/b.json"] {
        let (r, u) = (s.resolver.clone(), hanging.url(path));
        hung.push(tokio::spawn(async move { r.resolve(&u).await }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        s.resolver.resolve(&good_url).await.unwrap_err(),
        Refusal::Busy
    );
    assert_eq!(good.connections.load(Ordering::SeqCst), 0);
    for h in hung {
        assert_eq!(h.await.unwrap().unwrap_err(), Refusal::Timeout(1000));
    }
    assert!(s.resolver.resolve(&good_url).await.is_ok());
}

#[tokio::test]
async fn a_disabled_resolver_refuses_everything_and_bad_setup_is_reported() {
    let pki = pki();
    let (server, url) = good_server(&pki, &[]).await;
    let s = setup(&pki, |c| c.enabled = false);
    assert!(!s.resolver.enabled());
    assert_eq!(
        s.resolver.resolve(&url).await.unwrap_err(),
        Refusal::Disabled
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    let dir = tempfile::tempdir().unwrap();
    let clock: SharedClock = Arc::new(TestClock::new(START));
    let missing = CimdConfig {
        extra_ca_file: Some(PathBuf::from("nope.pem")),
        ..CimdConfig::default()
    };
    let err = Resolver::new(&missing, dir.path(), clock.clone()).unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");
    std::fs::write(dir.path().join("empty.pem"), "-----BEGIN NOTHING-----\n").unwrap();
    let empty = CimdConfig {
        extra_ca_file: Some(PathBuf::from("empty.pem")),
        ..CimdConfig::default()
    };
    assert!(Resolver::new(&empty, dir.path(), clock).is_err());
}

/// The `[cimd]` section: defaults are safe (off, no private addresses, 5 KB, a few seconds), and
/// bad values stop the server at start with the key named.
#[test]
fn the_cimd_config_section_defaults_off_and_refuses_bad_values() {
    let c = mandate::config::Config::defaults().cimd;
    assert!(!c.enabled && !c.allow_private_addresses);
    assert_eq!(c.max_bytes, 5120);
    assert_eq!(c.timeout, Duration::from_secs(5));
    for (text, key) in [
        ("[cimd]\nmax_bytes = 70000\n", "cimd.max_bytes"),
        ("[cimd]\nmax_bytes = 0\n", "cimd.max_bytes"),
        ("[cimd]\ntimeout = \"0s\"\n", "cimd.timeout"),
        ("[cimd]\ntimeout = \"5m\"\n", "cimd.timeout"),
        (
            "[cimd]\nconnect_timeout = \"10s\"\n",
            "cimd.connect_timeout",
        ),
        ("[cimd]\ncache_min_ttl = \"10m\"\n", "cimd.cache_"),
        ("[cimd]\ncache_max_ttl = \"1m\"\n", "cimd.cache_"),
        ("[cimd]\ncache_max_entries = 0\n", "cimd.cache_max_entries"),
        ("[cimd]\nfailure_ttl = \"2m\"\n", "cimd.failure_ttl"),
        (
            "[cimd]\nmax_concurrent_fetches = 0\n",
            "cimd.max_concurrent_fetches",
        ),
        (
            "[cimd]\nallowed_domains = [\"https://x.example\"]\n",
            "cimd.allowed_domains",
        ),
        (
            "[cimd]\nblocked_domains = [\"Evil.example\"]\n",
            "cimd.blocked_domains",
        ),
        ("[cimd]\nno_such_key = 1\n", "no_such_key"),
    ] {
        let err = mandate::config::Config::from_toml(text, "t.toml", Vec::new()).unwrap_err();
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
    let env = mandate::config::Config::from_toml(
        "",
        "t.toml",
        vec![("MANDATE_CIMD_ENABLED".to_string(), "true".to_string())],
    )
    .unwrap();
    assert!(env.cimd.enabled);
}
