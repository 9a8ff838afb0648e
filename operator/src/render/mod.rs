//! Pure rendering: a LucidService (plus what was read for it) in, Kubernetes objects out.
//! Nothing here talks to the API server, so every field can be unit-tested.

pub mod backup;
mod deployment;
pub mod disruption_budget;
mod env;
pub mod labels;
mod network_policy;
mod pod;
mod service;
mod storage;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::api::LucidService;

pub use deployment::recreates;
pub use network_policy::ISOLATED_NETWORKS;
pub use storage::{ClaimRole, claim_name};

/// Pod-template annotation carrying the hash of every ConfigMap and Secret the pods read,
/// so a change to one of them rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "lucid.io/config-hash";

/// Deployment annotation carrying the hash of everything rendered for the service. When the
/// desired hash equals it, the service has not changed and nothing needs applying or gating.
pub const APPLIED_HASH_ANNOTATION: &str = "lucid.io/applied-hash";

/// What the reconciler read from the cluster that the objects depend on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderInputs {
    /// blake3 of the referenced ConfigMaps' and Secrets' contents.
    pub config_hash: String,
    /// The version the API server serves PodDisruptionBudgets in.
    pub policy: disruption_budget::PolicyVersion,
}

/// Everything one LucidService asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub deployment: Deployment,
    /// None when the service exposes no port.
    pub service: Option<Service>,
    pub claims: Vec<PersistentVolumeClaim>,
    /// Who may talk to the pods (and, on isolated networks, whom they may talk to).
    pub network_policy: NetworkPolicy,
    /// With more than one replica: how many pods a drain may take at once.
    pub disruption_budget: Option<disruption_budget::DisruptionBudget>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RenderError {
    #[error("the LucidService has no {0} yet; it must come from the API server")]
    MissingMetadata(&'static str),
}

/// Renders every child of `ls`.
pub fn render(ls: &LucidService, inputs: &RenderInputs) -> Result<Children, RenderError> {
    let owner = owner_reference(ls)?;
    let namespace = ls
        .namespace()
        .ok_or(RenderError::MissingMetadata("namespace"))?;
    let mut children = Children {
        deployment: deployment::deployment(ls, &namespace, &owner, inputs),
        service: service::service(ls, &namespace, &owner),
        claims: storage::claims(ls, &namespace, &owner),
        network_policy: network_policy::network_policy(ls, &namespace, &owner),
        disruption_budget: disruption_budget::disruption_budget_in(
            ls,
            &namespace,
            &owner,
            inputs.policy,
        ),
    };
    // Each child carries the hash it was rendered with, so drift is read off the live
    // object; the Deployment's covers every child (a change anywhere is a change to roll).
    if let Some(service) = &mut children.service {
        stamp(service);
    }
    for claim in &mut children.claims {
        stamp(claim);
    }
    stamp(&mut children.network_policy);
    match &mut children.disruption_budget {
        Some(disruption_budget::DisruptionBudget::V1(budget)) => stamp(budget),
        Some(disruption_budget::DisruptionBudget::V1beta1(budget)) => stamp(budget),
        None => {}
    }
    let hash = children_hash(&children);
    children
        .deployment
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(APPLIED_HASH_ANNOTATION.into(), hash);
    Ok(children)
}

/// Annotates one child with the blake3 of its own rendering.
fn stamp<K: kube::Resource + serde::Serialize>(child: &mut K) {
    let mut hasher = blake3::Hasher::new();
    // Serialising plain k8s-openapi structs cannot fail.
    if let Ok(bytes) = serde_json::to_vec(child) {
        hasher.update(&bytes);
    }
    let hash = hasher.finalize().to_hex()[..32].to_string();
    child
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(APPLIED_HASH_ANNOTATION.into(), hash);
}

/// The hash a child was rendered with.
pub fn applied_hash<K: kube::Resource>(child: &K) -> Option<&str> {
    child
        .meta()
        .annotations
        .as_ref()?
        .get(APPLIED_HASH_ANNOTATION)
        .map(String::as_str)
}

/// blake3 of the rendered objects (their JSON is deterministic: maps are sorted).
fn children_hash(children: &Children) -> String {
    let mut hasher = blake3::Hasher::new();
    let mut write = |v: serde_json::Result<Vec<u8>>| {
        // Serialising plain k8s-openapi structs cannot fail.
        if let Ok(bytes) = v {
            hasher.update(&bytes);
        }
    };
    write(serde_json::to_vec(&children.deployment));
    write(serde_json::to_vec(&children.service));
    write(serde_json::to_vec(&children.claims));
    write(serde_json::to_vec(&children.network_policy));
    // Only when there is one (no `null` in every other service's hash).
    match &children.disruption_budget {
        Some(disruption_budget::DisruptionBudget::V1(budget)) => write(serde_json::to_vec(budget)),
        Some(disruption_budget::DisruptionBudget::V1beta1(budget)) => {
            write(serde_json::to_vec(budget))
        }
        None => {}
    }
    hasher.finalize().to_hex()[..32].to_string()
}

impl Children {
    /// The hash of the whole rendering, carried by the Deployment.
    pub fn applied_hash(&self) -> Option<&str> {
        applied_hash(&self.deployment)
    }
}

/// Metadata of a child named after its service: the service's labels, owned by it.
fn owned_metadata(
    ls: &LucidService,
    namespace: &str,
    owner: &OwnerReference,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(ls.name_any()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels::common(ls)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// The controller owner reference every child carries, so the garbage collector removes
/// children with their LucidService.
pub fn owner_reference(ls: &LucidService) -> Result<OwnerReference, RenderError> {
    ls.controller_owner_ref(&())
        .ok_or(RenderError::MissingMetadata("uid"))
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
