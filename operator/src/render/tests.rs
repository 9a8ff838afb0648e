use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use pretty_assertions::assert_eq;

use super::fixtures::{redis, service};
use super::*;

fn inputs() -> RenderInputs {
    RenderInputs {
        config_hash: "abc".into(),
        ..Default::default()
    }
}

fn pod_spec(children: &Children) -> &PodSpec {
    children
        .deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn container(children: &Children) -> &Container {
    &pod_spec(children).containers[0]
}

fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .as_deref()
}

#[test]
fn every_child_is_owned_by_the_lucid_service_except_retained_claims() {
    let children = render(&redis(), &inputs()).unwrap();
    let owner = |refs: &Option<Vec<OwnerReference>>| refs.as_ref().map(|r| r[0].uid.clone());
    assert_eq!(
        owner(&children.deployment.metadata.owner_references).as_deref(),
        Some("uid-lucid-redis")
    );
    assert_eq!(
        owner(&children.service.as_ref().unwrap().metadata.owner_references).as_deref(),
        Some("uid-lucid-redis")
    );
    assert!(
        children
            .deployment
            .metadata
            .owner_references
            .as_ref()
            .unwrap()[0]
            .controller
            == Some(true)
    );
    assert_eq!(children.claims.len(), 2);
    assert!(
        children
            .claims
            .iter()
            .all(|c| c.metadata.owner_references.is_none())
    );

    let mut deleting = redis();
    deleting.spec.storage.claim_retention = crate::api::ClaimRetention::Delete;
    let children = render(&deleting, &inputs()).unwrap();
    assert!(
        children
            .claims
            .iter()
            .all(|c| c.metadata.owner_references.is_some())
    );
}

#[test]
fn container_is_hardened_by_default() {
    let children = render(&redis(), &inputs()).unwrap();
    let pod = pod_spec(&children);
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.run_as_group, Some(65532));
    assert_eq!(psc.fs_group, Some(65532));
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.enable_service_links, Some(false));

    let sc = container(&children).security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
    assert_eq!(caps.add, None);
}

#[test]
fn net_bind_service_is_added_only_for_a_port_below_1024() {
    let web = service(
        "web",
        "image: {repository: x}\nphase: core\nports: [{name: http, port: 80}, {name: alt, port: 8080}]",
    );
    let children = render(&web, &inputs()).unwrap();
    let caps = container(&children)
        .security_context
        .as_ref()
        .unwrap()
        .capabilities
        .as_ref()
        .unwrap();
    assert_eq!(caps.add, Some(vec!["NET_BIND_SERVICE".to_string()]));
}

#[test]
fn injected_environment_matches_the_compose_template() {
    let children = render(&redis(), &inputs()).unwrap();
    let c = container(&children);
    assert_eq!(env_value(c, "LUCID_ENV"), Some("production"));
    assert_eq!(env_value(c, "LUCID_PLATFORM"), Some("arm64"));
    assert_eq!(env_value(c, "LUCID_REDIS_HOST"), Some("lucid-redis"));
    assert_eq!(env_value(c, "LUCID_REDIS_PORT"), Some("6379"));
    assert_eq!(
        env_value(c, "LUCID_REDIS_URL"),
        Some("http://lucid-redis:6379")
    );
    let env_from = c.env_from.as_ref().unwrap();
    assert_eq!(
        env_from[0].config_map_ref.as_ref().unwrap().name,
        "lucid-env-foundation"
    );
    assert_eq!(
        env_from[1].secret_ref.as_ref().unwrap().name,
        "lucid-secrets"
    );
}

#[test]
fn a_user_variable_replaces_an_injected_one_and_names_stay_unique() {
    let ls = service(
        "api-gateway",
        r#"
image: {repository: x}
phase: core
ports: [{name: http, port: 8080}]
env:
  - {name: LUCID_ENV, value: development}
  - {name: JWT_SECRET_KEY, valueFrom: {secretKeyRef: {name: lucid-secrets, key: jwt}}}
  - {name: LOG_LEVEL, value: info}
  - {name: LOG_LEVEL, value: debug}
"#,
    );
    let children = render(&ls, &inputs()).unwrap();
    let c = container(&children);
    assert_eq!(env_value(c, "LUCID_ENV"), Some("development"));
    assert_eq!(env_value(c, "LOG_LEVEL"), Some("debug"));
    let names: Vec<_> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(names.len(), unique.len(), "duplicate env names: {names:?}");
    let jwt = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "JWT_SECRET_KEY")
        .unwrap();
    assert_eq!(jwt.value, None);
    assert_eq!(
        jwt.value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .key,
        "jwt"
    );
}

#[test]
fn a_readiness_path_is_asked_by_readiness_only() {
    let ls = service(
        "session-recorder",
        "image: {repository: x}\nphase: application\nports: [{name: http, port: 8090}]\nhealthCheck: {readinessPath: /ready}",
    );
    let children = render(&ls, &inputs()).unwrap();
    let c = container(&children);
    let path = |p: &Option<Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.startup_probe).as_deref(), Some("/health"));
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/ready"));
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/health"));
}

#[test]
fn health_check_defaults_map_to_startup_readiness_and_liveness() {
    let ls = service(
        "api-gateway",
        "image: {repository: x}\nphase: core\nports: [{name: http, port: 8080}]",
    );
    let children = render(&ls, &inputs()).unwrap();
    let c = container(&children);
    let startup = c.startup_probe.as_ref().unwrap();
    let http = startup.http_get.as_ref().unwrap();
    assert_eq!(http.path.as_deref(), Some("/health"));
    assert_eq!(http.port, IntOrString::Int(8080));
    // 40 s start period at 5 s, then the 3 compose retries.
    assert_eq!(startup.period_seconds, Some(5));
    assert_eq!(startup.failure_threshold, Some(8 + 3));
    let readiness = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        (
            readiness.period_seconds,
            readiness.timeout_seconds,
            readiness.failure_threshold
        ),
        (Some(10), Some(10), Some(3))
    );
    let liveness = c.liveness_probe.as_ref().unwrap();
    assert_eq!(
        (
            liveness.period_seconds,
            liveness.timeout_seconds,
            liveness.failure_threshold
        ),
        (Some(30), Some(10), Some(3))
    );

    // Fields the API server would otherwise default are ours, so dropping the probe drops all.
    for probe in [startup, readiness, liveness] {
        assert_eq!(
            (probe.success_threshold, probe.initial_delay_seconds),
            (Some(1), Some(0))
        );
    }

    let tcp = render(&redis(), &inputs()).unwrap();
    assert_eq!(
        container(&tcp)
            .liveness_probe
            .as_ref()
            .unwrap()
            .tcp_socket
            .as_ref()
            .unwrap()
            .port,
        IntOrString::Int(6379)
    );
}

#[test]
fn a_service_without_ports_has_no_service_and_no_probes() {
    let worker = service("worker", "image: {repository: x}\nphase: application");
    let children = render(&worker, &inputs()).unwrap();
    assert!(children.service.is_none());
    assert!(container(&children).readiness_probe.is_none());
}

#[test]
fn storage_mounts_data_logs_cache_tmp_and_the_config_file() {
    let ls = service(
        "session-storage",
        r#"
image: {repository: x}
phase: application
storage:
  data: {size: 20Gi, storageClassName: local-path}
  logs: {kind: EmptyDir, size: 200Mi}
  config: {configMapName: session-storage-config}
"#,
    );
    let children = render(&ls, &inputs()).unwrap();
    let c = container(&children);
    let mounts: Vec<_> = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.mount_path.as_str(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        vec![
            ("/app/data", None),
            ("/app/logs", None),
            ("/tmp", None),
            ("/tmp/session-storage", None),
            ("/app/session-storage/config.yaml", Some(true)),
        ]
    );
    assert_eq!(
        env_value(c, "SESSION_STORAGE_CONFIG_FILE"),
        Some("/app/session-storage/config.yaml")
    );
    let tmp = pod_spec(&children)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "tmp")
        .unwrap();
    let tmp = tmp.empty_dir.as_ref().unwrap();
    assert_eq!(
        (
            tmp.medium.as_deref(),
            tmp.size_limit.as_ref().map(|q| q.0.as_str())
        ),
        (Some("Memory"), Some("100Mi"))
    );

    assert_eq!(
        children.claims.len(),
        1,
        "logs is an emptyDir, so only data is claimed"
    );
    let claim = &children.claims[0];
    assert_eq!(claim.name_any(), "session-storage-data");
    let spec = claim.spec.as_ref().unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
    assert_eq!(
        spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "20Gi"
    );
}

#[test]
fn a_read_write_once_claim_makes_the_rollout_recreate() {
    let children = render(&redis(), &inputs()).unwrap();
    let strategy = children
        .deployment
        .spec
        .as_ref()
        .unwrap()
        .strategy
        .as_ref()
        .unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("Recreate"));

    let stateless = service(
        "api",
        "image: {repository: x}\nphase: core\nstorage: {data: {kind: EmptyDir}, logs: {kind: EmptyDir}}",
    );
    let children = render(&stateless, &inputs()).unwrap();
    let strategy = children
        .deployment
        .spec
        .as_ref()
        .unwrap()
        .strategy
        .as_ref()
        .unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert!(
        strategy
            .rolling_update
            .as_ref()
            .unwrap()
            .max_surge
            .is_some(),
        "spelled out so a switch to Recreate removes it"
    );
    assert!(children.claims.is_empty());
}

fn strategy_of(ls: &crate::api::LucidService) -> String {
    let children = render(ls, &inputs()).unwrap();
    let spec = children.deployment.spec.unwrap();
    spec.strategy.unwrap().type_.unwrap()
}

#[test]
fn only_a_data_claim_recreates_and_the_user_can_choose() {
    // Logs on a claim, data in an emptyDir: log files are appended to, two pods may share
    // them, so the new pod starts before the old one stops (no gap).
    let logs_only = service(
        "api",
        "image: {repository: x}\nphase: core\nstorage: {data: {kind: EmptyDir}}",
    );
    assert_eq!(strategy_of(&logs_only), "RollingUpdate");
    let mut chosen = redis();
    chosen.spec.update_strategy = crate::api::UpdateStrategy::RollingUpdate;
    assert_eq!(strategy_of(&chosen), "RollingUpdate");
    let mut chosen = logs_only.clone();
    chosen.spec.update_strategy = crate::api::UpdateStrategy::Recreate;
    assert_eq!(strategy_of(&chosen), "Recreate");
}

#[test]
fn the_progress_deadline_defaults_for_a_pi_and_can_be_set() {
    let deadline = |ls: &crate::api::LucidService| {
        render(ls, &inputs())
            .unwrap()
            .deployment
            .spec
            .unwrap()
            .progress_deadline_seconds
    };
    assert_eq!(deadline(&redis()), Some(600));
    let mut quick = redis();
    quick.spec.progress_deadline_seconds = Some(30);
    assert_eq!(deadline(&quick), Some(30));
}

#[test]
fn labels_carry_the_recommended_and_lucid_keys_and_users_cannot_override_them() {
    let mut ls = redis();
    ls.spec
        .labels
        .insert("app.kubernetes.io/name".into(), "evil".into());
    ls.spec.labels.insert("team".into(), "data".into());
    let children = render(&ls, &inputs()).unwrap();
    let labels = children.deployment.metadata.labels.as_ref().unwrap();
    for (k, v) in [
        ("app.kubernetes.io/name", "lucid-redis"),
        ("app.kubernetes.io/instance", "lucid-redis"),
        ("app.kubernetes.io/component", "foundation"),
        ("app.kubernetes.io/part-of", "lucid"),
        ("app.kubernetes.io/managed-by", "lucid-operator"),
        ("lucid.io/service", "lucid-redis"),
        ("lucid.io/cluster", "foundation"),
        ("lucid.io/security", "hardened"),
        ("lucid.io/platform", "arm64"),
        ("team", "data"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    let template = children
        .deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap();
    assert_eq!(
        template
            .labels
            .as_ref()
            .unwrap()
            .get("network.lucid.io/lucid-pi-network")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        template.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION],
        "abc"
    );
}

#[test]
fn image_digest_wins_over_tag_and_default_tag_is_the_templates() {
    let ls = redis();
    assert_eq!(
        container(&render(&ls, &inputs()).unwrap()).image.as_deref(),
        Some("pickme/lucid-redis:latest-arm64")
    );
    let pinned = service(
        "p",
        &format!(
            "image: {{repository: r, tag: v1, digest: 'sha256:{}'}}\nphase: core",
            "a".repeat(64)
        ),
    );
    assert_eq!(
        container(&render(&pinned, &inputs()).unwrap())
            .image
            .as_deref(),
        Some(format!("r@sha256:{}", "a".repeat(64)).as_str())
    );
}

#[test]
fn service_exposes_every_port_with_node_ports_only_when_external() {
    let mut ls = service(
        "lucid-elasticsearch",
        "image: {repository: x}\nphase: foundation\nports: [{name: http, port: 9200, nodePort: 30920}, {name: transport, port: 9300}]",
    );
    let svc = render(&ls, &inputs()).unwrap().service.unwrap();
    let spec = svc.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let ports: Vec<_> = spec
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.port, p.node_port))
        .collect();
    assert_eq!(ports, vec![(9200, None), (9300, None)]);

    ls.spec.service.type_ = crate::api::ServiceType::NodePort;
    let svc = render(&ls, &inputs()).unwrap().service.unwrap();
    let ports: Vec<_> = svc
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.node_port)
        .collect();
    assert_eq!(ports, vec![Some(30920), None]);
}

#[test]
fn the_applied_hash_changes_with_the_spec_and_the_config_hash_only() {
    let a = render(&redis(), &inputs()).unwrap();
    let b = render(&redis(), &inputs()).unwrap();
    assert_eq!(a.applied_hash(), b.applied_hash());
    let mut changed = redis();
    changed.spec.image.tag = "v2".into();
    assert_ne!(
        render(&changed, &inputs()).unwrap().applied_hash(),
        a.applied_hash()
    );
    let other_config = RenderInputs {
        config_hash: "def".into(),
        ..Default::default()
    };
    assert_ne!(
        render(&redis(), &other_config).unwrap().applied_hash(),
        a.applied_hash()
    );
    // dependsOn labels the pods (`uses.lucid.io/<dependency>`: the dependency's policy admits
    // them), so it changes the pod template and the hash.
    let mut deps = redis();
    deps.spec.depends_on.push("x".into());
    assert_ne!(
        render(&deps, &inputs()).unwrap().applied_hash(),
        a.applied_hash()
    );
}

fn policy_peers(rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule) -> Vec<String> {
    rule.from
        .iter()
        .flatten()
        .flat_map(|p| {
            p.pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()
                .keys()
                .cloned()
        })
        .collect()
}

#[test]
fn network_policy_admits_only_pods_sharing_a_network_plus_external_ports() {
    let children = render(&redis(), &inputs()).unwrap();
    let spec = children.network_policy.spec.as_ref().unwrap();
    assert_eq!(
        spec.pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app.kubernetes.io/instance"],
        "lucid-redis"
    );
    let ingress = spec.ingress.as_ref().unwrap();
    assert_eq!(
        policy_peers(&ingress[0]),
        vec!["network.lucid.io/lucid-pi-network".to_string()]
    );
    // Its dependents, on its port.
    assert_eq!(
        policy_peers(&ingress[1]),
        vec!["uses.lucid.io/lucid-redis".to_string()]
    );
    assert_eq!(
        ingress[1].ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(6379))
    );
    // NodePort: its port is open to anyone, nothing else is.
    assert!(ingress[2].from.is_none());
    assert_eq!(
        ingress[2].ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(6379))
    );
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
}

#[test]
fn isolated_tron_pods_reach_only_their_network_their_dependencies_and_dns() {
    let tron = service(
        "tron-client",
        "image: {repository: x}\nphase: support\nnetworks: [lucid-tron-isolated]\ndependsOn: [lucid-mongodb, lucid-redis]\nports: [{name: http, port: 8091}]",
    );
    let children = render(&tron, &inputs()).unwrap();
    let spec = children.network_policy.spec.as_ref().unwrap();
    assert_eq!(
        policy_peers(&spec.ingress.as_ref().unwrap()[0]),
        vec!["network.lucid.io/lucid-tron-isolated".to_string()]
    );
    assert_eq!(
        spec.ingress.as_ref().unwrap().len(),
        1,
        "ClusterIP: no open port"
    );
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string(), "Egress".to_string()][..])
    );
    let egress = spec.egress.as_ref().unwrap();
    assert_eq!(
        egress[0].ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(53))
    );
    let to: Vec<_> = egress[1]
        .to
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| {
            p.pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(to.len(), 3);
    assert_eq!(to[1]["lucid.io/service"], "lucid-mongodb");
    // The main network's pods are not admitted.
    let pod_labels = children
        .deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert!(!pod_labels.contains_key("network.lucid.io/lucid-pi-network"));
}

/// Pod labels of a rendered service, as its Deployment's template carries them.
fn pod_labels(ls: &LucidService) -> std::collections::BTreeMap<String, String> {
    render(ls, &inputs())
        .unwrap()
        .deployment
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap()
}

fn selects(
    selector: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let selector = selector.as_ref().unwrap();
    assert!(
        selector.match_expressions.is_none(),
        "not rendered, not evaluated"
    );
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether `target`'s policy admits a connection from a pod labelled `from` to `port`: some
/// ingress rule has a peer selecting `from` (or no peers) and lists `port` (or no ports).
/// Only what the operator renders is evaluated: pod selectors with matchLabels, numeric ports.
fn admits(target: &LucidService, from: &LucidService, port: i32) -> bool {
    let policy = render(target, &inputs()).unwrap().network_policy;
    let from = pod_labels(from);
    policy.spec.unwrap().ingress.unwrap().iter().any(|rule| {
        let peer_ok = rule.from.as_ref().is_none_or(|peers| {
            peers.iter().any(|p| {
                assert!(p.namespace_selector.is_none() && p.ip_block.is_none());
                selects(&p.pod_selector, &from)
            })
        });
        let port_ok = rule
            .ports
            .as_ref()
            .is_none_or(|ports| ports.iter().any(|p| p.port == Some(IntOrString::Int(port))));
        peer_ok && port_ok
    })
}

/// Whether `source`'s policy lets it open a connection to a pod labelled `to` on `port`.
fn may_reach(source: &LucidService, to: &LucidService, port: i32) -> bool {
    let spec = render(source, &inputs())
        .unwrap()
        .network_policy
        .spec
        .unwrap();
    if !spec.policy_types.unwrap().contains(&"Egress".to_string()) {
        return true;
    }
    let to = pod_labels(to);
    spec.egress.unwrap().iter().any(|rule| {
        let peer_ok = rule
            .to
            .as_ref()
            .is_none_or(|peers| peers.iter().any(|p| selects(&p.pod_selector, &to)));
        let port_ok = rule
            .ports
            .as_ref()
            .is_none_or(|ports| ports.iter().any(|p| p.port == Some(IntOrString::Int(port))));
        peer_ok && port_ok
    })
}

fn database(name: &str, port: i32, service_type: &str) -> LucidService {
    service(
        name,
        &format!(
            "image: {{repository: x}}\nphase: foundation\nports: [{{name: db, port: {port}}}]\nhealthCheck: {{kind: Tcp}}\nservice: {{type: {service_type}}}"
        ),
    )
}

fn tron(name: &str, depends_on: &str) -> LucidService {
    service(
        name,
        &format!(
            "image: {{repository: x}}\nphase: support\nnetworks: [lucid-tron-isolated]\ndependsOn: [{depends_on}]\nports: [{{name: http, port: 8094}}]"
        ),
    )
}

#[test]
fn a_cluster_ip_database_admits_its_tron_dependents_and_no_other_tron_service() {
    let mongodb = database("lucid-mongodb", 27017, "ClusterIP");
    let client = tron("tron-client", "lucid-mongodb, lucid-redis");
    let staking = tron("tron-staking", "lucid-redis");
    assert!(admits(&mongodb, &client, 27017));
    assert!(may_reach(&client, &mongodb, 27017));
    // Only its port: a dependent gets the service, not the pod.
    assert!(!admits(&mongodb, &client, 22));
    // A TRON service that does not depend on the database is not admitted, and may not try.
    assert!(!admits(&mongodb, &staking, 27017));
    assert!(!may_reach(&staking, &mongodb, 27017));
    // The main network still reaches it, as compose's shared network did.
    let gateway = service(
        "api-gateway",
        "image: {repository: x}\nphase: core\nports: [{name: http, port: 8080}]",
    );
    assert!(admits(&mongodb, &gateway, 27017));
}

#[test]
fn tron_services_reach_their_dependencies_and_dns_and_nothing_else() {
    let client = tron("tron-client", "lucid-mongodb, lucid-redis");
    let redis = database("lucid-redis", 6379, "ClusterIP");
    let elasticsearch = database("lucid-elasticsearch", 9200, "ClusterIP");
    let gateway = service(
        "api-gateway",
        "image: {repository: x}\nphase: core\nports: [{name: http, port: 8080}]\nservice: {type: NodePort}",
    );
    assert!(may_reach(&client, &redis, 6379));
    assert!(!may_reach(&client, &elasticsearch, 9200));
    assert!(
        !may_reach(&client, &gateway, 8080),
        "external is not a dependency"
    );
    // DNS: port 53 anywhere (CoreDNS is not a LucidService).
    let dns = service("coredns", "image: {repository: x}\nphase: kube-system");
    assert!(may_reach(&client, &dns, 53));
    // Its own network, as compose's isolated network allowed.
    let router = tron("tron-payout-router", "lucid-mongodb");
    assert!(may_reach(&client, &router, 8094));
    assert!(admits(&router, &client, 8094));
}

#[test]
fn depending_on_an_isolated_service_does_not_open_its_network() {
    let client = tron("tron-client", "lucid-mongodb");
    let admin = service(
        "admin-interface",
        "image: {repository: x}\nphase: support\ndependsOn: [tron-client]\nports: [{name: http, port: 8120}]",
    );
    assert!(!admits(&client, &admin, 8094));
    let policy = render(&client, &inputs()).unwrap().network_policy;
    assert_eq!(
        policy.spec.unwrap().ingress.unwrap().len(),
        1,
        "only its own network: no dependents rule, no external port"
    );
}

#[test]
fn user_labels_cannot_claim_a_network_or_a_dependency() {
    let mongodb = database("lucid-mongodb", 27017, "ClusterIP");
    let mut sneaky = tron("tron-staking", "lucid-redis");
    for key in [
        "uses.lucid.io/lucid-mongodb",
        "network.lucid.io/lucid-pi-network",
    ] {
        sneaky.spec.labels.insert(key.into(), "true".into());
    }
    let labels = pod_labels(&sneaky);
    assert!(!labels.contains_key("uses.lucid.io/lucid-mongodb"));
    assert!(!labels.contains_key("network.lucid.io/lucid-pi-network"));
    assert!(!admits(&mongodb, &sneaky, 27017));
}

#[test]
fn dependency_labels_are_on_the_pods_and_never_in_the_selector() {
    let client = tron("tron-client", "lucid-mongodb, lucid-redis");
    let children = render(&client, &inputs()).unwrap();
    let deployment = children.deployment.spec.unwrap();
    assert_eq!(
        deployment.selector.match_labels.unwrap(),
        [
            (
                "app.kubernetes.io/instance".to_string(),
                "tron-client".to_string()
            ),
            (
                "app.kubernetes.io/name".to_string(),
                "tron-client".to_string()
            ),
        ]
        .into()
    );
    let labels = deployment.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["uses.lucid.io/lucid-mongodb"], "true");
    assert_eq!(labels["uses.lucid.io/lucid-redis"], "true");
    // The other children carry no policy labels.
    assert!(
        !children
            .deployment
            .metadata
            .labels
            .unwrap()
            .keys()
            .any(|k| k.starts_with("uses.lucid.io/"))
    );
}

#[test]
fn pods_leave_a_lost_node_after_the_services_toleration_not_five_minutes() {
    let tolerations = |ls: &LucidService| {
        pod_spec(&render(ls, &inputs()).unwrap())
            .tolerations
            .clone()
            .unwrap()
    };
    let defaults = tolerations(&redis());
    assert_eq!(defaults.len(), 2);
    for (t, key) in defaults.iter().zip(pod::NODE_LOSS_TAINTS) {
        assert_eq!(t.key.as_deref(), Some(key));
        assert_eq!(t.effect.as_deref(), Some("NoExecute"));
        assert_eq!(t.operator.as_deref(), Some("Exists"));
        assert_eq!(t.toleration_seconds, Some(30));
    }

    // Set per service; a toleration the user wrote for one of the taints is theirs.
    let mut ls = redis();
    ls.spec.node_loss_toleration_seconds = Some(90);
    ls.spec.tolerations = vec![k8s_openapi::api::core::v1::Toleration {
        key: Some("node.kubernetes.io/unreachable".into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: Some(600),
        value: None,
    }];
    let set = tolerations(&ls);
    assert_eq!(set.len(), 2);
    assert_eq!(set[0].toleration_seconds, Some(600), "the user's, kept");
    assert_eq!(
        (set[1].key.as_deref(), set[1].toleration_seconds),
        (Some("node.kubernetes.io/not-ready"), Some(90))
    );
}

#[test]
fn replicas_are_spread_over_nodes_softly_and_budgeted_one_eviction_at_a_time() {
    let one = render(&redis(), &inputs()).unwrap();
    assert_eq!(pod_spec(&one).topology_spread_constraints, None);
    let owner = owner_reference(&redis()).unwrap();
    assert_eq!(
        disruption_budget::disruption_budget(&redis(), "lucid", &owner),
        None,
        "a budget on one replica would block every drain"
    );

    let mut two = redis();
    two.spec.replicas = 2;
    let children = render(&two, &inputs()).unwrap();
    let spread = pod_spec(&children)
        .topology_spread_constraints
        .clone()
        .unwrap();
    assert_eq!(spread.len(), 1);
    assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
    assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
    assert_eq!(spread[0].max_skew, 1);
    assert_eq!(
        spread[0].label_selector.as_ref().unwrap().match_labels,
        children
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
    );

    let budget = disruption_budget::disruption_budget(&two, "lucid", &owner).unwrap();
    let spec = budget.spec.as_ref().unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(spec.min_available, None);
    assert_eq!(
        spec.selector.as_ref().unwrap().match_labels,
        children
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
    );
    assert_eq!(budget.metadata.owner_references, Some(vec![owner]));

    // In the version discovery found: v1beta1 is v1's object under the old name.
    use disruption_budget::{DisruptionBudget, PodDisruptionBudgetV1beta1, PolicyVersion};
    let on_1_20 = RenderInputs {
        policy: PolicyVersion::V1beta1,
        ..inputs()
    };
    let Some(DisruptionBudget::V1beta1(old)) = render(&two, &on_1_20).unwrap().disruption_budget
    else {
        panic!("a v1beta1 budget on a server without policy/v1")
    };
    let wire = serde_json::to_value(&old).unwrap();
    assert_eq!(wire["apiVersion"], "policy/v1beta1");
    assert_eq!(wire["kind"], "PodDisruptionBudget");
    assert_eq!(wire["spec"]["maxUnavailable"], 1);
    let back: PodDisruptionBudgetV1beta1 = serde_json::from_value(wire).unwrap();
    assert_eq!(back, old);
    assert!(matches!(
        children.disruption_budget,
        Some(DisruptionBudget::V1(_))
    ));
}
