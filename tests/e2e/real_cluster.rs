//! The decisive tests, on a real single-node cluster (`lucid_e2e::node`): a real kubelet
//! runs the pods under containerd and runc, from the images `images/build.sh` builds.
//!
//! - Helm 4 installs `charts/lucid-operator`; the operator runs as a pod from its image,
//!   under the chart's ServiceAccount and RBAC (not an admin), and turns Ready by its probes.
//! - The session pipeline (services/deploy/lucidservices.yaml) with Redis and a MongoDB
//!   wire-protocol server, all as LucidServices: every container runs as 65532 with a
//!   read-only root, no capabilities and seccomp, passes its probes; services and phases
//!   report Ready from real pod readiness; a session recorded through the api-gateway's
//!   Service, by a client that logged in through it (lucid-auth-service), reads back
//!   whole; a killed pod is replaced and the service is Ready again.
//! - A bad image tag makes its LucidService Degraded, naming the image.
//!
//! Needs root; `tests/run-all.sh` provides the binaries and images.

use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use lucid_e2e::node::stack::{
    ADMIN_PASSWORD, ADMIN_USERNAME, AUTH_PUBLIC_KEYS, JWT_KEY, OPERATOR_NAMESPACE, PIPELINE,
    create_namespace, for_this_node, install_operator, pipeline_documents, record_session_binary,
};
use lucid_e2e::node::{RealCluster, real_cluster};
use lucid_e2e::{apply_documents, condition, is_ready, wait_for_within};
use lucid_operator::api::{LucidPhase, LucidService};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// Real pods: image unpacking, probes' periods, a Deployment controller in the loop.
const POD_WAIT: Duration = Duration::from_secs(180);

fn run(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn wait_service_ready(client: &Client, namespace: &str, name: &str) -> LucidService {
    let api: Api<LucidService> = Api::namespaced(client.clone(), namespace);
    wait_for_within(&api, name, "Ready from real pods", POD_WAIT, is_ready).await
}

/// The running pod of a service (one replica).
async fn service_pod(client: &Client, namespace: &str, name: &str) -> Pod {
    pods_of(client, namespace, name)
        .await
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .unwrap_or_else(|| panic!("no pod for {name}"))
}

/// What the kernel says of a pod's main process: (uid line, effective capabilities,
/// no_new_privs, seccomp mode, root mount read-only).
fn process_facts(cluster: &RealCluster, pod: &Pod) -> (String, String, String, String, bool) {
    let pid = cluster.main_process(pod).expect("the pod's main process");
    let field = |name: &str| RealCluster::proc_status(pid, name).expect("a /proc status field");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root_read_only = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(4) == Some(&"/") && f.get(5).is_some_and(|o| o.split(',').any(|o| o == "ro"))
    });
    (
        field("Uid"),
        field("CapEff"),
        field("NoNewPrivs"),
        field("Seccomp"),
        root_read_only,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_the_operator_which_runs_from_its_image_under_the_charts_rbac() {
    let cluster = real_cluster();
    install_operator(cluster);
    let client = cluster.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let operator = deployments.get("lucid-operator").await.expect("deployment");
    let image = operator
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap_or_default();
    assert_eq!(
        image, "lucid/lucid-operator:0.1.0",
        "the chart's default image"
    );
    assert!(
        cluster
            .images
            .iter()
            .any(|i| i == "docker.io/lucid/lucid-operator:0.1.0"),
        "the node runs the image images/build.sh made: {:?}",
        cluster.images
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let pod = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=lucid-operator"))
        .await
        .expect("pods")
        .items
        .remove(0);
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("lucid-operator"));
    assert!(
        pod_ready(&pod),
        "Ready by its readiness probe: {:?}",
        pod.status
    );
    let (uid, caps, no_new_privs, seccomp, ro) = process_facts(cluster, &pod);
    assert_eq!(uid, "65532 65532 65532 65532");
    assert_eq!(caps, "0000000000000000");
    assert_eq!(
        (no_new_privs.as_str(), seccomp.as_str(), ro),
        ("1", "2", true)
    );

    // Not an admin: what the chart grants, no more.
    let as_operator = "system:serviceaccount:lucid-system:lucid-operator";
    for (verb, resource, subresource, allowed) in [
        ("patch", "deployments.apps", "", "yes"),
        ("watch", "lucidservices.lucid.io", "", "yes"),
        ("get", "lucidphases.lucid.io", "", "yes"),
        ("get", "lucidservices.lucid.io", "", "yes"),
        ("patch", "lucidservices.lucid.io", "status", "yes"),
        ("watch", "pods", "", "yes"),
        (
            "create",
            "clusterrolebindings.rbac.authorization.k8s.io",
            "",
            "no",
        ),
        ("update", "secrets", "", "no"),
        // Revision copies are created, never changed: they are immutable.
        ("create", "secrets", "", "yes"),
        ("delete", "secrets", "", "no"),
        ("create", "controllerrevisions.apps", "", "yes"),
        ("update", "controllerrevisions.apps", "", "no"),
        ("update", "deployments.apps", "", "no"),
        ("get", "deployments.apps", "", "no"),
        ("watch", "secrets", "", "yes"),
        ("create", "lucidservices.lucid.io", "", "no"),
        ("patch", "lucidservices.lucid.io", "", "no"),
        // A cluster of boards: budgets for replicated services, nodes read to say which was
        // lost, a pod stuck in back-off restarted once its dependency is Ready.
        ("patch", "poddisruptionbudgets.policy", "", "yes"),
        ("watch", "nodes", "", "yes"),
        ("patch", "nodes", "", "no"),
        ("delete", "pods", "", "yes"),
        ("create", "pods", "", "no"),
    ] {
        let mut kubectl = cluster.kubectl();
        kubectl.args(["auth", "can-i", verb, resource, "--all-namespaces"]);
        kubectl.args(["--as", as_operator]);
        if !subresource.is_empty() {
            kubectl.arg(format!("--subresource={subresource}"));
        }
        let out = kubectl.output().expect("kubectl");
        assert_eq!(
            stdout(&out),
            allowed,
            "can the operator {verb} {resource} {subresource}? {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // `helm test`: a real pod from the operator's image, under its ServiceAccount, reaches
    // the operator through its Service by cluster DNS and lists both custom resources.
    let out = cluster
        .helm()
        .args(["test", "lucid-operator", "-n", OPERATOR_NAMESPACE, "--logs"])
        .args(["--timeout", "2m"])
        .output()
        .expect("helm test");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helm test failed:\n{printed}");
    assert!(
        printed.contains("is ready") && printed.contains("are served in the cluster"),
        "helm test output: {printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_pipeline_runs_hardened_in_real_pods_and_records_a_session() {
    let cluster = real_cluster();
    install_operator(cluster);
    let client = cluster.client().await;
    let ns = "pipeline";
    create_namespace(&client, ns).await;
    apply_documents(&client, ns, &pipeline_documents()).await;
    let names = PIPELINE;
    for name in names {
        let ls = wait_service_ready(&client, ns, name).await;
        let status = ls.status.unwrap();
        assert_eq!(status.ready.as_deref(), Some("1/1"), "{name}");
        assert_eq!(status.observed_generation, ls.metadata.generation);
    }
    let phases: Api<LucidPhase> = Api::namespaced(client.clone(), ns);
    for (phase, members) in [("foundation", 3), ("core", 1), ("application", 2)] {
        let ready = format!("{members}/{members}");
        let p = wait_for_within(&phases, phase, "Ready", POD_WAIT, |p: &LucidPhase| {
            p.status.as_ref().is_some_and(|s| {
                condition(&s.conditions, "Ready").is_some_and(|c| c.0 == "True")
                    && s.ready.as_deref() == Some(ready.as_str())
            })
        })
        .await;
        assert_eq!(p.status.unwrap().members.len(), members, "{phase}");
    }

    // Every container as the kernel sees it, and every probe passed without a restart.
    for name in names {
        let pod = service_pod(&client, ns, name).await;
        let container = pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .clone();
        assert!(container.ready, "{name} ready");
        assert_eq!(
            container.restart_count, 0,
            "{name}: probes passed without restarts"
        );
        let probes = &pod.spec.as_ref().unwrap().containers[0];
        assert!(
            probes.startup_probe.is_some()
                && probes.readiness_probe.is_some()
                && probes.liveness_probe.is_some(),
            "{name} has all three probes"
        );
        let (uid, caps, no_new_privs, seccomp, ro) = process_facts(cluster, &pod);
        assert_eq!(uid, "65532 65532 65532 65532", "{name} runs as 65532");
        assert_eq!(caps, "0000000000000000", "{name} has no capabilities");
        assert_eq!(no_new_privs, "1", "{name} cannot gain privileges");
        assert_eq!(seccomp, "2", "{name} runs under a seccomp filter");
        assert!(ro, "{name}'s root filesystem is read-only");
    }

    // The NetworkPolicies are admitted (one per service); the bridge plugin does not enforce
    // them (k3s does, with its network policy controller).
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    let mut admitted: Vec<String> = policies
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    admitted.sort();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(admitted, expected);

    // A session through the api-gateway's Service, its name resolved by the cluster's DNS,
    // and through it the gateway → recorder → storage → MongoDB/Redis path, all by name.
    // dnsmasq rereads the records file when it changes: asked until it has.
    let gateway = lucid_e2e::eventually_within(
        Duration::from_secs(30),
        "cluster DNS resolves the api-gateway Service",
        || async { cluster.resolve_service("api-gateway", ns) },
    )
    .await;
    let service_ip = client_service_ip(&client, ns, "api-gateway").await;
    assert_eq!(gateway.to_string(), service_ip, "DNS answers the ClusterIP");
    for name in [
        "lucid-auth-service",
        "api-gateway",
        "session-recorder",
        "session-storage",
    ] {
        lucid_e2e::eventually_within(POD_WAIT, &format!("{name}'s pod in its Endpoints"), || {
            let client = client.clone();
            async move { (!ready_endpoints(&client, ns, name).await.is_empty()).then_some(()) }
        })
        .await;
    }
    // The Endpoints are in; kube-proxy's rules for them may not be yet (the session's first
    // call is a POST that is not retried).
    lucid_e2e::eventually_within(
        POD_WAIT,
        "the api-gateway's ClusterIP answers (kube-proxy's rules in place)",
        || async move {
            tokio::net::TcpStream::connect((gateway, 8080))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let recorded = run({
        let mut c = Command::new(record_session_binary());
        c.arg(format!("http://{gateway}:8080"))
            .arg("3")
            // It logs in through the gateway's /auth/login (lucid-auth-service behind it):
            // no token is minted here.
            .env("LUCID_USERNAME", ADMIN_USERNAME)
            .env("LUCID_PASSWORD", ADMIN_PASSWORD);
        c
    });
    let summary: serde_json::Value = serde_json::from_str(&stdout(&recorded)).expect("summary");
    assert!(summary["chunks"].as_u64().unwrap() >= 3, "{summary}");
    assert_eq!(summary["merkle_root"].as_str().map(str::len), Some(64));

    // A pod killed by hand: the ReplicaSet replaces it, the service goes back to Ready.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let victim = service_pod(&client, ns, "session-storage").await;
    pods.delete(&victim.name_any(), &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    // A new pod, Ready, and behind the Service (Ready on the LucidService is the
    // Deployment's word; the Endpoints are what the recorder's calls go through).
    lucid_e2e::eventually_within(
        POD_WAIT,
        "a new session-storage pod, ready, in the Endpoints",
        || {
            let (client, victim) = (client.clone(), victim.uid());
            async move {
                let pod = pods_of(&client, ns, "session-storage")
                    .await
                    .into_iter()
                    .find(|p| p.uid() != victim && pod_ready(p))?;
                let ip = pod.status.and_then(|s| s.pod_ip)?;
                ready_endpoints(&client, ns, "session-storage")
                    .await
                    .contains(&ip)
                    .then_some(())
            }
        },
    )
    .await;
    wait_service_ready(&client, ns, "session-storage").await;
    // The data volume outlived the pod: the session recorded before reads back again.
    let again = run({
        let mut c = Command::new(record_session_binary());
        c.arg(format!("http://{gateway}:8080"))
            .arg("1")
            .env("LUCID_USERNAME", ADMIN_USERNAME)
            .env("LUCID_PASSWORD", ADMIN_PASSWORD);
        c
    });
    assert!(stdout(&again).contains("merkle_root"));
}

async fn pods_of(client: &Client, namespace: &str, service: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.list(&ListParams::default().labels(&format!("lucid.io/service={service}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The addresses a Service's Endpoints list as ready.
async fn ready_endpoints(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::core::v1::Endpoints> =
        Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|e| e.subsets)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|s| s.addresses.unwrap_or_default())
        .map(|a| a.ip)
        .collect()
}

async fn client_service_ip(client: &Client, namespace: &str, name: &str) -> String {
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), namespace);
    api.get(name)
        .await
        .expect("service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("cluster IP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_tag_degrades_the_service_naming_the_image() {
    let cluster = real_cluster();
    install_operator(cluster);
    let client = cluster.client().await;
    let ns = "bad-image";
    create_namespace(&client, ns).await;
    apply_documents(
        &client,
        ns,
        &std::fs::read_to_string(format!("{ROOT}/crds/examples/phases.yaml")).unwrap(),
    )
    .await;
    // `Never`: a tag this node lacks must not send the kubelet to a registry.
    let bad = r#"
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {name: api-gateway}
spec:
  image: {repository: lucid/lucid-api-gateway, tag: no-such-tag, pullPolicy: Never}
  phase: core
  ports: [{name: http, port: 8080}]
  storage: {data: {kind: EmptyDir}, logs: {kind: EmptyDir}}
"#;
    apply_documents(&client, ns, &for_this_node(bad)).await;
    let api: Api<LucidService> = Api::namespaced(client.clone(), ns);
    let ls = wait_for_within(
        &api,
        "api-gateway",
        "Degraded",
        POD_WAIT,
        |ls: &LucidService| {
            ls.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Degraded"))
                .is_some_and(|c| c.0 == "True")
        },
    )
    .await;
    let status = ls.status.unwrap();
    let (_, reason, message) = condition(&status.conditions, "Degraded").unwrap();
    assert_eq!(reason, "ImagePullFailed");
    assert!(
        message.contains("docker.io/lucid/lucid-api-gateway:no-such-tag")
            || message.contains("lucid/lucid-api-gateway:no-such-tag"),
        "names the image: {message}"
    );
    assert_eq!(status.state.as_deref(), Some("Degraded"));
    let ready = condition(&status.conditions, "Ready").unwrap();
    assert_eq!(ready.0, "False");

    // The right tag: the image runs, but the gateway refuses to start without its signing
    // key, so the pod crash-loops: reported as such, naming the container.
    let fixed = bad.replace("no-such-tag", "0.1.0");
    apply_documents(&client, ns, &for_this_node(&fixed)).await;
    let ls = wait_for_within(
        &api,
        "api-gateway",
        "Degraded by a crash loop",
        POD_WAIT,
        |ls: &LucidService| {
            ls.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Degraded"))
                .is_some_and(|c| c.1 == "CrashLoopBackOff")
        },
    )
    .await;
    let (_, _, message) = condition(&ls.status.unwrap().conditions, "Degraded").unwrap();
    assert!(
        message.starts_with("container api-gateway of image"),
        "{message}"
    );
    assert!(message.contains("keeps exiting"), "{message}");

    // Given its keys (its own, and the auth service's public keys), it starts and turns
    // Ready.
    let complete = fixed.replace(
        "  phase: core\n",
        &format!(
            "  phase: core\n  env: [{{name: JWT_SECRET_KEY, value: {JWT_KEY}}}, {{name: AUTH_PUBLIC_KEYS, value: '{AUTH_PUBLIC_KEYS}'}}]\n"
        ),
    );
    apply_documents(&client, ns, &for_this_node(&complete)).await;
    let ls = wait_service_ready(&client, ns, "api-gateway").await;
    let degraded = condition(&ls.status.unwrap().conditions, "Degraded").unwrap();
    assert_eq!(degraded.0, "False");
}
