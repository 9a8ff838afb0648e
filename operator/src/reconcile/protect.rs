//! Data protected around a stateful update: the steps, each resumable. A service whose data
//! claim is replaced with `Recreate` (a database) gets a verified copy of `/app/data` after
//! its old pods stopped and before the new revision starts; if the new revision fails and
//! is rolled back, the copy is restored before the old revision starts again. The copying is
//! done by Jobs running the operator's own image (`crate::backup`, `render::backup`).
//!
//! Every step is derived from what is there: the Deployment scaled to zero, no pods left,
//! the Job and its outcome. The step under way is also in the status, and a step's result
//! is written to the status before the next one starts, so an operator killed at any point
//! (or a new leader) carries on, and never copies over data a started revision has since
//! changed.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, ResourceExt};

use super::context::Context;
use crate::api::{BackupRecord, LucidService, VolumeKind};
use crate::error::Error;
use crate::render::backup::{
    CopyJobSettings, JobOutcome, backup_claim, backup_job, job_outcome, restore_job,
};
use crate::render::{labels, recreates};

/// The field manager of the scale-down: not the operator's apply manager, so the next
/// apply (which sets `replicas` again, forced) simply takes the field back.
const SCALER: &str = "lucid-operator-copy";

/// Whether updates of `ls` are protected: its pods stop before new ones start and its data
/// is a claim, backups are on, and the operator knows its own image (the chart says it).
pub fn protects(ls: &LucidService, copier: Option<&CopyJobSettings>) -> bool {
    copier.is_some()
        && ls.spec.backup.enabled
        && recreates(ls)
        && ls.spec.storage.data.kind == VolumeKind::PersistentVolumeClaim
}

/// Where a backup or restore Job stands.
pub enum CopyProgress<T> {
    /// Not finished; the message says what it waits for.
    Waiting(String),
    Done(T),
    /// Failed for good; the message says why and what to look at.
    Failed(String),
}

/// Stops the service's pods: the Deployment at zero replicas and no pod of it left (a
/// terminating pod still has the volume mounted).
async fn stopped(
    ctx: &Context,
    ls: &LucidService,
    namespace: &str,
    live: &Deployment,
) -> Result<bool, Error> {
    let name = ls.name_any();
    if live.spec.as_ref().and_then(|s| s.replicas) != Some(0) {
        ctx.leadership.ensure()?;
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
        let params = PatchParams {
            field_manager: Some(SCALER.into()),
            ..Default::default()
        };
        api.patch(
            &name,
            &params,
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
        )
        .await?;
        return Ok(false);
    }
    let left = ctx.caches.pods.state().iter().any(|p| {
        p.metadata.namespace.as_deref() == Some(namespace)
            && p.labels().get(labels::SERVICE).map(String::as_str) == Some(name.as_str())
    });
    Ok(!left)
}

/// Copies the data before revision `revision` starts. `Done` carries what to record.
pub async fn back_up(
    ctx: &Context,
    ls: &LucidService,
    namespace: &str,
    live: &Deployment,
    revision: i64,
    copier: &CopyJobSettings,
) -> Result<CopyProgress<BackupRecord>, Error> {
    if !stopped(ctx, ls, namespace, live).await? {
        return Ok(CopyProgress::Waiting(format!(
            "stopping the old pods before copying /app/data (revision {revision} starts after the backup)"
        )));
    }
    let owner = crate::render::owner_reference(ls)?;
    let data = &ls.spec.storage.data;
    let size = ls.spec.backup.size.as_deref().unwrap_or(&data.size);
    let class = ls
        .spec
        .backup
        .storage_class_name
        .as_deref()
        .or(data.storage_class_name.as_deref());
    let claim = backup_claim(ls, revision, size, class, &owner);
    create(
        ctx,
        Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace),
        &claim,
    )
    .await?;
    let job = backup_job(ls, revision, copier, &owner);
    Ok(match run(ctx, namespace, &job).await? {
        JobOutcome::Running => CopyProgress::Waiting(format!(
            "copying /app/data to claim {} (Job {})",
            claim.name_any(),
            job.name_any()
        )),
        JobOutcome::Succeeded { summary } => {
            let summary = summary.unwrap_or_else(|| crate::backup::Summary {
                op: "backup".into(),
                files: 0,
                bytes: 0,
                root_hash: String::new(),
                seconds: 0.0,
                already_complete: true,
                skipped: 0,
                written: 0,
                removed: 0,
            });
            CopyProgress::Done(BackupRecord {
                revision,
                claim: claim.name_any(),
                files: summary.files,
                bytes: summary.bytes,
                root_hash: summary.root_hash,
                // Set by the caller, which knows the rendering the backup precedes.
                for_hash: String::new(),
                at: Time(jiff::Timestamp::now()),
            })
        }
        JobOutcome::Failed { message } => CopyProgress::Failed(format!(
            "the backup of /app/data to claim {} failed, so the update did not start: {message}",
            claim.name_any()
        )),
    })
}

/// Makes the data what backup `backup` holds, before the old revision starts again.
pub async fn restore(
    ctx: &Context,
    ls: &LucidService,
    namespace: &str,
    live: &Deployment,
    backup: &BackupRecord,
    copier: &CopyJobSettings,
) -> Result<CopyProgress<()>, Error> {
    if !stopped(ctx, ls, namespace, live).await? {
        return Ok(CopyProgress::Waiting(format!(
            "stopping the failed revision's pods before restoring /app/data from claim {}",
            backup.claim
        )));
    }
    let owner = crate::render::owner_reference(ls)?;
    let job = restore_job(ls, backup.revision, copier, &owner);
    Ok(match run(ctx, namespace, &job).await? {
        JobOutcome::Running => CopyProgress::Waiting(format!(
            "restoring /app/data from claim {} (Job {})",
            backup.claim,
            job.name_any()
        )),
        JobOutcome::Succeeded { .. } => CopyProgress::Done(()),
        JobOutcome::Failed { message } => CopyProgress::Failed(format!(
            "restoring /app/data from claim {} failed, so the old revision was not started on \
             data the failed revision may have changed: {message}. The copy is intact in the \
             claim; fix the cause and `kubectl lucid retry {}`",
            backup.claim,
            ls.name_any()
        )),
    })
}

/// Creates the Job (one made by an earlier try is kept) and reads what it came to; a
/// finished Job is deleted with its pods once read (the outcome is then in the status).
async fn run(ctx: &Context, namespace: &str, job: &Job) -> Result<JobOutcome, Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    create(ctx, jobs.clone(), job).await?;
    let name = job.name_any();
    let Some(live) = jobs.get_opt(&name).await? else {
        return Ok(JobOutcome::Running);
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let own = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await?;
    let outcome = job_outcome(&live, &own.items);
    if !matches!(outcome, JobOutcome::Running) {
        ctx.leadership.ensure()?;
        let delete = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match jobs.delete(&name, &delete).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(outcome)
}

async fn create<K>(ctx: &Context, api: Api<K>, object: &K) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    ctx.leadership.ensure()?;
    let post = PostParams {
        field_manager: Some(super::FIELD_MANAGER.into()),
        ..Default::default()
    };
    Ok(super::revisions::created(api.create(&post, object).await)?)
}

/// Deletes the backup claims that are no longer kept.
pub async fn drop_backups(
    ctx: &Context,
    ls: &LucidService,
    namespace: &str,
    dropped: &[BackupRecord],
) -> Result<(), Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    for backup in dropped {
        ctx.leadership.ensure()?;
        match claims.delete(&backup.claim, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(service = %ls.name_any(), namespace, claim = %backup.claim, "removed a backup no longer kept");
    }
    Ok(())
}
