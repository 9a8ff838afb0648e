use std::net::SocketAddr;
use std::sync::Arc;

use lucid_client::{ClientConfig, IntegrationManager};
use lucid_kit::{App, init_logging};
use lucid_services::gateway::{GatewayState, PEERS, Settings, routes};
use lucid_services::metrics::Metrics;

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
            eprintln!("api-gateway: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    lucid_kit::exit_if_version_asked("api-gateway", env!("CARGO_PKG_VERSION"));
    init_logging();
    let settings: Settings = lucid_kit::load("api-gateway").map_err(|e| {
        format!("{e} (the gateway needs JWT_SECRET_KEY to sign its service tokens)")
    })?;
    let mut client_config = ClientConfig::from_env("api-gateway")?;
    // The gateway signs service tokens: it never runs without its key, in any environment.
    let key = lucid_services::signing_key(
        Some(settings.jwt_secret_key.clone()),
        client_config.environment,
    )?
    .ok_or("JWT_SECRET_KEY is empty: the gateway needs it to sign its service tokens")?;
    client_config.signing_key = Some(key);
    let verifier = settings.verifier()?;
    tracing::info!(keys = ?verifier.kids().collect::<Vec<_>>(), "checking client tokens with lucid-auth-service's public keys");
    let auth = Arc::new(lucid_services::auth_relay::AuthRelay::from_env(
        &client_config,
    )?);
    if !auth.configured() {
        tracing::warn!("LUCID_AUTH_SERVICE_URL is unset: /auth/* answers 503");
    }
    let metrics = Metrics::default();
    let retries = metrics.peer_retries.clone();
    client_config.on_retry = Some(Arc::new(move || {
        retries.inc();
    }));
    let peers = IntegrationManager::from_env(client_config);
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
    let limits = lucid_kit::serve::Limits::from_env()?;
    let per_user = settings.requests_per_user(limits.max_concurrent_requests)?;
    let state = Arc::new(GatewayState {
        user_requests: lucid_kit::fair::PerKey::new(per_user),
        pace: limits.pace(),
        peers,
        metrics: metrics.clone(),
        max_upload_bytes: settings.max_upload_bytes,
        chunk_reads: Arc::new(tokio::sync::Semaphore::new(
            settings.max_concurrent_chunk_reads,
        )),
    });
    // No dependency checks in /ready: the gateway (phase core) must become ready before
    // its peers (phase application) are started; /api/health/peers reports them.
    let app = App::new("api-gateway", env!("CARGO_PKG_VERSION"), Default::default())?;
    let app = metrics.register(app);
    if settings.max_upload_bytes == 0 {
        return Err("MAX_UPLOAD_BYTES must be at least 1".into());
    }
    if !(1..=4096).contains(&settings.max_concurrent_chunk_reads) {
        return Err("MAX_CONCURRENT_CHUNK_READS must be from 1 to 4096".into());
    }
    let api = routes(state, verifier, auth, |r| app.bounded(r));
    app.serve(
        SocketAddr::from(([0, 0, 0, 0], settings.api_gateway_port)),
        app.router(api),
    )
    .await?;
    Ok(())
}
