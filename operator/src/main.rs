//! `lucid-operator`: runs the LucidService and LucidPhase controllers against the cluster in
//! the ambient kubeconfig (in a pod: its service account).

use std::net::SocketAddr;
use std::sync::Arc;

use lucid_operator::metrics::Metrics;
use lucid_operator::{http, reconcile, telemetry};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // How the image build checks that a binary (an arm64 one under qemu) starts at all.
    if std::env::args().skip(1).any(|a| a == "--version") {
        println!("lucid-operator {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    telemetry::init();
    let addr: SocketAddr = std::env::var("LUCID_HTTP_ADDR")
        .unwrap_or_else(|_| "0.0.0.0:8080".into())
        .parse()?;
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let server = tokio::spawn(http::serve(addr, metrics.clone()));
    tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "lucid-operator starting");
    // LUCID_WATCH_NAMESPACE limits the operator to one namespace (a namespaced install).
    let scope = match std::env::var("LUCID_WATCH_NAMESPACE") {
        Ok(ns) if !ns.is_empty() => reconcile::Scope::Namespace(ns),
        _ => reconcile::Scope::Cluster,
    };
    reconcile::run(client, metrics, scope, shutdown_signal()).await?;
    server.abort();
    tracing::info!("lucid-operator stopped");
    Ok(())
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
