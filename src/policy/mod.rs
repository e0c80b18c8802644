//! Policy as code: Cedar decides who may delegate what to whom, which grants need the human's
//! approval and how long they may live (SPEC "Policy (Cedar)"). The engine sits behind
//! [`Policies`]: the protocol core asks for a [`Decision`] with typed requests and never sees a
//! Cedar type.
//!
//! Without policy files the SPEC's default policy applies, written in Cedar too: an enrolled
//! agent may act for a human who hands it a token, and `high_risk_scopes` need approval.

pub mod cases;
mod cedar;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use cedar::{LoadError, Loaded};
pub use watch::watch;

use crate::config::PolicyConfig;

/// An agent asks to act for a user (`Mandate::Action::"delegate"`).
#[derive(Debug, Clone)]
pub struct DelegateRequest {
    pub agent: String,
    pub attestation: String,
    /// How the request is DPoP-bound (RFC 9449): `none`, `software` or `tpm`.
    pub dpop: String,
    pub user: String,
    pub user_scopes: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub depth: i64,
    pub client: String,
    pub actors: Vec<String>,
    pub ttl: i64,
    pub time: i64,
}

/// An agent asks for an agent token (`Mandate::Action::"attest"`).
#[derive(Debug, Clone)]
pub struct AttestRequest {
    pub agent: String,
    pub attestation: String,
    pub time: i64,
}

/// A policy, as operators name it: its `@id` (or a generated one) and its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    pub id: String,
    pub file: String,
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` ({})", self.id, self.file)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Permit,
    /// Permitted once the human approves it (`@approval("required")` or `high_risk_scopes`).
    NeedsApproval,
    /// Refused; `scopes_only` when the same request without its scopes would be permitted.
    Deny {
        scopes_only: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub outcome: Outcome,
    /// The policies that determined the decision: the matching permits, or the forbids.
    pub determining: Vec<PolicyRef>,
    /// The smallest `@max_ttl` among the determining permits, in seconds.
    pub max_ttl: Option<i64>,
    /// The version (hash) of the policy set that decided.
    pub version: String,
}

impl Decision {
    pub fn ids(&self) -> Vec<String> {
        self.determining.iter().map(|p| p.id.clone()).collect()
    }

    /// What a refusal says: which policy refused, or that none permitted.
    pub fn refusal(&self) -> String {
        match self.determining.first() {
            Some(p) => format!("refused by policy {p}"),
            None => "no policy permits it (Cedar denies by default)".into(),
        }
    }
}

/// The live policy set of this process, swapped whole on reload.
pub struct Policies {
    config: PolicyConfig,
    base_dir: PathBuf,
    current: RwLock<Arc<Loaded>>,
    /// Decisions made, by action ([`ACTIONS`]) and outcome ([`DECISIONS`]), for the metrics.
    counts: [[AtomicU64; 3]; 2],
}

/// The actions a decision is counted under, in the order of `Policies::counts`.
const ACTIONS: [&str; 2] = ["delegate", "attest"];
/// The decisions, in the order of `Policies::counts`' rows.
const DECISIONS: [&str; 3] = ["permit", "approval", "deny"];

/// The span of one decision (exported with the request's trace, see `telemetry`).
fn decision_span(action: usize) -> tracing::Span {
    tracing::debug_span!(
        "policy",
        action = ACTIONS.get(action).copied().unwrap_or_default(),
        decision = tracing::field::Empty
    )
}

impl Policies {
    /// Loads and validates the configured files; an invalid file is an error naming file and line.
    pub fn load(config: &PolicyConfig, base_dir: PathBuf) -> Result<Self, LoadError> {
        let loaded = Loaded::load(config, &base_dir)?;
        Ok(Self {
            config: config.clone(),
            base_dir,
            current: RwLock::new(Arc::new(loaded)),
            counts: Default::default(),
        })
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn version(&self) -> String {
        self.current().version.clone()
    }

    /// Re-reads the files; an invalid new set is refused and the old one keeps serving.
    /// Returns the new version when it changed.
    pub fn reload(&self) -> Result<Option<String>, LoadError> {
        let loaded = Loaded::load(&self.config, &self.base_dir)?;
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if cur.version == loaded.version {
            return Ok(None);
        }
        let v = loaded.version.clone();
        *cur = Arc::new(loaded);
        Ok(Some(v))
    }

    /// The files and their modification times, to notice edits.
    pub fn fingerprint(&self) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
        cedar::expand(&self.config.files, &self.base_dir)
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
                (p, m)
            })
            .collect()
    }

    pub fn delegate(&self, req: &DelegateRequest) -> Decision {
        let span = decision_span(0);
        let _in = span.enter();
        self.counted(&span, 0, self.current().delegate(req))
    }

    pub fn attest(&self, req: &AttestRequest) -> Decision {
        let span = decision_span(1);
        let _in = span.enter();
        self.counted(&span, 1, self.current().attest(req))
    }

    fn counted(&self, span: &tracing::Span, action: usize, d: Decision) -> Decision {
        let i = match d.outcome {
            Outcome::Permit => 0,
            Outcome::NeedsApproval => 1,
            Outcome::Deny { .. } => 2,
        };
        if let Some(decision) = DECISIONS.get(i) {
            span.record("decision", *decision);
        }
        if let Some(c) = self.counts.get(action).and_then(|row| row.get(i)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        d
    }

    /// `(action, decision, how many)` for every pair, zeros included.
    pub fn decisions(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::with_capacity(6);
        for (action, row) in ACTIONS.iter().zip(&self.counts) {
            for (decision, n) in DECISIONS.iter().zip(row) {
                out.push((*action, *decision, n.load(Ordering::Relaxed)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> Loaded {
        let cfg = PolicyConfig {
            files: vec!["policies/*.cedar".into()],
            high_risk_scopes: vec![],
        };
        Loaded::load(&cfg, std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn req(agent: &str, att: &str, scopes: &[&str], depth: i64) -> DelegateRequest {
        DelegateRequest {
            agent: agent.into(),
            attestation: att.into(),
            dpop: "none".into(),
            user: "alice".into(),
            user_scopes: vec![],
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            audiences: vec![],
            depth,
            client: "agent-runtime".into(),
            actors: vec![],
            ttl: 600,
            time: 0,
        }
    }

    #[test]
    fn the_example_cases_pass() {
        let loaded = examples();
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/cases.toml"))
                .unwrap();
        let file: cases::CaseFile = toml::from_str(&text).unwrap();
        let (lines, ok) = cases::run(&loaded, &file, 0);
        assert!(ok, "{}", lines.join("\n"));
        assert_eq!(lines.len(), file.cases.len());
    }

    #[test]
    fn refusals_name_the_refusing_policy_and_scope_only_refusals_say_so() {
        let loaded = examples();
        let d = loaded.delegate(&req("build-bot", "tpm", &["deploy:production"], 2));
        assert_eq!(d.outcome, Outcome::Deny { scopes_only: true });
        assert_eq!(d.determining[0].id, "no-sub-agents-for-production");
        assert!(d.determining[0].file.ends_with("delegation.cedar"));
        assert!(d.refusal().contains("no-sub-agents-for-production"));
        let d = loaded.delegate(&req("report-bot", "software", &["deploy:staging"], 1));
        assert!(d.determining.is_empty(), "default deny names no policy");
        assert!(d.refusal().contains("no policy permits"));
    }

    #[test]
    fn the_default_policy_permits_and_high_risk_scopes_need_approval() {
        let cfg = PolicyConfig {
            files: vec![],
            high_risk_scopes: vec!["payments:write".into()],
        };
        let loaded = Loaded::load(&cfg, std::path::Path::new(".")).unwrap();
        let d = loaded.delegate(&req("a", "software", &["orders:read"], 1));
        assert_eq!(d.outcome, Outcome::Permit);
        assert_eq!(d.ids(), vec!["mandate:default-delegate"]);
        let d = loaded.delegate(&req("a", "software", &["orders:read", "payments:write"], 1));
        assert_eq!(d.outcome, Outcome::NeedsApproval);
        assert!(d.ids().contains(&"mandate:high-risk-scopes".to_string()));
        let a = loaded.attest(&AttestRequest {
            agent: "a".into(),
            attestation: "software".into(),
            time: 0,
        });
        assert_eq!(a.outcome, Outcome::Permit);
    }

    #[test]
    fn an_invalid_policy_is_refused_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let cfg = PolicyConfig {
            files: vec!["*.cedar".into()],
            high_risk_scopes: vec![],
        };
        write(
            "a.cedar",
            "// ok\npermit (principal, action, resource);\n\npermit (principal, action, resource) when { context.nope == 1 };\n",
        );
        let e = Loaded::load(&cfg, dir.path()).unwrap_err();
        assert!(e.file.ends_with("a.cedar") && e.line == Some(4), "{e}");
        write(
            "a.cedar",
            "permit (principal, action, resource)\nwhen { 1 + };\n",
        );
        let e = Loaded::load(&cfg, dir.path()).unwrap_err();
        assert!(e.file.ends_with("a.cedar") && e.line == Some(2), "{e}");
        std::fs::remove_file(dir.path().join("a.cedar")).unwrap();
        let e = Loaded::load(&cfg, dir.path()).unwrap_err();
        assert!(e.message.contains("matches no file"), "{e}");
    }

    #[test]
    fn reload_keeps_the_old_set_when_the_new_one_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.cedar");
        std::fs::write(&f, "@id(\"all\") permit (principal, action, resource);\n").unwrap();
        let cfg = PolicyConfig {
            files: vec!["*.cedar".into()],
            high_risk_scopes: vec![],
        };
        let p = Policies::load(&cfg, dir.path().to_path_buf()).unwrap();
        let v1 = p.version();
        std::fs::write(&f, "permit (principal, action resource);\n").unwrap();
        assert!(p.reload().is_err());
        assert_eq!(p.version(), v1);
        assert_eq!(
            p.delegate(&req("a", "software", &["x"], 1)).outcome,
            Outcome::Permit
        );
        std::fs::write(&f, "@id(\"none\") forbid (principal, action, resource);\n").unwrap();
        let v2 = p.reload().unwrap().unwrap();
        assert_ne!(v1, v2);
        let d = p.delegate(&req("a", "software", &["x"], 1));
        assert_eq!(d.ids(), vec!["none"]);
    }
}
