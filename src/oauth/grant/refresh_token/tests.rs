//! RFC 6749 §6 and RFC 9700 §4.14 over in-memory storage: a session of `alice` through `app`
//! (an access token and its refresh token, sid `s1`), one row per way to present the refresh
//! token, and what comes of it.

use super::*;
use crate::oauth::grant::testing::{Fixture, Memory, NOW, client, code_of, record};

const RT: &str = "refresh-1";
const AT: &str = "access-1";

fn session() -> Memory {
    let m = Memory::default().with_user("alice", &["read", "write"]);
    let mut at = record(AT, TokenKind::Access, "alice", "app", "read write");
    at.sid = Some("s1".into());
    let mut rt = record(RT, TokenKind::Refresh, "alice", "app", "read write");
    rt.sid = Some("s1".into());
    rt.exp = NOW + 3600;
    m.put(at);
    m.put(rt);
    m
}

fn app() -> Client {
    client("app", &[REFRESH_TOKEN], &["read", "write"])
}

fn hash(t: &str) -> Vec<u8> {
    sha256(t.as_bytes()).to_vec()
}

type Change = fn(&Memory);

#[tokio::test]
async fn rfc6749_s6_refusals() {
    let untouched: Change = |_| {};
    type Row<'a> = (&'a str, Client, &'a str, Option<&'a str>, Change, &'a str);
    let rows: Vec<Row> = vec![
        (
            "RFC 6749 §5.2: the client is not registered for this grant",
            client("app", &["authorization_code"], &["read"]),
            RT,
            None,
            untouched,
            "unauthorized_client",
        ),
        (
            "RFC 6749 §6: an unknown refresh token",
            app(),
            "nope",
            None,
            untouched,
            "invalid_grant",
        ),
        (
            "RFC 6749 §1.5, RFC 9700 §4.14: an access token is not a refresh token",
            app(),
            AT,
            None,
            untouched,
            "invalid_grant",
        ),
        (
            "RFC 6749 §6: bound to the client it was issued to",
            client("other", &[REFRESH_TOKEN], &["read"]),
            RT,
            None,
            untouched,
            "invalid_grant",
        ),
        (
            "RFC 6749 §6: a revoked refresh token",
            app(),
            RT,
            None,
            |m| m.state().tokens.get_mut(&hash(RT)).unwrap().revoked_at = Some(NOW - 1),
            "invalid_grant",
        ),
        (
            "RFC 6749 §6: an expired refresh token",
            app(),
            RT,
            None,
            |m| m.state().tokens.get_mut(&hash(RT)).unwrap().exp = NOW,
            "invalid_grant",
        ),
        (
            "SPEC Invariants: its human is no longer a user",
            app(),
            RT,
            None,
            |m| {
                m.state().users.clear();
            },
            "invalid_grant",
        ),
        (
            "RFC 6749 §6: a scope wider than the one granted",
            app(),
            RT,
            Some("read write admin"),
            untouched,
            "invalid_scope",
        ),
    ];
    for (why, c, presented, scope, change, want) in rows {
        let fx = Fixture::new();
        let m = session();
        change(&m);
        let scope = scope.map(|s| ScopeSet::parse(s).unwrap());
        let r = grant(&m, &fx.env(), &c, presented, scope, &[]).await;
        assert_eq!(code_of(&r), want, "{why}");
        let s = m.state();
        assert_eq!(s.tokens.len(), 2, "{why}: nothing issued");
        // Checked before consuming: a wrong client or token cannot burn the session.
        assert!(
            s.tokens[&hash(RT)].consumed_at.is_none(),
            "{why}: not consumed"
        );
        assert!(
            s.tokens[&hash(AT)].revoked_at.is_none(),
            "{why}: session intact"
        );
    }
}

#[tokio::test]
async fn rfc6749_s6_rotation_narrows_the_access_token_and_keeps_the_family() {
    let rows: Vec<(&str, Option<&str>, &str)> = vec![
        (
            "RFC 6749 §6: no scope asked: the one granted",
            None,
            "read write",
        ),
        (
            "RFC 6749 §6: a narrower scope may be asked",
            Some("read"),
            "read",
        ),
    ];
    for (why, asked, want) in rows {
        let fx = Fixture::new();
        let m = session();
        let scope = asked.map(|s| ScopeSet::parse(s).unwrap());
        let issued = grant(&m, &fx.env(), &app(), RT, scope, &[]).await.unwrap();
        assert_eq!(issued.scope, want, "{why}");
        let access = m.issued(&issued.access_token);
        let refresh = m.issued(issued.refresh_token.as_deref().unwrap());
        assert_eq!(access.scope, want, "{why}");
        assert_eq!(access.sid.as_deref(), Some("s1"), "{why}: same session");
        // RFC 6749 §6: the new refresh token's scope is the one presented.
        assert_eq!(refresh.scope, "read write", "{why}");
        // Rotation does not extend the session.
        assert_eq!(refresh.exp, NOW + 3600, "{why}");
        assert_eq!(refresh.parent_hash, Some(hash(RT)), "{why}");
        // RFC 9700 §4.14.2: the presented one is used up.
        assert_eq!(m.issued(RT).consumed_at, Some(NOW), "{why}");
    }
}

#[tokio::test]
async fn rfc9700_s4_14_2_reuse_revokes_the_whole_session() {
    let fx = Fixture::new();
    let m = session();
    let first = grant(&m, &fx.env(), &app(), RT, None, &[]).await.unwrap();
    let again = grant(&m, &fx.env(), &app(), RT, None, &[]).await;
    assert_eq!(code_of(&again), "invalid_grant");
    for t in [
        AT,
        first.access_token.as_str(),
        first.refresh_token.as_deref().unwrap(),
    ] {
        assert!(
            m.issued(t).revoked_at.is_some(),
            "every token of session s1 is revoked"
        );
    }
    assert!(m.audited().contains(&"token.reuse_detected".to_string()));
    // The successor is dead too: the attacker and the victim both lose the session.
    let next = grant(
        &m,
        &fx.env(),
        &app(),
        first.refresh_token.as_deref().unwrap(),
        None,
        &[],
    )
    .await;
    assert_eq!(code_of(&next), "invalid_grant");
}

#[tokio::test]
async fn rfc9700_s4_14_2_reuse_of_a_token_without_a_session_revokes_it() {
    let fx = Fixture::new();
    let m = session();
    {
        let mut s = m.state();
        let rt = s.tokens.get_mut(&hash(RT)).unwrap();
        rt.sid = None;
        rt.consumed_at = Some(NOW - 5);
    }
    let r = grant(&m, &fx.env(), &app(), RT, None, &[]).await;
    assert_eq!(code_of(&r), "invalid_grant");
    assert!(m.issued(RT).revoked_at.is_some());
    assert!(m.issued(AT).revoked_at.is_none(), "no session to end");
    assert_eq!(m.audited(), ["token.reuse_detected"]);
}

/// RFC 9449 §5: a public client's refresh token is bound to the key of its proof. Presented
/// without a proof by that key it is refused before it is consumed, so a copy cannot burn the
/// session; with the key it rotates, and the new refresh token stays bound.
#[tokio::test]
async fn rfc9449_s5_a_public_clients_bound_refresh_token_needs_its_key() {
    let (fx, m) = (Fixture::new(), session());
    m.state().tokens.get_mut(&hash(RT)).unwrap().jkt = Some("key-of-app".into());
    let public = Client {
        public: true,
        ..app()
    };
    for env in [fx.env(), fx.env_bound("key-of-thief")] {
        let r = grant(&m, &env, &public, RT, None, &[]).await;
        assert_eq!(code_of(&r), "invalid_grant");
        assert!(m.issued(RT).consumed_at.is_none(), "not consumed");
    }
    let issued = grant(&m, &fx.env_bound("key-of-app"), &public, RT, None, &[])
        .await
        .unwrap();
    assert!(issued.bound);
    assert_eq!(
        m.issued(&issued.access_token).jkt.as_deref(),
        Some("key-of-app")
    );
    let next = issued.refresh_token.unwrap();
    assert_eq!(m.issued(&next).jkt.as_deref(), Some("key-of-app"));
}

/// RFC 9449 §5: a confidential client's refresh tokens are not bound (its authentication
/// constrains them); its new access token is bound to whichever key the request proved.
#[tokio::test]
async fn rfc9449_s5_a_confidential_clients_refresh_token_is_not_bound() {
    let (fx, m) = (Fixture::new(), session());
    let issued = grant(&m, &fx.env_bound("key-1"), &app(), RT, None, &[])
        .await
        .unwrap();
    assert_eq!(m.issued(&issued.access_token).jkt.as_deref(), Some("key-1"));
    assert!(m.issued(&issued.refresh_token.unwrap()).jkt.is_none());
}
