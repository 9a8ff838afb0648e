//! session-storage: the content-addressed chunk store (port 8081, chosen: the documents
//! give none). Chunk metadata goes to MongoDB (`chunks` collection).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use mongodb::bson::doc;
use serde::Deserialize;

use crate::chunk_store::{ChunkStore, StoreError, Stored};
use crate::error::ServiceError;

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
    pub jwt_secret_key: Option<String>,
    /// Largest chunk accepted, bytes (compressed chunks are smaller than the recorder's 1 MiB).
    #[serde(default = "default_max_chunk")]
    pub max_chunk_bytes: usize,
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
fn default_max_chunk() -> usize {
    8 << 20
}

#[derive(Clone)]
pub struct StorageState {
    pub store: ChunkStore,
    pub chunks: mongodb::Collection<mongodb::bson::Document>,
}

pub fn routes(state: Arc<StorageState>, max_chunk: usize) -> Router {
    Router::new()
        .route("/chunks/{address}", put(put_chunk).get(get_chunk))
        // Refuses on the announced Content-Length before reading the body (413 at once);
        // DefaultBodyLimit still bounds bodies without a length.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_chunk))
        .layer(DefaultBodyLimit::max(max_chunk))
        .with_state(state)
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

async fn put_chunk(
    State(s): State<Arc<StorageState>>,
    Path(address): Path<String>,
    body: Bytes,
) -> Result<Response, ServiceError> {
    let store = s.store.clone();
    let (addr, size) = (address.clone(), body.len());
    // fsync blocks: keep it off the async workers.
    let stored = tokio::task::spawn_blocking(move || store.put(&addr, &body))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
    let filter = doc! {"_id": &address};
    let update =
        doc! {"$setOnInsert": {"size": size as i64, "stored_at": mongodb::bson::DateTime::now()}};
    s.chunks
        .update_one(filter, update)
        .upsert(true)
        .await
        .map_err(|e| {
            ServiceError::Unavailable(format!(
                "chunk is on disk but its metadata was not recorded (retry the upload): {e}"
            ))
        })?;
    let status = if stored == Stored::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(serde_json::json!({"address": address, "size": size, "deduplicated": stored == Stored::Existing}))).into_response())
}

async fn get_chunk(
    State(s): State<Arc<StorageState>>,
    Path(address): Path<String>,
) -> Result<Response, ServiceError> {
    let store = s.store.clone();
    let addr = address.clone();
    match tokio::task::spawn_blocking(move || store.get(&addr))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??
    {
        Some(content) => Ok((
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            content,
        )
            .into_response()),
        None => Err(ServiceError::NotFound(format!("no chunk {address}"))),
    }
}
