//! Apply: server-side apply of the rendered children with one field manager, then removal of
//! children the spec no longer asks for.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::ChildStores;
use super::drift::{Drift, drift};
use crate::error::Error;
use crate::leader::Leadership;
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

/// The children one reconcile writes, each with why: the plan, decided from the live
/// objects in the caches alone (see `drift`).
#[derive(Debug, Default)]
pub struct Planned<'a> {
    pub claims: Vec<(&'a PersistentVolumeClaim, Drift)>,
    pub service: Option<(&'a Service, Drift)>,
    pub network_policy: Option<(&'a NetworkPolicy, Drift)>,
    pub deployment: Option<(&'a Deployment, Drift)>,
}

impl<'a> Planned<'a> {
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
            && self.service.is_none()
            && self.network_policy.is_none()
            && self.deployment.is_none()
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
        let missing = |why: &Drift| *why == Drift::Missing;
        Planned {
            claims: self
                .claims
                .iter()
                .filter(|(_, why)| missing(why))
                .cloned()
                .collect(),
            service: self.service.clone().filter(|(_, why)| missing(why)),
            network_policy: self.network_policy.clone().filter(|(_, why)| missing(why)),
            deployment: None,
        }
    }

    /// "Service/x (missing), NetworkPolicy/x (edited by kubectl-edit)", for events and logs.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut note = |kind: &str, name: String, why: &Drift| {
            parts.push(format!("{kind}/{name} ({why})"));
        };
        for (claim, why) in &self.claims {
            note("PersistentVolumeClaim", claim.name_any(), why);
        }
        if let Some((service, why)) = &self.service {
            note("Service", service.name_any(), why);
        }
        if let Some((policy, why)) = &self.network_policy {
            note("NetworkPolicy", policy.name_any(), why);
        }
        if let Some((deployment, why)) = &self.deployment {
            note("Deployment", deployment.name_any(), why);
        }
        parts.join(", ")
    }
}

/// Pure: which children differ from what the caches hold. `Children` is taken apart here so
/// that a new kind of child cannot be left out of the plan.
pub fn plan<'a>(
    children: &'a Children,
    live: &ChildStores,
    existing: Option<&Deployment>,
) -> Planned<'a> {
    let Children {
        deployment,
        service,
        claims,
        network_policy,
    } = children;
    Planned {
        claims: claims
            .iter()
            .filter_map(|c| Some((c, cached_drift(&live.claims, c)?)))
            .collect(),
        service: service
            .as_ref()
            .and_then(|s| Some((s, cached_drift(&live.services, s)?))),
        network_policy: cached_drift(&live.network_policies, network_policy)
            .map(|d| (network_policy, d)),
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

/// Applies what `plan` found, asking the fence before each write: claims, Service and
/// NetworkPolicy together (none needs another), then the Deployment, so its pods find
/// them. A child someone edited is first put back as rendered (see `repair_patch`). Returns
/// the stored Deployment when it was applied.
pub async fn apply_planned(
    client: &Client,
    fence: &Leadership,
    namespace: &str,
    planned: &Planned<'_>,
    existing: Option<&Deployment>,
) -> Result<Option<Deployment>, ApplyFailure> {
    let mut first: Vec<futures::future::BoxFuture<'_, Result<(), ApplyFailure>>> = Vec::new();
    for (claim, _) in &planned.claims {
        first.push(Box::pin(async move {
            fenced(fence)?;
            apply_child(client, namespace, *claim).await?;
            Ok(())
        }));
    }
    if let Some((service, why)) = &planned.service {
        first.push(Box::pin(async move {
            if why.needs_repair() {
                // The node ports the API server allocated are kept: a port list without them
                // would get new ones (on 1.20 before 1.20.11, every time).
                let live = Api::<Service>::namespaced(client.clone(), namespace)
                    .get_opt(&service.name_any())
                    .await
                    .map_err(|source| ChildError::of(*service, source))?;
                fenced(fence)?;
                let patch = service_repair_patch(service, live.as_ref());
                repair(client, namespace, *service, patch).await?;
            }
            fenced(fence)?;
            apply_child(client, namespace, *service).await?;
            Ok(())
        }));
    }
    if let Some((policy, why)) = &planned.network_policy {
        first.push(Box::pin(async move {
            if why.needs_repair() {
                fenced(fence)?;
                repair(client, namespace, *policy, policy_repair_patch(policy)).await?;
            }
            fenced(fence)?;
            apply_child(client, namespace, *policy).await?;
            Ok(())
        }));
    }
    futures::future::try_join_all(first).await?;
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
    let mut spec = serde_json::to_value(&policy.spec).unwrap_or_default();
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

/// Deletes children of `service_name` that are not in `children`: a Service once the spec
/// drops every port, and claims the spec no longer asks for when their retention is Delete
/// (a retained claim has no owner reference and is never touched here). Found in the
/// caches, not listed.
pub async fn delete_orphans(
    client: &Client,
    fence: &Leadership,
    live: &ChildStores,
    namespace: &str,
    service_name: &str,
    owner_uid: &str,
    children: &Children,
) -> Result<Vec<String>, Error> {
    let mut deleted = Vec::new();
    let wanted_service = children.service.as_ref().map(|s| s.name_any());
    deleted.extend(
        delete_unwanted(
            client,
            fence,
            &live.services,
            namespace,
            service_name,
            owner_uid,
            |name| Some(name.to_string()) == wanted_service,
        )
        .await?,
    );
    let wanted_claims: Vec<String> = children.claims.iter().map(|c| c.name_any()).collect();
    deleted.extend(
        delete_unwanted(
            client,
            fence,
            &live.claims,
            namespace,
            service_name,
            owner_uid,
            |name| wanted_claims.iter().any(|w| w == name),
        )
        .await?,
    );
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
