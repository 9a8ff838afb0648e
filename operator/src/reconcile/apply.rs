//! Apply: server-side apply of the rendered children with one field manager, then removal of
//! children the spec no longer asks for.

use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::ChildStores;
use super::drift::{Drift, SpecPart, drift};
use crate::error::Error;
use crate::leader::Leadership;
use crate::render::disruption_budget::{DisruptionBudget, PodDisruptionBudgetV1beta1};
use crate::render::{Children, applied_hash, labels};

/// The one field manager the operator writes with.
pub const FIELD_MANAGER: &str = "lucid-operator";

pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies one object; returns what the API server stored.
pub async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut object = object.clone();
    // SSA bodies must name their type.
    object.meta_mut().managed_fields = None;
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
    });
    let mut body = body;
    merge(
        &mut body,
        serde_json::to_value(&object).map_err(kube::Error::SerdeError)?,
    );
    api.patch(&object.name_any(), &apply_params(), &Patch::Apply(body))
        .await
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

/// An apply the API server refused or failed, with the child it was for.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {name}: {}", api_message(source))]
pub struct ChildError {
    pub kind: String,
    pub name: String,
    pub source: kube::Error,
}

impl ChildError {
    fn of<K: Resource<DynamicType = ()>>(child: &K, source: kube::Error) -> Self {
        ChildError {
            kind: K::kind(&()).into_owned(),
            name: child.name_any(),
            source,
        }
    }
}

/// The API server's own words when it answered, else the client's error.
pub fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

async fn apply_child<K>(client: &Client, namespace: &str, object: &K) -> Result<K, ChildError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    apply(client, namespace, object)
        .await
        .map_err(|source| ChildError::of(object, source))
}

/// Why applying the children stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyFailure {
    #[error(transparent)]
    Child(#[from] ChildError),
    /// The fence closed between two writes: the new leader takes it from here.
    #[error("not the leader")]
    NotLeader,
}

fn fenced(fence: &Leadership) -> Result<(), ApplyFailure> {
    if fence.is_leader() {
        Ok(())
    } else {
        Err(ApplyFailure::NotLeader)
    }
}

/// How the operator writes one kind of child other than the Deployment (which goes last,
/// alone: its pods need the others). Adding a kind of child is one impl of this and one line
/// in [`each_kind`].
pub trait ChildKind:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + k8s_openapi::Resource
    + Serialize
    + DeserializeOwned
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Which part of its spec someone else may not write (`drift::trim_child` marks such an
    /// edit in the cache, and `repair_patch` takes it out). None: edits are not looked for.
    const WATCHED: Option<SpecPart>;
    /// Whether one the spec no longer asks for is deleted (found in the cache, owned by the
    /// service and labelled with its name).
    const SWEEP_ORPHANS: bool;

    /// Its metadata cache (see `drift::trim_child`).
    fn cache(stores: &ChildStores) -> &Store<PartialObjectMeta<Self>>;

    /// A strategic merge patch that takes out what someone else wrote in the `WATCHED` part
    /// (an apply alone re-asserts ours but leaves theirs). None: the apply suffices.
    fn repair_patch<'f>(
        &'f self,
        _client: &'f Client,
        _namespace: &'f str,
    ) -> BoxFuture<'f, Result<Option<serde_json::Value>, kube::Error>> {
        Box::pin(futures::future::ready(Ok(None)))
    }
}

impl ChildKind for PersistentVolumeClaim {
    /// Deletion only: a claim's spec is immutable but for a size the API server checks,
    /// and binding writes it.
    const WATCHED: Option<SpecPart> = None;
    /// Only claims whose retention is Delete are owned (a retained claim has no owner
    /// reference), so only those are swept.
    const SWEEP_ORPHANS: bool = true;

    fn cache(stores: &ChildStores) -> &Store<PartialObjectMeta<Self>> {
        &stores.claims
    }
}

impl ChildKind for Service {
    const WATCHED: Option<SpecPart> = Some(SpecPart::ServicePortsAndSelector);
    /// Once the spec drops every port, the Service goes.
    const SWEEP_ORPHANS: bool = true;

    fn cache(stores: &ChildStores) -> &Store<PartialObjectMeta<Self>> {
        &stores.services
    }

    fn repair_patch<'f>(
        &'f self,
        client: &'f Client,
        namespace: &'f str,
    ) -> BoxFuture<'f, Result<Option<serde_json::Value>, kube::Error>> {
        Box::pin(async move {
            // The node ports the API server allocated are kept: a port list without them
            // would get new ones (on 1.20 before 1.20.11, every time).
            let live = Api::<Service>::namespaced(client.clone(), namespace)
                .get_opt(&self.name_any())
                .await?;
            Ok(Some(service_repair_patch(self, live.as_ref())))
        })
    }
}

impl ChildKind for NetworkPolicy {
    const WATCHED: Option<SpecPart> = Some(SpecPart::WholeSpec);
    /// Always rendered, under the service's own name: there is never one to sweep.
    const SWEEP_ORPHANS: bool = false;

    fn cache(stores: &ChildStores) -> &Store<PartialObjectMeta<Self>> {
        &stores.network_policies
    }

    fn repair_patch<'f>(
        &'f self,
        _client: &'f Client,
        _namespace: &'f str,
    ) -> BoxFuture<'f, Result<Option<serde_json::Value>, kube::Error>> {
        Box::pin(futures::future::ready(Ok(Some(policy_repair_patch(self)))))
    }
}

/// A budget in either version: what is written is the rendering. Someone loosening it (a
/// `maxUnavailable` raised to let a drain through) is an edit put back.
impl ChildKind for PodDisruptionBudget {
    const WATCHED: Option<SpecPart> = Some(SpecPart::WholeSpec);
    /// Once the service is down to one replica, its budget goes.
    const SWEEP_ORPHANS: bool = true;

    fn cache(stores: &ChildStores) -> &Store<PartialObjectMeta<Self>> {
        &stores.budgets
    }

    fn repair_patch<'f>(
        &'f self,
        _client: &'f Client,
        _namespace: &'f str,
    ) -> BoxFuture<'f, Result<Option<serde_json::Value>, kube::Error>> {
        Box::pin(futures::future::ready(Ok(Some(spec_replace_patch(
            &self.spec,
        )))))
    }
}

impl ChildKind for PodDisruptionBudgetV1beta1 {
    const WATCHED: Option<SpecPart> = PodDisruptionBudget::WATCHED;
    const SWEEP_ORPHANS: bool = PodDisruptionBudget::SWEEP_ORPHANS;

    fn cache(stores: &ChildStores) -> &Store<PartialObjectMeta<Self>> {
        &stores.budgets_v1beta1
    }

    fn repair_patch<'f>(
        &'f self,
        _client: &'f Client,
        _namespace: &'f str,
    ) -> BoxFuture<'f, Result<Option<serde_json::Value>, kube::Error>> {
        Box::pin(futures::future::ready(Ok(Some(spec_replace_patch(
            &self.0.spec,
        )))))
    }
}

/// Something done once per kind of child, with the rendered children of that kind.
trait EachKind<'a> {
    fn kind<K: ChildKind>(&mut self, rendered: &'a [K]);
}

/// Every kind of child but the Deployment, each with its rendered children, in the order
/// they are written. `Children` is taken apart here so that a new kind cannot be left out:
/// a field not named here does not compile.
fn each_kind<'a>(children: &'a Children, each: &mut impl EachKind<'a>) {
    let Children {
        deployment: _,
        service,
        claims,
        network_policy,
        disruption_budget,
    } = children;
    each.kind(claims.as_slice());
    each.kind(service.as_slice());
    each.kind(std::slice::from_ref(network_policy));
    // Both versions, the one not served always empty: the sweep still looks in its cache
    // (empty too, as it is never watched).
    let (v1, v1beta1) = match disruption_budget {
        Some(DisruptionBudget::V1(budget)) => (std::slice::from_ref(budget), &[][..]),
        Some(DisruptionBudget::V1beta1(budget)) => (&[][..], std::slice::from_ref(budget)),
        None => (&[][..], &[][..]),
    };
    each.kind(v1);
    each.kind(v1beta1);
}

/// One planned child of any kind (see [`ChildKind`]), as the plan and the apply use it.
trait AnyChild: std::fmt::Debug + Send + Sync {
    fn kind(&self) -> &'static str;
    fn name(&self) -> String;
    /// Repairs (when `why` says someone else wrote it) and applies it, asking the fence
    /// before each write.
    fn write<'f>(
        &'f self,
        client: &'f Client,
        fence: &'f Leadership,
        namespace: &'f str,
        why: &'f Drift,
    ) -> BoxFuture<'f, Result<(), ApplyFailure>>;
}

impl<K: ChildKind> AnyChild for K {
    fn kind(&self) -> &'static str {
        <K as k8s_openapi::Resource>::KIND
    }

    fn name(&self) -> String {
        self.name_any()
    }

    fn write<'f>(
        &'f self,
        client: &'f Client,
        fence: &'f Leadership,
        namespace: &'f str,
        why: &'f Drift,
    ) -> BoxFuture<'f, Result<(), ApplyFailure>> {
        Box::pin(async move {
            if why.needs_repair()
                && let Some(patch) = self
                    .repair_patch(client, namespace)
                    .await
                    .map_err(|source| ChildError::of(self, source))?
            {
                fenced(fence)?;
                repair(client, namespace, self, patch).await?;
            }
            fenced(fence)?;
            apply_child(client, namespace, self).await?;
            Ok(())
        })
    }
}

/// A child the plan writes, and why.
#[derive(Clone, Debug)]
pub struct PlannedChild<'a> {
    child: &'a dyn AnyChild,
    pub why: Drift,
}

/// The children one reconcile writes, each with why: the plan, decided from the live
/// objects in the caches alone (see `drift`). The Deployment is apart: it goes last.
#[derive(Debug, Default)]
pub struct Planned<'a> {
    pub others: Vec<PlannedChild<'a>>,
    pub deployment: Option<(&'a Deployment, Drift)>,
}

impl<'a> Planned<'a> {
    pub fn is_empty(&self) -> bool {
        self.others.is_empty() && self.deployment.is_none()
    }

    /// Whether the rendering itself changed (the Deployment's hash covers every child): a
    /// change to roll out, gated on dependencies. Anything else is a repair.
    pub fn changed(&self) -> bool {
        matches!(self.deployment, Some((_, Drift::Changed | Drift::Missing)))
    }

    /// The children that are not there at all, but the Deployment: what is put back even
    /// while a change waits for its turn (a missing NetworkPolicy or Service, rendered from
    /// the new spec, is better than none).
    pub fn missing_only(&self) -> Planned<'a> {
        Planned {
            others: self
                .others
                .iter()
                .filter(|p| p.why == Drift::Missing)
                .cloned()
                .collect(),
            deployment: None,
        }
    }

    /// "Service/x (missing), NetworkPolicy/x (edited by kubectl-edit)", for events and logs.
    pub fn describe(&self) -> String {
        let others = self
            .others
            .iter()
            .map(|p| (p.child.kind(), p.child.name(), &p.why));
        let deployment = self
            .deployment
            .iter()
            .map(|(d, why)| ("Deployment", d.name_any(), why));
        others
            .chain(deployment)
            .map(|(kind, name, why)| format!("{kind}/{name} ({why})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Pure: which children differ from what the caches hold.
pub fn plan<'a>(
    children: &'a Children,
    live: &ChildStores,
    existing: Option<&Deployment>,
) -> Planned<'a> {
    struct Plan<'a, 's> {
        live: &'s ChildStores,
        others: Vec<PlannedChild<'a>>,
    }
    impl<'a> EachKind<'a> for Plan<'a, '_> {
        fn kind<K: ChildKind>(&mut self, rendered: &'a [K]) {
            for child in rendered {
                if let Some(why) = cached_drift(K::cache(self.live), child) {
                    self.others.push(PlannedChild { child, why });
                }
            }
        }
    }
    let mut plan = Plan {
        live,
        others: Vec::new(),
    };
    each_kind(children, &mut plan);
    let deployment = &children.deployment;
    Planned {
        others: plan.others,
        deployment: drift(applied_hash(deployment), existing.map(|d| &d.metadata))
            .map(|d| (deployment, d)),
    }
}

/// The drift of `child` against its namesake in a metadata cache.
fn cached_drift<K, C>(store: &Store<PartialObjectMeta<K>>, child: &C) -> Option<Drift>
where
    K: Resource<DynamicType = ()> + Clone,
    PartialObjectMeta<K>: Resource<DynamicType = ()>,
    C: Resource,
{
    let key = ObjectRef::new(&child.name_any()).within(&child.namespace().unwrap_or_default());
    let live = store.get(&key);
    drift(applied_hash(child), live.as_ref().map(|o| &o.metadata))
}

/// Applies what `plan` found, asking the fence before each write: the other children
/// together (none needs another), then the Deployment, so its pods find them. A child
/// someone edited is first put back as rendered (see [`ChildKind::repair_patch`]). Returns
/// the stored Deployment when it was applied.
pub async fn apply_planned(
    client: &Client,
    fence: &Leadership,
    namespace: &str,
    planned: &Planned<'_>,
    existing: Option<&Deployment>,
) -> Result<Option<Deployment>, ApplyFailure> {
    futures::future::try_join_all(
        planned
            .others
            .iter()
            .map(|p| p.child.write(client, fence, namespace, &p.why)),
    )
    .await?;
    let Some((deployment, _)) = &planned.deployment else {
        return Ok(None);
    };
    if let Some(patch) = existing.and_then(|e| dropped_probes_patch(e, deployment)) {
        fenced(fence)?;
        repair(client, namespace, *deployment, patch).await?;
    }
    fenced(fence)?;
    Ok(Some(apply_child(client, namespace, *deployment).await?))
}

/// A strategic merge patch written as the operator's own manager: a patch under any other
/// name would itself look like someone else editing the spec.
async fn repair<K>(
    client: &Client,
    namespace: &str,
    child: &K,
    patch: serde_json::Value,
) -> Result<(), ChildError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(&child.name_any(), &params, &Patch::Strategic(patch))
        .await
        .map(drop)
        .map_err(|source| ChildError::of(child, source))
}

/// Ports and selector replaced wholesale: an apply would put ours back but keep a port or
/// selector label someone added. (The rest of the spec holds allocated fields, clusterIP
/// among them, that a wholesale replace would drop.)
fn service_repair_patch(service: &Service, live: Option<&Service>) -> serde_json::Value {
    let spec = service.spec.clone().unwrap_or_default();
    let live_ports = live
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut ports = vec![serde_json::json!({"$patch": "replace"})];
    ports.extend(
        spec.ports
            .unwrap_or_default()
            .into_iter()
            .map(|mut port| {
                if port.node_port.is_none() {
                    port.node_port = live_ports
                        .iter()
                        .find(|l| l.port == port.port && l.protocol == port.protocol)
                        .and_then(|l| l.node_port);
                }
                port
            })
            .filter_map(|p| serde_json::to_value(p).ok()),
    );
    let mut selector = serde_json::Map::new();
    selector.insert("$patch".into(), "replace".into());
    for (k, v) in spec.selector.unwrap_or_default() {
        selector.insert(k, v.into());
    }
    serde_json::json!({"spec": {"ports": ports, "selector": selector}})
}

/// A NetworkPolicy's spec holds nothing the API server allocates: replaced wholesale.
fn policy_repair_patch(policy: &NetworkPolicy) -> serde_json::Value {
    spec_replace_patch(&policy.spec)
}

/// A spec that holds nothing the API server allocates, replaced wholesale.
fn spec_replace_patch(spec: &impl Serialize) -> serde_json::Value {
    let mut spec = serde_json::to_value(spec).unwrap_or_default();
    if let Some(spec) = spec.as_object_mut() {
        spec.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({ "spec": spec })
}

/// Kubernetes 1.20's server-side apply leaves an emptied probe behind when the applied object
/// drops it, and an empty probe is invalid. When the new Deployment has no probes but the
/// stored one does, they are removed first with a strategic merge patch.
fn dropped_probes_patch(existing: &Deployment, desired: &Deployment) -> Option<serde_json::Value> {
    let containers = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers.clone())
            .unwrap_or_default()
    };
    let desired = containers(desired);
    let mut patches = Vec::new();
    for old in containers(existing) {
        let Some(new) = desired.iter().find(|c| c.name == old.name) else {
            continue;
        };
        let mut fields = serde_json::Map::new();
        for (field, had, has) in [
            (
                "livenessProbe",
                old.liveness_probe.is_some(),
                new.liveness_probe.is_some(),
            ),
            (
                "readinessProbe",
                old.readiness_probe.is_some(),
                new.readiness_probe.is_some(),
            ),
            (
                "startupProbe",
                old.startup_probe.is_some(),
                new.startup_probe.is_some(),
            ),
        ] {
            if had && !has {
                fields.insert(field.into(), serde_json::Value::Null);
            }
        }
        if !fields.is_empty() {
            fields.insert("name".into(), old.name.clone().into());
            patches.push(serde_json::Value::Object(fields));
        }
    }
    (!patches.is_empty())
        .then(|| serde_json::json!({"spec": {"template": {"spec": {"containers": patches}}}}))
}

/// Deletes children of `service_name` that are not in `children`, of every kind that sweeps
/// its orphans ([`ChildKind::SWEEP_ORPHANS`]). Found in the caches, not listed.
pub async fn delete_orphans(
    client: &Client,
    fence: &Leadership,
    live: &ChildStores,
    namespace: &str,
    service_name: &str,
    owner_uid: &str,
    children: &Children,
) -> Result<Vec<String>, Error> {
    struct Sweep<'a> {
        client: &'a Client,
        fence: &'a Leadership,
        live: &'a ChildStores,
        namespace: &'a str,
        service_name: &'a str,
        owner_uid: &'a str,
        sweeps: Vec<BoxFuture<'a, Result<Vec<String>, Error>>>,
    }
    impl<'a> EachKind<'a> for Sweep<'a> {
        fn kind<K: ChildKind>(&mut self, rendered: &'a [K]) {
            if !K::SWEEP_ORPHANS {
                return;
            }
            let wanted: Vec<String> = rendered.iter().map(|c| c.name_any()).collect();
            self.sweeps.push(Box::pin(delete_unwanted(
                self.client,
                self.fence,
                K::cache(self.live),
                self.namespace,
                self.service_name,
                self.owner_uid,
                move |name| wanted.iter().any(|w| w == name),
            )));
        }
    }
    let mut sweep = Sweep {
        client,
        fence,
        live,
        namespace,
        service_name,
        owner_uid,
        sweeps: Vec::new(),
    };
    each_kind(children, &mut sweep);
    let mut deleted = Vec::new();
    // One kind after another, as the fence is asked before each delete.
    for one in sweep.sweeps {
        deleted.extend(one.await?);
    }
    Ok(deleted)
}

async fn delete_unwanted<K>(
    client: &Client,
    fence: &Leadership,
    store: &Store<PartialObjectMeta<K>>,
    namespace: &str,
    service_name: &str,
    owner_uid: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<String>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut deleted = Vec::new();
    let unwanted: Vec<String> = store
        .state()
        .iter()
        .filter(|o| o.metadata.namespace.as_deref() == Some(namespace))
        .filter(|o| {
            o.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::SERVICE))
                .is_some_and(|s| s == service_name)
        })
        .filter(|o| {
            o.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == owner_uid && r.controller == Some(true))
        })
        .map(|o| o.metadata.name.clone().unwrap_or_default())
        .filter(|name| !wanted(name))
        .collect();
    for name in unwanted {
        fence.ensure()?;
        match api.delete(&name, &DeleteParams::background()).await {
            // Gone already: what was wanted.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            other => {
                other?;
            }
        }
        deleted.push(format!("{}/{name}", K::kind(&())));
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{
        Container, PersistentVolumeClaim, Probe, Service, ServicePort, ServiceSpec, TCPSocketAction,
    };
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use kube::core::{ObjectMeta, PartialObjectMeta, PartialObjectMetaExt};
    use kube::runtime::reflector::{self, Store};
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;
    use crate::reconcile::drift::EDITED_BY;
    use crate::render::fixtures::{redis, service};
    use crate::render::{APPLIED_HASH_ANNOTATION, RenderInputs, render};

    fn rendered(ls: &crate::api::LucidService) -> Children {
        render(
            ls,
            &RenderInputs {
                config_hash: "config".into(),
                ..Default::default()
            },
        )
        .expect("renders")
    }

    /// A service with a claim, a port and (as every service) a NetworkPolicy.
    fn stateful() -> Children {
        rendered(&service(
            "db",
            "image: {repository: x}\nphase: foundation\nports: [{name: db, port: 5432}]\nstorage: {data: {size: 1Gi}}",
        ))
    }

    /// What a metadata cache holds of `child`: its name, namespace and applied hash, and
    /// `extra` annotations (what `drift::trim_child` keeps).
    fn cached<K, C>(child: &C, extra: &[(&str, &str)]) -> PartialObjectMeta<K>
    where
        K: kube::Resource<DynamicType = ()>,
        C: kube::Resource,
    {
        let mut annotations = std::collections::BTreeMap::new();
        if let Some(hash) = applied_hash(child) {
            annotations.insert(APPLIED_HASH_ANNOTATION.to_string(), hash.to_string());
        }
        for (k, v) in extra {
            annotations.insert(k.to_string(), v.to_string());
        }
        ObjectMeta {
            name: child.meta().name.clone(),
            namespace: child.meta().namespace.clone(),
            annotations: Some(annotations),
            ..Default::default()
        }
        .into_request_partial()
    }

    fn store_of<K>(objects: Vec<PartialObjectMeta<K>>) -> Store<PartialObjectMeta<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone,
        PartialObjectMeta<K>: kube::Resource<DynamicType = ()> + Clone,
    {
        let (store, mut writer) = reflector::store();
        for object in objects {
            writer.apply_watcher_event(&Event::Apply(object));
        }
        store
    }

    /// The caches holding every child of `children` as applied, the service's marked
    /// edited by `edited_by` when given.
    fn live(children: &Children, edited_by: Option<&str>) -> ChildStores {
        let service_extra: Vec<(&str, &str)> =
            edited_by.map(|m| (EDITED_BY, m)).into_iter().collect();
        ChildStores {
            services: store_of(
                children
                    .service
                    .iter()
                    .map(|s| cached(s, &service_extra))
                    .collect(),
            ),
            network_policies: store_of(vec![cached(&children.network_policy, &[])]),
            claims: store_of(children.claims.iter().map(|c| cached(c, &[])).collect()),
            budgets: store_of(match &children.disruption_budget {
                Some(DisruptionBudget::V1(budget)) => vec![cached(budget, &[])],
                _ => vec![],
            }),
            budgets_v1beta1: store_of(match &children.disruption_budget {
                Some(DisruptionBudget::V1beta1(budget)) => vec![cached(budget, &[])],
                _ => vec![],
            }),
        }
    }

    fn empty() -> ChildStores {
        ChildStores {
            services: store_of(vec![]),
            network_policies: store_of(vec![]),
            claims: store_of(vec![]),
            budgets: store_of(vec![]),
            budgets_v1beta1: store_of(vec![]),
        }
    }

    #[test]
    fn a_first_apply_plans_every_child_as_missing_and_is_a_change() {
        let children = stateful();
        let planned = plan(&children, &empty(), None);
        assert!(planned.changed());
        assert_eq!(
            planned.describe(),
            "PersistentVolumeClaim/db-data (missing), PersistentVolumeClaim/db-logs (missing), \
             Service/db (missing), NetworkPolicy/db (missing), Deployment/db (missing)"
        );
    }

    #[test]
    fn children_as_rendered_plan_nothing() {
        let children = stateful();
        let planned = plan(
            &children,
            &live(&children, None),
            Some(&children.deployment),
        );
        assert!(planned.is_empty(), "{}", planned.describe());
        assert!(!planned.changed());
    }

    #[test]
    fn an_edited_or_deleted_child_is_a_repair_not_a_change() {
        let children = stateful();
        let planned = plan(
            &children,
            &live(&children, Some("kubectl-edit")),
            Some(&children.deployment),
        );
        assert!(!planned.changed(), "a repair is not gated");
        assert_eq!(planned.describe(), "Service/db (edited by kubectl-edit)");
        assert!(planned.others[0].why.needs_repair());

        let mut stores = live(&children, None);
        stores.network_policies = store_of(vec![]);
        let planned = plan(&children, &stores, Some(&children.deployment));
        assert_eq!(planned.describe(), "NetworkPolicy/db (missing)");
    }

    #[test]
    fn a_new_rendering_changes_the_deployment_and_only_missing_children_go_while_waiting() {
        let before = stateful();
        let mut changed = service(
            "db",
            "image: {repository: y}\nphase: foundation\nports: [{name: db, port: 5432}]\nstorage: {data: {size: 1Gi}}",
        );
        changed.metadata.generation = Some(2);
        let after = rendered(&changed);
        let mut stores = live(&before, None);
        stores.services = store_of(vec![]);
        let planned = plan(&after, &stores, Some(&before.deployment));
        assert!(planned.changed());
        let waiting = planned.missing_only();
        assert_eq!(waiting.describe(), "Service/db (missing)");
        assert!(!waiting.changed(), "the Deployment waits for its turn");
    }

    #[test]
    fn a_child_being_deleted_is_left_to_finish() {
        let children = stateful();
        let mut stores = live(&children, None);
        let mut claims: Vec<PartialObjectMeta<PersistentVolumeClaim>> =
            children.claims.iter().map(|c| cached(c, &[])).collect();
        claims[0].metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        stores.claims = store_of(claims);
        assert!(plan(&children, &stores, Some(&children.deployment)).is_empty());
    }

    fn port(port: i32, node_port: Option<i32>) -> ServicePort {
        ServicePort {
            name: Some(format!("p{port}")),
            port,
            node_port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    fn k8s_service(ports: Vec<ServicePort>, selector: &[(&str, &str)]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                ports: Some(ports),
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_service_repair_replaces_ports_and_selector_and_keeps_allocated_node_ports() {
        let desired = k8s_service(vec![port(80, None), port(443, None)], &[("app", "web")]);
        let live = k8s_service(
            vec![port(80, Some(30080)), port(9999, Some(30999))],
            &[("app", "web"), ("extra", "x")],
        );
        let patch = service_repair_patch(&desired, Some(&live));
        assert_eq!(
            patch,
            json!({"spec": {
                "ports": [
                    {"$patch": "replace"},
                    {"name": "p80", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                    {"name": "p443", "port": 443, "protocol": "TCP"},
                ],
                "selector": {"$patch": "replace", "app": "web"},
            }})
        );
        // Gone meanwhile: nothing to keep.
        let patch = service_repair_patch(&desired, None);
        assert_eq!(patch["spec"]["ports"][1].get("nodePort"), None);
    }

    #[test]
    fn a_policy_repair_replaces_the_whole_spec() {
        let policy = NetworkPolicy {
            spec: Some(Default::default()),
            ..Default::default()
        };
        let patch = policy_repair_patch(&policy);
        assert_eq!(patch["spec"]["$patch"], "replace");
    }

    fn with_probes(liveness: bool, readiness: bool) -> Deployment {
        let probe = || Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(80),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut deployment = rendered(&redis()).deployment;
        let spec = deployment.spec.as_mut().expect("spec");
        let pod = spec.template.spec.as_mut().expect("pod spec");
        pod.containers = vec![Container {
            name: "main".into(),
            liveness_probe: liveness.then(probe),
            readiness_probe: readiness.then(probe),
            ..Default::default()
        }];
        deployment
    }

    #[test]
    fn probes_the_new_deployment_drops_are_removed_first_and_none_otherwise() {
        let patch = dropped_probes_patch(&with_probes(true, true), &with_probes(false, true));
        assert_eq!(
            patch,
            Some(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "livenessProbe": null},
            ]}}}}))
        );
        assert_eq!(
            dropped_probes_patch(&with_probes(false, true), &with_probes(true, true)),
            None,
            "an added probe is the apply's to write"
        );
        assert_eq!(
            dropped_probes_patch(&with_probes(true, true), &with_probes(true, true)),
            None
        );
    }
}
