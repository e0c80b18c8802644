//! RFC 6749 §4.4 over in-memory storage: each row a client and a request, and the RFC 6749
//! §5.2 error code it gets, or what the token it gets carries.

use super::*;
use crate::oauth::grant::testing::{Fixture, ISSUER, Memory, NOW, RS, client, code_of};
use crate::oauth::token::AccessClaims;

const CC: &str = CLIENT_CREDENTIALS;

fn scope(s: &str) -> Option<ScopeSet> {
    Some(ScopeSet::parse(s).unwrap())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn rfc6749_s4_4_refusals_issue_nothing() {
    let public = Client {
        public: true,
        ..client("c", &[CC], &["read"])
    };
    let orders_only = Client {
        audiences: Some(strings(&[RS[0]])),
        ..client("c", &[CC], &["read"])
    };
    type Row<'a> = (&'a str, Client, Option<ScopeSet>, &'a [&'a str], &'a str);
    let rows: Vec<Row> = vec![
        (
            "RFC 6749 §4.4: only a confidential client may use this grant",
            public,
            None,
            &[],
            "unauthorized_client",
        ),
        (
            "RFC 6749 §5.2: the client is not registered for this grant",
            client("c", &["authorization_code"], &["read"]),
            None,
            &[],
            "unauthorized_client",
        ),
        (
            "RFC 6749 §3.3, §5.2: a scope beyond the client's",
            client("c", &[CC], &["read"]),
            scope("read write"),
            &[],
            "invalid_scope",
        ),
        (
            "SPEC Invariants: a high-risk scope needs a human, and this grant has none",
            client("c", &[CC], &["read", "admin"]),
            scope("read admin"),
            &[],
            "invalid_scope",
        ),
        (
            "RFC 8707 §2, RFC 8693 §2.2.2: a resource server this server does not know",
            client("c", &[CC], &["read"]),
            None,
            &["https://elsewhere.example"],
            "invalid_target",
        ),
        (
            "RFC 8707 §2: a resource server outside the client's audiences",
            orders_only,
            None,
            &[RS[1]],
            "invalid_target",
        ),
    ];
    for (why, c, s, targets, want) in rows {
        let fx = Fixture::new();
        let m = Memory::default();
        let r = grant(&m, &fx.env(), &c, s, &strings(targets)).await;
        assert_eq!(code_of(&r), want, "{why}");
        assert!(m.state().tokens.is_empty(), "{why}: nothing issued");
        assert!(m.state().audit.is_empty(), "{why}: nothing audited");
    }
}

#[tokio::test]
async fn rfc6749_s4_4_3_the_token_carries_the_scope_and_audience_asked_within_the_client() {
    let mut all = strings(&RS);
    all.sort();
    type Row<'a> = (
        &'a str,
        Client,
        Option<ScopeSet>,
        &'a [&'a str],
        &'a str,
        Vec<String>,
    );
    let rows: Vec<Row> = vec![
        (
            "RFC 6749 §3.3: no scope asked: the registered ones, less the high-risk ones",
            client("c", &[CC], &["read", "write", "admin"]),
            None,
            &[],
            "read write",
            all.clone(),
        ),
        (
            "RFC 6749 §3.3: a narrower scope asked is what is granted",
            client("c", &[CC], &["read", "write"]),
            scope("read"),
            &[],
            "read",
            all.clone(),
        ),
        (
            "RFC 8707 §2: the named resource server is the only audience",
            client("c", &[CC], &["read"]),
            None,
            &[RS[1]],
            "read",
            strings(&[RS[1]]),
        ),
        (
            "the client's audiences bound the default audience",
            Client {
                audiences: Some(strings(&[RS[0]])),
                ..client("c", &[CC], &["read"])
            },
            None,
            &[],
            "read",
            strings(&[RS[0]]),
        ),
        (
            "a client that may reach no resource server gets a token for this server",
            Client {
                audiences: Some(vec![]),
                ..client("c", &[CC], &["read"])
            },
            None,
            &[],
            "read",
            strings(&[ISSUER]),
        ),
    ];
    for (why, c, s, targets, want_scope, want_aud) in rows {
        let fx = Fixture::new();
        let m = Memory::default();
        let env = fx.env();
        let issued = grant(&m, &env, &c, s, &strings(targets)).await.unwrap();
        assert_eq!(issued.scope, want_scope, "{why}");
        assert!(issued.refresh_token.is_none(), "{why}: RFC 6749 §4.4.3");
        let rec = m.issued(&issued.access_token);
        assert_eq!(
            (rec.scope.as_str(), &rec.aud.to_vec()),
            (want_scope, &want_aud),
            "{why}"
        );
        assert_eq!(m.audited(), ["token.issued"], "{why}");
        // RFC 9068 §2.2: a signed at+jwt for the client itself.
        let claims: AccessClaims = env
            .mint
            .keys
            .verify(&issued.access_token, "at+jwt")
            .unwrap();
        assert_eq!((claims.sub.as_str(), claims.iss.as_str()), ("c", ISSUER));
        assert_eq!(claims.exp, NOW + 600);
        assert_eq!(claims.aud, want_aud);
    }
}
