//! All integration tests, one binary: each starts the real server on port 0 with its own
//! database and talks HTTP to it, on SQLite and (with `TEST_DATABASE_URL`) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(feature = "tpm")]
#[path = "../common/agent_cli.rs"]
mod agent_cli;
mod agents;
mod attest;
mod audit;
mod authorize;
mod ciba;
mod cimd;
mod client_auth;
mod clock;
mod config_docs;
mod conformance;
mod connections;
mod cors;
mod dpop;
mod durability;
mod endpoints;
mod exchange;
mod flows;
mod helpers;
mod keys;
mod logs;
mod malformed;
mod metrics;
mod notify;
mod policy;
mod raw;
mod registration;
mod resource_middleware;
mod resource_ssf;
mod security;
mod ssf;
mod ssf_streams;
mod store;
#[cfg(feature = "tpm")]
mod swtpm;
mod tpm;
#[cfg(feature = "tpm")]
mod tpm_live;
mod traces;
mod untrusted_clients;
