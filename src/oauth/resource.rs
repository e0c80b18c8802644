//! Resource servers named by URL (`[[resources]]`): the `aud` of tokens for them, the scopes
//! that mean something there, and per tool what a scope lets an agent do, for the consent page.
//! A `resource` parameter (RFC 8707 §2) names one by any spelling with the same canonical form
//! (`input::canonical_resource`: scheme and host without case, as the MCP authorization spec
//! asks); tokens carry the URI as the operator wrote it.

use crate::config::ResourceConfig;
use crate::input::canonical_resource;
use crate::oauth::scope::ScopeSet;

#[derive(Debug, Clone)]
pub struct Resource {
    /// As configured: the `aud` of tokens for this resource.
    pub uri: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub tools: Vec<Tool>,
}

#[derive(Debug, Clone)]
pub struct Tool {
    pub name: String,
    pub scope: String,
    pub description: String,
}

/// What one scope lets an agent do at one resource, for a human deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeUse<'a> {
    pub resource: &'a str,
    pub tool: &'a str,
    pub description: &'a str,
}

#[derive(Debug, Default)]
pub struct Resources {
    list: Vec<(String, Resource)>,
}

impl Resources {
    /// From the config, which has checked that every URI has a canonical form and is unique.
    pub fn new(config: &[ResourceConfig]) -> Self {
        let list = config
            .iter()
            .filter_map(|r| {
                let canonical = canonical_resource(&r.uri)?;
                let resource = Resource {
                    uri: r.uri.clone(),
                    name: r.name.clone().unwrap_or_else(|| r.uri.clone()),
                    scopes: r.scopes.clone(),
                    tools: (r.tools.iter())
                        .map(|t| Tool {
                            name: t.name.clone(),
                            scope: t.scope.clone(),
                            description: t.description.clone(),
                        })
                        .collect(),
                };
                Some((canonical, resource))
            })
            .collect();
        Self { list }
    }

    /// Every configured URI, as tokens carry it.
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|(_, r)| r.uri.as_str())
    }

    /// The resource `uri` names, by canonical form.
    pub fn find(&self, uri: &str) -> Option<&Resource> {
        let c = canonical_resource(uri)?;
        self.list.iter().find(|(k, _)| *k == c).map(|(_, r)| r)
    }

    /// The scopes a grant for exactly `aud` may carry: the union of the resources' `scopes`
    /// when every audience is a resource that lists its scopes; `None` (no ceiling here) when
    /// any of them is something else or lists none.
    pub fn scope_ceiling(&self, aud: &[String]) -> Option<ScopeSet> {
        let mut all = Vec::new();
        for a in aud {
            let r = self.find(a).filter(|r| !r.scopes.is_empty())?;
            all.extend(r.scopes.iter().cloned());
        }
        (!aud.is_empty()).then(|| ScopeSet::from_list(all))
    }

    /// What `scope` lets an agent do at the resources of `aud`, tool by tool.
    pub fn uses<'a>(&'a self, aud: &[String], scope: &str) -> Vec<ScopeUse<'a>> {
        aud.iter()
            .filter_map(|a| self.find(a))
            .flat_map(|r| {
                (r.tools.iter())
                    .filter(move |t| t.scope == scope)
                    .map(move |t| ScopeUse {
                        resource: &r.name,
                        tool: &t.name,
                        description: &t.description,
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ToolConfig;

    fn files() -> ResourceConfig {
        ResourceConfig {
            uri: "https://Files.example/mcp".into(),
            name: Some("Files".into()),
            scopes: vec!["files:read".into(), "files:write".into()],
            tools: vec![
                ToolConfig {
                    name: "read_file".into(),
                    scope: "files:read".into(),
                    description: "Reads a file".into(),
                },
                ToolConfig {
                    name: "delete_file".into(),
                    scope: "files:write".into(),
                    description: "Deletes a file".into(),
                },
            ],
        }
    }

    /// RFC 8707 §2 / MCP "canonical server URI": found by any spelling of scheme and host.
    #[test]
    fn rfc8707_s2_a_resource_is_found_by_its_canonical_uri() {
        let rs = Resources::new(&[files()]);
        let r = rs
            .find("HTTPS://files.EXAMPLE:443/mcp")
            .map(|r| r.uri.as_str());
        assert_eq!(r, Some("https://Files.example/mcp"));
        assert!(rs.find("https://files.example/MCP").is_none());
        assert!(rs.find("https://files.example/mcp#f").is_none());
    }

    #[test]
    fn the_scope_ceiling_is_the_union_only_when_every_audience_lists_scopes() {
        let open = ResourceConfig {
            uri: "https://open.example".into(),
            name: None,
            scopes: vec![],
            tools: vec![],
        };
        let rs = Resources::new(&[files(), open]);
        let ceiling = rs.scope_ceiling(&["https://files.example/mcp".into()]);
        assert_eq!(
            ceiling.map(|s| s.to_string()),
            Some("files:read files:write".into())
        );
        assert!(rs.scope_ceiling(&["https://open.example".into()]).is_none());
        assert!(rs.scope_ceiling(&["urn:other".into()]).is_none());
        assert!(
            (rs.scope_ceiling(&["https://files.example/mcp".into(), "urn:other".into()])).is_none()
        );
        assert!(rs.scope_ceiling(&[]).is_none());
    }

    #[test]
    fn each_scope_says_which_tools_it_opens() {
        let rs = Resources::new(&[files()]);
        let aud = ["https://files.example/mcp".to_string()];
        let uses = rs.uses(&aud, "files:write");
        assert_eq!(
            uses,
            vec![ScopeUse {
                resource: "Files",
                tool: "delete_file",
                description: "Deletes a file"
            }]
        );
        assert!(rs.uses(&aud, "other").is_empty());
    }
}
