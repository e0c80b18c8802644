//! The operator's command line, one file per command group of `mandate` (see `main.rs`): each
//! parses its arguments with clap and calls the library; none holds protocol rules of its own.

pub mod agents;
pub mod audit;
pub mod clients;
pub mod policy;
pub mod sessions;
