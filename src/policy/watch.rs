//! Reloading policies without a restart: on SIGHUP, and when a policy file changes (checked
//! every two seconds). An invalid new set is refused — the old one keeps serving — and both
//! outcomes are audit entries.

use std::sync::Arc;
use std::time::Duration;

use super::Policies;
use crate::audit::AuditEvent;
use crate::store::{WriteOp, Writer};

const POLL: Duration = Duration::from_secs(2);

pub async fn watch(policies: Arc<Policies>, writer: Writer) {
    if policies.config.files.is_empty() {
        return;
    }
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = policies.fingerprint();
    let mut tick = tokio::time::interval(POLL);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = signalled => true,
            _ = tick.tick() => false,
        };
        let now = policies.fingerprint();
        if !forced && now == seen {
            continue;
        }
        seen = now;
        let ev = match policies.reload() {
            Ok(Some(version)) => {
                tracing::info!(%version, "policies reloaded");
                let mut ev = AuditEvent::new("policy.reloaded");
                ev.detail =
                    serde_json::json!({ "version": version, "files": policies.current().files });
                ev
            }
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, version = %policies.version(), "new policies refused; the old ones keep serving");
                let mut ev = AuditEvent::new("policy.reload_refused");
                ev.detail =
                    serde_json::json!({ "error": e.to_string(), "serving": policies.version() });
                ev
            }
        };
        if let Err(e) = writer.write(WriteOp::None, vec![ev]).await {
            tracing::error!(error = %e, "could not audit a policy reload");
        }
    }
}
