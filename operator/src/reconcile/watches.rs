//! The watches: one per kind, each feeding one cache, its changes copied to every consumer
//! only after the cache holds them (see `fan_out`). Triggers and the cache reconciles read
//! therefore never disagree: separate watches per consumer would let a trigger overtake the
//! cache and leave a reconcile deciding on stale data with nothing to wake it again.
//! ConfigMaps and Secrets are watched by metadata only: contents are read on demand.
//!
//! kube-runtime's own shared streams (`store_shared` + `subscribe`) are not used: a
//! subscriber handed an object already gone from the cache returns `Pending` without a
//! waker and stops for good (kube-runtime 5.0.0, `ReflectHandle::poll_next`).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolumeClaim, Pod, PodSpec, Secret, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::apply::ChildKind;
use super::context::{Caches, ChildStores};
use super::drift;
use super::scope::{ScopedApi, WatchBackoff};
use super::{PhaseGuard, ServiceGuard};
use crate::health::OperatorHealth;
use crate::render::disruption_budget::{PodDisruptionBudgetV1beta1, PolicyVersion};
use crate::render::labels;

/// Objects per page of a watch's list (kube-runtime's default is 500). Measured on a restart
/// with 1,000 services: see BENCHMARKS.md.
const LIST_PAGE: u32 = 100;

/// A consumer's share of one watch's changes (see `fan_out`).
pub(super) type Changes<K> = futures::channel::mpsc::UnboundedReceiver<Result<K, watcher::Error>>;

/// Every consumer's share of the watches' changes: one field per (kind, consumer).
pub(super) struct Events {
    /// The service controller's own trigger.
    pub services: Changes<ServiceGuard>,
    /// For the services that depend on a changed one.
    pub services_for_dependents: Changes<ServiceGuard>,
    /// For the phase a changed service is in.
    pub services_for_phases: Changes<ServiceGuard>,
    /// The phase controller's own trigger.
    pub phases: Changes<PhaseGuard>,
    /// For the members of a changed phase and of the phases after it.
    pub phases_for_services: Changes<PhaseGuard>,
    /// For the phases that may name a changed one.
    pub phases_for_peers: Changes<PhaseGuard>,
    pub deployments: Changes<Deployment>,
    pub pods: Changes<Pod>,
    pub child_services: Changes<PartialObjectMeta<Service>>,
    pub network_policies: Changes<PartialObjectMeta<NetworkPolicy>>,
    pub claims: Changes<PartialObjectMeta<PersistentVolumeClaim>>,
    /// Budgets in whichever version is served, as v1 metadata (the same fields).
    pub budgets: futures::stream::BoxStream<
        'static,
        Result<PartialObjectMeta<PodDisruptionBudget>, watcher::Error>,
    >,
    pub config_maps: Changes<PartialObjectMeta<ConfigMap>>,
    pub secrets: Changes<PartialObjectMeta<Secret>>,
}

/// Starts every watch of one scope. Each reports to `health` under `<scope>/<kind>`, so one
/// scope's events never clear another's in `/healthz`.
pub(super) fn start(
    api: &ScopedApi,
    health: &Arc<OperatorHealth>,
    policy: PolicyVersion,
) -> (Caches, Events) {
    let scope = api.scope.to_string();
    let name = |kind: &str| format!("{scope}/{kind}");
    // Lists in pages of LIST_PAGE: every watch lists at once when the operator starts, and
    // each page is held twice (body and objects) while it is read.
    let all = || watcher::Config::default().page_size(LIST_PAGE);
    let managed = || {
        all().labels(&format!(
            "{}={}",
            labels::MANAGED_BY_KEY,
            labels::MANAGED_BY
        ))
    };

    let (services, services_writer) = reflector::store::<ServiceGuard>();
    let [service_events, services_for_dependents, services_for_phases] = fan_out(
        name("lucidservices"),
        health,
        reflector(
            services_writer,
            watcher(api.of::<ServiceGuard>(), all())
                .backoff(WatchBackoff::default())
                .modify(|g| drop_managed_fields(&mut g.0)),
        ),
    );
    let (phases, phases_writer) = reflector::store::<PhaseGuard>();
    let [phase_events, phases_for_services, phases_for_peers] = fan_out(
        name("lucidphases"),
        health,
        reflector(
            phases_writer,
            watcher(api.of::<PhaseGuard>(), all())
                .backoff(WatchBackoff::default())
                .modify(|g| drop_managed_fields(&mut g.0)),
        ),
    );
    let (deployments, deployments_writer) = reflector::store::<Deployment>();
    let [deployment_events] = fan_out(
        name("deployments"),
        health,
        reflector(
            deployments_writer,
            // Managed fields are a third of a Deployment's size and nothing here reads them.
            watcher(api.of::<Deployment>(), managed())
                .backoff(WatchBackoff::default())
                .modify(drift::trim_deployment),
        ),
    );

    // Pods of managed Deployments, for what stops a rollout (image pulls, crash loops,
    // scheduling): kept trimmed to their container names and images, status and labels.
    let (pods, pods_writer) = reflector::store::<Pod>();
    let [pod_events] = fan_out(
        name("pods"),
        health,
        reflector(
            pods_writer,
            watcher(api.of::<Pod>(), managed())
                .backoff(WatchBackoff::default())
                .modify(trim_pod),
        ),
    );

    // The other children by metadata only, label-selected, for drift: a Service, NetworkPolicy
    // or claim deleted or edited by someone wakes its service, which puts it back. What counts
    // as an edit is each kind's `ChildKind::WATCHED`.
    let (child_services, child_service_events) =
        cached_metadata(name("services"), health, api.of(), managed(), |meta| {
            drift::trim_child(meta, Service::WATCHED)
        });
    let (network_policies, network_policy_events) = cached_metadata(
        name("networkpolicies"),
        health,
        api.of(),
        managed(),
        |meta| drift::trim_child(meta, NetworkPolicy::WATCHED),
    );
    let (claims, claim_events) = cached_metadata(
        name("persistentvolumeclaims"),
        health,
        api.of(),
        managed(),
        |meta| drift::trim_child(meta, PersistentVolumeClaim::WATCHED),
    );

    // Budgets: only the served version is watched (the other would fail for ever); its
    // events reach the controller as v1 metadata, which is the same.
    let (budgets, budgets_v1beta1, budget_events) = match policy {
        PolicyVersion::V1 => {
            let (budgets, events) = cached_metadata(
                name("poddisruptionbudgets"),
                health,
                api.of(),
                managed(),
                |meta| drift::trim_child(meta, PodDisruptionBudget::WATCHED),
            );
            (budgets, reflector::store().0, events.boxed())
        }
        PolicyVersion::V1beta1 => {
            let (budgets, events) = cached_metadata(
                name("poddisruptionbudgets"),
                health,
                api.of(),
                managed(),
                |meta| drift::trim_child(meta, PodDisruptionBudgetV1beta1::WATCHED),
            );
            let as_v1 = events.map(|event| {
                event.map(
                    |old: PartialObjectMeta<PodDisruptionBudgetV1beta1>| PartialObjectMeta {
                        types: None,
                        metadata: old.metadata,
                        _phantom: std::marker::PhantomData,
                    },
                )
            });
            (reflector::store().0, budgets, as_v1.boxed())
        }
    };

    // ConfigMaps and Secrets by metadata only: kube-client 5 asks for
    // `as=PartialObjectMetadata(List)` on an `Api<PartialObjectMeta<_>>`, so no value crosses
    // the wire (a `kubectl apply` copy in an annotation aside, dropped on arrival). The cache
    // says which version of each is current; a reconcile reads one only when that changed.
    // Run here rather than by `Controller::watches` so that /healthz sees them too.
    let (config_maps, config_map_events) = cached_metadata(
        name("configmaps"),
        health,
        api.of(),
        all(),
        drift::trim_referenced,
    );
    let (secrets, secret_events) = cached_metadata(
        name("secrets"),
        health,
        api.of(),
        all(),
        drift::trim_referenced,
    );

    let caches = Caches {
        services,
        phases,
        deployments,
        pods,
        children: ChildStores {
            services: child_services,
            network_policies,
            claims,
            budgets,
            budgets_v1beta1,
        },
        config_maps,
        secrets,
        // Started by `nodes::watch` once the others have listed.
        nodes: None,
    };
    let events = Events {
        services: service_events,
        services_for_dependents,
        services_for_phases,
        phases: phase_events,
        phases_for_services,
        phases_for_peers,
        deployments: deployment_events,
        pods: pod_events,
        child_services: child_service_events,
        network_policies: network_policy_events,
        claims: claim_events,
        budgets: budget_events,
        config_maps: config_map_events,
        secrets: secret_events,
    };
    (caches, events)
}

impl Caches {
    /// Once every cache has listed. Gating on a half-filled cache would report dependencies
    /// as missing, so the controllers start only then. Waited for here, once: in
    /// kube-runtime 5.0.0 several tasks awaiting `Store::wait_until_ready` at once lose
    /// wake-ups (one oneshot, one waker).
    pub(super) async fn wait_until_ready(&self, policy: PolicyVersion) {
        let policy_is_v1beta1 = policy == PolicyVersion::V1beta1;
        let Caches {
            services,
            phases,
            deployments,
            pods,
            children:
                ChildStores {
                    services: child_services,
                    network_policies,
                    claims,
                    budgets,
                    budgets_v1beta1,
                },
            config_maps,
            secrets,
            nodes: _,
        } = self;
        // Only the served version's cache is ever filled (see `start`).
        let served_budgets = async {
            if policy_is_v1beta1 {
                let _ = budgets_v1beta1.wait_until_ready().await;
            } else {
                let _ = budgets.wait_until_ready().await;
            }
        };
        let _ = futures::join!(
            services.wait_until_ready(),
            phases.wait_until_ready(),
            deployments.wait_until_ready(),
            pods.wait_until_ready(),
            child_services.wait_until_ready(),
            network_policies.wait_until_ready(),
            claims.wait_until_ready(),
            served_budgets,
            config_maps.wait_until_ready(),
            secrets.wait_until_ready(),
        );
    }
}

/// Copies each object a reflector yields to `N` consumers. The reflector writes its cache
/// before it yields, so every consumer sees a trigger only once the cache has the change: a
/// reconcile woken by "X is Ready" always finds X Ready in the cache.
/// Every watch event also tells `health` whether the watch works (`name` says which).
pub(super) fn fan_out<K, const N: usize>(
    name: String,
    health: &Arc<OperatorHealth>,
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> [Changes<K>; N]
where
    K: Clone + Send + Sync + 'static,
{
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..N).map(|_| futures::channel::mpsc::unbounded()).unzip();
    let health = health.clone();
    tokio::spawn(async move {
        // Recovered once the cache is whole again (a re-list done) or a live event arrives.
        let events = events.inspect({
            let name = name.clone();
            move |event| match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => health.watch_recovered(&name),
                Err(_) => health.watch_failed(&name),
            }
        });
        // Changes and deletions (removing a member can complete a phase). Objects listed
        // (InitApply) are not copied out: they are in the cache, and the controllers look at
        // everything once they start and after a watch recovers (`look_at_everything`).
        // Copied, a thousand listed objects would wait in every consumer's queue until the
        // controllers start: measured, that doubled the peak memory of a restart.
        let changes = events.filter_map(|event| {
            futures::future::ready(match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => {
                    Some(Ok(object))
                }
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
        });
        let mut objects = std::pin::pin!(changes);
        while let Some(event) = objects.next().await {
            match event {
                Ok(object) => {
                    for tx in &senders {
                        let _ = tx.unbounded_send(Ok(object.clone()));
                    }
                }
                // The watcher retries with backoff; `health` fails liveness if it never recovers.
                Err(error) => {
                    tracing::warn!(watch = name, error = %error, "watch failed; retrying")
                }
            }
        }
    });
    match receivers.try_into() {
        Ok(array) => array,
        Err(_) => unreachable!("exactly N receivers were made"),
    }
}

/// Managed fields are a third of an object's size and nothing reads them from the caches
/// (status is written by server-side apply, which needs none of them client-side).
fn drop_managed_fields<K: kube::Resource>(
    object: &mut Result<K, kube::core::error_boundary::InvalidObject>,
) {
    match object {
        Ok(object) => object.meta_mut().managed_fields = None,
        Err(invalid) => invalid.metadata.managed_fields = None,
    }
}

/// One kind watched by metadata only into a cache (each object trimmed by `trim` to what the
/// reconciles read), its changes copied out to one consumer through `fan_out`.
fn cached_metadata<K>(
    name: String,
    health: &Arc<OperatorHealth>,
    api: Api<PartialObjectMeta<K>>,
    config: watcher::Config,
    trim: fn(&mut ObjectMeta),
) -> (Store<PartialObjectMeta<K>>, Changes<PartialObjectMeta<K>>)
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    PartialObjectMeta<K>: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<PartialObjectMeta<K>>();
    let [events] = fan_out(
        name,
        health,
        reflector(
            writer,
            watcher(api, config)
                .backoff(WatchBackoff::default())
                .modify(move |o| trim(&mut o.metadata)),
        ),
    );
    (store, events)
}

/// Keeps of a pod only what `status::pod_problem` reads: a pod's spec and managed fields
/// are most of its size.
fn trim_pod(pod: &mut Pod) {
    pod.managed_fields_mut().clear();
    pod.annotations_mut().clear();
    if let Some(spec) = pod.spec.take() {
        let trim = |c: &Container| Container {
            name: c.name.clone(),
            image: c.image.clone(),
            ..Default::default()
        };
        pod.spec = Some(PodSpec {
            containers: spec.containers.iter().map(trim).collect(),
            init_containers: spec.init_containers.map(|cs| cs.iter().map(trim).collect()),
            // Where it runs: status names the nodes, and a lost node is found by it.
            node_name: spec.node_name,
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::core::ObjectMeta;
    use kube::runtime::watcher::{Error, Event};

    use super::fan_out;
    use crate::health::OperatorHealth;
    use crate::leader::Leadership;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Every consumer gets every changed and deleted object, in order, and no listed one; a
    /// failure is reported to /healthz and the next event clears it.
    #[tokio::test]
    async fn fan_out_copies_every_touched_object_to_each_consumer_and_reports_failures() {
        let health =
            std::sync::Arc::new(OperatorHealth::new(1, Duration::ZERO, Leadership::sole()));
        let recovered = health.recoveries();
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(cm("listed"))),
            Ok(Event::InitDone),
            Err(Error::NoResourceVersion),
            Ok(Event::Apply(cm("changed"))),
            Ok(Event::Delete(cm("deleted"))),
        ]);
        let [first, second] = fan_out::<ConfigMap, 2>("ns/configmaps".into(), &health, events);
        for consumer in [first, second] {
            let names: Vec<String> = consumer
                .filter_map(|o| async move { o.ok().and_then(|o| o.metadata.name) })
                .collect()
                .await;
            // Listed objects stay in the cache: the controllers look at everything at start.
            assert_eq!(names, ["changed", "deleted"]);
        }
        assert!(
            recovered.has_changed().unwrap_or(false),
            "the event after the failure counts as a recovery"
        );
        assert!(health.live().is_ok(), "nothing is failing any more");
    }
}
