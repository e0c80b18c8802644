//! The browser against a stub server on loopback: the sign-in + consent walk, which cookies
//! go where, and that no redirect is followed behind the caller's back.

// A test may panic where the browser itself may not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::{Browser, End};

/// One request as the stub saw it.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    cookie: Option<String>,
    body: String,
}

/// A one-thread HTTP/1.1 server answering `respond(request line)` on every connection, and
/// what it was sent.
fn stub(respond: fn(&str) -> String) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut line, mut cookie, mut length) = (String::new(), None, 0usize);
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (name, value) = h.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "cookie" => cookie = Some(value.trim().to_owned()),
                    "content-length" => length = value.trim().parse().unwrap(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let line = line.trim_end().to_owned();
            let answer = respond(&line);
            log.lock().unwrap().push(Seen {
                line,
                cookie,
                body: String::from_utf8(body).unwrap(),
            });
            stream.write_all(answer.as_bytes()).unwrap();
        }
    });
    (base, seen)
}

fn answer(status: &str, headers: &[&str], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "content-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    out
}

/// A server shaped like mandate's pages: a redirect to the login page, a login form, a
/// consent page with Approve and Deny, then a redirect to a client on another origin.
fn pages(line: &str) -> String {
    let path = line.split(' ').nth(1).unwrap_or_default();
    match (line.split(' ').next().unwrap_or_default(), path) {
        ("GET", "/authorize") => answer("302 Found", &["location: /login?next=1"], ""),
        ("GET", "/login?next=1") => answer(
            "200 OK",
            &["set-cookie: csrf=c1; Path=/; HttpOnly"],
            r#"<form method="post"><input type=hidden name=csrf_token value="t&amp;1">
<input name="username"><input type="password" name="password"><button>Sign in</button></form>"#,
        ),
        ("POST", "/login?next=1") => answer(
            "303 See Other",
            &[
                "set-cookie: session=s1; Path=/; HttpOnly",
                "location: /consent",
            ],
            "",
        ),
        ("GET", "/consent") => answer(
            "200 OK",
            &[],
            r#"<form method="get" action="/search"><button>Search</button></form>
<form action="/consent" method="post"><input value="p1" name="pending" type="hidden">
<button name="decision" value="deny">Deny</button><button name="decision" value="approve">Approve</button></form>"#,
        ),
        ("POST", "/consent") => answer(
            "302 Found",
            &["location: http://127.0.0.1:9/callback?code=abc&state=s"],
            "",
        ),
        _ => answer("404 Not Found", &[], "<h1>Not found</h1>"),
    }
}

#[tokio::test]
async fn drives_sign_in_and_consent_and_catches_the_redirect_off_the_origin() {
    let (base, seen) = stub(pages);
    let mut browser = Browser::new(&base).unwrap();
    let end = browser
        .drive("/authorize", "alice", "pw", &[])
        .await
        .unwrap();
    let End::Left(location) = end else {
        panic!("the walk ended on a page")
    };
    assert_eq!(location, "http://127.0.0.1:9/callback?code=abc&state=s");
    let seen = seen.lock().unwrap().clone();
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "GET /authorize HTTP/1.1",
            "GET /login?next=1 HTTP/1.1",
            "POST /login?next=1 HTTP/1.1",
            "GET /consent HTTP/1.1",
            "POST /consent HTTP/1.1",
        ],
        "a form without action posts to its page; the client's redirect is not fetched"
    );
    let by = |i: usize| seen.get(i).unwrap();
    assert_eq!(by(0).cookie, None);
    // The hidden CSRF field is decoded from the page and encoded again for the post.
    assert_eq!(by(2).body, "csrf_token=t%261&username=alice&password=pw");
    assert_eq!(by(2).cookie.as_deref(), Some("csrf=c1"));
    assert_eq!(by(3).cookie.as_deref(), Some("csrf=c1; session=s1"));
    // The consent page's second form is the one with Approve; the pressed button is posted.
    assert_eq!(by(4).body, "pending=p1&decision=approve");
}

#[tokio::test]
async fn cookies_stay_with_their_origin_and_redirects_are_returned_not_followed() {
    let (a, seen_a) = stub(pages);
    let (b, seen_b) = stub(pages);
    let mut browser = Browser::new(&a).unwrap();
    let page = browser.get("/login?next=1").await.unwrap();
    assert_eq!(page.status, 200);
    let redirect = browser.get("/authorize").await.unwrap();
    assert_eq!(
        (redirect.status, redirect.location.as_deref()),
        (302, Some("/login?next=1"))
    );
    browser.get(&format!("{b}/anything")).await.unwrap();
    assert_eq!(
        seen_a.lock().unwrap().len(),
        2,
        "the redirect was not followed"
    );
    let b_saw = seen_b.lock().unwrap().clone();
    assert_eq!(b_saw.len(), 1);
    assert_eq!(
        b_saw.first().and_then(|s| s.cookie.clone()),
        None,
        "{b_saw:?}"
    );
    assert_eq!(browser.cookies.get(&a, "csrf"), Some("c1"));
    assert_eq!(browser.cookies.get(&b, "csrf"), None);
}

#[tokio::test]
async fn a_missing_button_or_a_get_form_is_an_error_not_a_panic() {
    let (base, _) = stub(pages);
    let mut browser = Browser::new(&base).unwrap();
    let consent = browser.get("/consent").await.unwrap();
    let e = browser.click("/consent", &consent, "Maybe").await.err();
    assert!(e.is_some_and(|e| e.contains("no `Maybe` button")));
    let e = browser.click("/consent", &consent, "Search").await.err();
    assert!(e.is_some_and(|e| e.contains("not post")));
    let missing = browser.get("/nowhere").await.unwrap();
    assert!(missing.summary().contains("404") && missing.summary().contains("Not found"));
}
