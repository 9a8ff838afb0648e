//! A cluster of boards, against a real kube-apiserver (1.20, which serves budgets only as
//! `policy/v1beta1`): the budget of a replicated service, a lost node in status, and the
//! restart of a pod left in back-off by a dependency that was down. There is no kubelet
//! here: nodes and pods are objects this test writes as a kubelet and the node controller
//! would (the real-cluster tests run the real ones).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Api, ResourceExt};
use lucid_e2e::{TestEnv, condition, eventually, is_ready};
use lucid_operator::api::LucidService;
use serde_json::json;

const PHASE: &str =
    "apiVersion: lucid.io/v1alpha1\nkind: LucidPhase\nmetadata: {name: foundation}\nspec: {}\n";

fn service(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: lucid.io/v1alpha1\nkind: LucidService\nmetadata: {{name: {name}}}\nspec:\n  image: {{repository: x}}\n  phase: foundation\n  ports: [{{name: http, port: 8080}}]\n  storage: {{data: {{kind: EmptyDir}}, logs: {{kind: EmptyDir}}}}\n{extra}"
    )
}

fn budgets(env: &TestEnv) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("policy", "v1beta1", "PodDisruptionBudget"),
        "poddisruptionbudgets",
    );
    Api::namespaced_with(env.client.clone(), &env.namespace, &resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_service_gets_a_budget_in_the_served_version_kept_and_removed_at_one_replica()
{
    let env = TestEnv::start("cl-budget", Duration::from_millis(200)).await;
    env.apply_documents(PHASE).await;
    env.apply_yaml::<LucidService>(&service("web", "  replicas: 2\n"))
        .await
        .unwrap();
    env.wait_service("web", "Ready", is_ready).await;
    let api = budgets(&env);
    let budget = api
        .get("web")
        .await
        .expect("a policy/v1beta1 budget on 1.20");
    assert_eq!(budget.data["spec"]["maxUnavailable"], 1);
    assert_eq!(
        budget.data["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "web"
    );
    assert_eq!(
        budget.owner_references()[0].name,
        "web",
        "owned, so it goes with the service"
    );

    // Loosened by hand (to force a drain through): put back. Managed-field times are whole
    // seconds and an edit counts once later than the operator's last write (see
    // `drift::spec_edited_by`): the edit waits for the clock to pass that second.
    let written = budget
        .managed_fields()
        .iter()
        .filter(|m| m.manager.as_deref() == Some("lucid-operator"))
        .filter_map(|m| m.time.as_ref().map(|t| t.0))
        .max()
        .expect("the operator's write time");
    eventually("the clock past the operator's last write", || async move {
        (jiff::Timestamp::now().as_second() > written.as_second()).then_some(())
    })
    .await;
    api.patch(
        "web",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"spec": {"maxUnavailable": 2}})),
    )
    .await
    .unwrap();
    eventually("the budget put back", || async {
        let b = api.get("web").await.ok()?;
        (b.data["spec"]["maxUnavailable"] == 1).then_some(())
    })
    .await;

    // One replica: no budget (one that allows no eviction would block every drain).
    env.apply_yaml::<LucidService>(&service("web", "  replicas: 1\n"))
        .await
        .unwrap();
    eventually("the budget removed", || async {
        api.get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await;
    env.stop().await;
}

/// A node object as a kubelet registers it, Ready or not (the node controller's `Unknown`).
async fn set_node(env: &TestEnv, name: &str, ready: &str) {
    let nodes: Api<Node> = Api::all(env.client.clone());
    if nodes.get_opt(name).await.unwrap().is_none() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let now = jiff::Timestamp::now().to_string();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Ready", "status": ready, "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}
            ]}})),
        )
        .await
        .unwrap();
}

/// The namespace's `default` ServiceAccount, which pods name and the admission plugin looks
/// up (there is no controller here to make it).
async fn default_service_account(env: &TestEnv) {
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = env.api();
    let account = serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    let _ = accounts.create(&PostParams::default(), &account).await;
}

/// A pod of `service` as its ReplicaSet and a kubelet would leave it.
async fn pod(
    env: &TestEnv,
    name: &str,
    service: &str,
    node: Option<&str>,
    status: serde_json::Value,
) {
    let api: Api<Pod> = env.api();
    // No token: there is no token controller here, and the pods never run.
    let mut spec = json!({"automountServiceAccountToken": false, "containers": [{"name": service, "image": "x"}]});
    if let Some(node) = node {
        spec["nodeName"] = node.into();
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/managed-by": "lucid-operator",
            "lucid.io/service": service,
            "app.kubernetes.io/name": service,
            "app.kubernetes.io/instance": service,
        }},
        "spec": spec,
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap();
}

fn ready_status(ready: bool, since: &str) -> serde_json::Value {
    json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": since}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_is_named_in_status_and_a_claim_on_it_pins_the_service() {
    let env = TestEnv::start("cl-lost", Duration::from_millis(200)).await;
    env.apply_documents(PHASE).await;
    default_service_account(&env).await;
    let node = format!("pi-{}", env.namespace);
    set_node(&env, &node, "True").await;
    // Held: the stand-in never marks it available, as when its pod's node is gone.
    env.kubelet.hold("api");
    env.apply_yaml::<LucidService>(&service("api", ""))
        .await
        .unwrap();
    let now = jiff::Timestamp::now().to_string();
    pod(&env, "api-1", "api", Some(&node), ready_status(true, &now)).await;

    set_node(&env, &node, "Unknown").await;
    // The node controller turns the pods of a lost node not-Ready: that wakes the service.
    let pods: Api<Pod> = env.api();
    pods.patch_status(
        "api-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": ready_status(false, &now)})),
    )
    .await
    .unwrap();
    let ls = env
        .wait_service("api", "NodeLost", |ls| {
            ls.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "NodeLost")
            })
        })
        .await;
    let status = ls.status.unwrap();
    assert_eq!(
        status.state.as_deref(),
        Some("Progressing"),
        "its pods move"
    );
    let (_, _, message) = condition(&status.conditions, "Ready").unwrap();
    assert!(
        message.contains(&format!("1 pod on node {node}, not ready since")),
        "{message}"
    );

    // Its data claim's volume was made on that node: it cannot move, and says so.
    let claims: Api<PersistentVolumeClaim> = env.api();
    env.apply_yaml::<LucidService>(
        &service("api", "").replace("data: {kind: EmptyDir}", "data: {size: 1Gi}"),
    )
    .await
    .unwrap();
    eventually("the data claim", || async {
        claims.get_opt("api-data").await.unwrap()
    })
    .await;
    claims
        .patch(
            "api-data",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": node}}}),
            ),
        )
        .await
        .unwrap();
    let ls = env
        .wait_service("api", "Degraded NodeLost", |ls| {
            ls.status
                .as_ref()
                .is_some_and(|s| s.state.as_deref() == Some("Degraded"))
        })
        .await;
    let status = ls.status.unwrap();
    let (_, reason, message) = condition(&status.conditions, "Degraded").unwrap();
    assert_eq!(reason, "NodeLost");
    assert!(
        message.contains(&format!("node {node} is not ready")),
        "{message}"
    );
    assert!(message.contains("claim api-data lives on it"), "{message}");
    assert_eq!(status.data_nodes[0].node, node);

    // The board is back and its pod Ready: status names where it runs.
    set_node(&env, &node, "True").await;
    pods.patch_status(
        "api-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": ready_status(true, &jiff::Timestamp::now().to_string())})),
    )
    .await
    .unwrap();
    env.kubelet.release("api");
    lucid_e2e::kubelet::mark_available(&env.api(), "api")
        .await
        .unwrap();
    let ls = env.wait_service("api", "Ready again", is_ready).await;
    assert_eq!(ls.status.unwrap().nodes, vec![node.clone()]);
    Api::<Node>::all(env.client.clone())
        .delete(&node, &DeleteParams::default())
        .await
        .unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_in_back_off_from_before_its_dependency_was_ready_is_restarted_once() {
    let env = TestEnv::start("cl-backoff", Duration::from_millis(200)).await;
    env.apply_documents(PHASE).await;
    default_service_account(&env).await;
    env.apply_yaml::<LucidService>(&service("db", ""))
        .await
        .unwrap();
    env.wait_service("db", "Ready", is_ready).await;
    // The database's pod became Ready at `ready`; the app crashed before it and after it.
    let ready = jiff::Timestamp::now();
    let before = (ready - jiff::SignedDuration::from_secs(30)).to_string();
    let after = (ready + jiff::SignedDuration::from_secs(30)).to_string();
    pod(
        &env,
        "db-1",
        "db",
        None,
        ready_status(true, &ready.to_string()),
    )
    .await;
    env.kubelet.hold("app");
    env.apply_yaml::<LucidService>(&service("app", "  dependsOn: [db]\n"))
        .await
        .unwrap();
    let backed_off = |crashed: &str| {
        json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": crashed, "finishedAt": crashed}},
        }]})
    };
    pod(&env, "app-own-bug", "app", None, backed_off(&after)).await;
    pod(&env, "app-early", "app", None, backed_off(&before)).await;

    let pods: Api<Pod> = env.api();
    eventually("the pod that crashed early restarted", || async {
        pods.get_opt("app-early")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        pods.get_opt("app-own-bug").await.unwrap().is_some(),
        "a crash after the dependency was Ready keeps its back-off"
    );
    assert!(env.metrics.backed_off_restarts.get() == 1);
    env.stop().await;
}
