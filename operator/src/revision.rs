//! Revisions: what a LucidService ran when it was Ready, kept so that an update that fails
//! can go back to exactly that. Pure: the I/O is in `reconcile::revisions`.
//!
//! A revision is two things:
//! - a `ControllerRevision` `<service>-r<N>` (apps/v1, what StatefulSets and DaemonSets keep
//!   their history in) holding the LucidService spec of that revision and which copy stands
//!   for each ConfigMap and Secret it read;
//! - an immutable copy of each of those ConfigMaps (a ConfigMap) and Secrets (a Secret),
//!   `<service>-r<N>-<name>`, made when the revision turned Ready, owned by the LucidService
//!   (the garbage collector removes them with it).
//!
//! Why copies rather than hashed names in every pod template (Kustomize's generators):
//! the pods of a revision that never fails read the user's own objects, exactly as before;
//! only a rollback renders the old spec with every reference pointed at its copy, so the
//! pods get back the values they ran with even after the user edited a ConfigMap. A Secret's
//! values are copied into a Secret only, never into a status, event, log or ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde::{Deserialize, Serialize};

use crate::api::{GoodRevision, LucidServiceSpec};

/// Label on every revision object: the service it belongs to.
pub const REVISION_OF_LABEL: &str = "lucid.io/revision-of";
/// Label on every revision object: its revision number.
pub const REVISION_LABEL: &str = "lucid.io/revision";

/// A ConfigMap or a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SourceKind {
    ConfigMap,
    Secret,
}

/// One object the revision's pods read, and the copy that stands for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub kind: SourceKind,
    pub name: String,
    /// None when the object was optional and absent: the rollback leaves it out, as the
    /// kubelet did.
    pub copy: Option<String>,
}

/// What a `ControllerRevision` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    pub generation: i64,
    pub spec: LucidServiceSpec,
    pub sources: Vec<Source>,
}

#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error("ControllerRevision {0} holds no readable revision: {1}")]
    Unreadable(String, String),
}

/// `<service>-r<N>`.
pub fn revision_name(service: &str, revision: i64) -> String {
    format!("{service}-r{revision}")
}

/// `<service>-r<N>-<name>`, or with a digest of the name when that would be longer than an
/// object name may be (253).
pub fn copy_name(service: &str, revision: i64, original: &str) -> String {
    let plain = format!("{service}-r{revision}-{original}");
    if plain.len() <= 253 {
        return plain;
    }
    let digest = blake3::hash(original.as_bytes()).to_hex();
    format!("{service}-r{revision}-{}", &digest[..16])
}

/// The revision number for a new rendering: one more than any the service has used that
/// still has objects (`others`: the revisions of kept backups), so a number is never given
/// to two renderings while anything of the first is left.
pub fn next_revision(
    current: Option<i64>,
    history: &[GoodRevision],
    others: impl IntoIterator<Item = i64>,
) -> i64 {
    history
        .iter()
        .map(|g| g.revision)
        .chain(current)
        .chain(others)
        .max()
        .unwrap_or(0)
        + 1
}

/// `good` first, then the older ones, at most `limit`: the history to write, and the
/// revisions that fell out of it (their objects are deleted).
pub fn push_history(
    history: &[GoodRevision],
    good: GoodRevision,
    limit: i32,
) -> (Vec<GoodRevision>, Vec<i64>) {
    let limit = usize::try_from(limit.max(1)).unwrap_or(1);
    let mut all: Vec<GoodRevision> = std::iter::once(good.clone())
        .chain(
            history
                .iter()
                .filter(|g| g.revision != good.revision)
                .cloned(),
        )
        .collect();
    let pruned = all.split_off(limit.min(all.len()));
    (all, pruned.into_iter().map(|g| g.revision).collect())
}

/// The spec with every ConfigMap and Secret reference pointed at its copy, and optional
/// references to objects that were absent left out: rendered, it gives the pods what the
/// revision's pods read.
pub fn redirect(spec: &LucidServiceSpec, sources: &[Source]) -> LucidServiceSpec {
    let copy = |kind: SourceKind, name: &str| -> Option<Option<String>> {
        sources
            .iter()
            .find(|s| s.kind == kind && s.name == name)
            .map(|s| s.copy.clone())
    };
    let mut spec = spec.clone();
    spec.env.retain_mut(|var| {
        let Some(from) = &mut var.value_from else {
            return true;
        };
        for (kind, r) in [
            (SourceKind::Secret, from.secret_key_ref.as_mut()),
            (SourceKind::ConfigMap, from.config_map_key_ref.as_mut()),
        ] {
            let Some(r) = r else { continue };
            match copy(kind, &r.name) {
                Some(Some(copy)) => r.name = copy,
                // Absent when the revision ran: the variable was unset.
                Some(None) => return false,
                None => {}
            }
        }
        true
    });
    spec.env_from.retain_mut(|source| {
        if let Some(r) = &mut source.config_map_ref {
            match copy(SourceKind::ConfigMap, &r.name) {
                Some(Some(copy)) => r.name = copy,
                Some(None) => return false,
                None => {}
            }
        }
        if let Some(r) = &mut source.secret_ref {
            match copy(SourceKind::Secret, &r.name) {
                Some(Some(copy)) => r.name = copy,
                Some(None) => return false,
                None => {}
            }
        }
        true
    });
    if let Some(config) = &mut spec.storage.config
        && let Some(Some(copy)) = copy(SourceKind::ConfigMap, &config.config_map_name)
    {
        config.config_map_name = copy;
    }
    spec
}

fn revision_labels(service: &str, revision: i64) -> BTreeMap<String, String> {
    [
        (REVISION_OF_LABEL.to_string(), service.to_string()),
        (REVISION_LABEL.to_string(), revision.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "lucid-operator".to_string(),
        ),
    ]
    .into()
}

fn revision_meta(
    name: String,
    namespace: &str,
    service: &str,
    revision: i64,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(revision_labels(service, revision)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// An immutable copy of a ConfigMap for revision `revision`.
pub fn config_map_copy(
    original: &ConfigMap,
    namespace: &str,
    service: &str,
    revision: i64,
    owner: &OwnerReference,
) -> ConfigMap {
    let name = copy_name(
        service,
        revision,
        original.metadata.name.as_deref().unwrap_or_default(),
    );
    ConfigMap {
        metadata: revision_meta(name, namespace, service, revision, owner),
        data: original.data.clone(),
        binary_data: original.binary_data.clone(),
        immutable: Some(true),
    }
}

/// An immutable copy of a Secret for revision `revision`: a Secret, values never elsewhere.
pub fn secret_copy(
    original: &Secret,
    namespace: &str,
    service: &str,
    revision: i64,
    owner: &OwnerReference,
) -> Secret {
    let name = copy_name(
        service,
        revision,
        original.metadata.name.as_deref().unwrap_or_default(),
    );
    // `stringData` is write-only: a Secret read back holds everything in `data`.
    let mut data = original.data.clone().unwrap_or_default();
    for (k, v) in original.string_data.iter().flatten() {
        data.insert(k.clone(), k8s_openapi::ByteString(v.as_bytes().to_vec()));
    }
    Secret {
        metadata: revision_meta(name, namespace, service, revision, owner),
        data: Some(data),
        type_: original.type_.clone(),
        immutable: Some(true),
        string_data: None,
    }
}

/// The `ControllerRevision` recording `record` as revision `revision`.
pub fn controller_revision(
    record: &RevisionRecord,
    namespace: &str,
    service: &str,
    revision: i64,
    owner: &OwnerReference,
) -> Result<ControllerRevision, serde_json::Error> {
    Ok(ControllerRevision {
        metadata: revision_meta(
            revision_name(service, revision),
            namespace,
            service,
            revision,
            owner,
        ),
        data: Some(RawExtension(serde_json::to_value(record)?)),
        revision,
    })
}

/// Reads a `ControllerRevision` back.
pub fn read_record(revision: &ControllerRevision) -> Result<RevisionRecord, RevisionError> {
    let name = revision.metadata.name.clone().unwrap_or_default();
    let data = revision
        .data
        .as_ref()
        .ok_or_else(|| RevisionError::Unreadable(name.clone(), "no data".into()))?;
    serde_json::from_value(data.0.clone())
        .map_err(|e| RevisionError::Unreadable(name, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn good(revision: i64) -> GoodRevision {
        GoodRevision {
            revision,
            generation: revision,
            ready_at: Time(jiff::Timestamp::from_second(revision).unwrap()),
            hash: format!("h{revision}"),
        }
    }

    #[test]
    fn revision_numbers_only_grow() {
        assert_eq!(next_revision(None, &[], []), 1);
        assert_eq!(next_revision(Some(4), &[good(2)], []), 5);
        // A rolled-back service runs revision 2; the next attempt must not reuse 5's number.
        assert_eq!(next_revision(Some(2), &[good(5), good(2)], []), 6);
        // Nor the number of a failed attempt whose backup is kept.
        assert_eq!(next_revision(Some(2), &[good(2)], [3]), 4);
    }

    #[test]
    fn history_is_newest_first_bounded_and_says_what_fell_out() {
        let (history, pruned) = push_history(&[good(2), good(1)], good(3), 2);
        assert_eq!(
            history.iter().map(|g| g.revision).collect::<Vec<_>>(),
            [3, 2]
        );
        assert_eq!(pruned, [1]);
        // Recording the same revision again changes nothing.
        let (again, pruned) = push_history(&history, good(3), 2);
        assert_eq!(again, history);
        assert!(pruned.is_empty());
    }

    #[test]
    fn copy_names_fit_an_object_name() {
        assert_eq!(copy_name("redis", 3, "lucid-env"), "redis-r3-lucid-env");
        let long = "a".repeat(250);
        let name = copy_name("redis", 3, &long);
        assert!(name.len() <= 253, "{name}");
        assert!(name.starts_with("redis-r3-"));
    }

    #[test]
    fn redirect_points_every_reference_at_its_copy_and_drops_absent_optional_ones() {
        let ls = service(
            "gw",
            r#"
image: {repository: x}
phase: core
env:
  - {name: KEY, valueFrom: {secretKeyRef: {name: keys, key: k}}}
  - {name: MODE, valueFrom: {configMapKeyRef: {name: settings, key: mode, optional: true}}}
  - {name: PLAIN, value: "1"}
envFrom:
  - configMapRef: {name: env}
  - secretRef: {name: gone, optional: true}
storage:
  config: {configMapName: env}
"#,
        );
        let sources = vec![
            Source {
                kind: SourceKind::Secret,
                name: "keys".into(),
                copy: Some("gw-r2-keys".into()),
            },
            Source {
                kind: SourceKind::ConfigMap,
                name: "settings".into(),
                copy: None,
            },
            Source {
                kind: SourceKind::ConfigMap,
                name: "env".into(),
                copy: Some("gw-r2-env".into()),
            },
            Source {
                kind: SourceKind::Secret,
                name: "gone".into(),
                copy: None,
            },
        ];
        let spec = redirect(&ls.spec, &sources);
        let names: Vec<&str> = spec.env.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["KEY", "PLAIN"]);
        let key = spec.env[0].value_from.as_ref().unwrap();
        assert_eq!(key.secret_key_ref.as_ref().unwrap().name, "gw-r2-keys");
        assert_eq!(spec.env_from.len(), 1);
        assert_eq!(
            spec.env_from[0].config_map_ref.as_ref().unwrap().name,
            "gw-r2-env"
        );
        assert_eq!(spec.storage.config.unwrap().config_map_name, "gw-r2-env");
    }

    #[test]
    fn a_secret_copy_is_an_immutable_secret_holding_string_data_too() {
        let original = Secret {
            metadata: ObjectMeta {
                name: Some("keys".into()),
                ..Default::default()
            },
            data: Some([("a".into(), k8s_openapi::ByteString(b"1".to_vec()))].into()),
            string_data: Some([("b".into(), "2".into())].into()),
            ..Default::default()
        };
        let owner = OwnerReference {
            name: "gw".into(),
            ..Default::default()
        };
        let copy = secret_copy(&original, "ns", "gw", 4, &owner);
        assert_eq!(copy.metadata.name.as_deref(), Some("gw-r4-keys"));
        assert_eq!(copy.immutable, Some(true));
        let data = copy.data.unwrap();
        assert_eq!(data["a"].0, b"1");
        assert_eq!(data["b"].0, b"2");
        assert_eq!(copy.metadata.owner_references.unwrap()[0].name, "gw");
        assert_eq!(copy.metadata.labels.unwrap()[REVISION_LABEL], "4");
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let ls = service("gw", "image: {repository: x}\nphase: core");
        let record = RevisionRecord {
            generation: 3,
            spec: ls.spec.clone(),
            sources: vec![],
        };
        let owner = OwnerReference::default();
        let cr = controller_revision(&record, "ns", "gw", 2, &owner).unwrap();
        assert_eq!(cr.metadata.name.as_deref(), Some("gw-r2"));
        assert_eq!(cr.revision, 2);
        assert_eq!(read_record(&cr).unwrap(), record);
    }
}
