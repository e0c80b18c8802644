//! A human signs in the way a browser does (authorization code + PKCE, RFC 6749 §4.1 / RFC
//! 7636): the conformance crate's browser goes through `GET /authorize`, the login form and the
//! consent page's `Approve`, and catches the redirect to the client; the code is redeemed here.

use anyhow::{Context, anyhow, bail};
use mandate::crypto::{b64url, random_bytes, sha256};
use mandate_conformance::browser::{Browser, End, param, points_to, query_params};

pub const REDIRECT_URI: &str = "http://127.0.0.1:9999/callback";

/// The `/token` answer's `access_token` for `username` signed in through the public `client_id`.
pub async fn sign_in(
    base: &str,
    username: &str,
    password: &str,
    client_id: &str,
    scope: &str,
) -> anyhow::Result<String> {
    let verifier = b64url(&random_bytes::<32>());
    let challenge = b64url(&sha256(verifier.as_bytes()));
    let state = b64url(&random_bytes::<12>());
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", scope);
    let url = format!("/authorize?{}", q.finish());
    let location = match Browser::new(base)
        .map_err(|e| anyhow!(e))?
        .drive(&url, username, password, &[REDIRECT_URI])
        .await
        .map_err(|e| anyhow!(e))?
    {
        End::Left(loc) if points_to(&loc, REDIRECT_URI) => loc,
        End::Left(loc) => bail!("the flow left for {loc}, not the client"),
        End::Page(page) => bail!("the flow ended on a page: {}", page.summary()),
    };
    let params = query_params(&location);
    if param(&params, "state") != Some(state.as_str()) {
        bail!("state did not come back: {location}");
    }
    let code =
        param(&params, "code").ok_or_else(|| anyhow!("no code in the redirect: {location}"))?;
    let resp = reqwest::Client::new()
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ])
        .send()
        .await?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.context("code redemption: not JSON")?;
    match v["access_token"].as_str() {
        Some(t) if status == 200 => Ok(t.to_string()),
        _ => bail!("code redemption answered {status}: {v}"),
    }
}
