use std::net::SocketAddr;
use std::sync::Arc;

use lucid_client::{ClientConfig, IntegrationManager};
use lucid_kit::auth::{TokenCheck, require_token};
use lucid_kit::{App, init_logging, storage};
use lucid_services::recorder::{RecorderState, Settings, routes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    lucid_kit::exit_if_version_asked("session-recorder", env!("CARGO_PKG_VERSION"));
    init_logging();
    let settings: Settings = lucid_kit::load("session-recorder")?;
    let client_config = ClientConfig::from_env("session-recorder")?;
    let key = client_config.signing_key.clone();
    // Fail at start, not at the first upload, when session-storage is unset or misaddressed.
    let storage_client = IntegrationManager::from_env(client_config).client("session-storage")?;
    let redis = redis::Client::open(settings.redis_url.as_str())
        .map_err(|e| format!("REDIS_URL is unusable: {e}"))?;
    let redis = redis
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("cannot reach REDIS_URL: {e}"))?;
    let mongo = mongodb::Client::with_uri_str(&settings.mongodb_url)
        .await
        .map_err(|e| format!("MONGODB_URL is unusable: {e}"))?;
    let manifests = mongo
        .database(&settings.mongodb_database)
        .collection("manifests");
    let status = storage::check(&[
        std::path::Path::new(
            &std::env::var("LUCID_STORAGE_PATH").unwrap_or_else(|_| "/app/data".into()),
        ),
        std::path::Path::new(
            &std::env::var("LUCID_LOGS_PATH").unwrap_or_else(|_| "/app/logs".into()),
        ),
    ]);
    let port = settings.session_recorder_port;
    let ping_redis = redis.clone();
    let state = Arc::new(RecorderState {
        settings,
        redis,
        manifests,
        storage: storage_client,
    });
    let app = App::new("session-recorder", env!("CARGO_PKG_VERSION"), status).ready_check(
        "redis",
        Arc::new(move || {
            let mut r = ping_redis.clone();
            Box::pin(async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut r)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }),
    );
    let mut api = routes(state);
    if let Some(key) = key {
        let check = TokenCheck {
            key: Arc::new(key),
            audience: Some("session-recorder".into()),
        };
        api = api.layer(axum::middleware::from_fn_with_state(check, require_token));
    } else {
        tracing::warn!("JWT_SECRET_KEY is unset: session endpoints accept unauthenticated calls");
    }
    app.serve(SocketAddr::from(([0, 0, 0, 0], port)), app.router(api))
        .await?;
    Ok(())
}
