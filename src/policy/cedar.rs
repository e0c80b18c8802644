//! Loading, validating and evaluating Cedar policies.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint, Request, RestrictedExpression,
    Schema, ValidationMode, Validator,
};
use miette::Diagnostic;

use super::{AttestRequest, Decision, DelegateRequest, Outcome, PolicyRef};
use crate::config::PolicyConfig;

/// The schema operators write against, committed as `policies/mandate.cedarschema`.
pub const SCHEMA: &str = include_str!("../../policies/mandate.cedarschema");

const DEFAULT_DELEGATE: &str = r#"@id("mandate:default-delegate")
permit (principal, action == Mandate::Action::"delegate", resource);"#;
const DEFAULT_ATTEST: &str = r#"@id("mandate:default-attest")
permit (principal, action == Mandate::Action::"attest", resource);"#;

/// Why a policy set could not be loaded, naming the file and line to fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("policy {file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct LoadError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

fn load_err(file: &str, line: Option<usize>, message: impl Into<String>) -> LoadError {
    LoadError {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

/// Expands the configured globs, relative to the config's directory, sorted.
pub fn expand(patterns: &[String], base: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in patterns {
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        if let Ok(paths) = glob::glob(&full.to_string_lossy()) {
            out.extend(paths.filter_map(Result::ok));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The line of the first labelled span of a Cedar diagnostic, in `text`.
fn line_of(d: &dyn Diagnostic, text: &str) -> Option<usize> {
    let offset = d.labels()?.next()?.offset();
    Some(text.get(..offset)?.matches('\n').count() + 1)
}

fn diagnostic_message(d: &dyn Diagnostic) -> String {
    let mut m = d.to_string();
    if let Some(h) = d.help() {
        m.push_str(&format!(" ({h})"));
    }
    m
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("version", &self.version)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn ty_name(n: &str) -> Result<EntityTypeName, String> {
    EntityTypeName::from_str(n).map_err(|e| e.to_string())
}

/// One loaded, validated policy set and what decisions need from it.
pub struct Loaded {
    pub version: String,
    /// Files the set was read from (empty: the default policy).
    pub files: Vec<String>,
    /// Policies whose principal is not one specific agent: evaluated for every request.
    generic: PolicySet,
    /// Policies whose principal is `== Mandate::Agent::"x"` (or `in` it: agents have no
    /// parents), by agent name: only that agent's requests evaluate them, so a thousand
    /// per-agent policies cost about as much as one.
    by_agent: HashMap<String, PolicySet>,
    /// `high_risk_scopes` as an `@approval` permit, evaluated on top of `set`.
    high_risk: Option<PolicySet>,
    refs: HashMap<PolicyId, PolicyRef>,
    approval: HashSet<PolicyId>,
    max_ttl: HashMap<PolicyId, i64>,
    authorizer: Authorizer,
    agent_type: EntityTypeName,
    user_type: EntityTypeName,
    client_type: EntityTypeName,
    delegate: EntityUid,
    attest: EntityUid,
    pub schema: Schema,
}

impl Loaded {
    pub fn load(config: &PolicyConfig, base: &Path) -> Result<Self, LoadError> {
        let schema_file = "policies/mandate.cedarschema (built in)";
        let (schema, _) = Schema::from_cedarschema_str(SCHEMA)
            .map_err(|e| load_err(schema_file, None, e.to_string()))?;
        let mut sources: Vec<(String, String)> = Vec::new();
        if config.files.is_empty() {
            sources.push(("(default policy)".into(), DEFAULT_DELEGATE.into()));
        } else {
            let paths = expand(&config.files, base);
            if paths.is_empty() {
                return Err(load_err(
                    &config.files.join(", "),
                    None,
                    "policy.files matches no file; refusing to start with no policy",
                ));
            }
            for p in paths {
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    load_err(&p.display().to_string(), None, format!("cannot read: {e}"))
                })?;
                sources.push((p.display().to_string(), text));
            }
        }
        sources.push(("(default attest policy)".into(), DEFAULT_ATTEST.into()));

        let mut set = PolicySet::new();
        let mut refs = HashMap::new();
        let mut approval = HashSet::new();
        let mut max_ttl = HashMap::new();
        let mut seen_ids: HashMap<String, String> = HashMap::new();
        let mut texts: HashMap<PolicyId, (String, String)> = HashMap::new();
        for (file, text) in &sources {
            let parsed = PolicySet::from_str(text)
                .map_err(|e| load_err(file, line_of(&e, text), diagnostic_message(&e)))?;
            if parsed.templates().next().is_some() {
                return Err(load_err(file, None, "policy templates are not supported"));
            }
            for (n, policy) in parsed.policies().enumerate() {
                // The policy's own text is a slice of the file: its offset gives the line.
                let line = text
                    .find(&policy.to_string())
                    .map(|o| text.get(..o).map_or(0, |t| t.matches('\n').count()) + 1);
                let name = policy
                    .annotation("id")
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!(
                            "{}#{}",
                            Path::new(file)
                                .file_name()
                                .map(|f| f.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            n + 1
                        )
                    });
                if let Some(other) = seen_ids.insert(name.clone(), file.clone()) {
                    return Err(load_err(
                        file,
                        line,
                        format!("@id(\"{name}\") is already used in {other}"),
                    ));
                }
                let id = PolicyId::new(format!("{file}\u{1f}{name}"));
                match policy.annotation("approval") {
                    None => {}
                    Some("required") => {
                        approval.insert(id.clone());
                    }
                    Some(other) => {
                        return Err(load_err(
                            file,
                            line,
                            format!("@approval(\"{other}\"): the only value is \"required\""),
                        ));
                    }
                }
                if let Some(t) = policy.annotation("max_ttl") {
                    let d = humantime::parse_duration(t).map_err(|_| {
                        load_err(
                            file,
                            line,
                            format!("@max_ttl(\"{t}\") is not a duration like \"15m\""),
                        )
                    })?;
                    max_ttl.insert(id.clone(), d.as_secs() as i64);
                }
                refs.insert(
                    id.clone(),
                    PolicyRef {
                        id: name,
                        file: file.clone(),
                    },
                );
                texts.insert(id.clone(), (file.clone(), text.clone()));
                let renamed: Policy = policy.new_id(id);
                set.add(renamed)
                    .map_err(|e| load_err(file, line, e.to_string()))?;
            }
        }
        let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if let Some(e) = validation.validation_errors().next() {
            let (file, text) = texts.get(e.policy_id()).cloned().unwrap_or_default();
            // Name the policy as the operator knows it, not by our internal id.
            let name = refs
                .get(e.policy_id())
                .map(|r| r.id.clone())
                .unwrap_or_default();
            let message = diagnostic_message(e).replace(&e.policy_id().to_string(), &name);
            return Err(load_err(&file, line_of(e, &text), message));
        }

        let agent_type = ty_name("Mandate::Agent").map_err(|e| load_err(schema_file, None, e))?;
        let mut generic = PolicySet::new();
        let mut by_agent: HashMap<String, PolicySet> = HashMap::new();
        for p in set.policies() {
            let target = match p.principal_constraint() {
                PrincipalConstraint::Eq(uid)
                | PrincipalConstraint::In(uid)
                | PrincipalConstraint::IsIn(_, uid)
                    if uid.type_name() == &agent_type =>
                {
                    by_agent
                        .entry(uid.id().unescaped().to_string())
                        .or_default()
                }
                _ => &mut generic,
            };
            target
                .add(p.clone())
                .map_err(|e| load_err(schema_file, None, e.to_string()))?;
        }

        let high_risk = if config.high_risk_scopes.is_empty() {
            None
        } else {
            let list: Vec<String> = config
                .high_risk_scopes
                .iter()
                .map(|s| serde_json::to_string(s).unwrap_or_default())
                .collect();
            let text = format!(
                "@id(\"mandate:high-risk-scopes\") @approval(\"required\")\npermit (principal, action == \
                 Mandate::Action::\"delegate\", resource) when {{ context.scopes.containsAny([{}]) }};",
                list.join(", ")
            );
            let hr = PolicySet::from_str(&text)
                .map_err(|e| load_err("policy.high_risk_scopes", None, e.to_string()))?;
            let mut out = PolicySet::new();
            for p in hr.policies() {
                let id = PolicyId::new("(high_risk_scopes)\u{1f}mandate:high-risk-scopes");
                refs.insert(
                    id.clone(),
                    PolicyRef {
                        id: "mandate:high-risk-scopes".into(),
                        file: "policy.high_risk_scopes".into(),
                    },
                );
                approval.insert(id.clone());
                out.add(p.new_id(id))
                    .map_err(|e| load_err("policy.high_risk_scopes", None, e.to_string()))?;
            }
            sources.push(("policy.high_risk_scopes".into(), text));
            Some(out)
        };

        let mut hasher = Vec::new();
        hasher.extend_from_slice(SCHEMA.as_bytes());
        for (file, text) in &sources {
            hasher.extend_from_slice(&(file.len() as u64).to_be_bytes());
            hasher.extend_from_slice(file.as_bytes());
            hasher.extend_from_slice(&(text.len() as u64).to_be_bytes());
            hasher.extend_from_slice(text.as_bytes());
        }
        let version = hex::encode(crate::crypto::sha256(&hasher))
            .chars()
            .take(16)
            .collect();
        let ty = |n: &str| {
            EntityTypeName::from_str(n).map_err(|e| load_err(schema_file, None, e.to_string()))
        };
        let action = |a: &str| {
            Ok::<_, LoadError>(EntityUid::from_type_name_and_id(
                ty("Mandate::Action")?,
                EntityId::new(a),
            ))
        };
        Ok(Self {
            version,
            files: if config.files.is_empty() {
                Vec::new()
            } else {
                sources
                    .iter()
                    .map(|(f, _)| f.clone())
                    .filter(|f| !f.starts_with('(') && !f.starts_with("policy."))
                    .collect()
            },
            generic,
            by_agent,
            high_risk,
            refs,
            approval,
            max_ttl,
            authorizer: Authorizer::new(),
            agent_type,
            user_type: ty("Mandate::User")?,
            client_type: ty("Mandate::Client")?,
            delegate: action("delegate")?,
            attest: action("attest")?,
            schema,
        })
    }

    fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    fn strings(v: &[String]) -> RestrictedExpression {
        RestrictedExpression::new_set(
            v.iter()
                .map(|s| RestrictedExpression::new_string(s.clone())),
        )
    }

    /// The policy sets that can apply to `agent`.
    fn sets_for<'a>(&'a self, agent: &str) -> Vec<&'a PolicySet> {
        let mut v = vec![&self.generic];
        v.extend(self.by_agent.get(agent));
        v
    }

    /// Cedar's decision over the union of `sets`, evaluated one by one: any satisfied forbid
    /// denies, else any satisfied permit allows, else the default deny. Returns whether it is
    /// allowed and the determining policies.
    fn decide(
        &self,
        request: &Request,
        entities: &Entities,
        sets: &[&PolicySet],
    ) -> (bool, Vec<PolicyId>) {
        let (mut permits, mut forbids) = (Vec::new(), Vec::new());
        for set in sets.iter().filter(|s| !s.is_empty()) {
            let resp = self.authorizer.is_authorized(request, set, entities);
            for e in resp.diagnostics().errors() {
                tracing::debug!(error = %e, "policy evaluation error (that policy is skipped)");
            }
            let reasons = resp.diagnostics().reason().cloned();
            match resp.decision() {
                CedarDecision::Allow => permits.extend(reasons),
                CedarDecision::Deny => forbids.extend(reasons),
            }
        }
        if !forbids.is_empty() {
            (false, forbids)
        } else {
            (!permits.is_empty(), permits)
        }
    }

    /// The request and entities of a `delegate` decision with the given scopes.
    fn delegate_request(
        &self,
        r: &DelegateRequest,
        scopes: &[String],
    ) -> Option<(Request, Entities)> {
        let agent = self.uid(&self.agent_type, &r.agent);
        let user = self.uid(&self.user_type, &r.user);
        let client = self.uid(&self.client_type, &r.client);
        let actors: Vec<RestrictedExpression> = r
            .actors
            .iter()
            .map(|a| RestrictedExpression::new_entity_uid(self.uid(&self.agent_type, a)))
            .collect();
        let context = Context::from_pairs([
            ("scopes".to_string(), Self::strings(scopes)),
            ("audiences".to_string(), Self::strings(&r.audiences)),
            ("depth".to_string(), RestrictedExpression::new_long(r.depth)),
            (
                "attestation".to_string(),
                RestrictedExpression::new_string(r.attestation.clone()),
            ),
            (
                "dpop".to_string(),
                RestrictedExpression::new_string(r.dpop.clone()),
            ),
            (
                "client".to_string(),
                RestrictedExpression::new_entity_uid(client.clone()),
            ),
            ("actors".to_string(), RestrictedExpression::new_set(actors)),
            ("ttl".to_string(), RestrictedExpression::new_long(r.ttl)),
            ("time".to_string(), RestrictedExpression::new_long(r.time)),
        ])
        .ok()?;
        let entities = Entities::from_entities(
            [
                Entity::new(
                    agent.clone(),
                    HashMap::from([(
                        "attestation".to_string(),
                        RestrictedExpression::new_string(r.attestation.clone()),
                    )]),
                    HashSet::new(),
                )
                .ok()?,
                Entity::new(
                    user.clone(),
                    HashMap::from([("scopes".to_string(), Self::strings(&r.user_scopes))]),
                    HashSet::new(),
                )
                .ok()?,
                Entity::new_no_attrs(client, HashSet::new()),
            ],
            None,
        )
        .ok()?;
        let request = Request::new(agent, self.delegate.clone(), user, context, None).ok()?;
        Some((request, entities))
    }

    fn eval_delegate(
        &self,
        sets: &[&PolicySet],
        r: &DelegateRequest,
        scopes: &[String],
    ) -> Option<(bool, Vec<PolicyId>)> {
        let (request, entities) = self.delegate_request(r, scopes)?;
        Some(self.decide(&request, &entities, sets))
    }

    fn refs_of(&self, ids: &[PolicyId]) -> Vec<PolicyRef> {
        let mut v: Vec<PolicyRef> = ids
            .iter()
            .filter_map(|i| self.refs.get(i).cloned())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn delegate(&self, r: &DelegateRequest) -> Decision {
        let deny = |determining, scopes_only| Decision {
            outcome: Outcome::Deny { scopes_only },
            determining,
            max_ttl: None,
            version: self.version.clone(),
        };
        let sets = self.sets_for(&r.agent);
        let Some((allowed, reasons)) = self.eval_delegate(&sets, r, &r.scopes) else {
            tracing::error!("could not build a policy request");
            return deny(Vec::new(), false);
        };
        if !allowed {
            let scopes_only =
                !r.scopes.is_empty() && self.eval_delegate(&sets, r, &[]).is_some_and(|(a, _)| a);
            return deny(self.refs_of(&reasons), scopes_only);
        }
        let mut ids = reasons;
        if let Some(hr) = &self.high_risk {
            if let Some((true, more)) = self.eval_delegate(&[hr], r, &r.scopes) {
                ids.extend(more);
            }
        }
        let needs_approval = ids.iter().any(|i| self.approval.contains(i));
        let max_ttl = ids
            .iter()
            .filter_map(|i| self.max_ttl.get(i))
            .min()
            .copied();
        Decision {
            outcome: if needs_approval {
                Outcome::NeedsApproval
            } else {
                Outcome::Permit
            },
            determining: self.refs_of(&ids),
            max_ttl,
            version: self.version.clone(),
        }
    }

    /// Whether this policy carries `@approval("required")`.
    pub fn needs_approval(&self, p: &PolicyRef) -> bool {
        self.refs
            .iter()
            .any(|(id, r)| r == p && self.approval.contains(id))
    }

    pub fn attest(&self, r: &AttestRequest) -> Decision {
        let agent = self.uid(&self.agent_type, &r.agent);
        let built = (|| {
            let context = Context::from_pairs([
                (
                    "attestation".to_string(),
                    RestrictedExpression::new_string(r.attestation.clone()),
                ),
                ("time".to_string(), RestrictedExpression::new_long(r.time)),
            ])
            .ok()?;
            let entities = Entities::from_entities(
                [Entity::new(
                    agent.clone(),
                    HashMap::from([(
                        "attestation".to_string(),
                        RestrictedExpression::new_string(r.attestation.clone()),
                    )]),
                    HashSet::new(),
                )
                .ok()?],
                None,
            )
            .ok()?;
            let request = Request::new(
                agent.clone(),
                self.attest.clone(),
                agent.clone(),
                context,
                None,
            )
            .ok()?;
            Some(self.decide(&request, &entities, &self.sets_for(&r.agent)))
        })();
        let (outcome, ids) = match built {
            Some((true, ids)) => (Outcome::Permit, ids),
            Some((false, ids)) => (Outcome::Deny { scopes_only: false }, ids),
            None => (Outcome::Deny { scopes_only: false }, Vec::new()),
        };
        Decision {
            outcome,
            determining: self.refs_of(&ids),
            max_ttl: None,
            version: self.version.clone(),
        }
    }
}
