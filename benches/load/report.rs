//! The Markdown table and the JSON document of a run.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::peer::{self, Peer};
use crate::scenario::{Outcome, Window};

/// What the run was, beyond the per-scenario rows.
pub struct Meta {
    pub started: String,
    pub backend: &'static str,
    pub cpus: usize,
    pub conns: Vec<usize>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub live_tokens: usize,
    pub seed_s: f64,
    pub startup_fresh_ms: f64,
    pub startup_existing_ms: Option<f64>,
    pub rss_after_seed_kib: u64,
    /// Server processes on the one database (`--replicas`).
    pub replicas: usize,
    pub rss_idle_after_restart_kib: Option<u64>,
    /// Problems met while seeding (e.g. `/authorize` failing skips the exchange scenarios).
    pub notes: Vec<String>,
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0 && num.is_finite() && den.is_finite()).then(|| num / den)
}

/// `(req/s ÷ peer best req/s, peer p99 ÷ mandate p99 at the same conns)`.
fn peer_ratios(o: &Outcome, p: Option<&Peer>) -> (Option<f64>, Option<f64>, Option<String>) {
    let (Some(p), Some(test)) = (p, peer::test_for(o.kind)) else {
        return (None, None, None);
    };
    let rps = p.best(test).and_then(|b| ratio(o.rps(), b.rps));
    let p99 = p
        .at(test, o.conns)
        .and_then(|r| ratio(r.p99_ms, ms(o.total().value_at_quantile(0.99))));
    (rps, p99, Some(test.to_string()))
}

/// req/s over the `healthz` req/s at the same connection count in this run: how much of the
/// machine's own HTTP ceiling a scenario reaches.
fn ceiling_ratio(o: &Outcome, outcomes: &[Outcome]) -> Option<f64> {
    let ceiling = outcomes
        .iter()
        .find(|h| h.kind == crate::scenario::Kind::Healthz && h.conns == o.conns)?;
    ratio(o.rps(), ceiling.rps())
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.0} %", v * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn x(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}×")).unwrap_or_else(|| "—".into())
}

impl Meta {
    /// `SQLite`, or `PostgreSQL, 2 replicas`.
    pub fn backend_label(&self) -> String {
        if self.replicas > 1 {
            format!("{}, {} replicas", self.backend, self.replicas)
        } else {
            self.backend.to_string()
        }
    }
}

pub fn markdown(meta: &Meta, outcomes: &[Outcome], peer: Option<&Peer>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## mandate load benchmark — {}, {} CPUs, {}\n",
        meta.backend_label(),
        meta.cpus,
        meta.started
    );
    let _ = writeln!(
        s,
        "duration {:.0} s per run after {:.0} s warm-up; connections {:?}; {} live tokens seeded in {:.1} s ({:.0}/s)  ",
        meta.duration_s,
        meta.warmup_s,
        meta.conns,
        meta.live_tokens,
        meta.seed_s,
        meta.live_tokens as f64 / meta.seed_s.max(1e-9)
    );
    let _ = write!(
        s,
        "server startup: {:.0} ms on a new database",
        meta.startup_fresh_ms
    );
    if let Some(e) = meta.startup_existing_ms {
        let _ = write!(s, ", {e:.0} ms on the existing one after the run");
    }
    let _ = writeln!(
        s,
        "; RSS after seeding {:.1} MiB{}\n",
        mib(meta.rss_after_seed_kib),
        meta.rss_idle_after_restart_kib
            .map(|k| format!(", after restart {:.1} MiB", mib(k)))
            .unwrap_or_default()
    );
    let with_peer = peer.is_some();
    s.push_str("| scenario | conns | req/s | ÷ healthz | p50 ms | p90 ms | p99 ms | max ms | worst 1-s p99 ms | errors | server CPU % | client CPU % | peak RSS MiB |");
    if with_peer {
        s.push_str(" req/s ÷ peer best | peer p99 ÷ p99 |");
    }
    s.push_str("\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if with_peer {
        s.push_str("---:|---:|");
    }
    s.push('\n');
    for o in outcomes {
        let h = o.total();
        let (r1, r2, _) = peer_ratios(o, peer);
        let _ = write!(
            s,
            "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.0} | {:.0} | {:.1} |",
            o.kind.name(),
            o.conns,
            o.rps(),
            pct(ceiling_ratio(o, outcomes)),
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            worst_second(o),
            o.errors,
            o.server_cpu_pct,
            o.client_cpu_pct,
            mib(o.peak_rss_kib)
        );
        if with_peer {
            let _ = write!(s, " {} | {} |", x(r1), x(r2));
        }
        s.push('\n');
        if o.hists.len() > 1 {
            for (name, h) in o.kind.parts().iter().zip(&o.hists) {
                let _ = write!(
                    s,
                    "| ↳ {name} | {} | {:.0} | | {:.2} | {:.2} | {:.2} | {:.2} | | | | | |",
                    o.conns,
                    h.len() as f64 / o.elapsed.as_secs_f64().max(1e-9),
                    ms(h.value_at_quantile(0.50)),
                    ms(h.value_at_quantile(0.90)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.max()),
                );
                if with_peer {
                    s.push_str(" | |");
                }
                s.push('\n');
            }
        }
    }
    s.push_str(
        "\nreq/s counts answers that passed their check (status 200 and a token / `\"active\":true`); \
         attest = challenge + proof + /attest per operation; ÷ healthz = req/s over `GET /healthz`'s \
         req/s at the same connection count in this run (the machine's HTTP ceiling). Worst 1-s p99: the highest p99 \
         among the seconds of the run, by when each answer arrived (`*` = some second had no answer at all: a stall \
         of a second or more). CPU in % of one core over the measured \
         window (server = the mandate process, client = this load generator on the same machine). \
         Peak RSS = VmHWM of the server",
    );
    if outcomes.iter().all(|o| o.peak_is_per_run) {
        s.push_str(" during that run (reset before each run).\n");
    } else {
        s.push_str(" since it started (could not reset it per run).\n");
    }
    if let Some(p) = peer {
        s.push_str(
            "req/s ÷ peer best: mandate's figure over the peer's best req/s for the same operation \
             (cc → cc, introspect-* → introspect, exchange/subexchange → exchange_jwt); peer p99 ÷ \
             p99: the peer's p99 at the same connection count over mandate's (> 1 = mandate faster).\n\n",
        );
        let _ = writeln!(s, "Peer (node-oidc-provider, {}):\n", p.summary.display());
        s.push_str("| mode | test | conns | req/s | p50 ms | p99 ms | errors | server CPU % |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
        for r in &p.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} |",
                r.mode, r.test, r.conns, r.rps, r.p50_ms, r.p99_ms, r.errors, r.server_cpu
            );
        }
    }
    let mut notes = meta.notes.clone();
    for o in outcomes {
        if o.repeat_revocations > 0 {
            notes.push(format!(
                "{} @{}: the tokens minted to revoke ran out; {} revocations repeated an earlier one (a cheaper path)",
                o.kind.name(),
                o.conns,
                o.repeat_revocations
            ));
        }
        for e in &o.error_samples {
            notes.push(format!("{} @{}: error sample: {e}", o.kind.name(), o.conns));
        }
    }
    if !notes.is_empty() {
        s.push_str("\nNotes:\n");
        for n in notes {
            let _ = writeln!(s, "- {}", n.replace('\n', " "));
        }
    }
    s
}

/// The worst second's p99, starred when some second had no successful answer at all.
fn worst_second(o: &Outcome) -> String {
    let empty = o.windows.iter().any(|w| w.hist.is_empty());
    match o.worst_window_p99_ms() {
        Some(v) if empty => format!("{v:.2} *"),
        Some(v) => format!("{v:.2}"),
        None => "—".into(),
    }
}

pub fn lat(h: &hdrhistogram::Histogram<u64>) -> Value {
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": h.mean() / 1000.0,
    })
}

pub fn json(meta: &Meta, outcomes: &[Outcome], peer: Option<&Peer>) -> Value {
    let results: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let h = o.total();
            let secs = o.elapsed.as_secs_f64().max(1e-9);
            let (r1, r2, test) = peer_ratios(o, peer);
            let parts: Vec<Value> = o
                .kind
                .parts()
                .iter()
                .zip(&o.hists)
                .map(|(n, h)| json!({"part": n, "ok": h.len(), "rps": h.len() as f64 / secs, "latency_ms": lat(h)}))
                .collect();
            json!({
                "scenario": o.kind.name(),
                "conns": o.conns,
                "ok": h.len(),
                "errors": o.errors,
                "seconds": secs,
                "rps": o.rps(),
                "rps_ratio_to_healthz": ceiling_ratio(o, outcomes),
                "latency_ms": lat(&h),
                "server_cpu_pct": o.server_cpu_pct,
                "server_cpu_by_replica_pct": o.server_cpu_each_pct,
                "client_cpu_pct": o.client_cpu_pct,
                "server_peak_rss_mib": mib(o.peak_rss_kib),
                "server_peak_rss_by_replica_mib": o.peak_rss_each_kib.iter().map(|k| mib(*k)).collect::<Vec<_>>(),
                "peak_rss_per_run": o.peak_is_per_run,
                "parts": parts,
                "repeat_revocations": o.repeat_revocations,
                "window_s": o.window.as_secs_f64(),
                "worst_second_p99_ms": o.worst_window_p99_ms(),
                "p99_ms_by_second": o.windows.iter().map(Window::p99_ms).collect::<Vec<_>>(),
                "max_ms_by_second": o.windows.iter().map(Window::max_ms).collect::<Vec<_>>(),
                "ok_by_second": o.windows.iter().map(|w| w.hist.len()).collect::<Vec<_>>(),
                "errors_by_second": o.windows.iter().map(|w| w.errors).collect::<Vec<_>>(),
                "error_samples": o.error_samples,
                "peer": test.map(|t| json!({"test": t, "rps_ratio_to_best": r1, "p99_ratio_same_conns": r2})),
            })
        })
        .collect();
    json!({
        "started": meta.started,
        "backend": meta.backend,
        "replicas": meta.replicas,
        "cpus": meta.cpus,
        "conns": meta.conns,
        "duration_s": meta.duration_s,
        "warmup_s": meta.warmup_s,
        "live_tokens": meta.live_tokens,
        "seed_s": meta.seed_s,
        "startup_fresh_ms": meta.startup_fresh_ms,
        "startup_existing_ms": meta.startup_existing_ms,
        "rss_after_seed_mib": mib(meta.rss_after_seed_kib),
        "rss_idle_after_restart_mib": meta.rss_idle_after_restart_kib.map(mib),
        "notes": meta.notes,
        "results": results,
        "peer": peer.map(|p| json!({
            "summary": p.summary.display().to_string(),
            "rows": p.rows.iter().map(|r| json!({"mode": r.mode, "test": r.test, "conns": r.conns,
                "rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors})).collect::<Vec<_>>(),
        })),
    })
}
