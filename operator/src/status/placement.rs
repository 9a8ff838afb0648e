//! Where a service runs on a cluster of boards: the nodes its ready pods are on, the node
//! each node-bound volume lives on, and — when a board stops answering — what that means for
//! the service: its pods move after their toleration, unless its data lives on that board.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::ClaimNode;

/// The annotation the scheduler writes on a claim whose volume waits for its first pod
/// (`WaitForFirstConsumer`, as k3s's local-path storage class does): the volume is then made
/// on that node and stays there.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";

/// A node whose kubelet stopped reporting: its `Ready` condition is `False` or `Unknown`
/// (the node controller's word after its grace period), since `since`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostNode {
    pub since: Option<Time>,
}

/// The nodes that are not Ready, by name.
pub fn lost_nodes<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> BTreeMap<String, LostNode> {
    nodes
        .into_iter()
        .filter_map(|node| {
            let ready = node
                .status
                .as_ref()?
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready")?;
            (ready.status != "True").then(|| {
                (
                    node.metadata.name.clone().unwrap_or_default(),
                    LostNode {
                        since: ready.last_transition_time.clone(),
                    },
                )
            })
        })
        .collect()
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The nodes the ready pods run on, sorted, each once.
pub fn ready_nodes<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Vec<String> {
    let mut nodes: Vec<String> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .filter_map(|p| node_of(p).map(str::to_string))
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// What a lost node means for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLoss {
    /// The service's data lives on the lost node: it cannot run elsewhere.
    pub bound: bool,
    pub message: String,
}

/// `None` unless some of the service's pods are on a lost node. `data_nodes` are the
/// service's node-bound claims; `move_after` its `nodeLossTolerationSeconds`.
pub fn node_loss<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    lost: &BTreeMap<String, LostNode>,
    data_nodes: &[ClaimNode],
    move_after: i64,
) -> Option<NodeLoss> {
    // Names sorted, so the message does not flap between reconciles.
    let mut on_lost: BTreeMap<&str, usize> = BTreeMap::new();
    for pod in pods {
        if let Some(node) = node_of(pod).filter(|n| lost.contains_key(*n)) {
            *on_lost.entry(node).or_default() += 1;
        }
    }
    let since = |node: &str| {
        lost.get(node)
            .and_then(|l| l.since.as_ref())
            .map(|t| format!(" since {}", t.0))
            .unwrap_or_default()
    };
    if let Some(bound) = data_nodes.iter().find(|d| lost.contains_key(&d.node)) {
        return Some(NodeLoss {
            bound: true,
            message: format!(
                "node {node} is not ready{since}, and this service's claim {claim} lives \
                 on it: the pods cannot run on another node. They start again by themselves \
                 when {node} is back. If it is gone for good, recreate the claim (data not \
                 kept) or restore a backup into a new one, then delete the pods stuck on it",
                node = bound.node,
                claim = bound.claim,
                since = since(&bound.node),
            ),
        });
    }
    if on_lost.is_empty() {
        return None;
    }
    let nodes: Vec<String> = on_lost
        .iter()
        .map(|(node, n)| {
            let pods = if *n == 1 { "pod" } else { "pods" };
            format!("{n} {pods} on node {node}, not ready{}", since(node))
        })
        .collect();
    Some(NodeLoss {
        bound: false,
        message: format!(
            "{}; they move to another node {move_after} s after the node controller marks it \
             unreachable",
            nodes.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn node(name: &str, ready: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": ready, "lastTransitionTime": "2026-12-06T10:00:00Z"},
            ]},
        }))
        .unwrap()
    }

    #[test]
    fn a_node_is_lost_when_its_ready_condition_is_not_true() {
        let nodes = [
            node("a", "True"),
            node("b", "Unknown"),
            node("c", "False"),
            serde_json::from_value(json!({"metadata": {"name": "new"}})).unwrap(),
        ];
        let lost = lost_nodes(&nodes);
        assert_eq!(lost.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(
            lost["b"].since.as_ref().unwrap().0.to_string(),
            "2026-12-06T10:00:00Z"
        );
    }

    #[test]
    fn ready_nodes_are_those_of_ready_pods_sorted_once() {
        let pods = [
            pod("p1", "b", true),
            pod("p2", "a", true),
            pod("p3", "b", true),
            pod("p4", "c", false),
        ];
        assert_eq!(ready_nodes(&pods), ["a", "b"]);
    }

    #[test]
    fn pods_on_a_lost_node_are_named_with_the_node_and_when_they_move() {
        let lost = lost_nodes(&[node("b", "Unknown")]);
        let pods = [pod("p1", "a", true), pod("p2", "b", false)];
        let loss = node_loss(&pods, &lost, &[], 30).unwrap();
        assert!(!loss.bound);
        assert_eq!(
            loss.message,
            "1 pod on node b, not ready since 2026-12-06T10:00:00Z; they move to another node \
             30 s after the node controller marks it unreachable"
        );
        assert_eq!(node_loss(&pods[..1], &lost, &[], 30), None);
    }

    #[test]
    fn data_on_a_lost_node_pins_the_service_and_says_what_to_do() {
        let lost = lost_nodes(&[node("b", "Unknown")]);
        let data = [ClaimNode {
            claim: "lucid-mongodb-data".into(),
            node: "b".into(),
        }];
        // Even with no pod left on it (its pod evicted, the new one Pending).
        let loss = node_loss(&[] as &[Pod], &lost, &data, 30).unwrap();
        assert!(loss.bound);
        assert!(loss.message.starts_with(
            "node b is not ready since 2026-12-06T10:00:00Z, and this service's claim lucid-mongodb-data"
        ));
        assert!(loss.message.contains("start again by themselves"));
        // The same claim on a node that answers: nothing to say.
        let data_elsewhere = [ClaimNode {
            claim: "lucid-mongodb-data".into(),
            node: "a".into(),
        }];
        assert_eq!(node_loss(&[] as &[Pod], &lost, &data_elsewhere, 30), None);
    }
}
