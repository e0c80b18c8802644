//! RFC 9449 §4.3, one test per check, over proofs built by hand so each can be wrong in one way.

use serde_json::{Value, json};

use super::testing::*;
use super::*;

fn check(proof: &str) -> Result<Proof, Refusal> {
    check_proof(proof, &TOKEN_REQUEST, NOW, 60)
}

#[test]
fn rfc9449_s4_3_a_well_formed_proof_passes_and_names_its_keys_rfc7638_thumbprint() {
    let p = check(&proof_with(|_, _| {})).unwrap();
    // RFC 7638 §3.1: the thumbprint over {"crv","kty","x","y"} in that order, no whitespace.
    let jwk = jwk_of(&key(1));
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    assert_eq!(p.jkt, b64url(&sha256(canonical.as_bytes())));
    assert_eq!((p.jti.as_str(), p.iat), ("j-1", NOW));
    assert_ne!(
        p.jkt,
        check(&sign(&key(2), &header(&key(2)), &claims()))
            .unwrap()
            .jkt
    );
}

#[test]
fn rfc7638_s3_1_the_thumbprint_matches_the_rfc_example() {
    // The RSA key of RFC 7638 §3.1 and the thumbprint the RFC computes for it.
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let jwk = json!({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
    assert_eq!(
        thumbprint_for(jwk.as_object().unwrap(), Algorithm::RS256).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
}

#[test]
fn rfc9449_s4_3_an_eddsa_proof_passes() {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let k = Ed25519KeyPair::generate().unwrap();
    let h = json!({"typ": "dpop+jwt", "alg": "EdDSA",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url(k.public_key().as_ref())}});
    let input = format!(
        "{}.{}",
        b64url(h.to_string().as_bytes()),
        b64url(claims().to_string().as_bytes())
    );
    let proof = format!("{input}.{}", b64url(k.sign(input.as_bytes()).as_ref()));
    assert!(check(&proof).is_ok());
}

#[test]
fn rfc9449_s4_3_check_2_what_is_not_a_compact_jws_is_refused() {
    for bad in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.??.##",
        &"a".repeat(MAX_PROOF_BYTES + 1),
    ] {
        assert_eq!(check(bad), Err(Refusal::Malformed), "{bad:.20}");
    }
}

#[test]
fn rfc9449_s4_3_check_4_typ_must_be_dpop_jwt() {
    for typ in [json!("JWT"), json!("at+jwt"), Value::Null] {
        let p = proof_with(|h, _| h["typ"] = typ.clone());
        assert_eq!(check(&p), Err(Refusal::Typ), "{typ}");
    }
}

#[test]
fn rfc9449_s4_3_check_5_alg_must_be_an_asymmetric_one_we_support() {
    for alg in ["none", "HS256", "ES512", "RS512", ""] {
        let p = proof_with(|h, _| h["alg"] = alg.into());
        assert_eq!(check(&p), Err(Refusal::Alg), "{alg}");
    }
    // An HS256 proof that "signs" with a symmetric key in the header.
    let p = proof_with(|h, _| {
        h["alg"] = "HS256".into();
        h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
    });
    assert_eq!(check(&p), Err(Refusal::Alg));
}

#[test]
fn rfc9449_s4_3_check_6_the_signature_must_verify_with_the_header_key() {
    // Signed by key 2, claiming key 1's public key.
    let forged = sign(&key(2), &header(&key(1)), &claims());
    assert_eq!(check(&forged), Err(Refusal::Signature));
    // A changed claim after signing.
    let good = proof_with(|_, _| {});
    let mut parts: Vec<&str> = good.split('.').collect();
    let other = b64url(
        json!({"jti": "j-2", "htm": "POST", "htu": HTU, "iat": NOW})
            .to_string()
            .as_bytes(),
    );
    parts[1] = &other;
    assert_eq!(check(&parts.join(".")), Err(Refusal::Signature));
}

#[test]
fn rfc9449_s4_3_check_7_a_jwk_with_private_members_is_refused() {
    for member in PRIVATE_MEMBERS {
        let p = proof_with(|h, _| h["jwk"][member] = "AAAA".into());
        assert_eq!(check(&p), Err(Refusal::PrivateKey), "{member}");
    }
}

#[test]
fn rfc9449_s4_2_the_key_must_be_there_and_fit_the_alg() {
    assert_eq!(
        check(&proof_with(|h, _| h
            .as_object_mut()
            .unwrap()
            .remove("jwk")
            .map(drop)
            .unwrap())),
        Err(Refusal::NoKey)
    );
    for (field, value) in [
        ("crv", json!("P-384")),
        ("kty", json!("RSA")),
        ("x", json!("AAAA")),
    ] {
        let p = proof_with(|h, _| h["jwk"][field] = value.clone());
        assert_eq!(check(&p), Err(Refusal::BadKey), "{field}");
    }
    // RSA shorter than 2048 bits (RFC 7518 §3.3).
    let short = json!({"kty": "RSA", "n": b64url(&[0xc5; 128]), "e": "AQAB"});
    assert_eq!(
        thumbprint_for(short.as_object().unwrap(), Algorithm::RS256),
        None
    );
}

#[test]
fn rfc9449_s4_2_jti_htm_htu_and_iat_are_required() {
    for claim in ["jti", "htm", "htu", "iat"] {
        let p = proof_with(|_, c| drop(c.as_object_mut().unwrap().remove(claim)));
        assert_eq!(
            check(&p),
            Err(Refusal::Missing(match claim {
                "jti" => "jti",
                "htm" => "htm",
                "htu" => "htu",
                _ => "iat",
            })),
            "{claim}"
        );
    }
    let huge = proof_with(|_, c| c["jti"] = "j".repeat(MAX_JTI + 1).into());
    assert_eq!(check(&huge), Err(Refusal::Missing("jti")));
}

#[test]
fn rfc9449_s4_3_check_8_htm_must_be_the_request_method() {
    for htm in ["GET", "post", "PUT"] {
        assert_eq!(
            check(&proof_with(|_, c| c["htm"] = htm.into())),
            Err(Refusal::Htm),
            "{htm}"
        );
    }
}

#[test]
fn rfc9449_s4_3_check_9_htu_must_be_the_request_uri_without_query_or_fragment() {
    for ok in [
        HTU,
        "https://AS.example/token",
        "https://as.example:443/token",
        "https://as.example/token?x=1",
        "https://as.example/token#f",
    ] {
        assert!(
            check(&proof_with(|_, c| c["htu"] = ok.into())).is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "https://as.example/introspect",
        "http://as.example/token",
        "https://as.example:8443/token",
        "https://evil.example/token",
        "https://as.example/token/",
        "/token",
    ] {
        assert_eq!(
            check(&proof_with(|_, c| c["htu"] = bad.into())),
            Err(Refusal::Htu),
            "{bad}"
        );
    }
}

#[test]
fn rfc9449_s4_3_check_11_iat_must_be_recent_and_not_ahead() {
    for ok in [NOW, NOW - 60, NOW + IAT_LEEWAY] {
        assert!(
            check(&proof_with(|_, c| c["iat"] = ok.into())).is_ok(),
            "{ok}"
        );
    }
    for bad in [NOW - 61, NOW + IAT_LEEWAY + 1, 0] {
        assert_eq!(
            check(&proof_with(|_, c| c["iat"] = bad.into())),
            Err(Refusal::Iat),
            "{bad}"
        );
    }
    assert_eq!(
        check(&proof_with(|_, c| c["iat"] = "now".into())),
        Err(Refusal::Missing("iat"))
    );
}

#[test]
fn rfc9449_s4_3_check_12_ath_must_hash_the_access_token_sent_with_it() {
    let at = "the-access-token";
    let target = Target {
        htm: "GET",
        htu: HTU,
        access_token: Some(at),
    };
    let with_ath = |ath: Option<String>| {
        proof_with(|_, c| {
            c["htm"] = "GET".into();
            if let Some(a) = ath {
                c["ath"] = a.into();
            }
        })
    };
    let right = b64url(&sha256(at.as_bytes()));
    assert!(check_proof(&with_ath(Some(right)), &target, NOW, 60).is_ok());
    let wrong = b64url(&sha256(b"another token"));
    assert_eq!(
        check_proof(&with_ath(Some(wrong)), &target, NOW, 60),
        Err(Refusal::Ath)
    );
    assert_eq!(
        check_proof(&with_ath(None), &target, NOW, 60),
        Err(Refusal::Missing("ath"))
    );
}
