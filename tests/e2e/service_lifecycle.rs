//! LucidService against a real kube-apiserver: what it creates, how it reports, how it
//! reacts to changes, bad input and deletion.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use lucid_e2e::kubelet::mark_stuck;
use lucid_e2e::{TestEnv, WAIT, condition, control_plane, is_ready, wait_for};
use lucid_operator::api::LucidService;
use lucid_operator::render::CONFIG_HASH_ANNOTATION;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/examples");

/// Applies every document of an example file.
async fn apply_example(env: &TestEnv, file: &str) {
    env.apply_documents(
        &std::fs::read_to_string(format!("{EXAMPLES}/{file}")).expect("example file"),
    )
    .await;
}

async fn foundation(env: &TestEnv) {
    apply_example(env, "phases.yaml").await;
    apply_example(env, "environment.yaml").await;
    apply_example(env, "foundation.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_services_get_hardened_children_and_become_ready_in_dependency_order() {
    let env = TestEnv::start("ls-example", Duration::from_millis(300)).await;
    foundation(&env).await;

    let mongo = env.wait_service("lucid-mongodb", "Ready", is_ready).await;
    let status = mongo.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, mongo.metadata.generation);
    assert_eq!(
        (status.ready.as_deref(), status.state.as_deref()),
        (Some("1/1"), Some("Ready"))
    );
    for (type_, want) in [
        ("Ready", "True"),
        ("Progressing", "False"),
        ("Degraded", "False"),
    ] {
        assert_eq!(
            condition(&status.conditions, type_).unwrap().0,
            want,
            "{type_}"
        );
    }
    env.wait_service("lucid-redis", "Ready", is_ready).await;
    // lucid-redis depends on lucid-mongodb: its Deployment appeared only after mongo was available.
    let log = env.kubelet.log.lock().unwrap().clone();
    assert!(
        log["lucid-redis"].first_seen.unwrap() >= log["lucid-mongodb"].available_at.unwrap(),
        "redis started before mongodb was ready: {log:?}"
    );

    let d = env.api::<Deployment>().get("lucid-mongodb").await.unwrap();
    let owner = &d.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("LucidService", "lucid-mongodb", Some(true))
    );
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(
        spec.strategy.as_ref().unwrap().type_.as_deref(),
        Some("Recreate")
    );
    let pod = spec.template.spec.as_ref().unwrap();
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(
        (
            psc.run_as_user,
            psc.run_as_group,
            psc.fs_group,
            psc.run_as_non_root
        ),
        (Some(65532), Some(65532), Some(65532), Some(true))
    );
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(
        pod.node_selector.as_ref().unwrap()["kubernetes.io/arch"],
        "arm64"
    );
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("pickme/lucid-mongodb:latest-arm64")
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(
        (
            sc.read_only_root_filesystem,
            sc.allow_privilege_escalation,
            sc.privileged,
            sc.run_as_non_root
        ),
        (Some(true), Some(false), Some(false), Some(true))
    );
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop,
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(sc.capabilities.as_ref().unwrap().add, None);
    let env_names: Vec<_> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for name in [
        "LUCID_ENV",
        "LUCID_PLATFORM",
        "LUCID_MONGODB_HOST",
        "LUCID_MONGODB_PORT",
        "LUCID_MONGODB_URL",
    ] {
        assert!(
            env_names.contains(&name),
            "{name} missing from {env_names:?}"
        );
    }
    assert!(c.startup_probe.as_ref().unwrap().tcp_socket.is_some());

    let svc = env.api::<Service>().get("lucid-mongodb").await.unwrap();
    let svc_spec = svc.spec.as_ref().unwrap();
    assert_eq!(svc_spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(svc_spec.ports.as_ref().unwrap()[0].port, 27017);
    assert_eq!(svc.owner_references()[0].name, "lucid-mongodb");

    let claims = env
        .api::<PersistentVolumeClaim>()
        .list(&ListParams::default().labels("lucid.io/service=lucid-mongodb"))
        .await
        .unwrap();
    let mut names: Vec<_> = claims.items.iter().map(|c| c.name_any()).collect();
    names.sort();
    assert_eq!(names, vec!["lucid-mongodb-data", "lucid-mongodb-logs"]);
    let data = claims
        .items
        .iter()
        .find(|c| c.name_any() == "lucid-mongodb-data")
        .unwrap();
    assert_eq!(
        data.spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "10Gi"
    );

    // Everything is written by the operator's one field manager.
    let managers: Vec<_> = d
        .managed_fields()
        .iter()
        .filter(|m| m.operation.as_deref() == Some("Apply"))
        .map(|m| m.manager.clone().unwrap_or_default())
        .collect();
    assert_eq!(managers, vec!["lucid-operator".to_string()]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_rolls_out_and_ready_waits_for_the_new_generation() {
    let env = TestEnv::start("ls-update", Duration::from_millis(300)).await;
    foundation(&env).await;
    let before = env.wait_service("lucid-mongodb", "Ready", is_ready).await;

    env.kubelet.hold("lucid-mongodb");
    let patch = serde_json::json!({"spec": {"image": {"tag": "v2"}}});
    env.api::<LucidService>()
        .patch(
            "lucid-mongodb",
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .unwrap();
    let rolling = env
        .wait_service("lucid-mongodb", "Progressing at generation 2", |ls| {
            ls.status.as_ref().is_some_and(|s| {
                s.observed_generation == ls.metadata.generation
                    && s.state.as_deref() == Some("Progressing")
            })
        })
        .await;
    assert_eq!(
        rolling.metadata.generation,
        Some(before.metadata.generation.unwrap() + 1)
    );
    assert_eq!(
        condition(&rolling.status.as_ref().unwrap().conditions, "Ready")
            .unwrap()
            .0,
        "False"
    );
    let d = env.api::<Deployment>().get("lucid-mongodb").await.unwrap();
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("pickme/lucid-mongodb:v2")
    );

    env.kubelet.release("lucid-mongodb");
    lucid_e2e::kubelet::mark_available(&env.api(), "lucid-mongodb")
        .await
        .expect("mark available");
    let after = env
        .wait_service("lucid-mongodb", "Ready at the new generation", is_ready)
        .await;
    assert_eq!(
        after.status.unwrap().observed_generation,
        after.metadata.generation
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_change_changes_the_pod_template_hash() {
    let env = TestEnv::start("ls-config", Duration::from_millis(200)).await;
    foundation(&env).await;
    env.wait_service("lucid-mongodb", "Ready", is_ready).await;
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let before = hash(&env.api::<Deployment>().get("lucid-mongodb").await.unwrap());

    let patch = serde_json::json!({"data": {"LOG_LEVEL": "DEBUG"}});
    env.api::<ConfigMap>()
        .patch(
            "lucid-env-foundation",
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .unwrap();
    let d = wait_for(
        &env.api::<Deployment>(),
        "lucid-mongodb",
        "config hash to change",
        |d| hash(d) != before,
    )
    .await;
    assert_eq!(hash(&d).len(), 32);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_service_collects_its_children_but_keeps_retained_claims() {
    let env = TestEnv::start("ls-delete", Duration::from_millis(200)).await;
    foundation(&env).await;
    env.wait_service("lucid-mongodb", "Ready", is_ready).await;
    env.api::<LucidService>()
        .delete("lucid-mongodb", &DeleteParams::foreground())
        .await
        .unwrap();

    // The garbage collector's pace, not the operator's (it only sets owner references):
    // Kubernetes 1.20's collector finds a new resource type on its 30 s discovery sync, and a
    // loaded machine can miss one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        let deployment = env
            .api::<Deployment>()
            .get_opt("lucid-mongodb")
            .await
            .unwrap();
        let service = env.api::<Service>().get_opt("lucid-mongodb").await.unwrap();
        if deployment.is_none() && service.is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "children not collected: deployment {} service {}",
            deployment.is_some(),
            service.is_some()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // claimRetention defaults to Retain: the data outlives the LucidService.
    assert!(
        env.api::<PersistentVolumeClaim>()
            .get_opt("lucid-mongodb-data")
            .await
            .unwrap()
            .is_some()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_with_delete_retention_is_removed_when_the_spec_drops_it() {
    let env = TestEnv::start("ls-orphans", Duration::from_millis(200)).await;
    apply_example(&env, "phases.yaml").await;
    let yaml = |logs_kind: &str, ports: &str| {
        format!(
            "apiVersion: lucid.io/v1alpha1\nkind: LucidService\nmetadata: {{name: worker}}\nspec:\n  image: {{repository: x}}\n  phase: foundation\n  ports: {ports}\n  storage: {{claimRetention: Delete, data: {{kind: EmptyDir}}, logs: {{kind: {logs_kind}}}}}\n"
        )
    };
    env.apply_yaml::<LucidService>(&yaml("PersistentVolumeClaim", "[{name: http, port: 8080}]"))
        .await
        .unwrap();
    env.wait_service("worker", "Ready", is_ready).await;
    assert!(
        env.api::<PersistentVolumeClaim>()
            .get_opt("worker-logs")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        env.api::<Service>()
            .get_opt("worker")
            .await
            .unwrap()
            .is_some()
    );

    env.apply_yaml::<LucidService>(&yaml("EmptyDir", "[]"))
        .await
        .unwrap();
    env.wait_service("worker", "Ready after the change", is_ready)
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while env
        .api::<PersistentVolumeClaim>()
        .get_opt("worker-logs")
        .await
        .unwrap()
        .is_some_and(|c| c.metadata.deletion_timestamp.is_none())
        || env
            .api::<Service>()
            .get_opt("worker")
            .await
            .unwrap()
            .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "orphans not removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_resources_are_rejected_by_the_api_server_with_a_clear_message() {
    let env = TestEnv::start("ls-invalid", Duration::from_millis(200)).await;
    let service = |name: &str, extra: &str| {
        format!(
            "apiVersion: lucid.io/v1alpha1\nkind: LucidService\nmetadata: {{name: {name}}}\nspec:\n  image: {{repository: x}}\n  phase: core\n{extra}"
        )
    };
    let cases = [
        (
            "port 0",
            service("p0", "  ports: [{name: http, port: 0}]\n"),
            "spec.ports.port",
        ),
        (
            "port 70000",
            service("p70k", "  ports: [{name: http, port: 70000}]\n"),
            "spec.ports.port",
        ),
        (
            "root user",
            service("root", "  security: {runAsUser: 0}\n"),
            "spec.security.runAsUser",
        ),
        (
            "privileged",
            service("priv", "  security: {privileged: true}\n"),
            "spec.security.privileged",
        ),
        (
            "no read-only root",
            service("rw", "  security: {readOnlyRootFilesystem: false}\n"),
            "spec.security.readOnlyRootFilesystem",
        ),
        (
            "unknown capability",
            service("cap", "  security: {capabilities: {add: [SYS_ADMIN]}}\n"),
            "spec.security.capabilities.add",
        ),
        (
            "keeping a capability",
            service("drop", "  security: {capabilities: {drop: [NET_RAW]}}\n"),
            "spec.security.capabilities.drop",
        ),
        (
            "unconfined seccomp",
            service("seccomp", "  security: {seccompProfile: Unconfined}\n"),
            "spec.security.seccompProfile",
        ),
        ("dotted name", service("lucid.redis", ""), "metadata.name"),
        (
            "upper-case name",
            service("LucidRedis", ""),
            "metadata.name",
        ),
        (
            "bad dependency name",
            service("deps", "  dependsOn: [Not_A_Name]\n"),
            "spec.dependsOn",
        ),
        (
            "bad phase name",
            service("phase", "").replace("phase: core", "phase: Core_1"),
            "spec.phase",
        ),
    ];
    for (what, yaml, field) in cases {
        match env.apply_yaml::<LucidService>(&yaml).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{what}: {status:?}");
                assert!(
                    status.message.contains(field),
                    "{what}: message does not name {field}: {}",
                    status.message
                );
            }
            other => panic!("{what} was accepted: {other:?}"),
        }
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_reported_by_name_and_fixing_it_recovers() {
    let env = TestEnv::start("ls-secret", Duration::from_millis(200)).await;
    apply_example(&env, "phases.yaml").await;
    let yaml = "apiVersion: lucid.io/v1alpha1\nkind: LucidService\nmetadata: {name: lucid-auth-service}\nspec:\n  image: {repository: x}\n  phase: foundation\n  ports: [{name: http, port: 8089}]\n  env:\n  - name: JWT_SECRET_KEY\n    valueFrom: {secretKeyRef: {name: lucid-secrets, key: JWT_SECRET_KEY}}\n";
    env.apply_yaml::<LucidService>(yaml).await.unwrap();
    let degraded = env
        .wait_service("lucid-auth-service", "Degraded", |ls| {
            ls.status
                .as_ref()
                .is_some_and(|s| s.state.as_deref() == Some("Degraded"))
        })
        .await;
    let (status, reason, message) =
        condition(&degraded.status.as_ref().unwrap().conditions, "Degraded").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "MissingSecret")
    );
    assert!(message.contains("lucid-secrets"), "{message}");
    assert!(
        env.api::<Deployment>()
            .get_opt("lucid-auth-service")
            .await
            .unwrap()
            .is_none(),
        "no Deployment while its Secret is missing"
    );

    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: lucid-secrets}\nstringData: {JWT_SECRET_KEY: very-secret-value}\n";
    env.apply_yaml::<Secret>(secret).await.unwrap();
    let ready = env
        .wait_service(
            "lucid-auth-service",
            "Ready once the Secret exists",
            is_ready,
        )
        .await;
    let status_json = serde_json::to_string(&ready.status).unwrap();
    assert!(!status_json.contains("very-secret-value"));
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(env.client.clone(), &env.namespace)
            .list(&Default::default())
            .await
            .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("MissingSecret")),
        "a Warning event names the problem"
    );
    assert!(
        !serde_json::to_string(&events.items)
            .unwrap()
            .contains("very-secret-value")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_rollout_is_degraded() {
    let env = TestEnv::start("ls-stuck", Duration::from_millis(200)).await;
    apply_example(&env, "phases.yaml").await;
    env.kubelet.hold("stuck");
    let yaml = "apiVersion: lucid.io/v1alpha1\nkind: LucidService\nmetadata: {name: stuck}\nspec:\n  image: {repository: x}\n  phase: foundation\n  storage: {data: {kind: EmptyDir}, logs: {kind: EmptyDir}}\n  healthCheck: {kind: None}\n";
    env.apply_yaml::<LucidService>(yaml).await.unwrap();
    wait_for(&env.api::<Deployment>(), "stuck", "created", |_| true).await;
    mark_stuck(&env.api(), "stuck").await;
    let ls = env
        .wait_service("stuck", "Degraded", |ls| {
            ls.status
                .as_ref()
                .is_some_and(|s| s.state.as_deref() == Some("Degraded"))
        })
        .await;
    assert_eq!(
        condition(&ls.status.unwrap().conditions, "Degraded")
            .unwrap()
            .1,
        "RolloutStuck"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_and_wait_for_condition_ready_work() {
    let Some(kubectl) = kubectl() else {
        eprintln!("skipping: no kubectl (run tests/harness/install-tools.sh or set LUCID_KUBECTL)");
        return;
    };
    let env = TestEnv::start("ls-kubectl", Duration::from_millis(300)).await;
    let kubeconfig = control_plane().kubeconfig.display().to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&kubectl)
            .args(["--kubeconfig", &kubeconfig, "-n", &env.namespace])
            .args(args)
            .output()
            .expect("kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for file in ["phases.yaml", "environment.yaml", "foundation.yaml"] {
        let (ok, out) = run(&["apply", "-f", &format!("{EXAMPLES}/{file}")]);
        assert!(ok, "kubectl apply {file}: {out}");
    }
    let (ok, out) = run(&[
        "wait",
        "--for=condition=Ready",
        "lucidservice/lucid-redis",
        "--timeout=60s",
    ]);
    assert!(ok, "kubectl wait: {out}");
    let (ok, out) = run(&["get", "ls"]);
    assert!(
        ok && out.contains("lucid-redis") && out.contains("1/1") && out.contains("Ready"),
        "kubectl get ls:\n{out}"
    );
    let (ok, out) = run(&["explain", "lucidservice.spec.security"]);
    assert!(ok && out.contains("runAsUser"), "kubectl explain: {out}");
    env.stop().await;
}

fn kubectl() -> Option<String> {
    if let Ok(k) = std::env::var("LUCID_KUBECTL") {
        return Some(k);
    }
    let cached = "/var/cache/lucid-tools/kubectl-v37-2.0.0/kubectl";
    std::path::Path::new(cached)
        .exists()
        .then(|| cached.to_string())
}
