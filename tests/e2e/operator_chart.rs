//! The operator chart on a real kube-apiserver, installed by the real Helm engine, in one
//! story (each step needs the one before; one API server for this binary):
//! 1. `helm install` of `charts/lucid-operator`; the operator runs under the chart's
//!    ServiceAccount and ClusterRole — impersonated, since this harness has no kubelet (the
//!    real-cluster tests run it as a pod) — and `helm install` of `charts/lucid-stack` rolls
//!    out all 27 services, every phase Ready.
//! 2. `helm upgrade` with a chart whose CRD gained a field: before, the API server prunes the
//!    field; after, it is accepted and served.
//! 3. The namespaced mode (`watchNamespaces`): no cluster-wide rule, a Role per watched
//!    namespace; the operator reconciles there and cannot read a Secret anywhere else.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use lucid_e2e::{
    Kubelet, apply_documents, control_plane, crds_established, create_namespace, eventually,
    init_tracing, is_ready, wait_for,
};
use lucid_operator::api::{LucidPhase, LucidService};
use lucid_operator::reconcile::{self, Scope, Shared};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn run(mut cmd: Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn helm(args: &[&str]) -> String {
    let mut cmd = control_plane().helm();
    cmd.args(args);
    run(cmd)
}

/// The operator, in-process, as a ServiceAccount: every call it makes goes through RBAC.
struct Operator {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    async fn start(namespace: &str, service_account: &str, watch: &str) -> Operator {
        let client = control_plane()
            .client_as_service_account(namespace, service_account)
            .await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = stopped.map(drop).shared();
        let scopes = Scope::from_list(watch);
        let task = tokio::spawn(async move {
            let shared = Shared::standalone();
            let runs = scopes.into_iter().map(|scope| {
                reconcile::run(client.clone(), shared.clone(), scope, shutdown.clone())
            });
            if let Err(e) = futures::future::try_join_all(runs).await {
                panic!("operator failed under the chart's RBAC: {e}");
            }
        });
        Operator { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("operator stops")
            .expect("operator ran without error");
    }
}

async fn all_ready(client: &Client, namespace: &str, services: usize) {
    let api: Api<LucidService> = Api::namespaced(client.clone(), namespace);
    let phases: Api<LucidPhase> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let listed = api.list(&Default::default()).await.expect("list").items;
        let ready = listed.iter().filter(|s| is_ready(s)).count();
        let phases_ready = phases
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .iter()
            .all(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.observed_generation == p.metadata.generation
                        && s.state.as_deref() == Some("Ready")
                })
            });
        if listed.len() == services && ready == services && phases_ready {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ready}/{services} services Ready in {namespace}; not Ready: {:?}",
            listed
                .iter()
                .filter(|s| !is_ready(s))
                .map(|s| (s.name_any(), s.status.clone().unwrap_or_default().state))
                .collect::<Vec<_>>()
        );
        // A poll between list calls, not a sleep standing in for a condition: the loop ends
        // on the condition and fails at the deadline.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A copy of the operator chart whose LucidService CRD has one more spec field.
fn chart_with_new_crd_field(dir: &Path, field: &str) -> String {
    let chart = dir.join("lucid-operator");
    run({
        let mut cp = Command::new("cp");
        cp.arg("-r")
            .arg(format!("{ROOT}/charts/lucid-operator"))
            .arg(&chart);
        cp
    });
    let mut crds = lucid_operator::api::crds();
    let service = crds
        .iter_mut()
        .find(|c| c.spec.names.kind == "LucidService")
        .expect("LucidService CRD");
    let spec = service.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .and_then(|s| s.properties.as_mut())
        .and_then(|p| p.get_mut("spec"))
        .and_then(|s| s.properties.as_mut())
        .expect("spec properties");
    spec.insert(
        field.to_string(),
        JSONSchemaProps {
            type_: Some("string".into()),
            ..Default::default()
        },
    );
    std::fs::write(
        chart.join("templates/crds.yaml"),
        lucid_operator::api::helm_template_of(crds).expect("template"),
    )
    .expect("write chart");
    chart.display().to_string()
}

const PROBE: &str = r#"
apiVersion: lucid.io/v1alpha1
kind: LucidService
metadata: {name: probe}
spec:
  image: {repository: lucid/probe, tag: "1"}
  phase: lab
  ports: [{name: http, port: 8080}]
  envFrom: [{secretRef: {name: probe-secret}}]
  upgradeNote: kept
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_chart_installs_upgrades_its_crds_and_runs_namespaced() {
    init_tracing();
    let admin = control_plane().client().await;

    // 1. The chart as a user installs it; the operator under its ServiceAccount.
    helm(&[
        "install",
        "lucid-operator",
        &format!("{ROOT}/charts/lucid-operator"),
        "-n",
        "lucid-system",
        "--create-namespace",
    ]);
    crds_established(&admin).await;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd = crds
        .get("lucidservices.lucid.io")
        .await
        .expect("CRD installed");
    assert_eq!(
        crd.annotations()
            .get("helm.sh/resource-policy")
            .map(String::as_str),
        Some("keep"),
        "CRDs survive helm uninstall"
    );
    let operator = Operator::start("lucid-system", "lucid-operator", "").await;
    create_namespace(&admin, "lucid").await;
    apply_documents(
        &admin,
        "lucid",
        &std::fs::read_to_string(format!("{ROOT}/crds/examples/environment.yaml"))
            .expect("environment"),
    )
    .await;
    let kubelet = Kubelet::start(admin.clone(), "lucid", Duration::from_millis(100));
    helm(&[
        "install",
        "lucid",
        &format!("{ROOT}/charts/lucid-stack"),
        "-n",
        "lucid",
    ]);
    all_ready(&admin, "lucid", 27).await;
    kubelet.stop();
    operator.stop().await;

    // 2. A CRD field added by an upgrade is served, not pruned.
    create_namespace(&admin, "lab").await;
    let lab: Api<LucidService> = Api::namespaced(admin.clone(), "lab");
    let apply = PatchParams::apply("e2e-test").force();
    let raw: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        "lab",
        &ApiResource::erase::<LucidService>(&()),
    );
    let probe: DynamicObject = serde_saphyr::from_str(PROBE).expect("probe");
    // A create, not an apply: 1.20's server-side apply rejects an undeclared field outright.
    let stored = raw
        .create(&PostParams::default(), &probe)
        .await
        .expect("create probe");
    assert_eq!(
        stored.data["spec"]["upgradeNote"].as_str(),
        None,
        "before the upgrade the API server prunes the field"
    );
    let dir = tempdir();
    let upgraded = chart_with_new_crd_field(&dir, "upgradeNote");
    helm(&["upgrade", "lucid-operator", &upgraded, "-n", "lucid-system"]);
    // The API server takes up a CRD's new schema when its own watch sees the update: a
    // patch just after `helm upgrade` may still meet the old one.
    let note = serde_json::json!({"spec": {"upgradeNote": "kept"}});
    let (raw, note) = (&raw, &note);
    eventually(
        "after `helm upgrade` the new field is accepted and served",
        || async move {
            let served = raw
                .patch("probe", &PatchParams::default(), &Patch::Merge(note))
                .await
                .expect("patch probe after the upgrade");
            (served.data["spec"]["upgradeNote"].as_str() == Some("kept")).then_some(())
        },
    )
    .await;
    // Back to the real chart: the field goes, the CRDs stay Helm's.
    helm(&[
        "upgrade",
        "lucid-operator",
        &format!("{ROOT}/charts/lucid-operator"),
        "-n",
        "lucid-system",
    ]);

    // 3. Namespaced: the release's ServiceAccount may read only the namespaces it watches.
    create_namespace(&admin, "elsewhere").await;
    for namespace in ["lab", "elsewhere"] {
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "probe-secret"},
            "stringData": {"TOKEN": "not-for-everyone"},
        }))
        .expect("secret");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }
    helm(&[
        "install",
        "scoped",
        &format!("{ROOT}/charts/lucid-operator"),
        "-n",
        "scoped-system",
        "--create-namespace",
        "--set",
        "crds.enabled=false",
        "--set",
        "watchNamespaces={lab}",
    ]);
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    assert!(
        roles
            .get_opt("scoped-lucid-operator")
            .await
            .expect("get")
            .is_none(),
        "the namespaced mode renders nothing cluster-wide"
    );
    let lab_roles: Api<Role> = Api::namespaced(admin.clone(), "lab");
    lab_roles
        .get("scoped-lucid-operator")
        .await
        .expect("a Role in the watched namespace");

    let as_scoped = control_plane()
        .client_as_service_account("scoped-system", "scoped-lucid-operator")
        .await;
    // The authorizer reads RBAC from its own watch: the Role just bound works soon, not at
    // once. Then the Secret outside is refused with the same, working, binding in place.
    let inside: Api<Secret> = Api::namespaced(as_scoped.clone(), "lab");
    let inside = &inside;
    eventually("reads a Secret in a watched namespace", || async move {
        inside.get("probe-secret").await.ok()
    })
    .await;
    let outside: Api<Secret> = Api::namespaced(as_scoped.clone(), "elsewhere");
    match outside.get("probe-secret").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("read a Secret outside its namespaces: {other:?}"),
    }

    let operator = Operator::start("scoped-system", "scoped-lucid-operator", "lab").await;
    let kubelet = Kubelet::start(admin.clone(), "lab", Duration::from_millis(100));
    let phase: serde_json::Value = serde_json::json!({
        "apiVersion": "lucid.io/v1alpha1", "kind": "LucidPhase",
        "metadata": {"name": "lab"}, "spec": {},
    });
    Api::<LucidPhase>::namespaced(admin.clone(), "lab")
        .patch("lab", &apply, &Patch::Apply(&phase))
        .await
        .expect("phase");
    wait_for(&lab, "probe", "Ready under the namespaced RBAC", is_ready).await;
    kubelet.stop();
    operator.stop().await;
}

fn tempdir() -> std::path::PathBuf {
    let dir = control_plane().dir.join("charts");
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
