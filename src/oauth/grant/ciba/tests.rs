//! OpenID CIBA Core 1.0 (poll mode) over in-memory storage: `bot` asks to act for `alice`
//! through `/bc-authorize`, `alice` decides (here: the stored request is changed), and the
//! agent polls `/token`. Each row says which error code a poll or request gets (CIBA Core §11,
//! §13), or what the token carries.

use super::*;
use crate::oauth::grant::testing::{Fixture, ISSUER, Memory, NOW, RS, client, code_of, record};
use crate::oauth::request::{TOKEN_EXCHANGE, TT_ACCESS_TOKEN, TT_JWT};

const SUBJECT: &str = "subject-token";
const AGENT: &str = "agent-token";

fn hash(t: &str) -> Vec<u8> {
    sha256(t.as_bytes()).to_vec()
}

fn stored() -> Memory {
    let m = Memory::default()
        .with_user("alice", &["read", "write"])
        .with_agent("bot");
    let mut subject = record(SUBJECT, TokenKind::Access, "alice", "app", "read write");
    subject.aud = vec![RS[0].to_string()].into();
    m.put(subject);
    let mut agent = record(AGENT, TokenKind::Agent, "agent:bot", "agent:bot", "");
    agent.aud = vec![ISSUER.to_string()].into();
    m.put(agent);
    m
}

fn agent_client() -> Client {
    client("agent-app", &[CIBA, TOKEN_EXCHANGE], &[])
}

/// The `/bc-authorize` form: the token-exchange parameters plus `extra`.
fn form(extra: &[(&str, &str)]) -> Params {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("subject_token", SUBJECT)
        .append_pair("subject_token_type", TT_ACCESS_TOKEN)
        .append_pair("actor_token", AGENT)
        .append_pair("actor_token_type", TT_JWT);
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    Params::parse(q.finish().as_bytes())
}

#[tokio::test]
async fn ciba_core_s7_1_and_s13_refused_requests_store_nothing() {
    let long = "x".repeat(BINDING_MESSAGE_MAX + 1);
    type Row<'a> = (&'a str, Client, Vec<(&'a str, &'a str)>, &'a str);
    let rows: Vec<Row> = vec![
        (
            "CIBA Core §13: a public client may not use CIBA",
            Client {
                public: true,
                ..agent_client()
            },
            vec![],
            "unauthorized_client",
        ),
        (
            "CIBA Core §13: the client is not registered for the CIBA grant",
            client("agent-app", &[TOKEN_EXCHANGE], &[]),
            vec![],
            "unauthorized_client",
        ),
        (
            "CIBA Core §7.1: binding_message is short",
            agent_client(),
            vec![("binding_message", long.as_str())],
            "invalid_request",
        ),
        (
            "CIBA Core §7.1: binding_message is displayable",
            agent_client(),
            vec![("binding_message", "line\nbreak")],
            "invalid_request",
        ),
        (
            // The human approves what they read: a right-to-left override (U+202E) makes
            // "Pay 1000 to bob\u{202e}01" read differently on the approvals page and in mail.
            "CIBA Core §7.1: binding_message is displayable: no bidirectional override",
            agent_client(),
            vec![("binding_message", "Pay invoice \u{202e}1174")],
            "invalid_request",
        ),
        (
            "CIBA Core §7.1: binding_message is displayable: no zero-width character",
            agent_client(),
            vec![("binding_message", "Pay\u{200b} invoice 4711")],
            "invalid_request",
        ),
        (
            "CIBA Core §7.1: binding_message is displayable: no line separator",
            agent_client(),
            vec![("binding_message", "Pay invoice\u{2028}4711")],
            "invalid_request",
        ),
        (
            "CIBA Core §7.1: requested_expiry is a number of seconds",
            agent_client(),
            vec![("requested_expiry", "soon")],
            "invalid_request",
        ),
        (
            "CIBA Core §7.1: requested_expiry below the least we wait",
            agent_client(),
            vec![("requested_expiry", "5")],
            "invalid_request",
        ),
        (
            "RFC 8693 §2.2.2: the exchange rules apply before the human is asked",
            agent_client(),
            vec![("scope", "read admin")],
            "invalid_scope",
        ),
    ];
    for (why, c, extra, want) in rows {
        let fx = Fixture::new();
        let m = stored();
        let r = bc_authorize(&m, &fx.env(), &c, &form(&extra)).await;
        assert_eq!(code_of(&r), want, "{why}");
        assert!(m.state().cibas.is_empty(), "{why}: nothing stored");
    }
}

#[tokio::test]
async fn ciba_core_s7_3_the_request_waits_as_long_as_asked_within_the_configured_expiry() {
    type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, i64);
    let rows: Vec<Row> = vec![
        (
            "CIBA Core §7.3: by default, the configured expiry",
            vec![],
            300,
        ),
        (
            "CIBA Core §7.1: a shorter requested_expiry is honoured",
            vec![("requested_expiry", "60")],
            60,
        ),
        (
            "a longer one is capped",
            vec![("requested_expiry", "86400")],
            300,
        ),
    ];
    for (why, extra, want) in rows {
        let fx = Fixture::new();
        let m = stored();
        let r = bc_authorize(&m, &fx.env(), &agent_client(), &form(&extra))
            .await
            .unwrap();
        assert_eq!((r.expires_in, r.interval), (want, 5), "{why}");
        let stored = m.state().cibas[&hash(&r.auth_req_id)].clone();
        assert_eq!(stored.expires_at, NOW + want, "{why}");
        assert_eq!(
            (stored.username.as_str(), stored.agent.as_str()),
            ("alice", "agent:bot")
        );
        assert_eq!(stored.status, CibaStatus::Pending, "{why}");
        assert_eq!(m.audited(), ["ciba.requested"], "{why}");
    }
}

/// The human is told about a request with the audit entry that records it, and told only
/// what they need to decide: never the `auth_req_id` (it would let the reader poll for the
/// token) or a token. A refused request announces nothing.
#[tokio::test]
async fn a_waiting_request_is_announced_with_its_audit_entry_and_without_secrets() {
    let fx = Fixture::new();
    let m = stored();
    let r = bc_authorize(
        &m,
        &fx.env(),
        &agent_client(),
        &form(&[("binding_message", "Pay invoice 4711"), ("scope", "write")]),
    )
    .await
    .unwrap();
    {
        let s = m.state();
        let [w] = s.waiting.as_slice() else {
            panic!("one announcement: {:?}", s.waiting);
        };
        let stored = &s.cibas[&hash(&r.auth_req_id)];
        assert_eq!(w.request, stored.public_id);
        assert_eq!((w.user.as_str(), w.client.as_str()), ("alice", "agent-app"));
        assert_eq!(
            (w.agent.as_str(), w.scopes.as_slice()),
            ("agent:bot", &["write".to_string()][..])
        );
        assert_eq!(w.chain, ["agent:bot", "alice"]);
        assert_eq!(w.binding_message.as_deref(), Some("Pay invoice 4711"));
        assert_eq!(w.expires_at, stored.expires_at);
        let said = serde_json::to_string(w).unwrap();
        for secret in [r.auth_req_id.as_str(), SUBJECT, AGENT] {
            assert!(!said.contains(secret), "{said}");
        }
    }

    let refused = bc_authorize(&m, &fx.env(), &agent_client(), &form(&[("scope", "admin")])).await;
    assert!(refused.is_err());
    assert_eq!(
        m.state().waiting.len(),
        1,
        "a refused request announces nothing"
    );
}

#[tokio::test]
async fn a_human_has_at_most_twenty_requests_waiting() {
    let fx = Fixture::new();
    let m = stored();
    for _ in 0..MAX_PENDING_PER_USER {
        bc_authorize(&m, &fx.env(), &agent_client(), &form(&[]))
            .await
            .unwrap();
    }
    let over = bc_authorize(&m, &fx.env(), &agent_client(), &form(&[])).await;
    assert_eq!(code_of(&over), "slow_down");
    assert_eq!(over.err().unwrap().status, 429);
}

type Decide = fn(&Memory, &[u8]);

fn set_status(m: &Memory, id: &[u8], status: CibaStatus) {
    m.state().cibas.get_mut(id).unwrap().status = status;
}

#[tokio::test]
async fn ciba_core_s11_what_a_poll_gets() {
    let pending: Decide = |_, _| {};
    let rows: Vec<(&str, Client, bool, i64, Decide, &str)> = vec![
        (
            "CIBA Core §11: an unknown auth_req_id",
            agent_client(),
            true,
            0,
            pending,
            "invalid_grant",
        ),
        (
            "CIBA Core §11: an auth_req_id issued to another client",
            client("other", &[CIBA, TOKEN_EXCHANGE], &[]),
            false,
            0,
            pending,
            "invalid_grant",
        ),
        (
            "CIBA Core §11: the human has not decided",
            agent_client(),
            false,
            0,
            pending,
            "authorization_pending",
        ),
        (
            "CIBA Core §11: the request expired undecided",
            agent_client(),
            false,
            300,
            pending,
            "expired_token",
        ),
        (
            "CIBA Core §11: the human said no",
            agent_client(),
            false,
            0,
            |m, id| set_status(m, id, CibaStatus::Denied),
            "access_denied",
        ),
        (
            "CIBA Core §11: the token was already issued",
            agent_client(),
            false,
            0,
            |m, id| set_status(m, id, CibaStatus::Issued),
            "invalid_grant",
        ),
        (
            "CIBA Core §10.1: approved: the token",
            agent_client(),
            false,
            0,
            |m, id| set_status(m, id, CibaStatus::Approved),
            "ok",
        ),
        (
            "SPEC Invariants: the subject token was revoked after approval",
            agent_client(),
            false,
            0,
            |m, id| {
                set_status(m, id, CibaStatus::Approved);
                m.state().tokens.get_mut(&hash(SUBJECT)).unwrap().revoked_at = Some(NOW);
            },
            "access_denied",
        ),
        (
            "SPEC Invariants: the agent token was revoked after approval",
            agent_client(),
            false,
            0,
            |m, id| {
                set_status(m, id, CibaStatus::Approved);
                m.state().tokens.get_mut(&hash(AGENT)).unwrap().revoked_at = Some(NOW);
            },
            "access_denied",
        ),
        (
            "SPEC Invariants: the human is no longer a user",
            agent_client(),
            false,
            0,
            |m, id| {
                set_status(m, id, CibaStatus::Approved);
                m.state().users.clear();
            },
            "access_denied",
        ),
        (
            "SPEC Invariants: the agent was removed after approval",
            agent_client(),
            false,
            0,
            |m, id| {
                set_status(m, id, CibaStatus::Approved);
                m.state().agents.clear();
            },
            "access_denied",
        ),
    ];
    for (why, c, unknown, later, decide, want) in rows {
        let fx = Fixture::new();
        let m = stored();
        let r = bc_authorize(&m, &fx.env(), &agent_client(), &form(&[]))
            .await
            .unwrap();
        decide(&m, &hash(&r.auth_req_id));
        fx.clock.advance(later);
        let id = if unknown {
            "nope"
        } else {
            r.auth_req_id.as_str()
        };
        let got = grant(&m, &fx.env(), &c, id).await;
        assert_eq!(code_of(&got), want, "{why}");
        if let Err(e) = &got {
            assert_eq!(e.status, 400, "{why}: CIBA Core §11 errors are 400s");
        }
        if want == "access_denied"
            && m.state()
                .cibas
                .values()
                .any(|c| c.status == CibaStatus::Issued)
        {
            assert!(
                m.audited()
                    .contains(&"ciba.refused_at_issuance".to_string()),
                "{why}"
            );
        }
    }
}

#[tokio::test]
async fn ciba_core_s11_polling_faster_than_the_interval_slows_the_agent_down() {
    let fx = Fixture::new();
    let m = stored();
    let r = bc_authorize(&m, &fx.env(), &agent_client(), &form(&[]))
        .await
        .unwrap();
    let (env, c) = (fx.env(), agent_client());
    let poll = || grant(&m, &env, &c, &r.auth_req_id);
    assert_eq!(code_of(&poll().await), "authorization_pending");
    fx.clock.advance(4);
    assert_eq!(code_of(&poll().await), "slow_down");
    // The interval grew by five seconds, to ten: nine later is still too soon, ten is not.
    assert_eq!(m.state().cibas[&hash(&r.auth_req_id)].interval_secs, 10);
    fx.clock.advance(9);
    assert_eq!(code_of(&poll().await), "slow_down");
    fx.clock.advance(15);
    assert_eq!(code_of(&poll().await), "authorization_pending");
}

#[tokio::test]
async fn ciba_core_s10_1_the_approved_token_is_issued_once_as_approved() {
    let fx = Fixture::new();
    let m = stored();
    let r = bc_authorize(&m, &fx.env(), &agent_client(), &form(&[]))
        .await
        .unwrap();
    {
        let mut s = m.state();
        let c = s.cibas.get_mut(&hash(&r.auth_req_id)).unwrap();
        c.status = CibaStatus::Approved;
        // The human may approve less than was asked: a narrower scope, a shorter life.
        c.approved_scope = Some(ScopeSet::parse("read").unwrap());
        c.approved_exp = Some(NOW + 120);
    }
    let issued = grant(&m, &fx.env(), &agent_client(), &r.auth_req_id)
        .await
        .unwrap();
    assert_eq!((issued.scope.as_str(), issued.expires_in), ("read", 120));
    let rec = m.issued(&issued.access_token);
    assert_eq!(rec.act.unwrap().chain(), ["agent:bot"]);
    assert_eq!(rec.aud, [RS[0]]);
    assert_eq!(rec.parent_hash, Some(hash(SUBJECT)));
    fx.clock.advance(10);
    let again = grant(&m, &fx.env(), &agent_client(), &r.auth_req_id).await;
    assert_eq!(code_of(&again), "invalid_grant");
}
