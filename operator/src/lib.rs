//! Lucid operator: LucidService and LucidPhase reconciled into hardened Kubernetes workloads.
//!
//! - [`api`]: the custom resource types (the CRDs come from them);
//! - [`render`]: pure functions from a LucidService to the objects it needs;
//! - [`reconcile`]: the controllers: dereference, validate, render, apply, report status;
//! - [`status`]: conditions and readiness rules shared by both controllers;
//! - [`revision`], [`upgrade`]: the revisions kept to roll back to, and when to roll back;
//! - [`backup`]: the data copier the backup and restore Jobs run (`lucid-operator backup`).
pub mod api;
pub mod backup;
pub mod check;
pub mod error;
pub mod graph;
pub mod health;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod recovery;
pub mod render;
pub mod revision;
pub mod runtime;
pub mod status;
pub mod telemetry;
pub mod upgrade;
pub mod validate;
