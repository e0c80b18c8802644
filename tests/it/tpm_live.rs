//! Live TPM tests (feature `tpm`, needs swtpm, swtpm-tools and libtss2): the agent SDK against a
//! software TPM whose EK certificates `swtpm_setup --create-ek-cert` made. Zero-touch enrollment
//! by EK certificate and credential activation (TPM 2.0 Part 1 §24; Part 3 TPM2_MakeCredential,
//! TPM2_ActivateCredential), quotes (Part 3 TPM2_Quote), the agent token, an RFC 8693 exchange of
//! a human's token with it; and the refusals: unknown EK issuer, failed activation, a name pinned
//! to another EK, tampered, replayed and wrong-PCR quotes.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mandate_agent::tpm::{EkKind, TpmAttester, TpmConfig};
use mandate_agent::{AgentSession, Attester, Client, Error, SoftwareKey, pem_certificates};
use serde_json::{Value, json};

use crate::flows::alice_token;
use crate::helpers::*;
use crate::swtpm::Swtpm;

fn server_config(roots: &[&std::path::Path], extra: &str) -> String {
    let roots: Vec<String> = roots
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!(
        "[attestation]\nek_roots = [{}]\n\n[[clients]]\nclient_id = \"agent-sdk\"\n\
         client_secret = \"sdk-secret\"\ngrant_types = [\"{TE}\"]\n{extra}",
        roots.join(", ")
    )
}

async fn attester(tpm: &Swtpm, ek: EkKind, sub: &str) -> TpmAttester {
    let cfg = TpmConfig {
        tcti: tpm.tcti(),
        state_dir: tpm.state_dir().join(sub),
        ek,
        pcrs: vec![0, 1, 2, 3, 7],
    };
    tokio::task::spawn_blocking(move || TpmAttester::open(cfg))
        .await
        .unwrap()
        .unwrap()
}

/// The software sub-agent's key: one per test process, registered as `sub-bot`.
fn sub_key() -> SoftwareKey {
    use std::sync::OnceLock;
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    let der = DER.get_or_init(|| {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap()
            .as_ref()
            .to_vec()
    });
    SoftwareKey::from_pkcs8_der(der).unwrap()
}

fn sub_agent_toml() -> String {
    let jwk = sub_key().public_jwk();
    format!(
        "[[agents]]\nname = \"sub-bot\"\npublic_jwk = {{ kty = \"EC\", crv = \"P-256\", x = {}, y = {} }}\n",
        jwk["x"], jwk["y"]
    )
}

fn sdk(app: &TestApp) -> Client {
    Client::new(&app.url, "agent-sdk", Some("sdk-secret")).unwrap()
}

fn chain(tpm: &Swtpm) -> Vec<Vec<u8>> {
    pem_certificates(&std::fs::read_to_string(tpm.intermediate()).unwrap()).unwrap()
}

/// (kind, subject, detail) of every audit entry, oldest first.
async fn audit(app: &TestApp) -> Vec<(String, Option<String>, Value)> {
    app.audit_entries()
        .await
        .into_iter()
        .map(|e| {
            (
                e.kind,
                e.subject,
                serde_json::from_str(&e.detail).unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// A fresh nonce for `tpm-bot` and the TPM's evidence over it.
async fn fresh_quote(client: &Client, a: &TpmAttester, app: &TestApp) -> (String, Value) {
    let nonce = client.challenge("tpm-bot").await.unwrap();
    let evidence = a.evidence("tpm-bot", &app.url, &nonce).await.unwrap();
    (nonce, evidence)
}

fn server_refused(e: Error) -> (u16, String, String) {
    match e {
        Error::Server {
            status,
            error,
            description,
        } => (status, error, description.unwrap_or_default()),
        other => panic!("expected a refusal from the server, got {other}"),
    }
}

/// Done when (issue 4): the SDK enrolls an agent by its EK certificate, quotes, receives an agent
/// token and exchanges a human's token with it — for the RSA-2048 EK (template L-1, OAEP seed)
/// and the ECC P-384 EK (template H-3, ECDH seed, SHA-384 and AES-256), on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_enrolls_by_ek_certificate_quotes_and_acts_for_a_human() {
    for backend in backends() {
        for ek in [EkKind::Rsa2048, EkKind::EccP384] {
            let tpm = Swtpm::start();
            let app =
                spawn_app_with(backend, &server_config(&[&tpm.root()], &sub_agent_toml())).await;
            let what = format!("{backend:?} {ek:?}");
            let attester = attester(&tpm, ek, "agent").await;

            let enrolled = attester.enroll(&sdk(&app), "tpm-bot", &chain(&tpm)).await;
            let enrolled = enrolled.unwrap_or_else(|e| panic!("{what}: enrollment failed: {e}"));
            assert_eq!(enrolled["agent"], "tpm-bot", "{what}");
            assert_eq!(enrolled["enrolled"], true);

            let session = AgentSession::new(sdk(&app), &app.url, "tpm-bot", attester);
            let agent_token = session
                .token()
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let c = claims(&agent_token);
            assert_eq!(c["sub"], "agent:tpm-bot");
            assert_eq!(
                c["att"], "tpm",
                "SPEC: the agent token says how it was attested"
            );
            assert_eq!(c["ak_thumbprint"], enrolled["ak_thumbprint"]);
            assert_eq!(
                session.token().await.unwrap(),
                agent_token,
                "a token far from expiry is reused, not re-attested"
            );

            let alice = alice_token(&app, "orders:read orders:write").await;
            let delegated = session
                .act_for(&alice, Some("orders:read"), &["orders-api"])
                .await
                .unwrap_or_else(|e| panic!("{what}: exchange failed: {e}"));
            use mandate_agent::oauth2::TokenResponse;
            let token = delegated.access_token().secret().to_string();
            let v = app.introspect(&token).await;
            assert_eq!(v["active"], true, "{what}: {v}");
            assert_eq!(v["sub"], "alice", "the human stays the subject");
            assert_eq!(v["act"], json!({"sub": "agent:tpm-bot"}), "RFC 8693 §4.1");
            assert_eq!(
                v["att"], "tpm",
                "{what}: introspection says the actor was TPM-attested"
            );
            assert_eq!(claims(&token)["att"], "tpm", "{what}: so does the token");
            assert_eq!(
                v["scope"], "orders:read",
                "RFC 8693 §2.1: scope only narrows"
            );

            // A software sub-agent gets a narrower token from the TPM agent (RFC 8693 §4.1:
            // the current actor outermost).
            let sub = AgentSession::new(sdk(&app), &app.url, "sub-bot", sub_key());
            let sub_token = sub.token().await.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(claims(&sub_token)["att"], "software");
            let narrower = session
                .delegate(&token, &sub_token, Some("orders:read"), &[])
                .await
                .unwrap_or_else(|e| panic!("{what}: sub-agent exchange failed: {e}"));
            let v = app.introspect(narrower.access_token().secret()).await;
            assert_eq!(
                v["act"],
                json!({"sub": "agent:sub-bot", "act": {"sub": "agent:tpm-bot"}}),
                "{what}"
            );
            assert_eq!(
                v["att"], "software",
                "{what}: `att` is the current actor's, not its parent's"
            );
            let widened = session
                .delegate(&token, &sub_token, Some("orders:write"), &[])
                .await
                .unwrap_err();
            assert_eq!(
                server_refused(widened).1,
                "invalid_scope",
                "scopes only narrow"
            );

            let kinds: Vec<String> = audit(&app).await.into_iter().map(|e| e.0).collect();
            for k in ["agent.enrollment_challenged", "agent.enrolled"] {
                assert!(
                    kinds.iter().any(|x| x == k),
                    "{what}: no {k} in the audit log"
                );
            }
            app.stop().await;
        }
    }
}

/// An agent token expiring within its refresh margin is replaced by attesting again (a new
/// quote, with the TPM clock advanced, is accepted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_attests_again_before_the_agent_token_expires() {
    let tpm = Swtpm::start();
    let app = spawn_app_with(
        Backend::Sqlite,
        &server_config(&[&tpm.root()], "[tokens]\nagent_token_ttl = \"20s\"\n"),
    )
    .await;
    let attester = attester(&tpm, EkKind::Rsa2048, "agent").await;
    attester
        .enroll(&sdk(&app), "tpm-bot", &chain(&tpm))
        .await
        .unwrap();
    let session = AgentSession::new(sdk(&app), &app.url, "tpm-bot", attester);
    let first = session.token().await.unwrap();
    let second = session.token().await.unwrap();
    assert_ne!(
        first, second,
        "20 s of life is inside the 30 s margin: attested again"
    );
    assert_eq!(claims(&second)["att"], "tpm");
    app.stop().await;
}

/// Unknown EK issuers, failed activations, a name pinned to another EK and an EK already enrolled
/// under another name are refused and audited; nothing is enrolled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_refusals_are_clear_audited_and_enroll_nothing() {
    for backend in backends() {
        let tpm = Swtpm::start();
        let other = Swtpm::start();
        // The server trusts only the other TPM's CA.
        let app = spawn_app_with(backend, &server_config(&[&other.root()], "")).await;
        let a = attester(&tpm, EkKind::Rsa2048, "agent").await;
        let (status, error, description) = server_refused(
            a.enroll(&sdk(&app), "tpm-bot", &chain(&tpm))
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (status, error.as_str()),
            (400, "invalid_grant"),
            "{backend:?}"
        );
        assert!(description.contains("EK certificate"), "{description}");
        app.stop().await;

        // Now trusting both: a wrong answer to the challenge burns it.
        let app = spawn_app_with(backend, &server_config(&[&tpm.root(), &other.root()], "")).await;
        let client = sdk(&app);
        let challenge = client
            .enroll(
                "tpm-bot",
                &a.ek_public().await.unwrap(),
                Some(&a.ek_certificate().await.unwrap()),
                &chain(&tpm),
                &a.ak_public().await.unwrap(),
            )
            .await
            .unwrap();
        assert!(!challenge.credential_blob.is_empty() && !challenge.encrypted_secret.is_empty());
        for attempt in ["wrong secret", "the burnt challenge again"] {
            let (status, error, _) = server_refused(
                client
                    .activate(&challenge.enrollment_id, &[7u8; 32])
                    .await
                    .unwrap_err(),
            );
            assert_eq!(
                (status, error.as_str()),
                (400, "invalid_grant"),
                "{attempt}"
            );
        }
        let (nonce, evidence) = fresh_quote(&client, &a, &app).await;
        let (status, _, _) = server_refused(
            client
                .attest("tpm-bot", &nonce, evidence)
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 400, "a failed activation enrolls nothing");

        // The real enrollment; then another TPM cannot take the name, and this TPM cannot
        // enroll a second name.
        a.enroll(&client, "tpm-bot", &chain(&tpm)).await.unwrap();
        let b = attester(&other, EkKind::Rsa2048, "agent").await;
        let (_, error, description) = server_refused(
            b.enroll(&client, "tpm-bot", &chain(&other))
                .await
                .unwrap_err(),
        );
        assert_eq!(error, "invalid_grant");
        assert!(description.contains("not available"), "{description}");
        let (_, _, description) = server_refused(
            a.enroll(&client, "second-name", &chain(&tpm))
                .await
                .unwrap_err(),
        );
        assert!(description.contains("another agent"), "{description}");

        let reasons: Vec<String> = audit(&app)
            .await
            .into_iter()
            .filter(|e| e.0 == "agent.enrollment_refused")
            .map(|e| e.2["reason"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(
            reasons.iter().any(|r| r.contains("activation failed")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("unknown, used or expired")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("pinned to another EK")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("already enrolled agent:tpm-bot")),
            "{reasons:?}"
        );
        app.stop().await;
    }
}

/// Tampered, replayed and wrong-PCR quotes from a real TPM are refused (tpm.md's verifier
/// checks 2, 4 and 6), and the agent gets no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_replayed_and_wrong_pcr_quotes_are_refused() {
    let tpm = Swtpm::start();
    let app = spawn_app_with(Backend::Sqlite, &server_config(&[&tpm.root()], "")).await;
    let a = Arc::new(attester(&tpm, EkKind::Rsa2048, "agent").await);
    let client = sdk(&app);
    a.enroll(&client, "tpm-bot", &chain(&tpm)).await.unwrap();

    // Tampered: one byte of the quoted TPMS_ATTEST changed (its clock), signature kept.
    let (nonce, mut evidence) = fresh_quote(&client, &a, &app).await;
    let mut quote = STANDARD
        .decode(evidence["quote"].as_str().unwrap())
        .unwrap();
    let i = quote.len() - 40;
    quote[i] ^= 0x01;
    evidence["quote"] = STANDARD.encode(&quote).into();
    let (status, error, _) = server_refused(
        client
            .attest("tpm-bot", &nonce, evidence)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, error.as_str()),
        (400, "invalid_grant"),
        "tampered quote"
    );

    // Replayed: a good quote accepted once, then posted again.
    let (nonce, evidence) = fresh_quote(&client, &a, &app).await;
    client
        .attest("tpm-bot", &nonce, evidence.clone())
        .await
        .unwrap();
    let (status, _, _) = server_refused(
        client
            .attest("tpm-bot", &nonce, evidence)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400, "replayed quote");

    // Wrong PCRs: the operator pins PCR 7 to a value this TPM does not have.
    let ak = a.ak_public().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ak.pub"), &ak).unwrap();
    std::fs::write(
        dir.path().join("pcr.json"),
        json!({"sha256": {"7": "ab".repeat(32)}}).to_string(),
    )
    .unwrap();
    let config = app.config_path.to_str().unwrap().to_string();
    let out = mandate_cli(
        &[
            "--config",
            &config,
            "agents",
            "enroll",
            "--name",
            "tpm-bot",
            "--ak-public",
            dir.path().join("ak.pub").to_str().unwrap(),
            "--pcr-policy",
            dir.path().join("pcr.json").to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (nonce, evidence) = fresh_quote(&client, &a, &app).await;
    let (status, _, _) = server_refused(
        client
            .attest("tpm-bot", &nonce, evidence)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400, "quote whose PCR 7 misses the policy");
    let refusals: Vec<Value> = audit(&app)
        .await
        .into_iter()
        .filter(|e| e.0 == "agent.attestation_refused")
        .map(|e| e.2)
        .collect();
    assert_eq!(refusals.len(), 3, "each refusal audited: {refusals:?}");
    app.stop().await;
}

/// Runs `mandate-agent` as an agent would, its client secret in the environment.
fn run_cli(args: Vec<String>) -> std::process::Output {
    std::process::Command::new(crate::agent_cli::agent_cli())
        .args(&args)
        .env("MANDATE_AGENT_CLIENT_SECRET", "sdk-secret")
        .env("MANDATE_LOG", "warn")
        .output()
        .unwrap()
}

/// `mandate-agent enroll` and `mandate-agent attest --subject-token` on the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandate_agent_cli_enrolls_attests_and_exchanges() {
    let tpm = Swtpm::start();
    let app = spawn_app_with(Backend::Sqlite, &server_config(&[&tpm.root()], "")).await;
    let state = tpm.state_dir().join("cli-agent");
    let tcti = tpm.tcti();
    let common = |cmd: &str| -> Vec<String> {
        [
            cmd,
            "--server",
            &app.url,
            "--name",
            "cli-bot",
            "--tpm",
            &tcti,
            "--state-dir",
            state.to_str().unwrap(),
            "--client-id",
            "agent-sdk",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // The AK first, as an operator pre-registering it would take it; enrollment then uses the
    // same AK (kept in --state-dir).
    let ak_file = tpm.state_dir().join("ak.pub");
    let args: Vec<String> = vec![
        "ak-public".into(),
        "--tpm".into(),
        tcti.clone(),
        "--state-dir".into(),
        state.display().to_string(),
        "--out".into(),
        ak_file.display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || run_cli(args))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ak = std::fs::read(&ak_file).unwrap();
    mandate::attest::tpm::verify::attestation_key(&ak).expect("an attestation key");

    let mut args = common("enroll");
    args.extend([
        "--ek-chain".into(),
        tpm.intermediate().display().to_string(),
    ]);
    let out = tokio::task::spawn_blocking(move || run_cli(args))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["enrolled"], true);
    assert_eq!(
        v["ak_thumbprint"],
        mandate::crypto::b64url(&mandate::crypto::sha256(&ak[2..])),
        "the AK ak-public wrote is the one enrolled"
    );

    let alice = alice_token(&app, "orders:read").await;
    let file = tpm.state_dir().join("alice.token");
    std::fs::write(&file, &alice).unwrap();
    let mut args = common("attest");
    args.extend(["--subject-token".into(), file.display().to_string()]);
    let out = tokio::task::spawn_blocking(move || run_cli(args))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims(v["agent_token"].as_str().unwrap())["att"], "tpm");
    let delegated = v["delegated"]["access_token"].as_str().unwrap();
    let i = app.introspect(delegated).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["act"]["sub"], "agent:cli-bot");
    app.stop().await;
}

/// A TPM without a usable EK certificate enrolls when an operator put its EK on
/// `attestation.ek_allowlist` (SHA-256 of the EK's SubjectPublicKeyInfo); the audit says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlisted_ek_enrolls_without_any_ek_root() {
    // swtpm 0.7.1 certifies no P-256 EK (template L-2): the allowlist is how it enrolls, and this
    // is the live check of MakeCredential's P-256 ECDH seed with a PolicySecret-guarded EK.
    for kind in [EkKind::EccP256, EkKind::EccP384] {
        let tpm = Swtpm::start();
        let a = attester(&tpm, kind, "agent").await;
        let ek =
            mandate::attest::tpm::parse::parse_ek_public(&a.ek_public().await.unwrap()).unwrap();
        let hash = mandate::attest::enroll::ek_key_hash(&ek.key).unwrap();
        let app = spawn_app_with(
            Backend::Sqlite,
            &format!(
                "[attestation]\nek_allowlist = [\"{hash}\"]\n\n[[clients]]\nclient_id = \"agent-sdk\"\n\
                 client_secret = \"sdk-secret\"\ngrant_types = [\"{TE}\"]\n"
            ),
        )
        .await;
        a.enroll(&sdk(&app), "listed-bot", &[])
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let session = AgentSession::new(sdk(&app), &app.url, "listed-bot", a);
        assert_eq!(claims(&session.token().await.unwrap())["att"], "tpm");
        let enrolled: Vec<Value> = audit(&app)
            .await
            .into_iter()
            .filter(|e| e.0 == "agent.enrolled")
            .map(|e| e.2)
            .collect();
        assert_eq!(enrolled.len(), 1);
        assert_eq!(enrolled[0]["via"], "ek_allowlist");
        assert_eq!(enrolled[0]["ek_hash"], hash.as_str());
        app.stop().await;
    }
}

/// Issue 20's chain, live: human → TPM agent → software sub-agent, each hop DPoP-bound to its
/// own key, the TPM agent's key held in swtpm and proven by TPM2_Certify with its AK
/// (`dpop_key: tpm`); the sub-agent's key is in memory (`software`). A proof by any other key
/// gets nothing, and policy can require a TPM-held key (`context.dpop == "tpm"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9449_a_dpop_chain_whose_first_hop_key_is_held_in_the_tpm() {
    use mandate_agent::DpopKey;
    use mandate_agent::client::Exchange;
    use mandate_agent::oauth2::TokenResponse;
    for backend in backends() {
        let tpm = Swtpm::start();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tpm.cedar"),
            "@id(\"write-needs-a-tpm-key\")\npermit(principal, action == Mandate::Action::\"delegate\", resource)\n\
             when { context.dpop == \"tpm\" || !context.scopes.contains(\"orders:write\") };\n",
        )
        .unwrap();
        let policy = format!(
            "{}\n[policy]\nfiles = [{:?}]\n",
            sub_agent_toml(),
            dir.path().join("tpm.cedar").display().to_string()
        );
        let app = spawn_app_with(backend, &server_config(&[&tpm.root()], &policy)).await;
        let client = sdk(&app);
        let attester = attester(&tpm, EkKind::Rsa2048, "agent").await;
        attester
            .enroll(&client, "tpm-bot", &chain(&tpm))
            .await
            .unwrap();
        let (attest_url, token_url) = (
            client.endpoint_url("/attest"),
            client.endpoint_url("/token"),
        );
        let tpm_proof = |url: String| {
            let a = &attester;
            async move {
                a.dpop_proof("tpm-bot", "POST", &url, None, None)
                    .await
                    .unwrap()
            }
        };

        // The TPM agent attests with its quote, the certification of its DPoP key, and a proof
        // that key signed inside the TPM.
        let (nonce, mut evidence) = fresh_quote(&client, &attester, &app).await;
        evidence["dpop_key"] = attester.dpop_certification("tpm-bot").await.unwrap();
        let jkt = attester.dpop_jkt("tpm-bot").await.unwrap();
        let agent = client
            .attest_bound(
                "tpm-bot",
                &nonce,
                evidence.clone(),
                Some(&tpm_proof(attest_url.clone()).await),
            )
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"))
            .agent_token;
        let c = claims(&agent);
        assert_eq!(c["cnf"]["jkt"], jkt.as_str(), "{backend:?}: RFC 9449 §6.1");
        assert_eq!(
            c["dpop_key"], "tpm",
            "the key was proven to live in the TPM"
        );

        // The certified key with a proof by another key is refused, and so is a certification
        // of the key posted beside a software proof.
        let (nonce2, mut evidence2) = fresh_quote(&client, &attester, &app).await;
        evidence2["dpop_key"] = evidence["dpop_key"].clone();
        let other = DpopKey::generate();
        let e = client
            .attest_bound(
                "tpm-bot",
                &nonce2,
                evidence2,
                Some(&other.proof("POST", &attest_url, None, None).unwrap()),
            )
            .await
            .unwrap_err();
        assert_eq!(server_refused(e).1, "invalid_dpop_proof");

        // alice → tpm-bot, signed by the TPM key: bound to it, and `orders:write` is allowed
        // because the key is in the TPM.
        let alice = alice_token(&app, "orders:read orders:write").await;
        let exchange = |subject: String, actor: String, scope: &'static str, proof: String| {
            let client = client.clone();
            async move {
                client
                    .exchange(&Exchange {
                        subject_token: &subject,
                        actor_token: &actor,
                        scope: Some(scope),
                        audience: &[],
                        dpop: Some(&proof),
                    })
                    .await
            }
        };
        let delegated = exchange(
            alice.clone(),
            agent.clone(),
            "orders:read orders:write",
            tpm_proof(token_url.clone()).await,
        )
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let token = delegated.access_token().secret().to_string();
        let v = app.introspect(&token).await;
        assert_eq!(
            (v["token_type"].as_str(), v["cnf"]["jkt"].as_str()),
            (Some("DPoP"), Some(jkt.as_str())),
            "{v}"
        );
        assert_eq!(v["dpop_key"], "tpm", "{backend:?}: {v}");

        // The agent token with a proof by another key acts for nobody.
        let e = exchange(
            alice.clone(),
            agent.clone(),
            "orders:read",
            other.proof("POST", &token_url, None, None).unwrap(),
        )
        .await
        .unwrap_err();
        assert_eq!(server_refused(e).1, "invalid_grant");

        // tpm-bot → sub-bot (software key): bound to the sub-agent's own key.
        let sub_dpop = DpopKey::generate();
        let sub_nonce = client.challenge("sub-bot").await.unwrap();
        let sub_proof = sub_key().proof("sub-bot", &app.url, &sub_nonce).unwrap();
        let sub_agent = client
            .attest_bound(
                "sub-bot",
                &sub_nonce,
                json!({ "proof": sub_proof }),
                Some(&sub_dpop.proof("POST", &attest_url, None, None).unwrap()),
            )
            .await
            .unwrap()
            .agent_token;
        assert_eq!(claims(&sub_agent)["dpop_key"], "software");
        let narrower = exchange(
            token.clone(),
            sub_agent.clone(),
            "orders:read",
            sub_dpop.proof("POST", &token_url, None, None).unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let v = app.introspect(narrower.access_token().secret()).await;
        assert_eq!(
            v["cnf"]["jkt"],
            sub_dpop.jkt(),
            "each hop is bound to its own key"
        );
        assert_eq!(v["dpop_key"], "software");
        assert_eq!(
            v["dpop_chain"][1],
            json!({"sub": "agent:tpm-bot", "jkt": jkt, "dpop_key": "tpm"}),
            "introspection shows the first hop's key was in the TPM: {v}"
        );
        assert_eq!(
            v["act"],
            json!({"sub": "agent:sub-bot", "act": {"sub": "agent:tpm-bot"}})
        );
        // Policy: `orders:write` only with a TPM-held key; the sub-agent's is not.
        let e = exchange(
            alice.clone(),
            sub_agent.clone(),
            "orders:write",
            sub_dpop.proof("POST", &token_url, None, None).unwrap(),
        )
        .await
        .unwrap_err();
        let (_, error, _) = server_refused(e);
        assert!(
            error == "invalid_scope" || error == "invalid_grant",
            "{error}"
        );
        app.stop().await;
    }
}
