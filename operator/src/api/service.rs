//! `LucidService`: one Lucid service, described the way its compose template does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::names::DNS_LABEL_PATTERN;

/// The tag used when an image names neither a tag nor a digest: the compose templates'
/// `pickme/lucid-<service>:latest-arm64`.
pub const DEFAULT_IMAGE_TAG: &str = "latest-arm64";
/// The network every compose service joins unless it says otherwise.
pub const DEFAULT_NETWORK: &str = "lucid-pi-network";
/// An IANA service name, as Kubernetes requires of port names.
const PORT_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]{0,13}[a-z0-9])?$";
const ENV_NAME_PATTERN: &str = "^[-._a-zA-Z][-._a-zA-Z0-9]*$";
const QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$";

/// A Lucid service: one container image run as a hardened Deployment behind a Service named
/// after it, with its data and logs on claims, its environment wired as the compose templates
/// wire it, and its rollout gated on the phase and services it depends on.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "lucid.io",
    version = "v1alpha1",
    kind = "LucidService",
    plural = "lucidservices",
    shortname = "ls",
    category = "lucid",
    namespaced,
    status = "LucidServiceStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".spec.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Revision","type":"integer","jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Waiting-On","type":"string","jsonPath":".status.waitingOn","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LucidServiceSpec {
    /// The container image to run.
    pub image: ImageSpec,

    /// How many pods to run. Services with a ReadWriteOnce data claim should keep this at 1.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// Ports the container listens on. The first is the service's main port: it is the one in
    /// `<SERVICE>_PORT` and `<SERVICE>_URL`, and the default for the health check.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub ports: Vec<PortSpec>,

    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,

    /// Replaces the image's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,

    /// The rollout phase this service belongs to (`foundation`, `core`, `application`,
    /// `support`, or any phase name). A LucidPhase of this name gates and reports it.
    #[schemars(pattern(DNS_LABEL_PATTERN), length(max = 63))]
    pub phase: String,

    /// LucidServices in this namespace that must be Ready before this one is created or
    /// updated: the compose `depends_on: condition: service_healthy`.
    #[serde(default)]
    #[schemars(inner(pattern(DNS_LABEL_PATTERN), length(max = 63)), length(max = 64))]
    pub depends_on: Vec<String>,

    /// Environment variables, in order. The operator adds `LUCID_ENV`, `LUCID_PLATFORM`,
    /// `<SERVICE>_HOST`, `<SERVICE>_PORT` and `<SERVICE>_URL`; a variable named here wins.
    #[serde(default)]
    pub env: Vec<EnvVar>,

    /// Whole ConfigMaps and Secrets loaded as environment, in order (the compose `env_file`
    /// list: per-phase ConfigMaps, then the secrets Secret). Later sources win.
    #[serde(default)]
    pub env_from: Vec<EnvFromSource>,

    /// How the kubelet decides the service is started, ready and alive.
    #[serde(default)]
    pub health_check: HealthCheck,

    /// Data, logs, cache, `/tmp` and an optional config file.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Hardening. On by default; the schema accepts nothing weaker than the compose
    /// templates' `user 65532`, `cap_drop ALL`, `read_only`, `no-new-privileges`.
    #[serde(default)]
    pub security: SecuritySpec,

    /// Container resources. Defaults suit a Raspberry Pi 5 running the whole stack.
    #[serde(default = "default_resources")]
    pub resources: ResourceRequirements,

    /// Node labels the pods must match. Defaults to arm64 nodes: the images are arm64 builds.
    #[serde(default = "default_node_selector")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations for tainted nodes.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,

    /// Extra labels for the pods and every object made for this service.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,

    /// Extra annotations for the pods.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,

    /// How the Service is exposed.
    #[serde(default)]
    pub service: ServiceExposure,

    /// Networks this service joins (the compose `networks`). A pod accepts traffic only
    /// from pods sharing one of its networks and, on its ports, from the services that
    /// depend on it (and from anywhere when its Service is external).
    #[serde(default = "default_networks")]
    #[schemars(
        inner(pattern(DNS_LABEL_PATTERN), length(max = 63)),
        length(min = 1, max = 8)
    )]
    pub networks: Vec<String>,

    /// How pods are replaced on an update. `Auto` (default): `Recreate` when the data
    /// directory is a ReadWriteOnce claim (it may hold a database's files, which two
    /// processes must never open at once), else `RollingUpdate`: the new pod starts and
    /// turns ready before the old one stops, so an update that fails leaves the old pod
    /// serving. A logs claim does not force `Recreate`: log files are only appended to.
    #[serde(default, skip_serializing_if = "UpdateStrategy::is_auto")]
    pub update_strategy: UpdateStrategy,

    /// Seconds an update may take to make progress before it counts as failed (the
    /// Deployment's `progressDeadlineSeconds`). The default, 600, leaves room for a Pi on a
    /// home link to pull a large image (a 700 MB database image at 2 MB/s takes six minutes):
    /// a deadline shorter than an honest pull would roll back a good release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 86400))]
    pub progress_deadline_seconds: Option<i32>,

    /// How many revisions that were Ready are kept to roll back to (each keeps a copy of
    /// the ConfigMaps and Secrets its pods read).
    #[serde(
        default = "default_revision_history_limit",
        skip_serializing_if = "is_default_revision_history_limit"
    )]
    #[schemars(range(min = 1, max = 10))]
    pub revision_history_limit: i32,

    /// Seconds a pod stays bound to a node that stopped answering (its kubelet silent: a
    /// board lost power, its SD card died) before it is moved to another node: the pod's
    /// `not-ready` and `unreachable` tolerations. Kubernetes' default, 300, leaves a small
    /// cluster without the service for five minutes; a Pi cluster moves sooner. Add the
    /// node controller's grace (40 s by default; `k3s/config/server.yaml` sets 20 s) for
    /// the time from the loss to the move. A service whose data lives on the lost node
    /// cannot move whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub node_loss_toleration_seconds: Option<i64>,

    /// A verified copy of `/app/data` before each update, for services that stop their old
    /// pods first (`Recreate`: a database): taken after the old pods stopped and before the
    /// new revision starts, restored if the update fails and is rolled back.
    #[serde(default, skip_serializing_if = "BackupSpec::is_default")]
    pub backup: BackupSpec,
}

/// Data protection before a stateful update.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Take the copy. Only services whose data claim is replaced with `Recreate` have one.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How many backups (each a claim) are kept.
    #[serde(default = "default_backup_keep")]
    #[schemars(range(min = 1, max = 5))]
    pub keep: i32,
    /// Size of each backup claim; the data claim's size when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(QUANTITY_PATTERN))]
    pub size: Option<String>,
    /// Storage class of the backup claims; the data claim's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for BackupSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            keep: default_backup_keep(),
            size: None,
            storage_class_name: None,
        }
    }
}

impl BackupSpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_backup_keep() -> i32 {
    1
}

/// How the Deployment replaces pods on an update.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpdateStrategy {
    /// `Recreate` when the data directory is a ReadWriteOnce claim, else `RollingUpdate`.
    #[default]
    Auto,
    /// Stop the old pods, then start the new ones (a gap in service).
    Recreate,
    /// Start new pods before stopping old ones (no gap; an update that fails leaves the old
    /// pods serving).
    RollingUpdate,
}

/// The Deployment's progress deadline when the spec sets none (see
/// `LucidServiceSpec::progress_deadline_seconds`).
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

/// `nodeLossTolerationSeconds` when unset.
pub const DEFAULT_NODE_LOSS_TOLERATION_SECONDS: i64 = 30;

fn default_revision_history_limit() -> i32 {
    3
}

fn is_default_revision_history_limit(limit: &i32) -> bool {
    *limit == default_revision_history_limit()
}

impl UpdateStrategy {
    fn is_auto(&self) -> bool {
        *self == UpdateStrategy::Auto
    }
}

fn default_replicas() -> i32 {
    1
}

fn default_node_selector() -> BTreeMap<String, String> {
    [("kubernetes.io/arch".to_string(), "arm64".to_string())].into()
}

fn default_networks() -> Vec<String> {
    vec![DEFAULT_NETWORK.to_string()]
}

/// Small enough that all 27 services fit on one 8 GiB Pi 5 with room for the system.
fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some([("cpu".into(), q("50m")), ("memory".into(), q("64Mi"))].into()),
        limits: Some([("memory".into(), q("256Mi"))].into()),
        ..Default::default()
    }
}

/// A container image.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository, e.g. `pickme/lucid-api-gateway`.
    #[schemars(
        length(min = 1, max = 255),
        pattern(r"^[^\s@:]+(:[0-9]+)?(/[^\s@:]+)*$")
    )]
    pub repository: String,

    /// Image tag. Ignored when `digest` is set.
    #[serde(default = "default_tag")]
    #[schemars(pattern(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
    pub tag: String,

    /// Image digest (`sha256:...`). Pins the image exactly; takes precedence over `tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^sha256:[a-f0-9]{64}$"))]
    pub digest: Option<String>,

    /// When the kubelet pulls the image.
    #[serde(default)]
    pub pull_policy: PullPolicy,
}

fn default_tag() -> String {
    DEFAULT_IMAGE_TAG.to_string()
}

impl ImageSpec {
    /// The image reference the pod runs: `repo@digest` when pinned, else `repo:tag`.
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{}@{}", self.repository, digest),
            None => format!("{}:{}", self.repository, self.tag),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// A port the container listens on, published through the service's Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// Port name (an IANA service name: lower case, at most 15 characters).
    #[schemars(pattern(PORT_NAME_PATTERN))]
    pub name: String,

    /// Port number. A port below 1024 adds the NET_BIND_SERVICE capability.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    #[serde(default)]
    pub protocol: PortProtocol,

    /// Fixed node port when `service.type` is NodePort or LoadBalancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: Option<i32>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PortProtocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl PortProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            PortProtocol::Tcp => "TCP",
            PortProtocol::Udp => "UDP",
        }
    }
}

/// One environment variable: a plain value, or one key of a Secret or ConfigMap.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    #[schemars(pattern(ENV_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: String,

    /// A literal value. Never put secrets here: use `valueFrom.secretKeyRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvValueSource>,
}

/// Where an environment value comes from. Set exactly one.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvValueSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// One key of a Secret or ConfigMap in the service's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// When true, a missing object or key leaves the variable unset instead of holding the
    /// service back.
    #[serde(default)]
    pub optional: bool,
}

/// A whole ConfigMap or Secret loaded as environment. Set exactly one of the two.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectRef>,
    /// Prepended to every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A ConfigMap or Secret in the service's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// When true, a missing object is skipped instead of holding the service back.
    #[serde(default)]
    pub optional: bool,
}

/// The compose `healthcheck`, mapped to startup, readiness and liveness probes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// How the check is made: an HTTP GET (the templates' `/health`), a TCP connect, or
    /// none. A service with no port (and no `port` here) has nothing to check and gets no
    /// probes: its pod is ready once its container runs.
    #[serde(default)]
    pub kind: HealthCheckKind,

    /// HTTP path for `kind: Http`: liveness (is the process well?). Startup and readiness
    /// use it too unless `readinessPath` is set.
    #[serde(default = "default_health_path")]
    #[schemars(pattern("^/"))]
    pub path: String,

    /// HTTP path for readiness (can it serve: are its own dependencies reachable?), for
    /// `kind: Http`. A service whose database is down is then taken out of its Service's
    /// endpoints without being restarted, which `path` alone would do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern("^/"))]
    pub readiness_path: Option<String>,

    /// Port to check; defaults to the main port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// Seconds between checks (compose `interval`).
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i32,

    /// Seconds before one check fails (compose `timeout`).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,

    /// Consecutive failures before the pod is unready or restarted (compose `retries`).
    #[serde(default = "default_retries")]
    #[schemars(range(min = 1, max = 100))]
    pub retries: i32,

    /// Seconds the service may take to start before failures count (compose `start_period`).
    #[serde(default = "default_start_period")]
    #[schemars(range(min = 0, max = 3600))]
    pub start_period_seconds: i32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            kind: HealthCheckKind::default(),
            path: default_health_path(),
            readiness_path: None,
            port: None,
            interval_seconds: default_interval(),
            timeout_seconds: default_timeout(),
            retries: default_retries(),
            start_period_seconds: default_start_period(),
        }
    }
}

fn default_health_path() -> String {
    "/health".into()
}
fn default_interval() -> i32 {
    30
}
fn default_timeout() -> i32 {
    10
}
fn default_retries() -> i32 {
    3
}
fn default_start_period() -> i32 {
    40
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HealthCheckKind {
    #[default]
    Http,
    Tcp,
    None,
}

/// Where the service keeps what it writes. The root filesystem is read-only, so every
/// writable path is one of these.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// `/app/data`.
    #[serde(default)]
    pub data: VolumeSpec,
    /// `/app/logs`.
    #[serde(default)]
    pub logs: VolumeSpec,
    /// Size limit of the cache emptyDir at `/tmp/<service>` (the compose named cache volume).
    #[serde(default = "default_cache_size")]
    #[schemars(pattern(QUANTITY_PATTERN))]
    pub cache_size_limit: String,
    /// Size limit of `/tmp`, a memory-backed emptyDir (compose `tmpfs /tmp size=100m`).
    #[serde(default = "default_tmp_size")]
    #[schemars(pattern(QUANTITY_PATTERN))]
    pub tmp_size_limit: String,
    /// What happens to the data and logs claims when the LucidService is deleted or stops
    /// asking for them. `Retain` (default) keeps them, and a LucidService of the same name
    /// adopts them again; `Delete` removes them with it.
    #[serde(default)]
    pub claim_retention: ClaimRetention,
    /// A config file from a ConfigMap key, mounted read-only at
    /// `/app/<service>/config.yaml`, its path in `<SERVICE>_CONFIG_FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigFileSpec>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            data: VolumeSpec::default(),
            logs: VolumeSpec::default(),
            cache_size_limit: default_cache_size(),
            tmp_size_limit: default_tmp_size(),
            claim_retention: ClaimRetention::default(),
            config: None,
        }
    }
}

fn default_cache_size() -> String {
    "256Mi".into()
}
fn default_tmp_size() -> String {
    "100Mi".into()
}

/// A writable directory: a PersistentVolumeClaim that outlives pods, or a pod-lifetime emptyDir.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    #[serde(default)]
    pub kind: VolumeKind,
    /// Claim size (or emptyDir size limit).
    #[serde(default = "default_volume_size")]
    #[schemars(pattern(QUANTITY_PATTERN))]
    pub size: String,
    /// Storage class of the claim; the cluster default when unset (k3s: `local-path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    #[serde(default)]
    pub access_mode: AccessMode,
}

impl Default for VolumeSpec {
    fn default() -> Self {
        Self {
            kind: VolumeKind::default(),
            size: default_volume_size(),
            storage_class_name: None,
            access_mode: AccessMode::default(),
        }
    }
}

fn default_volume_size() -> String {
    "1Gi".into()
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VolumeKind {
    #[default]
    PersistentVolumeClaim,
    EmptyDir,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    #[default]
    ReadWriteOnce,
    ReadWriteMany,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadWriteOnce => "ReadWriteOnce",
            AccessMode::ReadWriteMany => "ReadWriteMany",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClaimRetention {
    #[default]
    Retain,
    Delete,
}

/// A config file taken from one key of a ConfigMap.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFileSpec {
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: String,
    #[serde(default = "default_config_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_config_key() -> String {
    "config.yaml".into()
}

/// Container and pod hardening. Every field defaults to the compose templates' hardening and
/// the schema rejects anything weaker, so `kubectl get -o yaml` shows exactly what runs.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySpec {
    /// Numeric user; root (0) is rejected.
    #[serde(default = "default_uid")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub run_as_user: i64,
    /// Numeric group; root (0) is rejected.
    #[serde(default = "default_uid")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub run_as_group: i64,
    /// Group owning mounted volumes, so the non-root user can write `/app/data`.
    #[serde(default = "default_uid")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub fs_group: i64,
    /// Always true: the kubelet refuses to start an image whose user is root.
    #[serde(default = "yes")]
    #[schemars(extend("enum" = [true]))]
    pub run_as_non_root: bool,
    /// Always true (compose `read_only: true`).
    #[serde(default = "yes")]
    #[schemars(extend("enum" = [true]))]
    pub read_only_root_filesystem: bool,
    /// Always false (compose `no-new-privileges:true`).
    #[serde(default)]
    #[schemars(extend("enum" = [false]))]
    pub allow_privilege_escalation: bool,
    /// Always false.
    #[serde(default)]
    #[schemars(extend("enum" = [false]))]
    pub privileged: bool,
    /// Linux capabilities. All are dropped; NET_BIND_SERVICE is the only one that may be
    /// added, and the operator adds it by itself when a port is below 1024.
    #[serde(default)]
    pub capabilities: CapabilitiesSpec,
    /// Always RuntimeDefault: the compose files ran unconfined, which the restricted Pod
    /// Security Standard forbids.
    #[serde(default)]
    pub seccomp_profile: SeccompProfile,
    /// Mount a service account token into the pods. Lucid services do not call the
    /// Kubernetes API, so this is off.
    #[serde(default)]
    pub automount_service_account_token: bool,
}

impl Default for SecuritySpec {
    fn default() -> Self {
        Self {
            run_as_user: default_uid(),
            run_as_group: default_uid(),
            fs_group: default_uid(),
            run_as_non_root: true,
            read_only_root_filesystem: true,
            allow_privilege_escalation: false,
            privileged: false,
            capabilities: CapabilitiesSpec::default(),
            seccomp_profile: SeccompProfile::default(),
            automount_service_account_token: false,
        }
    }
}

fn default_uid() -> i64 {
    65532
}
fn yes() -> bool {
    true
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapabilitiesSpec {
    /// Always `[ALL]`.
    #[serde(default = "drop_all")]
    #[schemars(length(min = 1, max = 1))]
    pub drop: Vec<DroppedCapability>,
    /// Capabilities added back: only NET_BIND_SERVICE is allowed.
    #[serde(default)]
    #[schemars(length(max = 1))]
    pub add: Vec<AddedCapability>,
}

impl Default for CapabilitiesSpec {
    fn default() -> Self {
        Self {
            drop: drop_all(),
            add: Vec::new(),
        }
    }
}

fn drop_all() -> Vec<DroppedCapability> {
    vec![DroppedCapability::All]
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DroppedCapability {
    #[serde(rename = "ALL")]
    All,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AddedCapability {
    #[serde(rename = "NET_BIND_SERVICE")]
    NetBindService,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SeccompProfile {
    #[default]
    RuntimeDefault,
}

/// How the service's Service is exposed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceExposure {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on every node's port (the compose templates' published ports).
    NodePort,
    /// Also through the cluster's load balancer (k3s: ServiceLB).
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
    pub fn is_external(self) -> bool {
        self != ServiceType::ClusterIP
    }
}

/// What the operator last saw of this service.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LucidServiceStatus {
    /// The `metadata.generation` this status describes. Until it equals the generation,
    /// the conditions speak of an older spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that pass their readiness check.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods asked for.
    #[serde(default)]
    pub replicas: i32,
    /// `ready/replicas`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// One word for `kubectl get`: Ready, Progressing, Waiting or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// What holds this service back, when something does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    /// The revision the pods run or are rolling out to (numbered by the operator, one per
    /// distinct rendering it applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Digest of that revision's rendering (no values: a hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_hash: Option<String>,
    /// The revisions that were Ready, newest first: the first is the last good one. At most
    /// `spec.revisionHistoryLimit`; each can be rolled back to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<GoodRevision>,
    /// Set while an update that failed is rolled back: the failed attempt is not tried
    /// again until the spec (or a ConfigMap or Secret it reads) changes, or
    /// `kubectl lucid retry` asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackStatus>,
    /// A step of a stateful update under way (stopping the old pods, copying the data,
    /// restoring it), so an operator restarted or replaced carries on where it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_protection: Option<DataProtection>,
    /// Backups kept (newest first, at most `spec.backup.keep`), and the space each takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupRecord>,
    /// The nodes its ready pods run on (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// The node each claim's volume is bound to, for volumes that live on one node (as
    /// k3s's local-path ones do): pods using the claim can run only there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_nodes: Vec<ClaimNode>,
    /// `Ready`, `Progressing`, `Degraded` (KEP-1623), `Available` (pods are serving, even
    /// from a rolled-back revision) and `DependenciesReady`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A claim and the node its volume lives on.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimNode {
    pub claim: String,
    pub node: String,
}

/// A revision that was Ready.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoodRevision {
    pub revision: i64,
    /// The LucidService generation it rendered.
    pub generation: i64,
    /// When it turned Ready.
    pub ready_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// Digest of its rendering.
    pub hash: String,
}

/// A step of a stateful update under way.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataProtection {
    /// `BackingUp` (before revision `revision` starts) or `Restoring` (after it failed).
    pub step: String,
    /// The revision the backup precedes (its claim is `<service>-backup-r<revision>`).
    pub revision: i64,
    /// The attempt it is for: the digest of that revision's rendering (and the retry asked).
    pub for_hash: String,
}

/// A verified copy of the data, taken before revision `revision` started.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    pub revision: i64,
    /// The backup claim.
    pub claim: String,
    pub files: u64,
    pub bytes: u64,
    /// blake3 root hash of the copy's manifest.
    pub root_hash: String,
    /// The attempt it preceded: the digest of its rendering (and the retry asked). A retry
    /// of a failed update gets a new copy: the old revision served again in between.
    pub for_hash: String,
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// An update that failed and was rolled back.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackStatus {
    /// The generation whose update failed.
    pub failed_generation: i64,
    /// Digest of the failed rendering: while the spec and what it reads still render to
    /// it, the update is not tried again.
    pub failed_hash: String,
    /// The `lucid.io/retry` annotation when it failed: a new value asks for another try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// The revision rolled back to.
    pub to_revision: i64,
    /// Why: the failure's reason (`ImagePullFailed`, `CrashLoopBackOff`, `RolloutStuck`,
    /// ...) or `PhaseRolledBack`.
    pub reason: String,
    pub message: String,
    /// The data was restored from this backup claim before the old revision started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
    /// Another member of the phase whose failure rolled this one back (`RollbackPhase`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}
