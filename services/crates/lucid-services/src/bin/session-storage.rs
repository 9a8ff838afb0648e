use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lucid_client::Environment;
use lucid_kit::auth::{TokenCheck, require_token};
use lucid_kit::{App, init_logging, storage};
use lucid_services::chunk_store::{ChunkStore, TMP_MAX_AGE};
use lucid_services::metrics::Metrics;
use lucid_services::storage::{Settings, StorageState, routes};

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
            eprintln!("session-storage: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    lucid_kit::exit_if_version_asked("session-storage", env!("CARGO_PKG_VERSION"));
    init_logging();
    let settings: Settings = lucid_kit::load("session-storage")?;
    settings.validate()?;
    let key =
        lucid_services::signing_key(settings.jwt_secret_key.clone(), Environment::from_env())?;
    let status = storage::check(&[&settings.lucid_storage_path, &settings.lucid_logs_path]);
    let store = ChunkStore::open(&settings.lucid_storage_path).map_err(|e| {
        format!(
            "cannot open the chunk store under {}: {e}",
            settings.lucid_storage_path.display()
        )
    })?;
    // Crashed writers' temp files, by age (a young one may be a write in flight).
    let cleaner = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(600)).await;
            let c = cleaner.clone();
            match tokio::task::spawn_blocking(move || c.clean_tmp(TMP_MAX_AGE)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(removed = n, "old temp files removed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "temp file cleaning failed"),
                _ => {}
            }
        }
    });
    let mongo = mongodb::Client::with_uri_str(&settings.mongodb_url)
        .await
        .map_err(|e| format!("MONGODB_URL is unusable: {e}"))?;
    let metrics = Metrics::default();
    let chunks = mongo
        .database(&settings.mongodb_database)
        .collection("chunks");
    let state = Arc::new(StorageState::new(store, chunks, metrics.clone(), &settings));
    let db = mongo.database(&settings.mongodb_database);
    let app = App::new("session-storage", env!("CARGO_PKG_VERSION"), status)?
        .ready_check("mongodb", lucid_services::mongo_ready(db));
    let app = metrics.register(app);
    let mut api = app.bounded(routes(state));
    match key {
        Some(key) => {
            let check =
                TokenCheck::service(key, "session-storage", &["session-recorder", "api-gateway"]);
            api = api.layer(axum::middleware::from_fn_with_state(check, require_token));
        }
        None => tracing::warn!(
            "development without JWT_SECRET_KEY: chunk endpoints accept unauthenticated calls"
        ),
    }
    let api = api.merge(lucid_services::openapi::route(
        <lucid_services::openapi::StorageApi as utoipa::OpenApi>::openapi(),
    ));
    let addr = SocketAddr::from(([0, 0, 0, 0], settings.session_storage_port));
    app.serve(addr, app.router(api)).await?;
    Ok(())
}
