//! Fetching, refused safely: SSRF, https only, no redirects, size and time limits, content
//! type, certificates, the document's own rules, the operator's domain lists.

use super::*;

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
