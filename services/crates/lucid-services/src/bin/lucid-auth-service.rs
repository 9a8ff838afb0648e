use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lucid_client::Environment;
use lucid_kit::auth::TokenCheck;
use lucid_kit::{App, init_logging};
use lucid_services::auth::kv::Kv;
use lucid_services::auth::password::Passwords;
use lucid_services::auth::users::Users;
use lucid_services::auth::{AuthMetrics, AuthState, SERVICE, Settings, bootstrap_admin, routes};

/// Errors at start are printed with their message (Display), never Debug: messages are
/// written to name what to fix and never a secret's value.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("{SERVICE}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--new-signing-key`: a fresh Ed25519 private key (PKCS#8 PEM) on stdout, for the
/// Secret; `--public-keys`: the JWKS of the configured key, for the gateway's
/// `AUTH_PUBLIC_KEYS`.
fn key_tools(settings: impl FnOnce() -> Result<Settings, String>) -> Option<Result<(), String>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--new-signing-key") {
        return Some(
            lucid_services::client_token::SigningKey::generate_pem()
                .map(|pem| print!("{pem}"))
                .map_err(|e| e.to_string()),
        );
    }
    if args.iter().any(|a| a == "--public-keys") {
        return Some(settings().and_then(|s| {
            let key = s.signing_key()?;
            serde_json::to_string(&key.jwks())
                .map(|j| println!("{j}"))
                .map_err(|e| e.to_string())
        }));
    }
    None
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    lucid_kit::exit_if_version_asked(SERVICE, env!("CARGO_PKG_VERSION"));
    let load = || lucid_kit::load::<Settings>(SERVICE).map_err(|e| e.to_string());
    if let Some(done) = key_tools(load) {
        return done.map_err(Into::into);
    }
    init_logging();
    let settings = load()?;
    settings.validate()?;
    let environment = Environment::from_env();
    let key = settings.signing_key()?;
    let verifier = key.verifier(lucid_services::gateway::CLIENT_TOKEN_MAX_LIFETIME);
    // The gateway's forwarding tokens are signed with the service key: without it (only
    // allowed in development) client addresses are the TCP peers'.
    let forwarding = lucid_services::signing_key(settings.jwt_secret_key.clone(), environment)?
        .map(|k| TokenCheck::service(k, SERVICE, &["api-gateway"]));
    let metrics = AuthMetrics::default();
    let redis_client = redis::Client::open(settings.redis_url.as_str())
        .map_err(|e| format!("REDIS_URL is unusable: {e}"))?;
    let mongo = mongodb::Client::with_uri_str(&settings.mongodb_url)
        .await
        .map_err(|e| format!("MONGODB_URL is unusable: {e}"))?;
    let db = mongo.database(&settings.mongodb_database);
    let passwords = Passwords::new(settings.cost(), settings.password_hash_concurrency)?;
    let admin_password = settings.admin_password()?;
    tracing::info!(
        kid = %key.kid(),
        argon2_memory_kib = settings.argon2_memory_kib,
        argon2_iterations = settings.argon2_iterations,
        argon2_parallelism = settings.argon2_parallelism,
        access_token_seconds = settings.access_token_seconds,
        "signing client tokens"
    );
    let state = Arc::new(AuthState {
        users: Users::new(&db, metrics.mongo_errors.clone()),
        kv: Kv::new(redis_client, metrics.redis_errors.clone()),
        passwords,
        key,
        verifier,
        access_seconds: settings.access_token_seconds,
        lifetimes: settings.lifetimes(),
        policy: settings.policy(),
        forwarding,
        metrics: metrics.clone(),
    });
    let bootstrapped = Arc::new(AtomicBool::new(false));
    tokio::spawn(bootstrap_admin(
        state.clone(),
        settings.lucid_admin_username.clone(),
        admin_password,
        bootstrapped.clone(),
    ));
    let ping = state.clone();
    let app = App::new(SERVICE, env!("CARGO_PKG_VERSION"), Default::default())?
        .ready_check(
            "redis",
            Arc::new(move || {
                let s = ping.clone();
                Box::pin(async move { s.kv.ping().await })
            }),
        )
        .ready_check("mongodb", lucid_services::mongo_ready(db))
        .ready_check(
            "initial administrator",
            Arc::new(move || {
                let done = bootstrapped.load(Ordering::Acquire);
                Box::pin(async move {
                    if done {
                        Ok(())
                    } else {
                        Err("looking for (or creating) the initial administrator".into())
                    }
                })
            }),
        );
    let app = metrics.register(app);
    let api = app
        .bounded(routes(state))
        .merge(lucid_services::openapi::route(
            <lucid_services::auth::AuthApi as utoipa::OpenApi>::openapi(),
        ));
    app.serve(
        SocketAddr::from(([0, 0, 0, 0], settings.lucid_auth_service_port)),
        app.router(api),
    )
    .await?;
    Ok(())
}
