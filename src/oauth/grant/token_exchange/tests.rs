//! RFC 8693 over in-memory storage: `bot` exchanges `alice`'s access token (`read write` for
//! the orders server) for a delegated one. Each row changes the request or the stored state,
//! and says which error code comes of it, or what the delegated token carries.

use super::*;
use crate::oauth::act::{Actor, MayAct};
use crate::oauth::grant::testing::{Fixture, ISSUER, Memory, NOW, RS, client, code_of, record};

const SUBJECT: &str = "subject-token";
const AGENT: &str = "agent-token";

fn hash(t: &str) -> Vec<u8> {
    crate::crypto::sha256(t.as_bytes()).to_vec()
}

fn stored() -> Memory {
    let m = Memory::default()
        .with_user("alice", &["read", "write", "admin"])
        .with_agent("bot")
        .with_agent("rogue");
    let mut subject = record(SUBJECT, TokenKind::Access, "alice", "app", "read write");
    subject.aud = vec![RS[0].to_string(), RS[1].to_string()].into();
    subject.sid = Some("s1".into());
    m.put(subject);
    let mut agent = record(AGENT, TokenKind::Agent, "agent:bot", "agent:bot", "");
    agent.aud = vec![ISSUER.to_string()].into();
    m.put(agent);
    m
}

fn exchanger() -> Client {
    client("exchanger", &[TOKEN_EXCHANGE], &[])
}

fn request() -> ExchangeRequest {
    ExchangeRequest {
        subject_token: SUBJECT.into(),
        subject_token_type: TT_ACCESS_TOKEN.into(),
        actor_token: Some(AGENT.into()),
        actor_token_type: Some(TT_JWT.into()),
        scope: None,
        targets: vec![],
        requested_token_type: None,
    }
}

fn subject(m: &Memory, change: impl FnOnce(&mut TokenRecord)) {
    change(m.state().tokens.get_mut(&hash(SUBJECT)).unwrap());
}

type AskFn = fn(&mut ExchangeRequest);
type StoreFn = fn(&Memory);

#[tokio::test]
async fn rfc8693_s2_1_and_s2_2_2_refusals_issue_nothing() {
    let asis: AskFn = |_| {};
    let same: StoreFn = |_| {};
    let rows: Vec<(&str, Client, AskFn, StoreFn, &str)> = vec![
        (
            "RFC 6749 §5.2: the client is not registered for token exchange",
            client("exchanger", &["client_credentials"], &[]),
            asis,
            same,
            "unauthorized_client",
        ),
        (
            "RFC 8693 §2.1: an unsupported subject_token_type",
            exchanger(),
            |r| r.subject_token_type = "urn:ietf:params:oauth:token-type:saml2".into(),
            same,
            "invalid_request",
        ),
        (
            "RFC 8693 §2.1: only an access token can be requested",
            exchanger(),
            |r| {
                r.requested_token_type =
                    Some("urn:ietf:params:oauth:token-type:refresh_token".into())
            },
            same,
            "invalid_request",
        ),
        (
            "RFC 8693 §1.1: without an actor it would be impersonation",
            exchanger(),
            |r| r.actor_token = None,
            same,
            "invalid_request",
        ),
        (
            "RFC 8693 §2.1: actor_token_type must say it is an agent token (a JWT)",
            exchanger(),
            |r| r.actor_token_type = Some(TT_ACCESS_TOKEN.into()),
            same,
            "invalid_request",
        ),
        (
            "RFC 8693 §2.2.2: an unknown subject token",
            exchanger(),
            |r| r.subject_token = "forged".into(),
            same,
            "invalid_grant",
        ),
        (
            "RFC 8693 §2.2.2: a revoked subject token",
            exchanger(),
            asis,
            |m| subject(m, |t| t.revoked_at = Some(NOW - 1)),
            "invalid_grant",
        ),
        (
            "RFC 8693 §2.2.2: an expired subject token",
            exchanger(),
            asis,
            |m| subject(m, |t| t.exp = NOW),
            "invalid_grant",
        ),
        (
            "RFC 9700 §4.14: a refresh token is not a subject token",
            exchanger(),
            asis,
            |m| subject(m, |t| t.kind = TokenKind::Refresh),
            "invalid_grant",
        ),
        (
            "SPEC Invariants: the subject is no longer a user",
            exchanger(),
            asis,
            |m| {
                m.state().users.clear();
            },
            "invalid_grant",
        ),
        (
            "RFC 8693 §2.2.2: an access token is not an agent token",
            exchanger(),
            |r| r.actor_token = Some(SUBJECT.into()),
            same,
            "invalid_grant",
        ),
        (
            "SPEC Agent attestation: the agent is no longer enrolled",
            exchanger(),
            asis,
            |m| {
                m.state().agents.clear();
            },
            "invalid_grant",
        ),
        (
            "RFC 8693 §4.4: may_act names another actor",
            exchanger(),
            asis,
            |m| {
                subject(m, |t| {
                    t.may_act = Some(MayAct {
                        sub: "agent:other".into(),
                    })
                })
            },
            "invalid_grant",
        ),
        (
            "max_delegation_depth: the chain may not grow past it",
            exchanger(),
            asis,
            |m| {
                let deep = ["a1", "a2", "a3", "a4"]
                    .iter()
                    .fold(None, |prev: Option<Actor>, a| {
                        Some(Actor::nest(a, prev.as_ref()))
                    });
                subject(m, |t| t.act = deep)
            },
            "invalid_grant",
        ),
        (
            "RFC 8693 §2.2.2: scopes only narrow",
            exchanger(),
            |r| r.scope = Some(ScopeSet::parse("read admin").unwrap()),
            same,
            "invalid_scope",
        ),
        (
            "RFC 8693 §2.2.2: the client's scopes bound the delegated token's",
            client("exchanger", &[TOKEN_EXCHANGE], &["read"]),
            |r| r.scope = Some(ScopeSet::parse("write").unwrap()),
            same,
            "invalid_scope",
        ),
        (
            "RFC 8693 §2.2.2: an audience the subject token does not have",
            exchanger(),
            |r| r.targets = vec!["https://elsewhere.example".into()],
            same,
            "invalid_target",
        ),
        (
            "SPEC Invariants: a high-risk scope needs the human's approval (CIBA)",
            exchanger(),
            |r| r.scope = Some(ScopeSet::parse("admin").unwrap()),
            |m| subject(m, |t| t.scope = "read admin".into()),
            "invalid_scope",
        ),
    ];
    for (why, c, ask, change, want) in rows {
        let fx = Fixture::new();
        let m = stored();
        change(&m);
        let mut req = request();
        ask(&mut req);
        let r = grant(&m, &fx.env(), &c, req).await;
        assert_eq!(code_of(&r), want, "{why}");
        assert_eq!(m.state().tokens.len(), 2, "{why}: nothing issued");
    }
}

#[tokio::test]
async fn rfc8693_s2_2_1_the_delegated_token_names_its_actors_and_narrows() {
    type Expect = (&'static str, Vec<&'static str>, i64, Vec<&'static str>);
    let first: Option<Actor> = Some(Actor::nest("agent:first", None));
    let rows: Vec<(&str, AskFn, Option<Actor>, i64, Expect)> = vec![
        (
            "RFC 8693 §4.1: act names the agent; nothing asked: the subject's scope and audiences",
            |_| {},
            None,
            NOW + 600,
            ("read write", vec![RS[0], RS[1]], 600, vec!["agent:bot"]),
        ),
        (
            "RFC 8693 §4.1: the new actor is outermost, the previous ones nested inside",
            |_| {},
            first,
            NOW + 600,
            (
                "read write",
                vec![RS[0], RS[1]],
                600,
                vec!["agent:bot", "agent:first"],
            ),
        ),
        (
            "RFC 8693 §2.1: a narrower scope and one audience, as asked",
            |r| {
                r.scope = Some(ScopeSet::parse("read").unwrap());
                r.targets = vec![RS[1].into()];
            },
            None,
            NOW + 600,
            ("read", vec![RS[1]], 600, vec!["agent:bot"]),
        ),
        (
            "a delegated token never outlives its subject token",
            |_| {},
            None,
            NOW + 100,
            ("read write", vec![RS[0], RS[1]], 100, vec!["agent:bot"]),
        ),
    ];
    for (why, ask, act, exp, (scope, aud, ttl, chain)) in rows {
        let fx = Fixture::new();
        let m = stored();
        subject(&m, |t| {
            t.act = act;
            t.exp = exp;
        });
        let mut req = request();
        ask(&mut req);
        let issued = grant(&m, &fx.env(), &exchanger(), req).await.unwrap();
        assert_eq!(issued.issued_token_type, Some(TT_ACCESS_TOKEN), "{why}");
        assert_eq!(
            (issued.scope.as_str(), issued.expires_in),
            (scope, ttl),
            "{why}"
        );
        let rec = m.issued(&issued.access_token);
        assert_eq!(rec.sub, "alice", "{why}");
        assert_eq!(rec.aud, aud, "{why}");
        assert_eq!(rec.act.unwrap().chain(), chain, "{why}");
        assert_eq!(rec.exp, NOW + ttl, "{why}");
        // Revoking the subject token revokes what was derived from it.
        assert_eq!(rec.parent_hash, Some(hash(SUBJECT)), "{why}");
        assert!(
            rec.sid.is_some_and(|s| s != "s1"),
            "{why}: a session of its own"
        );
    }
}

const POLICY: &str = r#"
@id("no-writes")
forbid (principal, action == Mandate::Action::"delegate", resource)
when { context.scopes.contains("write") };

@id("rogue-never")
forbid (principal == Mandate::Agent::"rogue", action == Mandate::Action::"delegate", resource);

@id("billing-needs-approval")
@approval("required")
permit (principal, action == Mandate::Action::"delegate", resource)
when { context.audiences.contains("https://billing.example") };

@id("short")
@max_ttl("2m")
permit (principal, action == Mandate::Action::"delegate", resource);
"#;

#[tokio::test]
async fn spec_policy_decides_after_the_protocol_rules_and_refusals_are_audited() {
    let read: AskFn = |r| r.scope = Some(ScopeSet::parse("read").unwrap());
    let rows: Vec<(&str, AskFn, &str, &str)> = vec![
        (
            "a forbid on a scope alone refuses the scope (RFC 6749 §5.2 invalid_scope)",
            |r| r.scope = Some(ScopeSet::parse("read write").unwrap()),
            "bot",
            "invalid_scope",
        ),
        (
            "a forbid on the agent refuses the grant",
            read,
            "rogue",
            "invalid_grant",
        ),
        (
            "@approval(\"required\"): a direct exchange is refused; ask through CIBA",
            |r| {
                r.scope = Some(ScopeSet::parse("read").unwrap());
                r.targets = vec![RS[1].into()];
            },
            "bot",
            "invalid_grant",
        ),
    ];
    for (why, ask, agent, want) in rows {
        let fx = Fixture::with_policy(Some(POLICY));
        let m = stored();
        m.state().tokens.get_mut(&hash(AGENT)).unwrap().sub = format!("agent:{agent}");
        let mut req = request();
        ask(&mut req);
        let r = grant(&m, &fx.env(), &exchanger(), req).await;
        assert_eq!(code_of(&r), want, "{why}");
        assert_eq!(m.audited(), ["token.exchange_refused"], "{why}");
    }
    // `@max_ttl` caps the lifetime of what is permitted.
    let fx = Fixture::with_policy(Some(POLICY));
    let m = stored();
    let mut req = request();
    read(&mut req);
    req.targets = vec![RS[0].into()];
    let issued = grant(&m, &fx.env(), &exchanger(), req).await.unwrap();
    assert_eq!(issued.expires_in, 120);
}

fn actor(m: &Memory, change: impl FnOnce(&mut TokenRecord)) {
    change(m.state().tokens.get_mut(&hash(AGENT)).unwrap());
}

/// RFC 9449 through the chain: the delegated token is bound to the key of the request's proof.
#[tokio::test]
async fn rfc9449_s6_the_delegated_token_is_bound_to_the_requests_proof_key() {
    let (fx, m) = (Fixture::new(), stored());
    let issued = grant(&m, &fx.env_bound("key-of-bot"), &exchanger(), request())
        .await
        .unwrap();
    assert!(issued.bound);
    assert_eq!(
        m.issued(&issued.access_token).jkt.as_deref(),
        Some("key-of-bot")
    );
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(&issued.access_token)
        .unwrap()
        .claims;
    assert_eq!(claims["cnf"]["jkt"], "key-of-bot");
    let bearer = grant(&m, &fx.env(), &exchanger(), request()).await.unwrap();
    assert!(!bearer.bound && m.issued(&bearer.access_token).jkt.is_none());
}

/// RFC 9449: an agent token bound to a key acts only in a request that key signed; a copy of
/// it, with another key's proof or none, is `invalid_grant` and issues nothing.
#[tokio::test]
async fn rfc9449_a_bound_actor_token_needs_a_proof_by_its_own_key() {
    let (fx, m) = (Fixture::new(), stored());
    actor(&m, |a| a.jkt = Some("key-of-bot".into()));
    for env in [fx.env(), fx.env_bound("key-of-thief")] {
        let r = grant(&m, &env, &exchanger(), request()).await;
        assert_eq!(code_of(&r), "invalid_grant");
        assert!(
            r.err()
                .unwrap()
                .description
                .contains("actor_token is bound")
        );
    }
    assert!(
        grant(&m, &fx.env_bound("key-of-bot"), &exchanger(), request())
            .await
            .is_ok()
    );
}

/// RFC 9449 through the chain: a bound subject token becomes a delegation only through the
/// client it was issued to, or for the actor its `may_act` names.
#[tokio::test]
async fn rfc9449_a_bound_subject_token_is_exchanged_only_by_its_client_or_for_may_act() {
    let (fx, m) = (Fixture::new(), stored());
    subject(&m, |s| s.jkt = Some("key-of-app".into()));
    let env = fx.env_bound("key-of-bot");
    let r = grant(&m, &env, &exchanger(), request()).await;
    assert_eq!(code_of(&r), "invalid_grant");
    assert!(
        r.err()
            .unwrap()
            .description
            .contains("issued to another client")
    );
    // The client the subject token was issued to ("app") may.
    let app = client("app", &[TOKEN_EXCHANGE], &[]);
    assert!(grant(&m, &env, &app, request()).await.is_ok());
    // So may anyone, for the actor `may_act` names (and only for it: `narrow` checks that).
    subject(&m, |s| {
        s.may_act = Some(MayAct {
            sub: "agent:bot".into(),
        })
    });
    assert!(grant(&m, &env, &exchanger(), request()).await.is_ok());
    subject(&m, |s| {
        s.may_act = Some(MayAct {
            sub: "agent:rogue".into(),
        })
    });
    assert_eq!(
        code_of(&grant(&m, &env, &exchanger(), request()).await),
        "invalid_grant"
    );
    // An unbound subject token keeps today's rules.
    subject(&m, |s| (s.jkt, s.may_act) = (None, None));
    assert!(grant(&m, &env, &exchanger(), request()).await.is_ok());
}

/// A key the agent's TPM was shown to hold at `/attest` stays known as one through the
/// exchange (`dpop_key: tpm`), and policy can require it (`context.dpop == "tpm"`).
#[tokio::test]
async fn rfc9449_a_tpm_held_key_carries_through_and_policy_can_require_it() {
    let cedar = r#"@id("write-needs-tpm-key")
        permit(principal, action == Mandate::Action::"delegate", resource)
        when { context.dpop == "tpm" || !context.scopes.contains("write") };"#;
    let fx = Fixture::with_policy(Some(cedar));
    let m = stored();
    actor(&m, |a| {
        a.jkt = Some("key-in-tpm".into());
        a.dpop_key = Some("tpm".into());
    });
    let issued = grant(&m, &fx.env_bound("key-in-tpm"), &exchanger(), request())
        .await
        .unwrap();
    assert_eq!(
        m.issued(&issued.access_token).dpop_key.as_deref(),
        Some("tpm")
    );
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(&issued.access_token)
        .unwrap()
        .claims;
    assert_eq!(claims["dpop_key"], "tpm");
    // An agent bound to a key in memory, or not bound at all, gets no `write`.
    actor(&m, |a| a.dpop_key = Some("software".into()));
    let r = grant(&m, &fx.env_bound("key-in-tpm"), &exchanger(), request()).await;
    // Cedar's default deny: no permit matched.
    assert!(
        r.as_ref()
            .is_err_and(|e| e.description.contains("no policy permits it")),
        "{:?}",
        r.err()
    );
    actor(&m, |a| (a.jkt, a.dpop_key) = (None, None));
    let r = grant(&m, &fx.env(), &exchanger(), request()).await;
    assert!(r.is_err());
    let mut narrower = request();
    narrower.scope = Some(ScopeSet::parse("read").unwrap());
    let bearer = grant(&m, &fx.env(), &exchanger(), narrower).await.unwrap();
    assert!(m.issued(&bearer.access_token).dpop_key.is_none());
}
