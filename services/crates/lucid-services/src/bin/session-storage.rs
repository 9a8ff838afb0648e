use std::net::SocketAddr;
use std::sync::Arc;

use lucid_kit::auth::{TokenCheck, require_token};
use lucid_kit::{App, init_logging, storage};
use lucid_services::chunk_store::ChunkStore;
use lucid_services::storage::{Settings, StorageState, routes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    lucid_kit::exit_if_version_asked("session-storage", env!("CARGO_PKG_VERSION"));
    init_logging();
    let settings: Settings = lucid_kit::load("session-storage")?;
    let status = storage::check(&[&settings.lucid_storage_path, &settings.lucid_logs_path]);
    let store = ChunkStore::open(&settings.lucid_storage_path).map_err(|e| {
        format!(
            "cannot open the chunk store under {}: {e}",
            settings.lucid_storage_path.display()
        )
    })?;
    let mongo = mongodb::Client::with_uri_str(&settings.mongodb_url)
        .await
        .map_err(|e| format!("MONGODB_URL is unusable: {e}"))?;
    let chunks = mongo
        .database(&settings.mongodb_database)
        .collection("chunks");
    let state = Arc::new(StorageState { store, chunks });
    let db = mongo.database(&settings.mongodb_database);
    let app = App::new("session-storage", env!("CARGO_PKG_VERSION"), status).ready_check(
        "mongodb",
        Arc::new(move || {
            let db = db.clone();
            Box::pin(async move {
                db.run_command(mongodb::bson::doc! {"ping": 1})
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }),
    );
    let mut api = routes(state, settings.max_chunk_bytes);
    match settings.jwt_secret_key.filter(|k| !k.is_empty()) {
        Some(key) => {
            let check = TokenCheck {
                key: Arc::new(key.into_bytes()),
                audience: Some("session-storage".into()),
            };
            api = api.layer(axum::middleware::from_fn_with_state(check, require_token));
        }
        None => {
            tracing::warn!("JWT_SECRET_KEY is unset: chunk endpoints accept unauthenticated calls")
        }
    }
    let addr = SocketAddr::from(([0, 0, 0, 0], settings.session_storage_port));
    app.serve(addr, app.router(api)).await?;
    Ok(())
}
