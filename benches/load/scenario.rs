//! Scenarios and the load loop: N keep-alive connections, each sending one request after the
//! other for warm-up + duration; every answer is checked (status and content) and every
//! latency of the measured window goes into an HDR histogram, and into the histogram of the
//! window (1 s by default) in which the answer arrived, so a stall shows when it happened.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::header::HeaderValue;

use crate::http::{Conn, FORM, contains, json_str};
use crate::seed::{Agent, CC_BODY};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET /healthz`: no work behind it, so its req/s is what this machine's HTTP path can do
    /// at all, the ceiling every other scenario is compared with in the same run.
    Healthz,
    Cc,
    Exchange,
    /// `exchange` with a fresh DPoP proof per request (RFC 9449), signed by the load
    /// generator: the cost of binding, beside `exchange` in the same run.
    ExchangeDpop,
    SubExchange,
    IntrospectHot,
    IntrospectRandom,
    Attest,
    /// Last: it revokes tokens of the shared pool.
    RevokeMixed,
    /// One revocation (a part of `revoke-mixed` and of `mixed`, not a scenario of its own).
    Revoke,
    /// The soak load (`--soak`), not a scenario of the table: each connection cycles through
    /// [`MIX`], one request each.
    Mixed,
}

/// What a `mixed` connection sends, in turn: the revocation revokes the token its own `cc`
/// minted, so every revocation revokes a live token however long the run.
pub const MIX: [Kind; 4] = [
    Kind::Cc,
    Kind::Exchange,
    Kind::IntrospectRandom,
    Kind::Revoke,
];

impl Kind {
    /// The order scenarios run in.
    pub const ALL: [Kind; 9] = [
        Kind::Healthz,
        Kind::Cc,
        Kind::Exchange,
        Kind::ExchangeDpop,
        Kind::SubExchange,
        Kind::IntrospectHot,
        Kind::IntrospectRandom,
        Kind::Attest,
        Kind::RevokeMixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Healthz => "healthz",
            Kind::Cc => "cc",
            Kind::Exchange => "exchange",
            Kind::ExchangeDpop => "exchange-dpop",
            Kind::SubExchange => "subexchange",
            Kind::IntrospectHot => "introspect-hot",
            Kind::IntrospectRandom => "introspect-random",
            Kind::Attest => "attest",
            Kind::RevokeMixed => "revoke-mixed",
            Kind::Revoke => "revoke",
            Kind::Mixed => "mixed",
        }
    }

    /// The request a connection sends as its `seq`-th, and the part it counts in (`None`:
    /// the part [`one`] says).
    fn pick(self, seq: u64) -> (Kind, Option<usize>) {
        match self {
            Kind::Mixed => {
                let i = (seq % MIX.len() as u64) as usize;
                (MIX[i], Some(i))
            }
            k => (k, None),
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The part names of a scenario (a revoke-mixed run mixes two kinds of request).
    pub fn parts(self) -> &'static [&'static str] {
        match self {
            Kind::RevokeMixed => &["introspect", "revoke"],
            Kind::Mixed => &["cc", "exchange", "introspect", "revoke"],
            _ => &["all"],
        }
    }
}

/// Everything the scenarios send, prepared once.
pub struct World {
    /// The server replicas; connection c talks to `addrs[c % len]`.
    pub addrs: Vec<SocketAddr>,
    pub issuer: String,
    pub host_auth: HeaderValue,
    pub rs_auth: HeaderValue,
    /// Human → agent exchange body (alice's token, build-bot's agent token).
    pub exchange_body: Option<Bytes>,
    /// Agent → sub-agent exchange body (build-bot's delegated token, sub-bot's agent token).
    pub subexchange_body: Option<Bytes>,
    pub hot_body: Bytes,
    /// `token=...` bodies of the live pool (never revoked).
    pub pool: Vec<Bytes>,
    /// Tokens minted for revoke-mixed just before each of its runs.
    pub revoke_pool: RwLock<Arc<Vec<Bytes>>>,
    /// Next `revoke_pool` index to revoke; past the end it wraps (repeat revocations).
    pub revoke_cursor: AtomicUsize,
    pub agent: Agent,
    /// The key `exchange-dpop` proofs are signed with.
    pub dpop_key: mandate_agent::DpopKey,
}

/// One run's measurements.
pub struct Outcome {
    pub kind: Kind,
    pub conns: usize,
    /// Measured window (first measured start to last completion).
    pub elapsed: Duration,
    /// Per part: histogram of successful requests (µs).
    pub hists: Vec<Histogram<u64>>,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Summed over the replicas.
    pub server_cpu_pct: f64,
    /// Each replica's.
    pub server_cpu_each_pct: Vec<f64>,
    pub client_cpu_pct: f64,
    /// The largest replica's.
    pub peak_rss_kib: u64,
    /// Each replica's.
    pub peak_rss_each_kib: Vec<u64>,
    /// True when VmHWM could be reset before the run (peak of this run, not since start).
    pub peak_is_per_run: bool,
    /// revoke-mixed: revocations that hit an already revoked token (pool exhausted).
    pub repeat_revocations: u64,
    /// Width of the windows below.
    pub window: Duration,
    /// Consecutive windows of the measured time, by when each answer arrived (an answer still
    /// in flight at the end lands in the last one).
    pub windows: Vec<Window>,
}

/// The answers that arrived in one window of a run.
#[derive(Clone)]
pub struct Window {
    /// Latency of the successful ones (µs, 2 significant figures).
    pub hist: Histogram<u64>,
    /// The exact largest of those latencies (µs).
    pub max_us: u64,
    pub errors: u64,
}

impl Window {
    fn new() -> Self {
        Self {
            hist: new_window_hist(),
            max_us: 0,
            errors: 0,
        }
    }

    /// p99 in ms; `None` when no answer arrived (a stall longer than the window).
    pub fn p99_ms(&self) -> Option<f64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(0.99) as f64 / 1000.0)
    }

    pub fn max_ms(&self) -> Option<f64> {
        (!self.hist.is_empty()).then(|| self.max_us as f64 / 1000.0)
    }
}

impl Outcome {
    pub fn total(&self) -> Histogram<u64> {
        let mut h = new_hist();
        for p in &self.hists {
            let _ = h.add(p);
        }
        h
    }

    pub fn rps(&self) -> f64 {
        self.total().len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The worst window's p99 (ms): a stall shorter than the run that the whole-run p99 hides.
    pub fn worst_window_p99_ms(&self) -> Option<f64> {
        self.windows
            .iter()
            .filter_map(Window::p99_ms)
            .max_by(f64::total_cmp)
    }
}

pub fn new_hist() -> Histogram<u64> {
    // 1 µs .. 120 s, 3 significant figures.
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap())
}

/// A window's histogram: 2 significant figures (within 1 %) keeps one at about 21 KiB, since a
/// run holds one per window plus one per connection.
fn new_window_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 2).unwrap_or_else(|_| Histogram::new(2).unwrap())
}

/// A connection's part of the window it is in. When one of its answers arrives in a later
/// window it hands this over to the run's windows: one lock per connection and window, none
/// per request.
struct OpenWindow {
    index: usize,
    w: Window,
}

impl OpenWindow {
    fn hand_over(&mut self, windows: &Mutex<Vec<Window>>) {
        if self.w.hist.is_empty() && self.w.errors == 0 {
            return;
        }
        if let Ok(mut all) = windows.lock() {
            if let Some(slot) = all.get_mut(self.index) {
                let _ = slot.hist.add(&self.w.hist);
                slot.max_us = slot.max_us.max(self.w.max_us);
                slot.errors += self.w.errors;
            }
        }
        self.w.hist.reset();
        self.w.max_us = 0;
        self.w.errors = 0;
    }
}

/// The window an answer arriving at `t` falls in; late answers go to the last one.
fn window_index(t: Instant, from: Instant, width: Duration, count: usize) -> usize {
    let i = t.saturating_duration_since(from).as_nanos() / width.as_nanos().max(1);
    (i as usize).min(count.saturating_sub(1))
}

struct ConnStats {
    hists: Vec<Histogram<u64>>,
    errors: u64,
    samples: Vec<String>,
    first_start: Option<Instant>,
    last_end: Option<Instant>,
    repeats: u64,
}

/// What a connection carries from one request to the next.
struct ConnCtx {
    rng: u64,
    /// The revoke-mixed pool as it was when the run started.
    revoke: Arc<Vec<Bytes>>,
    /// Revocations past the end of `revoke` (already revoked tokens).
    repeats: u64,
    /// `mixed`: keep the token `cc` minted (`token=...`) for the revocation that follows.
    keep_minted: bool,
    minted: Option<Bytes>,
}

/// One operation: which part it belongs to and whether the answer was right.
async fn one(
    kind: Kind,
    w: &World,
    conn: &mut Conn,
    seq: u64,
    cx: &mut ConnCtx,
) -> (usize, Result<(), String>) {
    let ok_token = |a: &crate::http::Answer| matches!(json_str(&a.body, "access_token"), Some(t) if a.status == 200 && t.starts_with("ey"));
    let check = |r: Result<crate::http::Answer, String>,
                 good: &dyn Fn(&crate::http::Answer) -> bool| match r {
        Ok(a) if good(&a) => Ok(()),
        Ok(a) => Err(a.excerpt()),
        Err(e) => Err(e),
    };
    match kind {
        Kind::Healthz => {
            let r = conn.get("/healthz").await;
            (0, check(r, &|a| a.status == 200))
        }
        Kind::Cc => {
            let r = post(
                conn,
                "/token",
                &w.host_auth,
                Bytes::from_static(CC_BODY.as_bytes()),
            )
            .await;
            if cx.keep_minted {
                if let Ok(a) = &r {
                    cx.minted = json_str(&a.body, "access_token")
                        .map(|t| Bytes::from(format!("token={t}")));
                }
            }
            (0, check(r, &ok_token))
        }
        Kind::Exchange | Kind::SubExchange => {
            let body = if kind == Kind::Exchange {
                &w.exchange_body
            } else {
                &w.subexchange_body
            };
            let Some(body) = body.clone() else {
                return (0, Err("not seeded".into()));
            };
            let r = post(conn, "/token", &w.host_auth, body).await;
            (0, check(r, &ok_token))
        }
        Kind::ExchangeDpop => {
            let Some(body) = w.exchange_body.clone() else {
                return (0, Err("not seeded".into()));
            };
            let htu = format!("{}/token", w.issuer);
            let proof = match w.dpop_key.proof("POST", &htu, None, None) {
                Ok(p) => p,
                Err(e) => return (0, Err(e.to_string())),
            };
            let r = conn
                .post_with("/token", FORM, Some(&w.host_auth), Some(proof), body)
                .await;
            let bound = |a: &crate::http::Answer| {
                ok_token(a) && json_str(&a.body, "token_type") == Some("DPoP")
            };
            (0, check(r, &bound))
        }
        Kind::IntrospectHot | Kind::IntrospectRandom => {
            let body = if kind == Kind::IntrospectHot || w.pool.is_empty() {
                w.hot_body.clone()
            } else {
                w.pool[(next_rand(&mut cx.rng) % w.pool.len() as u64) as usize].clone()
            };
            let r = post(conn, "/introspect", &w.rs_auth, body).await;
            (
                0,
                check(r, &|a| {
                    a.status == 200 && contains(&a.body, b"\"active\":true")
                }),
            )
        }
        Kind::Revoke => (0, revoke(w, conn, cx).await),
        Kind::RevokeMixed => {
            if w.pool.is_empty() || cx.revoke.is_empty() {
                return (0, Err("no pool".into()));
            }
            if seq % 4 == 3 {
                (1, revoke(w, conn, cx).await)
            } else {
                let body = w.pool[(next_rand(&mut cx.rng) % w.pool.len() as u64) as usize].clone();
                let r = post(conn, "/introspect", &w.rs_auth, body).await;
                let good = |a: &crate::http::Answer| {
                    a.status == 200
                        && (contains(&a.body, b"\"active\":true")
                            || contains(&a.body, b"\"active\":false"))
                };
                (0, check(r, &good))
            }
        }
        Kind::Attest => (0, w.agent.attest(conn, &w.issuer).await.map(|_| ())),
        Kind::Mixed => (0, Err("mixed is resolved by Kind::pick".into())),
    }
}

/// Revokes the token this connection's `cc` just minted (`mixed`), else the next one of the
/// revoke-mixed pool.
async fn revoke(w: &World, conn: &mut Conn, cx: &mut ConnCtx) -> Result<(), String> {
    let body = match cx.minted.take() {
        Some(b) => b,
        None if cx.keep_minted => return Err("no token minted to revoke".into()),
        None => {
            let n = cx.revoke.len();
            if n == 0 {
                return Err("no pool".into());
            }
            let i = w.revoke_cursor.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                cx.repeats += 1;
            }
            cx.revoke[i % n].clone()
        }
    };
    match post(conn, "/revoke", &w.host_auth, body).await {
        Ok(a) if a.status == 200 => Ok(()),
        Ok(a) => Err(a.excerpt()),
        Err(e) => Err(e),
    }
}

async fn post(
    conn: &mut Conn,
    path: &'static str,
    auth: &HeaderValue,
    body: Bytes,
) -> Result<crate::http::Answer, String> {
    conn.post(path, FORM, Some(auth), body).await
}

fn next_rand(s: &mut u64) -> u64 {
    // xorshift64*
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// One run: `kind` on `conns` connections, `warmup` unrecorded, then `duration` recorded, also
/// in consecutive windows of `window`.
#[derive(Clone, Copy)]
pub struct Spec {
    pub kind: Kind,
    pub conns: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub window: Duration,
}

/// A run's clock and its windows as they fill, for a caller that watches the run (the soak).
#[derive(Clone)]
pub struct Live {
    /// When the warm-up starts (the measured time starts `warmup` later).
    pub start: Instant,
    /// Each connection hands its part of a window over when it moves on to the next one, so a
    /// window is complete shortly after it ends.
    pub windows: Arc<Mutex<Vec<Window>>>,
}

impl Spec {
    fn window(&self) -> Duration {
        self.window.max(Duration::from_millis(1))
    }

    /// Starts the clock now.
    pub fn live(&self) -> Live {
        let n = self
            .duration
            .as_nanos()
            .div_ceil(self.window().as_nanos())
            .max(1) as usize;
        Live {
            start: Instant::now(),
            windows: Arc::new(Mutex::new(vec![Window::new(); n])),
        }
    }
}

/// Runs `spec` against the server processes `server_pids` (one per replica).
pub async fn run(spec: Spec, world: Arc<World>, server_pids: Vec<u32>) -> Outcome {
    let live = spec.live();
    run_live(spec, world, server_pids, live).await
}

/// [`run`] on the clock and windows of `live`.
pub async fn run_live(spec: Spec, world: Arc<World>, server_pids: Vec<u32>, live: Live) -> Outcome {
    let Spec {
        kind,
        conns,
        warmup,
        duration,
        ..
    } = spec;
    let window = spec.window();
    let pids: Vec<String> = server_pids.iter().map(u32::to_string).collect();
    let tck = crate::server::clk_tck();
    let measure_from = live.start + warmup;
    let end = measure_from + duration;
    let windows = live.windows;
    let n_windows = windows.lock().map(|w| w.len()).unwrap_or(1).max(1);
    let mut tasks = Vec::with_capacity(conns);
    for c in 0..conns {
        let w = world.clone();
        let windows = windows.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(w.addrs[c % w.addrs.len().max(1)]);
            let mut cx = ConnCtx {
                rng: 0x9E37_79B9_7F4A_7C15u64 ^ ((c as u64 + 1) << 17),
                revoke: w.revoke_pool.read().map(|p| p.clone()).unwrap_or_default(),
                repeats: 0,
                keep_minted: kind == Kind::Mixed,
                minted: None,
            };
            let mut st = ConnStats {
                hists: kind.parts().iter().map(|_| new_hist()).collect(),
                errors: 0,
                samples: Vec::new(),
                first_start: None,
                last_end: None,
                repeats: 0,
            };
            let mut open = OpenWindow {
                index: 0,
                w: Window::new(),
            };
            // Staggered, so that revoke-mixed's connections do not revoke all at once; a
            // mixed connection starts its cycle with the cc whose token it revokes.
            let mut seq = if kind == Kind::Mixed { 0 } else { c as u64 };
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let measured = t0 >= measure_from;
                let repeats = cx.repeats;
                let (k, fixed_part) = kind.pick(seq);
                let (part, r) = one(k, &w, &mut conn, seq, &mut cx).await;
                let part = fixed_part.unwrap_or(part);
                let t1 = Instant::now();
                seq += 1;
                if !measured {
                    continue;
                }
                st.first_start.get_or_insert(t0);
                st.last_end = Some(t1);
                st.repeats += cx.repeats - repeats;
                let wi = window_index(t1, measure_from, window, n_windows);
                if wi != open.index {
                    open.hand_over(&windows);
                    open.index = wi;
                }
                match r {
                    Ok(()) => {
                        let us = (t1 - t0).as_micros().max(1) as u64;
                        if let Some(h) = st.hists.get_mut(part) {
                            let _ = h.record(us);
                        }
                        let _ = open.w.hist.record(us);
                        open.w.max_us = open.w.max_us.max(us);
                    }
                    Err(e) => {
                        st.errors += 1;
                        open.w.errors += 1;
                        // A transport failure (no HTTP answer) must not spin: back off a little.
                        let transport = e.contains("transport: ");
                        if st.samples.len() < 3 {
                            st.samples.push(e);
                        }
                        if transport {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }
            open.hand_over(&windows);
            st
        }));
    }
    // CPU and memory of the measured window.
    tokio::time::sleep_until(measure_from.into()).await;
    // Every replica's, so no short-circuit.
    let resets: Vec<bool> = pids
        .iter()
        .map(|p| crate::server::reset_peak_rss(p))
        .collect();
    let peak_is_per_run = resets.iter().all(|r| *r);
    let cpu0: Vec<Option<u64>> = pids.iter().map(|p| crate::server::cpu_ticks(p)).collect();
    let self0 = crate::server::cpu_ticks("self");
    let t0 = Instant::now();
    let mut stats = Vec::new();
    for t in tasks {
        if let Ok(s) = t.await {
            stats.push(s);
        }
    }
    let wall = t0.elapsed().as_secs_f64().max(1e-9);
    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => (b.saturating_sub(a)) as f64 / tck / wall * 100.0,
        _ => f64::NAN,
    };
    let server_cpu_each_pct: Vec<f64> = pids
        .iter()
        .zip(cpu0)
        .map(|(p, c0)| pct(c0, crate::server::cpu_ticks(p)))
        .collect();
    let server_cpu_pct = server_cpu_each_pct.iter().sum();
    let client_cpu_pct = pct(self0, crate::server::cpu_ticks("self"));
    let peak_rss_each_kib: Vec<u64> = pids
        .iter()
        .map(|p| crate::server::status_kib(p, "VmHWM:").unwrap_or(0))
        .collect();
    let peak_rss_kib = peak_rss_each_kib.iter().copied().max().unwrap_or(0);

    let mut hists: Vec<Histogram<u64>> = kind.parts().iter().map(|_| new_hist()).collect();
    let (mut errors, mut samples, mut repeats) = (0, Vec::new(), 0);
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for s in stats {
        for (h, p) in hists.iter_mut().zip(&s.hists) {
            let _ = h.add(p);
        }
        errors += s.errors;
        repeats += s.repeats;
        for e in s.samples {
            if samples.len() < 5 && !samples.contains(&e) {
                samples.push(e);
            }
        }
        first = match (first, s.first_start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = match (last, s.last_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let elapsed = match (first, last) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => duration,
    };
    let windows = windows.lock().map(|w| w.clone()).unwrap_or_default();
    Outcome {
        kind,
        conns,
        elapsed,
        hists,
        errors,
        error_samples: samples,
        server_cpu_pct,
        server_cpu_each_pct,
        client_cpu_pct,
        peak_rss_kib,
        peak_rss_each_kib,
        peak_is_per_run,
        repeat_revocations: repeats,
        window,
        windows,
    }
}
