//! The dashboard's HTTP side: the page and its assets (embedded in the binary), a stream of
//! snapshots as server-sent events, and one service's events and pods. Read only: every
//! route is a GET. Safe by default: a request whose `Host` is not the address served is
//! refused (a DNS-rebinding page cannot read the cluster through it), and the page may load
//! nothing from anywhere else.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State as Extract};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use tokio::sync::watch;

use super::state::State;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// No script, style, font or connection but this server's own; never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Clone)]
pub struct Shared {
    pub state: Arc<Mutex<State>>,
    /// The newest snapshot, as the JSON text sent to every page.
    pub snapshots: watch::Receiver<Arc<String>>,
    /// `Host` values this server answers to.
    pub hosts: Arc<BTreeSet<String>>,
}

/// The `Host` headers a browser sends for `addr`; for loopback also `localhost`.
pub fn allowed_hosts(addr: SocketAddr) -> BTreeSet<String> {
    let port = addr.port();
    let mut hosts = BTreeSet::new();
    hosts.insert(addr.to_string());
    if addr.ip().is_loopback() {
        hosts.insert(format!("localhost:{port}"));
    }
    hosts
}

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/events", get(events))
        .route("/api/services/{name}", get(service))
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// Refuses a foreign `Host` (421, as for a request sent to the wrong server) and adds the
/// security headers to every answer.
async fn guard(Extract(shared): Extract<Shared>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    if !host.as_ref().is_some_and(|h| shared.hosts.contains(h)) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "refused: this dashboard answers only to the address it serves (Host header)\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// Every snapshot from now on, the current one first; the page redraws from each.
async fn events(
    Extract(shared): Extract<Shared>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = shared.snapshots.clone();
    let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let text = rx.borrow_and_update().clone();
        Some((
            Ok(Event::default().event("snapshot").data(text.as_str())),
            (rx, false),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn service(Extract(shared): Extract<Shared>, Path(name): Path<String>) -> Response {
    let detail = shared
        .state
        .lock()
        .map(|s| s.detail(&name))
        .unwrap_or_default();
    match detail {
        Some(v) => ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such LucidService\n").into_response(),
    }
}
