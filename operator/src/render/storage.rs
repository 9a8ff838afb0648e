//! Writable paths: data and logs claims (or emptyDirs), the cache and `/tmp` emptyDirs, and
//! the read-only config file.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, KeyToPath, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use super::env::{DATA_DIR, LOGS_DIR};
use super::labels;
use crate::api::{AccessMode, ClaimRetention, LucidService, VolumeKind, VolumeSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimRole {
    Data,
    Logs,
}

impl ClaimRole {
    fn suffix(self) -> &'static str {
        match self {
            ClaimRole::Data => "data",
            ClaimRole::Logs => "logs",
        }
    }
    fn spec(self, ls: &LucidService) -> &VolumeSpec {
        match self {
            ClaimRole::Data => &ls.spec.storage.data,
            ClaimRole::Logs => &ls.spec.storage.logs,
        }
    }
    fn mount_path(self) -> &'static str {
        match self {
            ClaimRole::Data => DATA_DIR,
            ClaimRole::Logs => LOGS_DIR,
        }
    }
}

const ROLES: [ClaimRole; 2] = [ClaimRole::Data, ClaimRole::Logs];

/// `<service>-data`, `<service>-logs`: stable, so a recreated LucidService adopts its data.
pub fn claim_name(service: &str, role: ClaimRole) -> String {
    format!("{service}-{}", role.suffix())
}

/// The claims the spec asks for. Retained claims carry no owner reference: like a
/// StatefulSet's `Retain` policy, deleting the LucidService must not delete a database.
pub fn claims(
    ls: &LucidService,
    namespace: &str,
    owner: &OwnerReference,
) -> Vec<PersistentVolumeClaim> {
    let name = ls.name_any();
    let owned = ls.spec.storage.claim_retention == ClaimRetention::Delete;
    ROLES
        .into_iter()
        .filter(|role| role.spec(ls).kind == VolumeKind::PersistentVolumeClaim)
        .map(|role| {
            let spec = role.spec(ls);
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&name, role)),
                    namespace: Some(namespace.to_string()),
                    labels: Some(labels::common(ls)),
                    owner_references: owned.then(|| vec![owner.clone()]),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec![spec.access_mode.as_str().to_string()]),
                    storage_class_name: spec.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(spec.size.clone()),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                status: None,
            }
        })
        .collect()
}

/// True when a pod holds a ReadWriteOnce claim, so two pods (old and new) must never run at
/// once: the Deployment then uses the Recreate strategy.
/// The data directory is a ReadWriteOnce claim: it may hold a database's files, which two
/// pods (an old and a new one) must never open at once. Logs do not count: log files are
/// only appended to.
pub fn data_on_read_write_once_claim(ls: &LucidService) -> bool {
    let data = ClaimRole::Data.spec(ls);
    data.kind == VolumeKind::PersistentVolumeClaim && data.access_mode == AccessMode::ReadWriteOnce
}

/// Where the config file is mounted, when the spec names one.
pub fn config_file_path(ls: &LucidService) -> Option<String> {
    ls.spec
        .storage
        .config
        .as_ref()
        .map(|_| format!("/app/{}/config.yaml", ls.name_any()))
}

/// Pod volumes and the container's mounts of them.
pub fn volumes(ls: &LucidService) -> (Vec<Volume>, Vec<VolumeMount>) {
    let name = ls.name_any();
    let storage = &ls.spec.storage;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut mount = |volume: &str, path: String, read_only: bool, sub_path: Option<String>| {
        mounts.push(VolumeMount {
            name: volume.to_string(),
            mount_path: path,
            read_only: read_only.then_some(true),
            sub_path,
            ..Default::default()
        })
    };

    for role in ROLES {
        let spec = role.spec(ls);
        let volume_name = role.suffix();
        volumes.push(match spec.kind {
            VolumeKind::PersistentVolumeClaim => Volume {
                name: volume_name.into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&name, role),
                    read_only: None,
                }),
                ..Default::default()
            },
            VolumeKind::EmptyDir => empty_dir(volume_name, None, &spec.size),
        });
        mount(volume_name, role.mount_path().into(), false, None);
    }

    volumes.push(empty_dir("tmp", Some("Memory"), &storage.tmp_size_limit));
    mount("tmp", "/tmp".into(), false, None);
    volumes.push(empty_dir("cache", None, &storage.cache_size_limit));
    mount("cache", format!("/tmp/{name}"), false, None);

    if let (Some(config), Some(path)) = (&storage.config, config_file_path(ls)) {
        volumes.push(Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config.config_map_name.clone(),
                items: Some(vec![KeyToPath {
                    key: config.key.clone(),
                    path: "config.yaml".into(),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        // A file mount, not a directory, so the image's other files under /app/<service>
        // stay visible. subPath mounts do not see updates; the config hash rolls the pods.
        mount("config", path, true, Some("config.yaml".into()));
    }
    (volumes, mounts)
}

fn empty_dir(name: &str, medium: Option<&str>, size: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_string),
            size_limit: Some(Quantity(size.to_string())),
        }),
        ..Default::default()
    }
}
