//! The endpoints as a client and a resource server see them.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn rfc8414_s3_metadata_at_both_well_known_paths_advertises_only_what_is_supported() {
    for b in backends() {
        let app = spawn_app(b).await;
        for path in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            let (status, _, m) = app.get_json(path).await;
            assert_eq!(status, 200);
            // No issuer in the config: the issuer is the bound listener's URL.
            assert_eq!(m["issuer"], app.url.as_str());
            assert_eq!(m["token_endpoint"], format!("{}/token", app.url));
            let grants: Vec<&str> = m["grant_types_supported"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|g| g.as_str())
                .collect();
            assert!(grants.contains(&"client_credentials"));
            assert!(grants.contains(&"urn:ietf:params:oauth:grant-type:token-exchange"));
            // OpenID CIBA Core §4: poll mode.
            assert!(
                grants.contains(&"urn:openid:params:grant-type:ciba"),
                "{grants:?}"
            );
            assert_eq!(
                m["backchannel_authentication_endpoint"],
                format!("{}/bc-authorize", app.url)
            );
            assert_eq!(
                m["backchannel_token_delivery_modes_supported"],
                json!(["poll"])
            );
            assert!(grants.contains(&"authorization_code"));
            assert!(grants.contains(&"refresh_token"));
            assert_eq!(m["response_types_supported"], json!(["code"]));
            assert_eq!(
                m["authorization_endpoint"],
                format!("{}/authorize", app.url)
            );
            // RFC 7636 §4.3 / RFC 9700 §2.1.1: S256 only, never plain.
            assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
            assert_eq!(
                m["authorization_response_iss_parameter_supported"], true,
                "RFC 9207"
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc9068_s2_client_credentials_token_is_an_es256_jwt_verifiable_with_the_jwks() {
    for b in backends() {
        let app = spawn_app(b).await;
        let token = app
            .cc_token(&[("scope", "orders:read"), ("audience", "orders-api")])
            .await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::ES256);
        let (_, headers, jwks) = app.get_json("/jwks.json").await;
        assert!(
            headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age")
        );
        let set: JwkSet = serde_json::from_value(jwks).unwrap();
        assert_eq!(
            set.keys.len(),
            2,
            "the signing key and the next one are published"
        );
        let jwk = set
            .find(header.kid.as_deref().unwrap())
            .expect("kid in JWKS");
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["orders-api"]);
        v.set_issuer(&[app.url.as_str()]);
        let claims: Value = jsonwebtoken::decode(&token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "agent-runtime");
        assert_eq!(claims["client_id"], "agent-runtime");
        assert_eq!(claims["scope"], "orders:read");
        assert_eq!(claims["aud"], "orders-api");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            600
        );
        assert!(claims["jti"].as_str().unwrap().len() >= 22);
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc6749_s3_3_without_scope_or_audience_the_client_gets_its_registered_ones() {
    for b in backends() {
        let app = spawn_app(b).await;
        let t = app.cc_token(&[]).await;
        let v = app.introspect(&t).await;
        assert_eq!(v["scope"], "orders:read orders:write");
        assert_eq!(v["aud"], json!(["billing-api", "orders-api"]));
        app.stop().await;
    }
}

/// (client auth, form, status, error, a word the description must contain)
type Case<'a> = (
    Option<(&'a str, &'a str)>,
    Vec<(&'a str, &'a str)>,
    u16,
    &'a str,
    &'a str,
);

#[tokio::test]
async fn rfc6749_s5_2_grant_errors_name_the_rule() {
    for b in backends() {
        let app = spawn_app(b).await;
        let cases: Vec<Case> = vec![
            (
                Some(("agent-runtime", "s3cret")),
                vec![
                    ("grant_type", "client_credentials"),
                    ("scope", "payments:write"),
                ],
                400,
                "invalid_scope",
                "payments:write",
            ),
            (
                Some(("agent-runtime", "s3cret")),
                vec![
                    ("grant_type", "client_credentials"),
                    ("audience", "nowhere"),
                ],
                400,
                "invalid_target",
                "nowhere",
            ),
            (
                Some(("no-grants", "ng-secret")),
                vec![("grant_type", "client_credentials")],
                400,
                "unauthorized_client",
                "no-grants",
            ),
            (
                Some(("agent-runtime", "s3cret")),
                vec![("grant_type", "password")],
                400,
                "unsupported_grant_type",
                "password",
            ),
            (
                Some(("agent-runtime", "s3cret")),
                vec![("scope", "orders:read")],
                400,
                "invalid_request",
                "grant_type",
            ),
            (
                Some(("agent-runtime", "s3cret")),
                vec![("grant_type", "client_credentials"), ("scope", "a  b")],
                400,
                "invalid_scope",
                "RFC 6749",
            ),
            (
                None,
                vec![("grant_type", "client_credentials")],
                401,
                "invalid_client",
                "required",
            ),
        ];
        let before = app.audit_len().await;
        for (auth, form, status, error, mentions) in cases {
            let resp = app.post_form("/token", auth, &form).await;
            assert_eq!(resp.status(), status, "{form:?}");
            assert_eq!(resp.headers()["content-type"], "application/json");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"], error, "{form:?}");
            assert!(
                v["error_description"].as_str().unwrap().contains(mentions),
                "{v}"
            );
        }
        assert_eq!(
            app.audit_len().await,
            before,
            "refused requests change nothing"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn malformed_input_gets_a_json_4xx_and_changes_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let before = app.audit_len().await;
    let url = |p: &str| format!("{}{p}", app.url);
    let c = &app.http;
    let basic = "Basic YWdlbnQtcnVudGltZTpzM2NyZXQ="; // agent-runtime:s3cret
    let requests = vec![
        (
            "json body",
            c.post(url("/token"))
                .header("authorization", basic)
                .json(&json!({"grant_type": "client_credentials"})),
        ),
        (
            "no content type",
            c.post(url("/token"))
                .header("authorization", basic)
                .body("grant_type=client_credentials"),
        ),
        (
            "huge body",
            c.post(url("/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(vec![b'a'; 200_000]),
        ),
        (
            "garbage basic",
            c.post(url("/token"))
                .header("authorization", "Basic %%%")
                .form(&[("grant_type", "client_credentials")]),
        ),
        (
            "bearer scheme",
            c.post(url("/introspect"))
                .header("authorization", "Bearer x")
                .form(&[("token", "x")]),
        ),
        (
            "bad percent",
            c.post(url("/token"))
                .header("authorization", basic)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=%ZZ%FF"),
        ),
        (
            "binary",
            c.post(url("/revoke"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(vec![0xff, 0x00, 0xfe]),
        ),
        ("GET token", c.get(url("/token"))),
        ("unknown path", c.get(url("/nope"))),
        (
            "introspect no token",
            c.post(url("/introspect"))
                .basic_auth("orders-api", Some("rs-secret"))
                .form(&[("x", "y")]),
        ),
        (
            "repeated token",
            c.post(url("/introspect"))
                .basic_auth("orders-api", Some("rs-secret"))
                .body("token=a&token=b")
                .header("content-type", "application/x-www-form-urlencoded"),
        ),
    ];
    for (name, req) in requests {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{name}: {status}");
        let v: Value = resp
            .json()
            .await
            .unwrap_or_else(|_| panic!("{name}: JSON error body"));
        assert!(v["error"].is_string(), "{name}: {v}");
    }
    assert_eq!(app.audit_len().await, before, "nothing was written");
    app.stop().await;
}

#[tokio::test]
async fn rfc7662_s2_2_introspection_is_active_only_for_the_resource_servers_in_aud() {
    for b in backends() {
        let app = spawn_app(b).await;
        let t = app.cc_token(&[("audience", "orders-api")]).await;
        let v = app.introspect(&t).await;
        assert_eq!(v["active"], true);
        for k in [
            "sub",
            "scope",
            "client_id",
            "exp",
            "iat",
            "jti",
            "aud",
            "iss",
        ] {
            assert!(v.get(k).is_some(), "{k} in {v}");
        }
        // Another resource server learns nothing about a token not meant for it.
        let other = app
            .introspect_as(("billing-api", "billing-secret"), &t)
            .await;
        assert_eq!(other, json!({"active": false}));
        assert_eq!(
            app.introspect("not-a-token").await,
            json!({"active": false})
        );
        // A client that is not a resource server may not introspect.
        let resp = app
            .post_form(
                "/introspect",
                Some(("agent-runtime", "s3cret")),
                &[("token", &t)],
            )
            .await;
        assert_eq!(resp.status(), 403);
        app.stop().await;
    }
}

#[tokio::test]
async fn rfc7009_s2_revocation_takes_effect_at_once_and_only_for_the_owner() {
    for b in backends() {
        let app = spawn_app(b).await;
        let t = app.cc_token(&[("audience", "orders-api")]).await;
        let resp = app
            .post_form(
                "/revoke",
                Some(("other-client", "other-secret")),
                &[("token", &t)],
            )
            .await;
        assert_eq!(resp.status(), 400, "another client may not revoke it");
        assert_eq!(app.introspect(&t).await["active"], true);
        let resp = app
            .post_form(
                "/revoke",
                Some(("agent-runtime", "s3cret")),
                &[("token", &t), ("token_type_hint", "access_token")],
            )
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(app.introspect(&t).await, json!({"active": false}));
        // Unknown and already-revoked tokens are not errors (RFC 7009 §2.2).
        for tok in [t.as_str(), "garbage"] {
            let resp = app
                .post_form(
                    "/revoke",
                    Some(("agent-runtime", "s3cret")),
                    &[("token", tok)],
                )
                .await;
            assert_eq!(resp.status(), 200);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app(Backend::Sqlite).await;
    let r = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_config_stops_the_server_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\n[tokens]\naccess_token_ttl = \"soon\"\n",
    )
    .unwrap();
    let out = mandate_cli(&["serve", "--config", path.to_str().unwrap()], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.toml") && err.contains("access_token_ttl"),
        "{err}"
    );
}
