//! API versions that differ between the Kubernetes releases the operator runs on, chosen by
//! asking the API server once at start (discovery), never by comparing version numbers:
//! k3s backports and distributions serve what they serve.

use kube::Client;

use crate::render::disruption_budget::PolicyVersion;

/// `policy/v1` when the API server serves PodDisruptionBudgets there (Kubernetes 1.21 and
/// later, the only version from 1.25), else `policy/v1beta1` (1.20, CI's API server). An
/// API server that cannot be asked is taken to be a current one.
pub async fn policy_version(client: &Client) -> PolicyVersion {
    match client.list_api_group_resources("policy/v1").await {
        Ok(list)
            if list
                .resources
                .iter()
                .any(|r| r.name == "poddisruptionbudgets") =>
        {
            PolicyVersion::V1
        }
        Ok(_) => PolicyVersion::V1beta1,
        Err(kube::Error::Api(status)) if status.code == 404 => PolicyVersion::V1beta1,
        Err(error) => {
            tracing::warn!(%error, "cannot ask which policy version is served; using policy/v1");
            PolicyVersion::V1
        }
    }
}
