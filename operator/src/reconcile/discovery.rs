//! API versions that differ between the Kubernetes releases the operator runs on, chosen by
//! asking the API server once at start (discovery), never by comparing version numbers:
//! k3s backports and distributions serve what they serve.

use std::time::Duration;

use kube::Client;

use crate::render::disruption_budget::PolicyVersion;

/// `policy/v1` when the API server serves PodDisruptionBudgets there (Kubernetes 1.21 and
/// later, the only version from 1.25), else `policy/v1beta1` (1.20, CI's API server). Asked
/// until it answers: a guess would start a watch of a version that may not be served, and
/// the caches would never fill (after a power cut the operator may start before the API
/// server does).
pub async fn policy_version(client: &Client) -> PolicyVersion {
    let mut wait = Duration::from_millis(500);
    loop {
        match client.list_api_group_resources("policy/v1").await {
            Ok(list)
                if list
                    .resources
                    .iter()
                    .any(|r| r.name == "poddisruptionbudgets") =>
            {
                return PolicyVersion::V1;
            }
            Ok(_) => return PolicyVersion::V1beta1,
            Err(kube::Error::Api(status)) if status.code == 404 => return PolicyVersion::V1beta1,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?wait, "cannot ask which policy version is served");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}
