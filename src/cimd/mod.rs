//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-03, "CIMD"; the
//! MCP authorization spec, revision 2026-07-28, "Client Registration"): a client that names
//! itself with an `https` URL as its `client_id`, the URL of a JSON document holding its RFC 7591
//! metadata. This module turns such a `client_id` into a typed, validated [`ClientMetadata`], or a
//! [`Refusal`] that is safe to show the user, and it fetches as carefully as a server that fetches
//! URLs chosen by strangers must:
//!
//! - [`url`]: the draft's rules for the identifier ("Client Identifier URL"), a pure function;
//! - [`address`]: which IP addresses are never fetched from (RFC 6890 special-use: loopback,
//!   RFC 1918, CGNAT, link-local, ULA, multicast, documentation, their IPv4-mapped forms ...);
//! - [`domains`]: the operator's allow- and block-lists (`example.com`, `*.example.com`);
//! - `fetch` (private): resolve the host once, vet every address, connect to a vetted one (no second
//!   lookup, so no DNS rebinding), TLS with the name's SNI, one `GET`, no redirects, a size cap read
//!   incrementally, a connect and a total timeout;
//! - [`document`]: the document's rules (`client_id` equal to the URL byte for byte,
//!   `redirect_uris`, no shared secret, a public authorization-code client);
//! - [`cache`]: lifetimes from `Cache-Control`/`Expires`, clamped; the bounded cache itself lives
//!   in the [`Resolver`], with a short back-off after a failure and one fetch per URL at a time.
//!
//! # Using it (for the code that wires it in)
//!
//! ```text
//! let resolver = cimd::Resolver::new(&config.cimd, &config.base_dir(), clock.clone())?; // at start
//! if cimd::is_metadata_client_id(client_id) {       // "https://..." ids are CIMD's, never config's
//!     let client = resolver.resolve(client_id).await?;  // Arc<ClientMetadata> or Refusal
//!     client.allows_redirect_uri(redirect_uri)       // exact, or a loopback IP on any port
//!     client.client_name / client.host / client.listed / client.loopback_redirects_only()
//! }
//! ```
//!
//! - **Lookup**: a configured (or registered) client whose id is the same URL wins; the draft
//!   allows pre-registering a document URL ("Pre-Registering Client ID Metadata Document URLs").
//!   A CIMD client is a *public* client: `token_endpoint_auth_method` is `none`, it may use only
//!   `authorization_code` (and `refresh_token` if its document lists it), with PKCE.
//! - **Refusals**: `/authorize` must not redirect on a [`Refusal`] (the redirect URI is not
//!   verified yet): show it as a page, e.g. as `invalid_client` (RFC 6749 §4.1.2.1), with the
//!   `Display` text as the description; at `/token` it is `invalid_client` (RFC 6749 §5.2). The
//!   `Display` text never holds an address, a header or the document; the precise cause is logged
//!   here (`tracing`, target `mandate::cimd`).
//! - **Consent page** (draft "OAuth Phishing Attacks", MCP "Localhost Redirect URI Risks"): show
//!   [`ClientMetadata::host`] always, `client_name` if any, mark a client that is not
//!   [`ClientMetadata::listed`] (its host is not on the operator's allow-list) and warn when
//!   [`ClientMetadata::loopback_redirects_only`].
//! - **Discovery**: advertise `client_id_metadata_document_supported: true` (draft "Authorization
//!   Server Metadata") only when [`Resolver::enabled`].
//! - **Time**: cache lifetimes use the injected [`crate::clock::Clock`]; timeouts use tokio's
//!   monotonic clock.

pub mod address;
pub mod cache;
pub mod document;
pub mod domains;
mod fetch;
mod resolver;
pub mod url;

pub use address::AddressClass;
pub use document::{ClientMetadata, DocumentRule, GrantType};
pub(crate) use fetch::tls_connector;
pub use resolver::{Resolver, SetupError};
pub use url::{ClientIdUrl, UrlRule};

/// Whether `client_id` is meant as a Client ID Metadata Document URL: it starts with `https://`
/// (any case). The draft ("Supporting Both Pre-Registered and Unregistered Clients") asks servers
/// not to generate ids that start so, so such an id is never a registered one's by accident; it
/// says nothing about whether the URL is valid ([`url::parse`] does).
pub fn is_metadata_client_id(client_id: &str) -> bool {
    client_id
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
}

/// Why a `client_id` URL was not accepted. The `Display` text is safe to show the user or to send
/// as an `error_description`: it names the rule, never an address, a header or the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this server does not accept client metadata documents (URL client_ids)")]
    Disabled,
    #[error("the client_id is not a usable client metadata document URL: {0}")]
    Url(UrlRule),
    #[error("the client_id's host is blocked by this server's operator")]
    Blocked,
    #[error("the client_id's host is not one this server's operator allows")]
    NotAllowed,
    #[error("the client_id's host name does not resolve")]
    Unresolvable,
    /// Any resolved address of the host is special-use (draft "Server Side Request Forgery").
    #[error(
        "the client_id's host resolves to a {0} address, and this server does not fetch from those"
    )]
    SpecialAddress(AddressClass),
    #[error("this server could not connect to the client_id's host")]
    Connect,
    #[error(
        "the TLS handshake with the client_id's host failed (its certificate must be valid for the host and trusted)"
    )]
    Tls,
    #[error("the client metadata document did not arrive within {0} ms")]
    Timeout(u64),
    #[error("the client_id's host did not answer in HTTP/1.1 this server understands")]
    Protocol,
    /// Draft "Client Information Discovery": redirects MUST NOT be followed; any 3xx.
    #[error(
        "the client metadata document answered with a redirect (HTTP {0}); redirects are not followed"
    )]
    Redirect(u16),
    /// Draft: only 200 OK is a document.
    #[error("the client metadata document answered HTTP {0}, not 200")]
    Status(u16),
    #[error(
        "the client metadata document is not served as JSON (Content-Type application/json or application/*+json)"
    )]
    ContentType,
    /// Draft "Maximum Response Size for Client Metadata Documents".
    #[error("the client metadata document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the client metadata document is not a JSON object")]
    NotJson,
    #[error("the client metadata document is not acceptable: {0}")]
    Document(DocumentRule),
    #[error("too many client metadata documents are being fetched at once; try again shortly")]
    Busy,
}
