//! RFC 8414 metadata and the RFC 7517 JWK Set.

use serde_json::{Map, Value};

use crate::http::{media_type, send};
use crate::{Check, Ctx, jwt};

pub(crate) async fn run(ctx: &Ctx<'_>) -> Vec<Check> {
    vec![
        metadata_served(ctx).await,
        metadata_issuer(ctx).await,
        metadata_endpoints(ctx).await,
        metadata_endpoints_under_issuer(ctx).await,
        metadata_response_types(ctx).await,
        metadata_grant_types(ctx).await,
        metadata_auth_methods(ctx).await,
        openid_configuration(ctx).await,
        jwks_served(ctx).await,
        jwks_kty(ctx).await,
        jwks_kid_unique(ctx).await,
        jwks_ec_p256(ctx).await,
        jwks_no_private(ctx).await,
        jwks_cache_control(ctx).await,
    ]
}

fn metadata<'c>(ctx: &'c Ctx<'_>) -> Result<&'c Map<String, Value>, String> {
    match &ctx.metadata {
        Ok(resp) => resp.object(),
        Err(e) => Err(format!("GET /.well-known/oauth-authorization-server: {e}")),
    }
}

fn issuer<'c>(ctx: &'c Ctx<'_>) -> &'c str {
    ctx.target.issuer.trim_end_matches('/')
}

/// Whether the array member `name` contains every one of `wanted`.
fn array_contains(meta: &Map<String, Value>, name: &str, wanted: &[&str]) -> Result<(), String> {
    let arr = match meta.get(name) {
        Some(Value::Array(a)) => a,
        other => return Err(format!("`{name}` is not an array: {other:?}")),
    };
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !arr.iter().any(|v| v.as_str() == Some(*w)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`{name}` lacks {missing:?}: {}",
            Value::Array(arr.clone())
        ))
    }
}

const ENDPOINTS: [&str; 4] = [
    "token_endpoint",
    "jwks_uri",
    "introspection_endpoint",
    "revocation_endpoint",
];

async fn metadata_served(ctx: &Ctx<'_>) -> Check {
    let result = (|| {
        let resp = ctx
            .metadata
            .as_ref()
            .map_err(|e| format!("GET /.well-known/oauth-authorization-server: {e}"))?;
        resp.expect_status(200)?;
        if !resp.has_json_content_type() {
            return Err(format!(
                "Content-Type is not application/json: {}",
                resp.summary()
            ));
        }
        resp.object().map(|_| ())
    })();
    Check::new(
        "RFC 8414 §3.2: metadata is a 200 JSON object with Content-Type application/json",
        result,
    )
}

async fn metadata_issuer(ctx: &Ctx<'_>) -> Check {
    let result = metadata(ctx).and_then(|m| match m.get("issuer") {
        Some(Value::String(s)) if s == issuer(ctx) => Ok(()),
        other => Err(format!("expected issuer {:?}, got {other:?}", issuer(ctx))),
    });
    Check::new(
        "RFC 8414 §3.3: metadata issuer equals the issuer URL",
        result,
    )
}

async fn metadata_endpoints(ctx: &Ctx<'_>) -> Check {
    let result = metadata(ctx).and_then(|m| {
        let missing: Vec<&str> = ENDPOINTS
            .iter()
            .copied()
            .filter(|n| m.get(*n).and_then(Value::as_str).is_none_or(str::is_empty))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing or not a string: {missing:?}"))
        }
    });
    Check::new(
        "RFC 8414 §2: metadata names token_endpoint, jwks_uri, introspection_endpoint and revocation_endpoint",
        result,
    )
}

async fn metadata_endpoints_under_issuer(ctx: &Ctx<'_>) -> Check {
    let result = metadata(ctx).and_then(|m| {
        let prefix = format!("{}/", issuer(ctx));
        let bad: Vec<String> = m
            .iter()
            .filter(|(k, _)| k.ends_with("_endpoint") || k.as_str() == "jwks_uri")
            .filter_map(|(k, v)| match v.as_str() {
                Some(url) if url.starts_with(&prefix) => None,
                _ => Some(format!("{k} = {v}")),
            })
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("not under {prefix}: {}", bad.join(", ")))
        }
    });
    Check::new(
        "RFC 8414 §2: every endpoint URL and jwks_uri in the metadata starts with the issuer",
        result,
    )
}

async fn metadata_response_types(ctx: &Ctx<'_>) -> Check {
    let result = metadata(ctx).and_then(|m| match m.get("response_types_supported") {
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(()),
        other => Err(format!(
            "response_types_supported is not an array of strings: {other:?}"
        )),
    });
    Check::new(
        "RFC 8414 §2: response_types_supported is an array of strings",
        result,
    )
}

async fn metadata_grant_types(ctx: &Ctx<'_>) -> Check {
    let result = metadata(ctx)
        .and_then(|m| array_contains(m, "grant_types_supported", &["client_credentials"]));
    Check::new(
        "RFC 8414 §2: grant_types_supported includes client_credentials",
        result,
    )
}

async fn metadata_auth_methods(ctx: &Ctx<'_>) -> Check {
    let result = metadata(ctx).and_then(|m| {
        array_contains(
            m,
            "token_endpoint_auth_methods_supported",
            &[
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
        )
    });
    Check::new(
        "RFC 8414 §2: token_endpoint_auth_methods_supported includes client_secret_basic, client_secret_post, private_key_jwt and none",
        result,
    )
}

async fn openid_configuration(ctx: &Ctx<'_>) -> Check {
    let url = format!("{}/.well-known/openid-configuration", issuer(ctx));
    let result = async {
        let first = metadata(ctx)?;
        let resp = send(ctx.http.get(&url).header("accept", "application/json"))
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        resp.expect_status(200)?;
        if !resp.has_json_content_type() {
            return Err(format!(
                "Content-Type is not application/json: {}",
                resp.summary()
            ));
        }
        let second = resp.object()?;
        let differ: Vec<String> = std::iter::once("issuer")
            .chain(ENDPOINTS)
            .filter(|n| first.get(*n) != second.get(*n))
            .map(|n| {
                format!(
                    "{n}: {:?} vs {:?}",
                    first.get(n).map(Value::to_string),
                    second.get(n).map(Value::to_string)
                )
            })
            .collect();
        if !differ.is_empty() {
            return Err(format!(
                "differs from oauth-authorization-server: {}",
                differ.join("; ")
            ));
        }
        match second.get("issuer") {
            Some(Value::String(s)) if s == issuer(ctx) => Ok(()),
            other => Err(format!("expected issuer {:?}, got {other:?}", issuer(ctx))),
        }
    }
    .await;
    Check::new(
        "RFC 8414 §5: metadata is also served at /.well-known/openid-configuration with the same issuer and endpoints",
        result,
    )
}

/// The JWK Set's `keys`, or why there are none.
fn jwks_keys<'c>(ctx: &'c Ctx<'_>) -> Result<&'c Vec<Value>, String> {
    let resp = ctx
        .jwks
        .as_ref()
        .map_err(|e| format!("GET {}: {e}", ctx.jwks_uri))?;
    resp.expect_status(200)?;
    let json = resp
        .json
        .as_ref()
        .ok_or_else(|| format!("JWK Set is not JSON: {}", resp.summary()))?;
    jwt::keys(json)
}

/// A short name for a key in failure details.
fn key_name(i: usize, key: &Value) -> String {
    match key.get("kid").and_then(Value::as_str) {
        Some(kid) => format!("key {i} (kid {kid:?})"),
        None => format!("key {i}"),
    }
}

/// Fails with the list of offending keys, if any.
fn each_key(ctx: &Ctx<'_>, bad: impl Fn(&Value) -> Option<String>) -> Result<(), String> {
    let keys = jwks_keys(ctx)?;
    let problems: Vec<String> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| bad(k).map(|p| format!("{}: {p}", key_name(i, k))))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

async fn jwks_served(ctx: &Ctx<'_>) -> Check {
    let result = jwks_keys(ctx).and_then(|keys| {
        let resp = ctx.jwks.as_ref().map_err(String::clone)?;
        let mt = media_type(resp.header("content-type"));
        if !matches!(
            mt.as_deref(),
            Some("application/json" | "application/jwk-set+json")
        ) {
            return Err(format!(
                "Content-Type is not application/json or application/jwk-set+json: {}",
                resp.summary()
            ));
        }
        if keys.is_empty() {
            return Err("the `keys` array is empty".to_owned());
        }
        if let Some(i) = keys.iter().position(|k| !k.is_object()) {
            return Err(format!("key {i} is not a JSON object"));
        }
        Ok(())
    });
    Check::new(
        "RFC 7517 §5: jwks_uri serves a JSON JWK Set with a non-empty keys array",
        result,
    )
}

async fn jwks_kty(ctx: &Ctx<'_>) -> Check {
    let result = each_key(ctx, |k| match k.get("kty") {
        Some(Value::String(s)) if !s.is_empty() => None,
        other => Some(format!("kty is {other:?}")),
    });
    Check::new("RFC 7517 §4.1: every key has a kty", result)
}

async fn jwks_kid_unique(ctx: &Ctx<'_>) -> Check {
    let result = jwks_keys(ctx).and_then(|keys| {
        let mut seen = std::collections::HashSet::new();
        for (i, k) in keys.iter().enumerate() {
            match k.get("kid").and_then(Value::as_str) {
                None => return Err(format!("key {i} has no string kid")),
                Some(kid) if !seen.insert(kid) => {
                    return Err(format!("kid {kid:?} appears more than once"));
                }
                Some(_) => {}
            }
        }
        Ok(())
    });
    Check::new(
        "RFC 7517 §4.5: every key has a kid, unique within the set",
        result,
    )
}

/// A base64url (no padding) member that decodes to exactly 32 bytes.
fn coordinate(k: &Value, name: &str) -> Option<String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let s = match k.get(name) {
        Some(Value::String(s)) => s,
        other => return Some(format!("{name} is {other:?}")),
    };
    match URL_SAFE_NO_PAD.decode(s) {
        Ok(b) if b.len() == 32 => None,
        Ok(b) => Some(format!("{name} decodes to {} bytes, not 32", b.len())),
        Err(e) => Some(format!("{name} is not base64url without padding: {e}")),
    }
}

async fn jwks_ec_p256(ctx: &Ctx<'_>) -> Check {
    let result = each_key(ctx, |k| {
        if k.get("kty").and_then(Value::as_str) != Some("EC") {
            return None;
        }
        if k.get("crv").and_then(Value::as_str) != Some("P-256") {
            return Some(format!("crv is {:?}, not \"P-256\"", k.get("crv")));
        }
        let problems: Vec<String> = ["x", "y"].iter().filter_map(|n| coordinate(k, n)).collect();
        (!problems.is_empty()).then(|| problems.join(", "))
    });
    Check::new(
        "RFC 7518 §6.2.1: every EC key is on P-256 with 32-byte base64url x and y",
        result,
    )
}

async fn jwks_no_private(ctx: &Ctx<'_>) -> Check {
    const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
    let result = each_key(ctx, |k| {
        let found: Vec<&str> = PRIVATE
            .iter()
            .copied()
            .filter(|m| k.get(*m).is_some())
            .collect();
        if k.get("kty").and_then(Value::as_str) == Some("oct") {
            Some("is a symmetric (oct) key".to_owned())
        } else if found.is_empty() {
            None
        } else {
            Some(format!("has private members {found:?}"))
        }
    });
    Check::new(
        "RFC 7517 §9.2: the JWK Set discloses no private or symmetric key material (no d)",
        result,
    )
}

async fn jwks_cache_control(ctx: &Ctx<'_>) -> Check {
    let result = match &ctx.jwks {
        Ok(resp) => match resp.header("cache-control") {
            Some(v) if !v.trim().is_empty() => Ok(()),
            _ => Err(format!("no Cache-Control header: {}", resp.summary())),
        },
        Err(e) => Err(format!("GET {}: {e}", ctx.jwks_uri)),
    };
    Check::new(
        "RFC 9111 §5.2: the JWK Set response carries a Cache-Control header",
        result,
    )
}
