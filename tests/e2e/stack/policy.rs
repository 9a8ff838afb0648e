//! Evaluates NetworkPolicies the way a policy-enforcing CNI does (k3s's kube-router does;
//! the bridge CNI of our real-cluster harness enforces none, so there the rendered
//! policies are inert and can only be checked here, by evaluation).
//!
//! The Kubernetes semantics (networking/v1):
//! - a pod is isolated for ingress (egress) when some policy in its namespace selects it
//!   and lists Ingress (Egress) in policyTypes; a pod that is not isolated allows all;
//! - an isolated pod allows a connection when some rule of some selecting policy does
//!   (policies and rules add up, never subtract);
//! - a rule with no peers allows every peer, one with no ports every port;
//! - a peer with only a podSelector means pods in the policy's own namespace; an empty
//!   selector selects every pod;
//! - a connection happens only when the source's egress and the destination's ingress both
//!   allow it.
//!
//! Peers with namespaceSelector or ipBlock and named ports are not rendered by the operator
//! and are refused here, so a render that starts using them fails this check until it
//! learns them.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A pod as policies see it.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

pub struct Policies<'a> {
    pub policies: &'a [NetworkPolicy],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            other => panic!("unknown selector operator {other}"),
        }
    });
    by_labels && by_expressions
}

fn peer_matches(peer: &NetworkPolicyPeer, policy_namespace: &str, pod: &Pod) -> bool {
    assert!(
        peer.namespace_selector.is_none() && peer.ip_block.is_none(),
        "namespaceSelector and ipBlock peers are not evaluated here"
    );
    let selector = peer
        .pod_selector
        .as_ref()
        .expect("a peer with neither selector nor ipBlock is invalid");
    pod.namespace == policy_namespace && selects(selector, &pod.labels)
}

fn port_matches(ports: &Option<Vec<NetworkPolicyPort>>, port: i32, protocol: &str) -> bool {
    let Some(ports) = ports.as_ref().filter(|p| !p.is_empty()) else {
        return true;
    };
    ports.iter().any(|p| {
        let proto_ok = p.protocol.as_deref().unwrap_or("TCP") == protocol;
        let port_ok = match &p.port {
            None => true,
            Some(IntOrString::Int(n)) => match p.end_port {
                Some(end) => (*n..=end).contains(&port),
                None => *n == port,
            },
            Some(IntOrString::String(name)) => {
                panic!("named port {name} is not evaluated here")
            }
        };
        proto_ok && port_ok
    })
}

impl Policies<'_> {
    fn selecting<'p>(
        &'p self,
        pod: &'p Pod,
        direction: Direction,
    ) -> impl Iterator<Item = &'p NetworkPolicy> {
        let kind = match direction {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        };
        self.policies.iter().filter(move |p| {
            let spec = p.spec.as_ref().expect("a policy has a spec");
            let types = spec.policy_types.clone().unwrap_or_else(|| {
                // The API server's default: Ingress, plus Egress when egress rules exist.
                let mut t = vec!["Ingress".to_string()];
                if spec.egress.is_some() {
                    t.push("Egress".into());
                }
                t
            });
            p.metadata.namespace.as_deref() == Some(pod.namespace.as_str())
                && types.iter().any(|t| t == kind)
                && selects(
                    spec.pod_selector
                        .as_ref()
                        .unwrap_or(&LabelSelector::default()),
                    &pod.labels,
                )
        })
    }

    /// Whether `to` accepts a connection from `from` on `port`/`protocol`.
    pub fn ingress_allows(&self, from: &Pod, to: &Pod, port: i32, protocol: &str) -> bool {
        let mut selecting = self.selecting(to, Direction::Ingress).peekable();
        if selecting.peek().is_none() {
            return true;
        }
        selecting.any(|policy| {
            let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
            let rules = policy.spec.as_ref().unwrap().ingress.iter().flatten();
            rules.clone().any(|rule| {
                let peer_ok = rule
                    .from
                    .as_ref()
                    .filter(|peers| !peers.is_empty())
                    .is_none_or(|peers| peers.iter().any(|p| peer_matches(p, namespace, from)));
                peer_ok && port_matches(&rule.ports, port, protocol)
            })
        })
    }

    /// Whether `from` may open a connection to `to` on `port`/`protocol`.
    pub fn egress_allows(&self, from: &Pod, to: &Pod, port: i32, protocol: &str) -> bool {
        let mut selecting = self.selecting(from, Direction::Egress).peekable();
        if selecting.peek().is_none() {
            return true;
        }
        selecting.any(|policy| {
            let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
            let rules = policy.spec.as_ref().unwrap().egress.iter().flatten();
            rules.clone().any(|rule| {
                let peer_ok = rule
                    .to
                    .as_ref()
                    .filter(|peers| !peers.is_empty())
                    .is_none_or(|peers| peers.iter().any(|p| peer_matches(p, namespace, to)));
                peer_ok && port_matches(&rule.ports, port, protocol)
            })
        })
    }

    /// Whether a connection from `from` to `to` on `port`/`protocol` gets through.
    pub fn connects(&self, from: &Pod, to: &Pod, port: i32, protocol: &str) -> bool {
        self.egress_allows(from, to, port, protocol)
            && self.ingress_allows(from, to, port, protocol)
    }
}
