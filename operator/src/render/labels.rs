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
/// One label per network the pod joins (`network.lucid.io/<name>: "true"`), so a
/// NetworkPolicy can select "pods sharing a network" with a plain label selector.
pub const NETWORK_PREFIX: &str = "network.lucid.io/";
/// One label per service the pod depends on (`uses.lucid.io/<dependency>: "true"`), so a
/// dependency's NetworkPolicy can admit exactly the pods that named it in `dependsOn`.
/// Service names are DNS labels (at most 63 characters), so every key is a valid label key.
pub const USES_PREFIX: &str = "uses.lucid.io/";

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
/// operator's own keys, which selectors and policies rely on, cannot be overridden; user
/// labels under the policy prefixes are dropped, or a label alone would open a path that
/// `networks` and `dependsOn` do not.
pub fn common(ls: &LucidService) -> BTreeMap<String, String> {
    let name = ls.name_any();
    let platform = ls
        .spec
        .node_selector
        .get("kubernetes.io/arch")
        .cloned()
        .unwrap_or_else(|| "arm64".into());
    let mut labels: BTreeMap<String, String> = ls
        .spec
        .labels
        .iter()
        .filter(|(key, _)| !is_policy_label(key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
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

/// Pod labels: the common ones plus one per network and one per dependency. Only the pod
/// template carries the policy labels; the Deployment's selector never includes them, so
/// changing `networks` or `dependsOn` rolls the pods but never touches the selector.
pub fn pod(ls: &LucidService) -> BTreeMap<String, String> {
    let mut labels = common(ls);
    for network in &ls.spec.networks {
        labels.insert(network_label(network), "true".into());
    }
    for dependency in &ls.spec.depends_on {
        labels.insert(uses_label(dependency), "true".into());
    }
    labels
}

pub fn network_label(network: &str) -> String {
    format!("{NETWORK_PREFIX}{network}")
}

pub fn uses_label(dependency: &str) -> String {
    format!("{USES_PREFIX}{dependency}")
}

fn is_policy_label(key: &str) -> bool {
    key.starts_with(NETWORK_PREFIX) || key.starts_with(USES_PREFIX)
}

/// Selects every object this operator made for one service.
pub fn children_selector(service_name: &str) -> String {
    format!("{INSTANCE}={service_name},{MANAGED_BY_KEY}={MANAGED_BY}")
}
