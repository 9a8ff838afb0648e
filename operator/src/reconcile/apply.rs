//! Apply: server-side apply of the rendered children with one field manager, then removal of
//! children the spec no longer asks for.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::leader::Leadership;
use crate::render::{Children, labels};

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
        .map_err(|source| ChildError {
            kind: K::kind(&()).into_owned(),
            name: object.name_any(),
            source,
        })
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

/// Applies every child, claims and Service first so the pods find them, asking the fence
/// before each write. Returns the stored Deployment, whose status tells how the rollout goes.
pub async fn apply_children(
    client: &Client,
    fence: &Leadership,
    namespace: &str,
    children: &Children,
    existing: Option<&Deployment>,
) -> Result<Deployment, ApplyFailure> {
    for claim in &children.claims {
        fenced(fence)?;
        apply_child(client, namespace, claim).await?;
    }
    if let Some(service) = &children.service {
        fenced(fence)?;
        apply_child(client, namespace, service).await?;
    }
    fenced(fence)?;
    apply_child(client, namespace, &children.network_policy).await?;
    if let Some(patch) = existing.and_then(|e| dropped_probes_patch(e, &children.deployment)) {
        fenced(fence)?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        api.patch(
            &children.deployment.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map_err(|source| ChildError {
            kind: "Deployment".into(),
            name: children.deployment.name_any(),
            source,
        })?;
    }
    fenced(fence)?;
    Ok(apply_child(client, namespace, &children.deployment).await?)
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
/// (a retained claim has no owner reference and is never touched here).
pub async fn delete_orphans(
    client: &Client,
    fence: &Leadership,
    namespace: &str,
    service_name: &str,
    owner_uid: &str,
    children: &Children,
) -> Result<Vec<String>, Error> {
    let mut deleted = Vec::new();
    let wanted_service = children.service.as_ref().map(|s| s.name_any());
    deleted.extend(
        delete_unwanted::<Service>(client, fence, namespace, service_name, owner_uid, |name| {
            Some(name.to_string()) == wanted_service
        })
        .await?,
    );
    let wanted_claims: Vec<String> = children.claims.iter().map(|c| c.name_any()).collect();
    deleted.extend(
        delete_unwanted::<PersistentVolumeClaim>(
            client,
            fence,
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
    let selector = labels::children_selector(service_name);
    let mut deleted = Vec::new();
    for object in api
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
    {
        let owned = object
            .owner_references()
            .iter()
            .any(|o| o.uid == owner_uid && o.controller == Some(true));
        let name = object.name_any();
        if owned && !wanted(&name) {
            fence.ensure()?;
            api.delete(&name, &DeleteParams::background()).await?;
            deleted.push(format!("{}/{name}", K::kind(&())));
        }
    }
    Ok(deleted)
}
