//! One operator replica: its controllers (one pair per watched namespace) and, with several
//! replicas, the leader election that decides whether it writes. `main` and the tests run
//! exactly this.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::Client;

use crate::error::Error;
use crate::health::OperatorHealth;
use crate::leader::{self, ElectionConfig, Leadership, Role};
use crate::metrics::Metrics;
use crate::reconcile::{self, Scope, Shared};

pub struct Replica {
    pub shared: Shared,
    election: Option<ElectionConfig>,
    scopes: Vec<Scope>,
}

impl Replica {
    /// `election: None` runs a sole writer (one replica by configuration).
    pub fn new(
        scopes: Vec<Scope>,
        election: Option<ElectionConfig>,
        watch_stall: Duration,
    ) -> Self {
        let leadership = match &election {
            Some(_) => Leadership::elected(),
            None => Leadership::sole(),
        };
        let metrics = Arc::new(Metrics::default());
        if election.is_none() {
            metrics.leader.set(1);
        }
        let health = Arc::new(OperatorHealth::new(
            scopes.len(),
            watch_stall,
            leadership.clone(),
        ));
        Self {
            shared: Shared {
                metrics,
                health,
                leadership,
                concurrency: crate::reconcile::DEFAULT_CONCURRENCY,
            },
            election,
            scopes,
        }
    }

    /// Runs until `shutdown` resolves: the controllers finish their in-flight reconciles,
    /// then the Lease is released (if held) so a standby takes over at once.
    pub async fn run(
        self,
        client: Client,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) -> Result<(), Error> {
        let Replica {
            shared,
            election,
            scopes,
        } = self;
        let (controllers_done, controllers_stopped) = tokio::sync::oneshot::channel::<()>();
        let elector = election.map(|config| {
            let metrics = shared.metrics.clone();
            tokio::spawn(leader::run(
                client.clone(),
                config,
                shared.leadership.clone(),
                move |role| {
                    metrics.leader.set(i64::from(role == Role::Leader));
                    metrics.leader_transitions.inc();
                    if role != Role::Leader {
                        metrics.forget_phases();
                    }
                },
                controllers_stopped.map(drop),
            ))
        });
        let shutdown = shutdown.shared();
        let controllers =
            futures::future::try_join_all(scopes.into_iter().map(|scope| {
                reconcile::run(client.clone(), shared.clone(), scope, shutdown.clone())
            }))
            .await;
        let _ = controllers_done.send(());
        if let Some(elector) = elector {
            let _ = elector.await;
        }
        controllers.map(drop)
    }
}
