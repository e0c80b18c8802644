//! RFC 6749 §4.1.3 and RFC 7636 §4.6 over in-memory storage: a code issued to `app` for
//! `alice`, one row per way to redeem it, and what comes of it.

use std::sync::Arc;

use super::*;
use crate::oauth::grant::testing::{Fixture, Memory, NOW, RS, client, code_of};

/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const CODE: &str = "code-1";
const CB: &str = "https://app.example/cb";

fn redemption<'a>(
    code: &'a str,
    redirect_uri: Option<&'a str>,
    code_verifier: Option<&'a str>,
) -> Redemption<'a> {
    Redemption {
        code,
        redirect_uri,
        code_verifier,
        targets: &[],
    }
}

fn app() -> Client {
    client(
        "app",
        &[AUTHORIZATION_CODE, REFRESH_TOKEN],
        &["read", "write"],
    )
}

fn with_code() -> Memory {
    let m = Memory::default();
    let code = CodeRecord {
        code_hash: sha256(CODE.as_bytes()).to_vec(),
        client_id: "app".into(),
        redirect_uri: CB.into(),
        code_challenge: CHALLENGE.into(),
        username: "alice".into(),
        scope: "read".into(),
        aud: vec![RS[0].to_string()].into(),
        sid: "s1".into(),
        created_at: NOW - 10,
        expires_at: NOW + 50,
        used_at: None,
        replayed_at: None,
        nonce: None,
    };
    m.state().codes.insert(code.code_hash.clone(), code);
    m
}

fn used(m: &Memory) -> bool {
    m.state().codes[sha256(CODE.as_bytes()).as_slice()]
        .used_at
        .is_some()
}

struct Row {
    why: &'static str,
    client: Client,
    code: &'static str,
    redirect_uri: Option<&'static str>,
    verifier: Option<&'static str>,
    expired: bool,
    want: &'static str,
}

fn row(why: &'static str, want: &'static str) -> Row {
    Row {
        why,
        client: app(),
        code: CODE,
        redirect_uri: Some(CB),
        verifier: Some(VERIFIER),
        expired: false,
        want,
    }
}

#[tokio::test]
async fn rfc6749_s4_1_3_and_rfc7636_s4_6_refusals_leave_the_code_unused() {
    let rows = [
        Row {
            client: client("app", &[REFRESH_TOKEN], &["read"]),
            ..row(
                "RFC 6749 §5.2: the client is not registered for this grant",
                "unauthorized_client",
            )
        },
        Row {
            code: "nope",
            ..row("RFC 6749 §4.1.3: an unknown code", "invalid_grant")
        },
        Row {
            expired: true,
            ..row("RFC 6749 §4.1.2: an expired code", "invalid_grant")
        },
        Row {
            client: client("other", &[AUTHORIZATION_CODE], &["read"]),
            ..row(
                "RFC 6749 §4.1.3: a code issued to another client",
                "invalid_grant",
            )
        },
        Row {
            redirect_uri: Some("https://app.example/other"),
            ..row(
                "RFC 6749 §4.1.3: redirect_uri differs from the request's",
                "invalid_grant",
            )
        },
        Row {
            redirect_uri: None,
            ..row(
                "RFC 6749 §4.1.3: redirect_uri was in the request, so it is required",
                "invalid_grant",
            )
        },
        Row {
            verifier: None,
            ..row("RFC 7636 §4.5: code_verifier missing", "invalid_grant")
        },
        Row {
            verifier: Some("wrong-verifier-wrong-verifier-wrong-verifier"),
            ..row(
                "RFC 7636 §4.6: code_verifier does not match the challenge",
                "invalid_grant",
            )
        },
    ];
    for r in rows {
        let fx = Fixture::new();
        let m = with_code();
        if r.expired {
            fx.clock.advance(50);
        }
        let got = grant(
            &m,
            &fx.env(),
            &r.client,
            redemption(r.code, r.redirect_uri, r.verifier),
        )
        .await;
        assert_eq!(code_of(&got), r.want, "{}", r.why);
        assert!(!used(&m), "{}: the code is not burned", r.why);
        assert!(m.state().tokens.is_empty(), "{}: nothing issued", r.why);
    }
}

#[tokio::test]
async fn rfc6749_s4_1_4_the_tokens_carry_what_the_human_granted() {
    let rows: Vec<(&str, Client, bool)> = vec![
        (
            "RFC 6749 §4.1.4: with a refresh token when the client may refresh",
            app(),
            true,
        ),
        (
            "RFC 6749 §4.1.4: without one when it may not",
            client("app", &[AUTHORIZATION_CODE], &["read"]),
            false,
        ),
    ];
    for (why, c, refresh) in rows {
        let fx = Fixture::new();
        let m = with_code();
        let issued = grant(
            &m,
            &fx.env(),
            &c,
            redemption(CODE, Some(CB), Some(VERIFIER)),
        )
        .await
        .unwrap();
        let access = m.issued(&issued.access_token);
        assert_eq!(
            (access.sub.as_str(), access.scope.as_str()),
            ("alice", "read"),
            "{why}"
        );
        assert_eq!(access.aud, [RS[0]], "{why}");
        assert_eq!(
            access.sid.as_deref(),
            Some("s1"),
            "{why}: the code's session"
        );
        assert_eq!(issued.refresh_token.is_some(), refresh, "{why}");
        if let Some(rt) = &issued.refresh_token {
            assert_eq!(m.issued(rt).exp, NOW + 8 * 3600, "{why}");
        }
        assert!(used(&m), "{why}");
    }
}

#[tokio::test]
async fn rfc6749_s4_1_2_a_second_redemption_revokes_the_first_ones_tokens() {
    let fx = Fixture::new();
    let m = with_code();
    let first = grant(
        &m,
        &fx.env(),
        &app(),
        redemption(CODE, Some(CB), Some(VERIFIER)),
    )
    .await
    .unwrap();
    let again = grant(
        &m,
        &fx.env(),
        &app(),
        redemption(CODE, Some(CB), Some(VERIFIER)),
    )
    .await;
    assert_eq!(code_of(&again), "invalid_grant");
    assert!(m.issued(&first.access_token).revoked_at.is_some());
    assert!(
        m.issued(first.refresh_token.as_deref().unwrap())
            .revoked_at
            .is_some()
    );
    assert!(m.audited().contains(&"code.reuse_detected".to_string()));
}

#[tokio::test]
async fn rfc6749_s4_1_2_a_replay_seen_before_the_tokens_were_written_still_revokes_them() {
    let fx = Fixture::new();
    let m = with_code();
    // The replay was recorded after this redemption marked the code used, before its write.
    m.state()
        .codes
        .values_mut()
        .for_each(|c| c.replayed_at = Some(NOW));
    let issued = grant(
        &m,
        &fx.env(),
        &app(),
        redemption(CODE, Some(CB), Some(VERIFIER)),
    )
    .await
    .unwrap();
    assert!(m.issued(&issued.access_token).revoked_at.is_some());
}

#[tokio::test]
async fn rfc6749_s4_1_2_an_issued_code_is_single_use_short_lived_and_starts_a_session() {
    let fx = Fixture::new();
    let m = Memory::default();
    let req = AuthorizeRequest {
        client: Arc::new(app()),
        redirect_uri: CB.into(),
        state: None,
        scope: None,
        challenge: CodeChallenge::from_stored(CHALLENGE.into()),
        targets: vec![],
        aud: vec![RS[0].into()],
        nonce: None,
    };
    let scope = ScopeSet::parse("read write").unwrap();
    let code = issue_code(&m, &fx.env(), &req, "alice", &scope)
        .await
        .unwrap();
    let other = issue_code(&m, &fx.env(), &req, "alice", &scope)
        .await
        .unwrap();
    let stored = m.state().codes[sha256(code.as_bytes()).as_slice()].clone();
    assert_eq!(stored.expires_at, NOW + 60);
    assert_eq!(stored.scope, "read write");
    let sid_of = |c: &str| m.state().codes[sha256(c.as_bytes()).as_slice()].sid.clone();
    assert_ne!(
        sid_of(&code),
        sid_of(&other),
        "each code starts its own session"
    );
    let issued = grant(
        &m,
        &fx.env(),
        &app(),
        redemption(&code, Some(CB), Some(VERIFIER)),
    )
    .await
    .unwrap();
    assert_eq!(m.issued(&issued.access_token).sid, Some(stored.sid));
}
