//! Delegation by token exchange (RFC 8693) as mandate's SPEC defines it: a software agent
//! attests with its registered key (SPEC "Agent attestation"), then exchanges the human's access
//! token (subject) and its agent token (actor) for a delegated token. Each check gets its own
//! human token and agent token.

use serde_json::{Map, Value, json};

use crate::authcode::{NO_HUMAN, human_token};
use crate::crypto::{es256_jwt, now, random_b64url};
use crate::http::{Captured, basic_auth, expect_oauth_error, send};
use crate::introspect::{expect_active, expect_inactive};
use crate::jwt::scope_set;
use crate::{Agent, Check, Ctx, Human, access_token_of, garbage_token, jwt};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

const ATTEST: &str = "SPEC: software attestation (/attest/challenge, then /attest with an ES256 JWT proof) issues an agent token whose sub is agent:<name>";
const NO_SUBJECT: &str =
    "RFC 8693 §2.2.2: an exchange without subject_token gets 400 invalid_request";
const GARBAGE_SUBJECT: &str =
    "RFC 8693 §2.2.2: a subject_token the server never issued gets 400 invalid_grant";
const ISSUED: &str = "RFC 8693 §2.1 / §2.2.1: exchanging the human's access token with an agent's actor_token gets 200 with access_token, issued_token_type access_token and token_type Bearer";
const ACT: &str = "RFC 8693 §4.1: the delegated token's act is {\"sub\": \"agent:<name>\"} and its sub stays the human";
const NESTED: &str = "RFC 8693 §4.1: exchanging a delegated token again nests the previous actor inside the new one (act.act.sub)";
const BAD_AUDIENCE: &str = "RFC 8693 §2.2.2: an unknown audience gets 400 invalid_target";
const WIDER_SCOPE: &str =
    "RFC 8693 §2.2.2: a scope wider than the subject token's gets 400 invalid_scope";
const EXP: &str = "SPEC: a delegated token's exp is not after its subject token's exp";
const INTROSPECT: &str = "RFC 7662 §2.2 / RFC 8693 §4.1: the delegated token introspects as active: true with act naming the agent";
const CASCADE: &str = "SPEC: revoking the subject token (RFC 7009, as its public client) makes the delegated token introspect as {\"active\": false}";
const NO_ACTOR: &str =
    "SPEC: an exchange without actor_token (impersonation) gets 400 invalid_request";

/// Checks that need only the agent.
const AGENT_ONLY: [&str; 3] = [ATTEST, NO_SUBJECT, GARBAGE_SUBJECT];
/// Checks that need the human too.
const WITH_HUMAN: [&str; 9] = [
    ISSUED,
    ACT,
    NESTED,
    BAD_AUDIENCE,
    WIDER_SCOPE,
    EXP,
    INTROSPECT,
    CASCADE,
    NO_ACTOR,
];

const NO_AGENT: &str =
    "skipped: no agent given (--agent NAME --agent-key FILE --exchange-client ID:SECRET)";

pub(crate) async fn run(ctx: &Ctx<'_>) -> Vec<Check> {
    let t = ctx.target;
    let mut out = Vec::new();
    let Some(a) = t.agent.as_ref() else {
        out.extend(
            AGENT_ONLY
                .iter()
                .chain(&WITH_HUMAN)
                .map(|id| Check::skip(id, NO_AGENT)),
        );
        return out;
    };
    out.push(attestation(ctx, a).await);
    out.push(missing_subject(ctx, a).await);
    out.push(garbage_subject(ctx, a).await);
    let Some(h) = t.human.as_ref() else {
        out.extend(WITH_HUMAN.iter().map(|id| Check::skip(id, NO_HUMAN)));
        return out;
    };
    out.extend([
        issued(ctx, h, a).await,
        act_claim(ctx, h, a).await,
        nested_act(ctx, h, a).await,
        unknown_audience(ctx, h, a).await,
        wider_scope(ctx, h, a).await,
        exp_bounded(ctx, h, a).await,
        introspected(ctx, h, a).await,
        revocation_cascades(ctx, h, a).await,
        no_actor(ctx, h, a).await,
    ]);
    out
}

fn issuer(ctx: &Ctx<'_>) -> String {
    ctx.target.issuer.trim_end_matches('/').to_owned()
}

fn agent_sub(a: &Agent) -> String {
    format!("agent:{}", a.name)
}

/// SPEC "Agent attestation", software path: a nonce from `/attest/challenge`, then a JWT proof
/// signed with the agent's key posted to `/attest`. Returns the whole `/attest` response.
async fn attest_response(ctx: &Ctx<'_>, a: &Agent) -> Result<Captured, String> {
    let base = issuer(ctx);
    let challenge = send(
        ctx.http
            .post(format!("{base}/attest/challenge"))
            .header("accept", "application/json")
            .json(&json!({ "agent": a.name })),
    )
    .await
    .map_err(|e| format!("POST /attest/challenge: {e}"))?;
    challenge
        .expect_status(200)
        .map_err(|e| format!("POST /attest/challenge: {e}"))?;
    let nonce = challenge
        .str_member("nonce")
        .ok_or_else(|| format!("POST /attest/challenge: no nonce: {}", challenge.summary()))?
        .to_owned();
    let iat = now();
    let claims = json!({
        "iss": a.name,
        "sub": a.name,
        "aud": base,
        "nonce": nonce,
        "iat": iat,
        "exp": iat + 120,
        "jti": random_b64url(16)?,
    });
    let proof = es256_jwt(&a.private_key_pkcs8_der, &claims)?;
    send(
        ctx.http
            .post(format!("{base}/attest"))
            .header("accept", "application/json")
            .json(&json!({ "agent": a.name, "nonce": nonce, "proof": proof })),
    )
    .await
    .map_err(|e| format!("POST /attest: {e}"))
}

/// A fresh agent token.
async fn agent_token(ctx: &Ctx<'_>, a: &Agent) -> Result<String, String> {
    let resp = attest_response(ctx, a)
        .await
        .map_err(|e| format!("precondition: attesting agent {:?}: {e}", a.name))?;
    if resp.status != 200 {
        return Err(format!(
            "precondition: attesting agent {:?}: expected HTTP 200, got {}",
            a.name,
            resp.summary()
        ));
    }
    resp.str_member("agent_token")
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "precondition: attesting agent {:?}: no agent_token: {}",
                a.name,
                resp.summary()
            )
        })
}

/// `POST /token` with the token-exchange grant as the exchange client (client_secret_basic).
async fn exchange(ctx: &Ctx<'_>, a: &Agent, params: &[(&str, &str)]) -> Result<Captured, String> {
    let mut all = vec![("grant_type", TOKEN_EXCHANGE)];
    all.extend_from_slice(params);
    let auth = basic_auth(&a.exchange_client_id, &a.exchange_client_secret);
    ctx.post_form(&ctx.token_endpoint, &all, Some(&auth))
        .await
        .map_err(|e| format!("token exchange: {e}"))
}

/// The usual request: the subject as an access token, the actor as a JWT, plus `extra`.
async fn delegate(
    ctx: &Ctx<'_>,
    a: &Agent,
    subject: &str,
    actor: &str,
    extra: &[(&str, &str)],
) -> Result<Captured, String> {
    let mut params = vec![
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN),
        ("actor_token", actor),
        ("actor_token_type", JWT),
    ];
    params.extend_from_slice(extra);
    exchange(ctx, a, &params).await
}

/// A human token (for `scope`) and an agent token.
async fn tokens(
    ctx: &Ctx<'_>,
    h: &Human,
    a: &Agent,
    scope: &str,
) -> Result<(String, String), String> {
    let subject = human_token(ctx, h, scope).await?;
    let actor = agent_token(ctx, a).await?;
    Ok((subject, actor))
}

/// A successful delegation for the human's whole scope: (subject token, delegated token).
async fn delegated(
    ctx: &Ctx<'_>,
    h: &Human,
    a: &Agent,
    extra: &[(&str, &str)],
) -> Result<(String, String), String> {
    let (subject, actor) = tokens(ctx, h, a, &h.scope).await?;
    let resp = delegate(ctx, a, &subject, &actor, extra).await?;
    let token = access_token_of(&resp)
        .map_err(|e| format!("precondition: the token exchange: {e}"))?
        .to_owned();
    Ok((subject, token))
}

fn claims(what: &str, token: &str) -> Result<Map<String, Value>, String> {
    jwt::parse(token)
        .map(|p| p.claims)
        .map_err(|e| format!("the {what}: {e}"))
}

/// `act.sub` of a claims object (or of an `act` object itself).
fn act_sub(obj: &Map<String, Value>) -> Option<&str> {
    obj.get("act")?.get("sub")?.as_str()
}

async fn attestation(ctx: &Ctx<'_>, a: &Agent) -> Check {
    let result = async {
        let resp = attest_response(ctx, a).await?;
        resp.expect_status(200)?;
        let token = resp
            .str_member("agent_token")
            .ok_or_else(|| format!("no agent_token string: {}", resp.summary()))?;
        match resp.str_member("token_type") {
            Some(JWT) => {}
            other => return Err(format!("token_type is {other:?}, expected {JWT:?}")),
        }
        let c = claims("agent token", token)?;
        let want = agent_sub(a);
        match c.get("sub").and_then(Value::as_str) {
            Some(s) if s == want => Ok(()),
            other => Err(format!(
                "the agent token's sub is {other:?}, expected {want:?}"
            )),
        }
    }
    .await;
    Check::new(ATTEST, result)
}

async fn missing_subject(ctx: &Ctx<'_>, a: &Agent) -> Check {
    let result = async {
        let actor = agent_token(ctx, a).await?;
        let resp = exchange(
            ctx,
            a,
            &[
                ("subject_token_type", ACCESS_TOKEN),
                ("actor_token", &actor),
                ("actor_token_type", JWT),
            ],
        )
        .await?;
        expect_oauth_error(&resp, &[400], "invalid_request")
    }
    .await;
    Check::new(NO_SUBJECT, result)
}

async fn garbage_subject(ctx: &Ctx<'_>, a: &Agent) -> Check {
    let result = async {
        let actor = agent_token(ctx, a).await?;
        let resp = delegate(ctx, a, &garbage_token(), &actor, &[]).await?;
        expect_oauth_error(&resp, &[400], "invalid_grant")
    }
    .await;
    Check::new(GARBAGE_SUBJECT, result)
}

async fn issued(ctx: &Ctx<'_>, h: &Human, a: &Agent) -> Check {
    let result = async {
        let (subject, actor) = tokens(ctx, h, a, &h.scope).await?;
        let resp = delegate(ctx, a, &subject, &actor, &[]).await?;
        access_token_of(&resp)?;
        let mut problems = Vec::new();
        match resp.str_member("issued_token_type") {
            Some(ACCESS_TOKEN) => {}
            other => problems.push(format!(
                "issued_token_type is {other:?}, expected {ACCESS_TOKEN:?}"
            )),
        }
        match resp.str_member("token_type") {
            Some(t) if t.eq_ignore_ascii_case("bearer") => {}
            other => problems.push(format!("token_type is {other:?}, expected Bearer")),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {}", problems.join("; "), resp.summary()))
        }
    }
    .await;
    Check::new(ISSUED, result)
}

async fn act_claim(ctx: &Ctx<'_>, h: &Human, a: &Agent) -> Check {
    let result = async {
        let (subject, token) = delegated(ctx, h, a, &[]).await?;
        let human = claims("human's access token", &subject)?;
        let c = claims("delegated token", &token)?;
        let want = agent_sub(a);
        let mut problems = Vec::new();
        match (human.get("sub").and_then(Value::as_str), c.get("sub")) {
            (Some(hs), Some(Value::String(s))) if s == hs => {}
            (hs, s) => problems.push(format!(
                "sub is {s:?}, the human's token has sub {hs:?}"
            )),
        }
        match c.get("act") {
            Some(Value::Object(act)) => {
                if act.get("sub").and_then(Value::as_str) != Some(want.as_str()) {
                    problems.push(format!("act.sub is {:?}, expected {want:?}", act.get("sub")));
                }
                if act.contains_key("act") {
                    problems.push(format!(
                        "act nests a previous actor although the subject was the human's own token: {}",
                        Value::Object(act.clone())
                    ));
                }
            }
            other => problems.push(format!("act is {other:?}, expected {{\"sub\": {want:?}}}")),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
    .await;
    Check::new(ACT, result)
}

async fn nested_act(ctx: &Ctx<'_>, h: &Human, a: &Agent) -> Check {
    let result = async {
        let (_, first) = delegated(ctx, h, a, &[]).await?;
        let actor = agent_token(ctx, a).await?;
        let resp = delegate(ctx, a, &first, &actor, &[]).await?;
        let second = access_token_of(&resp)
            .map_err(|e| format!("the second exchange (the delegated token as subject): {e}"))?;
        let c = claims("twice-delegated token", second)?;
        let want = agent_sub(a);
        let act = c.get("act").and_then(Value::as_object);
        let outer = act.and_then(|o| o.get("sub")).and_then(Value::as_str);
        let inner = act.and_then(act_sub);
        if outer == Some(want.as_str()) && inner == Some(want.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "act is {:?}; expected act.sub and act.act.sub to be {want:?}",
                c.get("act").map(Value::to_string)
            ))
        }
    }
    .await;
    Check::new(NESTED, result)
}

async fn unknown_audience(ctx: &Ctx<'_>, h: &Human, a: &Agent) -> Check {
    let result = async {
        let (subject, actor) = tokens(ctx, h, a, &h.scope).await?;
        let nowhere = format!("{}-audience", garbage_token());
        let resp = delegate(ctx, a, &subject, &actor, &[("audience", &nowhere)]).await?;
        expect_oauth_error(&resp, &[400], "invalid_target")
    }
    .await;
    Check::new(BAD_AUDIENCE, result)
}

async fn wider_scope(ctx: &Ctx<'_>, h: &Human, a: &Agent) -> Check {
    let result = async {
        let all = scope_set(&h.scope);
        let Some(first) = all.iter().next().copied() else {
            return Err("the human's scope is empty".to_owned());
        };
        if all.len() < 2 {
            return Err(format!(
                "the human's scope {:?} needs at least two scopes to test narrowing",
                h.scope
            ));
        }
        let (subject, actor) = tokens(ctx, h, a, first).await?;
        if let Ok(c) = claims("human's access token", &subject)
            && let Some(granted) = c.get("scope").and_then(Value::as_str)
            && scope_set(granted) == all
        {
            return Err(format!(
                "precondition: asked for {first:?} at sign-in, the token carries {granted:?}"
            ));
        }
        let resp = delegate(ctx, a, &subject, &actor, &[("scope", &h.scope)]).await?;
        expect_oauth_error(&resp, &[400], "invalid_scope")
    }
    .await;
    Check::new(WIDER_SCOPE, result)
}

fn exp_claim(what: &str, token: &str) -> Result<i64, String> {
    claims(what, token)?
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("the {what} has no numeric exp"))
}

async fn exp_bounded(ctx: &Ctx<'_>, h: &Human, a: &Agent) -> Check {
    let result = async {
        let (subject, token) = delegated(ctx, h, a, &[]).await?;
        let parent = exp_claim("human's access token", &subject)?;
        let child = exp_claim("delegated token", &token)?;
        if child <= parent {
            Ok(())
        } else {
            Err(format!(
                "the delegated token's exp {child} is {}s after the subject token's exp {parent}",
                child - parent
            ))
        }
    }
    .await;
    Check::new(EXP, result)
}

async fn introspected(ctx: &Ctx<'_>, h: &Human, a: &Agent) -> Check {
    let result = async {
        let aud = ctx.target.audience.as_str();
        let (_, token) = delegated(ctx, h, a, &[("audience", aud)]).await?;
        let resp = ctx.introspect(&token).await?;
        expect_active(&resp)?;
        let want = agent_sub(a);
        match act_sub(resp.object()?) {
            Some(s) if s == want => Ok(()),
            _ => Err(format!("act.sub is not {want:?}: {}", resp.summary())),
        }
    }
    .await;
    Check::new(INTROSPECT, result)
}

async fn revocation_cascades(ctx: &Ctx<'_>, h: &Human, a: &Agent) -> Check {
    let result = async {
        let aud = ctx.target.audience.as_str();
        let (subject, token) = delegated(ctx, h, a, &[("audience", aud)]).await?;
        let before = ctx.introspect(&token).await?;
        expect_active(&before)
            .map_err(|e| format!("precondition: the delegated token before revocation: {e}"))?;
        let revoked = ctx
            .post_form(
                &ctx.revocation_endpoint,
                &[("token", &subject), ("client_id", &h.client_id)],
                None,
            )
            .await?;
        revoked
            .expect_status(200)
            .map_err(|e| format!("revoking the subject token as the public client: {e}"))?;
        let after = ctx.introspect(&token).await?;
        expect_inactive(&after).map_err(|e| format!("the delegated token after revocation: {e}"))
    }
    .await;
    Check::new(CASCADE, result)
}

async fn no_actor(ctx: &Ctx<'_>, h: &Human, a: &Agent) -> Check {
    let result = async {
        let subject = human_token(ctx, h, &h.scope).await?;
        let resp = exchange(
            ctx,
            a,
            &[
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
            ],
        )
        .await?;
        expect_oauth_error(&resp, &[400], "invalid_request")
    }
    .await;
    Check::new(NO_ACTOR, result)
}
