//! `GET /sessions`: every live session of the signed-in human as a tree — their own sign-ins at
//! the root, the agents acting for them below, sub-agents below those — with scopes, audience,
//! expiry and last use (from introspections), and `Revoke` on any node, which revokes its whole
//! subtree at once. `GET /sessions/{sid}`: the audit trail of one session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use askama::Template;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{OrInternal, PageError, PathId, login, pages, read_form, redirect};
use crate::audit::AuditEvent;
use crate::oauth::Ctx;
use crate::oauth::token::actor_chain;
use crate::store::{TokenKind, TokenRecord, WriteOp};

pub struct Node {
    pub sid: String,
    /// Who holds it: "you" or the agent chain.
    pub who: String,
    pub client: String,
    pub scope: String,
    pub aud: String,
    pub expires_in: i64,
    pub last_used: String,
    pub has_children: bool,
    /// How many nested lists end after this node.
    pub closes: Vec<()>,
}

#[derive(Template)]
#[template(path = "sessions.html")]
pub struct SessionsPage<'a> {
    pub username: &'a str,
    pub csrf: &'a str,
    pub nodes: Vec<Node>,
}

pub struct TrailRow {
    pub time: String,
    pub kind: String,
    pub actors: String,
    pub client: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "session_detail.html")]
pub struct DetailPage<'a> {
    pub sid: &'a str,
    pub rows: Vec<TrailRow>,
}

/// One session: its newest token stands for it.
struct Group<'a> {
    newest: &'a TokenRecord,
    parent_sid: Option<String>,
}

/// Builds the tree in display order (depth first), from the human's live tokens.
fn tree(tokens: &[TokenRecord], now: i64) -> Vec<Node> {
    let sid_of: HashMap<&[u8], &str> = tokens
        .iter()
        .filter_map(|t| t.sid.as_deref().map(|s| (t.token_hash.as_slice(), s)))
        .collect();
    let mut groups: Vec<(String, Group)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for t in tokens {
        let Some(sid) = t.sid.clone() else { continue };
        let parent_sid = t
            .parent_hash
            .as_deref()
            .and_then(|p| sid_of.get(p))
            .filter(|p| **p != sid)
            .map(|p| p.to_string());
        match index.get(&sid) {
            Some(&i) => {
                if let Some((_, g)) = groups.get_mut(i) {
                    if t.kind == TokenKind::Access
                        && (g.newest.kind != TokenKind::Access || t.iat >= g.newest.iat)
                    {
                        g.newest = t;
                    }
                    if g.parent_sid.is_none() {
                        g.parent_sid = parent_sid;
                    }
                }
            }
            None => {
                index.insert(sid.clone(), groups.len());
                groups.push((
                    sid,
                    Group {
                        newest: t,
                        parent_sid,
                    },
                ));
            }
        }
    }
    let mut children: HashMap<Option<&str>, Vec<usize>> = HashMap::new();
    for (i, (_, g)) in groups.iter().enumerate() {
        let parent = g.parent_sid.as_deref().filter(|p| index.contains_key(*p));
        children.entry(parent).or_default().push(i);
    }
    let mut out = Vec::new();
    // (group index, is the last of its siblings at each open level)
    fn walk(
        i: usize,
        groups: &[(String, Group)],
        children: &HashMap<Option<&str>, Vec<usize>>,
        now: i64,
        out: &mut Vec<Node>,
    ) {
        let Some((sid, g)) = groups.get(i) else {
            return;
        };
        let t = g.newest;
        let chain = actor_chain(t.act.as_ref());
        let kids = children
            .get(&Some(sid.as_str()))
            .cloned()
            .unwrap_or_default();
        out.push(Node {
            sid: sid.clone(),
            who: if chain.is_empty() {
                "you".into()
            } else {
                chain.join(", acting for ")
            },
            client: t.client_id.clone(),
            scope: t.scope.clone(),
            aud: t.aud.to_string(),
            expires_in: t.exp - now,
            last_used: t
                .last_used_at
                .map(|u| format!("{}s ago", now - u))
                .unwrap_or_else(|| "never".into()),
            has_children: !kids.is_empty(),
            closes: Vec::new(),
        });
        for k in &kids {
            walk(*k, groups, children, now, out);
        }
        if !kids.is_empty() {
            if let Some(last) = out.last_mut() {
                last.closes.push(());
            }
        }
    }
    for r in children.get(&None).cloned().unwrap_or_default() {
        walk(r, &groups, &children, now, &mut out);
    }
    out
}

pub async fn get(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, PageError> {
    let s = login::require(&ctx, &headers, "/sessions", StatusCode::OK).await?;
    let now = ctx.clock.now();
    let tokens = ctx
        .store
        .live_tokens_of(&s.user.username, now)
        .await
        .doing("listing sessions")?;
    let page = SessionsPage {
        username: &s.user.username,
        csrf: &s.csrf,
        nodes: tree(&tokens, now),
    };
    Ok(pages::render(StatusCode::OK, &page, None))
}

/// `POST /sessions/revoke`: revokes one of the human's own sessions and everything below it.
pub async fn revoke(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, PageError> {
    let s = login::require(&ctx, &headers, "/sessions", StatusCode::OK).await?;
    let p = read_form(&ctx, &headers, body).await?;
    if !s.csrf_ok(p.one("csrf_token").ok().flatten()) {
        return Err(PageError::forged_form("Reload the page and try again."));
    }
    let Some(sid) = p.one("sid").ok().flatten() else {
        return Err(PageError::bad_request("The form names no session."));
    };
    let now = ctx.clock.now();
    let owned = ctx
        .store
        .live_tokens_of(&s.user.username, now)
        .await
        .doing("listing sessions")?
        .iter()
        .any(|t| t.sid.as_deref() == Some(sid));
    if !owned {
        return Err(PageError::refused(
            StatusCode::NOT_FOUND,
            "That session is not one of your live sessions.",
        ));
    }
    let mut ev = AuditEvent::new("token.revoked");
    ev.subject = Some(s.user.username.clone());
    ev.session = Some(sid.to_string());
    ev.detail = serde_json::json!({ "via": "sessions_page" });
    ctx.writer
        .write(
            WriteOp::RevokeSession {
                sid: sid.to_string(),
            },
            vec![ev],
        )
        .await
        .doing("revoking a session")?;
    Ok(redirect(StatusCode::SEE_OTHER, "/sessions"))
}

fn utc(ts: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(ts).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `GET /sessions/{sid}`: the audit trail of one of the human's sessions.
pub async fn detail(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    PathId(sid): PathId,
) -> Result<Response, PageError> {
    let next = format!("/sessions/{sid}");
    let next = login::safe_next(&next).unwrap_or("/sessions");
    let s = login::require(&ctx, &headers, next, StatusCode::OK).await?;
    let entries = ctx
        .store
        .audit_for_session(&sid, 200)
        .await
        .doing("reading a session's audit trail")?;
    if !entries
        .iter()
        .any(|e| e.subject.as_deref() == Some(s.user.username.as_str()))
    {
        return Err(PageError::refused(
            StatusCode::NOT_FOUND,
            "That session is not one of yours.",
        ));
    }
    let rows = entries
        .into_iter()
        .map(|e| TrailRow {
            time: utc(e.ts),
            kind: e.kind,
            actors: serde_json::from_str::<Vec<String>>(&e.actors)
                .unwrap_or_default()
                .join(", "),
            client: e.client_id.unwrap_or_default(),
            detail: e.detail,
        })
        .collect();
    Ok(pages::render(
        StatusCode::OK,
        &DetailPage { sid: &sid, rows },
        None,
    ))
}
