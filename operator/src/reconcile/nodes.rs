//! The cluster's nodes, for where each service runs and which board stopped answering.
//!
//! Read-only and optional: a namespaced install may not be allowed to list nodes
//! (`watchNamespaces` grants nothing cluster-wide unless `nodeAccess` asks for it). Then
//! there is no node cache, statuses still name the nodes pods are on (from the pods), and
//! only `NodeLost` is not reported.
//!
//! No wake-ups come from here: when the node controller marks a node lost it also turns its
//! pods not-Ready, and a node coming back restarts them; the pod watch wakes the services.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use kube::api::ListParams;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::scope::WatchBackoff;
use super::watches::fan_out;
use crate::health::OperatorHealth;

/// A cache of the nodes trimmed to their name and `Ready` condition, or None when this
/// operator may not list nodes (said once in the log).
pub async fn watch(
    client: &Client,
    health: &Arc<OperatorHealth>,
    name: String,
) -> Option<Store<Node>> {
    let api: Api<Node> = Api::all(client.clone());
    if let Err(error) = api.list_metadata(&ListParams::default().limit(1)).await {
        tracing::warn!(%error, "cannot list nodes: statuses will not report a lost node (NodeLost)");
        return None;
    }
    let (store, writer) = reflector::store::<Node>();
    let [] = fan_out(
        name,
        health,
        reflector(
            writer,
            watcher(api, watcher::Config::default())
                .backoff(WatchBackoff::default())
                .modify(trim),
        ),
    );
    store.wait_until_ready().await.ok()?;
    Some(store)
}

/// A node's name and `Ready` condition: a node's status lists every image it holds (tens of
/// KiB on a Pi with the whole stack), and nothing else here is read.
fn trim(node: &mut Node) {
    node.metadata = kube::api::ObjectMeta {
        name: node.metadata.name.take(),
        resource_version: node.metadata.resource_version.take(),
        ..Default::default()
    };
    node.spec = None;
    let ready = node
        .status
        .take()
        .and_then(|s| s.conditions)
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| NodeCondition {
            type_: c.type_,
            status: c.status,
            last_transition_time: c.last_transition_time,
            ..Default::default()
        });
    node.status = Some(NodeStatus {
        conditions: ready.map(|c| vec![c]),
        ..Default::default()
    });
}
