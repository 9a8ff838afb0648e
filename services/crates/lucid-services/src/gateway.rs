//! api-gateway (port 8080, from the catalog): authenticates clients with JWT (HS256, audience
//! `api-gateway`, signed by lucid-auth-service with `JWT_SECRET_KEY`), routes to the session
//! services through lucid-client, and reports its peers' health.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::TryStreamExt;
use lucid_client::IntegrationManager;
use lucid_kit::auth::{TokenCheck, require_token};
use reqwest::Method;
use serde::Deserialize;

use crate::address;
use crate::error::ServiceError;

pub const PEERS: &[&str] = &["session-recorder", "session-storage"];

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Settings {
    #[serde(default = "default_port")]
    pub api_gateway_port: u16,
    pub jwt_secret_key: String,
}

fn default_port() -> u16 {
    8080
}

pub struct GatewayState {
    pub peers: IntegrationManager,
}

pub fn routes(state: Arc<GatewayState>, key: Vec<u8>) -> Router {
    let check = TokenCheck {
        key: Arc::new(key),
        audience: Some("api-gateway".into()),
    };
    Router::new()
        .route("/api/sessions", post(open_session))
        .route("/api/sessions/{id}/data", put(upload))
        .route("/api/sessions/{id}/finalize", post(finalize))
        .route("/api/sessions/{id}/manifest", get(manifest))
        .route("/api/chunks/{address}", get(chunk))
        .route("/api/health/peers", get(peers))
        .layer(middleware::from_fn_with_state(check, require_token))
        .with_state(state)
}

fn relay(status: reqwest::StatusCode, body: Bytes) -> Response {
    let status = axum::http::StatusCode::from_u16(status.as_u16())
        .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn open_session(
    State(s): State<Arc<GatewayState>>,
    body: Bytes,
) -> Result<Response, ServiceError> {
    let recorder = s.peers.client("session-recorder")?;
    let (status, bytes) = recorder
        .send(
            Method::POST,
            "/sessions",
            Some(body),
            Some("application/json"),
        )
        .await?;
    Ok(relay(status, bytes))
}

/// Streams the client's body to the recorder without buffering it (and so without retry).
async fn upload(
    State(s): State<Arc<GatewayState>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    let recorder = s.peers.client("session-recorder")?;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let response = recorder
        .send_stream(
            Method::PUT,
            &format!("/sessions/{id}/data"),
            reqwest::Body::wrap_stream(stream),
        )
        .await?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
    Ok(relay(status, bytes))
}

async fn finalize(
    State(s): State<Arc<GatewayState>>,
    Path(id): Path<String>,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    // Not retried: a finalize that succeeded but whose answer was lost must not run twice.
    let recorder = s.peers.client("session-recorder")?;
    let response = recorder
        .send_stream(
            Method::POST,
            &format!("/sessions/{id}/finalize"),
            reqwest::Body::from(Vec::new()),
        )
        .await?;
    let status = response.status();
    Ok(relay(
        status,
        response
            .bytes()
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?,
    ))
}

async fn manifest(
    State(s): State<Arc<GatewayState>>,
    Path(id): Path<String>,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    let (status, bytes) = s
        .peers
        .client("session-recorder")?
        .send(Method::GET, &format!("/sessions/{id}/manifest"), None, None)
        .await?;
    Ok(relay(status, bytes))
}

async fn chunk(
    State(s): State<Arc<GatewayState>>,
    Path(addr): Path<String>,
) -> Result<Response, ServiceError> {
    if !address::is_valid(&addr) {
        return Err(ServiceError::BadRequest(format!(
            "{addr:?} is not a chunk address"
        )));
    }
    let (_, bytes) = s
        .peers
        .client("session-storage")?
        .send(Method::GET, &format!("/chunks/{addr}"), None, None)
        .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}

async fn peers(State(s): State<Arc<GatewayState>>) -> Response {
    let health = s.peers.health(PEERS, Duration::from_secs(2)).await;
    let all = health
        .values()
        .all(|h| *h == lucid_client::PeerHealth::Healthy);
    axum::Json(
        serde_json::json!({"status": if all { "healthy" } else { "degraded" }, "peers": health}),
    )
    .into_response()
}
