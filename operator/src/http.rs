//! The operator's own HTTP endpoints: `/metrics` (Prometheus), `/healthz` (alive: the
//! watches work or are recovering), `/readyz` (caches synced, leadership known).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::health::OperatorHealth;
use crate::metrics::Metrics;

#[derive(Clone)]
struct Endpoints {
    metrics: Arc<Metrics>,
    health: Arc<OperatorHealth>,
}

fn answer(result: Result<(), String>) -> (StatusCode, String) {
    match result {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// Serves on a listener already bound (a bind error is the caller's to report, and fatal).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<OperatorHealth>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(e): State<Endpoints>| async move { e.metrics.encode() }),
        )
        .route(
            "/healthz",
            get(|State(e): State<Endpoints>| async move { answer(e.health.live()) }),
        )
        .route(
            "/readyz",
            get(|State(e): State<Endpoints>| async move { answer(e.health.ready()) }),
        )
        .with_state(Endpoints { metrics, health });
    axum::serve(listener, app).await
}
