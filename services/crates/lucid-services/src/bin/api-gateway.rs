use std::net::SocketAddr;
use std::sync::Arc;

use lucid_client::{ClientConfig, IntegrationManager};
use lucid_kit::{App, init_logging};
use lucid_services::gateway::{GatewayState, PEERS, Settings, routes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    lucid_kit::exit_if_version_asked("api-gateway", env!("CARGO_PKG_VERSION"));
    init_logging();
    let settings: Settings = lucid_kit::load("api-gateway")
        .map_err(|e| format!("{e} (the gateway needs JWT_SECRET_KEY to check client tokens)"))?;
    if settings.jwt_secret_key.len() < 16 {
        return Err("JWT_SECRET_KEY is shorter than 16 bytes: use a long random value".into());
    }
    let peers = IntegrationManager::from_env(ClientConfig::from_env("api-gateway")?);
    for peer in PEERS {
        // Degrade, not fail, when a peer is unset; fail when one is set wrongly.
        match peers.client(peer) {
            Ok(_) => {}
            Err(lucid_client::ClientError::NotConfigured { variable, .. }) => {
                tracing::warn!(%peer, %variable, "peer not configured; its routes answer 503")
            }
            Err(e) => return Err(e.into()),
        }
    }
    let app = App::new("api-gateway", env!("CARGO_PKG_VERSION"), Default::default());
    let api = routes(
        Arc::new(GatewayState { peers }),
        settings.jwt_secret_key.into_bytes(),
    );
    app.serve(
        SocketAddr::from(([0, 0, 0, 0], settings.api_gateway_port)),
        app.router(api),
    )
    .await?;
    Ok(())
}
