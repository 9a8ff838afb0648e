//! The HTTP side every service shares.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::serve::{ConnectionCounters, Limits, serve_listener};
use crate::storage::StorageStatus;
use crate::throttle::Throttle;

/// A dependency check for `/ready`: Ok, or why not.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: String,
    method: &'static str,
    status: u16,
}

/// The method as a metric label from a fixed set: a label per method a client makes up
/// (counted before authentication) would grow the registry without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

struct Shared {
    service: String,
    version: String,
    started: Instant,
    storage: StorageStatus,
    checks: Vec<(String, ReadyCheck)>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    shed: Counter,
    in_flight: Gauge,
    connections: ConnectionCounters,
    registry: Registry,
    /// A failing dependency's detail is logged at most once a minute: `/ready` is public.
    ready_log: Throttle,
    limits: Limits,
    /// `/metrics` (and the probes) on their own port, not the one a NodePort exposes.
    admin_port: u16,
    /// Set at SIGTERM: `/ready` answers 503 from then on.
    stopping: std::sync::atomic::AtomicBool,
}

pub struct App {
    shared: Arc<Shared>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Limits(#[from] crate::serve::LimitError),
    #[error("invalid setting {variable}={value:?}: expected a port from 1 to 65535")]
    AdminPort { variable: String, value: String },
}

/// Default admin port: Prometheus' conventional 9090.
pub const DEFAULT_ADMIN_PORT: u16 = 9090;

/// Latency buckets, seconds: from a 1 ms health check up to a 10-minute upload.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0,
];

impl App {
    /// With limits and admin port from the environment (`HTTP_*`, `<SERVICE>_ADMIN_PORT`).
    pub fn new(service: &str, version: &str, storage: StorageStatus) -> Result<Self, AppError> {
        let variable = format!("{}_ADMIN_PORT", crate::settings::prefix(service));
        let admin_port = match std::env::var(&variable) {
            Err(_) => DEFAULT_ADMIN_PORT,
            Ok(v) => v
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(AppError::AdminPort { variable, value: v })?,
        };
        Ok(Self::with_limits(
            service,
            version,
            storage,
            Limits::from_env()?,
            admin_port,
        ))
    }

    pub fn with_limits(
        service: &str,
        version: &str,
        storage: StorageStatus,
        limits: Limits,
        admin_port: u16,
    ) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        let shed = Counter::default();
        let in_flight = Gauge::default();
        let connections = ConnectionCounters::default();
        let mut registry = Registry::with_prefix("lucid");
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register(
            "http_requests_shed",
            "Requests answered 503 because the concurrency limit was reached",
            shed.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being handled on the service's routes (probes and metrics not counted)",
            in_flight.clone(),
        );
        registry.register(
            "http_connections_evicted",
            "Idle connections closed to make room for a new one at the connection cap",
            connections.evicted.clone(),
        );
        registry.register(
            "http_connections_refused",
            "New connections closed at the connection cap with every connection busy",
            connections.refused.clone(),
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
                shed,
                in_flight,
                connections,
                registry,
                ready_log: Throttle::new(Duration::from_secs(60)),
                limits,
                admin_port,
                stopping: Default::default(),
            }),
        }
    }

    /// Registers a service's own metric (named `lucid_<name>`).
    pub fn register(
        mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("metrics are registered before serving")
            .registry
            .register(name, help, metric);
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Bounds every request of `routes` by the request timeout (503 when it passes) and
    /// its body by the body read timeout (408): for buffered routes, not for streamed
    /// uploads (paced instead, see [`crate::body::paced`]).
    pub fn bounded(&self, routes: Router) -> Router {
        let (limit, body) = (
            self.shared.limits.request_timeout,
            self.shared.limits.body_read_timeout,
        );
        routes.layer(middleware::from_fn(move |request: Request, next: Next| {
            request_timeout(limit, body, request, next)
        }))
    }

    /// Adds a dependency `/ready` must see healthy.
    pub fn ready_check(mut self, name: &str, check: ReadyCheck) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("checks are added before serving")
            .checks
            .push((name.into(), check));
        self
    }

    /// The service's routes, capped in concurrency, plus `/health` and `/ready`, all
    /// measured, with a request id and an access log line each.
    pub fn router(&self, routes: Router) -> Router {
        let shared = self.shared.clone();
        let gate = Arc::new(Semaphore::new(shared.limits.max_concurrent_requests));
        let (shed, in_flight) = (shared.shed.clone(), shared.in_flight.clone());
        routes
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                shed_load(gate.clone(), shed.clone(), in_flight.clone(), request, next)
            }))
            .merge(self.probes(false))
            .layer(middleware::from_fn(json_errors))
            .layer(middleware::from_fn_with_state(shared, measure))
    }

    /// `/health` and `/ready`; `/ready` names failing dependencies' errors only where
    /// `detail` (the admin port): on the main port anyone may ask.
    fn probes(&self, detail: bool) -> Router {
        Router::new()
            .route("/health", get(health))
            .route(
                "/ready",
                get(move |State(s): State<Arc<Shared>>| ready(s, detail)),
            )
            .with_state(self.shared.clone())
    }

    /// The admin port's routes: `/metrics` and the probes.
    pub fn admin_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .with_state(self.shared.clone())
            .merge(self.probes(true))
    }

    /// Serves `router` on `addr` and the admin routes on the admin port (same host) until
    /// SIGTERM or Ctrl-C, then stops accepting and lets requests in flight finish.
    pub async fn serve(&self, addr: SocketAddr, router: Router) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let admin_addr = SocketAddr::new(addr.ip(), self.shared.admin_port);
        let admin = tokio::net::TcpListener::bind(admin_addr).await?;
        tracing::info!(service = %self.shared.service, %addr, %admin_addr, "listening");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (delay, stopping) = (self.shared.limits.shutdown_delay, self.shared.clone());
        tokio::spawn(async move {
            shutdown_signal().await;
            // Not ready, still accepting, while the endpoint removal reaches every node.
            stopping
                .stopping
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            tracing::info!("shutting down: draining requests");
            let _ = stop.send(true);
        });
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let limits = &self.shared.limits;
        let counters = self.shared.connections.clone();
        let (main, admin) = tokio::join!(
            serve_listener(listener, router, limits, counters, wait(stopped.clone())),
            serve_listener(
                admin,
                self.admin_router(),
                limits,
                ConnectionCounters::default(),
                wait(stopped)
            ),
        );
        main?;
        admin?;
        tracing::info!(service = %self.shared.service, "stopped");
        Ok(())
    }
}

/// 503 at once when `gate` has no permit left: a queue of waiting uploads would hold
/// their buffers and push the pod past its memory limit.
async fn shed_load(
    gate: Arc<Semaphore>,
    shed: Counter,
    in_flight: Gauge,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = gate.try_acquire_owned() else {
        shed.inc();
        return overloaded();
    };
    let _counted = InFlight::enter(in_flight);
    next.run(request).await
}

/// Counts one request in `gauge` while it lives: decremented on every way out (a
/// response, an error, a client that hangs up and drops the handler's future).
pub struct InFlight(Gauge);

impl InFlight {
    pub fn enter(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// 429 for a user over its own share of a limit (the others are not affected).
pub fn too_many(what: &str) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "1")],
        axum::Json(json!({
            "error": format!("too many {what} of this user at once; retry when one is done"),
            "request_id": lucid_client::request_id::current(),
        })),
    )
        .into_response()
}

pub fn overloaded() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        axum::Json(json!({
            "error": "the service is at its concurrency limit; retry shortly",
            "request_id": lucid_client::request_id::current(),
        })),
    )
        .into_response()
}

async fn request_timeout(
    limit: Duration,
    body_limit: Duration,
    request: Request,
    next: Next,
) -> Response {
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let body = crate::body::with_deadline(body, body_limit, fired.clone());
    let request = Request::from_parts(parts, body);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(_) if fired.load(std::sync::atomic::Ordering::SeqCst) => (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(json!({
                "error": format!("the request body did not come whole within {body_limit:?} (HTTP_BODY_READ_TIMEOUT_SECONDS)"),
                "request_id": lucid_client::request_id::current(),
            })),
        )
            .into_response(),
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(?limit, "request timed out");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({
                    "error": "the request took too long; retry later",
                    "request_id": lucid_client::request_id::current(),
                })),
            )
                .into_response()
        }
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
    tracing::info!("asked to stop: not ready, still accepting for the shutdown delay");
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

async fn ready(s: Arc<Shared>, detail: bool) -> Response {
    if s.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "stopping"})),
        )
            .into_response();
    }
    let results = futures::future::join_all(
        s.checks
            .iter()
            .map(|(name, check)| async move { (name.clone(), check().await) }),
    )
    .await;
    let failing: Vec<_> = results
        .iter()
        .filter_map(|(n, r)| {
            let e = lucid_client::redact::text(r.as_ref().err()?);
            Some(if detail {
                json!({"dependency": n, "error": e})
            } else {
                json!({"dependency": n, "error": "unavailable"})
            })
        })
        .collect();
    if !failing.is_empty()
        && let Some(not_logged) = s.ready_log.allow()
    {
        let detail: Vec<_> = results
            .iter()
            .filter_map(|(n, r)| {
                let e = r.as_ref().err()?;
                Some(format!("{n}: {}", lucid_client::redact::text(e)))
            })
            .collect();
        tracing::warn!(failing = %detail.join("; "), not_logged, "not ready");
    }
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

/// axum's own rejections (a body over the route's limit, a path that does not parse, no
/// such route) are plain text or empty: every error a client gets is JSON with the
/// request id, as the handlers' own.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("text/plain"));
    if !status.is_client_error() || !plain {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let reason = status
        .canonical_reason()
        .unwrap_or("rejected")
        .to_lowercase();
    let message = match (status, text.is_empty()) {
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            "the request body is larger than this route accepts".to_string()
        }
        (_, true) => reason,
        (_, false) => format!("{reason}: {text}"),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = json!({"error": message, "request_id": lucid_client::request_id::current()});
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// Request id (the client's `X-Request-Id` when it is a safe one, else a new one) for the
/// handler's task, its log lines and the response; metrics; one access log line.
async fn measure(State(s): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(request.method());
    let id = request
        .headers()
        .get(lucid_client::request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(lucid_client::request_id::accept)
        .unwrap_or_else(lucid_client::request_id::new);
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let mut response = lucid_client::request_id::scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if let Ok(v) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(lucid_client::request_id::HEADER, v);
    }
    // The matched route, never the raw URI: paths carry ids a log need not keep.
    span.in_scope(|| {
        tracing::info!(
            target: "access",
            method,
            path = %path,
            status,
            duration_ms = elapsed.as_millis() as u64,
            "request"
        )
    });
    let labels = RequestLabels {
        path,
        method,
        status,
    };
    s.requests.get_or_create(&labels).inc();
    s.latency
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn axums_plain_text_rejections_become_json_with_the_request_id() {
        use tower::ServiceExt;
        let app = Router::new()
            .route(
                "/small",
                axum::routing::post(|_: axum::body::Bytes| async { "ok" })
                    .layer(axum::extract::DefaultBodyLimit::max(4)),
            )
            .layer(middleware::from_fn(json_errors));
        let request = |path: &str, body: &'static str| {
            Request::post(path)
                .body(axum::body::Body::from(body))
                .unwrap()
        };
        for (path, status) in [
            ("/small", StatusCode::PAYLOAD_TOO_LARGE),
            ("/nowhere", StatusCode::NOT_FOUND),
        ] {
            let response = app
                .clone()
                .oneshot(request(path, "far too long"))
                .await
                .unwrap();
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(json["error"].is_string(), "{json}");
            assert!(json.get("request_id").is_some(), "{json}");
        }
        let ok = app.oneshot(request("/small", "ok")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }

    #[test]
    fn made_up_methods_share_one_label() {
        for m in ["FOO", "BAR", "X-ANYTHING"] {
            assert_eq!(
                method_label(&Method::from_bytes(m.as_bytes()).unwrap()),
                "other"
            );
        }
        assert_eq!(method_label(&Method::PUT), "PUT");
    }
}
