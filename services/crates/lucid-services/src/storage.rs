//! session-storage: the content-addressed chunk store (port 8081, chosen: the documents
//! give none). Chunk metadata goes to MongoDB (`chunks` collection).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use bytes::BytesMut;
use futures::StreamExt;
use mongodb::bson::doc;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::chunk_store::{ChunkStore, StoreError, Stored};
use crate::error::ServiceError;
use crate::metrics::Metrics;

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Settings {
    #[serde(default = "default_port")]
    pub session_storage_port: u16,
    #[serde(default = "default_data")]
    pub lucid_storage_path: PathBuf,
    #[serde(default = "default_logs")]
    pub lucid_logs_path: PathBuf,
    pub mongodb_url: String,
    #[serde(default = "default_db")]
    pub mongodb_database: String,
    #[serde(default)]
    pub jwt_secret_key: Option<lucid_kit::settings::Secret>,
    /// Largest chunk accepted, bytes (compressed chunks are smaller than the recorder's 1 MiB).
    #[serde(default = "default_max_chunk")]
    pub max_chunk_bytes: usize,
    /// Bytes of request bodies held in memory at once (`BODY_MEMORY_BYTES`); a PUT that
    /// would pass it gets 503 at once. 24 MiB: three 8 MiB chunks in a 64 MiB pod.
    #[serde(default = "default_body_memory")]
    pub body_memory_bytes: usize,
}

fn default_port() -> u16 {
    8081
}
fn default_data() -> PathBuf {
    "/app/data".into()
}
fn default_logs() -> PathBuf {
    "/app/logs".into()
}
fn default_db() -> String {
    "lucid".into()
}
pub fn default_max_chunk() -> usize {
    8 << 20
}
fn default_body_memory() -> usize {
    24 << 20
}

/// The largest `MAX_CHUNK_BYTES` accepted: a chunk is held in memory whole.
pub const MAX_CHUNK_LIMIT: usize = 64 << 20;

impl Settings {
    /// Range checks the types cannot make.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_CHUNK_LIMIT).contains(&self.max_chunk_bytes) {
            return Err(format!(
                "MAX_CHUNK_BYTES={} must be from 1 to {MAX_CHUNK_LIMIT}",
                self.max_chunk_bytes
            ));
        }
        if self.body_memory_bytes < self.max_chunk_bytes {
            return Err(format!(
                "BODY_MEMORY_BYTES={} must be at least MAX_CHUNK_BYTES={} (or no chunk fits)",
                self.body_memory_bytes, self.max_chunk_bytes
            ));
        }
        Ok(())
    }
}

pub struct StorageState {
    pub store: ChunkStore,
    pub chunks: mongodb::Collection<mongodb::bson::Document>,
    pub metrics: Metrics,
    /// Body memory budget in KiB permits.
    pub memory: Arc<Semaphore>,
    pub max_chunk: usize,
}

impl StorageState {
    pub fn new(
        store: ChunkStore,
        chunks: mongodb::Collection<mongodb::bson::Document>,
        metrics: Metrics,
        settings: &Settings,
    ) -> Self {
        Self {
            store,
            chunks,
            metrics,
            memory: Arc::new(Semaphore::new(settings.body_memory_bytes.div_ceil(1024))),
            max_chunk: settings.max_chunk_bytes,
        }
    }
}

pub fn routes(state: Arc<StorageState>) -> Router {
    Router::new()
        .route("/chunks/{address}", put(put_chunk).get(get_chunk))
        .layer(middleware::from_fn_with_state(state.clone(), memory_budget))
        .with_state(state)
}

/// Reserves the body's size (announced, else the chunk limit) from the memory budget
/// before the body is read; 503 when it is spent, so N concurrent large PUTs cannot
/// buffer N chunks and push the pod past its memory limit.
async fn memory_budget(
    State(s): State<Arc<StorageState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != axum::http::Method::PUT {
        return next.run(request).await;
    }
    // Over the limit: no reservation; `put_chunk` refuses it before reading.
    let announced = crate::announced_length(request.headers(), s.max_chunk).unwrap_or(None);
    let bytes = announced.map_or(s.max_chunk, |n| n as usize);
    let permits = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    match s.memory.clone().try_acquire_many_owned(permits) {
        Ok(_held) => next.run(request).await,
        Err(_) => {
            s.metrics.shed.inc();
            lucid_kit::app::overloaded()
        }
    }
}

/// The chunk's body in one buffer sized from its announced length. Refused before a byte
/// is read when the announced length passes `limit` (413 at once), and as soon as the
/// bytes do when none is announced. Collecting frames and then joining them would hold a
/// chunk twice for a moment: 16 MiB for an 8 MiB chunk, in a 64 MiB pod.
async fn read_chunk(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ServiceError> {
    let announced = crate::announced_length(headers, limit)?;
    // At most `limit`, checked above.
    let mut chunk = BytesMut::with_capacity(announced.map_or(0, |n| n as usize));
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| {
            ServiceError::BadRequest(format!("the body was cut short or unreadable: {e}"))
        })?;
        if chunk.len() + frame.len() > limit {
            return Err(ServiceError::TooLarge { limit });
        }
        chunk.extend_from_slice(&frame);
    }
    Ok(chunk.freeze())
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadAddress(_) | StoreError::HashMismatch { .. } => {
                ServiceError::BadRequest(e.to_string())
            }
            StoreError::Corrupt(_) | StoreError::Io(_) => ServiceError::Internal(e.to_string()),
        }
    }
}

#[utoipa::path(put, path = "/chunks/{address}", params(("address" = String, Path)), request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = crate::openapi::StoredChunk), (status = 200, description = "already stored, checked", body = crate::openapi::StoredChunk), (status = 400, body = crate::openapi::ErrorBody), (status = 413, body = crate::openapi::ErrorBody), (status = 503, body = crate::openapi::ErrorBody)))]
pub(crate) async fn put_chunk(
    State(s): State<Arc<StorageState>>,
    Path(address): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServiceError> {
    let body = read_chunk(body, &headers, s.max_chunk).await?;
    let store = s.store.clone();
    let (addr, size) = (address.clone(), body.len());
    // fsync blocks: keep it off the async workers.
    let stored = tokio::task::spawn_blocking(move || store.put(&addr, &body))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let stored = match stored {
        Ok(stored) => stored,
        Err(e) => {
            if matches!(
                e,
                StoreError::BadAddress(_) | StoreError::HashMismatch { .. }
            ) {
                s.metrics.chunks_rejected.inc();
            }
            return Err(e.into());
        }
    };
    let filter = doc! {"_id": &address};
    let update =
        doc! {"$setOnInsert": {"size": size as i64, "stored_at": mongodb::bson::DateTime::now()}};
    s.chunks
        .update_one(filter, update)
        .upsert(true)
        .await
        .map_err(|e| {
            s.metrics.mongo_errors.inc();
            ServiceError::Unavailable(format!(
                "chunk {address} is on disk but its metadata was not recorded: {e}"
            ))
        })?;
    let counter: &Counter = match stored {
        Stored::Created => &s.metrics.chunks_stored,
        Stored::Existing => &s.metrics.chunks_deduplicated,
        Stored::Repaired => &s.metrics.chunks_repaired,
    };
    counter.inc();
    if stored != Stored::Existing {
        s.metrics.bytes_stored.inc_by(size as u64);
    }
    let status = if stored == Stored::Existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(serde_json::json!({"address": address, "size": size, "deduplicated": stored == Stored::Existing}))).into_response())
}

/// A chunk's headers: its address is its version, so it never changes under its URL.
pub fn chunk_headers(
    address: &str,
    content_type: &'static str,
) -> [(header::HeaderName, String); 3] {
    [
        (header::CONTENT_TYPE, content_type.to_string()),
        (header::ETAG, format!("\"{address}\"")),
        (
            header::CACHE_CONTROL,
            "private, max-age=31536000, immutable".to_string(),
        ),
    ]
}

/// Does `If-None-Match` name this chunk (or `*`)?
pub fn not_modified(headers: &HeaderMap, address: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|t| t == address || t == "*")
}

#[utoipa::path(get, path = "/chunks/{address}", params(("address" = String, Path)), responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 304), (status = 404, body = crate::openapi::ErrorBody)))]
pub(crate) async fn get_chunk(
    State(s): State<Arc<StorageState>>,
    Path(address): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    // A read holds the whole chunk in memory too: it draws on the same budget as PUTs.
    let Some(size) = s.store.size(&address)? else {
        return Err(ServiceError::NotFound(format!("no chunk {address}")));
    };
    let permits = u32::try_from(size.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let Ok(_held) = s.memory.clone().try_acquire_many_owned(permits) else {
        s.metrics.shed.inc();
        return Ok(lucid_kit::app::overloaded());
    };
    let store = s.store.clone();
    let addr = address.clone();
    match tokio::task::spawn_blocking(move || store.get(&addr))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??
    {
        Some(_) if not_modified(&headers, &address) => Ok((
            StatusCode::NOT_MODIFIED,
            chunk_headers(&address, "application/octet-stream"),
        )
            .into_response()),
        Some(content) => {
            Ok((chunk_headers(&address, "application/octet-stream"), content).into_response())
        }
        None => Err(ServiceError::NotFound(format!("no chunk {address}"))),
    }
}
