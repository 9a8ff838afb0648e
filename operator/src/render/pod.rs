//! The pod: one hardened container with its probes and volumes.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, HTTPGetAction, PodSecurityContext, PodSpec, Probe,
    SeccompProfile, SecurityContext, TCPSocketAction, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{env, labels, storage};
use crate::api::{
    AddedCapability, DEFAULT_NODE_LOSS_TOLERATION_SECONDS, HealthCheck, HealthCheckKind,
    LucidService,
};

/// The kubelet probes at most this often while a service starts, so a service that starts
/// in 3 s is Ready in seconds, not after a 30 s compose interval.
const STARTUP_PERIOD_SECONDS: i32 = 5;

pub fn pod_spec(ls: &LucidService) -> PodSpec {
    let security = &ls.spec.security;
    let (volumes, volume_mounts) = storage::volumes(ls);
    PodSpec {
        containers: vec![container(ls, volume_mounts)],
        volumes: Some(volumes),
        security_context: Some(pod_security(ls)),
        automount_service_account_token: Some(security.automount_service_account_token),
        // Docker-link style variables (`LUCID_REDIS_PORT=tcp://10.43.0.7:6379`) would clash
        // with the templates' own `<SERVICE>_PORT=6379`.
        enable_service_links: Some(false),
        node_selector: (!ls.spec.node_selector.is_empty()).then(|| ls.spec.node_selector.clone()),
        tolerations: Some(tolerations(ls)),
        topology_spread_constraints: spread(ls),
        ..Default::default()
    }
}

/// The taints a node gets when its kubelet stops answering; a pod tolerating them for N
/// seconds is evicted N seconds after (see `nodeLossTolerationSeconds`).
pub const NODE_LOSS_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// The user's tolerations, and for each node-loss taint the user did not mention, one for
/// `nodeLossTolerationSeconds` (without them the API server adds 300 s ones).
pub(super) fn tolerations(ls: &LucidService) -> Vec<Toleration> {
    let seconds = ls
        .spec
        .node_loss_toleration_seconds
        .unwrap_or(DEFAULT_NODE_LOSS_TOLERATION_SECONDS);
    let mut tolerations = ls.spec.tolerations.clone();
    for taint in NODE_LOSS_TAINTS {
        if !tolerations.iter().any(|t| t.key.as_deref() == Some(taint)) {
            tolerations.push(Toleration {
                key: Some(taint.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(seconds),
                value: None,
            });
        }
    }
    tolerations
}

/// Replicas on different nodes where there are nodes to take them, so one board lost or
/// drained leaves the others serving. `ScheduleAnyway`, not `DoNotSchedule`: with a node
/// lost, Kubernetes 1.20 still counts it (0 pods) when weighing skew, so a hard rule would
/// leave the lost node's pod unplaced on a small cluster; the scheduler's score spreads
/// them whenever it can. One replica has nothing to spread.
fn spread(ls: &LucidService) -> Option<Vec<TopologySpreadConstraint>> {
    (ls.spec.replicas > 1).then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: HOSTNAME_LABEL.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(labels::selector(ls)),
                match_expressions: None,
            }),
            ..Default::default()
        }]
    })
}

/// The node label that names the node (every kubelet sets it).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The pod-level hardening: the service's user, group and fsGroup, never root, the
/// runtime's default seccomp profile. Shared with the backup and restore Jobs.
pub(super) fn pod_security(ls: &LucidService) -> PodSecurityContext {
    let security = &ls.spec.security;
    PodSecurityContext {
        run_as_user: Some(security.run_as_user),
        run_as_group: Some(security.run_as_group),
        fs_group: Some(security.fs_group),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn container(
    ls: &LucidService,
    volume_mounts: Vec<k8s_openapi::api::core::v1::VolumeMount>,
) -> Container {
    let name = ls.name_any();
    let spec = &ls.spec;
    let config_file = storage::config_file_path(ls);
    let env_from = env::env_from(ls);
    let (startup, readiness, liveness) =
        probes(ls).map_or((None, None, None), |(s, r, l)| (Some(s), Some(r), Some(l)));
    Container {
        name: name.clone(),
        image: Some(spec.image.reference()),
        image_pull_policy: Some(spec.image.pull_policy.as_str().into()),
        command: spec.command.clone(),
        args: spec.args.clone(),
        ports: (!spec.ports.is_empty()).then(|| {
            spec.ports
                .iter()
                .map(|p| ContainerPort {
                    name: Some(p.name.clone()),
                    container_port: p.port,
                    protocol: Some(p.protocol.as_str().into()),
                    ..Default::default()
                })
                .collect()
        }),
        env: Some(env::env(ls, &name, config_file.as_deref())),
        env_from: (!env_from.is_empty()).then_some(env_from),
        resources: Some(spec.resources.clone()),
        volume_mounts: Some(volume_mounts),
        startup_probe: startup,
        readiness_probe: readiness,
        liveness_probe: liveness,
        security_context: Some(container_security(ls)),
        ..Default::default()
    }
}

/// The container's capabilities: drop ALL; add NET_BIND_SERVICE only when asked for or when
/// a port is below 1024 (the compose templates' rule).
pub fn added_capabilities(ls: &LucidService) -> Vec<String> {
    let asked = ls
        .spec
        .security
        .capabilities
        .add
        .contains(&AddedCapability::NetBindService);
    let low_port = ls.spec.ports.iter().any(|p| p.port < 1024);
    if asked || low_port {
        vec!["NET_BIND_SERVICE".into()]
    } else {
        Vec::new()
    }
}

fn container_security(ls: &LucidService) -> SecurityContext {
    hardened_container(ls, added_capabilities(ls))
}

/// The container-level hardening with only `add` as capabilities: read-only root, no
/// privilege escalation, the service's user. Shared with the backup and restore Jobs.
pub(super) fn hardened_container(ls: &LucidService, add: Vec<String>) -> SecurityContext {
    let security = &ls.spec.security;
    SecurityContext {
        run_as_user: Some(security.run_as_user),
        run_as_group: Some(security.run_as_group),
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: (!add.is_empty()).then_some(add),
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// The compose healthcheck as three probes:
/// - startup: every 5 s (or `interval` if shorter) for `startPeriod`, plus `retries` more
///   tries, the compose grace period before failures count;
/// - readiness: the same check every `min(interval, 10s)`, unready after `retries` failures;
/// - liveness: every `interval`, restarted after `retries` failures (compose `restart`).
///
/// Startup and liveness ask `path`; readiness asks `readinessPath` when set.
///
/// None when the check is off or there is no port to check.
pub fn probes(ls: &LucidService) -> Option<(Probe, Probe, Probe)> {
    let check = &ls.spec.health_check;
    let port = check
        .port
        .or_else(|| ls.spec.ports.first().map(|p| p.port))?;
    let startup_period = STARTUP_PERIOD_SECONDS.min(check.interval_seconds);
    let startup = Probe {
        period_seconds: Some(startup_period),
        timeout_seconds: Some(check.timeout_seconds.min(startup_period.max(1))),
        failure_threshold: Some(
            div_ceil(check.start_period_seconds, startup_period) + check.retries,
        ),
        ..Default::default()
    };
    let readiness = Probe {
        period_seconds: Some(check.interval_seconds.min(10)),
        timeout_seconds: Some(check.timeout_seconds),
        failure_threshold: Some(check.retries),
        ..Default::default()
    };
    let liveness = Probe {
        period_seconds: Some(check.interval_seconds),
        timeout_seconds: Some(check.timeout_seconds),
        failure_threshold: Some(check.retries),
        ..Default::default()
    };
    // Startup holds off liveness, so it asks liveness's question: a service whose database
    // is down at start must wait unready, not be restarted.
    let ready_path = check.readiness_path.as_deref().unwrap_or(&check.path);
    Some((
        handler(check, &check.path, port, startup)?,
        handler(check, ready_path, port, readiness)?,
        handler(check, &check.path, port, liveness)?,
    ))
}

/// Every probe field the API server would default is set here too: server-side apply only
/// removes fields its manager owns, so a defaulted field left behind when the spec drops the
/// probe would leave a probe without a handler, which the API server rejects.
fn handler(check: &HealthCheck, path: &str, port: i32, probe: Probe) -> Option<Probe> {
    let probe = Probe {
        success_threshold: Some(1),
        initial_delay_seconds: Some(0),
        ..probe
    };
    match check.kind {
        HealthCheckKind::None => None,
        HealthCheckKind::Http => Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.to_owned()),
                port: IntOrString::Int(port),
                scheme: Some("HTTP".into()),
                ..Default::default()
            }),
            ..probe
        }),
        HealthCheckKind::Tcp => Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                host: None,
            }),
            ..probe
        }),
    }
}

fn div_ceil(a: i32, b: i32) -> i32 {
    (a + b - 1) / b
}
