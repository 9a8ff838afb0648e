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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyVersion {
    V1,
    V1beta1,
}

impl PolicyVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            PolicyVersion::V1 => "policy/v1",
            PolicyVersion::V1beta1 => "policy/v1beta1",
        }
    }
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

/// The budget as `version` spells it: the same object under another `apiVersion`.
pub fn in_version(
    budget: &PodDisruptionBudget,
    version: PolicyVersion,
) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(budget)?;
    value["apiVersion"] = version.api_version().into();
    Ok(value)
}
