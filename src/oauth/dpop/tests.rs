//! What the server adds to the proof checks of `mandate_dpop`: single use (RFC 9449 §11.1),
//! nonces (§8) and the clients' modes, over proofs built by hand.

use std::collections::HashMap;
use std::sync::Mutex;

use mandate_dpop::testing::*;

use super::*;

#[derive(Default)]
struct Used(Mutex<HashMap<String, i64>>);

#[async_trait]
impl ProofReplay for Used {
    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let mut m = self.0.lock().unwrap();
        m.retain(|_, exp| *exp >= now);
        Ok(m.insert(key.to_string(), expires_at).is_none())
    }
}

fn dpop(require_nonce: bool) -> Dpop {
    Dpop {
        nonces: Nonces::new(Keyed::derive(&[9; 32], b"test"), 300),
        require_nonce,
        max_age: 60,
    }
}

#[tokio::test]
async fn rfc9449_s11_1_a_proof_is_accepted_once() {
    let (d, used) = (dpop(false), Used::default());
    let p = proof_with(|_, _| {});
    assert!(d.check(&used, &p, &TOKEN_REQUEST, NOW).await.is_ok());
    let again = d
        .check(&used, &p, &TOKEN_REQUEST, NOW + 5)
        .await
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::InvalidDpopProof);
    assert!(
        again.description.contains("already used"),
        "{}",
        again.description
    );
    // The same jti under another key is another proof.
    let other = sign(&key(2), &header(&key(2)), &claims());
    assert!(d.check(&used, &other, &TOKEN_REQUEST, NOW).await.is_ok());
}

#[tokio::test]
async fn rfc9449_s8_a_required_nonce_must_be_one_this_server_made_and_recent() {
    let (d, used) = (dpop(true), Used::default());
    let missing = d
        .check(&used, &proof_with(|_, _| {}), &TOKEN_REQUEST, NOW)
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::UseDpopNonce);
    let nonce = d.nonce_to_send(NOW).unwrap();
    let with = |n: &str, jti: &str| {
        proof_with(|_, c| {
            c["nonce"] = n.into();
            c["jti"] = jti.into();
        })
    };
    assert!(
        d.check(&used, &with(&nonce, "a"), &TOKEN_REQUEST, NOW)
            .await
            .is_ok()
    );
    // Still good in the next period, not in the one after.
    let later = |dt: i64, jti: &str| {
        let p = proof_with(|_, c| {
            c["nonce"] = nonce.clone().into();
            c["jti"] = jti.into();
            c["iat"] = (NOW + dt).into();
        });
        (p, NOW + dt)
    };
    let (p, t) = later(300, "b");
    assert!(d.check(&used, &p, &TOKEN_REQUEST, t).await.is_ok());
    let (p, t) = later(600, "c");
    assert_eq!(
        d.check(&used, &p, &TOKEN_REQUEST, t)
            .await
            .unwrap_err()
            .code,
        ErrorCode::UseDpopNonce
    );
    // Made up, or made under another KEK (another deployment).
    let other = Nonces::new(Keyed::derive(&[8; 32], b"test"), 300).current(NOW);
    for bad in ["made-up", other.as_str(), ""] {
        let e = d
            .check(&used, &with(bad, &format!("x{bad}")), &TOKEN_REQUEST, NOW)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UseDpopNonce, "{bad}");
    }
}

#[tokio::test]
async fn rfc9449_s8_nonces_are_the_same_on_every_replica_with_the_same_kek() {
    let (a, b) = (dpop(true), dpop(true));
    assert_eq!(a.nonce_to_send(NOW), b.nonce_to_send(NOW));
    assert!(dpop(false).nonce_to_send(NOW).is_none());
}

#[tokio::test]
async fn rfc9449_s5_2_the_clients_mode_decides_whether_tokens_are_bound() {
    let (d, used) = (dpop(false), Used::default());
    let proof = |jti: &str| proof_with(|_, c| c["jti"] = jti.into());
    let bind = |mode, p: Option<String>| {
        let (d, used) = (&d, &used);
        async move {
            d.binding(used, mode, p.as_deref(), &TOKEN_REQUEST, NOW)
                .await
        }
    };
    assert_eq!(bind(Mode::Off, Some(proof("1"))).await.unwrap(), None);
    assert_eq!(bind(Mode::Allowed, None).await.unwrap(), None);
    assert!(
        bind(Mode::Allowed, Some(proof("2")))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        bind(Mode::Required, Some(proof("3")))
            .await
            .unwrap()
            .is_some()
    );
    let e = bind(Mode::Required, None).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidDpopProof);
    // Under `allowed`, a bad proof is refused, never silently ignored.
    let e = bind(
        Mode::Allowed,
        Some(proof_with(|_, c| c["htm"] = "GET".into())),
    )
    .await
    .unwrap_err();
    assert_eq!((e.code, e.status), (ErrorCode::InvalidDpopProof, 400));
}
