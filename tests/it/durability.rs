//! Whatever `/token` answered is durable: SIGKILL the server while it issues tokens under load,
//! restart it on the same database, and every token a client received still introspects active.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::helpers::*;

/// Tokens the clients hold when the server is killed: enough for the writer to have grouped
/// many of them into shared batches.
const KILL_AFTER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_answered_before_sigkill_survive_a_restart_and_the_audit_chain_verifies() {
    for b in backends() {
        let db = test_db(b).await;
        let config = write_config(&db, "");
        let mut server = spawn_process(&config).await;
        let received = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::new();
        let mut workers = Vec::new();
        for _ in 0..16 {
            let (http, url, received, stop) = (
                http.clone(),
                server.url.clone(),
                received.clone(),
                stop.clone(),
            );
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let resp = http
                        .post(format!("{url}/token"))
                        .basic_auth("agent-runtime", Some("s3cret"))
                        .form(&[
                            ("grant_type", "client_credentials"),
                            ("audience", "orders-api"),
                        ])
                        .send()
                        .await;
                    let Ok(resp) = resp else { break };
                    if resp.status() != 200 {
                        break;
                    }
                    let Ok(v) = resp.json::<Value>().await else {
                        break;
                    };
                    received
                        .lock()
                        .await
                        .push(v["access_token"].as_str().unwrap().to_string());
                }
            }));
        }
        // Kill once the clients hold KILL_AFTER tokens, while the workers keep asking: a
        // count, not a duration, so a slow or busy machine changes how long this takes and
        // not the verdict. The bound only turns a server that stopped issuing into a failure.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let n = received.lock().await.len();
            if n >= KILL_AFTER {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{b:?}: the server stopped issuing after {n} tokens"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.child.kill().await.unwrap(); // SIGKILL
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let tokens = received.lock().await.clone();
        assert!(tokens.len() >= KILL_AFTER, "{b:?}");

        let mut server = spawn_process(&config).await;
        for chunk in tokens.chunks(64) {
            let checks = chunk.iter().cloned().map(|t| {
                let (http, url) = (http.clone(), server.url.clone());
                async move {
                    http.post(format!("{url}/introspect"))
                        .basic_auth("orders-api", Some("rs-secret"))
                        .form(&[("token", t.as_str())])
                        .send()
                        .await
                        .unwrap()
                        .json::<Value>()
                        .await
                        .unwrap()
                }
            });
            for v in futures_join_all(checks).await {
                assert_eq!(
                    v["active"], true,
                    "{b:?}: a token the client received was lost"
                );
            }
        }
        server.child.kill().await.unwrap();
        let out = mandate_cli(
            &["audit", "verify", "--config", config.to_str().unwrap()],
            None,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{b:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("intact"), "{stdout}");
    }
}

async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
