//! A raw HTTP/1.1 client over TCP: it sends whatever bytes it is given (malformed ones that
//! reqwest would refuse to produce) and reads back one response, or notices that the server
//! closed the connection, or that it did neither in time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub enum Outcome {
    /// A whole response: its status, head and body.
    Response {
        status: u16,
        head: String,
        body: Vec<u8>,
    },
    /// The server closed (or reset) the connection without a whole response.
    Closed,
    /// Neither a response nor a close within the wait.
    Hang { partial: Vec<u8> },
}

impl Outcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Response { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The server's address from a test app's URL.
pub fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// Connects, sends `request` (in `pieces` split points, flushed apart, to exercise partial
/// reads), half-closes when `half_close`, and reads one response within `wait`.
pub async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    half_close: bool,
    wait: Duration,
) -> Outcome {
    let mut partial = Vec::new();
    let run = async {
        let mut s = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                return Ok::<Outcome, ()>(Outcome::Closed);
            }
        };
        // The server may answer (413, 431, 400) and close before it has read everything we
        // send: a failed write is not the end, the answer may be waiting to be read.
        let _ = s.write_all(request).await;
        if half_close {
            let _ = s.shutdown().await;
        }
        Ok(read_response(&mut s, &mut partial).await)
    };
    match tokio::time::timeout(wait, run).await {
        Ok(Ok(o)) => o,
        Ok(Err(())) => Outcome::Closed,
        Err(_) => Outcome::Hang { partial },
    }
}

/// Reads one response from `s`; `buf` keeps what arrived, for a report if time runs out.
pub async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Outcome {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(o) = parse(buf) {
            return o;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                return parse_at_eof(buf).unwrap_or(Outcome::Closed);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn split_head(buf: &[u8]) -> Option<(u16, String, &[u8])> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head, &buf[end + 4..]))
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A whole response in `buf`, if there is one (a length-delimited or chunked body).
fn parse(buf: &[u8]) -> Option<Outcome> {
    let (status, head, rest) = split_head(buf)?;
    if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        return (rest.len() >= len).then(|| Outcome::Response {
            status,
            body: rest[..len].to_vec(),
            head,
        });
    }
    if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return rest
            .windows(5)
            .any(|w| w == b"0\r\n\r\n")
            .then(|| Outcome::Response {
                status,
                body: rest.to_vec(),
                head,
            });
    }
    None
}

/// At end of stream: a response delimited by the close, if its head arrived.
fn parse_at_eof(buf: &[u8]) -> Option<Outcome> {
    let (status, head, rest) = split_head(buf)?;
    Some(Outcome::Response {
        status,
        body: rest.to_vec(),
        head,
    })
}

/// `GET path` on a fresh connection, closed after the answer; the status or `None`.
pub async fn get_status(addr: SocketAddr, path: &str, wait: Duration) -> Option<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    exchange(addr, req.as_bytes(), false, wait).await.status()
}
