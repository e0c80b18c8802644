//! The TPM path of `/attest` over real HTTP, with quotes a software TPM made
//! (tests/vectors/tpm, see make.sh), on SQLite and PostgreSQL.
//!
//! A vector's nonce is fixed while the server issues random ones, so each test stores the
//! vector's nonce through the store API (`create_nonce`, what `/attest/challenge` itself calls)
//! before posting the quote: the server then checks it exactly as an issued nonce (known,
//! unexpired, unused, bound to the agent).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::agents::{TestAgent, now};
use crate::flows::sign_in;
use crate::helpers::*;

fn vector_file(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/vectors/tpm/{dir}/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn vector_json(dir: &str, name: &str) -> Value {
    serde_json::from_slice(&vector_file(dir, name)).unwrap()
}

/// The `[[agents]]` entry of a TPM agent enrolled with a vector's AK and, optionally, a policy.
fn tpm_agent_toml(name: &str, dir: &str, policy: Option<&Value>) -> String {
    let mut s = format!(
        "[[agents]]\nname = \"{name}\"\nak_public = \"{}\"\n",
        STANDARD.encode(vector_file(dir, "ak.pub"))
    );
    if let Some(p) = policy {
        let pcrs: Vec<String> = p["sha256"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("\"{k}\" = {v}"))
            .collect();
        s.push_str(&format!(
            "pcr_policy = {{ sha256 = {{ {} }} }}\n",
            pcrs.join(", ")
        ));
    }
    s
}

/// The base64url nonce of a vector (`which` = "" or "2"), stored as if a challenge issued it.
async fn plant_nonce(app: &TestApp, dir: &str, which: &str, agent: Option<&str>) -> String {
    let hex_nonce = String::from_utf8(vector_file(dir, &format!("nonce{which}.hex"))).unwrap();
    let nonce = URL_SAFE_NO_PAD.encode(hex::decode(hex_nonce.trim()).unwrap());
    let store = mandate::store::open(&app.db.url, 2).await.unwrap();
    store
        .create_nonce(&nonce, agent, now() + 300, now())
        .await
        .unwrap();
    store.close().await;
    nonce
}

/// SPEC's `/attest` body for a vector; the signature goes base64url to show both are accepted.
fn body(agent: &str, nonce: &str, dir: &str, which: &str) -> Value {
    json!({
        "agent": agent,
        "nonce": nonce,
        "quote": STANDARD.encode(vector_file(dir, &format!("quote{which}.msg"))),
        "signature": URL_SAFE.encode(vector_file(dir, &format!("quote{which}.sig"))),
        "pcrs": vector_json(dir, &format!("pcrs{which}.json")),
    })
}

async fn post(app: &TestApp, body: &Value) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}/attest", app.url))
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn refusals_since(app: &TestApp, after: i64) -> Vec<String> {
    let store = mandate::store::open(&app.db.url, 2).await.unwrap();
    let e = store.audit_entries(after, 1000).await.unwrap();
    store.close().await;
    e.into_iter()
        .filter(|e| e.kind == "agent.attestation_refused")
        .map(|e| e.detail)
        .collect()
}

fn assert_refused(status: u16, v: &Value, why: &str) {
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{why}: {v}"
    );
}

#[tokio::test]
async fn tpm_quotes_yield_agent_tokens_once_and_never_out_of_order() {
    let policy = vector_json("ecc-p256", "pcr-policy.json");
    let extra = format!(
        "{}{}",
        tpm_agent_toml("tpm-bot", "ecc-p256", Some(&policy)),
        tpm_agent_toml("rsa-bot", "rsa-rsassa", None)
    );
    for b in backends() {
        let app = spawn_app_with(b, &extra).await;
        // As if this TPM had quoted before, from older firmware and before its last reset.
        let store = mandate::store::open(&app.db.url, 2).await.unwrap();
        let old = mandate::store::tpm::QuoteCounters {
            reset_count: 0,
            restart_count: 0,
            clock: 1,
            firmware: "0000000000000001".into(),
        };
        store
            .advance_tpm_counters("tpm-bot", &old, now())
            .await
            .unwrap();
        store.close().await;
        let start = app.audit_len().await;
        // The later quote first.
        let n2 = plant_nonce(&app, "ecc-p256", "2", Some("tpm-bot")).await;
        let (status, v) = post(&app, &body("tpm-bot", &n2, "ecc-p256", "2")).await;
        assert_eq!(status, 200, "{b:?}: {v}");
        assert_eq!(v["token_type"], "urn:ietf:params:oauth:token-type:jwt");
        let c = claims(v["agent_token"].as_str().unwrap());
        assert_eq!(c["sub"], "agent:tpm-bot");
        assert_eq!(c["att"], "tpm");
        assert_eq!(c["pcr_policy"], policy, "the PCR policy that matched");
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
        let ak = vector_file("ecc-p256", "ak.pub");
        assert_eq!(
            c["ak_thumbprint"],
            URL_SAFE_NO_PAD.encode(mandate::crypto::sha256(&ak[2..]))
        );

        // The same quote again: the nonce is used.
        let (status, v) = post(&app, &body("tpm-bot", &n2, "ecc-p256", "2")).await;
        assert_refused(status, &v, "replay");
        // The earlier quote with its own, fresh nonce: older than the last one seen.
        let n1 = plant_nonce(&app, "ecc-p256", "", Some("tpm-bot")).await;
        let (status, v) = post(&app, &body("tpm-bot", &n1, "ecc-p256", "")).await;
        assert_refused(status, &v, "older quote");
        let store = mandate::store::open(&app.db.url, 2).await.unwrap();
        let entries = store.audit_entries(start, 1000).await.unwrap();
        store.close().await;
        let fw = entries
            .iter()
            .find(|e| e.kind == "agent.tpm_firmware_changed")
            .expect("a firmware change is audited");
        assert!(fw.detail.contains("0000000000000001"), "{}", fw.detail);
        let reasons = refusals_since(&app, start).await;
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("nonce"), "{reasons:?}");
        assert!(reasons[1].contains("not newer"), "{reasons:?}");

        // RSASSA, no PCR policy: no pcr_policy claim.
        let n = plant_nonce(&app, "rsa-rsassa", "", None).await;
        let (status, v) = post(&app, &body("rsa-bot", &n, "rsa-rsassa", "")).await;
        assert_eq!(status, 200, "{b:?}: {v}");
        let c = claims(v["agent_token"].as_str().unwrap());
        assert_eq!(
            (c["att"].as_str(), c.get("pcr_policy")),
            (Some("tpm"), None)
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_tpm_evidence_is_refused_coarsely_and_audited_precisely() {
    let sw = TestAgent::new("sw-bot");
    let mut wrong_policy = vector_json("ecc-p256", "pcr-policy.json");
    wrong_policy["sha256"]["7"] = json!("00".repeat(32));
    let extra = format!(
        "{}{}{}",
        tpm_agent_toml("tpm-bot", "ecc-p256", None),
        tpm_agent_toml("strict-bot", "ecc-p256", Some(&wrong_policy)),
        sw.toml()
    );
    let app = spawn_app_with(Backend::Sqlite, &extra).await;
    let n = plant_nonce(&app, "ecc-p256", "", None).await;
    let good = body("tpm-bot", &n, "ecc-p256", "");
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut flipped = vector_file("ecc-p256", "quote.msg");
    flipped[40] ^= 1;
    let mut b = good.clone();
    b["quote"] = json!(STANDARD.encode(&flipped));
    cases.push(("a changed quote", b, "signature does not verify"));
    let mut b = good.clone();
    b["signature"] = json!(STANDARD.encode(vector_file("ecc-p256", "quote2.sig")));
    cases.push(("another quote's signature", b, "signature does not verify"));
    let mut b = good.clone();
    b["pcrs"]["sha256"]["1"] = json!("11".repeat(32));
    cases.push(("PCR values that are not the quoted ones", b, "pcrDigest"));
    let other = plant_nonce(&app, "rsa-rsassa", "", None).await;
    let mut b = good.clone();
    b["nonce"] = json!(other);
    cases.push(("an issued nonce that is not the quoted one", b, "extraData"));
    let mut b = good.clone();
    b["agent"] = json!("strict-bot");
    cases.push(("a PCR the policy does not allow", b, "PCR policy"));
    let mut b = good.clone();
    b["agent"] = json!("sw-bot");
    cases.push(("an agent without an AK", b, "no enrolled ak_public"));
    let mut b = good.clone();
    b["nonce"] = json!(URL_SAFE_NO_PAD.encode([9u8; 32]));
    cases.push(("an unknown nonce", b, "extraData"));
    let start = app.audit_len().await;
    for (why, b, _) in &cases {
        let (status, v) = post(&app, b).await;
        assert_refused(status, &v, why);
        assert!(
            !v["error_description"].as_str().unwrap().contains("PCR"),
            "the wire answer is coarse: {v}"
        );
    }
    let reasons = refusals_since(&app, start).await;
    assert_eq!(reasons.len(), cases.len(), "every refusal is audited");
    for ((why, _, reason), detail) in cases.iter().zip(&reasons) {
        assert!(detail.contains(reason), "{why}: {detail}");
    }
    // Malformed TPM requests are invalid_request.
    let mut no_pcrs = good.clone();
    no_pcrs.as_object_mut().unwrap().remove("pcrs");
    let mut not_b64 = good.clone();
    not_b64["quote"] = json!("%%%");
    let mut bad_pcrs = good.clone();
    bad_pcrs["pcrs"] = json!({"sha256": {"0": "xyz"}});
    let mut both = good.clone();
    both["proof"] = json!("a.b.c");
    for b in [no_pcrs, not_b64, bad_pcrs, both] {
        let (status, v) = post(&app, &b).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_request")),
            "{b}: {v}"
        );
    }
    // After all that, the nonce is unused and the genuine quote passes.
    let (status, v) = post(&app, &good).await;
    assert_eq!(status, 200, "{v}");
    app.stop().await;
}

const TPM_ONLY: &str = r#"
@id("tpm-agents-only")
permit (principal, action == Mandate::Action::"delegate", resource)
when { principal.attestation == "tpm" };
"#;

#[tokio::test]
async fn a_cedar_policy_can_require_tpm_attestation() {
    let sw = TestAgent::new("sw-bot");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tpm.cedar");
    std::fs::write(&file, TPM_ONLY).unwrap();
    let extra = format!(
        "[[clients]]\nclient_id = \"agent-host\"\nclient_secret = \"host-secret\"\ngrant_types = [\"{TE}\"]\n{}{}\
         [policy]\nfiles = [\"{}\"]\n",
        tpm_agent_toml("tpm-bot", "ecc-p256", None),
        sw.toml(),
        file.display()
    );
    for b in backends() {
        let app = spawn_app_with(b, &extra).await;
        let alice = sign_in(&app, "alice", "alice-password", "cli", "orders:read").await;
        let alice = alice["access_token"].as_str().unwrap().to_string();
        let n = plant_nonce(&app, "ecc-p256", "", Some("tpm-bot")).await;
        let (status, v) = post(&app, &body("tpm-bot", &n, "ecc-p256", "")).await;
        assert_eq!(status, 200, "{v}");
        let tpm_token = v["agent_token"].as_str().unwrap().to_string();
        let sw_token = sw.attest(&app).await;
        let exchange = |actor: String| {
            let (app, alice) = (&app, alice.clone());
            async move {
                token_exchange(
                    app,
                    AGENT_HOST,
                    &alice,
                    Some(&actor),
                    &[("scope", "orders:read")],
                )
                .await
            }
        };
        let (status, v) = exchange(sw_token).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "a software-attested agent is refused: {v}"
        );
        let (status, v) = exchange(tpm_token).await;
        assert_eq!(status, 200, "a TPM-attested agent is permitted: {v}");
        assert_eq!(
            claims(v["access_token"].as_str().unwrap())["act"]["sub"],
            "agent:tpm-bot"
        );
        app.stop().await;
    }
}

/// Counters only move forward, by one atomic statement per quote (TPM 2.0 Part 2 §10.11.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tpm_counters_advance_atomically_on_both_backends() {
    use mandate::store::tpm::{CounterOutcome, QuoteCounters};
    let c = |reset: i64, restart: i64, clock: i64, fw: &str| QuoteCounters {
        reset_count: reset,
        restart_count: restart,
        clock,
        firmware: fw.into(),
    };
    for b in backends() {
        let db = test_db(b).await;
        let store = mandate::store::open(&db.url, 8).await.unwrap();
        store.migrate().await.unwrap();
        let adv = |prev: Option<&str>| CounterOutcome::Advanced {
            previous_firmware: prev.map(str::to_string),
        };
        let steps = [
            (c(1, 0, 1000, "a"), adv(None), "first quote"),
            (c(1, 0, 1000, "a"), CounterOutcome::Stale, "same counters"),
            (c(1, 0, 999, "a"), CounterOutcome::Stale, "older clock"),
            (c(1, 0, 1001, "a"), adv(Some("a")), "later clock"),
            (
                c(1, 1, 10, "a"),
                adv(Some("a")),
                "restart: clock may be lower",
            ),
            (
                c(1, 0, 5000, "a"),
                CounterOutcome::Stale,
                "restartCount went back",
            ),
            (c(2, 0, 5, "b"), adv(Some("a")), "reset, new firmware"),
            (
                c(1, 9, 9999, "b"),
                CounterOutcome::Stale,
                "resetCount went back",
            ),
        ];
        for (counters, want, why) in steps {
            let got = store
                .advance_tpm_counters("bot", &counters, 0)
                .await
                .unwrap();
            assert_eq!(got, want, "{b:?}: {why}");
        }
        assert_eq!(
            store.tpm_counters("bot").await.unwrap(),
            Some(c(2, 0, 5, "b"))
        );
        // Counters are per agent.
        assert_eq!(
            store
                .advance_tpm_counters("other", &c(1, 0, 1, "a"), 0)
                .await
                .unwrap(),
            adv(None)
        );
        // A race of quotes with the same counters, on a fresh agent and on a known one:
        // exactly one advances.
        for (agent, counters) in [("racer", c(1, 0, 50, "a")), ("bot", c(2, 0, 6, "b"))] {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (store, counters) = (store.clone(), counters.clone());
                    tokio::spawn(async move {
                        store
                            .advance_tpm_counters(agent, &counters, 0)
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut advanced = 0;
            for t in tasks {
                if matches!(t.await.unwrap(), CounterOutcome::Advanced { .. }) {
                    advanced += 1;
                }
            }
            assert_eq!(advanced, 1, "{b:?}: {agent}");
        }
        store.close().await;
    }
}

#[tokio::test]
async fn operators_enroll_tpm_agents_from_the_cli() {
    let db = test_db(Backend::Sqlite).await;
    let config = write_config(&db, "");
    let cfg = config.to_str().unwrap();
    let vectors = format!("{}/tests/vectors/tpm", env!("CARGO_MANIFEST_DIR"));
    let ak = format!("{vectors}/ecc-p256/ak.pub");
    let policy = format!("{vectors}/ecc-p256/pcr-policy.json");
    let out = mandate_cli(
        &[
            "--config",
            cfg,
            "agents",
            "enroll",
            "--name",
            "cli-bot",
            "--ak-public",
            &ak,
            "--pcr-policy",
            &policy,
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ECC P-256"), "{stdout}");
    // What is not an attestation key is refused before anything is stored.
    for bad in [
        format!("{vectors}/ecc-p256/quote.msg"),
        format!("{vectors}/ecc-p256/pcrs.json"),
    ] {
        let out = mandate_cli(
            &[
                "--config",
                cfg,
                "agents",
                "enroll",
                "--name",
                "x",
                "--ak-public",
                &bad,
            ],
            None,
        );
        assert!(!out.status.success(), "{bad} was enrolled");
    }
    let out = mandate_cli(&["--config", cfg, "agents", "list"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cli-bot  tpm ECC P-256") && stdout.contains("pcr policy"),
        "{stdout}"
    );
    assert!(!stdout.contains("x "), "{stdout}");
    // The enrolled agent attests with a quote once the server (re)starts.
    let app = spawn_on(db, "").await;
    let n = plant_nonce(&app, "ecc-p256", "", Some("cli-bot")).await;
    let (status, v) = post(&app, &body("cli-bot", &n, "ecc-p256", "")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(claims(v["agent_token"].as_str().unwrap())["att"], "tpm");
    app.stop().await;
}

/// Zero-touch enrollment storage, both backends: a challenge is taken once (expired ones never),
/// and an agent name is pinned to one EK and an EK to one name, in one statement each.
#[tokio::test]
async fn enrollment_challenges_are_single_use_and_agents_are_pinned_to_their_ek() {
    use mandate::store::tpm::PendingEnrollment;
    for b in backends() {
        let db = test_db(b).await;
        let store = mandate::store::open(&db.url, 4).await.unwrap();
        store.migrate().await.unwrap();
        let pending = |id: &str, expires_at: i64| PendingEnrollment {
            id: id.into(),
            agent: "bot".into(),
            ek_hash: "ek-a".into(),
            ek_issuer: "CN=ca".into(),
            ak_public: "AAAA".into(),
            secret_hash: vec![1, 2, 3],
            created_at: 100,
            expires_at,
        };
        store.create_enrollment(&pending("e1", 400)).await.unwrap();
        store.create_enrollment(&pending("e2", 150)).await.unwrap();
        assert_eq!(
            store.take_enrollment("e1", 200).await.unwrap(),
            Some(pending("e1", 400)),
            "{b:?}"
        );
        assert_eq!(
            store.take_enrollment("e1", 200).await.unwrap(),
            None,
            "taken once"
        );
        assert_eq!(
            store.take_enrollment("e2", 200).await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(store.take_enrollment("nope", 200).await.unwrap(), None);

        assert!(
            store
                .enroll_agent_by_ek("bot", "{}", "ek-a", 1)
                .await
                .unwrap()
        );
        assert!(
            store
                .enroll_agent_by_ek("bot", "{\"v\":2}", "ek-a", 2)
                .await
                .unwrap(),
            "same EK re-enrolls"
        );
        assert!(
            !store
                .enroll_agent_by_ek("bot", "{}", "ek-b", 3)
                .await
                .unwrap(),
            "{b:?}: another EK cannot take the name"
        );
        assert!(
            !store
                .enroll_agent_by_ek("bot2", "{}", "ek-a", 3)
                .await
                .unwrap(),
            "{b:?}: one EK enrolls one agent"
        );
        store
            .upsert_agent("cfg-bot", "{}", "config", 1)
            .await
            .unwrap();
        assert!(
            !store
                .enroll_agent_by_ek("cfg-bot", "{}", "ek-c", 3)
                .await
                .unwrap(),
            "an agent enrolled otherwise is not taken over by an EK"
        );
        let rec = store.agent_record("bot").await.unwrap().unwrap();
        assert_eq!(
            (rec.data.as_str(), rec.source.as_str()),
            ("{\"v\":2}", "ek")
        );
        assert_eq!(rec.ek_hash.as_deref(), Some("ek-a"));
        assert_eq!(
            store.agent_by_ek("ek-a").await.unwrap().as_deref(),
            Some("bot")
        );
        assert_eq!(store.agent_by_ek("ek-b").await.unwrap(), None);
        store.close().await;
    }
}

/// Failed zero-touch enrollments are throttled like sign-ins: after five for one agent name the
/// sixth is answered 429 `slow_down` before any work, and writes no audit entry; other names are
/// still served. Zero-touch off answers a clear `invalid_request`.
#[tokio::test]
async fn failed_enrollments_are_throttled_per_agent_name() {
    let off = spawn_app(Backend::Sqlite).await;
    let resp = off
        .http
        .post(format!("{}/attest/enroll", off.url))
        .json(&serde_json::json!({"agent": "x", "ek_public": "AAAA", "ak_public": "AAAA"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("not enabled"),
        "{v}"
    );
    off.stop().await;

    let app = spawn_app_with(
        Backend::Sqlite,
        &format!("[attestation]\nek_allowlist = [\"{}\"]\n", "0".repeat(64)),
    )
    .await;
    let post = |agent: &'static str| {
        let app = &app;
        async move {
            let resp = app
                .http
                .post(format!("{}/attest/enroll", app.url))
                .json(
                    &serde_json::json!({"agent": agent, "ek_public": "AAAA", "ak_public": "AAAA"}),
                )
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let v: serde_json::Value = resp.json().await.unwrap();
            (status, v["error"].as_str().unwrap_or_default().to_string())
        }
    };
    for _ in 0..5 {
        assert_eq!(post("squatter").await, (400, "invalid_grant".to_string()));
    }
    assert_eq!(post("squatter").await, (429, "slow_down".to_string()));
    assert_eq!(
        post("other").await.0,
        400,
        "another name is not throttled yet"
    );
    let refusals = app
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| e.kind == "agent.enrollment_refused")
        .count();
    assert_eq!(
        refusals, 6,
        "5 for squatter, 1 for other; the throttled one wrote nothing"
    );
    app.stop().await;
}
