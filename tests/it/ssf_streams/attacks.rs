//! What an attacker tries against the stream management API (SSF 1.0 §8.1): no token or
//! someone else's, another receiver's stream, push URLs into the server's network, floods,
//! and fishing for a receiver's credential. Each test names the rule it holds.

use serde_json::json;

use super::*;

/// client that is not a receiver is 403 `insufficient_scope`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6750_s3_1_without_a_receivers_live_token_nothing_is_managed() {
    let pki = pki();
    for b in backends() {
        let db = test_db(b).await;
        let config = receivers(&db, &pki, false);
        let app = spawn_on(db, &config).await;
        let not_receiver = app.cc_token(&[]).await;
        let revoked = token_of(&app, ("rx", "rx-secret")).await;
        let resp = app
            .post_form("/revoke", Some(("rx", "rx-secret")), &[("token", &revoked)])
            .await;
        assert_eq!(resp.status(), 200);
        let expiring = token_of(&app, ("rx", "rx-secret")).await;
        // RFC 8707: the receiver's token for every resource server it may reach (what it would
        // send to them, and any of them could replay here) is no key to its streams.
        let everywhere = app
            .post_form(
                "/token",
                Some(("rx", "rx-secret")),
                &[("grant_type", "client_credentials")],
            )
            .await
            .json::<Value>()
            .await
            .unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(claims(&everywhere)["aud"], json!(app.url), "{b:?}");
        let paths = [
            (reqwest::Method::POST, "/ssf/stream", Some(json!({}))),
            (reqwest::Method::GET, "/ssf/stream", None),
            (reqwest::Method::GET, "/ssf/status?stream_id=~x", None),
            (
                reqwest::Method::POST,
                "/ssf/verify",
                Some(json!({ "stream_id": "~x" })),
            ),
        ];
        for (m, p, body) in &paths {
            let (code, _, h) = call(&app, m.clone(), p, None, body.clone()).await;
            assert_eq!(code, 401, "{p}");
            let challenge = h.get("www-authenticate").unwrap().to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            for t in ["garbage", revoked.as_str(), everywhere.as_str()] {
                let (code, v, h) = call(&app, m.clone(), p, Some(t), body.clone()).await;
                assert_eq!((code, &v["error"]), (401, &json!("invalid_token")), "{p}");
                assert!(
                    h["www-authenticate"]
                        .to_str()
                        .unwrap()
                        .contains("invalid_token")
                );
            }
            let (code, v, h) = call(&app, m.clone(), p, Some(&not_receiver), body.clone()).await;
            assert_eq!(
                (code, &v["error"]),
                (403, &json!("insufficient_scope")),
                "{p}"
            );
            assert!(
                h["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .contains("insufficient_scope")
            );
        }
        app.advance(3600);
        let (code, _, _) = call(
            &app,
            reqwest::Method::GET,
            "/ssf/stream",
            Some(&expiring),
            None,
        )
        .await;
        assert_eq!(code, 401, "an expired token");
        // Nothing was created by any of these.
        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let (_, list, _) = call(&app, reqwest::Method::GET, "/ssf/stream", Some(&rx), None).await;
        assert_eq!(list, json!([]));
        app.stop().await;
    }
}

/// operation, looks like an unknown one, and the stream is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_8_1_1_2_another_receivers_stream_is_404_and_unchanged() {
    let pki = pki();
    for b in backends() {
        let db = test_db(b).await;
        let config = receivers(&db, &pki, false);
        let app = spawn_on(db, &config).await;
        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let rx2 = token_of(&app, ("rx2", "rx2-secret")).await;
        let s = create(&app, &rx, json!({ "description": "mine" })).await;
        let id = s["stream_id"].as_str().unwrap().to_string();
        let q = format!("?stream_id={id}");
        let tries = [
            (reqwest::Method::GET, format!("/ssf/stream{q}"), None),
            (
                reqwest::Method::PATCH,
                "/ssf/stream".to_string(),
                Some(json!({ "stream_id": id, "description": "theirs" })),
            ),
            (
                reqwest::Method::PUT,
                "/ssf/stream".to_string(),
                Some(json!({ "stream_id": id })),
            ),
            (reqwest::Method::DELETE, format!("/ssf/stream{q}"), None),
            (reqwest::Method::GET, format!("/ssf/status{q}"), None),
            (
                reqwest::Method::POST,
                "/ssf/status".to_string(),
                Some(json!({ "stream_id": id, "status": "disabled" })),
            ),
            (
                reqwest::Method::POST,
                "/ssf/verify".to_string(),
                Some(json!({ "stream_id": id })),
            ),
        ];
        for (m, p, body) in tries {
            let (code, v, _) = call(&app, m.clone(), &p, Some(&rx2), body.clone()).await;
            let unknown = p.replace(&id, "~unknown");
            let body2 = body
                .map(|b| serde_json::from_str(&b.to_string().replace(&id, "~unknown")).unwrap());
            let (code2, v2, _) = call(&app, m.clone(), &unknown, Some(&rx2), body2).await;
            assert_eq!(code, 404, "{m} {p}: {v}");
            assert_eq!(
                (code, &v),
                (code2, &v2),
                "{m} {p}: the same as an unknown stream"
            );
        }
        let (_, theirs, _) =
            call(&app, reqwest::Method::GET, "/ssf/stream", Some(&rx2), None).await;
        assert_eq!(theirs, json!([]));
        let (code, mine, _) = call(
            &app,
            reqwest::Method::GET,
            &format!("/ssf/stream{q}"),
            Some(&rx),
            None,
        )
        .await;
        assert_eq!((code, mine), (200, s));
        let (_, st, _) = call(
            &app,
            reqwest::Method::GET,
            &format!("/ssf/status{q}"),
            Some(&rx),
            None,
        )
        .await;
        assert_eq!(st["status"], "enabled");
        app.stop().await;
    }
}

/// operator allows private addresses; link-local (169.254.169.254, cloud metadata) always.
#[tokio::test]
async fn ssf_6_1_1_push_urls_at_private_or_metadata_addresses_or_plain_http_are_refused() {
    let pki = pki();
    for private in [false, true] {
        let db = test_db(Backend::Sqlite).await;
        let config = receivers(&db, &pki, private);
        let app = spawn_on(db, &config).await;
        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let mut refused = vec![
            "https://169.254.169.254/latest/meta-data",
            "https://[fe80::1]/e",
            "http://127.0.0.1:9/e",
            "http://rs.example.com/e",
            "https://0.0.0.0/e",
        ];
        if !private {
            refused.extend([
                "https://127.0.0.1:9/e",
                "https://localhost:9/e",
                "https://10.1.2.3/e",
            ]);
        }
        for url in refused {
            let body = json!({ "delivery": { "method": PUSH, "endpoint_url": url } });
            let (code, v, _) = call(
                &app,
                reqwest::Method::POST,
                "/ssf/stream",
                Some(&rx),
                Some(body),
            )
            .await;
            assert_eq!(
                (code, &v["error"]),
                (400, &json!("invalid_request")),
                "{url}: {v}"
            );
            assert!(
                !v["error_description"].as_str().unwrap().contains("169.254"),
                "{v}"
            );
        }
        // No map of this server's network: a name that resolves to a private address and one
        // that does not resolve at all are refused in the same words.
        if !private {
            let mut said = Vec::new();
            for url in ["https://localhost:9/e", "https://no-such-host.invalid/e"] {
                let body = json!({ "delivery": { "method": PUSH, "endpoint_url": url } });
                let (code, v, _) = call(
                    &app,
                    reqwest::Method::POST,
                    "/ssf/stream",
                    Some(&rx),
                    Some(body),
                )
                .await;
                assert_eq!(code, 400, "{url}: {v}");
                said.push(v["error_description"].clone());
            }
            assert_eq!(said[0], said[1]);
        }
        // An allowed stream cannot be moved to a refused URL either.
        let s = create(&app, &rx, json!({})).await;
        let patch = json!({ "stream_id": s["stream_id"],
            "delivery": { "method": PUSH, "endpoint_url": "https://169.254.169.254/" } });
        let (code, _, _) = call(
            &app,
            reqwest::Method::PATCH,
            "/ssf/stream",
            Some(&rx),
            Some(patch),
        )
        .await;
        assert_eq!(code, 400);
        let (_, list, _) = call(&app, reqwest::Method::GET, "/ssf/stream", Some(&rx), None).await;
        assert_eq!(list, json!([s]), "unchanged");
        app.stop().await;
    }
}

/// allowed), unknown or malformed members 400 with the reason.
#[tokio::test]
async fn ssf_8_1_1_1_oversized_bodies_too_many_streams_and_unknown_members_are_refused() {
    let pki = pki();
    let db = test_db(Backend::Sqlite).await;
    let config = receivers(&db, &pki, false);
    let app = spawn_on(db, &config).await;
    let rx = token_of(&app, ("rx", "rx-secret")).await;
    let huge = json!({ "description": "x".repeat(20_000) });
    let (code, _, _) = call(
        &app,
        reqwest::Method::POST,
        "/ssf/stream",
        Some(&rx),
        Some(huge),
    )
    .await;
    assert_eq!(code, 413);
    for (body, want) in [
        (json!({ "colour": "red" }), "unknown member"),
        (
            json!({ "stream_id": "~mine" }),
            "assigned by the transmitter",
        ),
        (
            json!({ "iss": "https://evil.example" }),
            "iss is set by the transmitter",
        ),
        (
            json!({ "delivery": { "method": "urn:x" } }),
            "delivery.method",
        ),
        (json!({ "events_requested": "all" }), "array"),
    ] {
        let (code, v, _) = call(
            &app,
            reqwest::Method::POST,
            "/ssf/stream",
            Some(&rx),
            Some(body.clone()),
        )
        .await;
        assert_eq!(code, 400, "{body}");
        assert!(
            v["error_description"].as_str().unwrap().contains(want),
            "{body}: {v}"
        );
    }
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(create(&app, &rx, json!({})).await["stream_id"].clone());
    }
    let (code, _, _) = call(
        &app,
        reqwest::Method::POST,
        "/ssf/stream",
        Some(&rx),
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 409);
    // Another receiver's count is its own.
    let rx2 = token_of(&app, ("rx2", "rx2-secret")).await;
    create(&app, &rx2, json!({})).await;
    let q = format!("/ssf/stream?stream_id={}", ids[0].as_str().unwrap());
    assert_eq!(
        call(&app, reqwest::Method::DELETE, &q, Some(&rx), None)
            .await
            .0,
        204
    );
    create(&app, &rx, json!({})).await;
    app.stop().await;
}

/// in its own log (debug level), and not in the database in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_6_1_1_the_authorization_header_is_never_echoed_logged_or_stored_in_the_clear() {
    let pki = pki();
    for b in backends() {
        let receiver = Receiver::start(&pki).await;
        let db = test_db(b).await;
        let path = write_config(&db, &receivers(&db, &pki, true));
        let log_path = db.dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut server =
            spawn_process_logging(&path, "mandate=trace,info", std::process::Stdio::from(log))
                .await;
        let app = TestApp::of_process(test_db(b).await, path.clone(), &server);
        let rx = token_of(&app, ("rx", "rx-secret")).await;
        let mut answers = Vec::new();
        let s = create(&app, &rx, push_body(&receiver.url)).await;
        answers.push(s.clone());
        let id = s["stream_id"].as_str().unwrap().to_string();
        let (_, v, _) = call(&app, reqwest::Method::GET, "/ssf/stream", Some(&rx), None).await;
        answers.push(v);
        let patch = json!({ "stream_id": id, "description": "renamed" });
        let (code, v, _) = call(
            &app,
            reqwest::Method::PATCH,
            "/ssf/stream",
            Some(&rx),
            Some(patch),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["description"], "renamed");
        answers.push(v);
        let (code, _, _) = call(
            &app,
            reqwest::Method::POST,
            "/ssf/verify",
            Some(&rx),
            Some(json!({ "stream_id": id, "state": "s" })),
        )
        .await;
        assert_eq!(code, 204);
        // A PATCH without delivery keeps the credential: the push still carries it.
        let got = receiver.wait_for(1).await;
        assert_eq!(got[0].header("authorization").as_deref(), Some(CREDENTIAL));
        for a in &answers {
            assert!(!a.to_string().contains("receiver-secret"), "{a}");
        }
        let store = mandate::store::open(&db.url, 2).await.unwrap();
        let stored = store.ssf_stream(&id).await.unwrap().unwrap();
        let sealed = stored.authorization_header.unwrap();
        assert!(
            !sealed.windows(15).any(|w| w == b"receiver-secret"),
            "sealed"
        );
        for e in store.audit_entries(0, 10_000).await.unwrap() {
            assert!(!e.detail.contains("receiver-secret"), "{e:?}");
        }
        store.close().await;
        server.child.kill().await.unwrap();
        let text = std::fs::read_to_string(&log_path).unwrap();
        assert!(!text.is_empty());
        assert!(
            !text.contains("receiver-secret"),
            "the log holds the credential"
        );
        drop(db);
    }
}
