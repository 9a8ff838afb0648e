//! The session pipeline, one module per service; `src/bin/` holds their thin mains.
//!
//! Where the Python templates were wrong, this differs (and says so where it does):
//! - service calls carry a signed, 60-second token, never `JWT_SECRET_KEY` itself;
//! - a chunk is acknowledged only once it is on disk under its own hash (temp file, fsync,
//!   rename, fsync of the directory), so a crash never leaves a chunk that fails its hash;
//! - a session's chunk list changes only when a whole upload succeeded: a truncated body
//!   adds nothing to the session.

pub mod address;
pub mod auth;
pub mod auth_relay;
pub mod chunk_store;
pub mod client_token;
pub mod error;
pub mod gateway;
pub mod merkle;
pub mod metrics;
pub mod openapi;
pub mod recorder;
pub mod redis_conn;
pub mod sample;
pub mod storage;

/// Longest user name (a client token's `sub`) the services accept: it is stored with
/// every session, manifest and chunk grant, so one user cannot make each of those large.
pub const MAX_USER_BYTES: usize = 256;

/// A request's announced body length (`Content-Length`): refused with 413 before a byte
/// is read when it passes `limit`; `None` when the body comes without one.
pub fn announced_length(
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<Option<u64>, error::ServiceError> {
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(error::ServiceError::TooLarge { limit });
    }
    Ok(announced)
}

/// A 413 (JSON) at once for a body announced over `limit`, before a byte of it is read;
/// a body that only turns out larger is cut by the route's `DefaultBodyLimit`.
pub async fn refuse_announced_over(
    limit: usize,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match announced_length(request.headers(), limit) {
        Ok(_) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The `/ready` check of a service that keeps data in MongoDB: the database answers a ping.
pub fn mongo_ready(db: mongodb::Database) -> lucid_kit::app::ReadyCheck {
    std::sync::Arc::new(move || {
        let db = db.clone();
        Box::pin(async move {
            db.run_command(mongodb::bson::doc! {"ping": 1})
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    })
}

/// The signing key from a service's settings (environment or config file, one path for
/// every service), checked: in production it must be set, long and not a placeholder.
pub fn signing_key(
    raw: Option<lucid_kit::settings::Secret>,
    environment: lucid_client::Environment,
) -> Result<Option<Vec<u8>>, lucid_client::ClientError> {
    let key = raw
        .map(lucid_kit::settings::Secret::into_inner)
        .filter(|k| !k.is_empty())
        .map(String::into_bytes);
    lucid_client::check_key(key.as_deref(), environment)?;
    Ok(key)
}
