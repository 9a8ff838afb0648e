//! Logs: JSON lines by default (what a cluster's log collector wants), plain text with
//! `LOG_FORMAT=text`; the level from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").as_deref() == Ok("text") {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}
