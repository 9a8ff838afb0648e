//! The LucidService controller: validate -> assess the graph (once: broken, or whose turn)
//! -> dereference -> render -> choose the target (the spec, or a revision rolled back to) ->
//! gate -> apply -> observe -> judge (roll back a failed update, record a Ready one) ->
//! status. Every step that finds a problem the user must fix ends the reconcile with a
//! condition, not an error; errors are for the API server failing us, each tagged with the
//! step it failed in (`error::Step`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::error_boundary::{DeserializeGuard, InvalidObject};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::apply::{ApplyFailure, api_message, apply_planned, delete_orphans, plan};
use super::context::Context;
use super::instrument::{Reconciled, backoff_key, instrumented};
use super::protect::{self, CopyProgress};
use super::references::dereference;
use super::revisions::{self, Recorded};
use super::status_patch;
use super::unobserved;
use crate::api::{
    BackupRecord, DataProtection, GoodRevision, LucidService, LucidServiceStatus, OnFailure,
    RollbackStatus,
};
use crate::error::{AtStep, Error, Step};
use crate::graph::{Broken, Gate, NamedObject, Snapshot};
use crate::render::{RenderInputs, render};
use crate::revision::{next_revision, push_history};
use crate::status::{ConditionType, Health, Reason, Rollout, State, rollout, set_condition};
use crate::upgrade::{
    Attempt, OnFailed, attempt_key, failure, follows_phase, on_failed, rollback_holds,
    rolled_back_itself, rolled_back_message,
};
use crate::validate;

const CONTROLLER: &str = "lucidservice";

pub async fn reconcile(
    guard: Arc<DeserializeGuard<LucidService>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let reconcile = async {
        match &guard.0 {
            Ok(ls) => match ctx.current(ls) {
                Some(newer) => reconcile_service(&newer, &ctx).await,
                None => reconcile_service(ls, &ctx).await,
            },
            Err(invalid) => report_invalid(invalid, &ctx).await,
        }
    };
    instrumented(CONTROLLER, guard.as_ref(), &ctx, reconcile).await
}

/// What one reconcile decided: the health to report and the Deployment it is read from.
struct Outcome {
    health: Health,
    deployment: Option<Deployment>,
    waiting_on: Option<String>,
    /// A call to the API server failed: retried with backoff, the reason shown meanwhile.
    retry: bool,
    /// The revisions to report; None keeps what the status says (the reconcile stopped
    /// before it knew).
    revisions: Option<Revisions>,
    /// Come back this soon: a step of a stateful update is under way (its Job is not
    /// watched) or has just recorded its result.
    again: Option<Duration>,
}

/// The revision part of the status.
#[derive(Clone, Debug, Default, PartialEq)]
struct Revisions {
    revision: Option<i64>,
    hash: Option<String>,
    history: Vec<GoodRevision>,
    rollback: Option<RollbackStatus>,
    data_protection: Option<DataProtection>,
    backups: Vec<BackupRecord>,
}

impl Revisions {
    /// What the status says now.
    fn of(status: &LucidServiceStatus) -> Self {
        Revisions {
            revision: status.revision,
            hash: status.revision_hash.clone(),
            history: status.history.clone(),
            rollback: status.rollback.clone(),
            data_protection: status.data_protection.clone(),
            backups: status.backups.clone(),
        }
    }
}

impl Outcome {
    fn degraded(reason: Reason, message: String, deployment: Option<Deployment>) -> Self {
        let health = Health::Degraded {
            reason: reason.into(),
            message,
        };
        Self {
            health,
            deployment,
            waiting_on: None,
            retry: false,
            revisions: None,
            again: None,
        }
    }

    /// `seen` exists but is not in the cache yet: its watch event wakes this service.
    fn not_yet_observed(seen: NamedObject<'_>, deployment: Option<Deployment>) -> Self {
        let what = match seen {
            NamedObject::Phase(name) => format!("LucidPhase {name}"),
            NamedObject::Service(name) => format!("LucidService {name}"),
        };
        Self {
            health: Health::Waiting {
                reason: Reason::NotYetObserved.into(),
                message: format!(
                    "{what} was just created: going on once the operator's watch has delivered it"
                ),
            },
            deployment,
            waiting_on: Some(seen.waiting_on()),
            retry: false,
            revisions: None,
            again: None,
        }
    }

    /// The API server failed a call (not a refusal of what we sent): shown on the object,
    /// retried with backoff, cleared by the next reconcile that gets through.
    fn failed(reason: Reason, message: String, deployment: Option<Deployment>) -> Self {
        Self {
            retry: true,
            ..Self::degraded(reason, message, deployment)
        }
    }
}

async fn reconcile_service(ls: &LucidService, ctx: &Context) -> Result<Reconciled, Error> {
    if ls.meta().deletion_timestamp.is_some() {
        // The garbage collector removes the owned children.
        return Ok(Reconciled::done(Action::await_change(), "Deleting"));
    }
    let namespace = ls.namespace().unwrap_or_default();
    let name = ls.name_any();
    let existing = ctx
        .caches
        .deployments
        .get(&ObjectRef::new(&name).within(&namespace))
        .map(|d| (*d).clone());

    let view = ctx.namespace_view(&namespace);
    let snapshot = view.snapshot();
    let mut outcome = match decide(ls, ctx, &namespace, &snapshot, existing.clone()).await {
        Ok(outcome) => outcome,
        // A call the API server failed (a read, a delete, a revision or backup step): shown
        // on the object under the step's reason, and retried.
        Err(Error::Api { step, source }) => {
            ctx.metrics.api_error("get", &source);
            tracing::warn!(service = %name, %namespace, ?step, error = %api_message(&source), "API call failed");
            Outcome::failed(step.reason(), api_message(&source), existing)
        }
        Err(Error::Kube(error)) => {
            ctx.metrics.api_error("get", &error);
            tracing::warn!(service = %name, %namespace, error = %api_message(&error), "API call failed");
            Outcome::failed(Reason::ApiCallFailed, api_message(&error), existing)
        }
        Err(other) => return Err(other),
    };
    let key = backoff_key(ls);
    let retry = outcome.retry.then(|| ctx.backoff(key.clone()));
    if let (Some(delay), Health::Degraded { message, .. }) = (retry, &mut outcome.health) {
        message.push_str(&format!("; retrying in {}s", delay.as_secs()));
    }
    let not_ready = snapshot.dependencies_not_ready(ls);
    ctx.metrics
        .dependencies(&namespace, &name, not_ready.is_empty());
    tracing::debug!(service = %name, %namespace, state = outcome.health.state().as_str(), reason = outcome.health.reason(), "service reconciled");
    write_status(ls, ctx, &outcome, &snapshot, &not_ready).await?;
    let state = outcome.health.state().as_str();
    if let Some(delay) = retry {
        return Ok(Reconciled {
            action: Action::requeue(delay),
            outcome: state.into(),
            retrying: Some(outcome.health.reason().to_string()),
        });
    }
    let action = match outcome.health {
        _ if outcome.again.is_some() => Action::requeue(outcome.again.unwrap_or_default()),
        // Re-check now and then in case something was changed behind our back.
        Health::Ready { .. } => super::resync(Duration::from_secs(600)),
        Health::Waiting { reason, .. } if *reason == Reason::NotYetObserved => {
            Action::requeue(unobserved::RECHECK)
        }
        // Watches on every child, services, phases, ConfigMaps and Secrets wake the rest.
        _ => super::resync(Duration::from_secs(300)),
    };
    Ok(Reconciled::done(action, state))
}

/// The pipeline: validate, assess the graph, dereference, render, choose the target (the
/// spec, or a revision rolled back to), converge on it (plan, gate, apply, observe), judge
/// (a failed update rolls back; a Ready one is recorded). Each step that finds something
/// the user must fix ends here with a condition.
async fn decide(
    ls: &LucidService,
    ctx: &Context,
    namespace: &str,
    snapshot: &Snapshot<'_>,
    existing: Option<Deployment>,
) -> Result<Outcome, Error> {
    let problems = validate::problems(ls);
    if !problems.is_empty() {
        return Ok(Outcome::degraded(
            Reason::InvalidSpec,
            problems.join("; "),
            existing,
        ));
    }

    if let Some(missing) = snapshot.missing(ls) {
        let reported = ls.status.as_ref().is_some_and(|status| {
            unobserved::already_reported(
                &status.conditions,
                status.observed_generation,
                ls.metadata.generation,
                missing.reason(),
            )
        });
        if !reported
            && let Some(seen) =
                unobserved::first_unobserved(ctx, namespace, &missing.objects()).await
        {
            return Ok(Outcome::not_yet_observed(seen, existing));
        }
    }
    // The graph is assessed once: a broken one is reported here; otherwise whether it is
    // this service's turn is kept for the steps that need it (backup, apply).
    let gate = match snapshot.gate(ls) {
        Ok(gate) => gate,
        Err(Broken { reason, message }) => {
            return Ok(Outcome::degraded(reason, message, existing));
        }
    };

    let config_hash = match dereference(&ctx.client, &ctx.contents, &ctx.watched(), namespace, ls)
        .await
        .at(Step::ReadConfig)?
    {
        Ok(hash) => hash,
        Err(missing) => {
            let reason = missing[0].reason;
            let message = missing
                .iter()
                .map(|m| m.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(Outcome::degraded(reason, message, existing));
        }
    };

    let desired = render(
        ls,
        &RenderInputs {
            config_hash: config_hash.clone(),
            policy: ctx.policy,
        },
    )?;
    let desired_hash = desired.applied_hash().unwrap_or_default().to_string();
    let attempt = Attempt::of(ls, &desired_hash);
    let name = ls.name_any();
    let old = ls.status.clone().unwrap_or_default();
    let phase = snapshot.phase(&ls.spec.phase);
    let policy = phase.map(|p| p.spec.on_failure).unwrap_or_default();
    let phase_ready_revision = phase
        .and_then(|p| p.status.as_ref()?.last_ready.as_ref()?.revisions.get(&name))
        .copied();

    let mut rollback = choose_rollback(
        ls,
        ctx,
        snapshot,
        &old,
        &attempt,
        policy,
        phase_ready_revision,
    )
    .await;
    let mut history = old.history.clone();
    let backups = old.backups.clone();
    let mut existing = existing;
    loop {
        let (children, revision, revision_hash) = match &rollback {
            None => {
                let revision = attempt_revision(&old, &attempt, &history);
                (desired.clone(), Some(revision), desired_hash.clone())
            }
            Some(back) => {
                let Some(record) = revisions::load(
                    &ctx.client,
                    &ctx.revisions,
                    namespace,
                    &name,
                    back.to_revision,
                )
                .await
                .at(Step::Revisions)?
                else {
                    let mut outcome = Outcome::degraded(
                        Reason::RevisionNotFound,
                        format!(
                            "revision {} to roll back to is no longer kept (ControllerRevision {} is gone); fix the spec",
                            back.to_revision,
                            crate::revision::revision_name(&name, back.to_revision)
                        ),
                        existing,
                    );
                    outcome.revisions = Some(Revisions {
                        history,
                        rollback: rollback.clone(),
                        ..Revisions::of(&old)
                    });
                    return Ok(outcome);
                };
                let mut back_then = ls.clone();
                back_then.spec = crate::revision::redirect(&record.spec, &record.sources);
                let children = render(
                    &back_then,
                    &RenderInputs {
                        config_hash: config_hash_of_revision(&record),
                        policy: ctx.policy,
                    },
                )?;
                let hash = children.applied_hash().unwrap_or_default().to_string();
                (children, Some(back.to_revision), hash)
            }
        };
        // A stateful update: its data copied once the old pods stopped, before the new
        // revision starts; a rollback of one: the copy restored before the old one starts.
        if let (Some(copier), Some(live)) = (ctx.copier.as_ref(), existing.as_ref())
            && protect::protects(ls, Some(copier))
        {
            let protection = match &rollback {
                None => back_up_first(
                    ls, ctx, namespace, &gate, &old, live, &attempt, revision, copier,
                )
                .await
                .at(Step::DataProtection)?,
                Some(back) => restore_first(ls, ctx, namespace, &old, live, back, copier)
                    .await
                    .at(Step::DataProtection)?,
            };
            match protection {
                Protection::Proceed => {}
                Protection::Report(outcome) => return Ok(*outcome),
                Protection::BackupFailed(message) => {
                    let back = RollbackStatus {
                        failed_generation: attempt.generation,
                        failed_hash: desired_hash.clone(),
                        retry: attempt.retry.map(str::to_string),
                        to_revision: old.revision.unwrap_or_default(),
                        reason: Reason::BackupFailed.into(),
                        message,
                        restored_from: None,
                        cause: None,
                        at: Time(jiff::Timestamp::now()),
                    };
                    announce_rollback(ctx, ls, &back).await;
                    rollback = Some(back);
                    continue;
                }
            }
        }
        let gated = rollback.is_none();
        let (deployment, mut health) =
            match converge(ls, ctx, namespace, &gate, &children, existing, gated).await? {
                Converged::Stopped(mut outcome) => {
                    outcome.revisions = Some(Revisions {
                        history,
                        rollback,
                        data_protection: None,
                        ..Revisions::of(&old)
                    });
                    return Ok(outcome);
                }
                Converged::Live { deployment, health } => (deployment, health),
            };
        match &rollback {
            None => {
                let live_is_desired = applied_hash(&deployment) == Some(desired_hash.as_str());
                if let Some((reason, message)) = failure(&health).filter(|_| live_is_desired) {
                    match on_failed(policy, &history, &attempt, phase_ready_revision) {
                        OnFailed::RollBack(to) => {
                            let back = RollbackStatus {
                                failed_generation: attempt.generation,
                                failed_hash: desired_hash.clone(),
                                retry: attempt.retry.map(str::to_string),
                                to_revision: to,
                                reason: reason.to_string(),
                                message: message.to_string(),
                                cause: None,
                                restored_from: None,
                                at: Time(jiff::Timestamp::now()),
                            };
                            announce_rollback(ctx, ls, &back).await;
                            rollback = Some(back);
                            existing = Some(deployment);
                            continue;
                        }
                        OnFailed::Stay => {
                            if !history.is_empty() && policy == OnFailure::Halt {
                                health = Health::Degraded {
                                    reason: reason.to_string(),
                                    message: format!(
                                        "{message}; the update of generation {} failed and phase {}'s onFailure is Halt: fix the spec, or `kubectl lucid retry {name}` once the cause is gone",
                                        attempt.generation, ls.spec.phase
                                    ),
                                };
                            }
                        }
                    }
                }
                if health.is_ready()
                    && let Some(revision) = revision
                    && !history.iter().any(|g| g.revision == revision)
                {
                    let recorded = revisions::record(
                        &ctx.client,
                        &ctx.leadership,
                        ls,
                        namespace,
                        revision,
                        &config_hash,
                    )
                    .await
                    .at(Step::Revisions)?;
                    if recorded == Recorded::Done {
                        let good = GoodRevision {
                            revision,
                            generation: attempt.generation,
                            ready_at: Time(jiff::Timestamp::now()),
                            hash: desired_hash.clone(),
                        };
                        let (kept, pruned) =
                            push_history(&history, good, ls.spec.revision_history_limit);
                        history = kept;
                        if !pruned.is_empty() {
                            revisions::prune(
                                &ctx.client,
                                &ctx.leadership,
                                &ctx.revisions,
                                namespace,
                                &name,
                                &pruned,
                            )
                            .await
                            .at(Step::Revisions)?;
                        }
                    }
                }
            }
            Some(back) => {
                health = match health {
                    Health::Ready { .. } => Health::Degraded {
                        reason: Reason::RolledBack.into(),
                        message: rolled_back_message(back, &name),
                    },
                    Health::Progressing { message, .. } | Health::Waiting { message, .. } => {
                        Health::Progressing {
                            reason: Reason::RollingBack.into(),
                            message: format!(
                                "rolling back to revision {}: {message}",
                                back.to_revision
                            ),
                        }
                    }
                    Health::Degraded { reason, message } => Health::Degraded {
                        reason,
                        message: format!(
                            "rolling back to revision {}: {message}",
                            back.to_revision
                        ),
                    },
                };
            }
        }
        return Ok(Outcome {
            health,
            deployment: Some(deployment),
            waiting_on: None,
            retry: false,
            revisions: Some(Revisions {
                revision,
                hash: Some(revision_hash),
                history,
                rollback,
                data_protection: None,
                backups,
            }),
            again: None,
        });
    }
}

/// The revision number of the attempt at `desired_hash`: the one it already has (running,
/// being backed up for, or backed up for), else a new one.
fn attempt_revision(
    old: &LucidServiceStatus,
    attempt: &Attempt<'_>,
    history: &[GoodRevision],
) -> i64 {
    if old.revision_hash.as_deref() == Some(attempt.hash)
        && let Some(revision) = old.revision
    {
        return revision;
    }
    let key = attempt.key();
    if let Some(step) = old.data_protection.as_ref().filter(|d| d.for_hash == key) {
        return step.revision;
    }
    if let Some(backup) = old.backups.iter().find(|b| b.for_hash == key) {
        return backup.revision;
    }
    next_revision(
        old.revision,
        history,
        old.backups
            .iter()
            .map(|b| b.revision)
            .chain(old.data_protection.as_ref().map(|d| d.revision)),
    )
}

/// What a data-protection step decided.
enum Protection {
    /// Nothing (more) to do: apply.
    Proceed,
    /// A step is under way or has just recorded its result: report this and come back.
    Report(Box<Outcome>),
    /// The backup failed: the update does not start (the old revision goes back up).
    BackupFailed(String),
}

/// How soon a reconcile comes back while a Job copies (Jobs are not watched: they are rare).
const COPY_POLL: Duration = Duration::from_secs(2);

/// A data-protection step to report: under way, or its result recorded before the next
/// step (the Job is not watched, so the reconcile comes back after `COPY_POLL`).
fn step_report(live: &Deployment, health: Health, revisions: Revisions) -> Protection {
    Protection::Report(Box::new(Outcome {
        health,
        deployment: Some(live.clone()),
        waiting_on: None,
        retry: false,
        revisions: Some(revisions),
        again: Some(COPY_POLL),
    }))
}

/// Before an update of a stateful service whose pods run a good revision: stop them, copy
/// the data, record the copy; only then does the new revision start.
#[allow(clippy::too_many_arguments)]
async fn back_up_first(
    ls: &LucidService,
    ctx: &Context,
    namespace: &str,
    gate: &Gate,
    old: &LucidServiceStatus,
    live: &Deployment,
    attempt: &Attempt<'_>,
    revision: Option<i64>,
    copier: &crate::render::backup::CopyJobSettings,
) -> Result<Protection, Error> {
    let Some(revision) = revision else {
        return Ok(Protection::Proceed);
    };
    let desired_hash = attempt.hash;
    let key = attempt.key();
    let live_hash = applied_hash(live);
    let from_good = old.revision_hash.as_deref() == live_hash
        && old.history.iter().any(|g| Some(g.revision) == old.revision);
    let done = old.backups.iter().any(|b| b.for_hash == key);
    let started = old
        .data_protection
        .as_ref()
        .is_some_and(|d| d.for_hash == key);
    // Only an update (a change from a revision that was Ready) whose turn has come.
    if done || live_hash == Some(desired_hash) || !(from_good || started) {
        return Ok(Protection::Proceed);
    }
    if !matches!(gate, Gate::Open) {
        return Ok(Protection::Proceed);
    }
    let step = protect::back_up(ctx, ls, namespace, live, revision, copier).await?;
    let report = |health, revisions| step_report(live, health, revisions);
    Ok(match step {
        CopyProgress::Waiting(message) => report(
            Health::Progressing {
                reason: Reason::BackingUp.into(),
                message,
            },
            Revisions {
                data_protection: Some(DataProtection {
                    step: "BackingUp".into(),
                    revision,
                    for_hash: key.clone(),
                }),
                ..Revisions::of(old)
            },
        ),
        CopyProgress::Done(mut record) => {
            record.for_hash = key.clone();
            let keep = usize::try_from(ls.spec.backup.keep.max(1)).unwrap_or(1);
            let mut backups = vec![record.clone()];
            backups.extend(
                old.backups
                    .iter()
                    .filter(|b| b.revision != revision)
                    .cloned(),
            );
            let dropped = backups.split_off(keep.min(backups.len()));
            protect::drop_backups(ctx, ls, namespace, &dropped).await?;
            publish(
                ctx,
                ls,
                EventType::Normal,
                "BackedUp",
                format!(
                    "/app/data copied to claim {} ({} files, {} bytes, root {}) before revision {revision}",
                    record.claim,
                    record.files,
                    record.bytes,
                    record.root_hash.get(..16).unwrap_or_default()
                ),
            )
            .await;
            // Recorded before the new revision starts: a restart from here must not copy
            // again over data the new revision may have changed.
            report(
                Health::Progressing {
                    reason: Reason::BackingUp.into(),
                    message: format!(
                        "data copied to claim {}; starting revision {revision}",
                        record.claim
                    ),
                },
                Revisions {
                    data_protection: None,
                    backups,
                    ..Revisions::of(old)
                },
            )
        }
        CopyProgress::Failed(message) => Protection::BackupFailed(message),
    })
}

/// Before a rolled-back stateful service starts its old revision again: the data the
/// failed revision may have changed is put back from the copy taken before it started.
async fn restore_first(
    ls: &LucidService,
    ctx: &Context,
    namespace: &str,
    old: &LucidServiceStatus,
    live: &Deployment,
    back: &RollbackStatus,
    copier: &crate::render::backup::CopyJobSettings,
) -> Result<Protection, Error> {
    let failed = attempt_key(&back.failed_hash, back.retry.as_deref());
    let Some(backup) = old.backups.iter().find(|b| b.for_hash == failed) else {
        // No copy was taken (the failed attempt never started: its backup failed).
        return Ok(Protection::Proceed);
    };
    if back.restored_from.is_some() {
        return Ok(Protection::Proceed);
    }
    let step = protect::restore(ctx, ls, namespace, live, backup, copier).await?;
    let revisions = |data_protection, rollback| Revisions {
        data_protection,
        rollback,
        ..Revisions::of(old)
    };
    let restoring = Some(DataProtection {
        step: "Restoring".into(),
        revision: backup.revision,
        for_hash: failed.clone(),
    });
    let report = |health, revisions| step_report(live, health, revisions);
    Ok(match step {
        CopyProgress::Waiting(message) => report(
            Health::Progressing {
                reason: Reason::RollingBack.into(),
                message,
            },
            revisions(restoring, Some(back.clone())),
        ),
        CopyProgress::Done(()) => {
            publish(
                ctx,
                ls,
                EventType::Normal,
                "Restored",
                format!(
                    "/app/data restored from claim {} before revision {} starts again",
                    backup.claim, back.to_revision
                ),
            )
            .await;
            let restored = RollbackStatus {
                restored_from: Some(backup.claim.clone()),
                ..back.clone()
            };
            // Recorded before the old revision starts: a restart from here must not restore
            // again over data the old revision has since written.
            report(
                Health::Progressing {
                    reason: Reason::RollingBack.into(),
                    message: format!(
                        "data restored from claim {}; starting revision {}",
                        backup.claim, back.to_revision
                    ),
                },
                revisions(None, Some(restored)),
            )
        }
        CopyProgress::Failed(message) => report(
            Health::Degraded {
                reason: Reason::RestoreFailed.into(),
                message,
            },
            revisions(restoring, Some(back.clone())),
        ),
    })
}

/// The rollback in force, if any: the one recorded, while it still holds; or, under
/// `RollbackPhase`, a new one when a phase-mate's own update failed and this member changed
/// since the phase was last Ready.
async fn choose_rollback(
    ls: &LucidService,
    ctx: &Context,
    snapshot: &Snapshot<'_>,
    old: &LucidServiceStatus,
    attempt: &Attempt<'_>,
    policy: OnFailure,
    phase_ready_revision: Option<i64>,
) -> Option<RollbackStatus> {
    let still_failed = |cause: &str| snapshot.service(cause).is_some_and(rolled_back_itself);
    if let Some(back) = old
        .rollback
        .as_ref()
        .filter(|r| rollback_holds(r, attempt, still_failed))
    {
        return Some(back.clone());
    }
    if policy != OnFailure::RollbackPhase {
        return None;
    }
    let name = ls.name_any();
    let mate = snapshot
        .members(&ls.spec.phase)
        .iter()
        .find(|m| m.name_any() != name && rolled_back_itself(m))?;
    let to = follows_phase(old.revision, phase_ready_revision, &old.history)?;
    let back = RollbackStatus {
        failed_generation: attempt.generation,
        failed_hash: attempt.hash.to_string(),
        retry: attempt.retry.map(str::to_string),
        to_revision: to,
        reason: Reason::PhaseRolledBack.into(),
        message: format!(
            "{} failed; phase {} rolls back every member changed since it was last Ready",
            mate.name_any(),
            ls.spec.phase
        ),
        cause: Some(mate.name_any()),
        restored_from: None,
        at: Time(jiff::Timestamp::now()),
    };
    announce_rollback(ctx, ls, &back).await;
    Some(back)
}

/// A revision's pods read copies, which never change: its config hash is a constant of the
/// revision (the copies' names are in the pod template, so any other copy is another pod).
fn config_hash_of_revision(record: &crate::revision::RevisionRecord) -> String {
    let mut hasher = blake3::Hasher::new();
    for source in &record.sources {
        hasher.update(source.name.as_bytes());
        hasher.update(b"\0");
        hasher.update(source.copy.as_deref().unwrap_or("-").as_bytes());
        hasher.update(b"\0");
    }
    hasher.finalize().to_hex()[..32].to_string()
}

fn applied_hash(deployment: &Deployment) -> Option<&str> {
    crate::render::applied_hash(deployment)
}

/// Where converging on a rendering ended. Both variants hold a Deployment; it is returned
/// once per reconcile, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Converged {
    /// Held by the gate (or a refused apply): the outcome to report.
    Stopped(Outcome),
    /// Applied (or nothing to apply): the live Deployment and its health.
    Live {
        deployment: Deployment,
        health: Health,
    },
}

/// Plan, gate (when `gated`: a rollback to a revision that was Ready does not wait), apply,
/// observe. The health is read from the live Deployment only: one the API server answered
/// the apply with, or the cached one when nothing needed applying.
async fn converge(
    ls: &LucidService,
    ctx: &Context,
    namespace: &str,
    gate: &Gate,
    children: &crate::render::Children,
    existing: Option<Deployment>,
    gated: bool,
) -> Result<Converged, Error> {
    let planned = plan(children, &ctx.caches.children, existing.as_ref());
    // A new rendering rolls out only when the service's turn has come; putting back what
    // someone deleted or edited does not wait.
    let changed = planned.changed();
    if changed && gated {
        match gate {
            Gate::Open => {}
            Gate::Wait {
                reason,
                message,
                waiting_on,
            } => {
                let missing = planned.missing_only();
                if existing.is_some() && !missing.is_empty() {
                    restore_while_waiting(ls, ctx, namespace, &missing)
                        .await
                        .at(Step::Apply)?;
                }
                let health = Health::Waiting {
                    reason: (*reason).into(),
                    message: message.clone(),
                };
                return Ok(Converged::Stopped(Outcome {
                    health,
                    deployment: existing,
                    waiting_on: Some(waiting_on.clone()),
                    retry: false,
                    revisions: None,
                    again: None,
                }));
            }
        }
    }

    let existed = existing.is_some();
    let live = if planned.is_empty() {
        existing
    } else {
        let what = planned.describe();
        tracing::debug!(service = %ls.name_any(), %what, "applying");
        ctx.leadership.ensure()?;
        let applied = match apply_planned(
            &ctx.client,
            &ctx.leadership,
            namespace,
            &planned,
            existing.as_ref(),
        )
        .await
        {
            Ok(d) => d,
            Err(ApplyFailure::NotLeader) => return Err(Error::NotLeader),
            Err(ApplyFailure::Child(failed)) => {
                ctx.metrics.api_error("patch", &failed.source);
                let refused =
                    matches!(&failed.source, kube::Error::Api(s) if s.code == 422 || s.code == 400);
                tracing::warn!(service = %ls.name_any(), namespace, error = %failed, "apply failed");
                return Ok(Converged::Stopped(if refused {
                    // The objects themselves were refused (say, a claim asked to shrink):
                    // the user must act; retrying the same objects would not help.
                    Outcome::degraded(Reason::ApplyRejected, failed.to_string(), existing)
                } else {
                    Outcome::failed(Step::Apply.reason(), format!("applying {failed}"), existing)
                }));
            }
        };
        // Children the spec no longer asks for go right after a change's apply, so the
        // event can name them; `remove_orphans` below catches any left by an earlier failure.
        let deleted = if changed && existed {
            remove_orphans(ls, ctx, namespace, children)
                .await
                .at(Step::DeleteOrphans)?
        } else {
            Vec::new()
        };
        if changed {
            let what = if existed { "updated" } else { "created" };
            let mut note = format!(
                "{what} Deployment, {} Service, {} claim(s)",
                children.service.iter().count(),
                children.claims.len()
            );
            if !deleted.is_empty() {
                note.push_str(&format!("; removed {}", deleted.join(", ")));
            }
            publish(ctx, ls, EventType::Normal, "Applied", note).await;
        } else {
            announce_restored(ctx, ls, namespace, &what).await;
        }
        // The Deployment the API server answered with; when only other children were put
        // back, the cached one is still the live one.
        applied.or(existing)
    };
    // Read from the caches, so free when there is nothing to remove: an orphan left by a
    // failed delete, a lost lease or a restart right after an apply goes at the next look.
    if planned.is_empty() && existed {
        let late = remove_orphans(ls, ctx, namespace, children)
            .await
            .at(Step::DeleteOrphans)?;
        if !late.is_empty() {
            tracing::info!(service = %ls.name_any(), namespace, removed = ?late, "removed children the spec no longer asks for");
        }
    }
    let Some(deployment) = live else {
        // Nothing live to read health from: the apply left no Deployment (it always
        // returns one; this is the cache not having caught up). Its watch event wakes us.
        return Ok(Converged::Stopped(Outcome {
            health: Health::Progressing {
                reason: Reason::RollingOut.into(),
                message: "waiting for the Deployment to be created".into(),
            },
            deployment: None,
            waiting_on: None,
            retry: false,
            revisions: None,
            again: None,
        }));
    };
    let health = observe(ctx, ls, namespace, &deployment);
    if !matches!(health, Health::Ready { .. }) {
        restart_backed_off(ctx, ls, namespace).await;
    }
    Ok(Converged::Live { deployment, health })
}

/// Pods waiting out a crash-loop back-off from a crash that came before their dependencies
/// were Ready are deleted, so they start now (see `recovery`). Each deletion names the pod's
/// UID: a replacement of the same name is never deleted. One round per service and per
/// moment its dependencies became Ready: a crash time read off a board whose clock lags (a
/// Pi without a battery clock, before NTP) could otherwise pass for "before" again and
/// again. Best effort: a failed delete is logged and counted, and the reconcile goes on.
async fn restart_backed_off(ctx: &Context, ls: &LucidService, namespace: &str) {
    if !ctx.restart_backed_off || ls.spec.depends_on.is_empty() {
        return;
    }
    let mut dependencies_ready = None;
    for dependency in &ls.spec.depends_on {
        let pods = ctx.pods_of(namespace, dependency);
        let Some(since) = crate::recovery::ready_since(pods.iter().map(|p| p.as_ref())) else {
            return;
        };
        dependencies_ready = dependencies_ready.max(Some(since));
    }
    let Some(dependencies_ready) = dependencies_ready else {
        return;
    };
    let key = format!("{namespace}/{}", ls.name_any());
    if ctx.restart_round_done(&key, dependencies_ready) {
        return;
    }
    let pods = ctx.pods_of(namespace, &ls.name_any());
    let restarts = crate::recovery::backed_off(pods.iter().map(|p| p.as_ref()), dependencies_ready);
    if restarts.is_empty() {
        return;
    }
    ctx.restart_round(&key, dependencies_ready);
    let api: kube::Api<Pod> = kube::Api::namespaced(ctx.client.clone(), namespace);
    for restart in restarts {
        if ctx.leadership.ensure().is_err() {
            return;
        }
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(restart.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&restart.pod, &params).await {
            Ok(_) => {}
            // Gone already, or replaced (the UID precondition failed): nothing to restart.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => continue,
            Err(error) => {
                ctx.metrics.api_error("delete", &error);
                tracing::warn!(service = %ls.name_any(), namespace, pod = %restart.pod, %error, "could not restart a pod in back-off; it waits out its back-off");
                continue;
            }
        }
        ctx.metrics.backed_off_restarts.inc();
        tracing::info!(service = %ls.name_any(), namespace, pod = %restart.pod, crashed_at = %restart.crashed_at, %dependencies_ready, "restarted a pod in back-off: it crashed before its dependencies were Ready");
        publish(
            ctx,
            ls,
            EventType::Normal,
            "RestartedBackedOff",
            format!(
                "restarted pod {} (container {} crashed at {}, before its dependencies were Ready at {}): it starts now instead of after its back-off",
                restart.pod, restart.container, restart.crashed_at, dependencies_ready
            ),
        )
        .await;
    }
}

/// The health of a live Deployment and its pods. A lost node comes in at two places: a
/// claim pinned to it explains everything else (the replacement pod cannot be scheduled,
/// and that is no mistake of the user's to roll back from); otherwise what the current pods
/// say comes first (a crash loop or an image that cannot be pulled is news even while a node
/// is gone), then the lost node, then a stuck rollout (a lost node is the likelier cause of
/// a rollout not progressing, and a stuck rollout counts as a failed update).
fn observe(ctx: &Context, ls: &LucidService, namespace: &str, deployment: &Deployment) -> Health {
    let name = &ls.name_any();
    let (message, stuck) = match rollout(deployment) {
        Rollout::Complete { ready, replicas } => {
            return Health::Ready {
                reason: Reason::RolloutComplete.into(),
                message: format!("{ready}/{replicas} pods ready"),
            };
        }
        Rollout::InProgress { message, .. } => (message, false),
        Rollout::Stuck { message, .. } => (message, true),
    };
    let loss = ctx.node_loss(ls, namespace);
    if let Some(loss) = loss.as_ref().filter(|l| l.bound) {
        return Health::Degraded {
            reason: Reason::NodeLost.into(),
            message: loss.message.clone(),
        };
    }
    // Pods that cannot start need the user now, not after the progress deadline.
    if !stuck && let Some(problem) = ctx.pod_problem(namespace, name, deployment) {
        return Health::Degraded {
            reason: problem.reason.into(),
            message: problem.message,
        };
    }
    match (loss, stuck) {
        (Some(loss), _) => Health::Progressing {
            reason: Reason::NodeLost.into(),
            message: loss.message,
        },
        (None, false) => Health::Progressing {
            reason: Reason::RollingOut.into(),
            message,
        },
        (None, true) => Health::Degraded {
            reason: Reason::RolloutStuck.into(),
            message,
        },
    }
}

/// A failed update going back: an event on the object and a count by reason.
async fn announce_rollback(ctx: &Context, ls: &LucidService, back: &RollbackStatus) {
    ctx.metrics.rolled_back(&back.reason);
    tracing::warn!(service = %ls.name_any(), namespace = %ls.namespace().unwrap_or_default(), generation = back.failed_generation, to_revision = back.to_revision, reason = %back.reason, "rolling back a failed update");
    let why = match &back.cause {
        None => format!("{}: {}", back.reason, back.message),
        Some(_) => back.message.clone(),
    };
    publish(
        ctx,
        ls,
        EventType::Warning,
        "RollingBack",
        format!(
            "generation {} failed ({why}); rolling back to revision {}",
            back.failed_generation, back.to_revision
        ),
    )
    .await;
}

/// Puts back children deleted by hand while the service's change waits for its turn. A
/// failure is logged and left to the next reconcile: the service reports Waiting either way.
async fn restore_while_waiting(
    ls: &LucidService,
    ctx: &Context,
    namespace: &str,
    missing: &super::apply::Planned<'_>,
) -> Result<(), Error> {
    ctx.leadership.ensure()?;
    let what = missing.describe();
    match apply_planned(&ctx.client, &ctx.leadership, namespace, missing, None).await {
        Ok(_) => {
            announce_restored(ctx, ls, namespace, &what).await;
            Ok(())
        }
        Err(ApplyFailure::NotLeader) => Err(Error::NotLeader),
        Err(ApplyFailure::Child(failed)) => {
            ctx.metrics.api_error("patch", &failed.source);
            tracing::warn!(service = %ls.name_any(), namespace, error = %failed, "restoring a child failed");
            Ok(())
        }
    }
}

/// Someone deleted or edited a child and it was put back: worth a line in `kubectl
/// describe`.
async fn announce_restored(ctx: &Context, ls: &LucidService, namespace: &str, what: &str) {
    tracing::info!(service = %ls.name_any(), namespace, %what, "restored children");
    publish(
        ctx,
        ls,
        EventType::Warning,
        "Restored",
        format!("restored {what}"),
    )
    .await;
}

async fn remove_orphans(
    ls: &LucidService,
    ctx: &Context,
    namespace: &str,
    children: &crate::render::Children,
) -> Result<Vec<String>, Error> {
    ctx.leadership.ensure()?;
    let uid = ls.uid().unwrap_or_default();
    delete_orphans(
        &ctx.client,
        &ctx.leadership,
        &ctx.caches.children,
        namespace,
        &ls.name_any(),
        &uid,
        children,
    )
    .await
}

async fn write_status(
    ls: &LucidService,
    ctx: &Context,
    outcome: &Outcome,
    snapshot: &Snapshot<'_>,
    dependencies_not_ready: &[String],
) -> Result<(), Error> {
    let old = ls.status.clone().unwrap_or_default();
    let namespace = ls.namespace().unwrap_or_default();
    let (ready, replicas) = outcome
        .deployment
        .as_ref()
        .map(|d| rollout(d).ready_replicas())
        .unwrap_or((0, ls.spec.replicas));
    let revisions = outcome
        .revisions
        .clone()
        .unwrap_or_else(|| Revisions::of(&old));
    let mut status = LucidServiceStatus {
        observed_generation: ls.metadata.generation,
        ready_replicas: ready,
        replicas,
        ready: Some(format!("{ready}/{replicas}")),
        state: Some(outcome.health.state().as_str().into()),
        waiting_on: outcome.waiting_on.clone(),
        revision: revisions.revision,
        revision_hash: revisions.hash,
        history: revisions.history,
        rollback: revisions.rollback,
        data_protection: revisions.data_protection,
        backups: revisions.backups,
        nodes: crate::status::ready_nodes(
            ctx.pods_of(&namespace, &ls.name_any())
                .iter()
                .map(|p| p.as_ref()),
        ),
        data_nodes: ctx.data_nodes(&namespace, &ls.name_any()),
        conditions: old.conditions.clone(),
    };
    let now = Time(jiff::Timestamp::now());
    let generation = ls.metadata.generation;
    outcome
        .health
        .write(&mut status.conditions, generation, &now);
    let (available, reason, message) = availability(outcome.deployment.as_ref());
    set_condition(
        &mut status.conditions,
        ConditionType::Available,
        available,
        reason.as_str(),
        &message,
        generation,
        &now,
    );
    let (deps_ready, reason, message) = dependencies(snapshot, dependencies_not_ready);
    set_condition(
        &mut status.conditions,
        ConditionType::DependenciesReady,
        deps_ready,
        reason.as_str(),
        &message,
        generation,
        &now,
    );
    if status == old {
        return Ok(());
    }
    announce_transition(ls, ctx, &old, &outcome.health).await;
    let namespace = ls.namespace().unwrap_or_default();
    if let Some(stored) =
        status_patch::write::<LucidService>(ctx, &namespace, &ls.name_any(), &status).await?
    {
        ctx.wrote(&stored);
    }
    Ok(())
}

/// The `Available` condition: pods are serving, whichever revision they run.
fn availability(deployment: Option<&Deployment>) -> (bool, Reason, String) {
    let Some(deployment) = deployment else {
        return (false, Reason::NoDeployment, "no Deployment yet".into());
    };
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let available = deployment
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    if wanted == 0 {
        (true, Reason::ScaledToZero, "no pods asked for".into())
    } else if available > 0 {
        (
            true,
            Reason::PodsAvailable,
            format!("{available} of {wanted} pods available"),
        )
    } else {
        (
            false,
            Reason::NoPodsAvailable,
            format!("0 of {wanted} pods available"),
        )
    }
}

/// The `DependenciesReady` condition: which dependencies are not Ready now, and since when
/// each has not been (its own Ready condition's transition time).
fn dependencies(snapshot: &Snapshot<'_>, not_ready: &[String]) -> (bool, Reason, String) {
    if not_ready.is_empty() {
        return (
            true,
            Reason::AllReady,
            "every service in dependsOn is Ready".into(),
        );
    }
    let described: Vec<String> = not_ready
        .iter()
        .map(|name| {
            let since = snapshot
                .service(name)
                .and_then(|s| s.status.as_ref())
                .and_then(|s| {
                    s.conditions
                        .iter()
                        .find(|c| c.type_ == ConditionType::Ready.as_str())
                })
                .filter(|c| c.status == "False")
                .map(|c| format!(" since {}", c.last_transition_time.0));
            format!("{name}{}", since.unwrap_or_default())
        })
        .collect();
    (
        false,
        Reason::DependencyNotReady,
        format!("not Ready: {}", described.join(", ")),
    )
}

/// An event when the service turns Ready, or turns Degraded (or Degraded for another
/// reason): what a person reading `kubectl describe` wants. Waiting and rolling out are in
/// the status; an event for each step would be noise (and a write each).
async fn announce_transition(
    ls: &LucidService,
    ctx: &Context,
    old: &LucidServiceStatus,
    health: &Health,
) {
    let old_ready = old
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Ready.as_str());
    let was_ready = old_ready.is_some_and(|c| c.status == "True");
    let type_ = match health {
        Health::Ready { .. } if !was_ready => EventType::Normal,
        Health::Degraded { .. } if old_ready.is_none_or(|c| c.reason != health.reason()) => {
            EventType::Warning
        }
        _ => return,
    };
    publish(
        ctx,
        ls,
        type_,
        health.reason(),
        health.message().to_string(),
    )
    .await;
}

async fn publish(ctx: &Context, ls: &LucidService, type_: EventType, reason: &str, note: String) {
    if !ctx.leadership.is_leader() {
        return;
    }
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &ls.object_ref(&())).await {
        // Events are a courtesy; failing to write one must not fail the reconcile.
        tracing::debug!(%error, "could not publish event");
    }
}

/// An object the operator cannot read (stored before a schema change, or written around the
/// schema). It gets a Degraded condition saying why, and nothing else is touched.
async fn report_invalid(invalid: &InvalidObject, ctx: &Context) -> Result<Reconciled, Error> {
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
    tracing::warn!(service = %name, %namespace, error = %invalid.error, "LucidService cannot be read");
    let now = Time(jiff::Timestamp::now());
    let mut conditions = Vec::new();
    Health::Degraded {
        reason: Reason::InvalidObject.into(),
        message: format!("the operator cannot read this object: {}", invalid.error),
    }
    .write(&mut conditions, invalid.metadata.generation, &now);
    let status = json!({
        "state": State::Degraded.as_str(),
        "observedGeneration": invalid.metadata.generation,
        "conditions": conditions,
    });
    status_patch::write::<DeserializeGuard<LucidService>>(ctx, &namespace, &name, &status).await?;
    Ok(Reconciled::done(
        Action::await_change(),
        State::Degraded.as_str(),
    ))
}
