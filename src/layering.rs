//! The layering rule of `lib.rs` (`# Layout`) and docs/architecture.md, checked: each layer's
//! files name nothing of the layers above them, so a change to the edge cannot reach into the
//! protocol core, and the core stays testable without HTTP or a database driver.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/{part}` (a directory or a single file).
fn files(part: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(part);
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// The lines of `parts` that name any of `forbidden`, except those naming one of `allowed`.
fn offenders(parts: &[&str], forbidden: &[&str], allowed: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut scanned = 0;
    for part in parts {
        for f in files(part) {
            scanned += 1;
            let text = std::fs::read_to_string(&f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let named = forbidden.iter().any(|x| line.contains(x));
                if named && !allowed.iter().any(|a| line.contains(a)) {
                    found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(scanned >= parts.len(), "the walk missed {parts:?}");
    found
}

const EDGE: [&str; 5] = ["crate::http", "crate::web", "axum", "hyper", "tower"];
const DRIVERS: [&str; 2] = ["sqlx", "rusqlite"];

#[test]
fn the_protocol_core_names_no_edge_and_no_database_driver() {
    let bad = offenders(
        &["oauth", "attest", "policy"],
        &[&EDGE[..], &DRIVERS[..]].concat(),
        &[],
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn services_and_storage_name_neither_the_edge_nor_the_protocol() {
    let above = [
        &EDGE[..],
        &["crate::oauth", "crate::attest", "crate::policy"][..],
    ]
    .concat();
    // The store keeps the typed `act` claims and scopes it parses once, at row conversion.
    let bad = offenders(
        &["jose", "audit", "store", "throttle.rs"],
        &above,
        &["crate::oauth::act", "crate::oauth::scope"],
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The metadata-document fetcher is a service like the others, and the server's one HTTP
/// *client*: it may name hyper's client connection and hyper-util's tokio adapter, nothing of
/// the server edge (axum, tower, hyper's server) and nothing of the protocol.
#[test]
fn the_metadata_fetcher_names_only_the_client_side_of_hyper() {
    let above = [
        &EDGE[..],
        &DRIVERS[..],
        &["crate::oauth", "crate::attest", "crate::policy"][..],
    ]
    .concat();
    let bad = offenders(
        &["cimd"],
        &above,
        &[
            "use hyper::client::conn::http1;",
            "use hyper_util::rt::TokioIo;",
        ],
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The notification sender is a service too, and the server's other HTTP client: the client
/// side of hyper only, nothing of the protocol (the grant that causes a notification hands it
/// the facts) and no database driver (it reaches the outbox through the store's trait).
#[test]
fn the_notification_sender_names_only_the_client_side_of_hyper() {
    let above = [
        &EDGE[..],
        &DRIVERS[..],
        &[
            "crate::oauth",
            "crate::attest",
            "crate::policy",
            "crate::web",
        ][..],
    ]
    .concat();
    let bad = offenders(
        &["notify", "ssf"],
        &above,
        &[
            "use hyper::client::conn::http1;",
            "use hyper_util::rt::TokioIo;",
        ],
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_base_names_nothing_above_it() {
    let above = [
        &EDGE[..],
        &DRIVERS[..],
        &[
            "crate::oauth",
            "crate::attest",
            "crate::policy",
            "crate::jose",
            "crate::audit",
            "crate::store",
            "crate::throttle",
            "crate::notify",
        ][..],
    ]
    .concat();
    let bad = offenders(
        &["config.rs", "config", "clock.rs", "crypto.rs", "input.rs"],
        &above,
        &[],
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
