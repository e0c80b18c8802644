//! The token endpoint (RFC 6749) and the access token it issues (RFC 9068).

use serde_json::{Map, Value};

use crate::http::{Captured, basic_auth, expect_oauth_error, send};
use crate::jwt::{aud_contains, scope_set};
use crate::{Check, Ctx, access_token_of, jwt};

pub(crate) async fn run(ctx: &Ctx<'_>) -> Vec<Check> {
    vec![
        basic_issues(ctx).await,
        post_issues(ctx).await,
        response_bearer(ctx).await,
        response_expires_in(ctx).await,
        response_no_store(ctx).await,
        jwt_typ(ctx).await,
        jwt_alg(ctx).await,
        jwt_kid(ctx).await,
        jwt_signature(ctx).await,
        jwt_claims_present(ctx).await,
        jwt_iss(ctx).await,
        jwt_client_id(ctx).await,
        jwt_times(ctx).await,
        jwt_scope(ctx).await,
        response_scope(ctx).await,
        audience_token_aud(ctx).await,
        wrong_secret_basic(ctx).await,
        wrong_secret_post(ctx).await,
        unknown_client(ctx).await,
        unknown_grant_type(ctx).await,
        missing_grant_type(ctx).await,
        repeated_parameter(ctx).await,
        two_auth_methods(ctx).await,
        invalid_scope(ctx).await,
        get_refused(ctx).await,
    ]
}

/// The shared client_secret_basic token response, if it was a success.
fn token_response<'c>(ctx: &'c Ctx<'_>) -> Result<&'c Captured, String> {
    let resp = ctx
        .basic_token
        .as_ref()
        .map_err(|e| format!("token request failed: {e}"))?;
    access_token_of(resp)?;
    Ok(resp)
}

/// The decoded shared access token.
fn parts(ctx: &Ctx<'_>) -> Result<jwt::Parts, String> {
    jwt::parse(ctx.basic_access_token()?)
}

fn header_str<'p>(p: &'p jwt::Parts, name: &str) -> Option<&'p str> {
    p.header.get(name).and_then(Value::as_str)
}

fn claim_str<'p>(p: &'p jwt::Parts, name: &str) -> Option<&'p str> {
    p.claims.get(name).and_then(Value::as_str)
}

fn jwks_json<'c>(ctx: &'c Ctx<'_>) -> Result<&'c Value, String> {
    match &ctx.jwks {
        Ok(resp) => resp
            .json
            .as_ref()
            .ok_or_else(|| format!("JWK Set is not JSON: {}", resp.summary())),
        Err(e) => Err(format!("GET {}: {e}", ctx.jwks_uri)),
    }
}

async fn basic_issues(ctx: &Ctx<'_>) -> Check {
    Check::new(
        "RFC 6749 §4.4.2: client_credentials with client_secret_basic issues an access token",
        token_response(ctx).map(|_| ()),
    )
}

async fn post_issues(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let result = ctx
        .post_form(
            &ctx.token_endpoint,
            &[
                ("grant_type", "client_credentials"),
                ("scope", &t.scope),
                ("client_id", &t.client_id),
                ("client_secret", &t.client_secret),
            ],
            None,
        )
        .await
        .and_then(|resp| access_token_of(&resp).map(|_| ()));
    Check::new(
        "RFC 6749 §2.3.1: client_credentials with client_secret_post issues an access token",
        result,
    )
}

async fn response_bearer(ctx: &Ctx<'_>) -> Check {
    let result = token_response(ctx).and_then(|resp| {
        if !resp.has_json_content_type() {
            return Err(format!(
                "Content-Type is not application/json: {}",
                resp.summary()
            ));
        }
        match resp.str_member("token_type") {
            Some(tt) if tt.eq_ignore_ascii_case("bearer") => Ok(()),
            other => Err(format!("token_type is {other:?}, not Bearer")),
        }
    });
    Check::new(
        "RFC 6749 §5.1: the token response is application/json with token_type Bearer",
        result,
    )
}

async fn response_expires_in(ctx: &Ctx<'_>) -> Check {
    let result = token_response(ctx).and_then(|resp| {
        match resp.json.as_ref().and_then(|j| j.get("expires_in")) {
            Some(v) if v.as_u64().is_some_and(|n| n > 0) => Ok(()),
            other => Err(format!("expires_in is {other:?}, not a positive integer")),
        }
    });
    Check::new("RFC 6749 §5.1: expires_in is a positive integer", result)
}

async fn response_no_store(ctx: &Ctx<'_>) -> Check {
    let result = token_response(ctx).and_then(|resp| {
        let directives: Vec<String> = resp
            .headers
            .get_all("cache-control")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|d| d.trim().to_ascii_lowercase())
            .collect();
        if directives.iter().any(|d| d == "no-store") {
            Ok(())
        } else {
            Err(format!("Cache-Control directives are {directives:?}"))
        }
    });
    Check::new(
        "RFC 6749 §5.1: the token response carries Cache-Control: no-store",
        result,
    )
}

async fn jwt_typ(ctx: &Ctx<'_>) -> Check {
    let result = parts(ctx).and_then(|p| match header_str(&p, "typ") {
        Some(t) if t.eq_ignore_ascii_case("at+jwt") => Ok(()),
        other => Err(format!("typ is {other:?}, not \"at+jwt\"")),
    });
    Check::new(
        "RFC 9068 §2.1: the access token is a JWT with header typ at+jwt",
        result,
    )
}

async fn jwt_alg(ctx: &Ctx<'_>) -> Check {
    let result = parts(ctx).and_then(|p| match header_str(&p, "alg") {
        Some("ES256") => Ok(()),
        other => Err(format!("alg is {other:?}, not \"ES256\"")),
    });
    Check::new(
        "RFC 9068 §2.1: the access token is signed with ES256",
        result,
    )
}

async fn jwt_kid(ctx: &Ctx<'_>) -> Check {
    let result = parts(ctx).and_then(|p| {
        let kid = header_str(&p, "kid").ok_or("the JWT header has no string kid")?;
        let keys = jwt::keys(jwks_json(ctx)?)?;
        if keys
            .iter()
            .any(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        {
            Ok(())
        } else {
            Err(format!("kid {kid:?} is not in the JWKS"))
        }
    });
    Check::new(
        "RFC 9068 §4: the access token's kid names a key in the JWKS",
        result,
    )
}

async fn jwt_signature(ctx: &Ctx<'_>) -> Check {
    let result = ctx
        .basic_access_token()
        .and_then(|t| jwt::verify(t, jwks_json(ctx)?));
    Check::new(
        "RFC 9068 §4: the access token's signature verifies with the JWKS key",
        result,
    )
}

/// `problems` for claims missing or of the wrong JSON type.
fn claim_types(claims: &Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for name in ["iss", "sub", "client_id", "jti"] {
        match claims.get(name) {
            Some(Value::String(s)) if !s.is_empty() => {}
            other => problems.push(format!("{name} is {other:?}")),
        }
    }
    for name in ["exp", "iat"] {
        match claims.get(name) {
            Some(v) if v.as_i64().is_some() => {}
            other => problems.push(format!("{name} is {other:?}, not a NumericDate")),
        }
    }
    match claims.get("aud") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {}
        other => problems.push(format!("aud is {other:?}")),
    }
    problems
}

async fn jwt_claims_present(ctx: &Ctx<'_>) -> Check {
    let result = parts(ctx).and_then(|p| {
        let problems = claim_types(&p.claims);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    });
    Check::new(
        "RFC 9068 §2.2: the access token carries iss, exp, aud, sub, client_id, iat and jti",
        result,
    )
}

async fn jwt_iss(ctx: &Ctx<'_>) -> Check {
    let want = ctx.target.issuer.trim_end_matches('/');
    let result = parts(ctx).and_then(|p| match claim_str(&p, "iss") {
        Some(iss) if iss == want => Ok(()),
        other => Err(format!("iss is {other:?}, expected {want:?}")),
    });
    Check::new(
        "RFC 9068 §2.2: the access token's iss equals the issuer",
        result,
    )
}

async fn jwt_client_id(ctx: &Ctx<'_>) -> Check {
    let want = ctx.target.client_id.as_str();
    let result = parts(ctx).and_then(|p| match claim_str(&p, "client_id") {
        Some(c) if c == want => Ok(()),
        other => Err(format!("client_id is {other:?}, expected {want:?}")),
    });
    Check::new(
        "RFC 9068 §2.2: the access token's client_id is the client that obtained it",
        result,
    )
}

async fn jwt_times(ctx: &Ctx<'_>) -> Check {
    const SKEW: i64 = 60;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let result = parts(ctx).and_then(|p| {
        let exp = p.claims.get("exp").and_then(Value::as_i64);
        let iat = p.claims.get("iat").and_then(Value::as_i64);
        match (exp, iat) {
            (Some(exp), Some(iat)) if exp > now && iat <= now + SKEW && exp > iat => Ok(()),
            _ => Err(format!(
                "exp {exp:?}, iat {iat:?}, local time {now} (±{SKEW}s allowed)"
            )),
        }
    });
    Check::new(
        "RFC 9068 §2.2: exp is in the future and after iat, iat is not in the future",
        result,
    )
}

async fn jwt_scope(ctx: &Ctx<'_>) -> Check {
    let want = ctx.target.scope.as_str();
    let result = parts(ctx).and_then(|p| match claim_str(&p, "scope") {
        Some(s) if scope_set(s).contains(want) => Ok(()),
        other => Err(format!("scope claim is {other:?}, requested {want:?}")),
    });
    Check::new(
        "RFC 9068 §2.2.3: the access token's scope claim includes the requested scope",
        result,
    )
}

async fn response_scope(ctx: &Ctx<'_>) -> Check {
    let requested = ctx.target.scope.as_str();
    let result = token_response(ctx).and_then(|resp| {
        let p = parts(ctx)?;
        let granted = claim_str(&p, "scope").unwrap_or_default();
        let announced = resp.str_member("scope");
        match announced {
            Some(a) if scope_set(a) != scope_set(granted) => Err(format!(
                "response scope {a:?} differs from the token's scope claim {granted:?}"
            )),
            Some(_) => Ok(()),
            None if scope_set(granted) == scope_set(requested) => Ok(()),
            None => Err(format!(
                "requested {requested:?}, the token carries {granted:?}, and the response has no scope"
            )),
        }
    });
    Check::new(
        "RFC 6749 §5.1: the response's scope is present and accurate when it differs from the requested scope",
        result,
    )
}

async fn audience_token_aud(ctx: &Ctx<'_>) -> Check {
    let want = ctx.target.audience.as_str();
    let result = ctx
        .audience_token
        .clone()
        .and_then(|t| jwt::parse(&t))
        .and_then(|p| {
            if aud_contains(p.claims.get("aud"), want) {
                Ok(())
            } else {
                Err(format!(
                    "aud is {:?}, expected it to name {want:?}",
                    p.claims.get("aud")
                ))
            }
        });
    Check::new(
        "RFC 9068 §3: a token requested with audience=AUD carries AUD in aud",
        result,
    )
}

/// A token request that must fail with `code` and one of `statuses`.
async fn token_error(
    ctx: &Ctx<'_>,
    params: &[(&str, &str)],
    authorization: Option<&str>,
    statuses: &[u16],
    code: &str,
) -> Result<Captured, String> {
    let resp = ctx
        .post_form(&ctx.token_endpoint, params, authorization)
        .await?;
    expect_oauth_error(&resp, statuses, code)?;
    Ok(resp)
}

fn wrong(secret: &str) -> String {
    format!("{secret}-conformance-wrong")
}

async fn wrong_secret_basic(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let auth = basic_auth(&t.client_id, &wrong(&t.client_secret));
    let params = [("grant_type", "client_credentials"), ("scope", &t.scope)];
    let result = token_error(ctx, &params, Some(&auth), &[401], "invalid_client")
        .await
        .and_then(|resp| match resp.header("www-authenticate") {
            Some(v) if v.trim_start().to_ascii_lowercase().starts_with("basic") => Ok(()),
            other => Err(format!(
                "WWW-Authenticate is {other:?}, expected the Basic scheme"
            )),
        });
    Check::new(
        "RFC 6749 §5.2: a wrong secret via client_secret_basic gets 401 invalid_client with WWW-Authenticate: Basic",
        result,
    )
}

async fn wrong_secret_post(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let secret = wrong(&t.client_secret);
    let params = [
        ("grant_type", "client_credentials"),
        ("scope", &t.scope),
        ("client_id", &t.client_id),
        ("client_secret", &secret),
    ];
    let result = token_error(ctx, &params, None, &[400, 401], "invalid_client").await;
    Check::new(
        "RFC 6749 §5.2: a wrong secret via client_secret_post gets 400 or 401 invalid_client",
        result.map(|_| ()),
    )
}

async fn unknown_client(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let auth = basic_auth("conformance-unknown-client", &t.client_secret);
    let params = [("grant_type", "client_credentials"), ("scope", &t.scope)];
    let result = token_error(ctx, &params, Some(&auth), &[401], "invalid_client").await;
    Check::new(
        "RFC 6749 §5.2: an unknown client_id via client_secret_basic gets 401 invalid_client",
        result.map(|_| ()),
    )
}

async fn unknown_grant_type(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let auth = basic_auth(&t.client_id, &t.client_secret);
    let params = [("grant_type", "urn:example:conformance:no-such-grant")];
    let result = token_error(ctx, &params, Some(&auth), &[400], "unsupported_grant_type").await;
    Check::new(
        "RFC 6749 §5.2: an unknown grant_type gets 400 unsupported_grant_type",
        result.map(|_| ()),
    )
}

async fn missing_grant_type(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let auth = basic_auth(&t.client_id, &t.client_secret);
    let params = [("scope", t.scope.as_str())];
    let result = token_error(ctx, &params, Some(&auth), &[400], "invalid_request").await;
    Check::new(
        "RFC 6749 §5.2: a request without grant_type gets 400 invalid_request",
        result.map(|_| ()),
    )
}

async fn repeated_parameter(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let auth = basic_auth(&t.client_id, &t.client_secret);
    let params = [
        ("grant_type", "client_credentials"),
        ("grant_type", "client_credentials"),
        ("scope", &t.scope),
    ];
    let result = token_error(ctx, &params, Some(&auth), &[400], "invalid_request").await;
    Check::new(
        "RFC 6749 §3.2: a repeated parameter (grant_type twice) gets 400 invalid_request",
        result.map(|_| ()),
    )
}

async fn two_auth_methods(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let auth = basic_auth(&t.client_id, &t.client_secret);
    let params = [
        ("grant_type", "client_credentials"),
        ("scope", &t.scope),
        ("client_id", &t.client_id),
        ("client_secret", &t.client_secret),
    ];
    let result = token_error(ctx, &params, Some(&auth), &[400], "invalid_request").await;
    Check::new(
        "RFC 6749 §2.3: credentials in both the Authorization header and the body get 400 invalid_request",
        result.map(|_| ()),
    )
}

async fn invalid_scope(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let auth = basic_auth(&t.client_id, &t.client_secret);
    let params = [
        ("grant_type", "client_credentials"),
        ("scope", "conformance:not-a-scope"),
    ];
    let result = token_error(ctx, &params, Some(&auth), &[400], "invalid_scope").await;
    Check::new(
        "RFC 6749 §5.2: a scope the client may not have gets 400 invalid_scope",
        result.map(|_| ()),
    )
}

async fn get_refused(ctx: &Ctx<'_>) -> Check {
    let t = ctx.target;
    let auth = basic_auth(&t.client_id, &t.client_secret);
    let url = format!(
        "{}?{}",
        ctx.token_endpoint,
        crate::http::form(&[("grant_type", "client_credentials"), ("scope", &t.scope)])
    );
    let result = send(ctx.http.get(&url).header("authorization", auth))
        .await
        .and_then(|resp| {
            if (400..500).contains(&resp.status) && resp.str_member("access_token").is_none() {
                Ok(())
            } else {
                Err(format!("expected a 4xx refusal, got {}", resp.summary()))
            }
        });
    Check::new(
        "RFC 6749 §3.2: GET on the token endpoint is refused with a 4xx",
        result,
    )
}
