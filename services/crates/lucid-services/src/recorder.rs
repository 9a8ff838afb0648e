//! session-recorder (port 8090, from the catalog): sessions in Redis; session data arrives as
//! a streamed body, is cut into chunks, compressed (zstd), hashed (blake3) and sent to
//! session-storage; finalize writes the manifest with the Merkle root to MongoDB.
//!
//! A session belongs to the user the gateway acts for (the `user` claim of its signed
//! service token); another user's calls get 404, as if the session did not exist.
//! States: `open` -> `finalizing` -> `finalized`. Appending is one Redis script that
//! checks the state and appends together, so a finalize cannot miss an acknowledged upload;
//! finalize is idempotent: repeated, it returns the stored manifest.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, middleware};
use futures::StreamExt;
use lucid_client::PeerClient;
use lucid_client::token::Claims;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::redis_conn::Redis;
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
    /// session-storage's chunk limit (its `MAX_CHUNK_BYTES`): a compressed chunk must fit.
    #[serde(default = "crate::storage::default_max_chunk")]
    pub max_chunk_bytes: usize,
    /// Uploads handled at once (`MAX_CONCURRENT_UPLOADS`); each holds about two chunks in
    /// memory. Beyond, 503 at once.
    #[serde(default = "default_uploads")]
    pub max_concurrent_uploads: usize,
    /// Uploads one user may have at once (`MAX_CONCURRENT_UPLOADS_PER_USER`; default 4, or
    /// `MAX_CONCURRENT_UPLOADS` if lower): one user cannot take every upload slot. Beyond, 429.
    #[serde(default)]
    pub max_concurrent_uploads_per_user: Option<usize>,
    /// Open (not yet finalized, not expired) sessions one user may have
    /// (`MAX_OPEN_SESSIONS_PER_USER`): what one user keeps in Redis is bounded. Beyond, 429.
    #[serde(default = "default_user_sessions")]
    pub max_open_sessions_per_user: usize,
    /// The signing key (env or config file, like every setting).
    #[serde(default)]
    pub jwt_secret_key: Option<lucid_kit::settings::Secret>,
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
fn default_uploads() -> usize {
    16
}
fn default_user_uploads() -> usize {
    4
}
fn default_user_sessions() -> usize {
    64
}

/// zstd's worst case for `n` input bytes (ZSTD_COMPRESSBOUND).
pub fn compress_bound(n: usize) -> usize {
    let small = if n < (128 << 10) {
        ((128 << 10) - n) >> 11
    } else {
        0
    };
    n + (n >> 8) + small
}

impl Settings {
    /// One user's share of the upload slots.
    pub fn uploads_per_user(&self) -> usize {
        self.max_concurrent_uploads_per_user
            .unwrap_or_else(|| default_user_uploads().min(self.max_concurrent_uploads))
    }

    /// Range checks the types cannot make (a chunk size of 0 would loop for ever).
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=(16 << 20)).contains(&self.chunk_bytes) {
            return Err(format!(
                "CHUNK_BYTES={} must be from 1 to 16777216",
                self.chunk_bytes
            ));
        }
        if compress_bound(self.chunk_bytes) > self.max_chunk_bytes {
            return Err(format!(
                "CHUNK_BYTES={} can compress to {} bytes, above session-storage's MAX_CHUNK_BYTES={}: lower CHUNK_BYTES",
                self.chunk_bytes,
                compress_bound(self.chunk_bytes),
                self.max_chunk_bytes
            ));
        }
        if self.max_upload_bytes == 0 {
            return Err("MAX_UPLOAD_BYTES must be at least 1".into());
        }
        if !(1..=19).contains(&self.zstd_level) {
            return Err(format!(
                "ZSTD_LEVEL={} must be from 1 to 19",
                self.zstd_level
            ));
        }
        if !(1..=4096).contains(&self.max_concurrent_uploads) {
            return Err(format!(
                "MAX_CONCURRENT_UPLOADS={} must be from 1 to 4096",
                self.max_concurrent_uploads
            ));
        }
        if let Some(n) = self.max_concurrent_uploads_per_user
            && !(1..=self.max_concurrent_uploads).contains(&n)
        {
            return Err(format!(
                "MAX_CONCURRENT_UPLOADS_PER_USER={n} must be from 1 to MAX_CONCURRENT_UPLOADS ({})",
                self.max_concurrent_uploads
            ));
        }
        if !(1..=100_000).contains(&self.max_open_sessions_per_user) {
            return Err(format!(
                "MAX_OPEN_SESSIONS_PER_USER={} must be from 1 to 100000",
                self.max_open_sessions_per_user
            ));
        }
        Ok(())
    }
}

/// One stored chunk of a session.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ChunkRef {
    pub address: String,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

pub struct RecorderState {
    pub settings: Settings,
    pub redis: Redis,
    pub manifests: mongodb::Collection<mongodb::bson::Document>,
    /// `{_id: "<owner>/<address>"}`: which user may read which chunk.
    pub chunk_owners: mongodb::Collection<mongodb::bson::Document>,
    pub storage: Arc<PeerClient>,
    pub metrics: Metrics,
    pub uploads: Arc<Semaphore>,
    /// Each user's share of the upload slots.
    pub user_uploads: Arc<lucid_kit::fair::PerKey>,
    /// How an upload's body must move: a piece within the server's idle timeout, and the
    /// minimum rate over every window.
    pub pace: lucid_kit::body::Pace,
}

pub fn routes(state: Arc<RecorderState>) -> Router {
    Router::new()
        .route("/sessions", post(open_session))
        .route("/sessions/{id}/finalize", post(finalize))
        .route("/sessions/{id}/manifest", get(manifest))
        .route("/access/chunks/{address}", get(chunk_access))
        .with_state(state)
}

/// The upload route apart: it streams, so it takes no request timeout.
pub fn upload_routes(state: Arc<RecorderState>) -> Router {
    Router::new()
        .route("/sessions/{id}/data", put(upload))
        .layer(middleware::from_fn_with_state(state.clone(), upload_slot))
        .with_state(state)
}

async fn upload_slot(
    State(s): State<Arc<RecorderState>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let user = match owner(request.extensions().get::<Claims>()) {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    // The user's own share first: a user at its cap takes no service-wide slot.
    let Some(_share) = s.user_uploads.try_enter(&user) else {
        s.metrics.shed.inc();
        return lucid_kit::app::too_many("uploads");
    };
    match s.uploads.clone().try_acquire_owned() {
        Ok(_slot) => {
            let _counted = lucid_kit::app::InFlight::enter(s.metrics.uploads_in_flight.clone());
            next.run(request).await
        }
        Err(_) => {
            s.metrics.shed.inc();
            lucid_kit::app::overloaded()
        }
    }
}

fn session_key(id: &str) -> String {
    format!("lucid:session:{id}")
}

fn chunks_key(id: &str) -> String {
    format!("lucid:session:{id}:chunks")
}

/// A user's open sessions: a sorted set of ids scored by when each expires.
fn open_sessions_key(owner: &str) -> String {
    format!("lucid:user:{owner}:open")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How long a session lives in Redis after its last change.
const SESSION_TTL_SECONDS: u64 = 24 * 3600;

/// The user a request acts for: the `user` claim of the caller's service token. Without a
/// signing key (development only) there are no claims and every session is `anonymous`'s.
fn owner(claims: Option<&Claims>) -> Result<String, ServiceError> {
    let user = match claims {
        None => return Ok("anonymous".into()),
        Some(c) => c.user.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
            ServiceError::Forbidden("the service token names no user to act for".into())
        })?,
    };
    // Stored with every session and manifest: a user name is a name, not a payload.
    if user.len() > crate::MAX_USER_BYTES {
        return Err(ServiceError::Forbidden(format!(
            "the user name is longer than {} bytes",
            crate::MAX_USER_BYTES
        )));
    }
    Ok(user)
}

#[derive(Deserialize, Default)]
struct OpenRequest {
    /// Ignored: the owner is the authenticated user, never what the body says.
    #[serde(default)]
    #[allow(dead_code)]
    owner: Option<String>,
}

#[utoipa::path(post, path = "/sessions", responses((status = 201, body = crate::openapi::SessionOpened), (status = 403, body = crate::openapi::ErrorBody)))]
pub(crate) async fn open_session(
    State(s): State<Arc<RecorderState>>,
    claims: Option<Extension<Claims>>,
    body: Bytes,
) -> Result<Response, ServiceError> {
    let owner = owner(claims.as_deref())?;
    if !body.is_empty() {
        serde_json::from_slice::<OpenRequest>(&body)
            .map_err(|e| ServiceError::BadRequest(format!("invalid JSON: {e}")))?;
    }
    let id = address::new_session_id();
    let opened: i64 = s
        .redis
        .query(
            redis::cmd("EVAL")
                .arg(OPEN_IF_UNDER_CAP)
                .arg(2)
                .arg(open_sessions_key(&owner))
                .arg(session_key(&id))
                .arg(unix_now())
                .arg(SESSION_TTL_SECONDS)
                .arg(s.settings.max_open_sessions_per_user)
                .arg(&id)
                .arg(&owner),
        )
        .await
        .map_err(redis_error)?;
    if opened == 0 {
        return Err(ServiceError::TooMany(format!(
            "this user has {} open sessions (MAX_OPEN_SESSIONS_PER_USER): finalize one or let it expire",
            s.settings.max_open_sessions_per_user
        )));
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"session_id": id})),
    )
        .into_response())
}

fn redis_error(e: redis::RedisError) -> ServiceError {
    ServiceError::Unavailable(format!("redis: {e}"))
}

fn mongo_error(s: &RecorderState) -> impl Fn(mongodb::error::Error) -> ServiceError + '_ {
    |e| {
        s.metrics.mongo_errors.inc();
        ServiceError::Unavailable(format!("mongodb: {e}"))
    }
}

/// Opens session KEYS[2] for ARGV[5] unless the user's open sessions (KEYS[1], expired
/// ones dropped first) number ARGV[3] already: 1 when opened, 0 when at the cap. ARGV[1]
/// is now, ARGV[2] the TTL (seconds), ARGV[4] the session id.
const OPEN_IF_UNDER_CAP: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'state', 'open', 'owner', ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"#;

/// Checks owner and state, then appends ARGV[4..] to the chunk list, in one step: no
/// finalize can run between the check and the append. The session lives on (ARGV[2] is
/// its new expiry, ARGV[3] its id), also in the user's open sessions (KEYS[3]).
const APPEND_IF_OPEN: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 'missing' end
if state ~= 'open' then return state end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('EXPIRE', KEYS[2], 86400)
redis.call('ZADD', KEYS[3], 'XX', ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], 86400)
return 'ok'
"#;

/// Owner check, then open -> finalizing (no longer one of the user's open sessions,
/// KEYS[2]); answers the state found.
const BEGIN_FINALIZE: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 'missing' end
if state == 'open' then
  redis.call('HSET', KEYS[1], 'state', 'finalizing')
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return state
"#;

/// A session's state, as its Redis hash keeps it (`state`) and the scripts above write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionState {
    /// Taking uploads.
    Open,
    /// Its chunk list frozen; the manifest being written (or a finalize that failed).
    Finalizing,
    /// Its manifest stored.
    Finalized,
}

impl SessionState {
    const ALL: [SessionState; 3] = [
        SessionState::Open,
        SessionState::Finalizing,
        SessionState::Finalized,
    ];

    fn as_str(self) -> &'static str {
        match self {
            SessionState::Open => "open",
            SessionState::Finalizing => "finalizing",
            SessionState::Finalized => "finalized",
        }
    }

    fn parse(text: &str) -> Result<Self, ServiceError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| ServiceError::Internal(format!("unknown session state {text:?}")))
    }
}

/// What a script answers: `ok` (done), `missing` (no session of this owner), or the state it
/// found instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScriptAnswer {
    Ok,
    Missing,
    Found(SessionState),
}

impl ScriptAnswer {
    fn parse(text: &str) -> Result<Self, ServiceError> {
        match text {
            "ok" => Ok(ScriptAnswer::Ok),
            "missing" => Ok(ScriptAnswer::Missing),
            state => SessionState::parse(state).map(ScriptAnswer::Found),
        }
    }
}

/// The session's state if `owner` owns it.
async fn session_state(
    s: &RecorderState,
    id: &str,
    owner: &str,
) -> Result<SessionState, ServiceError> {
    let (state, found_owner): (Option<String>, Option<String>) = s
        .redis
        .query(
            redis::cmd("HMGET")
                .arg(session_key(id))
                .arg("state")
                .arg("owner"),
        )
        .await
        .map_err(redis_error)?;
    match (state, found_owner) {
        (Some(state), Some(o)) if o == owner => SessionState::parse(&state),
        _ => Err(ServiceError::NotFound(format!("no session {id}"))),
    }
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
    // PUT of a content-addressed chunk is idempotent: lucid-client retries it.
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
/// body arrived and every chunk is stored: a truncated, failed or oversized upload adds
/// nothing, and reading stops at the limit.
#[utoipa::path(put, path = "/sessions/{id}/data", params(("id" = String, Path)), request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = crate::openapi::Uploaded), (status = 404, body = crate::openapi::ErrorBody), (status = 409, body = crate::openapi::ErrorBody), (status = 413, body = crate::openapi::ErrorBody)))]
pub(crate) async fn upload(
    State(s): State<Arc<RecorderState>>,
    claims: Option<Extension<Claims>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    let owner = owner(claims.as_deref())?;
    let limit = s.settings.max_upload_bytes;
    crate::announced_length(&headers, limit)?;
    match session_state(&s, &id, &owner).await? {
        SessionState::Open => {}
        SessionState::Finalizing | SessionState::Finalized => {
            return Err(ServiceError::Conflict(format!(
                "session {id} is finalized; open a new one"
            )));
        }
    }
    let chunk_size = s.settings.chunk_bytes;
    // A piece within the idle timeout and the minimum rate over every window: a trickle
    // that never quite stops cannot hold an upload slot.
    let mut stream = Box::pin(lucid_kit::body::paced(body.into_data_stream(), s.pace));
    let mut buffer: Vec<u8> = Vec::with_capacity(chunk_size);
    let mut refs = Vec::new();
    let mut total = 0usize;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| {
            if e.is_timeout() {
                ServiceError::Timeout(format!("{e}; nothing was recorded"))
            } else {
                ServiceError::BadRequest(format!("{e}; nothing was recorded"))
            }
        })?;
        total += piece.len();
        if total > limit {
            return Err(ServiceError::TooLarge { limit });
        }
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
    let mut encoded = Vec::with_capacity(refs.len());
    for r in &refs {
        encoded.push(serde_json::to_string(r).map_err(|e| ServiceError::Internal(e.to_string()))?);
    }
    if !encoded.is_empty() {
        let answer: String = s
            .redis
            .query(
                redis::cmd("EVAL")
                    .arg(APPEND_IF_OPEN)
                    .arg(3)
                    .arg(session_key(&id))
                    .arg(chunks_key(&id))
                    .arg(open_sessions_key(&owner))
                    .arg(&owner)
                    .arg(unix_now() + SESSION_TTL_SECONDS)
                    .arg(&id)
                    .arg(&encoded),
            )
            .await
            .map_err(redis_error)?;
        match ScriptAnswer::parse(&answer)? {
            ScriptAnswer::Ok => {}
            ScriptAnswer::Missing => {
                return Err(ServiceError::NotFound(format!("no session {id}")));
            }
            ScriptAnswer::Found(_) => {
                return Err(ServiceError::Conflict(format!(
                    "session {id} was finalized during the upload; nothing was recorded"
                )));
            }
        }
    }
    s.metrics.bytes_received.inc_by(total as u64);
    Ok(
        axum::Json(serde_json::json!({"session_id": id, "chunks": refs.len(), "bytes": total}))
            .into_response(),
    )
}

async fn chunk_refs(s: &RecorderState, id: &str) -> Result<Vec<ChunkRef>, ServiceError> {
    let raw: Vec<String> = s
        .redis
        .query(redis::cmd("LRANGE").arg(chunks_key(id)).arg(0).arg(-1))
        .await
        .map_err(redis_error)?;
    raw.iter()
        .map(|r| {
            serde_json::from_str(r)
                .map_err(|e| ServiceError::Internal(format!("corrupt chunk list: {e}")))
        })
        .collect()
}

fn manifest_json(
    id: &str,
    doc: &mongodb::bson::Document,
) -> Result<serde_json::Value, ServiceError> {
    let corrupt = |what: &str| ServiceError::Internal(format!("manifest {id}: {what}"));
    let entries = doc
        .get_array("chunks")
        .map_err(|_| corrupt("no chunk list"))?;
    // Every entry or an error: a shorter manifest would silently lose data.
    let refs = entries
        .iter()
        .map(|c| mongodb::bson::from_bson::<ChunkRef>(c.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(&format!("unreadable chunk entry: {e}")))?;
    let root = doc
        .get_str("merkle_root")
        .map_err(|_| corrupt("no Merkle root"))?;
    Ok(serde_json::json!({"session_id": id, "merkle_root": root, "chunks": refs}))
}

async fn stored_manifest(
    s: &RecorderState,
    id: &str,
    owner: &str,
) -> Result<Option<serde_json::Value>, ServiceError> {
    let found = s
        .manifests
        .find_one(doc! {"_id": id})
        .await
        .map_err(mongo_error(s))?;
    match found {
        // Manifests written before owners were recorded have none: readable by nobody.
        Some(d) if d.get_str("owner").ok() == Some(owner) => manifest_json(id, &d).map(Some),
        Some(_) => Err(ServiceError::NotFound(format!("no session {id}"))),
        None => Ok(None),
    }
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    // E11000: the manifest is already there (a finalize that ran before).
    e.to_string().contains("E11000")
        || matches!(
            e.kind.as_ref(),
            mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) if w.code == 11000
        )
}

#[utoipa::path(post, path = "/sessions/{id}/finalize", params(("id" = String, Path)), responses((status = 200, body = crate::openapi::Manifest), (status = 404, body = crate::openapi::ErrorBody)))]
pub(crate) async fn finalize(
    State(s): State<Arc<RecorderState>>,
    claims: Option<Extension<Claims>>,
    Path(id): Path<String>,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    let owner = owner(claims.as_deref())?;
    let answer: String = s
        .redis
        .query(
            redis::cmd("EVAL")
                .arg(BEGIN_FINALIZE)
                .arg(2)
                .arg(session_key(&id))
                .arg(open_sessions_key(&owner))
                .arg(&owner)
                .arg(&id),
        )
        .await
        .map_err(redis_error)?;
    let state = match ScriptAnswer::parse(&answer)? {
        ScriptAnswer::Found(state) => state,
        ScriptAnswer::Missing => {
            // Redis may have expired the session after it was finalized: the manifest stays.
            return match stored_manifest(&s, &id, &owner).await? {
                Some(m) => Ok(axum::Json(m).into_response()),
                None => Err(ServiceError::NotFound(format!("no session {id}"))),
            };
        }
        ScriptAnswer::Ok => {
            return Err(ServiceError::Internal(format!(
                "finalizing session {id} answered ok, not its state"
            )));
        }
    };
    if state == SessionState::Finalized
        && let Some(m) = stored_manifest(&s, &id, &owner).await?
    {
        return Ok(axum::Json(m).into_response());
    }
    // open (now finalizing) or finalizing (a finalize that failed or runs): the chunk list
    // is frozen, so writing the manifest again gives the same one.
    let refs = chunk_refs(&s, &id).await?;
    let addresses: Vec<String> = refs.iter().map(|r| r.address.clone()).collect();
    let root = merkle::root_hex(&addresses)
        .ok_or_else(|| ServiceError::Internal("a chunk address is not hex".into()))?;
    let chunks =
        mongodb::bson::to_bson(&refs).map_err(|e| ServiceError::Internal(e.to_string()))?;
    // Who may read these chunks, before the manifest makes them visible.
    for a in &addresses {
        s.chunk_owners
            .update_one(
                doc! {"_id": format!("{owner}/{a}")},
                doc! {"$set": {"owner": &owner, "address": a}},
            )
            .upsert(true)
            .await
            .map_err(mongo_error(&s))?;
    }
    let manifest = doc! {
        "_id": &id,
        "owner": &owner,
        "merkle_root": &root,
        "chunks": chunks,
        "raw_bytes": refs.iter().map(|r| r.raw_bytes as i64).sum::<i64>(),
        "stored_bytes": refs.iter().map(|r| r.stored_bytes as i64).sum::<i64>(),
        "finalized_at": mongodb::bson::DateTime::now(),
    };
    let answer = match s.manifests.insert_one(manifest.clone()).await {
        Ok(_) => manifest_json(&id, &manifest)?,
        Err(e) if is_duplicate_key(&e) => stored_manifest(&s, &id, &owner)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("manifest {id} vanished")))?,
        Err(e) => return Err(mongo_error(&s)(e)),
    };
    s.redis
        .query::<()>(
            redis::cmd("HSET")
                .arg(session_key(&id))
                .arg("state")
                .arg(SessionState::Finalized.as_str()),
        )
        .await
        .map_err(redis_error)?;
    Ok(axum::Json(answer).into_response())
}

#[utoipa::path(get, path = "/sessions/{id}/manifest", params(("id" = String, Path)), responses((status = 200, body = crate::openapi::Manifest), (status = 404, body = crate::openapi::ErrorBody), (status = 500, body = crate::openapi::ErrorBody)))]
pub(crate) async fn manifest(
    State(s): State<Arc<RecorderState>>,
    claims: Option<Extension<Claims>>,
    Path(id): Path<String>,
) -> Result<Response, ServiceError> {
    address::require_session_id(&id)?;
    let owner = owner(claims.as_deref())?;
    match stored_manifest(&s, &id, &owner).await? {
        Some(m) => Ok(axum::Json(m).into_response()),
        None => Err(ServiceError::NotFound(format!(
            "session {id} has no manifest (not finalized)"
        ))),
    }
}

/// 204 when the acting user owns a finalized session holding this chunk, else 404: the
/// gateway asks before it serves a chunk.
#[utoipa::path(get, path = "/access/chunks/{address}", params(("address" = String, Path)), responses((status = 204, description = "the user may read it"), (status = 404, body = crate::openapi::ErrorBody)))]
pub(crate) async fn chunk_access(
    State(s): State<Arc<RecorderState>>,
    claims: Option<Extension<Claims>>,
    Path(addr): Path<String>,
) -> Result<Response, ServiceError> {
    if !address::is_valid(&addr) {
        return Err(ServiceError::BadRequest(format!(
            "{addr:?} is not a chunk address"
        )));
    }
    let owner = owner(claims.as_deref())?;
    let found = s
        .chunk_owners
        .find_one(doc! {"_id": format!("{owner}/{addr}")})
        .await
        .map_err(mongo_error(&s))?;
    match found {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(ServiceError::NotFound(format!("no chunk {addr}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            session_recorder_port: 8090,
            redis_url: String::new(),
            mongodb_url: String::new(),
            mongodb_database: "lucid".into(),
            chunk_bytes: 1 << 20,
            max_upload_bytes: 256 << 20,
            zstd_level: 3,
            max_chunk_bytes: 8 << 20,
            max_concurrent_uploads: 16,
            max_concurrent_uploads_per_user: None,
            max_open_sessions_per_user: 64,
            jwt_secret_key: None,
        }
    }

    #[test]
    fn settings_out_of_range_are_refused_at_start() {
        assert!(settings().validate().is_ok());
        for bad in [
            Settings {
                chunk_bytes: 0,
                ..settings()
            },
            Settings {
                chunk_bytes: 1 << 20,
                max_chunk_bytes: 1 << 20,
                ..settings()
            },
            Settings {
                max_upload_bytes: 0,
                ..settings()
            },
            Settings {
                zstd_level: 40,
                ..settings()
            },
            Settings {
                max_concurrent_uploads_per_user: Some(17),
                ..settings()
            },
            Settings {
                max_open_sessions_per_user: 0,
                ..settings()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let err = Settings {
            chunk_bytes: 1 << 20,
            max_chunk_bytes: 1 << 20,
            ..settings()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("MAX_CHUNK_BYTES"), "{err}");
    }
}

#[cfg(test)]
mod session_state_tests {
    use super::*;

    #[test]
    fn every_state_reads_back_and_the_scripts_write_the_same_words() {
        for state in SessionState::ALL {
            assert_eq!(SessionState::parse(state.as_str()).ok(), Some(state));
        }
        assert!(SessionState::parse("closed").is_err());
        assert!(OPEN_IF_UNDER_CAP.contains(&format!("'{}'", SessionState::Open.as_str())));
        assert!(APPEND_IF_OPEN.contains(&format!("'{}'", SessionState::Open.as_str())));
        assert!(BEGIN_FINALIZE.contains(&format!("'{}'", SessionState::Finalizing.as_str())));
        assert_eq!(ScriptAnswer::parse("ok").ok(), Some(ScriptAnswer::Ok));
        assert_eq!(
            ScriptAnswer::parse("missing").ok(),
            Some(ScriptAnswer::Missing)
        );
        assert_eq!(
            ScriptAnswer::parse("finalizing").ok(),
            Some(ScriptAnswer::Found(SessionState::Finalizing))
        );
    }
}
