//! End-to-end harness: a real etcd, kube-apiserver and kube-controller-manager (garbage
//! collector and namespace controllers only) on loopback, the operator in-process scoped to
//! one namespace per test, and a stand-in kubelet that marks Deployments available through
//! the status subresource.
//!
//! The control plane starts once per test binary and is killed when the binary exits
//! (PR_SET_PDEATHSIG on a thread that lives as long as the process).

pub mod control_plane;
pub mod kubelet;
pub mod node;
pub mod proxy;
pub mod replica;
pub mod tools;

use std::sync::{Arc, Once};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Resource};
use lucid_operator::api::{LucidPhase, LucidService};
use lucid_operator::metrics::Metrics;
use lucid_operator::reconcile::{self, Scope, Shared};
use serde::de::DeserializeOwned;

pub use control_plane::{Component, ControlPlane, control_plane};
pub use kubelet::Kubelet;

/// How long any one wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "warn,kube_client=off,lucid_operator=info".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// One test's world: its own namespace, an operator watching only it, and a kubelet.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    pub kubelet: Kubelet,
    pub metrics: Arc<Metrics>,
    operator: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestEnv {
    /// Starts an operator and a kubelet (marking Deployments available after `delay`) in a
    /// fresh namespace named after the test.
    pub async fn start(test: &str, delay: Duration) -> TestEnv {
        init_tracing();
        let client = control_plane().client().await;
        install_crds(&client).await;
        let namespace = format!("{test}-{}", std::process::id() % 100_000);
        let ns: Api<Namespace> = Api::all(client.clone());
        let body: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
                .expect("namespace");
        ns.create(&PostParams::default(), &body)
            .await
            .expect("create namespace");

        let shared = Shared::standalone();
        let metrics = shared.metrics.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let operator = tokio::spawn({
            let (client, scope) = (client.clone(), Scope::Namespace(namespace.clone()));
            async move {
                if let Err(e) = reconcile::run(client, shared, scope, stopped.map(|_| ())).await {
                    panic!("operator failed: {e}");
                }
            }
        });
        let kubelet = Kubelet::start(client.clone(), &namespace, delay);
        TestEnv {
            client,
            namespace,
            kubelet,
            metrics,
            operator,
            stop: Some(stop),
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Applies a YAML document the way `kubectl apply --server-side` would.
    pub async fn apply_yaml<K>(&self, yaml: &str) -> Result<K, kube::Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        apply_yaml(&self.client, &self.namespace, yaml).await
    }

    /// Applies every document of a YAML stream (LucidServices, LucidPhases, ConfigMaps,
    /// Secrets) into this test's namespace, as `kubectl apply --server-side -f` would.
    pub async fn apply_documents(&self, text: &str) {
        apply_documents(&self.client, &self.namespace, text).await
    }

    pub async fn wait_service<F>(&self, name: &str, what: &str, cond: F) -> LucidService
    where
        F: Fn(&LucidService) -> bool,
    {
        wait_for(&self.api::<LucidService>(), name, what, cond).await
    }

    pub async fn wait_phase<F>(&self, name: &str, what: &str, cond: F) -> LucidPhase
    where
        F: Fn(&LucidPhase) -> bool,
    {
        wait_for(&self.api::<LucidPhase>(), name, what, cond).await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.operator).await;
        self.kubelet.stop();
        let ns: Api<Namespace> = Api::all(self.client.clone());
        let _ = ns.delete(&self.namespace, &Default::default()).await;
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.operator.abort();
    }
}

/// Applies a YAML document into `namespace` the way `kubectl apply --server-side` would.
pub async fn apply_yaml<K>(client: &Client, namespace: &str, yaml: &str) -> Result<K, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("test YAML parses");
    let name = value["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_string();
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(value),
        )
        .await
}

/// Applies every document of a YAML stream (LucidServices, LucidPhases, ConfigMaps,
/// Secrets) into `namespace`, as `kubectl apply --server-side -f` would.
pub async fn apply_documents(client: &Client, namespace: &str, text: &str) {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    for doc in serde_saphyr::from_multiple::<serde_json::Value>(text)
        .expect("YAML")
        .into_iter()
    {
        let mut value = doc;
        if value.is_null() {
            continue;
        }
        if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("namespace");
        }
        let yaml = serde_saphyr::to_string(&value).expect("yaml");
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let applied = match kind.as_str() {
            "LucidService" => apply_yaml::<LucidService>(client, namespace, &yaml)
                .await
                .map(drop),
            "LucidPhase" => apply_yaml::<LucidPhase>(client, namespace, &yaml)
                .await
                .map(drop),
            "ConfigMap" => apply_yaml::<ConfigMap>(client, namespace, &yaml)
                .await
                .map(drop),
            "Secret" => apply_yaml::<Secret>(client, namespace, &yaml)
                .await
                .map(drop),
            other => panic!("unexpected kind {other:?}"),
        };
        applied.unwrap_or_else(|e| panic!("apply {kind}: {e}"));
    }
}

/// Creates a namespace (an existing one is fine).
pub async fn create_namespace(client: &Client, name: &str) {
    let ns: Api<Namespace> = Api::all(client.clone());
    let body =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    match ns.create(&PostParams::default(), &body).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

/// Waits until `cond` holds for the object, failing the test with `what` after [`WAIT`].
pub async fn wait_for<K, F>(api: &Api<K>, name: &str, what: &str, cond: F) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    F: Fn(&K) -> bool,
{
    wait_for_within(api, name, what, WAIT, cond).await
}

/// [`wait_for`] with its own limit (real pods start slower than the stand-in's).
pub async fn wait_for_within<K, F>(
    api: &Api<K>,
    name: &str,
    what: &str,
    limit: Duration,
    cond: F,
) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    F: Fn(&K) -> bool,
{
    let waited = tokio::time::timeout(
        limit,
        await_condition(api.clone(), name, |o: Option<&K>| o.is_some_and(&cond)),
    )
    .await;
    match waited {
        Ok(Ok(Some(object))) => object,
        other => {
            let now = api.get_opt(name).await;
            panic!(
                "timed out waiting for {name}: {what}\nwait result: {other:?}\nobject now: {now:#?}"
            )
        }
    }
}

/// Installs (or updates) the operator's CRDs from the Rust types and waits until the API
/// server serves them.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in lucid_operator::api::crds() {
        let name = crd.metadata.name.clone().expect("crd name");
        crds.patch(
            &name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply CRD");
    }
    crds_established(client).await;
}

/// Waits until both lucid.io CRDs are Established and in discovery, however they were installed
/// (`helm install` returns before the API server serves a CRD it just created).
pub async fn crds_established(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in lucid_operator::api::crds() {
        let name = crd.metadata.name.clone().expect("crd name");
        tokio::time::timeout(
            WAIT,
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in time")
        .expect("watch CRD");
    }
    // Discovery (what kubectl, helm and the operator's start-up check read) is updated a
    // moment after Established, by another of the API server's controllers.
    eventually("lucid.io/v1alpha1 in discovery", || async {
        let resources = client
            .list_api_group_resources("lucid.io/v1alpha1")
            .await
            .ok()?;
        let served = |name: &str| resources.resources.iter().any(|r| r.name == name);
        (served("lucidservices") && served("lucidphases")).then_some(())
    })
    .await;
}

/// Polls `attempt` every 200 ms until it returns `Some`, for at most [`WAIT`]; for state
/// the API server takes a moment to act on (a CRD's new schema, RBAC just bound).
pub async fn eventually<T, F, Fut>(what: &str, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(WAIT, what, attempt).await
}

/// [`eventually`] with its own limit (real pods start slower than the stand-in's).
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The condition of `type_`, as (status, reason, message).
pub fn condition(
    ls_conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    ls_conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn is_ready(ls: &LucidService) -> bool {
    lucid_operator::graph::service_ready(ls)
}
