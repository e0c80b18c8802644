//! Load benchmark over real HTTP: starts the release `mandate` binary (SQLite by default,
//! PostgreSQL with `--database-url`, several replicas on it with `--replicas`), seeds it through
//! its endpoints, drives each scenario with N concurrent keep-alive connections and reports
//! req/s, latency percentiles (HDR histogram, also per second), errors, server CPU and peak RSS
//! as Markdown, JSON and PNG charts; with `--peer` it also runs the node-oidc-provider baseline
//! and divides by it; with `--soak` it runs one long mixed load and samples the server's RSS.
//!
//! Run: `cargo bench --bench load -- [--conns 1,16,64,256] [--duration 10s] [--peer] ...`
//! (`--help` lists every flag; docs/development.md "Load benchmark" says what each scenario does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "load/chart.rs"]
mod chart;
#[path = "load/flow.rs"]
mod flow;
#[path = "load/http.rs"]
mod http;
#[path = "load/peer.rs"]
mod peer;
#[path = "load/report.rs"]
mod report;
#[path = "load/scenario.rs"]
mod scenario;
#[path = "load/seed.rs"]
mod seed;
#[path = "load/server.rs"]
mod server;
#[path = "load/soak.rs"]
mod soak;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;

use crate::http::Conn;
use crate::scenario::{Kind, Outcome, World};
use crate::seed::{Agent, Creds};
use crate::server::{Database, Server, TE};

const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

#[derive(Parser)]
#[command(
    name = "load",
    about = "mandate load benchmark over real HTTP (cargo bench --bench load -- ...)"
)]
struct Args {
    /// Run on this database instead of a temp SQLite file; `postgres://...` gets a fresh
    /// schema, dropped at the end.
    #[arg(long)]
    database_url: Option<String>,
    /// Connection counts, comma-separated.
    #[arg(long, default_value = "1,16,64,256", value_delimiter = ',')]
    conns: Vec<usize>,
    /// Measured time per scenario and connection count.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before each run, on the same connections.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Scenarios, comma-separated (they always run in the order listed in --help).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "healthz,cc,exchange,exchange-dpop,subexchange,introspect-hot,introspect-random,attest,revoke-mixed"
    )]
    scenarios: Vec<String>,
    /// Live tokens minted before the runs (introspect-random picks among them,
    /// revoke-mixed revokes them).
    #[arg(long, default_value_t = 100_000)]
    live_tokens: usize,
    /// Connections used to mint the pool.
    #[arg(long, default_value_t = 64)]
    seed_conns: usize,
    /// Also run the node-oidc-provider peer (MODES=cluster2, CONNS "16 64") first and report
    /// ratios to it.
    #[arg(long)]
    peer: bool,
    /// The peer script.
    #[arg(long, default_value_os_t = peer::default_script())]
    peer_script: PathBuf,
    /// Output folder for load.md, load.json, load.png and server.log.
    #[arg(long, default_value = "target/load")]
    out: PathBuf,
    /// Instead of the scenario table: one mixed load for this long on the first --conns
    /// connections (each sends cc, exchange, introspect-random and a revocation of the token
    /// its cc minted, in turn), with the server's RSS sampled every --soak-every.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "peer")]
    soak: Option<Duration>,
    /// Sampling interval of --soak (RSS, CPU, req/s and p99 per interval).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    soak_every: Duration,
    /// Server processes on the same PostgreSQL database (needs a `postgres://` --database-url):
    /// the first migrates and is seeded through, connection c talks to replica c mod N.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    replicas: u16,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn form(pairs: &[(&str, &str)]) -> Bytes {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    Bytes::from(s.finish())
}

/// Human → agent exchange; its answer's access token.
async fn exchange_once(
    conn: &mut Conn,
    auth: &hyper::header::HeaderValue,
    body: Bytes,
) -> Result<String, String> {
    let a = conn.post("/token", http::FORM, Some(auth), body).await?;
    match http::json_str(&a.body, "access_token") {
        Some(t) if a.status == 200 => Ok(t.to_string()),
        _ => Err(a.excerpt()),
    }
}

/// The scenario table: every scenario at every connection count.
async fn table(
    args: &Args,
    kinds: &[Kind],
    conns: &[usize],
    world: &Arc<World>,
    pids: &[u32],
) -> anyhow::Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for &k in kinds {
        let seeded = match k {
            Kind::Exchange | Kind::ExchangeDpop => world.exchange_body.is_some(),
            Kind::SubExchange => world.subexchange_body.is_some(),
            _ => true,
        };
        if !seeded {
            eprintln!("== {}: skipped (not seeded, see notes)", k.name());
            continue;
        }
        // revoke-mixed: fresh tokens to revoke, enough for the run at the last run's pace (the
        // first run guesses twice the ~4,000 revocations/s seen at 64 connections on SQLite; at
        // 3,000 a 60-s run ran out and repeated 58,713 revocations).
        let mut revoke_rate: f64 = 8000.0;
        for &c in conns {
            if k == Kind::RevokeMixed {
                let n = (revoke_rate * (args.warmup + args.duration).as_secs_f64()) as usize;
                let t = Instant::now();
                let fresh = seed::mint_pool(
                    world.addrs[0],
                    world.host_auth.clone(),
                    n.max(100),
                    args.seed_conns,
                )
                .await?;
                eprintln!(
                    "   minted {} tokens to revoke in {:.1} s",
                    fresh.len(),
                    t.elapsed().as_secs_f64()
                );
                if let Ok(mut p) = world.revoke_pool.write() {
                    *p = Arc::new(fresh);
                }
                world.revoke_cursor.store(0, Ordering::Relaxed);
            }
            let spec = scenario::Spec {
                kind: k,
                conns: c,
                warmup: args.warmup,
                duration: args.duration,
                window: Duration::from_secs(1),
            };
            let o = scenario::run(spec, world.clone(), pids.to_vec()).await;
            let h = o.total();
            eprintln!(
                "== {:<17} conns {:>3}: {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  worst 1-s p99 {:>7.2} ms  errors {}  server CPU {:.0}%  client CPU {:.0}%",
                k.name(),
                c,
                o.rps(),
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                o.worst_window_p99_ms().unwrap_or(f64::NAN),
                o.errors,
                o.server_cpu_pct,
                o.client_cpu_pct
            );
            for e in &o.error_samples {
                eprintln!("     error: {e}");
            }
            if let Some(h) = o.hists.get(1) {
                revoke_rate =
                    (2.0 * h.len() as f64 / o.elapsed.as_secs_f64().max(1e-9)).max(3000.0);
            }
            outcomes.push(o);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(outcomes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut kinds = Vec::new();
    for s in &args.scenarios {
        let k = Kind::parse(s.trim()).ok_or_else(|| {
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            anyhow::anyhow!("unknown scenario `{s}`; known: {}", all.join(","))
        })?;
        kinds.push(k);
    }
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| kinds.contains(k))
        .collect();
    let conns: Vec<usize> = args.conns.iter().copied().filter(|c| *c > 0).collect();
    std::fs::create_dir_all(&args.out)?;
    let started = now_utc();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    let peer = if args.peer {
        Some(peer::run(&args.peer_script, args.duration, &args.out)?)
    } else {
        None
    };

    // The server and its world.
    let dir = tempfile::tempdir()?;
    let replicas = usize::from(args.replicas);
    if replicas > 1
        && !args
            .database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres"))
    {
        anyhow::bail!(
            "--replicas {replicas} needs a shared database: --database-url postgres://..."
        );
    }
    let db = Database::create(args.database_url.as_deref(), dir.path()).await?;
    let (a, b) = (Agent::new("build-bot")?, Agent::new("sub-bot")?);
    let config = dir.path().join("mandate.toml");
    std::fs::write(&config, server::config_text(&db.url, &[&a, &b], None))?;
    let kek = server::random_kek();
    let log = std::path::absolute(args.out.join("server.log"))?;
    let _ = std::fs::remove_file(&log);
    eprintln!(
        "== starting {} on {} (log: {})",
        server::binary().display(),
        db.label(),
        log.display()
    );
    // The first replica creates the schema; only then do the others start on it.
    let srv = Server::start(&config, &kek, &log).await?;
    let issuer = srv.url.clone();
    let startup_fresh_ms = srv.startup.as_secs_f64() * 1000.0;
    eprintln!(
        "   listening on {} after {:.0} ms",
        srv.url,
        srv.startup.as_secs_f64() * 1000.0
    );
    let creds = Creds::new();
    let mut notes = Vec::new();
    let mut others = Vec::new();
    if replicas > 1 {
        // The same config, but with the first replica's URL as issuer: every replica signs the
        // same `iss` and checks DPoP `htu` and attestation `aud` against it, as behind a load
        // balancer.
        let config_n = dir.path().join("mandate-replica.toml");
        std::fs::write(
            &config_n,
            server::config_text(&db.url, &[&a, &b], Some(&issuer)),
        )?;
        for r in 2..=replicas {
            let log_r = std::path::absolute(args.out.join(format!("server-{r}.log")))?;
            let _ = std::fs::remove_file(&log_r);
            let s = Server::start(&config_n, &kek, &log_r).await?;
            eprintln!(
                "   replica {r} listening on {} after {:.0} ms (log: {})",
                s.url,
                s.startup.as_secs_f64() * 1000.0,
                log_r.display()
            );
            others.push(s);
        }
        notes.push(format!(
            "{replicas} replicas on one PostgreSQL database, each its own process and port, all with the issuer {issuer}; \
             seeded through the first; connection c talks to replica c mod {replicas}. Server CPU is the sum over the \
             replicas, peak RSS the largest replica's (each replica's in load.json); RSS after seeding and after restart are the \
             first replica's (only it is restarted)."
        ));
    }
    let mut conn = Conn::new(srv.addr);

    // Seeding, over HTTP only.
    let hot = seed::cc_token(&mut conn, &creds.host)
        .await
        .map_err(|e| anyhow::anyhow!("seeding the hot token: {e}"))?;
    let a_token = a
        .attest(&mut conn, &issuer)
        .await
        .map_err(|e| anyhow::anyhow!("attesting build-bot: {e}"))?;
    let b_token = b
        .attest(&mut conn, &issuer)
        .await
        .map_err(|e| anyhow::anyhow!("attesting sub-bot: {e}"))?;
    let (mut exchange_body, mut subexchange_body) = (None, None);
    if args.soak.is_some() || kinds.contains(&Kind::Exchange) || kinds.contains(&Kind::SubExchange)
    {
        match flow::sign_in(
            &srv.url,
            "alice",
            "alice-password",
            "cli",
            "orders:read orders:write",
        )
        .await
        {
            Ok(alice) => {
                let body = |subject: &str, actor: &str| {
                    form(&[
                        ("grant_type", TE),
                        ("subject_token", subject),
                        ("subject_token_type", AT),
                        ("actor_token", actor),
                        ("actor_token_type", JWT),
                        ("scope", "orders:read"),
                        ("audience", "orders-api"),
                    ])
                };
                let eb = body(&alice, &a_token);
                match exchange_once(&mut conn, &creds.host, eb.clone()).await {
                    Ok(delegated) => {
                        exchange_body = Some(eb);
                        subexchange_body = Some(body(&delegated, &b_token));
                    }
                    Err(e) => notes.push(format!(
                        "SEEDING FAILED: the human → agent exchange answered {e}; exchange and subexchange skipped"
                    )),
                }
            }
            Err(e) => notes.push(format!(
                "SEEDING FAILED: alice's sign-in through /authorize + PKCE: {e:#}; exchange and subexchange skipped"
            )),
        }
        if let Some(n) = notes.last() {
            eprintln!("   {n}");
        }
    }
    let needs_pool = args.soak.is_some()
        || kinds.contains(&Kind::IntrospectRandom)
        || kinds.contains(&Kind::RevokeMixed);
    let live = if needs_pool { args.live_tokens } else { 0 };
    eprintln!(
        "== seeding {live} live tokens over {} connections",
        args.seed_conns
    );
    let t = Instant::now();
    let pool = seed::mint_pool(srv.addr, creds.host.clone(), live, args.seed_conns).await?;
    let seed_s = t.elapsed().as_secs_f64();
    let pid = srv.pid.to_string();
    let rss_after_seed = server::status_kib(&pid, "VmRSS:").unwrap_or(0);
    let addrs: Vec<_> = std::iter::once(srv.addr)
        .chain(others.iter().map(|s| s.addr))
        .collect();
    let pids: Vec<u32> = std::iter::once(srv.pid)
        .chain(others.iter().map(|s| s.pid))
        .collect();
    eprintln!(
        "   {} tokens in {seed_s:.1} s; server RSS {:.1} MiB",
        pool.len(),
        rss_after_seed as f64 / 1024.0
    );

    let world = Arc::new(World {
        addrs,
        issuer: issuer.clone(),
        host_auth: creds.host.clone(),
        rs_auth: creds.rs.clone(),
        exchange_body,
        subexchange_body,
        hot_body: Bytes::from(format!("token={hot}")),
        pool,
        revoke_pool: RwLock::new(Arc::new(Vec::new())),
        revoke_cursor: AtomicUsize::new(0),
        agent: a,
        dpop_key: mandate_agent::DpopKey::generate(),
    });

    let soak = match args.soak {
        Some(d) => {
            if world.exchange_body.is_none() {
                db.drop_schema().await;
                anyhow::bail!(
                    "--soak needs the human → agent exchange, which could not be seeded: {notes:?}"
                );
            }
            let c = conns.first().copied().unwrap_or(16);
            eprintln!(
                "== soak: mixed load for {} on {c} connections, RSS every {}",
                humantime::format_duration(d),
                humantime::format_duration(args.soak_every)
            );
            Some(soak::run(world.clone(), c, d, args.soak_every, pids.clone()).await?)
        }
        None => None,
    };
    let outcomes = if soak.is_none() {
        table(&args, &kinds, &conns, &world, &pids).await?
    } else {
        Vec::new()
    };

    // Restart on the existing database: startup time and idle memory with the tokens in it.
    for (i, s) in std::iter::once(srv).chain(others).enumerate() {
        if let Err(e) = s.stop().await {
            notes.push(format!("stopping server {}: {e}", i + 1));
        }
    }
    let (mut startup_existing_ms, mut rss_idle) = (None, None);
    match Server::start(&config, &kek, &log).await {
        Ok(s) => {
            startup_existing_ms = Some(s.startup.as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(500)).await;
            rss_idle = server::status_kib(&s.pid.to_string(), "VmRSS:");
            if let Err(e) = s.stop().await {
                notes.push(format!("stopping the restarted server: {e}"));
            }
        }
        Err(e) => notes.push(format!("restart on the existing database failed: {e}")),
    }
    db.drop_schema().await;

    let meta = report::Meta {
        started,
        backend: db.label(),
        cpus,
        conns: if soak.is_some() {
            conns.into_iter().take(1).collect()
        } else {
            conns
        },
        duration_s: args.soak.unwrap_or(args.duration).as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        live_tokens: live,
        seed_s,
        startup_fresh_ms,
        startup_existing_ms,
        rss_after_seed_kib: rss_after_seed,
        replicas,
        rss_idle_after_restart_kib: rss_idle,
        notes,
    };
    let text = chart::load_font();
    if let Some(soak) = &soak {
        return write_soak(&args.out, &meta, soak, text);
    }
    let png = args.out.join("load.png");
    let title = format!(
        "mandate load benchmark — {}, {} CPUs, {}",
        meta.backend_label(),
        meta.cpus,
        meta.started
    );
    let mut md = report::markdown(&meta, &outcomes, peer.as_ref());
    match chart::draw(&png, &title, &outcomes, text) {
        Ok(()) if text => md.push_str(&format!("\nChart: {}\n", png.display())),
        Ok(()) => md.push_str(&format!(
            "\nChart: {} (no font found: drawn without text; left = req/s, right = p99 log scale, x = log2 connections; {})\n",
            png.display(),
            chart::legend()
        )),
        Err(e) => md.push_str(&format!("\nChart: failed: {e}\n")),
    }
    let png_time = args.out.join("load-p99-time.png");
    match chart::draw_p99_by_second(&png_time, &title, &outcomes, text) {
        Ok(lines) if text => md.push_str(&format!(
            "Chart: {} (p99 of each second; a cross at the top = a second without any answer: {})\n",
            png_time.display(),
            lines.join(", ")
        )),
        Ok(lines) => md.push_str(&format!(
            "Chart: {} (no font found: drawn without text; x = seconds into the measured time, y = p99 of each second, log scale, a cross at the top = a second without any answer; {})\n",
            png_time.display(),
            lines.join(", ")
        )),
        Err(e) => md.push_str(&format!("Chart: {}: failed: {e}\n", png_time.display())),
    }
    std::fs::write(args.out.join("load.md"), &md)?;
    let json = report::json(&meta, &outcomes, peer.as_ref());
    std::fs::write(
        args.out.join("load.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("{md}");
    eprintln!(
        "wrote {}/load.md, load.json, load.png, load-p99-time.png",
        args.out.display()
    );
    Ok(())
}

/// `--soak`'s load.md, load.json and load-soak.png.
fn write_soak(
    out: &Path,
    meta: &report::Meta,
    soak: &soak::Soak,
    text: bool,
) -> anyhow::Result<()> {
    let mut md = soak::markdown(meta, soak);
    let png = out.join("load-soak.png");
    let title = format!(
        "mandate soak — {}, {} CPUs, {}",
        meta.backend_label(),
        meta.cpus,
        meta.started
    );
    match chart::draw_soak(&png, &title, soak, text) {
        Ok(()) if text => md.push_str(&format!("\nChart: {}\n", png.display())),
        Ok(()) => md.push_str(&format!(
            "\nChart: {} (no font found: drawn without text; left = RSS MiB with the ±10 % band, right = p99 per window, log scale)\n",
            png.display()
        )),
        Err(e) => md.push_str(&format!("\nChart: failed: {e}\n")),
    }
    std::fs::write(out.join("load.md"), &md)?;
    std::fs::write(
        out.join("load.json"),
        serde_json::to_string_pretty(&soak::json(meta, soak))?,
    )?;
    println!("{md}");
    eprintln!("wrote {}/load.md, load.json, load-soak.png", out.display());
    Ok(())
}
