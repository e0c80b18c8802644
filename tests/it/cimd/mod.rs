//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-03), the resolver
//! driven directly against real https servers on loopback: a test CA and a leaf certificate for
//! `127.0.0.1`/`localhost` made here, documents served by tokio-rustls on port 0, and servers
//! that misbehave in every way the draft's "Security Considerations" name. The server wiring
//! (`/authorize`, consent, metadata) is tested where it is made.

mod cache;
mod fetch;
mod signin;

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
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) server: Arc<rustls::ServerConfig>,
}

pub(crate) fn pki() -> Pki {
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
