//! The authorization code grant as a human's browser and a public client see it: PKCE
//! (RFC 7636), the authorization response (RFC 6749 §4.1.2), the code's redemption at the token
//! endpoint (RFC 6749 §4.1.3) and redirect URI matching (RFC 6749 §3.1.2). Each check signs in
//! on its own, so one failure does not take the others down with it.

use serde_json::Value;

use crate::browser::{Browser, End, param, points_to, query_params};
use crate::crypto::{Pkce, random_b64url};
use crate::http::{Captured, expect_oauth_error, form};
use crate::introspect::{expect_active, expect_inactive};
use crate::{Check, Ctx, Human, access_token_of};

const METHODS: &str =
    "RFC 8414 §2 / RFC 7636 §4.3: code_challenge_methods_supported advertises S256 and not plain";
const PLAIN: &str = "RFC 7636 §4.4.1: an authorization request with code_challenge_method=plain is redirected back with error=invalid_request";
const NO_CHALLENGE: &str = "RFC 7636 §4.4.1: an authorization request without code_challenge is redirected back with error=invalid_request";
const ERROR_STATE: &str = "RFC 6749 §4.1.2.1: an error redirect echoes state";
const STATE: &str = "RFC 6749 §4.1.2: the authorization response carries a code and echoes state";
const GOOD_VERIFIER: &str =
    "RFC 7636 §4.6: redeeming the code with the right code_verifier gets 200 with an access_token";
const WRONG_VERIFIER: &str = "RFC 7636 §4.6: a wrong code_verifier gets 400 invalid_grant";
const NO_VERIFIER: &str = "RFC 7636 §4.5: a token request without code_verifier gets 400 invalid_grant or invalid_request";
const REPLAY: &str = "RFC 6749 §4.1.2: a code redeemed a second time gets 400 invalid_grant";
const REPLAY_REVOKES: &str = "RFC 6749 §4.1.2: after a code is redeemed twice, the access token of its first redemption introspects as {\"active\": false}";
const REDIRECT_MISMATCH: &str =
    "RFC 6749 §4.1.3: redeeming a code with a different redirect_uri gets 400 invalid_grant";
const UNREGISTERED: &str =
    "RFC 6749 §3.1.2: the authorization endpoint never redirects to an unregistered redirect_uri";

const ALL: [&str; 12] = [
    METHODS,
    PLAIN,
    NO_CHALLENGE,
    ERROR_STATE,
    STATE,
    GOOD_VERIFIER,
    WRONG_VERIFIER,
    NO_VERIFIER,
    REPLAY,
    REPLAY_REVOKES,
    REDIRECT_MISMATCH,
    UNREGISTERED,
];

pub(crate) const NO_HUMAN: &str = "skipped: no human given (--human USER:PASSWORD --public-client ID --redirect-uri URI --human-scope SCOPES)";

pub(crate) async fn run(ctx: &Ctx<'_>) -> Vec<Check> {
    let Some(h) = ctx.target.human.as_ref() else {
        return ALL.iter().map(|id| Check::skip(id, NO_HUMAN)).collect();
    };
    vec![
        methods_supported(ctx).await,
        plain_refused(ctx, h).await,
        missing_challenge_refused(ctx, h).await,
        error_echoes_state(ctx, h).await,
        state_echoed(ctx, h).await,
        right_verifier(ctx, h).await,
        wrong_verifier(ctx, h).await,
        missing_verifier(ctx, h).await,
        code_replay(ctx, h).await,
        code_replay_revokes(ctx, h).await,
        redirect_uri_mismatch(ctx, h).await,
        unregistered_redirect(ctx, h).await,
    ]
}

/// The parameters of an authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3) with S256.
fn authorization_params(h: &Human, scope: &str, state: &str, pkce: &Pkce) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", h.client_id.as_str()),
        ("redirect_uri", h.redirect_uri.as_str()),
        ("scope", scope),
        ("state", state),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn set(params: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    params.retain(|(k, _)| k != name);
    if let Some(v) = value {
        params.push((name.to_owned(), v.to_owned()));
    }
}

/// Sends the browser to the authorization endpoint with `params` and lets it sign in and
/// approve; stops at the client's redirect URI (or any of `stop_at`).
async fn authorize(
    ctx: &Ctx<'_>,
    h: &Human,
    params: &[(String, String)],
    stop_at: &[&str],
) -> Result<End, String> {
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let sep = if ctx.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{}{sep}{}", ctx.authorization_endpoint, form(&pairs));
    let mut stops = vec![h.redirect_uri.as_str()];
    stops.extend_from_slice(stop_at);
    Browser::with_client(ctx.http.clone(), &ctx.target.issuer)
        .drive(&url, &h.username, &h.password, &stops)
        .await
}

/// The query parameters of the redirect back to the client, or what happened instead.
fn client_redirect(end: End, h: &Human) -> Result<(String, Vec<(String, String)>), String> {
    match end {
        End::Left(loc) if points_to(&loc, &h.redirect_uri) => {
            let params = query_params(&loc);
            Ok((loc, params))
        }
        End::Left(loc) => Err(format!(
            "redirected to {loc:?}, not to the client's redirect_uri {:?}",
            h.redirect_uri
        )),
        End::Page(p) => Err(format!(
            "the flow ended on a page instead of redirecting to the client: {}",
            p.summary()
        )),
    }
}

/// A code issued for `scope`, with the verifier it needs and the `state` that was sent.
pub(crate) struct CodeGrant {
    pub code: String,
    pub verifier: String,
    pub state: String,
    /// The redirect's query parameters.
    pub params: Vec<(String, String)>,
}

/// Signs the human in with PKCE S256 and catches the code.
pub(crate) async fn obtain_code(
    ctx: &Ctx<'_>,
    h: &Human,
    scope: &str,
) -> Result<CodeGrant, String> {
    let pkce = Pkce::new()?;
    let state = random_b64url(16)?;
    let params = authorization_params(h, scope, &state, &pkce);
    let end = authorize(ctx, h, &params, &[]).await?;
    let (loc, params) = client_redirect(end, h)?;
    if let Some(e) = param(&params, "error") {
        return Err(format!(
            "the authorization request was refused with error={e:?} ({:?}): {loc}",
            param(&params, "error_description").unwrap_or_default()
        ));
    }
    let code = param(&params, "code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| format!("no code in the redirect to the client: {loc}"))?
        .to_owned();
    Ok(CodeGrant {
        code,
        verifier: pkce.verifier,
        state,
        params,
    })
}

/// `POST /token` with `grant_type=authorization_code` as the public client (`client_id` in the
/// body, no secret).
pub(crate) async fn redeem(
    ctx: &Ctx<'_>,
    h: &Human,
    code: &str,
    verifier: Option<&str>,
    redirect_uri: &str,
) -> Result<Captured, String> {
    let mut params = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", h.client_id.as_str()),
    ];
    if let Some(v) = verifier {
        params.push(("code_verifier", v));
    }
    ctx.post_form(&ctx.token_endpoint, &params, None)
        .await
        .map_err(|e| format!("code redemption: {e}"))
}

/// The human's access token for `scope`: sign in, catch the code, redeem it.
pub(crate) async fn human_token(ctx: &Ctx<'_>, h: &Human, scope: &str) -> Result<String, String> {
    let fail = |e: String| format!("precondition: signing {:?} in: {e}", h.username);
    let grant = obtain_code(ctx, h, scope).await.map_err(fail)?;
    let resp = redeem(ctx, h, &grant.code, Some(&grant.verifier), &h.redirect_uri)
        .await
        .map_err(fail)?;
    access_token_of(&resp)
        .map(str::to_owned)
        .map_err(|e| fail(format!("code redemption: {e}")))
}

/// A redirect URI that differs from `uri` only by an addition at its end.
fn different_uri(uri: &str) -> String {
    if uri.contains('?') {
        format!("{uri}&conformance-other=1")
    } else {
        format!("{uri}-conformance-other")
    }
}

async fn methods_supported(ctx: &Ctx<'_>) -> Check {
    let result = (|| {
        let meta = ctx
            .metadata
            .as_ref()
            .map_err(|e| format!("GET /.well-known/oauth-authorization-server: {e}"))?
            .object()?;
        match meta.get("code_challenge_methods_supported") {
            Some(Value::Array(a))
                if a.iter().any(|m| m.as_str() == Some("S256"))
                    && !a.iter().any(|m| m.as_str() == Some("plain")) =>
            {
                Ok(())
            }
            other => Err(format!(
                "code_challenge_methods_supported is {other:?}; expected [\"S256\"]"
            )),
        }
    })();
    Check::new(METHODS, result)
}

/// An authorization request changed by `edit` must come back to the client with
/// `error=invalid_request` and no code; returns the redirect's parameters and the state sent.
async fn expect_refused(
    ctx: &Ctx<'_>,
    h: &Human,
    edit: impl FnOnce(&mut Vec<(String, String)>, &Pkce),
) -> Result<(Vec<(String, String)>, String), String> {
    let pkce = Pkce::new()?;
    let state = random_b64url(16)?;
    let mut params = authorization_params(h, &h.scope, &state, &pkce);
    edit(&mut params, &pkce);
    let end = authorize(ctx, h, &params, &[]).await?;
    let (loc, q) = client_redirect(end, h)?;
    if param(&q, "code").is_some() {
        return Err(format!("a code was issued: {loc}"));
    }
    match param(&q, "error") {
        Some("invalid_request") => Ok((q, state)),
        other => Err(format!(
            "expected error=invalid_request, got error={other:?}: {loc}"
        )),
    }
}

async fn plain_refused(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result = expect_refused(ctx, h, |p, pkce| {
        set(p, "code_challenge", Some(&pkce.verifier));
        set(p, "code_challenge_method", Some("plain"));
    })
    .await;
    Check::new(PLAIN, result.map(|_| ()))
}

fn without_challenge(p: &mut Vec<(String, String)>, _: &Pkce) {
    set(p, "code_challenge", None);
    set(p, "code_challenge_method", None);
}

async fn missing_challenge_refused(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result = expect_refused(ctx, h, without_challenge).await;
    Check::new(NO_CHALLENGE, result.map(|_| ()))
}

async fn error_echoes_state(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result = expect_refused(ctx, h, without_challenge)
        .await
        .map_err(|e| {
            format!("precondition: an error redirect for a request without code_challenge: {e}")
        })
        .and_then(|(q, state)| match param(&q, "state") {
            Some(s) if s == state => Ok(()),
            other => Err(format!("state is {other:?}, sent {state:?}")),
        });
    Check::new(ERROR_STATE, result)
}

async fn state_echoed(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result =
        obtain_code(ctx, h, &h.scope)
            .await
            .and_then(|g| match param(&g.params, "state") {
                Some(s) if s == g.state => Ok(()),
                other => Err(format!("state is {other:?}, sent {:?}", g.state)),
            });
    Check::new(STATE, result)
}

async fn right_verifier(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result = async {
        let g = obtain_code(ctx, h, &h.scope).await?;
        let resp = redeem(ctx, h, &g.code, Some(&g.verifier), &h.redirect_uri).await?;
        access_token_of(&resp).map(|_| ())
    }
    .await;
    Check::new(GOOD_VERIFIER, result)
}

async fn wrong_verifier(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result = async {
        let g = obtain_code(ctx, h, &h.scope)
            .await
            .map_err(|e| format!("precondition: {e}"))?;
        let other = Pkce::new()?.verifier;
        let resp = redeem(ctx, h, &g.code, Some(&other), &h.redirect_uri).await?;
        expect_oauth_error(&resp, &[400], "invalid_grant")
    }
    .await;
    Check::new(WRONG_VERIFIER, result)
}

async fn missing_verifier(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result = async {
        let g = obtain_code(ctx, h, &h.scope)
            .await
            .map_err(|e| format!("precondition: {e}"))?;
        let resp = redeem(ctx, h, &g.code, None, &h.redirect_uri).await?;
        expect_oauth_error(&resp, &[400], "invalid_grant")
            .or_else(|_| expect_oauth_error(&resp, &[400], "invalid_request"))
            .map_err(|_| {
                format!(
                    "expected HTTP 400 with error \"invalid_grant\" or \"invalid_request\", got {}",
                    resp.summary()
                )
            })
    }
    .await;
    Check::new(NO_VERIFIER, result)
}

/// A code redeemed once successfully; returns the grant and the first access token.
async fn redeemed_once(ctx: &Ctx<'_>, h: &Human) -> Result<(CodeGrant, String), String> {
    let g = obtain_code(ctx, h, &h.scope)
        .await
        .map_err(|e| format!("precondition: {e}"))?;
    let first = redeem(ctx, h, &g.code, Some(&g.verifier), &h.redirect_uri).await?;
    let token = access_token_of(&first)
        .map_err(|e| format!("precondition: the first redemption: {e}"))?
        .to_owned();
    Ok((g, token))
}

async fn code_replay(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result = async {
        let (g, _) = redeemed_once(ctx, h).await?;
        let second = redeem(ctx, h, &g.code, Some(&g.verifier), &h.redirect_uri).await?;
        expect_oauth_error(&second, &[400], "invalid_grant")
            .map_err(|e| format!("the second redemption: {e}"))
    }
    .await;
    Check::new(REPLAY, result)
}

async fn code_replay_revokes(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result = async {
        let (g, token) = redeemed_once(ctx, h).await?;
        let before = ctx.introspect(&token).await?;
        expect_active(&before).map_err(|e| {
            format!("precondition: the first redemption's token introspects (as the resource server) as inactive before any replay: {e}")
        })?;
        let second = redeem(ctx, h, &g.code, Some(&g.verifier), &h.redirect_uri).await?;
        let after = ctx.introspect(&token).await?;
        expect_inactive(&after).map_err(|e| {
            format!("after the second redemption (HTTP {}): {e}", second.status)
        })
    }
    .await;
    Check::new(REPLAY_REVOKES, result)
}

async fn redirect_uri_mismatch(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result = async {
        let g = obtain_code(ctx, h, &h.scope)
            .await
            .map_err(|e| format!("precondition: {e}"))?;
        let other = different_uri(&h.redirect_uri);
        let resp = redeem(ctx, h, &g.code, Some(&g.verifier), &other).await?;
        expect_oauth_error(&resp, &[400], "invalid_grant")
    }
    .await;
    Check::new(REDIRECT_MISMATCH, result)
}

async fn unregistered_redirect(ctx: &Ctx<'_>, h: &Human) -> Check {
    let result = async {
        let foreign = "https://unregistered.conformance.invalid/callback".to_owned();
        for bad in [foreign, different_uri(&h.redirect_uri)] {
            let pkce = Pkce::new()?;
            let state = random_b64url(16)?;
            let mut params = authorization_params(h, &h.scope, &state, &pkce);
            set(&mut params, "redirect_uri", Some(&bad));
            match authorize(ctx, h, &params, &[&bad]).await? {
                End::Left(loc) if points_to(&loc, &bad) => {
                    return Err(format!(
                        "with redirect_uri={bad:?} the server redirected to {loc:?}"
                    ));
                }
                End::Left(_) | End::Page(_) => {}
            }
        }
        Ok(())
    }
    .await;
    Check::new(UNREGISTERED, result)
}
