//! An operator replica (the same `Replica` `main` runs) in its own tokio runtime under one
//! user's identity: killing it drops every one of its tasks without polling them again, as
//! SIGKILL would (in-flight requests cut, no Lease released).

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use lucid_operator::leader::{ElectionConfig, Leadership};
use lucid_operator::reconcile::Scope;
use lucid_operator::runtime::Replica;

use crate::control_plane;

pub struct Running {
    pub identity: String,
    pub leadership: Leadership,
    pub metrics: std::sync::Arc<lucid_operator::metrics::Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    runtime: tokio::runtime::Runtime,
}

/// A client with `user`'s own token (one of the control plane's users), reaching the API
/// server at `server` when given (a proxy in front of it).
pub async fn client_as(user: &str, server: Option<&str>) -> Client {
    let kubeconfig =
        Kubeconfig::read_from(control_plane().kubeconfig_for(user)).expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    if let Some(server) = server {
        config.cluster_url = server.parse().expect("server URL");
    }
    Client::try_from(config).expect("client")
}

impl Running {
    /// Starts a replica watching `namespace` as `user`; with `election`, it must win the
    /// Lease first.
    pub fn start(namespace: &str, user: &str, election: Option<ElectionConfig>) -> Running {
        Self::start_via(namespace, user, election, None)
    }

    /// [`Running::start`] reaching the API server at `server`.
    pub fn start_via(
        namespace: &str,
        user: &str,
        election: Option<ElectionConfig>,
        server: Option<String>,
    ) -> Running {
        let identity = election
            .as_ref()
            .map(|e| e.identity.clone())
            .unwrap_or_else(|| user.to_string());
        let replica = Replica::new(
            vec![Scope::Namespace(namespace.into())],
            election,
            Duration::from_secs(60),
        );
        let leadership = replica.shared.leadership.clone();
        let metrics = replica.shared.metrics.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let user = user.to_string();
        let task = runtime.spawn(async move {
            // The client's own tasks live in this runtime too, and die with it.
            let client = client_as(&user, server.as_deref()).await;
            let stopped = async move {
                let _ = stopped.await;
            };
            if let Err(e) = replica.run(client, stopped).await {
                panic!("replica failed: {e}");
            }
        });
        Running {
            identity,
            leadership,
            metrics,
            stop: Some(stop),
            task,
            runtime,
        }
    }

    /// Whether its task still runs (it ends only when stopped, or by a panic).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// As SIGKILL: nothing of it runs again.
    pub fn kill(self) {
        self.runtime.shutdown_background();
    }

    /// As SIGTERM: in-flight reconciles finish, the Lease (if held) is released.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("a replica stops")
            .expect("without error");
        self.runtime.shutdown_background();
    }
}
