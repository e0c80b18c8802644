//! `--soak`: one mixed load for a long time at one connection count, with the server's resident
//! memory sampled at a fixed interval, to see whether it stays flat (issue 19: "RSS flat
//! (± 10 %) over a 10-minute mixed run on both backends").

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::report::{Meta, lat, mib, ms};
use crate::scenario::{self, Kind, Outcome, Spec, Window, World};

/// The last sample may differ from the warm point by this much (issue 19).
pub const TOLERANCE: f64 = 0.10;

/// The warm point: the sample after this much load (or after half the soak when it is shorter
/// than twice this).
const WARM_AFTER: Duration = Duration::from_secs(60);

pub struct Sample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Each replica's VmRSS (KiB).
    pub rss_kib: Vec<Option<u64>>,
    /// The servers' CPU since the previous sample, summed over the replicas (% of one core;
    /// NaN for the first).
    pub cpu_pct: f64,
}

pub struct Soak {
    pub outcome: Outcome,
    /// At the start of the load, then at the end of each window of `outcome`.
    pub samples: Vec<Sample>,
    pub every: Duration,
    pub duration: Duration,
}

/// Drives [`Kind::Mixed`] on `conns` connections for `duration`, sampling the server
/// processes `pids` (one per replica) every `every`, and prints each sample as it is taken.
pub async fn run(
    world: Arc<World>,
    conns: usize,
    duration: Duration,
    every: Duration,
    pids: Vec<u32>,
) -> anyhow::Result<Soak> {
    let spec = Spec {
        kind: Kind::Mixed,
        conns,
        warmup: Duration::ZERO,
        duration,
        window: every,
    };
    let live = spec.live();
    let pid_s: Vec<String> = pids.iter().map(u32::to_string).collect();
    let load = tokio::spawn(scenario::run_live(spec, world, pids, live.clone()));
    let rss = || -> Vec<Option<u64>> {
        pid_s
            .iter()
            .map(|p| crate::server::status_kib(p, "VmRSS:"))
            .collect()
    };
    let tck = crate::server::clk_tck();
    let n = live.windows.lock().map(|w| w.len()).unwrap_or(0);
    let mut samples = vec![Sample {
        t_s: 0.0,
        rss_kib: rss(),
        cpu_pct: f64::NAN,
    }];
    let (mut prev_t, mut prev_cpu) = (live.start, crate::server::cpu_ticks_sum(&pid_s));
    for i in 1..=n {
        tokio::time::sleep_until((live.start + (every * i as u32).min(duration)).into()).await;
        let now = Instant::now();
        let cpu = crate::server::cpu_ticks_sum(&pid_s);
        let rss_kib = rss();
        let cpu_pct = match (prev_cpu, cpu) {
            (Some(a), Some(b)) => {
                b.saturating_sub(a) as f64 / tck / (now - prev_t).as_secs_f64().max(1e-9) * 100.0
            }
            _ => f64::NAN,
        };
        (prev_t, prev_cpu) = (now, cpu);
        let t_s = (now - live.start).as_secs_f64();
        let rss_text = rss_cell(&rss_kib);
        samples.push(Sample {
            t_s,
            rss_kib,
            cpu_pct,
        });
        // The window that just ended is complete once every connection has had its next
        // answer; a moment later is close enough for a progress line.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let w = live.windows.lock().ok().and_then(|w| w.get(i - 1).cloned());
        let width = window_width(i - 1, every, duration).as_secs_f64().max(1e-9);
        eprintln!(
            "   soak {t_s:>6.0} s: RSS {rss_text:>7} MiB  server CPU {cpu_pct:>4.0}%  {:>7.0} req/s  p99 {:>8.2} ms  errors {}",
            w.as_ref().map_or(0.0, |w| w.hist.len() as f64 / width),
            w.as_ref().and_then(Window::p99_ms).unwrap_or(f64::NAN),
            w.as_ref().map_or(0, |w| w.errors),
        );
    }
    let outcome = load.await?;
    Ok(Soak {
        outcome,
        samples,
        every,
        duration,
    })
}

/// `85.6`, or `85.6 / 79.0` for replicas.
fn rss_cell(rss: &[Option<u64>]) -> String {
    let v: Vec<String> = rss
        .iter()
        .map(|r| r.map_or_else(|| "—".into(), |r| format!("{:.1}", mib(r))))
        .collect();
    v.join(" / ")
}

/// Window `i` of a soak is `every` long, except a shorter last one.
fn window_width(i: usize, every: Duration, duration: Duration) -> Duration {
    duration
        .saturating_sub(every * i as u32)
        .min(every)
        .max(Duration::from_millis(1))
}

/// What the samples say about memory.
pub struct Verdict {
    pub warm: (f64, u64),
    pub last: (f64, u64),
    pub max: (f64, u64),
    /// `last / warm - 1`.
    pub change: f64,
    pub flat: bool,
    /// When the warm point was meant to be taken (60 s, or half a shorter soak).
    pub warm_target_s: f64,
}

impl Soak {
    pub fn replicas(&self) -> usize {
        self.samples.first().map_or(1, |s| s.rss_kib.len())
    }

    /// What the samples of `replica` say.
    pub fn verdict(&self, replica: usize) -> Option<Verdict> {
        let warm_target = WARM_AFTER.min(self.duration / 2).as_secs_f64();
        let known = || {
            self.samples.iter().enumerate().filter_map(move |(i, s)| {
                s.rss_kib
                    .get(replica)
                    .copied()
                    .flatten()
                    .map(|r| (i, s.t_s, r))
            })
        };
        // By when each sample was due: they are taken a little late.
        let due = |i: usize| (self.every * i as u32).min(self.duration).as_secs_f64();
        let warm = known()
            .find(|(i, _, _)| due(*i) >= warm_target)
            .map(|(_, t, r)| (t, r))?;
        let known = || known().map(|(_, t, r)| (t, r));
        let last = known().next_back()?;
        let max = known().max_by_key(|(_, r)| *r)?;
        let change = last.1 as f64 / (warm.1 as f64).max(1.0) - 1.0;
        Some(Verdict {
            warm,
            last,
            max,
            change,
            flat: change.abs() <= TOLERANCE,
            warm_target_s: warm_target,
        })
    }

    /// Sample `i` (≥ 1) closes window `i - 1`: its answers and their rate.
    fn window(&self, i: usize) -> Option<(&Window, f64)> {
        let w = self.outcome.windows.get(i.checked_sub(1)?)?;
        let width = window_width(i - 1, self.every, self.duration).as_secs_f64();
        Some((w, w.hist.len() as f64 / width.max(1e-9)))
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.2}"))
}

pub fn markdown(meta: &Meta, soak: &Soak) -> String {
    let mut s = String::new();
    let o = &soak.outcome;
    let _ = writeln!(
        s,
        "## mandate soak — {}, {} CPUs, {}\n",
        meta.backend_label(),
        meta.cpus,
        meta.started
    );
    let _ = writeln!(
        s,
        "mixed load for {:.0} s on {} connections: each connection sends, in turn, `cc`, `exchange`, \
         `introspect` (one of {} live tokens at random) and `revoke` (the token its own `cc` minted); \
         the server's RSS (VmRSS) sampled every {:.0} s  ",
        soak.duration.as_secs_f64(),
        o.conns,
        meta.live_tokens,
        soak.every.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "server startup: {:.0} ms on a new database{}; RSS after seeding {:.1} MiB{}\n",
        meta.startup_fresh_ms,
        meta.startup_existing_ms
            .map(|e| format!(", {e:.0} ms on the existing one after the soak"))
            .unwrap_or_default(),
        mib(meta.rss_after_seed_kib),
        meta.rss_idle_after_restart_kib
            .map(|k| format!(", after restart {:.1} MiB", mib(k)))
            .unwrap_or_default()
    );
    let replicas = soak.replicas();
    for r in 0..replicas {
        let who = if replicas > 1 {
            format!("replica {}: ", r + 1)
        } else {
            String::new()
        };
        let peak = o.peak_rss_each_kib.get(r).copied().unwrap_or(0);
        match soak.verdict(r) {
            Some(v) => {
                let _ = writeln!(
                    s,
                    "{who}**RSS {}**: warm point (after {:.0} s of load) {:.1} MiB, last ({:.0} s) {:.1} MiB ({:+.1} %), \
                     max sampled {:.1} MiB at {:.0} s, peak (VmHWM over the soak) {:.1} MiB. Target (issue 19): the last \
                     within ±{:.0} % of the warm point.\n",
                    if v.flat { "flat" } else { "NOT flat" },
                    v.warm.0,
                    mib(v.warm.1),
                    v.last.0,
                    mib(v.last.1),
                    v.change * 100.0,
                    mib(v.max.1),
                    v.max.0,
                    mib(peak),
                    TOLERANCE * 100.0
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "{who}**RSS**: no samples (could not read /proc/PID/status).\n"
                );
            }
        }
    }
    let verdict = soak.verdict(0);
    if verdict
        .as_ref()
        .is_some_and(|v| v.warm_target_s < WARM_AFTER.as_secs_f64())
    {
        let _ = writeln!(
            s,
            "(The soak is shorter than {:.0} s, so the warm point is the sample after half of it, not after {:.0} s.)\n",
            2.0 * WARM_AFTER.as_secs_f64(),
            WARM_AFTER.as_secs_f64()
        );
    }

    // At most about 20 rows; the warm, largest and last samples always.
    let n = soak.samples.len();
    let step = n.div_ceil(20).max(1);
    let marks = |i: usize| -> &'static str {
        let Some(v) = &verdict else { return "" };
        let t = soak.samples.get(i).map_or(-1.0, |s| s.t_s);
        if t == v.warm.0 {
            " (warm)"
        } else if replicas == 1 && t == v.max.0 && t != v.last.0 {
            " (max)"
        } else {
            ""
        }
    };
    let rss_head = if replicas > 1 {
        "RSS MiB (each replica)"
    } else {
        "RSS MiB"
    };
    let _ = writeln!(
        s,
        "| t s | {rss_head} | req/s | p99 ms | max ms | errors | server CPU % |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (i, sm) in soak.samples.iter().enumerate() {
        let mark = marks(i);
        if i % step != 0 && i + 1 != n && mark.is_empty() {
            continue;
        }
        let rss = rss_cell(&sm.rss_kib);
        match soak.window(i) {
            Some((w, rps)) => {
                let _ = writeln!(
                    s,
                    "| {:.0}{mark} | {rss} | {rps:.0} | {} | {} | {} | {:.0} |",
                    sm.t_s,
                    opt(w.p99_ms()),
                    opt(w.max_ms()),
                    w.errors,
                    sm.cpu_pct
                );
            }
            None => {
                let _ = writeln!(s, "| {:.0}{mark} | {rss} | | | | | |", sm.t_s);
            }
        }
    }
    if step > 1 {
        let _ = writeln!(
            s,
            "\nOne sample in {step} shown (and the marked ones); all {n} are in load.json and load-soak.png."
        );
    }
    let _ = writeln!(
        s,
        "\nreq/s, p99, max and errors: the answers that arrived in the {:.0} s before the sample. \
         Server CPU: % of one core since the previous sample{}.\n",
        soak.every.as_secs_f64(),
        if replicas > 1 {
            ", summed over the replicas"
        } else {
            ""
        }
    );

    let secs = o.elapsed.as_secs_f64().max(1e-9);
    s.push_str(
        "| operation | ok | req/s | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (name, h) in o.kind.parts().iter().zip(&o.hists) {
        let _ = writeln!(
            s,
            "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            h.len(),
            h.len() as f64 / secs,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
    }
    let h = o.total();
    let _ = writeln!(
        s,
        "| all | {} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
        h.len(),
        o.rps(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    );
    let _ = writeln!(
        s,
        "errors {}; worst {:.0}-s p99 {} ms; server CPU {:.0} %, client CPU {:.0} % of one core over the soak.",
        o.errors,
        soak.every.as_secs_f64(),
        opt(o.worst_window_p99_ms()),
        o.server_cpu_pct,
        o.client_cpu_pct
    );
    let mut notes = meta.notes.clone();
    for e in &o.error_samples {
        notes.push(format!("error sample: {e}"));
    }
    if !notes.is_empty() {
        s.push_str("\nNotes:\n");
        for n in notes {
            let _ = writeln!(s, "- {}", n.replace('\n', " "));
        }
    }
    s
}

pub fn json(meta: &Meta, soak: &Soak) -> Value {
    let o = &soak.outcome;
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    let samples: Vec<Value> = soak
        .samples
        .iter()
        .enumerate()
        .map(|(i, sm)| {
            let w = soak.window(i);
            json!({
                "t_s": sm.t_s,
                "rss_mib": sm.rss_kib.first().copied().flatten().map(mib),
                "rss_mib_by_replica": sm.rss_kib.iter().map(|r| r.map(mib)).collect::<Vec<_>>(),
                "server_cpu_pct": sm.cpu_pct.is_finite().then_some(sm.cpu_pct),
                "ok": w.map(|(w, _)| w.hist.len()),
                "rps": w.map(|(_, r)| r),
                "p99_ms": w.and_then(|(w, _)| w.p99_ms()),
                "max_ms": w.and_then(|(w, _)| w.max_ms()),
                "errors": w.map(|(w, _)| w.errors),
            })
        })
        .collect();
    let parts: Vec<Value> = o
        .kind
        .parts()
        .iter()
        .zip(&o.hists)
        .map(|(n, h)| json!({"part": n, "ok": h.len(), "rps": h.len() as f64 / secs, "latency_ms": lat(h)}))
        .collect();
    let verdict = |v: Verdict| {
        json!({
            "warm_t_s": v.warm.0,
            "warm_mib": mib(v.warm.1),
            "last_t_s": v.last.0,
            "last_mib": mib(v.last.1),
            "max_t_s": v.max.0,
            "max_mib": mib(v.max.1),
            "change_pct": v.change * 100.0,
            "tolerance_pct": TOLERANCE * 100.0,
            "flat": v.flat,
        })
    };
    let rss_by_replica: Vec<Value> = (0..soak.replicas())
        .map(|r| soak.verdict(r).map(verdict).unwrap_or(Value::Null))
        .collect();
    let h = o.total();
    json!({
        "mode": "soak",
        "started": meta.started,
        "backend": meta.backend,
        "cpus": meta.cpus,
        "conns": o.conns,
        "soak_s": soak.duration.as_secs_f64(),
        "every_s": soak.every.as_secs_f64(),
        "live_tokens": meta.live_tokens,
        "seed_s": meta.seed_s,
        "startup_fresh_ms": meta.startup_fresh_ms,
        "startup_existing_ms": meta.startup_existing_ms,
        "rss_after_seed_mib": mib(meta.rss_after_seed_kib),
        "rss_idle_after_restart_mib": meta.rss_idle_after_restart_kib.map(mib),
        "notes": meta.notes,
        "replicas": soak.replicas(),
        "rss": rss_by_replica.first(),
        "rss_by_replica": rss_by_replica,
        "samples": samples,
        "parts": parts,
        "total": {
            "ok": h.len(),
            "errors": o.errors,
            "seconds": secs,
            "rps": o.rps(),
            "latency_ms": lat(&h),
            "worst_window_p99_ms": o.worst_window_p99_ms(),
            "server_cpu_pct": o.server_cpu_pct,
            "server_cpu_by_replica_pct": o.server_cpu_each_pct,
            "client_cpu_pct": o.client_cpu_pct,
            "server_peak_rss_mib": mib(o.peak_rss_kib),
            "server_peak_rss_by_replica_mib": o.peak_rss_each_kib.iter().map(|k| mib(*k)).collect::<Vec<_>>(),
            "error_samples": o.error_samples,
        },
    })
}
