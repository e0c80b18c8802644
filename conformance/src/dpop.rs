//! RFC 9449 DPoP at the token endpoint, black-box: when the metadata advertises
//! `dpop_signing_alg_values_supported`, a token request with a proof gets a bound token
//! (`token_type` DPoP, `cnf.jkt` the proof key's RFC 7638 thumbprint, also in introspection),
//! and a replayed or misdirected proof is refused with `invalid_dpop_proof`. A server that does
//! not advertise DPoP gets these checks skipped.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::http::{Captured, basic_auth, form, send};
use crate::{Check, Ctx, crypto, jwt};

/// A P-256 key that signs proofs, with its public JWK and thumbprint.
struct Key {
    pair: EcdsaKeyPair,
    jwk: Value,
    jkt: String,
}

impl Key {
    fn new() -> Result<Key, String> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| "cannot generate a P-256 key".to_owned())?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
            .map_err(|_| "cannot load the P-256 key".to_owned())?;
        // An uncompressed point: 0x04 ‖ x ‖ y.
        let point = pair.public_key().as_ref();
        let (x, y) = match (point.get(1..33), point.get(33..65)) {
            (Some(x), Some(y)) => (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)),
            _ => return Err("the public key is not an uncompressed P-256 point".to_owned()),
        };
        // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let jkt = crypto::s256(&canonical);
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
        Ok(Key { pair, jwk, jkt })
    }

    /// A proof (RFC 9449 §4.2) for `htm` `htu`.
    fn proof(&self, htm: &str, htu: &str) -> Result<String, String> {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let claims = json!({"jti": crypto::random_b64url(16)?, "htm": htm, "htu": htu, "iat": crypto::now()});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| "signing the proof failed".to_owned())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

async fn token_with(ctx: &Ctx<'_>, proof: &str) -> Result<Captured, String> {
    let t = ctx.target;
    send(
        ctx.http
            .post(&ctx.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("authorization", basic_auth(&t.client_id, &t.client_secret))
            .header("dpop", proof)
            .body(form(&[
                ("grant_type", "client_credentials"),
                ("scope", &t.scope),
                ("audience", &t.audience),
            ])),
    )
    .await
}

fn refused_as_invalid_proof(resp: &Captured) -> Result<(), String> {
    match (resp.status, resp.str_member("error")) {
        (400, Some("invalid_dpop_proof")) => Ok(()),
        _ => Err(format!(
            "expected 400 invalid_dpop_proof, got {}",
            resp.summary()
        )),
    }
}

pub(crate) async fn run(ctx: &Ctx<'_>) -> Vec<Check> {
    const IDS: [&str; 6] = [
        "RFC 9449 §5.1: the metadata lists ES256 in dpop_signing_alg_values_supported",
        "RFC 9449 §5: a token request with a DPoP proof gets token_type DPoP",
        "RFC 9449 §6.1: the access token's cnf.jkt is the proof key's RFC 7638 thumbprint",
        "RFC 9449 §6.2: introspection of a bound token answers its cnf.jkt",
        "RFC 9449 §11.1: a proof used once is refused the second time (invalid_dpop_proof)",
        "RFC 9449 §4.3: a proof for another method or URI is refused (invalid_dpop_proof)",
    ];
    let advertised = ctx
        .metadata
        .as_ref()
        .ok()
        .and_then(|m| m.json.as_ref())
        .and_then(|j| j.get("dpop_signing_alg_values_supported"))
        .cloned();
    let Some(algs) = advertised else {
        return IDS
            .iter()
            .map(|id| Check::skip(id, "the metadata does not advertise DPoP"))
            .collect();
    };
    let mut out = vec![Check::new(
        IDS[0],
        match algs.as_array() {
            Some(a) if a.iter().any(|v| v == "ES256") => Ok(()),
            _ => Err(format!("dpop_signing_alg_values_supported is {algs}")),
        },
    )];
    let key = match Key::new() {
        Ok(k) => k,
        Err(e) => {
            out.extend(IDS[1..].iter().map(|id| Check::new(id, Err(e.clone()))));
            return out;
        }
    };
    let proof = key.proof("POST", &ctx.token_endpoint);
    let first = match &proof {
        Ok(p) => token_with(ctx, p).await,
        Err(e) => Err(e.clone()),
    };
    let token = first.as_ref().map_err(Clone::clone).and_then(|resp| {
        match (
            resp.status,
            resp.str_member("token_type"),
            resp.str_member("access_token"),
        ) {
            (200, Some(tt), Some(at)) if tt.eq_ignore_ascii_case("dpop") => Ok(at.to_owned()),
            _ => Err(format!("expected token_type DPoP, got {}", resp.summary())),
        }
    });
    out.push(Check::new(
        IDS[1],
        token.as_ref().map(|_| ()).map_err(Clone::clone),
    ));
    out.push(Check::new(
        IDS[2],
        token.as_ref().map_err(Clone::clone).and_then(|t| {
            let parts = jwt::parse(t)?;
            match parts
                .claims
                .get("cnf")
                .and_then(|c| c.get("jkt"))
                .and_then(Value::as_str)
            {
                Some(j) if j == key.jkt => Ok(()),
                other => Err(format!(
                    "cnf.jkt is {other:?}, the key's thumbprint is {}",
                    key.jkt
                )),
            }
        }),
    ));
    let introspected = match &token {
        Ok(t) => {
            let t2 = ctx.target;
            ctx.post_form(
                &ctx.introspection_endpoint,
                &[("token", t)],
                Some(&basic_auth(
                    &t2.resource_server_id,
                    &t2.resource_server_secret,
                )),
            )
            .await
        }
        Err(e) => Err(e.clone()),
    };
    out.push(Check::new(
        IDS[3],
        introspected.and_then(|resp| {
            let jkt = resp
                .json
                .as_ref()
                .and_then(|j| j.get("cnf"))
                .and_then(|c| c.get("jkt"));
            match jkt.and_then(Value::as_str) {
                Some(j) if j == key.jkt => Ok(()),
                _ => Err(format!(
                    "introspection did not answer the cnf.jkt: {}",
                    resp.summary()
                )),
            }
        }),
    ));
    let replay = match &proof {
        Ok(p) => token_with(ctx, p).await,
        Err(e) => Err(e.clone()),
    };
    out.push(Check::new(
        IDS[4],
        replay.and_then(|r| refused_as_invalid_proof(&r)),
    ));
    let mut misdirected = Ok(());
    for (htm, htu) in [
        ("GET", ctx.token_endpoint.clone()),
        ("POST", ctx.introspection_endpoint.clone()),
    ] {
        let result = match key.proof(htm, &htu) {
            Ok(p) => token_with(ctx, &p).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result.and_then(|r| refused_as_invalid_proof(&r)) {
            misdirected = Err(format!("{htm} {htu}: {e}"));
            break;
        }
    }
    out.push(Check::new(IDS[5], misdirected));
    out
}
