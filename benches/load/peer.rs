//! The peer baseline (node-oidc-provider under wrk, /work/shared/peers/oidc-provider/run.sh),
//! run in the same invocation; its summary.tsv gives the figures mandate is divided by.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::scenario::Kind;

pub struct PeerRow {
    pub mode: String,
    pub test: String,
    pub conns: usize,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub server_cpu: String,
}

pub struct Peer {
    pub rows: Vec<PeerRow>,
    pub summary: PathBuf,
}

/// The default script: the shared peer folder beside this repository.
pub fn default_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/oidc-provider/run.sh")
}

/// The peer test a scenario compares with.
pub fn test_for(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Cc => Some("cc"),
        Kind::IntrospectHot | Kind::IntrospectRandom => Some("introspect"),
        Kind::Exchange | Kind::SubExchange => Some("exchange_jwt"),
        _ => None,
    }
}

impl Peer {
    /// The peer's best req/s for `test` over its connection counts.
    pub fn best(&self, test: &str) -> Option<&PeerRow> {
        self.rows
            .iter()
            .filter(|r| r.test == test)
            .max_by(|a, b| a.rps.total_cmp(&b.rps))
    }

    pub fn at(&self, test: &str, conns: usize) -> Option<&PeerRow> {
        self.rows
            .iter()
            .find(|r| r.test == test && r.conns == conns)
    }
}

/// Runs the peer script (MODES=cluster2, CONNS "16 64", same duration) into `out/peer`.
pub fn run(script: &Path, duration: Duration, out: &Path) -> anyhow::Result<Peer> {
    let outdir = std::path::absolute(out.join("peer"))?;
    let _ = std::fs::remove_dir_all(&outdir);
    let secs = duration.as_secs_f64().ceil().max(1.0) as u64;
    eprintln!(
        "== peer: {} (MODES=cluster2 DURATION={secs}s CONNS=\"16 64\")",
        script.display()
    );
    let status = std::process::Command::new("bash")
        .arg(script)
        .env("MODES", "cluster2")
        .env("DURATION", format!("{secs}s"))
        .env("CONNS", "16 64")
        .env("OUTDIR", &outdir)
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        bail!("the peer script failed ({status})");
    }
    parse(&outdir.join("summary.tsv"))
}

pub fn parse(summary: &Path) -> anyhow::Result<Peer> {
    let text = std::fs::read_to_string(summary)
        .with_context(|| format!("cannot read {}", summary.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(mode), Some(test), Some(conns), Some(rps), Some(p50), Some(p99)) = (
        col("mode"),
        col("test"),
        col("conns"),
        col("rps"),
        col("p50_ms"),
        col("p99_ms"),
    ) else {
        bail!("{}: unexpected header {header:?}", summary.display());
    };
    let (non2xx, sock, cpu) = (col("non2xx"), col("sock_err"), col("server_cpu"));
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let num = |i: Option<usize>| i.and_then(|i| get(i).parse::<u64>().ok()).unwrap_or(0);
        rows.push(PeerRow {
            mode: get(mode).to_string(),
            test: get(test).to_string(),
            conns: get(conns).parse().unwrap_or(0),
            rps: get(rps).parse().unwrap_or(0.0),
            p50_ms: get(p50).parse().unwrap_or(f64::NAN),
            p99_ms: get(p99).parse().unwrap_or(f64::NAN),
            errors: num(non2xx) + num(sock),
            server_cpu: cpu.map(|i| get(i).to_string()).unwrap_or_default(),
        });
    }
    if rows.is_empty() {
        bail!("{}: no results", summary.display());
    }
    Ok(Peer {
        rows,
        summary: summary.to_path_buf(),
    })
}
