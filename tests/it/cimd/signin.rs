//! The server with client metadata documents switched on: a client whose `client_id` is the
//! https URL of its document signs in, is shown for what it is on the consent page, redeems its
//! code and refreshes; a document that breaks a rule stops the flow on a page, never with a
//! redirect to an address nobody checked.

use serde_json::Value;

use super::*;
use crate::authorize::resources::consent_page;
use crate::flows::*;
use crate::helpers::*;

/// The `[cimd]` section trusting `pki`'s CA (written into `dir`), loopback allowed.
fn cimd_config(pki: &Pki, dir: &tempfile::TempDir, enabled: bool, private: bool) -> String {
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    format!(
        "[cimd]\nenabled = {enabled}\nallow_private_addresses = {private}\n\
         extra_ca_file = \"{}\"\nscopes = [\"orders:read\"]\n",
        ca.display()
    )
}

/// A document server whose document lists the tests' redirect URI.
async fn client_server(pki: &Pki) -> (DocServer, String) {
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let mut doc = document(&url);
    doc["redirect_uris"] = json!([REDIRECT_URI]);
    server.set(json_response(&doc, &[]));
    (server, url)
}

/// Draft-03 "Client Information Discovery" and MCP "Client ID Metadata Documents": advertised;
/// the URL is the client; sign-in, code and refresh work for it as for a public client; the
/// consent page names it, says where its document is, warns that the operator does not know it
/// and that it returns only to this computer; its scope is within `cimd.scopes`.
#[tokio::test]
async fn cimd_a_client_by_metadata_document_signs_in_and_refreshes() {
    let pki = pki();
    let (server, url) = client_server(&pki).await;
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let app = spawn_app_with(b, &cimd_config(&pki, &dir, true, true)).await;
        let (_, _, m) = app
            .get_json("/.well-known/oauth-authorization-server")
            .await;
        assert_eq!(m["client_id_metadata_document_supported"], true);
        let pkce = Pkce::new();
        let q = authorize_query(&url, "orders:read", "s", &pkce.challenge, &[]);
        let mut br = Browser::new(&app);
        let body = consent_page(&mut br, &q).await;
        assert!(body.contains("Example MCP Client"), "{body}");
        assert!(
            body.contains("in a document on <strong>127.0.0.1:"),
            "{body}"
        );
        assert!(body.contains("does not know this application"), "{body}");
        assert!(body.contains("returns only to a program on your own computer"));
        let loc = br
            .authorize_and_approve(&q, "alice", "alice-password")
            .await;
        let t: Value = redeem(&app, &url, &code_from(&loc, "s"), &pkce.verifier)
            .await
            .json()
            .await
            .unwrap();
        let at = t["access_token"].as_str().unwrap_or_else(|| panic!("{t}"));
        let c = crate::helpers::claims(at);
        assert_eq!(c["client_id"], url.as_str(), "{}", app.label());
        assert_eq!(c["scope"], "orders:read");
        let (status, t) =
            crate::authorize::refresh(&app, &url, t["refresh_token"].as_str().unwrap(), None).await;
        assert_eq!(status, 200, "{t}");
        // Beyond `cimd.scopes`: refused before sign-in, on a page (RFC 9700 §4.11.2: the
        // operator does not vouch for the document's redirect URI) with the way back as a link.
        let q = authorize_query(&url, "orders:write", "s2", &pkce.challenge, &[]);
        let page = br.get(&format!("/authorize?{q}")).await;
        assert_eq!(page.status, 400);
        assert!(page.location.is_none());
        assert!(page.body.contains("invalid_scope") && page.body.contains("127.0.0.1:9999"));
        app.stop().await;
    }
    assert_eq!(server.hits(), 2, "one fetch per server, then the cache");
}

/// RFC 8252 §7.3: a loopback redirect URI of the document matches with any port; another path
/// or host does not, and is a page, not a redirect.
#[tokio::test]
async fn rfc8252_s7_3_a_documents_loopback_redirect_matches_any_port() {
    let pki = pki();
    let (_server, url) = client_server(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(backends()[0], &cimd_config(&pki, &dir, true, true)).await;
    let pkce = Pkce::new();
    let ask = |redirect: &str| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", &url)
            .append_pair("redirect_uri", redirect)
            .append_pair("state", "s")
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256");
        format!("/authorize?{}", q.finish())
    };
    let mut br = Browser::new(&app);
    let login = br.get(&ask("http://127.0.0.1:45678/callback")).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(
        parse_form(&login.body)
            .inputs
            .iter()
            .any(|i| i == "password")
    );
    for bad in [
        "http://127.0.0.1:45678/other",
        "http://10.0.0.1:9999/callback",
    ] {
        let page = br.get(&ask(bad)).await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(page.location.is_none());
    }
    app.stop().await;
}

/// Draft-03 §4.1 ("client_id ... MUST match"), "SSRF Attacks", and the switch: a document
/// whose `client_id` is another URL, one on loopback while private addresses are refused, and
/// any URL while documents are off are each a page at `/authorize` (no redirect: nothing about
/// the redirect URI is known) and `invalid_client` at `/token`; none is fetched when it must not.
#[tokio::test]
async fn cimd_refused_documents_stop_the_flow_without_a_redirect() {
    let pki = pki();
    let server = DocServer::start(Some(pki.server.clone()), Reply::Hang).await;
    let url = server.url("/client.json");
    let mut doc = document(&server.url("/elsewhere.json"));
    doc["redirect_uris"] = json!([REDIRECT_URI]);
    server.set(json_response(&doc, &[]));
    let pkce = Pkce::new();
    let q = format!(
        "/authorize?{}",
        authorize_query(&url, "orders:read", "s", &pkce.challenge, &[])
    );
    let cases = [
        (true, true, "is not exactly the URL it was fetched from", 1),
        (true, false, "resolves to a loopback address", 0),
        (false, true, "not registered", 0),
    ];
    for (enabled, private, says, fetches) in cases {
        let dir = tempfile::tempdir().unwrap();
        let before = server.hits();
        let app = spawn_app_with(backends()[0], &cimd_config(&pki, &dir, enabled, private)).await;
        let (_, _, m) = app
            .get_json("/.well-known/oauth-authorization-server")
            .await;
        assert_eq!(
            m.get("client_id_metadata_document_supported").is_some(),
            enabled
        );
        let page = Browser::new(&app).get(&q).await;
        assert_eq!(page.status, 400, "{says}: {}", page.body);
        assert!(page.location.is_none(), "{says}: no redirect");
        assert!(page.body.contains(says), "{says}: {}", page.body);
        let r = app
            .post_form(
                "/token",
                None,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", url.as_str()),
                    ("code", "c"),
                    ("redirect_uri", REDIRECT_URI),
                    ("code_verifier", "v"),
                ],
            )
            .await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{body}"
        );
        assert_eq!(server.hits() - before, fetches, "{says}");
        app.stop().await;
    }
}
