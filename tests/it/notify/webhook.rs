//! The webhook channel over HTTP.

use std::collections::HashSet;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;
use crate::flows::alice_token;

/// What a receiver does by the Standard Webhooks specification, written here from it: the
/// HMAC-SHA256 of `{id}.{timestamp}.{body}` under the decoded secret, base64, after `v1,`.
fn verifies(r: &Received) -> bool {
    let key = STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mut signed = format!(
        "{}.{}.",
        r.header("webhook-id"),
        r.header("webhook-timestamp")
    )
    .into_bytes();
    signed.extend_from_slice(&r.body);
    let expected = format!("v1,{}", STANDARD.encode(hmac::sign(&key, &signed).as_ref()));
    // The header may list several signatures, space-separated.
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_is_announced_by_a_signed_webhook_with_what_the_human_needs() {
    for b in backends() {
        let receiver = Receiver::start().await;
        let agent = TestAgent::new("build-bot");
        let db = test_db(b).await;
        let notify = webhook_entry(&db, &receiver);
        let app = spawn_on(db, &extra(&agent, &notify)).await;
        let alice = alice_token(&app, "orders:read payments:write").await;
        let message = r#"Pay invoice 4711 "now" <b>&</b> {"x":1}"#;
        let (v, actor) = ask(&app, &agent, &alice, &[("binding_message", message)]).await;
        let got = receiver.wait_for(None, |r| !r.is_empty()).await;
        assert_eq!(got.len(), 1, "{b:?}");
        let r = &got[0];
        assert!(verifies(r), "{b:?}: the signature verifies: {r:?}");
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        let now = mandate::clock::Clock::now(app.db.clock.as_ref());
        assert!((ts - now).abs() <= 5, "{b:?}: a current timestamp");
        assert!(r.header("webhook-id").starts_with("evt_"));
        assert_eq!(r.header("content-type"), "application/json");

        let body = r.json();
        assert_eq!(body["type"], "ciba.requested");
        let data = &body["data"];
        assert_eq!(data["user"], "alice");
        assert_eq!(data["client"], "agent-host");
        assert_eq!(data["agent"], "agent:build-bot");
        assert_eq!(data["scopes"], serde_json::json!(["payments:write"]));
        assert_eq!(data["high_risk"], serde_json::json!(["payments:write"]));
        assert_eq!(
            data["binding_message"], message,
            "{b:?}: the client's words, as one string"
        );
        assert_eq!(data["approvals_url"], format!("{}/approvals", app.url));
        assert!(data["expires_at"].as_i64().unwrap() > ts);
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("agent:build-bot") && text.contains(&format!("{}/approvals", app.url))
        );
        assert!(
            !text.contains('<'),
            "{b:?}: the client's markup is escaped: {text}"
        );

        // Never a token, the auth_req_id or the secret.
        let raw = String::from_utf8(r.body.clone()).unwrap();
        let auth_req_id = v["auth_req_id"].as_str().unwrap();
        for secret in [auth_req_id, &alice, &actor, SECRET, "host-secret"] {
            assert!(!raw.contains(secret), "{b:?}: {raw}");
        }
        // The event and its notification are one: the audit entry is there.
        let kinds: Vec<String> = app
            .audit_entries()
            .await
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert!(kinds.contains(&"ciba.requested".to_string()), "{b:?}");
        app.stop().await;
    }
}

/// A receiver that refuses for a while, across a restart of the server (in between, the
/// messages are only in the database), gets every notification exactly once, in order, each
/// under the same id as its refused attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_receiver_gets_every_notification_once_in_order_across_a_restart() {
    for b in backends() {
        let receiver = Receiver::start().await;
        receiver.refuse(true);
        let agent = TestAgent::new("build-bot");
        let db = test_db(b).await;
        let notify = webhook_entry(&db, &receiver);
        let config = extra(&agent, &notify);
        let app = spawn_on(db, &config).await;
        let alice = alice_token(&app, "orders:read payments:write").await;
        let words = ["one", "two", "three"];
        for w in words {
            ask(&app, &agent, &alice, &[("binding_message", w)]).await;
        }
        // Refused, retried (the clock moves on so retries come due): the head of the stream
        // only, so nothing after "one" is sent while "one" is refused.
        let got = receiver.wait_for(Some(&app), |r| r.len() >= 3).await;
        assert!(
            got.iter()
                .all(|r| r.json()["data"]["binding_message"] == "one"),
            "{b:?}: only the head is tried"
        );
        let first_id = got[0].header("webhook-id");
        assert!(
            got.iter().all(|r| r.header("webhook-id") == first_id),
            "{b:?}"
        );

        // A restart: the real binary on the same config and database.
        let db = app.stop().await;
        let config_path = db.dir.path().join("mandate.toml");
        receiver.refuse(false);
        let mut server = spawn_process(&config_path).await;
        let got = receiver
            .wait_for(None, |_| receiver.accepted().len() >= 3)
            .await;
        server.child.kill().await.unwrap();
        let accepted = receiver.accepted();
        let said: Vec<String> = (accepted.iter())
            .map(|r| {
                r.json()["data"]["binding_message"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(said, words, "{b:?}: each once, in order");
        let ids: HashSet<String> = accepted.iter().map(|r| r.header("webhook-id")).collect();
        assert_eq!(ids.len(), 3, "{b:?}");
        assert_eq!(
            accepted[0].header("webhook-id"),
            first_id,
            "{b:?}: the same id"
        );
        assert!(got.iter().all(verifies), "{b:?}");
        drop(db);
    }
}

/// A receiver that never answers well: once the request expired there is nothing left to
/// decide, so the notification is dropped, logged and audited, and the stream moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_for_an_expired_request_is_dropped_and_audited() {
    for b in backends() {
        let receiver = Receiver::start().await;
        receiver.refuse(true);
        let agent = TestAgent::new("build-bot");
        let db = test_db(b).await;
        let notify = webhook_entry(&db, &receiver);
        let app = spawn_on(db, &extra(&agent, &notify)).await;
        let alice = alice_token(&app, "orders:read payments:write").await;
        ask(&app, &agent, &alice, &[("requested_expiry", "30")]).await;
        receiver.wait_for(None, |r| !r.is_empty()).await;
        app.advance(31);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let entry = loop {
            let entries = app.audit_entries().await;
            if let Some(e) = entries
                .into_iter()
                .find(|e| e.kind == "notification.undelivered")
            {
                break e;
            }
            assert!(std::time::Instant::now() < deadline, "{b:?}: not audited");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        let detail: serde_json::Value = serde_json::from_str(&entry.detail).unwrap();
        assert_eq!(detail["outcome"], "expired", "{b:?}: {detail}");
        assert_eq!(detail["stream"], "webhook:chat");
        assert_eq!(entry.subject.as_deref(), Some("alice"));
        app.stop().await;
    }
}

/// A receiver that does not answer holds nothing up for long: the attempt ends at
/// `notifications.timeout` (1s here) and is retried under the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_does_not_answer_is_given_up_on_at_the_timeout_and_retried() {
    let receiver = Receiver::start().await;
    receiver.stall(3600);
    let agent = TestAgent::new("build-bot");
    let db = test_db(Backend::Sqlite).await;
    let notify = webhook_entry(&db, &receiver);
    let app = spawn_on(db, &extra(&agent, &notify)).await;
    let alice = alice_token(&app, "orders:read payments:write").await;
    ask(&app, &agent, &alice, &[("binding_message", "slow")]).await;
    let started = std::time::Instant::now();
    let stalled = receiver.wait_for(Some(&app), |r| r.len() >= 2).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the stalled attempts ended at the timeout"
    );
    receiver.stall(0);
    receiver
        .wait_for(Some(&app), |_| !receiver.accepted().is_empty())
        .await;
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        accepted[0].header("webhook-id"),
        stalled[0].header("webhook-id")
    );
    app.stop().await;
}

/// A server whose config does not name a webhook (a replica on an older config, or the same
/// server reconfigured) leaves that webhook's notifications waiting instead of dropping them;
/// a server that knows it again delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_know_a_webhook_leaves_its_notifications_waiting() {
    let receiver = Receiver::start().await;
    receiver.refuse(true);
    let other = Receiver::start().await;
    let agent = TestAgent::new("build-bot");
    let db = test_db(Backend::Sqlite).await;
    let with_chat = extra(&agent, &webhook_entry(&db, &receiver));
    let app = spawn_on(db, &with_chat).await;
    let alice = alice_token(&app, "orders:read payments:write").await;
    ask(&app, &agent, &alice, &[("binding_message", "kept")]).await;
    receiver.wait_for(None, |r| !r.is_empty()).await;
    let db = app.stop().await;

    // Another channel only: the worker runs, but knows nothing of `chat`.
    let without = webhook_entry(&db, &other).replace("name = \"chat\"", "name = \"other\"");
    let app = spawn_on(db, &extra(&agent, &without)).await;
    for _ in 0..8 {
        app.advance(1);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let kinds: Vec<String> = app
        .audit_entries()
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        !kinds.iter().any(|k| k == "notification.undelivered"),
        "{kinds:?}"
    );
    assert!(
        other.all().is_empty(),
        "nothing meant for chat went elsewhere"
    );
    let db = app.stop().await;

    receiver.refuse(false);
    let app = spawn_on(db, &with_chat).await;
    receiver
        .wait_for(Some(&app), |_| !receiver.accepted().is_empty())
        .await;
    assert_eq!(
        receiver.accepted()[0].json()["data"]["binding_message"],
        "kept"
    );
    app.stop().await;
}

/// A receiver that answers with a head that never ends, or with an endless body: the first is
/// a failed attempt (the head is bounded), the second a delivery (only the status is read),
/// and neither holds the worker up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_with_an_endless_answer_costs_a_bounded_attempt() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            // The first connection gets an endless head, the others an endless body.
            let endless_head = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head: &[u8] = if endless_head {
                    b"HTTP/1.1 200 OK\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n"
                };
                if s.write_all(head).await.is_err() {
                    return;
                }
                let filler: &[u8] = if endless_head {
                    b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
                } else {
                    &[b'a'; 4096]
                };
                while s.write_all(filler).await.is_ok() {}
            });
        }
    });
    let agent = TestAgent::new("build-bot");
    let db = test_db(Backend::Sqlite).await;
    let secret = db.dir.path().join("hook.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let notify = format!(
        "[[notifications.webhooks]]\nname = \"endless\"\nurl = \"{url}\"\nsecret_file = \"{}\"\n",
        secret.display()
    );
    let app = spawn_on(db, &extra(&agent, &notify)).await;
    let alice = alice_token(&app, "orders:read payments:write").await;
    ask(&app, &agent, &alice, &[]).await;
    ask(&app, &agent, &alice, &[]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let store = mandate::store::open(&app.db.url, 2).await.unwrap();
    loop {
        let c = store.outbox_counts().await.unwrap();
        if c.delivered == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{c:?}");
        app.advance(1);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "the endless head failed once, then each message was delivered once"
    );
    store.close().await;
    app.stop().await;
}
