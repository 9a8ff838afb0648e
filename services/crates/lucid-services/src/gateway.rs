//! api-gateway (port 8080, from the catalog): authenticates clients with the client tokens
//! lucid-auth-service signs (EdDSA, checked with its public keys, `client_token`), routes to
//! the session services through lucid-client acting for the token's `sub` (signed into each
//! service token as `user`), relays `/auth/*` to the auth service (`auth_relay`), and
//! reports its peers' health.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use futures::TryStreamExt;
use lucid_client::IntegrationManager;
use reqwest::Method;
use serde::Deserialize;

use crate::address;
use crate::auth_relay::AuthRelay;
use crate::client_token::{ClientClaims, Verifier};
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::storage::{chunk_headers, not_modified};

pub const PEERS: &[&str] = &["session-recorder", "session-storage"];

/// Who signs client tokens.
pub const CLIENT_TOKEN_ISSUER: &str = crate::client_token::ISSUER;

/// The longest client token accepted (`exp - iat`): an hour; a leaked token is useless
/// after that whatever its `exp` says.
pub const CLIENT_TOKEN_MAX_LIFETIME: u64 = 3600;

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Settings {
    #[serde(default = "default_port")]
    pub api_gateway_port: u16,
    /// Signs the gateway's service tokens (to the recorder, storage and the auth service).
    pub jwt_secret_key: lucid_kit::settings::Secret,
    /// The public keys client tokens are checked with: lucid-auth-service's JWKS
    /// (`lucid-auth-service --public-keys`), from a ConfigMap or Secret.
    #[serde(default)]
    pub auth_public_keys: Option<lucid_kit::settings::Secret>,
    /// A file holding them instead (a mounted ConfigMap).
    #[serde(default)]
    pub auth_public_keys_file: Option<String>,
    /// Largest upload relayed in one request (as the recorder's, whose default it shares).
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: usize,
    /// Chunk reads at once (`MAX_CONCURRENT_CHUNK_READS`): each holds its chunk whole
    /// while its hash is checked (about 1 MiB; storage allows up to 8). Beyond, 503.
    #[serde(default = "default_chunk_reads")]
    pub max_concurrent_chunk_reads: usize,
    /// Requests one user may have in flight at once (`MAX_CONCURRENT_REQUESTS_PER_USER`;
    /// default 8, or `HTTP_MAX_CONCURRENT_REQUESTS` if lower): one user cannot take every
    /// request slot. Beyond, 429.
    #[serde(default)]
    pub max_concurrent_requests_per_user: Option<usize>,
}

impl Settings {
    /// One user's share of `max_concurrent_requests` (the service's request slots).
    pub fn requests_per_user(&self, max_concurrent_requests: usize) -> Result<usize, String> {
        match self.max_concurrent_requests_per_user {
            None => Ok(8.min(max_concurrent_requests)),
            Some(n) if (1..=max_concurrent_requests).contains(&n) => Ok(n),
            Some(n) => Err(format!(
                "MAX_CONCURRENT_REQUESTS_PER_USER={n} must be from 1 to HTTP_MAX_CONCURRENT_REQUESTS ({max_concurrent_requests})"
            )),
        }
    }
}

/// The largest body `POST /api/sessions` takes: it holds at most an ignored `owner`.
pub const SESSION_BODY_LIMIT: usize = 16 << 10;

fn default_chunk_reads() -> usize {
    16
}

fn default_port() -> u16 {
    8080
}
fn default_max_upload() -> usize {
    256 << 20
}

impl Settings {
    /// The client-token verifier from `AUTH_PUBLIC_KEYS` or `AUTH_PUBLIC_KEYS_FILE`.
    pub fn verifier(&self) -> Result<Verifier, String> {
        let text = match (&self.auth_public_keys, &self.auth_public_keys_file) {
            (Some(k), _) if !k.expose().trim().is_empty() => k.expose().to_string(),
            (_, Some(path)) if !path.is_empty() => std::fs::read_to_string(path)
                .map_err(|e| format!("AUTH_PUBLIC_KEYS_FILE {path}: {e}"))?,
            _ => {
                return Err("AUTH_PUBLIC_KEYS (or AUTH_PUBLIC_KEYS_FILE) is unset: the gateway checks client tokens with lucid-auth-service's public keys (`lucid-auth-service --public-keys`)".into());
            }
        };
        Verifier::from_jwks(&text, CLIENT_TOKEN_MAX_LIFETIME).map_err(|e| e.to_string())
    }
}

pub struct GatewayState {
    pub peers: IntegrationManager,
    pub metrics: Metrics,
    pub max_upload_bytes: usize,
    pub chunk_reads: Arc<tokio::sync::Semaphore>,
    /// Each user's share of the request slots.
    pub user_requests: Arc<lucid_kit::fair::PerKey>,
    /// How an upload's body must move (idle timeout, minimum rate).
    pub pace: lucid_kit::body::Pace,
}

/// `bound` puts the request timeout on the buffered routes (not on the streamed upload)
/// and on `/auth/*`.
pub fn routes(
    state: Arc<GatewayState>,
    verifier: Verifier,
    auth: Arc<AuthRelay>,
    bound: impl Fn(Router) -> Router,
) -> Router {
    let buffered = bound(
        Router::new()
            .route(
                "/api/sessions",
                post(open_session)
                    .layer(axum::extract::DefaultBodyLimit::max(SESSION_BODY_LIMIT))
                    .layer(middleware::from_fn(|request: Request, next: Next| {
                        crate::refuse_announced_over(SESSION_BODY_LIMIT, request, next)
                    })),
            )
            .route("/api/sessions/{id}/finalize", post(finalize))
            .route("/api/sessions/{id}/manifest", get(manifest))
            .route("/api/chunks/{address}", get(chunk))
            .route("/api/health/peers", get(peers))
            .with_state(state.clone()),
    );
    buffered
        .merge(
            Router::new()
                .route("/api/sessions/{id}/data", put(upload))
                .with_state(state.clone()),
        )
        .layer(middleware::from_fn_with_state(state, act_for_subject))
        .layer(middleware::from_fn_with_state(
            Arc::new(verifier),
            require_client_token,
        ))
        // Outside the token check (a login has no token yet); bounded like every buffered
        // route.
        .merge(bound(crate::auth_relay::routes(auth)))
        .merge(crate::openapi::route(gateway_document()))
}

/// Accepts only a client token lucid-auth-service signed (see `client_token`): a service
/// token, or any token signed with `JWT_SECRET_KEY`, is refused.
async fn require_client_token(
    State(verifier): State<Arc<Verifier>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = crate::client_token::bearer(request.headers()) else {
        return lucid_kit::auth::unauthorized("missing bearer token");
    };
    match verifier.verify(token, lucid_client::token::now()) {
        Ok(claims) => {
            request.extensions_mut().insert(claims);
            next.run(request).await
        }
        Err(e) => lucid_kit::auth::unauthorized(&e.to_string()),
    }
}

/// The gateway's OpenAPI document: its own routes and the `/auth/*` it relays.
fn gateway_document() -> utoipa::openapi::OpenApi {
    let mut doc = <crate::openapi::GatewayApi as utoipa::OpenApi>::openapi();
    doc.merge(<crate::auth::AuthApi as utoipa::OpenApi>::openapi());
    doc
}

/// Every peer call made for this request carries the client's `sub` as `user`; one user
/// has at most its share of the request slots (before its body is read).
async fn act_for_subject(
    State(s): State<Arc<GatewayState>>,
    claims: Option<Extension<ClientClaims>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(user) = claims.map(|c| c.sub.clone()).filter(|s| !s.is_empty()) else {
        return lucid_kit::auth::unauthorized("the token names no subject");
    };
    if user.len() > crate::MAX_USER_BYTES {
        return lucid_kit::auth::unauthorized(&format!(
            "the token's subject is longer than {} bytes",
            crate::MAX_USER_BYTES
        ));
    }
    let Some(_share) = s.user_requests.try_enter(&user) else {
        s.metrics.shed.inc();
        return lucid_kit::app::too_many("requests");
    };
    lucid_client::acting_for(user, next.run(request)).await
}

fn relay(status: reqwest::StatusCode, body: Bytes) -> Response {
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[utoipa::path(post, path = "/api/sessions", request_body(content = String, description = "optional JSON object; its owner field is ignored", content_type = "application/json"),
    responses((status = 201, body = crate::openapi::SessionOpened), (status = 401, body = crate::openapi::ErrorBody)))]
pub(crate) async fn open_session(
    State(s): State<Arc<GatewayState>>,
    body: Bytes,
) -> Result<Response, ServiceError> {
    // A POST is sent once (lucid-client retries only idempotent calls): a retry could
    // open a second session.
    let (status, bytes) = s
        .peers
        .client("session-recorder")?
        .send(
            Method::POST,
            "/sessions",
            Some(body),
            Some("application/json"),
        )
        .await?;
    Ok(relay(status, bytes))
}

/// Streams the client's body to the recorder without buffering it (and so without retry),
/// counting bytes: past the limit the stream fails, the recorder records nothing, and the
/// client gets 413.
#[utoipa::path(put, path = "/api/sessions/{id}/data", params(("id" = String, Path)), request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = crate::openapi::Uploaded), (status = 404, description = "no such session of this user", body = crate::openapi::ErrorBody), (status = 408, body = crate::openapi::ErrorBody), (status = 409, description = "finalized", body = crate::openapi::ErrorBody), (status = 413, body = crate::openapi::ErrorBody), (status = 503, body = crate::openapi::ErrorBody)))]
pub(crate) async fn upload(
    State(s): State<Arc<GatewayState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    let limit = s.max_upload_bytes;
    crate::announced_length(&headers, limit)?;
    let recorder = s.peers.client("session-recorder")?;
    let over = Arc::new(AtomicBool::new(false));
    let seen = over.clone();
    let metrics = s.metrics.clone();
    let mut total = 0usize;
    // Paced here too, not only at the recorder: a trickle ends the gateway's own request
    // (and its slot) as soon as it falls below the minimum rate.
    let stream = lucid_kit::body::paced(body.into_data_stream(), s.pace)
        .map_err(std::io::Error::from)
        .and_then(move |piece| {
            total += piece.len();
            metrics.bytes_received.inc_by(piece.len() as u64);
            let result = if total > limit {
                seen.store(true, Ordering::Relaxed);
                Err(std::io::Error::other("body over the upload limit"))
            } else {
                Ok(piece)
            };
            futures::future::ready(result)
        });
    let result = recorder
        .send_stream(
            Method::PUT,
            &format!("/sessions/{id}/data"),
            Box::pin(stream),
        )
        .await;
    if over.load(Ordering::Relaxed) {
        return Err(ServiceError::TooLarge { limit });
    }
    let (status, bytes) = result?;
    Ok(relay(status, bytes))
}

#[utoipa::path(post, path = "/api/sessions/{id}/finalize", params(("id" = String, Path)),
    responses((status = 200, description = "the manifest; the same one when repeated", body = crate::openapi::Manifest), (status = 404, body = crate::openapi::ErrorBody)))]
pub(crate) async fn finalize(
    State(s): State<Arc<GatewayState>>,
    Path(id): Path<String>,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    // Retried: the recorder's finalize is idempotent (a repeat returns the stored manifest).
    let (status, bytes) = s
        .peers
        .client("session-recorder")?
        .send_idempotent(
            Method::POST,
            &format!("/sessions/{id}/finalize"),
            None,
            None,
        )
        .await?;
    Ok(relay(status, bytes))
}

#[utoipa::path(get, path = "/api/sessions/{id}/manifest", params(("id" = String, Path)),
    responses((status = 200, body = crate::openapi::Manifest), (status = 404, body = crate::openapi::ErrorBody), (status = 500, body = crate::openapi::ErrorBody)))]
pub(crate) async fn manifest(
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

/// A chunk of one of the caller's finalized sessions, checked against its address before
/// it is passed on. Chunks are zstd frames: `Content-Type: application/zstd` (RFC 8878), not
/// a `Content-Encoding`, so clients get the bytes the address names.
#[utoipa::path(get, path = "/api/chunks/{address}", params(("address" = String, Path, description = "blake3 hex of the content")),
    responses((status = 200, description = "a zstd frame; ETag is the address; immutable", content_type = "application/zstd", body = Vec<u8>), (status = 304), (status = 404, body = crate::openapi::ErrorBody), (status = 502, body = crate::openapi::ErrorBody)))]
pub(crate) async fn chunk(
    State(s): State<Arc<GatewayState>>,
    Path(addr): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    if !address::is_valid(&addr) {
        return Err(ServiceError::BadRequest(format!(
            "{addr:?} is not a chunk address"
        )));
    }
    let not_yours = || ServiceError::NotFound(format!("no chunk {addr}"));
    match s
        .peers
        .client("session-recorder")?
        .send(Method::GET, &format!("/access/chunks/{addr}"), None, None)
        .await
    {
        Ok(_) => {}
        Err(lucid_client::ClientError::NotFound { .. }) => return Err(not_yours()),
        Err(e) => return Err(e.into()),
    }
    if not_modified(&headers, &addr) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            chunk_headers(&addr, "application/zstd"),
        )
            .into_response());
    }
    // Each read holds its chunk whole while its hash is checked: a bounded number at once.
    let Ok(_read) = s.chunk_reads.clone().try_acquire_owned() else {
        s.metrics.shed.inc();
        return Ok(lucid_kit::app::overloaded());
    };
    let bytes = match s
        .peers
        .client("session-storage")?
        .send(Method::GET, &format!("/chunks/{addr}"), None, None)
        .await
    {
        Ok((_, bytes)) => bytes,
        Err(lucid_client::ClientError::NotFound { .. }) => return Err(not_yours()),
        Err(e) => return Err(e.into()),
    };
    if address::of(&bytes) != addr {
        s.metrics.chunks_rejected.inc();
        return Err(ServiceError::BadGateway(format!(
            "session-storage sent chunk {addr} with content that fails its hash"
        )));
    }
    Ok((chunk_headers(&addr, "application/zstd"), bytes).into_response())
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
