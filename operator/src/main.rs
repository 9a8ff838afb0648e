//! `lucid-operator`: runs the LucidService and LucidPhase controllers against the cluster in
//! the ambient kubeconfig (in a pod: its service account).

use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt;

use lucid_operator::metrics::Metrics;
use lucid_operator::{http, reconcile, telemetry};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
        Some(other) => {
            return Err(format!(
                "unknown argument {other:?}: lucid-operator takes no arguments but `--version` \
                 and `check`; it is configured by environment (LUCID_WATCH_NAMESPACES, \
                 LUCID_HTTP_ADDR, RUST_LOG, LOG_FORMAT)"
            )
            .into());
        }
    }
    telemetry::init();
    let addr: SocketAddr = std::env::var("LUCID_HTTP_ADDR")
        .unwrap_or_else(|_| "0.0.0.0:8080".into())
        .parse()?;
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let server = tokio::spawn(http::serve(addr, metrics.clone()));
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "lucid-operator starting");
    let scopes = watched_scopes();
    tracing::info!(?scopes, "watching");
    // One pair of controllers per namespace: a namespaced Role grants no cluster-wide list,
    // and phases and services never refer across namespaces.
    let shutdown = shutdown_signal().shared();
    let controllers = scopes.into_iter().map(|scope| {
        reconcile::run(client.clone(), metrics.clone(), scope, shutdown.clone())
    });
    futures::future::try_join_all(controllers).await?;
    server.abort();
    tracing::info!("lucid-operator stopped");
    Ok(())
}

/// LUCID_WATCH_NAMESPACES (comma-separated) limits the operator to those namespaces (the
/// chart's namespaced mode, with a Role per namespace); unset or empty: the whole cluster.
fn watched_scopes() -> Vec<reconcile::Scope> {
    reconcile::Scope::from_list(&std::env::var("LUCID_WATCH_NAMESPACES").unwrap_or_default())
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
