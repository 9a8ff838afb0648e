//! What every reconcile shares: the client, the event recorder, metrics, the watch caches,
//! and per-object error counts for backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use super::references::{ConfigVersions, ContentCache};
use crate::api::{ClaimNode, DEFAULT_NODE_LOSS_TOLERATION_SECONDS, LucidPhase, LucidService};
use crate::graph::Snapshot;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::render::disruption_budget::PodDisruptionBudgetV1beta1;

pub struct Context {
    pub client: Client,
    /// The fence: every write asks it first.
    pub leadership: Leadership,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Every watch cache: what a reconcile decides on.
    pub caches: Caches,
    /// Summaries of the ConfigMaps and Secrets read at those versions.
    pub contents: ContentCache,
    /// Revisions read back for rollbacks.
    pub revisions: super::revisions::RevisionCache,
    /// How backup and restore Jobs run: the operator's own image (`LUCID_OPERATOR_IMAGE`,
    /// which the chart sets). None: stateful updates are not protected.
    pub copier: Option<crate::render::backup::CopyJobSettings>,
    /// Whether pods in back-off are restarted once their dependencies are Ready.
    pub restart_backed_off: bool,
    /// Per service, the dependencies' Ready time its last restart round was for.
    restart_rounds: Mutex<HashMap<String, jiff::Timestamp>>,
    /// The version PodDisruptionBudgets are served in (see `discovery`).
    pub policy: crate::render::disruption_budget::PolicyVersion,
    failures: Mutex<HashMap<String, u32>>,
    /// When each object's status was last written, for `too_soon_to_write`.
    last_writes: Mutex<HashMap<String, std::time::Instant>>,
    /// The status this process last wrote for each LucidService, with the resourceVersion
    /// the write produced, until the watch cache has caught up with it (see `current`).
    written: Mutex<HashMap<String, Written>>,
}

/// The metadata caches of the children other than Deployments.
#[derive(Clone)]
pub struct ChildStores {
    pub services: Store<PartialObjectMeta<Service>>,
    pub network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    pub claims: Store<PartialObjectMeta<PersistentVolumeClaim>>,
    /// Budgets in the version the API server serves; the other store stays empty.
    pub budgets: Store<PartialObjectMeta<PodDisruptionBudget>>,
    pub budgets_v1beta1: Store<PartialObjectMeta<PodDisruptionBudgetV1beta1>>,
}

/// Every watch cache a reconcile reads.
pub struct Caches {
    pub services: Store<DeserializeGuard<LucidService>>,
    pub phases: Store<DeserializeGuard<LucidPhase>>,
    pub deployments: Store<Deployment>,
    /// The managed pods, trimmed to what says why a rollout cannot finish.
    pub pods: Store<Pod>,
    /// The other children, metadata only (see `drift::trim_child`).
    pub children: ChildStores,
    /// ConfigMaps and Secrets, metadata only: which version is current.
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// The nodes' readiness, when this operator may list nodes (see `nodes`).
    pub nodes: Option<Store<Node>>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        leadership: Leadership,
        caches: Caches,
    ) -> Self {
        let reporter = Reporter {
            controller: "lucid-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            leadership,
            metrics,
            caches,
            contents: ContentCache::default(),
            revisions: Default::default(),
            copier: copier_from_env(),
            restart_backed_off: restart_backed_off_from_env(),
            restart_rounds: Mutex::new(HashMap::new()),
            policy: crate::render::disruption_budget::PolicyVersion::V1,
            failures: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            last_writes: Mutex::new(HashMap::new()),
        }
    }

    /// The ConfigMap and Secret versions the watches saw, for `dereference`.
    pub fn watched(&self) -> ConfigVersions<'_> {
        ConfigVersions {
            config_maps: &self.caches.config_maps,
            secrets: &self.caches.secrets,
        }
    }

    /// The service's pods, as the pod cache has them.
    pub fn pods_of(&self, namespace: &str, service: &str) -> Vec<Arc<Pod>> {
        self.caches
            .pods
            .state()
            .into_iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.labels()
                        .get(crate::render::labels::SERVICE)
                        .map(String::as_str)
                        == Some(service)
            })
            .collect()
    }

    /// What the service's pods say stops its rollout, if anything.
    pub fn pod_problem(
        &self,
        namespace: &str,
        service: &str,
        deployment: &Deployment,
    ) -> Option<crate::status::PodProblem> {
        let current = crate::status::current_template_hash(deployment);
        crate::status::pod_problem(
            self.pods_of(namespace, service).iter().map(|p| p.as_ref()),
            current.as_deref(),
        )
    }

    /// Whether `key`'s pods were already restarted for dependencies Ready at `ready`.
    pub fn restart_round_done(&self, key: &str, ready: jiff::Timestamp) -> bool {
        let rounds = self
            .restart_rounds
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        rounds.get(key) == Some(&ready)
    }

    /// Records a restart round of `key`'s pods for dependencies Ready at `ready`.
    pub fn restart_round(&self, key: &str, ready: jiff::Timestamp) {
        let mut rounds = self
            .restart_rounds
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        rounds.insert(key.to_string(), ready);
    }

    /// The nodes the service's claims live on, for claims whose volume was made on one
    /// node (sorted by claim).
    pub fn data_nodes(&self, namespace: &str, service: &str) -> Vec<ClaimNode> {
        use crate::render::{ClaimRole, claim_name};
        let claims = self.caches.children.claims.state();
        let mut placed: Vec<ClaimNode> = [ClaimRole::Data, ClaimRole::Logs]
            .into_iter()
            .filter_map(|role| {
                let name = claim_name(service, role);
                let claim = claims.iter().find(|c| {
                    c.metadata.namespace.as_deref() == Some(namespace)
                        && c.metadata.name.as_deref() == Some(name.as_str())
                })?;
                let node = claim
                    .annotations()
                    .get(crate::status::SELECTED_NODE_ANNOTATION)?;
                Some(ClaimNode {
                    claim: name,
                    node: node.clone(),
                })
            })
            .collect();
        placed.sort();
        placed
    }

    /// What lost nodes mean for the service, when the operator can see nodes.
    pub fn node_loss(&self, ls: &LucidService, namespace: &str) -> Option<crate::status::NodeLoss> {
        let nodes = self.caches.nodes.as_ref()?.state();
        let lost = crate::status::lost_nodes(nodes.iter().map(|n| n.as_ref()));
        if lost.is_empty() {
            return None;
        }
        let service = ls.name_any();
        crate::status::node_loss(
            self.pods_of(namespace, &service).iter().map(|p| p.as_ref()),
            &lost,
            &self.data_nodes(namespace, &service),
            ls.spec
                .node_loss_toleration_seconds
                .unwrap_or(DEFAULT_NODE_LOSS_TOLERATION_SECONDS),
        )
    }

    pub fn namespace_view(&self, namespace: &str) -> NamespaceView {
        NamespaceView::read(&self.caches.services, &self.caches.phases, namespace)
    }

    /// Exponential backoff per object: 1 s, 2 s, 4 s ... 256 s, then 5 minutes.
    pub fn backoff(&self, key: String) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(1u64 << (*n - 1).min(9)).min(Duration::from_secs(300))
    }

    /// None, and the write is recorded, when `key` was last written at least `interval` ago;
    /// else how long until it may be.
    pub fn too_soon_to_write(&self, key: &str, interval: Duration) -> Option<Duration> {
        let now = std::time::Instant::now();
        let mut last = self.last_writes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = last.get(key) {
            let since = now.duration_since(*at);
            if since < interval {
                return Some(interval - since);
            }
        }
        last.insert(key.to_string(), now);
        None
    }

    /// The service as it stands: the cached object, with the status this process last wrote
    /// when the cache has not caught up with that write yet. The status carries decisions
    /// (a rollback in force, a backup taken, a restore done); a reconcile woken by another
    /// object's event right after a status write must not act on the status before it.
    pub fn current(&self, ls: &LucidService) -> Option<LucidService> {
        let key = format!("{}/{}", ls.namespace().unwrap_or_default(), ls.name_any());
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let entry = written.get(&key)?;
        let cached = ls.metadata.resource_version.as_deref().and_then(version);
        let same_object = entry.uid == ls.metadata.uid;
        // resourceVersions are etcd revisions: a cache at or past the write has it.
        let caught_up = cached.is_none_or(|c| entry.version.is_none_or(|w| c >= w));
        if !same_object || caught_up {
            written.remove(&key);
            return None;
        }
        let mut newer = ls.clone();
        newer.status = Some(entry.status.clone());
        Some(newer)
    }

    /// Remembers a status this process wrote (the object the API server answered with).
    pub fn wrote(&self, stored: &LucidService) {
        let (Some(status), Some(rv)) = (&stored.status, &stored.metadata.resource_version) else {
            return;
        };
        let key = format!(
            "{}/{}",
            stored.namespace().unwrap_or_default(),
            stored.name_any()
        );
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                Written {
                    uid: stored.metadata.uid.clone(),
                    version: version(rv),
                    status: status.clone(),
                },
            );
    }

    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// A status this process wrote.
struct Written {
    uid: Option<String>,
    version: Option<u64>,
    status: crate::api::LucidServiceStatus,
}

fn version(resource_version: &str) -> Option<u64> {
    resource_version.parse().ok()
}

/// `LUCID_OPERATOR_IMAGE` (the chart sets it to the operator's own image, which every node
/// running the operator has) and `LUCID_COPY_DEADLINE_SECONDS` (default 1800).
/// `LUCID_RESTART_BACKED_OFF=false` turns off the restart of pods in back-off after their
/// dependencies come back (see `recovery`); on by default.
fn restart_backed_off_from_env() -> bool {
    std::env::var("LUCID_RESTART_BACKED_OFF").map_or(true, |v| v != "false")
}

fn copier_from_env() -> Option<crate::render::backup::CopyJobSettings> {
    let image = std::env::var("LUCID_OPERATOR_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())?;
    let active_deadline_seconds = std::env::var("LUCID_COPY_DEADLINE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800);
    Some(crate::render::backup::CopyJobSettings {
        image,
        active_deadline_seconds,
    })
}

/// The services and phases of one namespace, as the caches hold them now. Objects the
/// operator cannot read are left out (they report themselves).
pub struct NamespaceView {
    services: Vec<Arc<DeserializeGuard<LucidService>>>,
    phases: Vec<Arc<DeserializeGuard<LucidPhase>>>,
}

impl NamespaceView {
    pub fn read(
        services: &Store<DeserializeGuard<LucidService>>,
        phases: &Store<DeserializeGuard<LucidPhase>>,
        namespace: &str,
    ) -> Self {
        let in_ns = |ns: Option<String>| ns.as_deref() == Some(namespace);
        NamespaceView {
            services: services
                .state()
                .into_iter()
                .filter(|s| in_ns(s.namespace()))
                .collect(),
            phases: phases
                .state()
                .into_iter()
                .filter(|p| in_ns(p.namespace()))
                .collect(),
        }
    }

    pub fn services(&self) -> impl Iterator<Item = &LucidService> {
        self.services.iter().filter_map(|g| g.0.as_ref().ok())
    }

    pub fn phases(&self) -> impl Iterator<Item = &LucidPhase> {
        self.phases.iter().filter_map(|g| g.0.as_ref().ok())
    }

    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot::new(self.services(), self.phases())
    }
}
