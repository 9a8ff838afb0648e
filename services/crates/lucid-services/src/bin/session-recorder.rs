use std::net::SocketAddr;
use std::sync::Arc;

use lucid_client::{ClientConfig, IntegrationManager};
use lucid_kit::auth::{TokenCheck, require_token};
use lucid_kit::{App, init_logging, storage};
use lucid_services::metrics::Metrics;
use lucid_services::recorder::{RecorderState, Settings, routes, upload_routes};
use lucid_services::redis_conn::Redis;
use tokio::sync::Semaphore;

/// Errors at start are printed with their message (Display), never Debug: messages are
/// written to name what to fix and never a secret's value.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A URL in the message may carry a password.
            let e = lucid_client::redact::text(&e.to_string());
            tracing::error!(error = %e, "cannot start");
            eprintln!("session-recorder: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// An acknowledged upload survives a Redis restart only with the append-only file fsynced
/// on every write (README, durability promise): say so at start when Redis runs otherwise.
/// A warning, not a refusal: managed Redis may hide CONFIG, and Redis may not be up yet.
async fn warn_unless_durable(redis: &Redis) {
    // A map in RESP3, pairs in RESP2: read as a map either way.
    let setting = |name: &'static str| async move {
        redis
            .query::<std::collections::HashMap<String, String>>(
                redis::cmd("CONFIG").arg("GET").arg(name),
            )
            .await
            .ok()
            .and_then(|m| m.get(name).cloned())
    };
    let (aof, fsync) = (setting("appendonly").await, setting("appendfsync").await);
    if let (Some(aof), Some(fsync)) = (&aof, &fsync)
        && (aof != "yes" || fsync != "always")
    {
        tracing::warn!(
            appendonly = %aof,
            appendfsync = %fsync,
            "Redis runs without appendonly yes + appendfsync always: a Redis crash or restart can lose acknowledged uploads"
        );
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    lucid_kit::exit_if_version_asked("session-recorder", env!("CARGO_PKG_VERSION"));
    init_logging();
    let settings: Settings = lucid_kit::load("session-recorder")?;
    settings.validate()?;
    let mut client_config = ClientConfig::from_env("session-recorder")?;
    let key =
        lucid_services::signing_key(settings.jwt_secret_key.clone(), client_config.environment)?;
    client_config.signing_key = key.clone();
    let metrics = Metrics::default();
    let retries = metrics.peer_retries.clone();
    client_config.on_retry = Some(Arc::new(move || {
        retries.inc();
    }));
    // Fail at start, not at the first upload, when session-storage is unset or misaddressed.
    let storage_client = IntegrationManager::from_env(client_config).client("session-storage")?;
    // Redis may come up after us: no connection is needed to start, /ready says when one works.
    let redis = Redis::open(&settings.redis_url, metrics.redis_errors.clone())
        .map_err(|e| format!("REDIS_URL is unusable: {e}"))?;
    warn_unless_durable(&redis).await;
    let mongo = mongodb::Client::with_uri_str(&settings.mongodb_url)
        .await
        .map_err(|e| format!("MONGODB_URL is unusable: {e}"))?;
    let db = mongo.database(&settings.mongodb_database);
    let status = storage::check(&[
        std::path::Path::new(
            &std::env::var("LUCID_STORAGE_PATH").unwrap_or_else(|_| "/app/data".into()),
        ),
        std::path::Path::new(
            &std::env::var("LUCID_LOGS_PATH").unwrap_or_else(|_| "/app/logs".into()),
        ),
    ]);
    let port = settings.session_recorder_port;
    let limits = lucid_kit::serve::Limits::from_env()?;
    let state = Arc::new(RecorderState {
        user_uploads: lucid_kit::fair::PerKey::new(settings.uploads_per_user()),
        pace: limits.pace(),
        manifests: db.collection("manifests"),
        chunk_owners: db.collection("chunk_owners"),
        uploads: Arc::new(Semaphore::new(settings.max_concurrent_uploads)),
        settings,
        redis,
        storage: storage_client,
        metrics: metrics.clone(),
    });
    let ping = state.clone();
    let app = App::new("session-recorder", env!("CARGO_PKG_VERSION"), status)?
        .ready_check(
            "redis",
            Arc::new(move || {
                let s = ping.clone();
                Box::pin(async move {
                    s.redis
                        .query::<String>(&redis::cmd("PING"))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            }),
        )
        .ready_check("mongodb", lucid_services::mongo_ready(db));
    let app = metrics.register(app);
    let mut api = app
        .bounded(routes(state.clone()))
        .merge(upload_routes(state));
    match key {
        Some(key) => {
            let check = TokenCheck::service(key, "session-recorder", &["api-gateway"]);
            api = api.layer(axum::middleware::from_fn_with_state(check, require_token));
        }
        None => tracing::warn!(
            "development without JWT_SECRET_KEY: session endpoints accept unauthenticated calls"
        ),
    }
    let api = api.merge(lucid_services::openapi::route(
        <lucid_services::openapi::RecorderApi as utoipa::OpenApi>::openapi(),
    ));
    app.serve(SocketAddr::from(([0, 0, 0, 0], port)), app.router(api))
        .await?;
    Ok(())
}
