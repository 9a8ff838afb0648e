//! Drift, decided from the live objects alone: whether a child is missing, was last applied
//! from a different rendering (its `lucid.io/applied-hash`), or has spec fields someone else
//! wrote (its managed fields). Nothing here depends on what this process did before, so a
//! restarted operator finds exactly what a running one would, and writes nothing when
//! nothing changed.
//!
//! The children's caches keep metadata only (the `owns`-style metadata watches), trimmed by
//! [`trim_child`]: managed fields are most of an object's metadata, so who else wrote the
//! spec is worked out once, when the event arrives, and kept as a cache-only annotation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

use super::apply::FIELD_MANAGER;
use crate::render::APPLIED_HASH_ANNOTATION;

/// Set in the operator's caches only (never written): the manager that wrote spec fields of
/// a child, when that is not the operator.
pub const EDITED_BY: &str = "lucid.io/cache-edited-by";

/// Managers whose spec writes are part of the cluster working, not edits: the
/// kube-controller-manager (k3s runs the same controllers in-process, as `k3s`) binds claims
/// (`spec.volumeName`) and writes Deployment status and revision annotations.
const SYSTEM_MANAGERS: [&str; 2] = ["kube-controller-manager", "k3s"];

/// Which part of a child's spec the operator puts back when someone else wrote it: only
/// what the repair can restore, or the repair would never clear the mark and repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecPart {
    /// A Service: its ports and selector (replaced wholesale by the repair).
    ServicePortsAndSelector,
    /// A NetworkPolicy: its whole spec (replaced wholesale).
    WholeSpec,
    /// A Deployment: its spec but the pod template's annotations (`kubectl rollout
    /// restart` writes one there, and the operator sets none of its own there).
    DeploymentSpec,
}

/// Why a child must be applied again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// Not there (never created, or deleted by someone).
    Missing,
    /// Last applied from another rendering: the spec or what it reads changed.
    Changed,
    /// Someone else wrote its spec (`kubectl edit`, a patch): put back as rendered.
    EditedBy(String),
}

impl Drift {
    /// Whether fields someone else wrote must be removed, not only ours re-asserted: a
    /// server-side apply leaves fields it does not own in place.
    pub fn needs_repair(&self) -> bool {
        matches!(self, Drift::EditedBy(_))
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Missing => f.write_str("missing"),
            Drift::Changed => f.write_str("changed"),
            Drift::EditedBy(manager) => write!(f, "edited by {manager}"),
        }
    }
}

/// Whether the live child (as the cache holds it) is what was rendered with `desired_hash`.
/// A child being deleted (a claim in use stays so while its pods run) is left to finish:
/// its deletion is the event that brings it back.
pub fn drift(desired_hash: Option<&str>, live: Option<&ObjectMeta>) -> Option<Drift> {
    let Some(live) = live else {
        return Some(Drift::Missing);
    };
    if live.deletion_timestamp.is_some() {
        return None;
    }
    let annotations = live.annotations.as_ref();
    let applied = annotations.and_then(|a| a.get(APPLIED_HASH_ANNOTATION));
    if applied.map(String::as_str) != desired_hash {
        return Some(Drift::Changed);
    }
    annotations
        .and_then(|a| a.get(EDITED_BY))
        .map(|manager| Drift::EditedBy(manager.clone()))
}

/// The manager other than the operator (and the cluster's own controllers) that wrote the
/// `watched` part of the spec after the operator last changed the object. Later than the
/// operator's own last write, so that a repair clears it even when the editor still shares
/// a field (someone who wrote the same value as ours keeps co-owning it). Timestamps are
/// whole seconds: an edit in the very second of the operator's last write is seen at the
/// operator's next write, not at once.
pub fn spec_edited_by(managed: &[ManagedFieldsEntry], watched: SpecPart) -> Option<String> {
    let manager = |e: &ManagedFieldsEntry| e.manager.clone().unwrap_or_default();
    let ours = managed
        .iter()
        .filter(|e| manager(e) == FIELD_MANAGER)
        .filter_map(|e| e.time.as_ref().map(|t| t.0))
        .max();
    managed
        .iter()
        .filter(|e| {
            let m = manager(e);
            m != FIELD_MANAGER && !SYSTEM_MANAGERS.contains(&m.as_str())
        })
        .filter(|e| match (ours, e.time.as_ref()) {
            (Some(ours), Some(theirs)) => theirs.0 > ours,
            _ => true,
        })
        .find(|e| {
            e.fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .is_some_and(|spec| touches(spec, watched))
        })
        .map(|e| {
            let m = manager(e);
            if m.is_empty() { "someone".into() } else { m }
        })
}

fn touches(spec: &serde_json::Value, watched: SpecPart) -> bool {
    let Some(spec) = spec.as_object() else {
        return false;
    };
    match watched {
        SpecPart::WholeSpec => !spec.is_empty(),
        SpecPart::ServicePortsAndSelector => {
            spec.contains_key("f:ports") || spec.contains_key("f:selector")
        }
        SpecPart::DeploymentSpec => spec.iter().any(|(key, value)| {
            if key != "f:template" {
                return true;
            }
            value.as_object().is_some_and(|template| {
                template.iter().any(|(key, value)| {
                    key != "f:metadata"
                        || value
                            .as_object()
                            .is_some_and(|meta| meta.keys().any(|k| k != "f:annotations"))
                })
            })
        }),
    }
}

/// What the caches keep of a child: name, namespace, labels, owners, deletion mark, the
/// applied hash, and who else wrote its spec. Managed fields and other annotations (a
/// `kubectl apply`'s last-applied copy can be as large as the object) are dropped.
pub fn trim_child(meta: &mut ObjectMeta, watched: Option<SpecPart>) {
    let edited_by = watched.and_then(|watched| {
        meta.managed_fields
            .as_deref()
            .and_then(|m| spec_edited_by(m, watched))
    });
    meta.managed_fields = None;
    let old_annotations = meta.annotations.take();
    let applied = old_annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_HASH_ANNOTATION).cloned());
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(applied) = applied {
        annotations.insert(APPLIED_HASH_ANNOTATION.to_string(), applied);
    }
    if let Some(manager) = edited_by {
        annotations.insert(EDITED_BY.to_string(), manager);
    }
    // A claim's node, for status (see `status::placement`).
    if let Some(node) = old_annotations
        .as_ref()
        .and_then(|a| a.get(crate::status::SELECTED_NODE_ANNOTATION))
    {
        annotations.insert(
            crate::status::SELECTED_NODE_ANNOTATION.to_string(),
            node.clone(),
        );
    }
    meta.annotations = (!annotations.is_empty()).then_some(annotations);
}

/// What the Deployment cache keeps: the whole object (its status is read) without managed
/// fields, whose one use, who else wrote the spec, is kept as an annotation.
pub fn trim_deployment(deployment: &mut k8s_openapi::api::apps::v1::Deployment) {
    let meta = &mut deployment.metadata;
    let edited_by = meta
        .managed_fields
        .as_deref()
        .and_then(|m| spec_edited_by(m, SpecPart::DeploymentSpec));
    meta.managed_fields = None;
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    match edited_by {
        Some(manager) => annotations.insert(EDITED_BY.to_string(), manager),
        None => annotations.remove(EDITED_BY),
    };
}

/// What the caches keep of a ConfigMap or Secret: enough to know it exists and which
/// version it is at. (Their metadata can carry a `kubectl apply` copy of their values.)
pub fn trim_referenced(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    meta.owner_references = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use std::collections::BTreeMap;

    fn entry(manager: &str, fields: serde_json::Value) -> ManagedFieldsEntry {
        at(manager, fields, "2026-11-23T10:00:00Z")
    }

    fn at(manager: &str, fields: serde_json::Value, time: &str) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            fields_v1: Some(FieldsV1(fields)),
            time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                time.parse().expect("time"),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn an_edit_counts_until_the_operator_writes_after_it_and_only_where_a_repair_reaches() {
        let ours = at(
            FIELD_MANAGER,
            serde_json::json!({"f:spec": {}}),
            "2026-11-23T10:00:00Z",
        );
        let edit = |time| {
            at(
                "kubectl-edit",
                serde_json::json!({"f:spec": {"f:ports": {}}}),
                time,
            )
        };
        let later = [ours.clone(), edit("2026-11-23T10:00:05Z")];
        assert_eq!(
            spec_edited_by(&later, SpecPart::ServicePortsAndSelector).as_deref(),
            Some("kubectl-edit")
        );
        // Repaired: the operator wrote after it; a co-owned field no longer counts.
        let repaired = [
            edit("2026-11-23T10:00:05Z"),
            at(
                FIELD_MANAGER,
                serde_json::json!({"f:spec": {}}),
                "2026-11-23T10:00:06Z",
            ),
        ];
        assert_eq!(
            spec_edited_by(&repaired, SpecPart::ServicePortsAndSelector),
            None
        );
        // What a Service repair cannot put back is not watched (it would repeat for ever).
        let affinity = [
            ours.clone(),
            at(
                "kubectl-edit",
                serde_json::json!({"f:spec": {"f:sessionAffinity": {}}}),
                "2026-11-23T10:00:05Z",
            ),
        ];
        assert_eq!(
            spec_edited_by(&affinity, SpecPart::ServicePortsAndSelector),
            None
        );
        // `kubectl rollout restart` is not an edit to undo; `kubectl scale` is.
        let restart = [
            ours.clone(),
            at(
                "kubectl-rollout",
                serde_json::json!({"f:spec": {"f:template": {"f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/restartedAt": {}}}}}}),
                "2026-11-23T10:00:05Z",
            ),
        ];
        assert_eq!(spec_edited_by(&restart, SpecPart::DeploymentSpec), None);
        let scale = [
            ours,
            at(
                "kubectl",
                serde_json::json!({"f:spec": {"f:replicas": {}}}),
                "2026-11-23T10:00:05Z",
            ),
        ];
        assert_eq!(
            spec_edited_by(&scale, SpecPart::DeploymentSpec).as_deref(),
            Some("kubectl")
        );
    }

    fn live(hash: Option<&str>, managed: Vec<ManagedFieldsEntry>) -> ObjectMeta {
        let mut meta = ObjectMeta {
            name: Some("redis".into()),
            annotations: hash.map(|h| {
                BTreeMap::from([
                    (APPLIED_HASH_ANNOTATION.to_string(), h.to_string()),
                    (
                        "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                        "{\"data\":{\"PASSWORD\":\"s3cret\"}}".to_string(),
                    ),
                ])
            }),
            managed_fields: Some(managed),
            ..Default::default()
        };
        trim_child(&mut meta, Some(SpecPart::WholeSpec));
        meta
    }

    #[test]
    fn a_child_as_rendered_has_no_drift_and_restarting_changes_nothing() {
        let ours = entry(FIELD_MANAGER, serde_json::json!({"f:spec": {}}));
        let binder = entry(
            "kube-controller-manager",
            serde_json::json!({"f:spec": {"f:volumeName": {}}}),
        );
        let status = entry("kubelet", serde_json::json!({"f:status": {}}));
        let meta = live(Some("h1"), vec![ours, binder, status]);
        assert_eq!(drift(Some("h1"), Some(&meta)), None);
        assert_eq!(
            meta.annotations.as_ref().map(|a| a.len()),
            Some(1),
            "only the applied hash is kept: {:?}",
            meta.annotations
        );
        assert!(meta.managed_fields.is_none());
    }

    #[test]
    fn missing_changed_and_edited_children_are_told_apart() {
        assert_eq!(drift(Some("h1"), None), Some(Drift::Missing));
        // Being deleted (a claim its pods still use): left to finish, then put back.
        let mut terminating = live(Some("h1"), vec![]);
        terminating.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-23T10:00:00Z".parse().expect("time"),
            ));
        assert_eq!(drift(Some("h1"), Some(&terminating)), None);
        let meta = live(Some("h0"), vec![]);
        assert_eq!(drift(Some("h1"), Some(&meta)), Some(Drift::Changed));
        let edited = live(
            Some("h1"),
            vec![entry(
                "kubectl-edit",
                serde_json::json!({"f:spec": {"f:ports": {}}}),
            )],
        );
        let found = drift(Some("h1"), Some(&edited));
        assert_eq!(found, Some(Drift::EditedBy("kubectl-edit".into())));
        assert!(found.is_some_and(|d| d.needs_repair()));
        // Labels or annotations someone adds are not the spec: left alone.
        let labelled = live(
            Some("h1"),
            vec![entry(
                "kubectl-label",
                serde_json::json!({"f:metadata": {}}),
            )],
        );
        assert_eq!(drift(Some("h1"), Some(&labelled)), None);
    }

    #[test]
    fn referenced_objects_keep_no_copy_of_their_values() {
        let mut meta = live(Some("h1"), vec![]);
        trim_referenced(&mut meta);
        assert!(meta.annotations.is_none());
        assert!(!format!("{meta:?}").contains("s3cret"));
    }
}
