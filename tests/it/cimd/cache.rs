//! Caching within bounds, the negative cache, one fetch per URL, the global bound, cancellation,
//! and the `[cimd]` config section.

use super::*;

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

/// One slow host holds at most two fetch slots: a third fetch from it is `Busy` at once, and a
/// document on another host is still fetched (draft-03 "Server Side Request Forgery": the
/// fetcher is shared by everyone, so no one host may take it over).
#[tokio::test]
async fn one_slow_host_cannot_take_every_fetch_slot() {
    let pki = pki();
    let hanging = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let (_good, good_url) = good_server(&pki, &[]).await;
    let by_name = good_url.replace("127.0.0.1", "localhost");
    _good.set(json_response(&document(&by_name), &[]));
    let s = setup(&pki, |c| c.timeout = Duration::from_secs(1));
    let mut hung = Vec::new();
    for path in ["/a.json", "/b.json"] {
        let (r, u) = (s.resolver.clone(), hanging.url(path));
        hung.push(tokio::spawn(async move { r.resolve(&u).await }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert_eq!(
        s.resolver
            .resolve(&hanging.url("/c.json"))
            .await
            .unwrap_err(),
        Refusal::Busy
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused at once"
    );
    assert!(
        s.resolver.resolve(&by_name).await.is_ok(),
        "another host is served"
    );
    for h in hung {
        assert_eq!(h.await.unwrap().unwrap_err(), Refusal::Timeout(1000));
    }
}
