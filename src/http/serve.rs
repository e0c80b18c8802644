//! Serving connections under limits that `axum::serve` does not expose.
//!
//! Each accepted TCP connection is driven by hyper's HTTP/1.1 connection with:
//! - a bound on the time to read a request head ([`Limits::header_read_timeout`], also the idle
//!   time allowed between two requests of a kept-alive connection): a client that trickles a
//!   header line now and then (slowloris) is closed, as the SPEC requires ("connections that do
//!   not finish their request head in bounded time are closed"; RFC 9112 §9.8 lets a server close
//!   a connection it no longer wants);
//! - a bound on the size and the number of header fields (431 past them);
//! - a bound on the connections served at once ([`Limits::max_connections`]).
//!
//! Past the connection bound a new connection is accepted, told `503` if the socket takes the
//! bytes at once, and closed. Holding the accept instead would leave every new client — the
//! health check too — waiting in the kernel's backlog behind whatever the flood queued there,
//! and once the backlog is full the kernel drops SYNs and clients back off for seconds. Accepting
//! and closing keeps the backlog empty, costs no memory, tells a load balancer at once that this
//! replica is full, and lets `/healthz` answer as soon as a slot frees up.
//!
//! The peer address is put in every request's extensions as `ConnectInfo<SocketAddr>`, as
//! `into_make_service_with_connect_info` does, for login throttling.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::oauth::{ErrorCode, OAuthError};

/// hyper refuses a read buffer smaller than this (`http1::Builder::max_buf_size`).
const MIN_READ_BUFFER: usize = 8192;

/// What a connection refused for lack of room is told before it is closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
retry-after: 1\r\ncontent-type: text/plain\r\ncontent-length: 23\r\n\r\nserver busy, try again\n";

/// Connection-level limits, from `[server]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// How long shutdown waits for in-flight requests before it drops their connections.
    pub drain_timeout: Duration,
}

impl Limits {
    pub fn from_config(server: &ServerConfig) -> Self {
        Self {
            header_read_timeout: server.header_read_timeout,
            max_connections: server.max_connections,
            max_header_bytes: server.max_header_bytes,
            max_headers: server.max_headers,
            // A request runs at most `request_timeout` (the router's timeout layer); a little more
            // lets its response be written.
            drain_timeout: server.request_timeout + Duration::from_secs(5),
        }
    }

    fn builder(&self) -> http1::Builder {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_header_size(self.max_header_bytes)
            .max_headers(self.max_headers)
            // The read buffer need not be larger than the largest head: a body is read through
            // it in pieces. This bounds each connection's buffer memory.
            .max_buf_size(self.max_header_bytes.max(MIN_READ_BUFFER))
            .keep_alive(true);
        b
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets in-flight
/// requests finish (closing idle connections at once) for at most [`Limits::drain_timeout`],
/// and returns once every connection is gone.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let builder = limits.builder();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut refused = Refused::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow with the server's uptime.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service(router.clone(), peer));
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    // Finishes the request in flight, if any, then closes.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                // Header timeouts, malformed or oversized heads, clients gone: routine.
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(router);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "connections still open after the drain timeout; closing them"
        );
        conns.shutdown().await;
    }
    Ok(())
}

/// The router as a hyper service of one connection, with the peer address in each request.
fn service(
    router: Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            if let Some(refusal) = unsupported_coding(req.headers()) {
                return Ok(refusal);
            }
            router.oneshot(req).await
        }
    })
}

/// A body in a coding the server does not decode is refused before any handler reads it as if
/// it were plain: hyper frames a request whose last transfer coding is `chunked` and passes on
/// the rest (`gzip, chunked`) undecoded, and it ignores `Content-Encoding`.
///
/// RFC 9112 §6.1 says a server SHOULD answer 501 to a transfer coding it does not understand;
/// we answer 400 `invalid_request` because the SPEC allows no 5xx for a bad request. For a
/// content coding, RFC 9110 §15.5.16 / §12.5.3: 415 with `Accept-Encoding: identity`.
fn unsupported_coding(headers: &HeaderMap) -> Option<axum::response::Response> {
    let codings = |name| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(|c| c.trim_ascii().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    let te = codings(header::TRANSFER_ENCODING);
    if !te.is_empty() && te != [b"chunked".to_vec()] {
        return Some(
            OAuthError::invalid_request(
                "the only transfer coding accepted is a single `chunked` (RFC 9112 section 6.1)",
            )
            .into_response(),
        );
    }
    if codings(header::CONTENT_ENCODING)
        .iter()
        .any(|c| c != b"identity")
    {
        let mut resp = OAuthError::new(
            ErrorCode::InvalidRequest,
            "request bodies are accepted without content coding (RFC 9110 section 8.4)",
        )
        .with_status(415)
        .into_response();
        resp.headers_mut().insert(
            header::ACCEPT_ENCODING,
            axum::http::HeaderValue::from_static("identity"),
        );
        return Some(resp);
    }
    None
}

/// Connections refused since the last warning; a flood logs one line a minute, not one a
/// connection.
#[derive(Default)]
struct Refused {
    count: u64,
    /// Monotonic, not wall time: it only paces the warning and is never shown or stored, so
    /// it does not come from the injected clock.
    warned: Option<Instant>,
}

impl Refused {
    /// Past `max_connections`: a 503 if the socket takes it without waiting, then close.
    fn refuse(&mut self, stream: TcpStream) {
        let _ = stream.try_write(FULL);
        drop(stream);
        self.count += 1;
        if self
            .warned
            .is_none_or(|w| w.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!(
                refused = self.count,
                "max_connections reached: new connections are refused"
            );
            self.count = 0;
            self.warned = Some(Instant::now());
        }
    }
}

/// Errors of one connection (it was reset before we took it) are nothing; others, such as
/// running out of file descriptors, would spin the loop: wait a little.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
