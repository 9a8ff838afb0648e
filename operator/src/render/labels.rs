//! Labels every object of a service carries: the Kubernetes recommended ones, then the
//! compose templates' `lucid.*` ones as `lucid.io/*`.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::api::LucidService;

pub const MANAGED_BY: &str = "lucid-operator";
pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const SERVICE: &str = "lucid.io/service";
pub const CLUSTER: &str = "lucid.io/cluster";
/// One label per network the pod joins (`lucid.io/network.<name>: "true"`), so a
/// NetworkPolicy can select "pods sharing a network" with a plain label selector.
pub const NETWORK_PREFIX: &str = "network.lucid.io/";

/// The labels that select a service's pods. Never changes for a given service: a
/// Deployment's selector is immutable.
pub fn selector(ls: &LucidService) -> BTreeMap<String, String> {
    let name = ls.name_any();
    [
        (NAME.to_string(), name.clone()),
        (INSTANCE.to_string(), name),
    ]
    .into()
}

/// Labels for every child and the pod template. User labels come first so that the
/// operator's own keys, which selectors and policies rely on, cannot be overridden.
pub fn common(ls: &LucidService) -> BTreeMap<String, String> {
    let name = ls.name_any();
    let platform = ls
        .spec
        .node_selector
        .get("kubernetes.io/arch")
        .cloned()
        .unwrap_or_else(|| "arm64".into());
    let mut labels = ls.spec.labels.clone();
    labels.extend(selector(ls));
    labels.extend([
        (
            "app.kubernetes.io/component".to_string(),
            ls.spec.phase.clone(),
        ),
        ("app.kubernetes.io/part-of".to_string(), "lucid".to_string()),
        (MANAGED_BY_KEY.to_string(), MANAGED_BY.to_string()),
        (SERVICE.to_string(), name),
        (CLUSTER.to_string(), ls.spec.phase.clone()),
        ("lucid.io/security".to_string(), "hardened".to_string()),
        ("lucid.io/platform".to_string(), platform),
    ]);
    labels
}

/// Pod labels: the common ones plus one per network.
pub fn pod(ls: &LucidService) -> BTreeMap<String, String> {
    let mut labels = common(ls);
    for network in &ls.spec.networks {
        labels.insert(network_label(network), "true".into());
    }
    labels
}

pub fn network_label(network: &str) -> String {
    format!("{NETWORK_PREFIX}{network}")
}

/// Selects every object this operator made for one service.
pub fn children_selector(service_name: &str) -> String {
    format!("{INSTANCE}={service_name},{MANAGED_BY_KEY}={MANAGED_BY}")
}
