//! `kubectl lucid`, as a library so its tests can hold each step (compose loading, import,
//! plan) against its oracle; `main.rs` is the command line around it.

pub mod cli;
pub mod compose;
pub mod dashboard;
pub mod error;
pub mod graph;
pub mod import;
pub mod manifests;
pub mod output;
pub mod plan;
pub mod render;
pub mod retry;
pub mod status;
