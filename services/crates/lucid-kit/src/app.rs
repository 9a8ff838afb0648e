//! The HTTP side every service shares.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::storage::StorageStatus;

/// A dependency check for `/ready`: Ok, or why not.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: String,
    method: String,
    status: u16,
}

struct Shared {
    service: String,
    version: String,
    started: Instant,
    storage: StorageStatus,
    checks: Vec<(String, ReadyCheck)>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    registry: Registry,
}

pub struct App {
    shared: Arc<Shared>,
}

impl App {
    pub fn new(service: &str, version: &str, storage: StorageStatus) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
        });
        let mut registry = Registry::with_prefix("lucid");
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        Self {
            shared: Arc::new(Shared {
                service: service.into(),
                version: version.into(),
                started: Instant::now(),
                storage,
                checks: Vec::new(),
                requests,
                latency,
                registry,
            }),
        }
    }

    /// Adds a dependency `/ready` must see healthy.
    pub fn ready_check(mut self, name: &str, check: ReadyCheck) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("checks are added before serving")
            .checks
            .push((name.into(), check));
        self
    }

    /// The service's routes plus `/health`, `/ready`, `/metrics`, all measured.
    pub fn router(&self, routes: Router) -> Router {
        let shared = self.shared.clone();
        routes
            .merge(
                Router::new()
                    .route("/health", get(health))
                    .route("/ready", get(ready))
                    .route("/metrics", get(metrics))
                    .with_state(shared.clone()),
            )
            .layer(middleware::from_fn_with_state(shared, measure))
    }

    /// Serves until SIGTERM or Ctrl-C, then stops accepting and lets requests in flight finish.
    pub async fn serve(&self, addr: SocketAddr, router: Router) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(service = %self.shared.service, %addr, "listening");
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        tracing::info!(service = %self.shared.service, "stopped");
        Ok(())
    }
}

/// `<binary> --version` prints the service's name and version and exits: how the image build
/// checks that a binary (an arm64 one under qemu, say) starts at all.
pub fn exit_if_version_asked(service: &str, version: &str) {
    if std::env::args().skip(1).any(|a| a == "--version") {
        println!("{service} {version}");
        std::process::exit(0);
    }
}

/// JSON log lines; level from `LOG_LEVEL` or `RUST_LOG` (default info).
pub fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL").map(|l| l.to_ascii_lowercase()))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .json()
        .flatten_event(true)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutting down: draining requests");
}

/// The template's health document.
async fn health(State(s): State<Arc<Shared>>) -> Response {
    let status = if s.storage.degraded {
        "degraded"
    } else {
        "healthy"
    };
    axum::Json(json!({
        "status": status,
        "service": s.service,
        "version": s.version,
        "timestamp": jiff::Timestamp::now().to_string(),
        "uptime_seconds": s.started.elapsed().as_secs(),
        "storage": s.storage,
    }))
    .into_response()
}

async fn ready(State(s): State<Arc<Shared>>) -> Response {
    let results = futures::future::join_all(
        s.checks
            .iter()
            .map(|(name, check)| async move { (name.clone(), check().await) }),
    )
    .await;
    let failing: Vec<_> = results
        .iter()
        .filter_map(|(n, r)| {
            r.as_ref()
                .err()
                .map(|e| json!({"dependency": n, "error": e}))
        })
        .collect();
    let code = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(json!({"ready": failing.is_empty(), "failing": failing})),
    )
        .into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &s.registry);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

async fn measure(State(s): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RequestLabels {
        path,
        method,
        status: response.status().as_u16(),
    };
    s.requests.get_or_create(&labels).inc();
    s.latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
