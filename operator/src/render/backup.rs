//! The backup claim and the backup and restore Jobs of a stateful update (issue 18), and
//! how a finished Job is read. Pure: the reconciler creates what these return and passes in
//! what it watched.
//!
//! The Jobs run `lucid-operator backup|restore` ([`crate::backup`]) from the operator's own
//! image, hardened like the service's pods and as the service's user, so the copy's files
//! belong to the same user as the data's.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    Pod, PodSpec, PodTemplateSpec, ResourceRequirements, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use super::{ClaimRole, claim_name, labels, pod};
use crate::api::LucidService;
use crate::backup::Summary;

/// On the backup claim and both Jobs: the service whose data they hold.
pub const BACKUP_OF_LABEL: &str = "lucid.io/backup-of";
/// On the backup claim and both Jobs: the revision whose start the backup precedes.
pub const REVISION_LABEL: &str = "lucid.io/revision";
/// On both Jobs and their pods: `backup` or `restore`.
pub const STEP_LABEL: &str = "lucid.io/copy-step";
/// Where the Jobs mount the service's data claim and the backup claim.
pub const DATA_MOUNT: &str = "/data";
pub const BACKUP_MOUNT: &str = "/backup";
/// The Jobs' one container; its termination message is the copier's JSON line.
pub const CONTAINER: &str = "copy";
/// Kubernetes object names that end up in a label (a Job's `job-name`) are at most 63.
const MAX_NAME: usize = 63;

/// What the Jobs need that the LucidService does not say.
#[derive(Clone, Debug, PartialEq)]
pub struct CopyJobSettings {
    /// The operator's own image (on the node already; the copier is its binary).
    pub image: String,
    /// The Job fails after this long, whatever its pods are doing (a stuck mount, an image
    /// that cannot be pulled), so the update fails with a reason instead of waiting.
    pub active_deadline_seconds: i64,
}

/// A Job's step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyStep {
    Backup,
    Restore,
}

impl CopyStep {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyStep::Backup => "backup",
            CopyStep::Restore => "restore",
        }
    }
}

/// What a backup or restore Job came to.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    /// Not finished (includes a pod still being retried, or one failing whose Job has not
    /// given up yet: a new copier must not start over a running one).
    Running,
    /// The copier exited 0 (for a backup: the claim holds a verified copy with `COMPLETE`).
    /// The summary is None only when the pod was removed before it was read; the Job's
    /// Complete condition is still the copier's word.
    Succeeded { summary: Option<Summary> },
    /// The Job gave up; the message says why, with the copier's own error when it gave one.
    Failed { message: String },
}

/// `<service>-backup-r<revision>`: the backup claim and the backup Job.
pub fn backup_name(service: &str, revision: i64) -> String {
    object_name(service, CopyStep::Backup, revision)
}

/// `<service>-restore-r<revision>`: the restore Job.
pub fn restore_job_name(service: &str, revision: i64) -> String {
    object_name(service, CopyStep::Restore, revision)
}

/// Kept within 63 characters: a service name may take 63 alone. Shortened names keep a
/// hash of the whole service name, so two long names sharing a prefix never collide.
fn object_name(service: &str, step: CopyStep, revision: i64) -> String {
    let suffix = format!("-{}-r{revision}", step.as_str());
    let full = format!("{service}{suffix}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = &blake3::hash(service.as_bytes()).to_hex()[..8];
    let keep = MAX_NAME.saturating_sub(suffix.len() + hash.len() + 1);
    // Service names are DNS labels (ASCII), so any byte index is a char boundary.
    let prefix = service[..keep.min(service.len())].trim_end_matches('-');
    format!("{prefix}-{hash}{suffix}")
}

/// The labels of the claim and the Jobs: the service's common labels without
/// `lucid.io/service`, plus whose backup it is and of which revision. Without
/// `lucid.io/service` the children sweep (`delete_orphans`) never takes a backup claim for
/// an orphaned data claim; retention of backups is the backup logic's own decision.
fn backup_labels(ls: &LucidService, revision: i64) -> BTreeMap<String, String> {
    let mut labels = labels::common(ls);
    labels.remove(labels::SERVICE);
    labels.insert(BACKUP_OF_LABEL.into(), ls.name_any());
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    labels
}

/// The claim a backup is written to. Owned by the LucidService, so it goes with it.
pub fn backup_claim(
    ls: &LucidService,
    revision: i64,
    size: &str,
    storage_class: Option<&str>,
    owner: &OwnerReference,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(backup_name(&ls.name_any(), revision)),
            namespace: ls.namespace(),
            labels: Some(backup_labels(ls, revision)),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage_class.map(str::to_string),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(size.to_string()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The Job copying the service's data claim into the backup claim of `revision`. The data
/// is mounted read-only: a backup can never change what it protects.
pub fn backup_job(
    ls: &LucidService,
    revision: i64,
    settings: &CopyJobSettings,
    owner: &OwnerReference,
) -> Job {
    copy_job(ls, revision, CopyStep::Backup, settings, owner)
}

/// The Job making the service's data claim equal to the backup claim of `revision`. The
/// backup is mounted read-only: a restore can never damage the copy it restores from.
pub fn restore_job(
    ls: &LucidService,
    revision: i64,
    settings: &CopyJobSettings,
    owner: &OwnerReference,
) -> Job {
    copy_job(ls, revision, CopyStep::Restore, settings, owner)
}

fn copy_job(
    ls: &LucidService,
    revision: i64,
    step: CopyStep,
    settings: &CopyJobSettings,
    owner: &OwnerReference,
) -> Job {
    let service = ls.name_any();
    let (name, source, target) = match step {
        CopyStep::Backup => (backup_name(&service, revision), DATA_MOUNT, BACKUP_MOUNT),
        CopyStep::Restore => (
            restore_job_name(&service, revision),
            BACKUP_MOUNT,
            DATA_MOUNT,
        ),
    };
    let mut job_labels = backup_labels(ls, revision);
    job_labels.insert(STEP_LABEL.into(), step.as_str().into());
    // The pods must not carry the service's selector labels: its Service would send them
    // traffic and its NetworkPolicy would select them.
    let mut pod_labels = job_labels.clone();
    for key in labels::selector(ls).keys() {
        pod_labels.remove(key);
    }

    let claim_volume = |volume: &str, claim: String| Volume {
        name: volume.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim,
            read_only: None,
        }),
        ..Default::default()
    };
    let mount = |volume: &str, path: &str, read_only: bool| VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    };

    let mut security = pod::pod_security(ls);
    // The data claim's group is already the fsGroup (the service's pods mounted it): a
    // recursive chown of a large data directory on every backup would only cost time.
    security.fs_group_change_policy = Some("OnRootMismatch".into());

    let container = Container {
        name: CONTAINER.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        // Arguments only: the image's entrypoint is the operator binary (images/build.sh).
        args: Some(vec![
            step.as_str().into(),
            "--source".into(),
            source.into(),
            "--target".into(),
            target.into(),
        ]),
        volume_mounts: Some(vec![
            mount("data", DATA_MOUNT, step == CopyStep::Backup),
            mount("backup", BACKUP_MOUNT, step == CopyStep::Restore),
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("10m".into())),
                ("memory".to_string(), Quantity("16Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("64Mi".into()),
            )])),
            ..Default::default()
        }),
        security_context: Some(pod::hardened_container(ls, Vec::new())),
        termination_message_path: Some(crate::backup::cli::TERMINATION_LOG.into()),
        termination_message_policy: Some("File".into()),
        ..Default::default()
    };

    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: ls.namespace(),
            labels: Some(job_labels),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            active_deadline_seconds: Some(settings.active_deadline_seconds),
            completions: Some(1),
            parallelism: Some(1),
            // A retry starts only once the failed pod is gone: two copiers must never write
            // the same claim at once.
            pod_replacement_policy: Some("Failed".into()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    restart_policy: Some("Never".into()),
                    volumes: Some(vec![
                        claim_volume("data", claim_name(&service, ClaimRole::Data)),
                        claim_volume("backup", backup_name(&service, revision)),
                    ]),
                    security_context: Some(security),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    // Where the service runs, so a node-local volume (local-path) is reachable.
                    node_selector: (!ls.spec.node_selector.is_empty())
                        .then(|| ls.spec.node_selector.clone()),
                    tolerations: Some(super::pod::tolerations(ls)),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The backup claims of `service` to delete so that at most `keep` remain: the newest
/// revisions stay, and `in_use` (the backup an unfinished update or rollback still needs)
/// always stays, even beyond `keep`. Claims are read from their labels; one without a
/// readable revision is never chosen (it was not made by this code).
pub fn expired_backups<'a>(
    claims: impl IntoIterator<Item = &'a ObjectMeta>,
    service: &str,
    keep: usize,
    in_use: Option<i64>,
) -> Vec<String> {
    let mut backups: Vec<(i64, &str)> = claims
        .into_iter()
        .filter(|m| {
            m.labels
                .as_ref()
                .and_then(|l| l.get(BACKUP_OF_LABEL))
                .is_some_and(|s| s == service)
        })
        .filter_map(|m| {
            let revision = m.labels.as_ref()?.get(REVISION_LABEL)?.parse().ok()?;
            Some((revision, m.name.as_deref()?))
        })
        .collect();
    backups.sort_by_key(|b| std::cmp::Reverse(b.0));
    backups
        .into_iter()
        .skip(keep)
        .filter(|(revision, _)| Some(*revision) != in_use)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// What `job` came to, from its conditions and, for the copier's own summary or error, the
/// termination message of its pods' container (`pods` may hold other pods: only the Job's
/// are read).
pub fn job_outcome(job: &Job, pods: &[Pod]) -> JobOutcome {
    let condition = |type_: &str| {
        job.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == type_ && c.status == "True"))
    };
    let mut own: Vec<&Pod> = pods.iter().filter(|p| belongs_to(p, job)).collect();
    // Newest last, so the last message read is the latest attempt's.
    own.sort_by_key(|p| p.creation_timestamp());

    if condition("Complete").is_some() {
        let summary = own
            .iter()
            .rev()
            .filter_map(|p| termination(p))
            .find_map(|t| {
                t.message
                    .as_deref()
                    .and_then(|m| serde_json::from_str(m).ok())
            });
        return JobOutcome::Succeeded { summary };
    }
    let Some(failed) = condition("Failed") else {
        return JobOutcome::Running;
    };
    let mut message = format!(
        "the Job {} failed ({}: {})",
        job.name_any(),
        failed.reason.as_deref().unwrap_or("Failed"),
        failed.message.as_deref().unwrap_or("no message")
    );
    if let Some(cause) = own.iter().rev().find_map(|p| pod_cause(p)) {
        message.push_str(": ");
        message.push_str(&cause);
    }
    JobOutcome::Failed { message }
}

fn belongs_to(pod: &Pod, job: &Job) -> bool {
    match job.uid() {
        Some(uid) => pod
            .owner_references()
            .iter()
            .any(|r| r.uid == uid && r.controller == Some(true)),
        None => pod.labels().get("batch.kubernetes.io/job-name") == Some(&job.name_any()),
    }
}

fn termination(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    copier_status(pod)?.state.as_ref()?.terminated.as_ref()
}

fn copier_status(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == CONTAINER)
}

/// Why one pod did not succeed: the copier's `error`, else how the container ended (an
/// OOM kill, a signal), else why it never started (an image that cannot be pulled).
fn pod_cause(pod: &Pod) -> Option<String> {
    if let Some(ended) = termination(pod) {
        if ended.exit_code == 0 {
            return None;
        }
        let copier_error = ended
            .message
            .as_deref()
            .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
            .and_then(|v| v.get("error")?.as_str().map(str::to_string));
        return Some(copier_error.unwrap_or_else(|| {
            format!(
                "the copier ended with exit code {} ({})",
                ended.exit_code,
                ended.reason.as_deref().unwrap_or("no reason given")
            )
        }));
    }
    if let Some(unscheduled) = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| {
            c.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
    {
        // A backup claim bound on another node than the data (an Immediate storage class).
        return Some(format!(
            "the copier's pod could not be scheduled: {}",
            unscheduled.message.as_deref().unwrap_or("no message")
        ));
    }
    let waiting = copier_status(pod)?.state.as_ref()?.waiting.as_ref()?;
    Some(format!(
        "the copier never started: {}{}",
        waiting.reason.as_deref().unwrap_or("Waiting"),
        waiting
            .message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    ))
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
