//! The two controllers and the watches that feed them.
//!
//! One watch per kind (LucidService, LucidPhase, managed Deployments) feeds one cache, and
//! its events are copied to every controller and mapper that needs them, only after the
//! cache holds them (see `fan_out`). Triggers and the cache reconciles read therefore never
//! disagree: separate watches per consumer would let a trigger overtake the cache and leave
//! a reconcile deciding on stale data with nothing to wake it again.
//! ConfigMaps and Secrets are watched by metadata only: contents are read on demand.
//!
//! kube-runtime's own shared streams (`store_shared` + `subscribe`) are not used: a
//! subscriber handed an object already gone from the cache returns `Pending` without a
//! waker and stops for good (kube-runtime 5.0.0, `ReflectHandle::poll_next`).

mod apply;
mod context;
mod drift;
mod nodes;
mod phase;
mod protect;
mod references;
mod revisions;
mod service;
mod unobserved;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolumeClaim, Pod, PodSpec, Secret, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

pub use apply::FIELD_MANAGER;
pub use context::{Caches, ChildStores, Context, NamespaceView};
pub use phase::summarise as summarise_phase;
pub use references::{Missing, Reference, config_hash_of, references};

use crate::api::{LucidPhase, LucidService};
use crate::error::Error;
use crate::graph::service_ready;
use crate::health::Health;
use crate::leader::{Leadership, Role};
use crate::metrics::Metrics;
use crate::render::labels;

type ServiceGuard = DeserializeGuard<LucidService>;
type PhaseGuard = DeserializeGuard<LucidPhase>;

/// What every controller pair of one process shares: metrics, the health it reports, and
/// whether it may write.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
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
            health: Arc::new(Health::default()),
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
    // Watches are named per scope in `/healthz`: one scope's events never clear another's.
    let scope_name = scope.to_string();
    let api = ScopedApi {
        client: client.clone(),
        scope,
    };
    // Lists in pages of LIST_PAGE: every watch lists at once when the operator starts, and
    // each page is held twice (body and objects) while it is read.
    let all = || watcher::Config::default().page_size(LIST_PAGE);

    let (services, services_writer) = reflector::store::<ServiceGuard>();
    let (phases, phases_writer) = reflector::store::<PhaseGuard>();
    let (deployments, deployments_writer) = reflector::store::<Deployment>();
    let managed = all().labels(&format!(
        "{}={}",
        labels::MANAGED_BY_KEY,
        labels::MANAGED_BY
    ));
    let [
        service_events,
        service_events_for_dependents,
        service_events_for_phases,
    ] = fan_out(
        format!("{scope_name}/lucidservices"),
        &health,
        reflector(
            services_writer,
            watcher(api.of::<ServiceGuard>(), all())
                .backoff(WatchBackoff::default())
                .modify(|g| drop_managed_fields(&mut g.0)),
        ),
    );
    let [
        phase_events,
        phase_events_for_services,
        phase_events_for_peers,
    ] = fan_out(
        format!("{scope_name}/lucidphases"),
        &health,
        reflector(
            phases_writer,
            watcher(api.of::<PhaseGuard>(), all())
                .backoff(WatchBackoff::default())
                .modify(|g| drop_managed_fields(&mut g.0)),
        ),
    );
    let [deployment_events] = fan_out(
        format!("{scope_name}/deployments"),
        &health,
        reflector(
            deployments_writer,
            // Managed fields are a third of a Deployment's size and nothing here reads them.
            watcher(api.of::<Deployment>(), managed.clone())
                .backoff(WatchBackoff::default())
                .modify(drift::trim_deployment),
        ),
    );

    // Pods of managed Deployments, for what stops a rollout (image pulls, crash loops,
    // scheduling): kept trimmed to their container names and images, status and labels.
    let (pods, pods_writer) = reflector::store::<Pod>();
    let [pod_events] = fan_out(
        format!("{scope_name}/pods"),
        &health,
        reflector(
            pods_writer,
            watcher(api.of::<Pod>(), managed.clone())
                .backoff(WatchBackoff::default())
                .modify(trim_pod),
        ),
    );

    // The other children by metadata only, label-selected, for drift: a Service, NetworkPolicy
    // or claim deleted or edited by someone wakes its service, which puts it back.
    let (child_services, child_service_events) = cached_metadata(
        format!("{scope_name}/services"),
        &health,
        api.of::<PartialObjectMeta<Service>>(),
        managed.clone(),
        |meta| drift::trim_child(meta, Some(drift::Watched::ServicePortsAndSelector)),
    );
    let (network_policies, network_policy_events) = cached_metadata(
        format!("{scope_name}/networkpolicies"),
        &health,
        api.of::<PartialObjectMeta<NetworkPolicy>>(),
        managed.clone(),
        |meta| drift::trim_child(meta, Some(drift::Watched::WholeSpec)),
    );
    // Claims: deletion only. Their spec is immutable but for a size the API server checks,
    // and binding writes it.
    let (claims, claim_events) = cached_metadata(
        format!("{scope_name}/persistentvolumeclaims"),
        &health,
        api.of::<PartialObjectMeta<PersistentVolumeClaim>>(),
        managed.clone(),
        |meta| drift::trim_child(meta, None),
    );

    // ConfigMaps and Secrets by metadata only: kube-client 5 asks for
    // `as=PartialObjectMetadata(List)` on an `Api<PartialObjectMeta<_>>`, so no value crosses
    // the wire (a `kubectl apply` copy in an annotation aside, dropped on arrival). The cache
    // says which version of each is current; a reconcile reads one only when that changed.
    // Run here rather than by `Controller::watches` so that /healthz sees them too.
    let (config_maps, config_map_events) = cached_metadata(
        format!("{scope_name}/configmaps"),
        &health,
        api.of::<PartialObjectMeta<ConfigMap>>(),
        all(),
        drift::trim_referenced,
    );
    let (secrets, secret_events) = cached_metadata(
        format!("{scope_name}/secrets"),
        &health,
        api.of::<PartialObjectMeta<Secret>>(),
        all(),
        drift::trim_referenced,
    );

    // Gating on a half-filled cache would report dependencies as missing, so the controllers
    // start once every cache has listed. Waited for here, once: in kube-runtime 5.0.0 several
    // tasks awaiting `Store::wait_until_ready` at once lose wake-ups (one oneshot, one waker).
    let _ = futures::join!(
        services.wait_until_ready(),
        phases.wait_until_ready(),
        deployments.wait_until_ready(),
        pods.wait_until_ready(),
        child_services.wait_until_ready(),
        network_policies.wait_until_ready(),
        claims.wait_until_ready(),
        config_maps.wait_until_ready(),
        secrets.wait_until_ready(),
    );
    let nodes = nodes::watch(&client, &health, format!("{scope_name}/nodes")).await;
    health.caches_synced();
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics,
        leadership.clone(),
        Caches {
            services: services.clone(),
            phases: phases.clone(),
            deployments,
            pods,
            children: ChildStores {
                services: child_services,
                network_policies,
                claims,
            },
            config_maps,
            secrets,
            nodes,
        },
    ));
    let shutdown = shutdown.shared();

    let readiness = Arc::new(Mutex::new(HashMap::<String, (bool, bool)>::new()));
    // Phase status changes with every member; only its spec (paused, dependsOn) changes what
    // services wait for.
    let phase_events_for_services = phase_events_for_services
        .predicate_filter(generation_or_gone(phases.clone()), Default::default());
    let phase_events_for_peers = phase_events_for_peers
        .predicate_filter(generation_or_gone(phases.clone()), Default::default());
    let (services_for_deps, phases_for_deps) = (services.clone(), phases.clone());
    let (services_for_phase_map, phases_for_phase_map) = (services.clone(), phases.clone());
    let (services_for_cm, services_for_secrets) = (services.clone(), services.clone());
    // A service's own status writes do not re-run it: its main trigger sees spec changes
    // (and deletions) only. Readiness of others arrives through `dependents_to_wake`.
    let service_events = service_events.predicate_filter(generation_or_retry, Default::default());
    let service_controller = Controller::for_stream(service_events, services.clone())
        .with_config(config())
        .owns_stream(deployment_events)
        .watches_stream(pod_events, |pod: Pod| owning_service(&pod.metadata))
        .watches_stream(child_service_events, |o: PartialObjectMeta<Service>| {
            owning_service(&o.metadata)
        })
        .watches_stream(
            network_policy_events,
            |o: PartialObjectMeta<NetworkPolicy>| owning_service(&o.metadata),
        )
        .watches_stream(
            claim_events,
            |o: PartialObjectMeta<PersistentVolumeClaim>| owning_service(&o.metadata),
        )
        .watches_stream(
            service_events_for_dependents,
            move |changed: ServiceGuard| {
                dependents_to_wake(&services_for_deps, &phases_for_deps, &readiness, &changed)
            },
        )
        .watches_stream(phase_events_for_services, move |phase: PhaseGuard| {
            services_after_phase_change(&services_for_phase_map, &phases_for_phase_map, &phase)
        })
        // ConfigMaps and Secrets by metadata only: their contents are read when they change.
        .watches_stream(
            config_map_events,
            move |cm: PartialObjectMeta<ConfigMap>| {
                services_reading(
                    &services_for_cm,
                    references_config_map,
                    &cm.namespace().unwrap_or_default(),
                    &cm.name_any(),
                )
            },
        )
        .watches_stream(secret_events, move |secret: PartialObjectMeta<Secret>| {
            services_reading(
                &services_for_secrets,
                references_secret,
                &secret.namespace().unwrap_or_default(),
                &secret.name_any(),
            )
        })
        // A replica that starts leading looks at everything: as a standby it wrote nothing.
        // So does one whose watches come back after an outage.
        .reconcile_all_on(look_at_everything(&leadership, &health))
        .graceful_shutdown_on(shutdown.clone())
        .run(service::reconcile, service::error_policy, ctx.clone())
        .for_each(|_| async {});

    let phases_for_peers = phases.clone();
    // A phase's status write is throttled in its reconcile (`phase::PHASE_WRITE_INTERVAL`).
    // Services gate on members' own status, never on this one, so the rollout never waits.
    let phase_controller = Controller::for_stream(phase_events, phases.clone())
        .with_config(config())
        .watches_stream(service_events_for_phases, |ls: ServiceGuard| {
            let Ok(ls) = &ls.0 else { return Vec::new() };
            vec![
                ObjectRef::<PhaseGuard>::new(&ls.spec.phase)
                    .within(&ls.namespace().unwrap_or_default()),
            ]
        })
        .watches_stream(phase_events_for_peers, move |changed: PhaseGuard| {
            // Phases that name this one may now have (or lose) a missing dependency or cycle.
            let ns = changed.namespace();
            phases_for_peers
                .state()
                .iter()
                .filter(|p| p.namespace() == ns && p.name_any() != changed.name_any())
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(look_at_everything(&leadership, &health))
        .graceful_shutdown_on(shutdown)
        .run(phase::reconcile, phase::error_policy, ctx)
        .for_each(|_| async {});

    tracing::info!("controllers started");
    futures::join!(service_controller, phase_controller);
    Ok(())
}

/// Objects per page of a watch's list (kube-runtime's default is 500). Measured on a restart
/// with 1,000 services: see BENCHMARKS.md.
const LIST_PAGE: u32 = 100;

/// How a failed watch retries: 0.5 s doubling to 5 s, with jitter. kube-runtime's default
/// grows to 30 s, so a watch that failed through a 30 s API server outage could wait almost as
/// long again once the server is back (measured: 72 s to converge after a 30 s outage). A
/// few watches retried every 5 s cost a small cluster nothing.
pub struct WatchBackoff {
    next: std::time::Duration,
}

impl WatchBackoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(500);
    const CAP: std::time::Duration = std::time::Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        // Up to a fifth more, so many watches failing together do not retry in step.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Some(delay + delay.mul_f64(f64::from(nanos % 1000) / 5000.0))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// A periodic re-check `base` from now, spread by up to a tenth more: services reconciled
/// together (a restart, a phase turning Ready) must not all re-check in the same second.
pub(crate) fn resync(base: std::time::Duration) -> kube::runtime::controller::Action {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    kube::runtime::controller::Action::requeue(
        base + base.mul_f64(f64::from(nanos % 1000) / 10_000.0),
    )
}

/// One span per reconcile: what it is about now, how it ended and how long it took later.
fn reconcile_span<K: kube::Resource>(kind: &'static str, object: &K) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        kind,
        namespace = %object.meta().namespace.as_deref().unwrap_or_default(),
        name = %object.meta().name.as_deref().unwrap_or_default(),
        generation = object.meta().generation.unwrap_or_default(),
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    )
}

/// Fires once when the controllers start (the caches have listed everything; listed objects
/// are not sent as triggers, see `fan_out`), when this replica starts leading and when a
/// failed watch works again.
fn look_at_everything(
    leadership: &Leadership,
    health: &Health,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    let recovered = futures::stream::unfold(health.recoveries(), |mut n| async move {
        n.changed().await.ok()?;
        Some(((), n))
    });
    let started = futures::stream::once(futures::future::ready(()));
    futures::stream::select(
        started,
        futures::stream::select(became_leader(leadership), recovered),
    )
}

/// Fires each time this replica starts leading.
fn became_leader(leadership: &Leadership) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(leadership.subscribe(), |mut role| async move {
        loop {
            role.changed().await.ok()?;
            if *role.borrow_and_update() == Role::Leader {
                return Some(((), role));
            }
        }
    })
}

/// Copies each object a reflector yields to `N` consumers. The reflector writes its cache
/// before it yields, so every consumer sees a trigger only once the cache has the change: a
/// reconcile woken by "X is Ready" always finds X Ready in the cache.
/// Every watch event also tells `health` whether the watch works (`name` says which).
fn fan_out<K, const N: usize>(
    name: String,
    health: &Arc<Health>,
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

/// A consumer's share of one watch's changes (see `fan_out`).
type Changes<K> = futures::channel::mpsc::UnboundedReceiver<Result<K, watcher::Error>>;

/// One kind watched by metadata only into a cache (each object trimmed by `trim` to what the
/// reconciles read), its changes copied out to one consumer through `fan_out`.
fn cached_metadata<K>(
    name: String,
    health: &Arc<Health>,
    api: Api<PartialObjectMeta<K>>,
    config: watcher::Config,
    trim: fn(&mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta),
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

/// The LucidService a child or pod belongs to, by its `lucid.io/service` label.
fn owning_service(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<ObjectRef<ServiceGuard>> {
    let service = meta.labels.as_ref()?.get(labels::SERVICE)?;
    Some(ObjectRef::new(service).within(meta.namespace.as_deref().unwrap_or_default()))
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

/// Which namespaces the operator watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// The whole cluster (the chart's default).
    #[default]
    Cluster,
    /// One namespace: for a namespaced install, and for tests that run several operators side
    /// by side on one API server.
    Namespace(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Cluster => f.write_str("cluster"),
            Scope::Namespace(ns) => f.write_str(ns),
        }
    }
}

impl Scope {
    /// Scopes from a comma-separated namespace list (`LUCID_WATCH_NAMESPACES`): empty means the
    /// whole cluster; duplicates and blanks are dropped.
    pub fn from_list(list: &str) -> Vec<Scope> {
        let mut namespaces: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|ns| !ns.is_empty())
            .collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        if namespaces.is_empty() {
            return vec![Scope::Cluster];
        }
        namespaces
            .into_iter()
            .map(|ns| Scope::Namespace(ns.to_string()))
            .collect()
    }
}

struct ScopedApi {
    client: Client,
    scope: Scope,
}

impl ScopedApi {
    fn of<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.scope {
            Scope::Cluster => Api::all(self.client.clone()),
            Scope::Namespace(ns) => Api::namespaced(self.client.clone(), ns),
        }
    }
}

fn references_config_map(r: &Reference) -> bool {
    r.kind == references::Kind::ConfigMap
}

fn references_secret(r: &Reference) -> bool {
    r.kind == references::Kind::Secret
}

/// Services in `namespace` that read the ConfigMap or Secret `name`.
fn services_reading(
    services: &Store<ServiceGuard>,
    kind: fn(&Reference) -> bool,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<ServiceGuard>> {
    services
        .state()
        .iter()
        .filter(|g| g.namespace().as_deref() == Some(namespace))
        .filter(|g| {
            g.0.as_ref()
                .is_ok_and(|ls| references(ls).iter().any(|r| kind(r) && r.name == name))
        })
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// Members of a phase that changed, and of every phase after it (pausing or unpausing it,
/// or editing its dependsOn, changes what they wait for).
fn services_after_phase_change(
    services: &Store<ServiceGuard>,
    phases: &Store<PhaseGuard>,
    phase: &PhaseGuard,
) -> Vec<ObjectRef<ServiceGuard>> {
    let changed = phase.name_any();
    let view = NamespaceView::read(services, phases, &phase.namespace().unwrap_or_default());
    let snapshot = view.snapshot();
    // A deleted phase is in nobody's upstream any more: those naming it directly now miss
    // a dependency.
    let downstream: Vec<String> = view
        .phases()
        .filter(|p| {
            p.spec.depends_on.contains(&changed)
                || snapshot
                    .upstream_phases(&p.name_any())
                    .contains(&changed.as_str())
        })
        .map(|p| p.name_any())
        .collect();
    view.services()
        .filter(|ls| ls.spec.phase == changed || downstream.contains(&ls.spec.phase))
        .map(service_ref)
        .collect()
}

/// A phase's spec changes and its deletion, not its status writes. `predicates::generation`
/// alone drops the delete event (a deleted object keeps its generation), and the members of
/// a deleted phase would go on saying Ready until a resync. The cache is written before an
/// event is copied out (`fan_out`), so a deleted phase is already gone from it here.
fn generation_or_gone(phases: Store<PhaseGuard>) -> impl Fn(&PhaseGuard) -> Option<u64> {
    move |phase| {
        let gone = phases
            .get(&ObjectRef::new(&phase.name_any()).within(&phase.namespace().unwrap_or_default()))
            .is_none();
        // One value per (generation, gone); generations are positive.
        let generation = kube::Resource::meta(phase)
            .generation
            .unwrap_or_default()
            .unsigned_abs();
        Some(generation << 1 | u64::from(gone))
    }
}

/// A service's spec changes, and a new `lucid.io/retry` annotation (`kubectl lucid retry`
/// asks for a failed update again without a spec change, which bumps no generation).
fn generation_or_retry(guard: &ServiceGuard) -> Option<u64> {
    let meta = kube::Resource::meta(guard);
    let retry = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::upgrade::RETRY_ANNOTATION));
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&meta.generation, &mut hasher);
    std::hash::Hash::hash(&retry, &mut hasher);
    Some(std::hash::Hasher::finish(&hasher))
}

fn service_ref(ls: &LucidService) -> ObjectRef<ServiceGuard> {
    ObjectRef::new(&ls.name_any()).within(&ls.namespace().unwrap_or_default())
}

/// When a service's readiness flips, the services that may now go ahead (or must now wait):
/// those that depend on it, and, when its whole phase just turned Ready or stopped being
/// Ready, the members of the phases after it. Only flips wake anyone, so a status write that
/// changes nothing about readiness costs no reconciles.
fn dependents_to_wake(
    services: &Store<ServiceGuard>,
    phases: &Store<PhaseGuard>,
    last_readiness: &Mutex<HashMap<String, (bool, bool)>>,
    changed: &ServiceGuard,
) -> Vec<ObjectRef<ServiceGuard>> {
    let Ok(changed) = &changed.0 else {
        return Vec::new();
    };
    let key = format!(
        "{}/{}",
        changed.namespace().unwrap_or_default(),
        changed.name_any()
    );
    // The cache is written before this runs: a service missing from it was just deleted,
    // which can complete its phase as surely as turning Ready.
    let namespace = changed.namespace().unwrap_or_default();
    let deleted = services
        .get(&ObjectRef::new(&changed.name_any()).within(&namespace))
        .is_none();
    let now_ready = service_ready(changed) && !deleted;
    // Its own update failed and was rolled back (or that ended): under `RollbackPhase` its
    // phase-mates go back with it (or forward again).
    let now_rolled_back = crate::upgrade::rolled_back_itself(changed) && !deleted;
    let (ready_flipped, rollback_flipped) = {
        let mut last = last_readiness.lock().unwrap_or_else(|e| e.into_inner());
        if deleted {
            last.remove(&key);
            (true, false)
        } else {
            let before = last.insert(key, (now_ready, now_rolled_back));
            (
                before.map(|b| b.0) != Some(now_ready),
                before.is_some_and(|b| b.1 != now_rolled_back)
                    || (before.is_none() && now_rolled_back),
            )
        }
    };
    if !ready_flipped && !rollback_flipped {
        return Vec::new();
    }
    let view = NamespaceView::read(services, phases, &namespace);
    let snapshot = view.snapshot();
    let name = changed.name_any();
    let phase = changed.spec.phase.as_str();
    let phase_complete = snapshot.members_ready(phase);
    // A phase that just completed (a member turned Ready or a laggard was deleted), or a
    // member that just stopped being ready, changes the gate of every later phase.
    // A deleted laggard can complete the phase; a deleted Ready member cannot hold it back.
    let phase_flipped = phase_complete || (!now_ready && !deleted);
    tracing::debug!(service = %name, deleted, now_ready, phase_complete, "readiness flipped");
    view.services()
        .filter(|s| {
            (rollback_flipped && s.spec.phase == phase && s.name_any() != name)
                || (ready_flipped && s.spec.depends_on.contains(&name))
                || (ready_flipped
                    && phase_flipped
                    && s.spec.phase != phase
                    && snapshot.upstream_phases(&s.spec.phase).contains(&phase))
        })
        .map(service_ref)
        .collect()
}

#[cfg(test)]
mod scope_tests {
    use super::Scope;

    #[test]
    fn an_empty_namespace_list_is_the_whole_cluster() {
        assert_eq!(Scope::from_list(""), vec![Scope::Cluster]);
        assert_eq!(Scope::from_list(" , "), vec![Scope::Cluster]);
    }

    #[test]
    fn a_namespace_list_is_one_scope_per_distinct_namespace() {
        assert_eq!(
            Scope::from_list("b, a,b,"),
            vec![Scope::Namespace("a".into()), Scope::Namespace("b".into())]
        );
    }
}

#[cfg(test)]
mod wiring_tests {
    use std::time::Duration;

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::core::ObjectMeta;
    use kube::runtime::watcher::{Error, Event};

    use super::{Health, fan_out, owning_service};
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
        let health = std::sync::Arc::new(Health::new(1, Duration::ZERO, Leadership::sole()));
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

    fn guarded_phase(name: &str, uid: &str, depends_on: &[&str]) -> super::PhaseGuard {
        use crate::api::{LucidPhase, LucidPhaseSpec};
        let spec = LucidPhaseSpec {
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            paused: false,
            description: None,
            on_failure: Default::default(),
        };
        let mut phase = LucidPhase::new(name, spec);
        phase.metadata.namespace = Some("lucid".into());
        phase.metadata.uid = Some(uid.into());
        phase.metadata.generation = Some(1);
        kube::core::error_boundary::DeserializeGuard(Ok(phase))
    }

    /// Through the filter the phase wake-ups pass, fed as `fan_out` feeds it (the cache
    /// written before each event is let out): a status write is dropped; the deletion and
    /// a phase of the same name made again are let through.
    #[tokio::test]
    async fn a_deleted_phase_passes_the_generation_filter() {
        use kube::runtime::WatchStreamExt;
        use kube::runtime::reflector::store;

        let (phases, writer) = store::<super::PhaseGuard>();
        let first = guarded_phase("core", "uid-1", &[]);
        let mut status_written = first.clone();
        if let Ok(p) = &mut status_written.0 {
            p.metadata.resource_version = Some("2".into());
        }
        let again = guarded_phase("core", "uid-2", &[]);
        let events = vec![
            Event::Apply(first.clone()),
            Event::Apply(status_written),
            Event::Delete(first),
            Event::Apply(again),
        ];
        let passed: Vec<(Option<String>, bool)> = futures::stream::unfold(
            (events.into_iter(), writer),
            |(mut events, mut writer)| async move {
                let event = events.next()?;
                writer.apply_watcher_event(&event);
                let object = match event {
                    Event::Apply(o) | Event::Delete(o) => o,
                    _ => unreachable!(),
                };
                Some((Ok::<_, Error>(object), (events, writer)))
            },
        )
        .predicate_filter(
            super::generation_or_gone(phases.clone()),
            Default::default(),
        )
        .filter_map(|o| async move { o.ok() })
        .map(|o| {
            let uid = kube::Resource::meta(&o).uid.clone();
            let rv = kube::Resource::meta(&o).resource_version.is_some();
            (uid, rv)
        })
        .collect()
        .await;
        assert_eq!(
            passed,
            [
                (Some("uid-1".to_string()), false),
                (Some("uid-1".to_string()), false),
                (Some("uid-2".to_string()), false),
            ],
            "created, deleted, created again; the status write dropped"
        );
    }

    /// A deleted phase wakes its members and the members of phases that name it directly
    /// (it is in nobody's upstream any more).
    #[test]
    fn a_deleted_phase_wakes_its_members_and_the_phases_naming_it() {
        use crate::api::{LucidService, LucidServiceSpec};
        use kube::core::error_boundary::DeserializeGuard;
        use kube::runtime::reflector::store;

        let service = |name: &str, phase: &str| {
            let spec: LucidServiceSpec = serde_json::from_value(serde_json::json!({
                "image": {"repository": "r"}, "phase": phase,
            }))
            .expect("spec");
            let mut ls = LucidService::new(name, spec);
            ls.metadata.namespace = Some("lucid".into());
            DeserializeGuard(Ok(ls))
        };
        let (services, mut services_writer) = store();
        for (name, phase) in [("member", "core"), ("after", "app"), ("apart", "other")] {
            services_writer.apply_watcher_event(&Event::Apply(service(name, phase)));
        }
        let (phases, mut phases_writer) = store();
        let core = guarded_phase("core", "uid-core", &[]);
        for phase in [
            core.clone(),
            guarded_phase("app", "uid-app", &["core"]),
            guarded_phase("other", "uid-other", &[]),
        ] {
            phases_writer.apply_watcher_event(&Event::Apply(phase));
        }
        phases_writer.apply_watcher_event(&Event::Delete(core.clone()));
        let mut woken: Vec<String> = super::services_after_phase_change(&services, &phases, &core)
            .into_iter()
            .map(|r| r.name)
            .collect();
        woken.sort();
        assert_eq!(woken, ["after", "member"]);
    }

    #[test]
    fn children_and_pods_wake_the_service_named_by_their_label() {
        let meta = ObjectMeta {
            namespace: Some("lucid".into()),
            labels: Some([("lucid.io/service".to_string(), "redis".to_string())].into()),
            ..Default::default()
        };
        let woken = owning_service(&meta).expect("a service");
        assert_eq!(
            (woken.name.as_str(), woken.namespace.as_deref()),
            ("redis", Some("lucid"))
        );
        assert!(owning_service(&ObjectMeta::default()).is_none());
    }
}
