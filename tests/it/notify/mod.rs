//! Approval notifications end to end: a CIBA request made at `/bc-authorize` reaches a local
//! webhook receiver (signed as Standard Webhooks says) and a local SMTP server, with what the
//! human needs to decide and never a token; a receiver that refuses for a while, across a
//! restart, still gets every notification once and in order.

mod mail;
mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::agents::TestAgent;
use crate::helpers::*;

pub(super) const CIBA: &str = "urn:openid:params:grant-type:ciba";
/// A Standard Webhooks secret (`whsec_` + base64 of 32 bytes).
pub(super) const SECRET: &str = "whsec_3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        (self.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_string()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on a port of its own: it records every request and answers 500 while
/// `refusing`, else 204, after `stalling` seconds.
#[derive(Clone)]
pub(super) struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub refusing: Arc<std::sync::atomic::AtomicBool>,
    pub stalling: Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    pub async fn start() -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stalling = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (g, r, st) = (got.clone(), refusing.clone(), stalling.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (g, r, st) = (g.clone(), r.clone(), st.clone());
                async move {
                    let stall = st.load(std::sync::atomic::Ordering::SeqCst);
                    let status = if stall > 0 {
                        // Never answered in time: recorded as a timeout (408).
                        StatusCode::REQUEST_TIMEOUT
                    } else if r.load(std::sync::atomic::Ordering::SeqCst) {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    };
                    g.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                        answered: status.as_u16(),
                    });
                    tokio::time::sleep(Duration::from_secs(stall)).await;
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            got,
            refusing,
            stalling,
        }
    }

    pub fn stall(&self, secs: u64) {
        self.stalling
            .store(secs, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The requests it accepted.
    pub fn accepted(&self) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.answered < 300)
            .collect()
    }

    /// Waits (advancing `clock` so retries come due) until `done` holds of what it got.
    pub async fn wait_for(
        &self,
        clock: Option<&TestApp>,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let all = self.all();
            if done(&all) {
                return all;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the receiver got only {all:?}"
            );
            if let Some(app) = clock {
                app.advance(1);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The config of a server with CIBA, one agent, and the notification settings `notify`.
pub(super) fn extra(agent: &TestAgent, notify: &str) -> String {
    format!(
        "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\n\
         grant_types = [\"{TE}\", \"{CIBA}\"]\n{}\n[policy]\nhigh_risk_scopes = [\"payments:write\"]\n\
         [notifications]\ntimeout = \"1s\"\nretry_initial = \"1s\"\nretry_max = \"2s\"\n{notify}\n",
        agent.toml()
    )
}

/// The `[[notifications.webhooks]]` entry for `receiver`, its secret in a file of `db`'s.
pub(super) fn webhook_entry(db: &TestDb, receiver: &Receiver) -> String {
    let secret = db.dir.path().join("hook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    format!(
        "[[notifications.webhooks]]\nname = \"chat\"\nurl = \"{}\"\nsecret_file = \"{}\"\n",
        receiver.url,
        secret.display()
    )
}

/// Asks at `/bc-authorize` for alice's payments:write on behalf of `agent`; the response.
pub(super) async fn ask(
    app: &TestApp,
    agent: &TestAgent,
    alice: &str,
    extra: &[(&str, &str)],
) -> (Value, String) {
    let actor = agent.attest(app).await;
    let mut form = vec![
        ("subject_token", alice),
        ("subject_token_type", AT),
        ("actor_token", actor.as_str()),
        ("actor_token_type", JWT),
        ("scope", "payments:write"),
    ];
    form.extend_from_slice(extra);
    let resp = app
        .post_form("/bc-authorize", Some(("agent-host", "host-secret")), &form)
        .await;
    assert_eq!(resp.status(), 200);
    (resp.json().await.unwrap(), actor)
}
