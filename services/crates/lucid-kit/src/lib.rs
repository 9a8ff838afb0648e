//! lucid-kit: the start of every Lucid service binary.
//!
//! - [`settings`]: environment over an optional YAML/JSON file over defaults, validated at
//!   start with messages that say what to set;
//! - [`app`]: an axum app with `/health` (the template's JSON), `/ready` (dependency checks)
//!   and `/metrics` (Prometheus), JSON logs, graceful shutdown on SIGTERM;
//! - [`storage`]: the template's `/app/data` and `/app/logs` checks, with its degraded mode;
//! - [`auth`]: the middleware that accepts only tokens signed for this service;
//! - [`serve`]: the accept loop with header-read and idle timeouts and a connection cap
//!   that closes the longest-idle connection to make room;
//! - [`body`]: streamed bodies held to a minimum rate, buffered ones to a deadline;
//! - [`fair`]: per-user shares of a limit;
//! - [`throttle`]: one log line per period for events that come in floods.

pub mod app;
pub mod auth;
pub mod body;
pub mod fair;
pub mod serve;
pub mod settings;
pub mod storage;
pub mod throttle;

pub use app::{App, AppError, ReadyCheck, exit_if_version_asked, init_logging};
pub use settings::{SettingsError, load};
