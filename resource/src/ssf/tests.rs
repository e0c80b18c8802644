//! The receiver against a stand-in issuer on 127.0.0.1:0 (its metadata, one ES256 key, an
//! introspection endpoint), with SETs and access tokens signed here. The end-to-end run against
//! a real mandate is `tests/it/resource_ssf.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::routing::get;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::AuthError;

/// A P-256 key (PKCS #8) and its public point, made with `openssl ecparam -name prime256v1`.
const KEY_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgS0rNlyRyhBqBEXtBQ+98poiXCgEonnTDWV5Bt3vSseKhRANCAARp+2v2IkpwOiVTBc/gDOyAd1/MMJRxGtVmVUyeUhVIeqU4nsTUS4Qf63LT4LHN+I7CG8HZlTBOWhivyUPSLxKp";
const X: &str = "aftr9iJKcDolUwXP4AzsgHdfzDCUcRrVZlVMnlIVSHo";
const Y: &str = "pTiexNRLhB_rctPgsc34jsIbwdmVME5aGK_JQ9IvEqk";
const AUD: &str = "orders-api";
const AUTHZ: &str = "Bearer receiver-secret-0123456789";

fn key() -> EncodingKey {
    let der = base64::engine::general_purpose::STANDARD
        .decode(KEY_PKCS8)
        .unwrap();
    EncodingKey::from_ec_der(&der)
}

/// Another P-256 key, not the issuer's.
fn other_key() -> EncodingKey {
    let pem_body = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglrDNJcVV4aPSf9WFtLdvAnjsN/XZ213PjEFDu5zOYW2hRANCAAQui92R5F4NrxG1B3NNyzoAEALPaBFHSUoiQUcgI3bphr8bMchfyv8Hrx/tG+84j9JQ73C/rKoCmMPPNwQLzk2l";
    let der = base64::engine::general_purpose::STANDARD
        .decode(pem_body)
        .unwrap();
    EncodingKey::from_ec_der(&der)
}

struct Issuer {
    url: String,
    introspections: Arc<AtomicUsize>,
}

/// The stand-in issuer. Its introspection endpoint calls every token active, as alice's token
/// of session `sid-1`.
async fn issuer() -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let introspections = Arc::new(AtomicUsize::new(0));
    let (u1, u2, count) = (url.clone(), url.clone(), introspections.clone());
    let app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || {
                let u = u1.clone();
                async move {
                    axum::Json(json!({"issuer": u, "jwks_uri": format!("{u}/jwks.json"),
                                      "introspection_endpoint": format!("{u}/introspect")}))
                }
            }),
        )
        .route(
            "/jwks.json",
            get(|| async {
                axum::Json(
                    json!({"keys": [{"kty": "EC", "crv": "P-256", "x": X, "y": Y,
                                            "kid": "k1", "alg": "ES256", "use": "sig"}]}),
                )
            }),
        )
        .route(
            "/introspect",
            post(move || {
                let (u, count) = (u2.clone(), count.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    let now = now_secs();
                    axum::Json(
                        json!({"active": true, "iss": u, "sub": "alice", "sid": "sid-1",
                                      "jti": "t1", "aud": AUD, "iat": now - 5, "exp": now + 600}),
                    )
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Issuer {
        url,
        introspections,
    }
}

fn sign(claims: &Value, typ: &str, kid: &str, key: &EncodingKey) -> String {
    let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
    h.typ = Some(typ.into());
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

/// A SET as mandate makes it (docs/ssf.md), about `sub_id`.
fn set_claims(iss: &str, jti: &str, sub_id: Value) -> Value {
    let now = now_secs();
    json!({"iss": iss, "jti": jti, "iat": now, "aud": AUD, "sub_id": sub_id,
           "events": {SESSION_REVOKED: {"event_timestamp": now, "initiating_entity": "user",
                                        "reason_admin": {"en": "token.revoked"}}}})
}

fn session(id: &str) -> Value {
    json!({"format": "complex", "session": {"format": "opaque", "id": id}})
}

fn access_token(iss: &str, extra: Value) -> String {
    let now = now_secs();
    let mut c = json!({"iss": iss, "sub": "alice", "aud": AUD, "iat": now - 5,
                       "exp": now + 600, "client_id": "cli"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    sign(&c, "at+jwt", "k1", &key())
}

async fn push(app: &Router, auth: Option<&str>, ctype: &str, body: String) -> (u16, Value) {
    let mut req = http::Request::post("/ssf/events").header(header::CONTENT_TYPE, ctype);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn post_set(app: &Router, set: String) -> (u16, Value) {
    push(app, Some(AUTHZ), "application/secevent+jwt", set).await
}

fn receiver_for(verifier: &Verifier) -> Router {
    verifier
        .ssf_receiver(SsfReceiverConfig::new(AUD, AUTHZ))
        .unwrap()
        .router("/ssf/events")
}

fn is_revoked(r: Result<crate::Principal, AuthError>) -> bool {
    matches!(r, Err(AuthError::InvalidToken(d)) if d.contains("revoked"))
}

#[tokio::test]
async fn caep_session_revoked_makes_the_verifier_refuse_the_sessions_tokens_at_once() {
    let is = issuer().await;
    let verifier = Verifier::builder(&is.url, AUD).build().unwrap();
    let app = receiver_for(&verifier);
    let t1 = access_token(&is.url, json!({"sid": "sid-1", "jti": "t1"}));
    let sibling = access_token(&is.url, json!({"sid": "sid-1", "jti": "t2"}));
    let other = access_token(&is.url, json!({"sid": "sid-2", "jti": "t3"}));
    let sessionless = access_token(&is.url, json!({"jti": "t4"}));
    for t in [&t1, &sibling, &other, &sessionless] {
        verifier.verify(t).await.unwrap();
    }
    let set = sign(
        &set_claims(&is.url, "set-1", session("sid-1")),
        "secevent+jwt",
        "k1",
        &key(),
    );
    assert_eq!(post_set(&app, set.clone()).await, (202, Value::Null));
    assert!(is_revoked(verifier.verify(&t1).await));
    assert!(is_revoked(verifier.verify(&sibling).await), "same session");
    verifier.verify(&other).await.unwrap();
    // A token without a session is named by its own jti.
    let set = sign(
        &set_claims(&is.url, "set-2", session("t4")),
        "secevent+jwt",
        "k1",
        &key(),
    );
    assert_eq!(post_set(&app, set).await.0, 202);
    assert!(is_revoked(verifier.verify(&sessionless).await));
    verifier.verify(&other).await.unwrap();
}

#[tokio::test]
async fn rfc9493_iss_sub_and_application_refuse_tokens_issued_until_the_event() {
    let is = issuer().await;
    let verifier = Verifier::builder(&is.url, AUD).build().unwrap();
    let receiver = verifier
        .ssf_receiver(SsfReceiverConfig::new(AUD, AUTHZ))
        .unwrap();
    let app = receiver.router("/ssf/events");
    let chain = json!({"sub": "agent:payments-bot", "act": {"sub": "agent:planner"}});
    let via_planner = access_token(&is.url, json!({"sid": "a", "act": chain}));
    let alice_alone = access_token(&is.url, json!({"sid": "b"}));
    let of_client = access_token(&is.url, json!({"sid": "c", "client_id": "rogue"}));
    let agent = json!({"format": "iss_sub", "iss": is.url, "sub": "agent:planner"});
    let set = sign(
        &set_claims(&is.url, "s1", agent),
        "secevent+jwt",
        "k1",
        &key(),
    );
    assert_eq!(post_set(&app, set).await.0, 202);
    assert!(
        is_revoked(verifier.verify(&via_planner).await),
        "planner inside the chain"
    );
    verifier.verify(&alice_alone).await.unwrap();
    let client = json!({"format": "complex", "application": {"format": "opaque", "id": "rogue"}});
    let set = sign(
        &set_claims(&is.url, "s2", client),
        "secevent+jwt",
        "k1",
        &key(),
    );
    assert_eq!(post_set(&app, set).await.0, 202);
    assert!(is_revoked(verifier.verify(&of_client).await));
    verifier.verify(&alice_alone).await.unwrap();
    // A subject at another issuer is not this server's to act on.
    let foreign = json!({"format": "iss_sub", "iss": "https://other.example", "sub": "alice"});
    let set = sign(
        &set_claims(&is.url, "s3", foreign),
        "secevent+jwt",
        "k1",
        &key(),
    );
    assert_eq!(post_set(&app, set).await.1["err"], "invalid_request");
    verifier.verify(&alice_alone).await.unwrap();
    // The SSF verification event and unknown events: accepted, nothing revoked.
    let mut c = set_claims(&is.url, "s4", json!({"format": "opaque", "id": "stream"}));
    c["events"] = json!({VERIFICATION: {"state": "x"}, "urn:example:unknown": {}});
    let got = receiver
        .receive(
            &[
                (header::AUTHORIZATION, HeaderValue::from_static(AUTHZ)),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/secevent+jwt"),
                ),
            ]
            .into_iter()
            .collect(),
            Body::from(sign(&c, "secevent+jwt", "k1", &key())),
        )
        .await;
    assert_eq!(got, Ok(Delivery::Applied { revocations: 0 }));
    verifier.verify(&alice_alone).await.unwrap();
}

/// RFC 8935 §2 / §2.3 / §2.4: each refusal with its code; none of them revokes anything.
#[tokio::test]
async fn rfc8935_s2_3_refused_pushes_are_answered_with_their_err_and_revoke_nothing() {
    let is = issuer().await;
    let verifier = Verifier::builder(&is.url, AUD).build().unwrap();
    let app = receiver_for(&verifier);
    let victim = access_token(&is.url, json!({"sid": "sid-1", "jti": "v"}));
    let good = set_claims(&is.url, "good", session("sid-1"));
    let signed = |c: &Value| sign(c, "secevent+jwt", "k1", &key());
    let b64 = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    // RFC 8935 §2: the credential, compared exactly.
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer receiver-secret-012345678"),
        Some("bearer receiver-secret-0123456789"),
    ] {
        let (status, body) = push(&app, auth, "application/secevent+jwt", signed(&good)).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(body["err"], "authentication_failed");
    }
    let mut two = http::Request::post("/ssf/events")
        .header(header::CONTENT_TYPE, "application/secevent+jwt")
        .header(header::AUTHORIZATION, AUTHZ)
        .header(header::AUTHORIZATION, AUTHZ)
        .body(Body::from(signed(&good)))
        .unwrap();
    let resp = app.clone().oneshot(std::mem::take(&mut two)).await.unwrap();
    assert_eq!(resp.status(), 401, "two Authorization headers");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "RFC 8935 §2.1 media type",
            signed(&good),
            "application/jwt",
            "invalid_request",
        ),
        (
            "not a JWS",
            "not.a.set.at-all".into(),
            "application/secevent+jwt",
            "invalid_request",
        ),
        (
            "RFC 8417 §2.3 typ: an access token is no SET",
            sign(&good, "at+jwt", "k1", &key()),
            "application/secevent+jwt",
            "invalid_request",
        ),
        (
            "RFC 8725 §3.1 alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "secevent+jwt", "kid": "k1"})),
                b64(good.clone())
            ),
            "application/secevent+jwt",
            "invalid_key",
        ),
        (
            "signed by another key under the issuer's kid",
            sign(&good, "secevent+jwt", "k1", &other_key()),
            "application/secevent+jwt",
            "invalid_key",
        ),
        (
            "RFC 8417 §2.2 iss",
            signed(&with("iss", json!("https://evil.example"))),
            "application/secevent+jwt",
            "invalid_issuer",
        ),
        (
            "RFC 8417 §2.2 aud",
            signed(&with("aud", json!("billing-api"))),
            "application/secevent+jwt",
            "invalid_audience",
        ),
        (
            "RFC 8417 §2.2 jti",
            signed(&with("jti", Value::Null)),
            "application/secevent+jwt",
            "invalid_request",
        ),
        (
            "RFC 8417 §2.2 events",
            signed(&with("events", json!({}))),
            "application/secevent+jwt",
            "invalid_request",
        ),
        (
            "a body over 64 KiB",
            format!("{}{}", signed(&good), " ".repeat(MAX_SET_BYTES)),
            "application/secevent+jwt",
            "invalid_request",
        ),
    ];
    for (why, body, ctype, err) in cases {
        let (status, answer) = push(&app, Some(AUTHZ), ctype, body).await;
        assert_eq!(
            (status, answer["err"].as_str()),
            (400, Some(err)),
            "{why}: {answer}"
        );
        assert!(answer["description"].is_string(), "{why}");
        verifier
            .verify(&victim)
            .await
            .unwrap_or_else(|e| panic!("{why}: {e}"));
    }
    // A kid the issuer does not publish: the key set is refetched (at most once a second)
    // before the SET is refused for good; inside that second the transmitter is asked to
    // retry (503), so a SET under a key rotated in a moment ago is not lost.
    let made_up = sign(&good, "secevent+jwt", "made-up", &other_key());
    let (status, answer) = post_set(&app, made_up.clone()).await;
    assert!(
        status == 503 || (status, answer["err"].as_str()) == (400, Some("invalid_key")),
        "{status} {answer}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, answer) = post_set(&app, made_up).await;
    assert_eq!((status, answer["err"].as_str()), (400, Some("invalid_key")));
    verifier.verify(&victim).await.unwrap();
    // The same SET, properly pushed, is accepted: the refusals were about the pushes.
    assert_eq!(post_set(&app, signed(&good)).await.0, 202);
    assert!(is_revoked(verifier.verify(&victim).await));
}

#[tokio::test]
async fn rfc8417_a_replayed_jti_is_accepted_and_changes_nothing() {
    let is = issuer().await;
    let verifier = Verifier::builder(&is.url, AUD).build().unwrap();
    let receiver = verifier
        .ssf_receiver(SsfReceiverConfig::new(AUD, AUTHZ))
        .unwrap();
    let headers: HeaderMap = [
        (header::AUTHORIZATION, HeaderValue::from_static(AUTHZ)),
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/secevent+jwt"),
        ),
    ]
    .into_iter()
    .collect();
    let set = sign(
        &set_claims(&is.url, "once", session("s")),
        "secevent+jwt",
        "k1",
        &key(),
    );
    let first = receiver.receive(&headers, Body::from(set.clone())).await;
    assert_eq!(first, Ok(Delivery::Applied { revocations: 1 }));
    for _ in 0..3 {
        let again = receiver.receive(&headers, Body::from(set.clone())).await;
        assert_eq!(again, Ok(Delivery::Duplicate));
    }
    assert_eq!(verifier.revocation_count(), 1);
}

#[tokio::test]
async fn rfc7662_a_revoked_tokens_cached_introspection_answer_is_dropped() {
    let is = issuer().await;
    let verifier = Verifier::builder(&is.url, AUD)
        .introspection("orders-api", "rs-secret")
        .build()
        .unwrap();
    let app = receiver_for(&verifier);
    // Opaque to this test: the stand-in issuer calls it alice's token of session sid-1.
    let token = "opaque-token-1";
    verifier.verify(token).await.unwrap();
    verifier.verify(token).await.unwrap();
    assert_eq!(is.introspections.load(Ordering::SeqCst), 1, "cached");
    assert_eq!(verifier.introspection_cache_len(), 1);
    let set = sign(
        &set_claims(&is.url, "x", session("sid-1")),
        "secevent+jwt",
        "k1",
        &key(),
    );
    assert_eq!(post_set(&app, set).await.0, 202);
    assert_eq!(verifier.introspection_cache_len(), 0, "dropped");
    // The issuer (here a stand-in that still calls it active) is asked again; the
    // revocation holds either way.
    assert!(is_revoked(verifier.verify(token).await));
}

#[test]
fn the_credential_never_shows_in_debug() {
    let c = SsfReceiverConfig::new(AUD, AUTHZ);
    assert!(!format!("{c:?}").contains("receiver-secret"));
    let v = Verifier::builder("https://as.example", AUD)
        .build()
        .unwrap();
    assert!(v.ssf_receiver(SsfReceiverConfig::new(AUD, "  ")).is_err());
    assert!(v.ssf_receiver(SsfReceiverConfig::new("", AUTHZ)).is_err());
    let r = v.ssf_receiver(c).unwrap();
    assert!(!format!("{r:?}").contains("receiver-secret"));
}

#[test]
fn seen_sets_are_bounded_in_entries_and_time() {
    let mut s = SeenSets::new(3, 60);
    for i in 0..10 {
        assert!(s.first_time(&format!("j{i}"), 100));
        assert!(s.heard.len() <= 3);
    }
    assert!(!s.first_time("j9", 100));
    assert!(s.first_time("j0", 100), "the oldest was forgotten");
    assert!(!s.first_time("j8", 159));
    assert!(s.first_time("j8", 160), "forgotten after the retention");
}

/// RFC 8935 §2.3 is for SETs that will never be accepted: when the issuer's keys cannot be
/// fetched the SET may be fine, so the answer is 503 and mandate retries it.
#[tokio::test]
async fn an_unreachable_issuer_is_503_with_retry_after_not_a_400() {
    // Port 1 on the loopback: connection refused.
    let verifier = Verifier::builder("http://127.0.0.1:1", AUD)
        .build()
        .unwrap();
    let app = receiver_for(&verifier);
    let set = sign(
        &set_claims("http://127.0.0.1:1", "x", session("s")),
        "secevent+jwt",
        "k1",
        &key(),
    );
    let req = http::Request::post("/ssf/events")
        .header(header::CONTENT_TYPE, "application/secevent+jwt")
        .header(header::AUTHORIZATION, AUTHZ)
        .body(Body::from(set))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["err"], "temporarily_unavailable");
    assert!(
        !v["description"].as_str().unwrap().contains("127.0.0.1"),
        "{v}"
    );
}
