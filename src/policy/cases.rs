//! `mandate policy test CASES`: a table of requests and the decisions they must get, so a policy
//! change is simulated before it is rolled out.

use serde::Deserialize;

use super::{DelegateRequest, Loaded, Outcome};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    #[serde(rename = "case")]
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub agent: String,
    #[serde(default = "software")]
    pub attestation: String,
    /// How the request is DPoP-bound: `none` (the default), `software` or `tpm`.
    #[serde(default = "unbound")]
    pub dpop: String,
    pub user: String,
    /// The user's own scopes (default: the requested scopes).
    pub user_scopes: Option<Vec<String>>,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "one")]
    pub depth: i64,
    #[serde(default = "client")]
    pub client: String,
    #[serde(default)]
    pub actors: Vec<String>,
    #[serde(default = "ttl")]
    pub ttl: i64,
    pub time: Option<i64>,
    /// `permit`, `approval` or `deny`.
    pub expect: String,
    /// Expected `@max_ttl` cap, e.g. "15m".
    pub max_ttl: Option<String>,
    /// Expected refusing policy `@id`.
    pub denied_by: Option<String>,
}

fn software() -> String {
    "software".into()
}
fn unbound() -> String {
    "none".into()
}
fn one() -> i64 {
    1
}
fn client() -> String {
    "agent-runtime".into()
}
fn ttl() -> i64 {
    600
}

/// Runs every case; returns one line per case and whether all passed.
pub fn run(loaded: &Loaded, file: &CaseFile, now: i64) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut all = true;
    for c in &file.cases {
        let req = DelegateRequest {
            agent: c.agent.clone(),
            attestation: c.attestation.clone(),
            dpop: c.dpop.clone(),
            user: c.user.clone(),
            user_scopes: c.user_scopes.clone().unwrap_or_else(|| c.scopes.clone()),
            scopes: c.scopes.clone(),
            audiences: c.audiences.clone(),
            depth: c.depth,
            client: c.client.clone(),
            actors: c.actors.clone(),
            ttl: c.ttl,
            time: c.time.unwrap_or(now),
        };
        let d = loaded.delegate(&req);
        let got = match d.outcome {
            Outcome::Permit => "permit",
            Outcome::NeedsApproval => "approval",
            Outcome::Deny { .. } => "deny",
        };
        let mut problems = Vec::new();
        if got != c.expect {
            problems.push(format!("expected {}, got {got}", c.expect));
        }
        if let Some(want) = &c.max_ttl {
            let want_secs = humantime::parse_duration(want)
                .map(|d| d.as_secs() as i64)
                .ok();
            if want_secs != d.max_ttl {
                problems.push(format!("expected max_ttl {want}, got {:?}s", d.max_ttl));
            }
        }
        if let Some(want) = &c.denied_by {
            if !d.determining.iter().any(|p| &p.id == want) {
                problems.push(format!("expected refusal by `{want}`, got {:?}", d.ids()));
            }
        }
        let why = if d.determining.is_empty() {
            "no policy".to_string()
        } else {
            d.ids().join(", ")
        };
        if problems.is_empty() {
            lines.push(format!("PASS  {} — {got} ({why})", c.name));
        } else {
            all = false;
            lines.push(format!(
                "FAIL  {} — {} ({why})",
                c.name,
                problems.join("; ")
            ));
        }
    }
    (lines, all)
}
