//! Pure rendering: a LucidService (plus what was read for it) in, Kubernetes objects out.
//! Nothing here talks to the API server, so every field can be unit-tested.

mod deployment;
mod env;
pub mod labels;
mod pod;
mod service;
mod storage;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::api::LucidService;

pub use storage::{ClaimRole, claim_name};

/// Pod-template annotation carrying the hash of every ConfigMap and Secret the pods read,
/// so a change to one of them rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "lucid.io/config-hash";

/// What the reconciler read from the cluster that the objects depend on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderInputs {
    /// blake3 of the referenced ConfigMaps' and Secrets' contents.
    pub config_hash: String,
}

/// Everything one LucidService asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub deployment: Deployment,
    /// None when the service exposes no port.
    pub service: Option<Service>,
    pub claims: Vec<PersistentVolumeClaim>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RenderError {
    #[error("the LucidService has no {0} yet; it must come from the API server")]
    MissingMetadata(&'static str),
}

/// Renders every child of `ls`.
pub fn render(ls: &LucidService, inputs: &RenderInputs) -> Result<Children, RenderError> {
    let owner = owner_reference(ls)?;
    let namespace = ls.namespace().ok_or(RenderError::MissingMetadata("namespace"))?;
    let claims = storage::claims(ls, &namespace, &owner);
    Ok(Children {
        deployment: deployment::deployment(ls, &namespace, &owner, inputs),
        service: service::service(ls, &namespace, &owner),
        claims,
    })
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
