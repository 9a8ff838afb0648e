use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use pretty_assertions::assert_eq;

use super::*;
use crate::api::is_dns_label;
use crate::render::fixtures::{redis, service};
use crate::render::owner_reference;

fn settings() -> CopyJobSettings {
    CopyJobSettings {
        image: "pickme/lucid-operator:0.4.0".into(),
        active_deadline_seconds: 600,
    }
}

/// A database pinned to a Pi, with a low port (its pods get NET_BIND_SERVICE; the copier
/// must not).
fn mongodb() -> LucidService {
    service(
        "lucid-mongodb",
        r#"
image: {repository: pickme/lucid-mongodb}
phase: foundation
ports: [{name: mongo, port: 80}]
nodeSelector: {kubernetes.io/arch: arm64, lucid.io/disk: ssd}
tolerations: [{key: dedicated, operator: Equal, value: lucid, effect: NoSchedule}]
"#,
    )
}

fn pod_spec(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

#[test]
fn the_backup_claim_is_named_per_revision_owned_and_labelled() {
    let ls = redis();
    let owner = owner_reference(&ls).unwrap();
    let claim = backup_claim(&ls, 7, "2Gi", Some("local-path"), &owner);
    assert_eq!(claim.name_any(), "lucid-redis-backup-r7");
    assert_eq!(claim.namespace().as_deref(), Some("lucid"));
    let labels = claim.labels();
    assert_eq!(labels[BACKUP_OF_LABEL], "lucid-redis");
    assert_eq!(labels[REVISION_LABEL], "7");
    assert_eq!(labels[labels::MANAGED_BY_KEY], labels::MANAGED_BY);
    // The children sweep deletes owned claims labelled with the service that it does not
    // render: a backup claim must never look like one.
    assert!(!labels.contains_key(labels::SERVICE));
    let owners = claim.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].uid, "uid-lucid-redis");
    assert_eq!(owners[0].controller, Some(true));
    let spec = claim.spec.unwrap();
    assert_eq!(spec.access_modes.unwrap(), vec!["ReadWriteOnce"]);
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"],
        Quantity("2Gi".into())
    );
    let default_class = backup_claim(&ls, 7, "2Gi", None, &owner);
    assert_eq!(default_class.spec.unwrap().storage_class_name, None);
}

#[test]
fn names_stay_dns_labels_of_at_most_63_characters() {
    assert_eq!(backup_name("lucid-redis", 3), "lucid-redis-backup-r3");
    assert_eq!(restore_job_name("lucid-redis", 3), "lucid-redis-restore-r3");
    let long_a = format!("{}-a", "x".repeat(61));
    let long_b = format!("{}-b", "x".repeat(61));
    for name in [
        backup_name(&long_a, i64::MAX),
        restore_job_name(&long_a, i64::MAX),
        backup_name(&long_a, 1),
        restore_job_name(&"y-".repeat(31), 12),
    ] {
        assert!(name.len() <= 63, "{name} is {} long", name.len());
        assert!(is_dns_label(&name), "{name}");
    }
    assert_ne!(backup_name(&long_a, 1), backup_name(&long_b, 1));
    assert!(backup_name(&long_a, 1).ends_with("-backup-r1"));
}

#[test]
fn the_backup_job_runs_hardened_like_the_service_pods() {
    let ls = mongodb();
    let job = backup_job(&ls, 4, &settings(), &owner_reference(&ls).unwrap());
    assert_eq!(job.name_any(), "lucid-mongodb-backup-r4");
    assert_eq!(job.owner_references()[0].uid, "uid-lucid-mongodb");
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(2));
    assert_eq!(spec.active_deadline_seconds, Some(600));
    assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
    assert_eq!(spec.ttl_seconds_after_finished, None);

    let pod = pod_spec(&job);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    // The same pod security context as the service's own pods.
    let service_pod = crate::render::pod::pod_spec(&ls);
    let mut expected = service_pod.security_context.clone().unwrap();
    expected.fs_group_change_policy = Some("OnRootMismatch".into());
    assert_eq!(pod.security_context.as_ref(), Some(&expected));
    let security = pod.security_context.as_ref().unwrap();
    assert_eq!(
        (
            security.run_as_user,
            security.run_as_group,
            security.fs_group
        ),
        (Some(65532), Some(65532), Some(65532))
    );
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        security.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.node_selector, service_pod.node_selector);
    assert!(
        pod.node_selector
            .as_ref()
            .unwrap()
            .contains_key("lucid.io/disk")
    );
    assert_eq!(pod.tolerations, service_pod.tolerations);

    let container = &pod.containers[0];
    assert_eq!(container.name, CONTAINER);
    assert_eq!(
        container.image.as_deref(),
        Some("pickme/lucid-operator:0.4.0")
    );
    assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        container.args.as_ref().unwrap(),
        &["backup", "--source", "/data", "--target", "/backup"]
    );
    assert_eq!(
        container.termination_message_policy.as_deref(),
        Some("File")
    );
    assert_eq!(
        container.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    let hardening = container.security_context.as_ref().unwrap();
    assert_eq!(hardening.read_only_root_filesystem, Some(true));
    assert_eq!(hardening.allow_privilege_escalation, Some(false));
    assert_eq!(hardening.privileged, Some(false));
    assert_eq!(hardening.run_as_user, Some(65532));
    let capabilities = hardening.capabilities.as_ref().unwrap();
    assert_eq!(capabilities.drop.as_ref().unwrap(), &["ALL"]);
    // The service binds port 80; the copier binds nothing.
    assert_eq!(capabilities.add, None);
    let resources = container.resources.as_ref().unwrap();
    assert_eq!(
        resources.requests.as_ref().unwrap()["cpu"],
        Quantity("10m".into())
    );
    assert_eq!(
        resources.requests.as_ref().unwrap()["memory"],
        Quantity("16Mi".into())
    );
    assert_eq!(
        resources.limits.as_ref().unwrap()["memory"],
        Quantity("64Mi".into())
    );
}

#[test]
fn a_backup_reads_the_data_read_only_and_a_restore_the_backup() {
    let ls = redis();
    let owner = owner_reference(&ls).unwrap();
    let mounts = |job: &Job| -> Vec<(String, String, Option<bool>)> {
        pod_spec(job).containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.clone(), m.mount_path.clone(), m.read_only))
            .collect()
    };
    let claims = |job: &Job| -> Vec<(String, String)> {
        pod_spec(job)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| {
                let claim = v.persistent_volume_claim.as_ref().unwrap();
                (v.name.clone(), claim.claim_name.clone())
            })
            .collect()
    };
    let backup = backup_job(&ls, 2, &settings(), &owner);
    assert_eq!(
        mounts(&backup),
        vec![
            ("data".into(), "/data".into(), Some(true)),
            ("backup".into(), "/backup".into(), Some(false)),
        ]
    );
    let expected_claims: Vec<(String, String)> = vec![
        ("data".into(), "lucid-redis-data".into()),
        ("backup".into(), "lucid-redis-backup-r2".into()),
    ];
    assert_eq!(claims(&backup), expected_claims);

    let restore = restore_job(&ls, 2, &settings(), &owner);
    assert_eq!(restore.name_any(), "lucid-redis-restore-r2");
    assert_eq!(
        pod_spec(&restore).containers[0].args.as_ref().unwrap(),
        &["restore", "--source", "/backup", "--target", "/data"]
    );
    assert_eq!(
        mounts(&restore),
        vec![
            ("data".into(), "/data".into(), Some(false)),
            ("backup".into(), "/backup".into(), Some(true)),
        ]
    );
    assert_eq!(claims(&restore), expected_claims);
}

#[test]
fn the_copier_pods_are_not_selected_by_the_service() {
    let ls = redis();
    let job = restore_job(&ls, 2, &settings(), &owner_reference(&ls).unwrap());
    let pod_labels = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for key in labels::selector(&ls).keys() {
        assert!(!pod_labels.contains_key(key), "{key}");
    }
    assert!(!pod_labels.contains_key(labels::SERVICE));
    assert_eq!(pod_labels[BACKUP_OF_LABEL], "lucid-redis");
    assert_eq!(pod_labels[STEP_LABEL], "restore");
    assert_eq!(job.labels()[STEP_LABEL], "restore");
    assert_eq!(job.labels()[REVISION_LABEL], "2");
}

// ---- job_outcome ----

fn job(conditions: &[(&str, &str, &str)]) -> Job {
    let mut job = backup_job(
        &redis(),
        1,
        &settings(),
        &owner_reference(&redis()).unwrap(),
    );
    job.metadata.uid = Some("job-uid".into());
    job.status = Some(JobStatus {
        conditions: Some(
            conditions
                .iter()
                .map(|(type_, reason, message)| JobCondition {
                    type_: type_.to_string(),
                    status: "True".into(),
                    reason: Some(reason.to_string()),
                    message: Some(message.to_string()),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    });
    job
}

fn pod(owner_uid: &str, created: i64, state: ContainerState) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("copier-{created}")),
            creation_timestamp: Some(Time(jiff::Timestamp::from_second(created).unwrap())),
            owner_references: Some(vec![OwnerReference {
                uid: owner_uid.into(),
                controller: Some(true),
                kind: "Job".into(),
                api_version: "batch/v1".into(),
                name: "lucid-redis-backup-r1".into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: CONTAINER.into(),
                state: Some(state),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn ended(exit_code: i32, message: &str) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
            message: (!message.is_empty()).then(|| message.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

const SUMMARY: &str = r#"{"op":"backup","files":3,"bytes":1024,"rootHash":"ab12","seconds":0.25}"#;

#[test]
fn a_job_without_a_final_condition_is_running() {
    assert_eq!(job_outcome(&job(&[]), &[]), JobOutcome::Running);
    // The Job has decided to fail but its pod is still terminating: not over yet.
    let deciding = job(&[("FailureTarget", "BackoffLimitExceeded", "...")]);
    let failing = pod("job-uid", 1, ended(1, r#"{"op":"backup","error":"x"}"#));
    assert_eq!(job_outcome(&deciding, &[failing]), JobOutcome::Running);
}

#[test]
fn a_complete_job_gives_the_copiers_summary() {
    let complete = job(&[("Complete", "CompletionsReached", "")]);
    let other_jobs_pod = pod(
        "other-uid",
        9,
        ended(
            0,
            r#"{"op":"backup","files":99,"bytes":0,"rootHash":"zz","seconds":1.0}"#,
        ),
    );
    let failed_first = pod(
        "job-uid",
        1,
        ended(1, r#"{"op":"backup","error":"read error"}"#),
    );
    let succeeded = pod("job-uid", 2, ended(0, SUMMARY));
    let outcome = job_outcome(&complete, &[other_jobs_pod, succeeded, failed_first]);
    let JobOutcome::Succeeded {
        summary: Some(summary),
    } = outcome
    else {
        panic!("expected a summary, got {outcome:?}");
    };
    assert_eq!((summary.files, summary.bytes), (3, 1024));
    assert_eq!(summary.root_hash, "ab12");
    // Its pods already removed: still a success, without the summary.
    assert_eq!(
        job_outcome(&complete, &[]),
        JobOutcome::Succeeded { summary: None }
    );
}

#[test]
fn a_failed_job_says_why_in_the_copiers_words() {
    let failed = job(&[(
        "Failed",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )]);
    let no_space = pod(
        "job-uid",
        3,
        ended(
            1,
            r#"{"op":"backup","error":"no space left on the device holding /backup/data/x","reason":"NoSpace"}"#,
        ),
    );
    let earlier = pod("job-uid", 1, ended(1, r#"{"op":"backup","error":"older"}"#));
    let JobOutcome::Failed { message } = job_outcome(&failed, &[no_space, earlier]) else {
        panic!("expected Failed");
    };
    assert_eq!(
        message,
        "the Job lucid-redis-backup-r1 failed (BackoffLimitExceeded: Job has reached the \
         specified backoff limit): no space left on the device holding /backup/data/x"
    );

    let oom = pod(
        "job-uid",
        1,
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 137,
                reason: Some("OOMKilled".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let JobOutcome::Failed { message } = job_outcome(&failed, &[oom]) else {
        panic!("expected Failed");
    };
    assert!(
        message.ends_with("the copier ended with exit code 137 (OOMKilled)"),
        "{message}"
    );
}

#[test]
fn a_job_past_its_deadline_names_why_the_copier_never_ran() {
    let deadline = job(&[(
        "Failed",
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    )]);
    let pulling = pod(
        "job-uid",
        1,
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ErrImageNeverPull".into()),
                message: Some("image \"pickme/lucid-operator:0.4.0\" is not present".into()),
            }),
            ..Default::default()
        },
    );
    let JobOutcome::Failed { message } = job_outcome(&deadline, &[pulling]) else {
        panic!("expected Failed");
    };
    assert!(message.contains("DeadlineExceeded"), "{message}");
    assert!(
        message.ends_with("the copier never started: ErrImageNeverPull (image \"pickme/lucid-operator:0.4.0\" is not present)"),
        "{message}"
    );
}

#[test]
fn old_backups_beyond_keep_expire_but_never_the_one_in_use() {
    let ls = redis();
    let owner = owner_reference(&ls).unwrap();
    let claims: Vec<ObjectMeta> = [3, 10, 7, 1]
        .into_iter()
        .map(|r| backup_claim(&ls, r, "1Gi", None, &owner).metadata)
        .chain([
            // Another service's backup and a claim without a revision: never touched.
            backup_claim(&mongodb(), 1, "1Gi", None, &owner).metadata,
            ObjectMeta {
                name: Some("lucid-redis-backup-manual".into()),
                labels: Some([(BACKUP_OF_LABEL.to_string(), "lucid-redis".to_string())].into()),
                ..Default::default()
            },
        ])
        .collect();
    assert_eq!(
        expired_backups(&claims, "lucid-redis", 1, None),
        vec![
            "lucid-redis-backup-r7",
            "lucid-redis-backup-r3",
            "lucid-redis-backup-r1"
        ]
    );
    assert_eq!(
        expired_backups(&claims, "lucid-redis", 2, Some(3)),
        vec!["lucid-redis-backup-r1"]
    );
    assert!(expired_backups(&claims, "lucid-redis", 4, None).is_empty());
    assert_eq!(
        expired_backups(&claims, "lucid-redis", 0, Some(10)).len(),
        3
    );
}
