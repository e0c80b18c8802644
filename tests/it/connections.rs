//! Connection-level limits (SPEC invariant: "connections that do not finish their request head in
//! bounded time are closed"; RFC 9112 §9.8 lets a server close a connection it does not want to
//! keep): the header read timeout, the bound on concurrent connections, head size limits, and
//! that `/healthz` keeps answering through all of it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, spawn_app_with};
use crate::raw::{self, Outcome, addr_of};

/// Opens a connection and sends the start of a request head that never ends.
async fn half_open(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n")
        .await
        .unwrap();
    s
}

/// Whether the server closed `s` within `within` (EOF or reset, possibly after a response).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// SPEC invariant / RFC 9112 §9.8: a client that trickles one header line at a time, never
/// finishing the head (slowloris), is disconnected once `header_read_timeout` has passed —
/// sending more lines does not extend it.
#[tokio::test]
async fn rfc9112_slowloris_connection_is_closed_within_the_header_read_timeout() {
    let app = spawn_app_with(Backend::Sqlite, "[server]\nheader_read_timeout = \"1s\"\n").await;
    let addr = addr_of(&app.url);
    let mut s = half_open(addr).await;
    let start = Instant::now();
    let mut closed = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if s.write_all(format!("x-trickle-{i}: a\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut b = [0u8; 256];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
            if matches!(r, Ok(0) | Err(_)) {
                closed = true;
                break;
            }
        }
    }
    let took = start.elapsed();
    assert!(closed, "a slowloris connection stayed open for {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "closed only after {took:?}; header_read_timeout is 1s"
    );
    // And a well-behaved client is still served.
    assert_eq!(
        raw::get_status(addr, "/healthz", Duration::from_secs(2)).await,
        Some(200)
    );
    app.stop().await;
}

/// SPEC invariant: an idle connection that never sends a byte is closed too.
#[tokio::test]
async fn rfc9112_silent_connection_is_closed_within_the_header_read_timeout() {
    let app = spawn_app_with(Backend::Sqlite, "[server]\nheader_read_timeout = \"1s\"\n").await;
    let mut s = TcpStream::connect(addr_of(&app.url)).await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(3)).await,
        "a connection that sends nothing stayed open"
    );
    app.stop().await;
}

/// Many half-open connections (heads never finished) hold no worker: `/healthz` answers at
/// once while they wait, and they are all closed by the header read timeout.
#[tokio::test]
async fn healthz_answers_while_many_connections_are_half_open() {
    let app = spawn_app_with(Backend::Sqlite, "[server]\nheader_read_timeout = \"2s\"\n").await;
    let addr = addr_of(&app.url);
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(half_open(addr).await);
    }
    assert_eq!(
        raw::get_status(addr, "/healthz", Duration::from_secs(2)).await,
        Some(200),
        "/healthz did not answer with 300 half-open connections"
    );
    // While they wait, not after them: the newest is still open (an order, not a speed).
    let newest = held.last_mut().unwrap();
    assert!(
        !closed_within(newest, Duration::from_millis(1)).await,
        "/healthz answered only once the half-open connections were gone"
    );
    // SPEC invariant: every one of them is closed once the header read timeout has passed.
    for s in &mut held {
        assert!(closed_within(s, Duration::from_secs(4)).await);
    }
    app.stop().await;
}

/// Past `max_connections` a new connection is refused at once (503, or just closed) instead of
/// waiting; when the connections holding the slots go, `/healthz` answers again.
#[tokio::test]
async fn past_max_connections_new_ones_are_refused_and_healthz_recovers() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "[server]\nmax_connections = 20\nheader_read_timeout = \"30s\"\n",
    )
    .await;
    let addr = addr_of(&app.url);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(half_open(addr).await);
    }
    // The server takes connections in the order they arrived: these 20 hold every slot for
    // 30s, so an answer or a close within the 3s wait below is a refusal, not a queue.
    let refused = raw::exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
        false,
        Duration::from_secs(3),
    )
    .await;
    match &refused {
        Outcome::Response { status: 503, .. } | Outcome::Closed => {}
        other => panic!("connection 21 of 20 was not refused: {other:?}"),
    }
    drop(held);
    let start = Instant::now();
    loop {
        if raw::get_status(addr, "/healthz", Duration::from_secs(1)).await == Some(200) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "/healthz did not recover after the connections went"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// RFC 9110 §15.5.20 / RFC 6585 §5: a head larger than `max_header_bytes`, or with more than
/// `max_headers` fields, is refused with 431, not buffered.
#[tokio::test]
async fn oversize_heads_are_refused_with_431() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "[server]\nmax_header_bytes = 4096\nmax_headers = 20\n",
    )
    .await;
    let addr = addr_of(&app.url);
    let big = format!(
        "GET /healthz HTTP/1.1\r\nhost: test\r\nx-big: {}\r\n\r\n",
        "a".repeat(8000)
    );
    let many: String = (0..30).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many = format!("GET /healthz HTTP/1.1\r\nhost: test\r\n{many}\r\n");
    for req in [big, many] {
        let o = raw::exchange(addr, req.as_bytes(), false, Duration::from_secs(3)).await;
        assert!(
            matches!(o, Outcome::Response { status: 431, .. } | Outcome::Closed),
            "{o:?}"
        );
    }
    // Within the limits, the same request is served.
    let ok = format!(
        "GET /healthz HTTP/1.1\r\nhost: test\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(3000)
    );
    let o = raw::exchange(addr, ok.as_bytes(), false, Duration::from_secs(3)).await;
    assert_eq!(o.status(), Some(200), "{o:?}");
    app.stop().await;
}

/// The peer address still reaches the handlers: login throttling counts failures per client
/// address, so after `PER_ADDRESS` (20) failed sign-ins for 20 different usernames from one
/// address, the next sign-in — for yet another username — is refused 429.
#[tokio::test]
async fn login_throttling_still_sees_the_peer_address() {
    let app = spawn_app_with(Backend::Sqlite, "").await;
    let addr = addr_of(&app.url);
    // The login form's CSRF token is derived from the `mandate_csrf` cookie (web::session).
    let mut seed_and_label = b"login\0".to_vec();
    seed_and_label.extend_from_slice(b"seed");
    let csrf = mandate::crypto::b64url(&mandate::crypto::sha256(&seed_and_label));
    let sign_in = |user: String| {
        let body = format!("username={user}&password=wrong&csrf_token={csrf}");
        format!(
            "POST /login HTTP/1.1\r\nhost: test\r\ncookie: mandate_csrf=seed\r\n\
             content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    for i in 0..20 {
        let o = raw::exchange(
            addr,
            sign_in(format!("nobody{i}")).as_bytes(),
            false,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(o.status(), Some(401), "{o:?}");
    }
    let o = raw::exchange(
        addr,
        sign_in("someone-else".into()).as_bytes(),
        false,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(o.status(), Some(429), "the address was not counted: {o:?}");
    app.stop().await;
}
