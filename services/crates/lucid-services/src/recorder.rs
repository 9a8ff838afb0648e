//! session-recorder (port 8090, from the catalog): sessions in Redis; session data arrives as
//! a streamed body, is cut into chunks, compressed (zstd), hashed (blake3) and sent to
//! session-storage; finalize writes the manifest with the Merkle root to MongoDB.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt;
use lucid_client::PeerClient;
use mongodb::bson::doc;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::error::ServiceError;
use crate::{address, merkle};

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Settings {
    #[serde(default = "default_port")]
    pub session_recorder_port: u16,
    pub redis_url: String,
    pub mongodb_url: String,
    #[serde(default = "default_db")]
    pub mongodb_database: String,
    /// Raw bytes per chunk before compression.
    #[serde(default = "default_chunk")]
    pub chunk_bytes: usize,
    /// Largest upload accepted in one request.
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: usize,
    #[serde(default = "default_level")]
    pub zstd_level: i32,
}

fn default_port() -> u16 {
    8090
}
fn default_db() -> String {
    "lucid".into()
}
fn default_chunk() -> usize {
    1 << 20
}
fn default_max_upload() -> usize {
    256 << 20
}
fn default_level() -> i32 {
    3
}

/// One stored chunk of a session.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChunkRef {
    pub address: String,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

pub struct RecorderState {
    pub settings: Settings,
    pub redis: redis::aio::MultiplexedConnection,
    pub manifests: mongodb::Collection<mongodb::bson::Document>,
    pub storage: Arc<PeerClient>,
}

pub fn routes(state: Arc<RecorderState>) -> Router {
    let limit = state.settings.max_upload_bytes;
    Router::new()
        .route("/sessions", post(open_session))
        .route(
            "/sessions/{id}/data",
            put(upload).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/sessions/{id}/finalize", post(finalize))
        .route("/sessions/{id}/manifest", get(manifest))
        .with_state(state)
}

fn session_key(id: &str) -> String {
    format!("lucid:session:{id}")
}

#[derive(Deserialize, Default)]
struct OpenRequest {
    #[serde(default)]
    owner: Option<String>,
}

async fn open_session(
    State(s): State<Arc<RecorderState>>,
    body: Bytes,
) -> Result<Response, ServiceError> {
    let request: OpenRequest = if body.is_empty() {
        OpenRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ServiceError::BadRequest(format!("invalid JSON: {e}")))?
    };
    let id = address::new_session_id();
    let mut redis = s.redis.clone();
    let key = session_key(&id);
    let owner = request.owner.unwrap_or_default();
    let _: () = redis
        .hset_multiple(&key, &[("state", "open"), ("owner", owner.as_str())])
        .await
        .map_err(redis_error)?;
    let _: () = redis.expire(&key, 24 * 3600).await.map_err(redis_error)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"session_id": id})),
    )
        .into_response())
}

fn redis_error(e: redis::RedisError) -> ServiceError {
    ServiceError::Unavailable(format!("redis: {e}"))
}

async fn session_state(s: &RecorderState, id: &str) -> Result<String, ServiceError> {
    let mut redis = s.redis.clone();
    let state: Option<String> = redis
        .hget(session_key(id), "state")
        .await
        .map_err(redis_error)?;
    state.ok_or_else(|| ServiceError::NotFound(format!("no session {id}")))
}

/// Compresses and stores one chunk; returns its reference.
async fn store_chunk(s: &RecorderState, raw: Vec<u8>) -> Result<ChunkRef, ServiceError> {
    let level = s.settings.zstd_level;
    let raw_bytes = raw.len() as u64;
    let (compressed, address) = tokio::task::spawn_blocking(move || {
        let compressed = zstd::bulk::compress(&raw, level)?;
        let address = address::of(&compressed);
        Ok::<_, std::io::Error>((compressed, address))
    })
    .await
    .map_err(|e| ServiceError::Internal(e.to_string()))?
    .map_err(|e| ServiceError::Internal(format!("compression failed: {e}")))?;
    let stored_bytes = compressed.len() as u64;
    s.storage
        .send(
            reqwest::Method::PUT,
            &format!("/chunks/{address}"),
            Some(compressed.into()),
            Some("application/octet-stream"),
        )
        .await?;
    Ok(ChunkRef {
        address,
        raw_bytes,
        stored_bytes,
    })
}

/// Streams the body into chunks. The session's chunk list is extended only after the whole
/// body arrived and every chunk is stored: a truncated or failed upload adds nothing.
async fn upload(
    State(s): State<Arc<RecorderState>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    if session_state(&s, &id).await? != "open" {
        return Err(ServiceError::Conflict(format!(
            "session {id} is finalized; open a new one"
        )));
    }
    let chunk_size = s.settings.chunk_bytes;
    let mut stream = body.into_data_stream();
    let mut buffer: Vec<u8> = Vec::with_capacity(chunk_size);
    let mut refs = Vec::new();
    let mut total = 0usize;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| {
            // axum maps an over-limit body to an error whose source says so.
            if format!("{e:?}").contains("LengthLimit") {
                ServiceError::TooLarge {
                    limit: s.settings.max_upload_bytes,
                }
            } else {
                ServiceError::BadRequest(format!(
                    "the body was cut short or unreadable ({e}); nothing was recorded"
                ))
            }
        })?;
        total += piece.len();
        let mut piece = &piece[..];
        while !piece.is_empty() {
            let take = (chunk_size - buffer.len()).min(piece.len());
            buffer.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if buffer.len() == chunk_size {
                refs.push(
                    store_chunk(
                        &s,
                        std::mem::replace(&mut buffer, Vec::with_capacity(chunk_size)),
                    )
                    .await?,
                );
            }
        }
    }
    if !buffer.is_empty() {
        refs.push(store_chunk(&s, buffer).await?);
    }
    let mut redis = s.redis.clone();
    let encoded: Vec<String> = refs
        .iter()
        .map(|r| serde_json::to_string(r).unwrap_or_default())
        .collect();
    if !encoded.is_empty() {
        let _: () = redis
            .rpush(format!("{}:chunks", session_key(&id)), encoded)
            .await
            .map_err(redis_error)?;
    }
    Ok(
        axum::Json(serde_json::json!({"session_id": id, "chunks": refs.len(), "bytes": total}))
            .into_response(),
    )
}

async fn chunk_refs(s: &RecorderState, id: &str) -> Result<Vec<ChunkRef>, ServiceError> {
    let mut redis = s.redis.clone();
    let raw: Vec<String> = redis
        .lrange(format!("{}:chunks", session_key(id)), 0, -1)
        .await
        .map_err(redis_error)?;
    raw.iter()
        .map(|r| {
            serde_json::from_str(r)
                .map_err(|e| ServiceError::Internal(format!("corrupt chunk list: {e}")))
        })
        .collect()
}

async fn finalize(
    State(s): State<Arc<RecorderState>>,
    Path(id): Path<String>,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    if session_state(&s, &id).await? != "open" {
        return Err(ServiceError::Conflict(format!(
            "session {id} is already finalized"
        )));
    }
    let refs = chunk_refs(&s, &id).await?;
    let addresses: Vec<String> = refs.iter().map(|r| r.address.clone()).collect();
    let root = merkle::root_hex(&addresses)
        .ok_or_else(|| ServiceError::Internal("a chunk address is not hex".into()))?;
    let chunks =
        mongodb::bson::to_bson(&refs).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let manifest = doc! {
        "_id": &id,
        "merkle_root": &root,
        "chunks": chunks,
        "raw_bytes": refs.iter().map(|r| r.raw_bytes as i64).sum::<i64>(),
        "stored_bytes": refs.iter().map(|r| r.stored_bytes as i64).sum::<i64>(),
        "finalized_at": mongodb::bson::DateTime::now(),
    };
    s.manifests
        .insert_one(manifest)
        .await
        .map_err(|e| ServiceError::Unavailable(format!("mongodb: {e}")))?;
    let mut redis = s.redis.clone();
    let _: () = redis
        .hset(session_key(&id), "state", "finalized")
        .await
        .map_err(redis_error)?;
    Ok(
        axum::Json(serde_json::json!({"session_id": id, "merkle_root": root, "chunks": refs}))
            .into_response(),
    )
}

async fn manifest(
    State(s): State<Arc<RecorderState>>,
    Path(id): Path<String>,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    let found = s
        .manifests
        .find_one(doc! {"_id": &id})
        .await
        .map_err(|e| ServiceError::Unavailable(format!("mongodb: {e}")))?;
    let doc = found.ok_or_else(|| {
        ServiceError::NotFound(format!("session {id} has no manifest (not finalized)"))
    })?;
    let refs: Vec<ChunkRef> = doc
        .get_array("chunks")
        .ok()
        .map(|a| {
            a.iter()
                .filter_map(|c| mongodb::bson::from_bson(c.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    Ok(axum::Json(serde_json::json!({
        "session_id": id,
        "merkle_root": doc.get_str("merkle_root").unwrap_or_default(),
        "chunks": refs,
    }))
    .into_response())
}
