//! The two controllers and what feeds them: `watches` (one watch per kind into one cache),
//! `wake` (which objects a change concerns), `scope` (where to look, how waits are spread).
//! `run` starts the watches, waits for their caches and builds the controllers.
//!
//! Two kube-runtime 5.0.0 workarounds live in those files and must stay: the watches' events
//! are copied out by our own `fan_out`, not by `store_shared` + `subscribe` (a subscriber
//! handed an object already gone from the cache stops for good), and the caches are waited
//! for once, in one task (several tasks awaiting `Store::wait_until_ready` lose wake-ups).

mod apply;
mod context;
mod discovery;
mod drift;
mod instrument;
mod nodes;
mod phase;
mod protect;
mod references;
mod revisions;
mod scope;
mod service;
mod status_patch;
mod unobserved;
mod wake;
mod watches;

use std::future::Future;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{self, Controller};
use kube::{Client, ResourceExt};

pub use apply::FIELD_MANAGER;
pub use context::{Caches, ChildStores, Context, NamespaceView};
pub use phase::summarise as summarise_phase;
pub use references::{ConfigReference, MissingConfig, config_hash_of, references};
pub(crate) use scope::resync;
pub use scope::{Scope, WatchBackoff};

use crate::api::{LucidPhase, LucidService};
use crate::error::Error;
use crate::health::OperatorHealth;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use scope::ScopedApi;
use wake::{
    dependents_to_wake, generation_or_gone, generation_or_retry, look_at_everything,
    owning_service, peers_of, phase_of, references_config_map, references_secret,
    services_after_phase_change, services_reading,
};

type ServiceGuard = DeserializeGuard<LucidService>;
type PhaseGuard = DeserializeGuard<LucidPhase>;

/// What every controller pair of one process shares: metrics, the health it reports, and
/// whether it may write.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub health: Arc<OperatorHealth>,
    pub leadership: Leadership,
    /// At most this many reconciles of one controller at once (per watched scope): a
    /// restart with a thousand services must not fire a thousand at the API server.
    pub concurrency: u16,
}

/// The default for [`Shared::concurrency`]: reconciles mostly wait on the API server, so a
/// few more than a Pi's four cores, not hundreds.
pub const DEFAULT_CONCURRENCY: u16 = 8;

impl Shared {
    /// One scope, no election: an operator that is the only writer (tests, the demo).
    pub fn standalone() -> Self {
        Self {
            metrics: Arc::new(Metrics::default()),
            health: Arc::new(OperatorHealth::default()),
            leadership: Leadership::sole(),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// Runs both controllers until `shutdown` resolves. Reports to `shared.health` when every
/// cache has listed its objects and when a watch fails or recovers.
pub async fn run(
    client: Client,
    shared: Shared,
    scope: Scope,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let Shared {
        metrics,
        health,
        leadership,
        concurrency,
    } = shared;
    let config = || controller::Config::default().concurrency(concurrency);
    let api = ScopedApi {
        client: client.clone(),
        scope,
    };
    let policy = discovery::policy_version(&client).await;
    tracing::info!(scope = %api.scope, version = policy.api_version(), "PodDisruptionBudgets in the served version");
    let (mut caches, events) = watches::start(&api, &health, policy);
    caches.wait_until_ready(policy).await;
    // Cluster-scoped and optional: after the others, alone (see `Caches::wait_until_ready`).
    caches.nodes = nodes::watch(&client, &health, format!("{}/nodes", api.scope)).await;
    health.caches_synced();
    let (services, phases) = (caches.services.clone(), caches.phases.clone());
    let mut ctx = Context::new(client, metrics, leadership.clone(), caches);
    ctx.policy = policy;
    let ctx = Arc::new(ctx);
    let shutdown = shutdown.shared();

    // Phase status changes with every member; only its spec (paused, dependsOn) changes what
    // services wait for.
    let phases_for_services = events
        .phases_for_services
        .predicate_filter(generation_or_gone(phases.clone()), Default::default());
    let phases_for_peers = events
        .phases_for_peers
        .predicate_filter(generation_or_gone(phases.clone()), Default::default());
    // A service's own status writes do not re-run it: its main trigger sees spec changes
    // (and deletions) only. Readiness of others arrives through `dependents_to_wake`.
    let service_events = events
        .services
        .predicate_filter(generation_or_retry, Default::default());
    let last_seen = Arc::new(wake::LastSeen::default());
    let service_controller = Controller::for_stream(service_events, services.clone())
        .with_config(config())
        .owns_stream(events.deployments)
        .watches_stream(events.pods, |pod: Pod| owning_service(&pod.metadata))
        .watches_stream(events.child_services, |o: PartialObjectMeta<Service>| {
            owning_service(&o.metadata)
        })
        .watches_stream(
            events.network_policies,
            |o: PartialObjectMeta<NetworkPolicy>| owning_service(&o.metadata),
        )
        .watches_stream(
            events.claims,
            |o: PartialObjectMeta<PersistentVolumeClaim>| owning_service(&o.metadata),
        )
        .watches_stream(
            events.budgets,
            |o: PartialObjectMeta<PodDisruptionBudget>| owning_service(&o.metadata),
        )
        .watches_stream(events.services_for_dependents, {
            let (services, phases) = (services.clone(), phases.clone());
            move |changed: ServiceGuard| {
                dependents_to_wake(&services, &phases, &last_seen, &changed)
            }
        })
        .watches_stream(phases_for_services, {
            let (services, phases) = (services.clone(), phases.clone());
            move |phase: PhaseGuard| services_after_phase_change(&services, &phases, &phase)
        })
        // ConfigMaps and Secrets by metadata only: their contents are read when they change.
        .watches_stream(events.config_maps, {
            let services = services.clone();
            move |cm: PartialObjectMeta<ConfigMap>| {
                services_reading(
                    &services,
                    references_config_map,
                    &cm.namespace().unwrap_or_default(),
                    &cm.name_any(),
                )
            }
        })
        .watches_stream(events.secrets, {
            let services = services.clone();
            move |secret: PartialObjectMeta<Secret>| {
                services_reading(
                    &services,
                    references_secret,
                    &secret.namespace().unwrap_or_default(),
                    &secret.name_any(),
                )
            }
        })
        // A replica that starts leading looks at everything: as a standby it wrote nothing.
        // So does one whose watches come back after an outage.
        .reconcile_all_on(look_at_everything(&leadership, &health))
        .graceful_shutdown_on(shutdown.clone())
        .run(service::reconcile, instrument::error_policy, ctx.clone())
        .for_each(|_| async {});

    // A phase's status write is throttled in its reconcile (`phase::PHASE_WRITE_INTERVAL`).
    // Services gate on members' own status, never on this one, so the rollout never waits.
    let phase_controller = Controller::for_stream(events.phases, phases.clone())
        .with_config(config())
        .watches_stream(events.services_for_phases, |ls: ServiceGuard| phase_of(&ls))
        .watches_stream(phases_for_peers, move |changed: PhaseGuard| {
            peers_of(&phases, &changed)
        })
        .reconcile_all_on(look_at_everything(&leadership, &health))
        .graceful_shutdown_on(shutdown)
        .run(phase::reconcile, instrument::error_policy, ctx)
        .for_each(|_| async {});

    tracing::info!("controllers started");
    futures::join!(service_controller, phase_controller);
    Ok(())
}
