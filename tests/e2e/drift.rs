//! Every child kept as rendered, decided from the live objects, on a real kube-apiserver:
//! - a NetworkPolicy, a Service and an owned claim deleted by hand, and a Service's ports
//!   edited by hand, are each put back;
//! - an operator restarted on a namespace already Ready writes nothing (the audit log, and
//!   every object's resourceVersion);
//! - a Secret edit rolls exactly the services that read it; an unrelated Secret rolls none.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use lucid_e2e::replica::Running;
use lucid_e2e::{
    Kubelet, TestEnv, WAIT, apply_documents, control_plane, create_namespace, install_crds,
    is_ready, wait_for,
};
use lucid_operator::api::{LucidPhase, LucidService};
use lucid_operator::render::CONFIG_HASH_ANNOTATION;
use serde::de::DeserializeOwned;

/// Polls until `check` holds; returns how long that took.
async fn until<F, Fut>(what: &str, check: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .is_some_and(|o| o.meta().deletion_timestamp.is_none())
}

const WORKER: &str = "apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {name: worker}
spec:
  image: {repository: x}
  phase: foundation
  ports: [{name: http, port: 8080}]
  storage: {claimRetention: Delete, data: {kind: EmptyDir}, logs: {kind: PersistentVolumeClaim}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_deleted_or_edited_by_hand_are_put_back() {
    lucid_e2e::control_plane::audit_on();
    let env = TestEnv::start("drift", Duration::from_millis(100)).await;
    env.apply_documents(
        "apiVersion: lucid.io/v1alpha1\nkind: LucidPhase\nmetadata: {name: foundation}\nspec: {}\n",
    )
    .await;
    env.apply_yaml::<LucidService>(WORKER)
        .await
        .expect("worker");
    env.wait_service("worker", "Ready", is_ready).await;
    let (policies, services, claims) = (
        env.api::<NetworkPolicy>(),
        env.api::<Service>(),
        env.api::<PersistentVolumeClaim>(),
    );

    policies
        .delete("worker", &DeleteParams::default())
        .await
        .expect("delete NetworkPolicy");
    let restored = until("NetworkPolicy back", || exists(&policies, "worker")).await;
    println!("NetworkPolicy deleted by hand -> back in {restored:?}");

    services
        .delete("worker", &DeleteParams::default())
        .await
        .expect("delete Service");
    let restored = until("Service back", || exists(&services, "worker")).await;
    println!("Service deleted by hand -> back in {restored:?}");

    // A claim in use stays Terminating while its pods exist (pvc-protection); the pods here
    // never run, so the protection is lifted by hand, as the controller would once they go.
    let old_uid = claims.get("worker-logs").await.expect("claim").uid();
    claims
        .delete("worker-logs", &DeleteParams::default())
        .await
        .expect("delete claim");
    claims
        .patch(
            "worker-logs",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("lift pvc-protection");
    let restored = until("claim back", || async {
        claims
            .get_opt("worker-logs")
            .await
            .ok()
            .flatten()
            .is_some_and(|c| c.uid() != old_uid && c.metadata.deletion_timestamp.is_none())
    })
    .await;
    println!("owned claim deleted by hand -> back in {restored:?}");

    // `kubectl edit` of the port: a patch by another field manager. An apply alone would
    // put 8080 back beside 9999; the port list must be as rendered. Managed-field times are
    // whole seconds, and an edit counts when it is later than the operator's last write
    // (docs in `drift::spec_edited_by`): the Service was just put back, so the edit waits
    // for the clock to pass that second.
    let written = services
        .get("worker")
        .await
        .expect("Service")
        .managed_fields()
        .iter()
        .filter(|m| m.manager.as_deref() == Some("lucid-operator"))
        .filter_map(|m| m.time.as_ref().map(|t| t.0))
        .max()
        .expect("the operator's write time");
    until("the clock past the operator's last write", || async move {
        k8s_openapi::jiff::Timestamp::now().as_second() > written.as_second()
    })
    .await;
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    services
        .patch(
            "worker",
            &edit,
            &Patch::Merge(serde_json::json!({"spec": {"ports": [
                {"name": "http", "port": 9999, "protocol": "TCP", "targetPort": 9999}
            ]}})),
        )
        .await
        .expect("edit Service");
    let ports = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .map(|ports| ports.iter().map(|p| p.port).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let restored = until("Service ports as rendered", || async {
        services
            .get_opt("worker")
            .await
            .ok()
            .flatten()
            .is_some_and(|s| ports(&s) == vec![8080])
    })
    .await;
    println!("Service ports edited by hand -> as rendered in {restored:?}");
    let service = services.get("worker").await.expect("Service");
    assert!(
        service
            .managed_fields()
            .iter()
            .all(|m| m.manager.as_deref() != Some("kubectl-edit")),
        "the edit's fields are gone: {:?}",
        service.managed_fields()
    );

    // A change held by a paused phase does not hold back putting a deleted child back.
    env.apply_documents(
        "apiVersion: lucid.io/v1alpha1\nkind: LucidPhase\nmetadata: {name: foundation}\nspec: {paused: true}\n",
    )
    .await;
    env.apply_yaml::<LucidService>(&format!("{WORKER}  env: [{{name: LEVEL, value: two}}]\n"))
        .await
        .expect("change worker");
    env.wait_service("worker", "Waiting on the paused phase", |ls| {
        ls.status.as_ref().and_then(|s| s.state.as_deref()) == Some("Waiting")
    })
    .await;
    policies
        .delete("worker", &DeleteParams::default())
        .await
        .expect("delete NetworkPolicy");
    let restored = until("NetworkPolicy back while waiting", || {
        exists(&policies, "worker")
    })
    .await;
    println!("NetworkPolicy deleted while a change waits -> back in {restored:?}");
    env.stop().await;
}

const LAB: &str = "apiVersion: lucid.io/v1alpha1
kind: LucidPhase
metadata: {name: lab}
spec: {}
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret}
stringData: {TOKEN: one}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data: {LOG_LEVEL: info}
---
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {name: reader}
spec:
  image: {repository: x}
  phase: lab
  ports: [{name: http, port: 8080}]
  envFrom: [{secretRef: {name: app-secret}}, {configMapRef: {name: app-config}}]
  storage: {data: {kind: PersistentVolumeClaim}}
---
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {name: bystander}
spec:
  image: {repository: x}
  phase: lab
  dependsOn: [reader]
  ports: [{name: http, port: 8081}]
  envFrom: [{configMapRef: {name: app-config}}]
";

/// resourceVersion of every object in `namespace` the operator reads or writes.
async fn versions(client: &Client, namespace: &str) -> BTreeMap<String, String> {
    async fn of<K>(client: &Client, namespace: &str, out: &mut BTreeMap<String, String>)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        for o in api.list(&ListParams::default()).await.expect("list") {
            out.insert(
                format!("{}/{}", K::kind(&()), o.name_any()),
                o.resource_version().unwrap_or_default(),
            );
        }
    }
    let mut out = BTreeMap::new();
    of::<LucidService>(client, namespace, &mut out).await;
    of::<LucidPhase>(client, namespace, &mut out).await;
    of::<Deployment>(client, namespace, &mut out).await;
    of::<Service>(client, namespace, &mut out).await;
    of::<NetworkPolicy>(client, namespace, &mut out).await;
    of::<PersistentVolumeClaim>(client, namespace, &mut out).await;
    out
}

/// Reconciles this replica finished, of one controller.
fn reconciled(replica: &Running, controller: &'static str) -> u64 {
    ["ok", "retrying"]
        .iter()
        .map(|result| {
            replica
                .metrics
                .reconciles
                .get_or_create(&lucid_operator::metrics::ResultLabel { controller, result })
                .get()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_writes_nothing_and_a_secret_rolls_only_its_readers() {
    const NS: &str = "restart";
    lucid_e2e::control_plane::audit_on();
    lucid_e2e::init_tracing();
    let cp = control_plane();
    let admin = cp.client().await;
    install_crds(&admin).await;
    create_namespace(&admin, NS).await;
    let _kubelet = Kubelet::start(admin.clone(), NS, Duration::from_millis(100));
    let services: Api<LucidService> = Api::namespaced(admin.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), NS);

    let first = Running::start(NS, "lucid-operator", None);
    apply_documents(&admin, NS, LAB).await;
    // A Helm-release-like Secret nobody references.
    let unrelated: Api<Secret> = Api::namespaced(admin.clone(), NS);
    let big = "x".repeat(64 * 1024);
    lucid_e2e::apply_yaml::<Secret>(
        &admin,
        NS,
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: sh.helm.release.v1.lab.v1}}\nstringData: {{release: {big}}}\n"),
    )
    .await
    .expect("unrelated Secret");
    for name in ["reader", "bystander"] {
        wait_for(&services, name, "Ready", is_ready).await;
    }
    // And the phase says so: the first operator is done writing.
    let phases: Api<LucidPhase> = Api::namespaced(admin.clone(), NS);
    wait_for(&phases, "lab", "Ready with both members", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.ready_services == 2 && s.state.as_deref() == Some("Ready"))
    })
    .await;
    first.stop().await;

    let before = versions(&admin, NS).await;
    let second = Running::start(NS, "lucid-operator-b", None);
    // Started, it looks at every service and phase once.
    until("the new operator reconciled everything", || async {
        reconciled(&second, "lucidservice") >= 2 && reconciled(&second, "lucidphase") >= 1
    })
    .await;
    let after = versions(&admin, NS).await;
    assert_eq!(before, after, "a restart changed objects");
    let writes = cp.writes_by("lucid-operator-b", NS);
    assert!(writes.is_empty(), "a restart wrote: {writes:?}");

    // An unrelated Secret first, then the one `reader` reads: only `reader` rolls.
    let generation = |d: &Deployment| d.metadata.generation.unwrap_or_default();
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
    };
    let bystander_before = deployments.get("bystander").await.expect("bystander");
    let reader_before = deployments.get("reader").await.expect("reader");
    unrelated
        .patch(
            "sh.helm.release.v1.lab.v1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"release": "y"}})),
        )
        .await
        .expect("edit unrelated Secret");
    unrelated
        .patch(
            "app-secret",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"TOKEN": "two"}})),
        )
        .await
        .expect("edit app-secret");
    let reader_after = wait_for(&deployments, "reader", "the new Secret rolled", |d| {
        hash(d) != hash(&reader_before)
    })
    .await;
    assert_eq!(generation(&reader_after), generation(&reader_before) + 1);
    wait_for(&services, "reader", "Ready again", |ls| {
        is_ready(ls)
            && ls.status.as_ref().and_then(|s| s.observed_generation) == ls.metadata.generation
    })
    .await;
    let bystander_after = deployments.get("bystander").await.expect("bystander");
    assert_eq!(
        bystander_after.resource_version(),
        bystander_before.resource_version(),
        "a service that does not read the Secret was touched"
    );
    second.stop().await;
}
