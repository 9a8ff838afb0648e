//! `lucid-operator`: runs the LucidService and LucidPhase controllers against the cluster in
//! the ambient kubeconfig (in a pod: its service account). Configured by environment:
//!
//! - `LUCID_WATCH_NAMESPACES`: comma-separated namespaces (a Role in each); empty: the cluster;
//! - `LUCID_HTTP_ADDR`: `/metrics`, `/healthz`, `/readyz` (default `0.0.0.0:8080`);
//! - `LUCID_LEADER_ELECTION=true` with `LUCID_LEASE_NAMESPACE`, `LUCID_LEASE_NAME` and
//!   `POD_NAME` (the identity): several replicas, one writer; optional
//!   `LUCID_LEASE_DURATION_SECONDS` / `LUCID_RENEW_DEADLINE_SECONDS` / `LUCID_RETRY_PERIOD_SECONDS`;
//! - `LUCID_WATCH_STALL_SECONDS`: a watch failing longer than this fails `/healthz` (120);
//! - `LUCID_RECONCILE_CONCURRENCY`: reconciles at once per controller and scope (8);
//! - `RUST_LOG`, `LOG_FORMAT` (`json` or `text`).
//!
//! `lucid-operator backup|restore --source DIR --target DIR` copies a data directory (see
//! [`lucid_operator::backup`]).

use std::net::SocketAddr;
use std::time::Duration;

use lucid_operator::leader::ElectionConfig;
use lucid_operator::reconcile::Scope;
use lucid_operator::runtime::Replica;
use lucid_operator::{http, telemetry};

type Failure = Box<dyn std::error::Error>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The message, not a Debug dump: it is what `kubectl logs` shows a user.
            eprintln!("lucid-operator: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Failure> {
    // The operator is configured by environment; its only arguments are these.
    match std::env::args().nth(1).as_deref() {
        None => {}
        // How the image build checks that a binary (an arm64 one under qemu) starts at all.
        Some("--version") => {
            println!("lucid-operator {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        // The chart's `helm test`.
        Some("check") => {
            let address = std::env::var("LUCID_CHECK_ADDRESS").unwrap_or_default();
            lucid_operator::check::run(&address, &watched_scopes()).await?;
            return Ok(());
        }
        // The backup and restore Jobs of a stateful update (issue 18) run the operator's own
        // image: it is on every node already, and has no shell or `cp` to do it otherwise.
        Some(op @ ("backup" | "restore")) => {
            lucid_operator::backup::cli::run(op, std::env::args().skip(2))?;
            return Ok(());
        }
        Some(other) => {
            return Err(format!(
                "unknown argument {other:?}: lucid-operator takes no arguments but `--version`, \
                 `check`, `backup` and `restore`; it is configured by environment (LUCID_WATCH_NAMESPACES, \
                 LUCID_HTTP_ADDR, LUCID_LEADER_ELECTION, RUST_LOG, LOG_FORMAT)"
            )
            .into());
        }
    }
    telemetry::init();
    let addr: SocketAddr = std::env::var("LUCID_HTTP_ADDR")
        .unwrap_or_else(|_| "0.0.0.0:8080".into())
        .parse()
        .map_err(|e| format!("LUCID_HTTP_ADDR is not an address: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (LUCID_HTTP_ADDR): {e}"))?;
    let client = kube::Client::try_default().await?;
    let scopes = watched_scopes();
    lucid_operator::check::crds_served(&client).await?;

    let election = election_config()?;
    let elected = election.is_some();
    let stall = Duration::from_secs(seconds("LUCID_WATCH_STALL_SECONDS", 120)?);
    let mut replica = Replica::new(scopes.clone(), election, stall);
    replica.shared.concurrency = match std::env::var("LUCID_RECONCILE_CONCURRENCY") {
        Ok(value) => value
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("LUCID_RECONCILE_CONCURRENCY={value:?}: expected 1 to 65535"))?,
        Err(_) => lucid_operator::reconcile::DEFAULT_CONCURRENCY,
    };
    let server = tokio::spawn(http::serve(
        listener,
        replica.shared.metrics.clone(),
        replica.shared.health.clone(),
    ));
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), ?scopes, election = elected, "lucid-operator starting");
    tokio::select! {
        result = replica.run(client, shutdown_signal()) => result?,
        served = server => {
            return Err(format!("the HTTP server on {addr} stopped: {served:?}").into());
        }
    }
    tracing::info!("lucid-operator stopped");
    Ok(())
}

/// LUCID_WATCH_NAMESPACES (comma-separated) limits the operator to those namespaces (the
/// chart's namespaced mode, with a Role per namespace); unset or empty: the whole cluster.
fn watched_scopes() -> Vec<Scope> {
    Scope::from_list(&std::env::var("LUCID_WATCH_NAMESPACES").unwrap_or_default())
}

fn seconds(var: &str, default: u64) -> Result<u64, Failure> {
    match std::env::var(var) {
        Ok(value) => value
            .parse()
            .map_err(|_| format!("{var}={value:?} is not a whole number of seconds").into()),
        Err(_) => Ok(default),
    }
}

fn election_config() -> Result<Option<ElectionConfig>, Failure> {
    match std::env::var("LUCID_LEADER_ELECTION").as_deref() {
        Ok("true") => {}
        Ok("false") | Err(_) => return Ok(None),
        Ok(other) => {
            return Err(format!("LUCID_LEADER_ELECTION={other:?}: expected true or false").into());
        }
    }
    let namespace = std::env::var("LUCID_LEASE_NAMESPACE")
        .map_err(|_| "LUCID_LEADER_ELECTION=true needs LUCID_LEASE_NAMESPACE")?;
    let name = std::env::var("LUCID_LEASE_NAME").unwrap_or_else(|_| "lucid-operator".into());
    let identity = std::env::var("POD_NAME")
        .map_err(|_| "LUCID_LEADER_ELECTION=true needs POD_NAME (this replica's identity)")?;
    let mut config = ElectionConfig::new(namespace, name, identity);
    config.lease_duration = Duration::from_secs(seconds(
        "LUCID_LEASE_DURATION_SECONDS",
        config.lease_duration.as_secs(),
    )?);
    config.renew_deadline = Duration::from_secs(seconds(
        "LUCID_RENEW_DEADLINE_SECONDS",
        config.renew_deadline.as_secs(),
    )?);
    config.retry_period = Duration::from_secs(seconds(
        "LUCID_RETRY_PERIOD_SECONDS",
        config.retry_period.as_secs(),
    )?);
    if config.retry_period.is_zero()
        || config.renew_deadline >= config.lease_duration
        || config.retry_period >= config.renew_deadline
    {
        return Err(format!(
            "leader election needs 0 < retry period < renew deadline < lease duration, got {:?} / {:?} / {:?}",
            config.retry_period, config.renew_deadline, config.lease_duration
        )
        .into());
    }
    Ok(Some(config))
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
