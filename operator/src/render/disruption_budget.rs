//! The PodDisruptionBudget of a service with more than one replica: a `kubectl drain` (or
//! k3s's upgrade controller, or anything else using the eviction API) takes its pods one at
//! a time, waiting for the replacement to be ready, so the service never drops below one
//! ready pod. One replica gets none: a budget that allows no eviction would block every
//! drain of its node for ever (the trap charts fall into with `minAvailable: 1`), and a
//! single pod cannot be kept up through a drain anyway.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels;
use crate::api::LucidService;

/// Which `policy` version the API server serves PodDisruptionBudgets in. `v1` since
/// Kubernetes 1.21 and the only one from 1.25 (k3s today); `v1beta1` alone on 1.20 (CI's
/// API server). Chosen once at start by discovery; the two carry the same fields here
/// (`maxUnavailable`, `selector`), so one rendering serves both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PolicyVersion {
    #[default]
    V1,
    V1beta1,
}

/// A budget in the version the API server serves.
#[derive(Clone, Debug, PartialEq)]
pub enum DisruptionBudget {
    V1(PodDisruptionBudget),
    V1beta1(PodDisruptionBudgetV1beta1),
}

/// `policy/v1beta1`'s PodDisruptionBudget, which k8s-openapi no longer has (its newest
/// Kubernetes dropped it): v1's fields under the old `apiVersion`. The fields rendered here
/// mean the same in both; only the name on the wire and the URL differ.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodDisruptionBudgetV1beta1(pub PodDisruptionBudget);

impl k8s_openapi::Resource for PodDisruptionBudgetV1beta1 {
    const API_VERSION: &'static str = "policy/v1beta1";
    const GROUP: &'static str = "policy";
    const KIND: &'static str = "PodDisruptionBudget";
    const VERSION: &'static str = "v1beta1";
    const URL_PATH_SEGMENT: &'static str = "poddisruptionbudgets";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for PodDisruptionBudgetV1beta1 {
    type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    fn metadata(&self) -> &Self::Ty {
        &self.0.metadata
    }
    fn metadata_mut(&mut self) -> &mut Self::Ty {
        &mut self.0.metadata
    }
}

impl serde::Serialize for PodDisruptionBudgetV1beta1 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut value = serde_json::to_value(&self.0).map_err(serde::ser::Error::custom)?;
        value["apiVersion"] = Self::API_VERSION_VALUE.into();
        value.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for PodDisruptionBudgetV1beta1 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = serde_json::Value::deserialize(deserializer)?;
        // v1's type checks the name on the wire.
        if value.get("apiVersion").is_some() {
            value["apiVersion"] =
                <PodDisruptionBudget as k8s_openapi::Resource>::API_VERSION.into();
        }
        serde_json::from_value(value)
            .map(PodDisruptionBudgetV1beta1)
            .map_err(serde::de::Error::custom)
    }
}

impl PodDisruptionBudgetV1beta1 {
    const API_VERSION_VALUE: &'static str = <Self as k8s_openapi::Resource>::API_VERSION;
}

impl PolicyVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            PolicyVersion::V1 => "policy/v1",
            PolicyVersion::V1beta1 => "policy/v1beta1",
        }
    }
}

/// The budget `ls` needs, in `version`.
pub fn disruption_budget_in(
    ls: &LucidService,
    namespace: &str,
    owner: &OwnerReference,
    version: PolicyVersion,
) -> Option<DisruptionBudget> {
    let budget = disruption_budget(ls, namespace, owner)?;
    Some(match version {
        PolicyVersion::V1 => DisruptionBudget::V1(budget),
        PolicyVersion::V1beta1 => DisruptionBudget::V1beta1(PodDisruptionBudgetV1beta1(budget)),
    })
}

pub fn disruption_budget(
    ls: &LucidService,
    namespace: &str,
    owner: &OwnerReference,
) -> Option<PodDisruptionBudget> {
    (ls.spec.replicas > 1).then(|| PodDisruptionBudget {
        metadata: super::owned_metadata(ls, namespace, owner),
        spec: Some(PodDisruptionBudgetSpec {
            // Not `minAvailable: 1`: one at a time keeps a third replica's worth too.
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(ls)),
                match_expressions: None,
            }),
            ..Default::default()
        }),
        status: None,
    })
}
