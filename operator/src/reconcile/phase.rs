//! The LucidPhase controller: summarises its members' states into counts, per-member
//! states and the three conditions. It creates nothing; services gate themselves on the
//! same facts (see `graph`), so a stale phase status can never let a later phase run ahead.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::controller::Action;

use super::context::Context;
use super::instrument::{Reconciled, backoff_key, instrumented};
use super::status_patch;
use super::unobserved;
use crate::api::{
    LucidPhase, LucidPhaseStatus, LucidService, MemberState, PhaseMember, PhaseReadySet,
};
use crate::error::Error;
use crate::graph::{NamedObject, Snapshot, service_ready};
use crate::status::{ConditionType, Health, Reason, State};

const CONTROLLER: &str = "lucidphase";

pub async fn reconcile(
    guard: Arc<DeserializeGuard<LucidPhase>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let reconcile = async {
        Ok(match summarise_and_write(&guard, &ctx).await? {
            Written::Later(wait) => Reconciled::done(Action::requeue(wait), "later"),
            Written::Done(state) => {
                Reconciled::done(super::resync(Duration::from_secs(600)), state)
            }
        })
    };
    instrumented(CONTROLLER, guard.as_ref(), &ctx, reconcile).await
}

/// A phase's status is written at most once per this interval: while a phase's members roll
/// out, each member's change would otherwise be a phase status write. The reconcile that
/// finds it too soon comes back when the interval is over and reads the members as they
/// are then, so nothing is lost. (kube-runtime's `debounce` was tried: it postpones for as
/// long as triggers keep coming, so a big phase's status stood still for its whole rollout.)
const PHASE_WRITE_INTERVAL: Duration = Duration::from_millis(300);

/// What one phase reconcile did with the status.
enum Written {
    /// Written, or already as summarised: the state.
    Done(String),
    /// Not written now, again after this long: the last write was too recent, or a phase
    /// it depends on exists but is not in the cache yet.
    Later(Duration),
}

async fn summarise_and_write(
    guard: &DeserializeGuard<LucidPhase>,
    ctx: &Context,
) -> Result<Written, Error> {
    let Ok(phase) = &guard.0 else {
        // Nothing to summarise; services in it report PhaseNotFound-like problems themselves.
        return Ok(Written::Done("Unreadable".into()));
    };
    let namespace = phase.namespace().unwrap_or_default();
    let view = ctx.namespace_view(&namespace);
    let snapshot = view.snapshot();
    let missing: Vec<NamedObject<'_>> = missing_dependencies(phase, &snapshot)
        .into_iter()
        .map(NamedObject::Phase)
        .collect();
    let reported = phase.status.as_ref().is_some_and(|status| {
        unobserved::already_reported(
            &status.conditions,
            status.observed_generation,
            phase.metadata.generation,
            Reason::PhaseDependencyNotFound,
        )
    });
    if !missing.is_empty()
        && !reported
        && unobserved::first_unobserved(ctx, &namespace, &missing)
            .await
            .is_some()
    {
        // Not missing, not seen yet: the peer watch brings this phase back when it is.
        return Ok(Written::Later(unobserved::RECHECK));
    }
    let status = summarise(
        phase,
        &snapshot,
        phase.status.clone().unwrap_or_default(),
        Time(jiff::Timestamp::now()),
    );
    ctx.metrics.phase(
        &namespace,
        &phase.name_any(),
        i64::from(status.services),
        i64::from(status.ready_services),
    );
    if Some(&status) != phase.status.as_ref() {
        if let Some(wait) = ctx.too_soon_to_write(&backoff_key(guard), PHASE_WRITE_INTERVAL) {
            return Ok(Written::Later(wait));
        }
        status_patch::write::<LucidPhase>(ctx, &namespace, &phase.name_any(), &status).await?;
    }
    Ok(Written::Done(status.state.unwrap_or_default()))
}

fn member_state(ls: &LucidService) -> (MemberState, Option<String>) {
    if service_ready(ls) {
        return (MemberState::Ready, None);
    }
    let Some(status) = &ls.status else {
        return (MemberState::Progressing, Some("not reconciled yet".into()));
    };
    if status.observed_generation != ls.metadata.generation {
        return (
            MemberState::Progressing,
            Some("spec change not yet observed".into()),
        );
    }
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Ready.as_str())
        .map(|c| c.message.clone())
        .filter(|m| !m.is_empty());
    match status.state.as_deref().and_then(State::parse) {
        Some(State::Degraded) => {
            let degraded = status
                .conditions
                .iter()
                .find(|c| c.type_ == ConditionType::Degraded.as_str());
            (
                MemberState::Degraded,
                degraded.map(|c| format!("{}: {}", c.reason, c.message)),
            )
        }
        Some(State::Waiting) => (MemberState::Waiting, ready),
        _ => (MemberState::Progressing, ready),
    }
}

/// The phases `phase` depends on that the snapshot does not hold.
fn missing_dependencies<'p>(phase: &'p LucidPhase, snapshot: &Snapshot<'_>) -> Vec<&'p str> {
    phase
        .spec
        .depends_on
        .iter()
        .map(String::as_str)
        .filter(|p| snapshot.phase(p).is_none())
        .collect()
}

/// Each member's revision, when the phase is Ready and every member reports one.
fn ready_set(
    snapshot: &Snapshot<'_>,
    phase: &str,
    ready: bool,
) -> Option<std::collections::BTreeMap<String, i64>> {
    if !ready {
        return None;
    }
    snapshot
        .members(phase)
        .iter()
        .map(|m| Some((m.name_any(), m.status.as_ref()?.revision?)))
        .collect()
}

/// Pure: the phase's status from a snapshot of its namespace.
pub fn summarise(
    phase: &LucidPhase,
    snapshot: &Snapshot<'_>,
    old: LucidPhaseStatus,
    now: Time,
) -> LucidPhaseStatus {
    let name = phase.name_any();
    let members: Vec<PhaseMember> = snapshot
        .members(&name)
        .iter()
        .map(|m| {
            let (state, message) = member_state(m);
            PhaseMember {
                name: m.name_any(),
                state,
                message,
            }
        })
        .collect();
    let count = |s: MemberState| members.iter().filter(|m| m.state == s).count() as i32;
    let (ready, waiting, progressing, degraded) = (
        count(MemberState::Ready),
        count(MemberState::Waiting),
        count(MemberState::Progressing),
        count(MemberState::Degraded),
    );
    let total = members.len() as i32;

    let missing = missing_dependencies(phase, snapshot);
    let first_not_ready = |state: MemberState| members.iter().find(|m| m.state == state);
    let (health, waiting_on) = if !missing.is_empty() {
        (
            Health::Degraded {
                reason: Reason::PhaseDependencyNotFound.into(),
                message: format!(
                    "dependsOn names phases that do not exist: {}",
                    missing.join(", ")
                ),
            },
            None,
        )
    } else if let Some(cycle) = snapshot.phase_cycle(&name) {
        (
            Health::Degraded {
                reason: Reason::PhaseCycle.into(),
                message: format!(
                    "phases depend on each other in a cycle: {}",
                    cycle.join(" -> ")
                ),
            },
            None,
        )
    } else if let Some(m) = first_not_ready(MemberState::Degraded) {
        let message = format!(
            "{degraded} of {total} services degraded; first: {} ({})",
            m.name,
            m.message.clone().unwrap_or_default()
        );
        (
            Health::Degraded {
                reason: Reason::ServiceDegraded.into(),
                message,
            },
            Some(m.name.clone()),
        )
    } else if ready == total {
        (
            Health::Ready {
                reason: Reason::AllServicesReady.into(),
                message: format!("{ready}/{total} services ready"),
            },
            None,
        )
    } else if phase.spec.paused {
        (
            Health::Waiting {
                reason: Reason::Paused.into(),
                message: "paused: set spec.paused: false to go on".into(),
            },
            Some("paused".into()),
        )
    } else if let Some(upstream) = snapshot
        .upstream_phases(&name)
        .into_iter()
        .find(|p| snapshot.members(p).iter().any(|m| !service_ready(m)))
    {
        let message = format!("waiting for phase {upstream}; {ready}/{total} services ready");
        (
            Health::Waiting {
                reason: Reason::WaitingForPhase.into(),
                message,
            },
            Some(format!("phase/{upstream}")),
        )
    } else {
        let m = first_not_ready(MemberState::Progressing)
            .or_else(|| first_not_ready(MemberState::Waiting));
        let message = format!("{ready}/{total} services ready");
        (
            Health::Progressing {
                reason: Reason::RollingOut.into(),
                message,
            },
            m.map(|m| m.name.clone()),
        )
    };

    // The set that worked together, for `onFailure: RollbackPhase`: taken when the phase is
    // Ready with every member at a known revision, kept as it was otherwise (and its time
    // kept while the set is the same, so a resync writes nothing).
    let last_ready = match ready_set(snapshot, &name, health.is_ready()) {
        Some(revisions) if old.last_ready.as_ref().map(|s| &s.revisions) != Some(&revisions) => {
            Some(PhaseReadySet {
                at: now.clone(),
                revisions,
            })
        }
        _ => old.last_ready,
    };
    let mut conditions = old.conditions;
    health.write(&mut conditions, phase.metadata.generation, &now);
    LucidPhaseStatus {
        last_ready,
        observed_generation: phase.metadata.generation,
        services: total,
        ready_services: ready,
        progressing_services: progressing,
        waiting_services: waiting,
        ready: Some(format!("{ready}/{total}")),
        state: Some(
            if phase.spec.paused && !health.is_ready() && degraded == 0 {
                Reason::Paused.into()
            } else {
                health.state().as_str().into()
            },
        ),
        waiting_on,
        members,
        conditions,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;
    use crate::api::{LucidPhaseSpec, LucidServiceStatus};
    use crate::render::fixtures::service;

    fn member(name: &str, revision: Option<i64>, ready: bool) -> LucidService {
        let mut ls = service(name, "image: {repository: x}\nphase: foundation");
        ls.status = Some(LucidServiceStatus {
            observed_generation: ls.metadata.generation,
            revision,
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                reason: "RolloutComplete".into(),
                message: String::new(),
                observed_generation: ls.metadata.generation,
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            }],
            ..Default::default()
        });
        ls
    }

    fn foundation() -> LucidPhase {
        let mut p = LucidPhase::new(
            "foundation",
            LucidPhaseSpec {
                depends_on: vec![],
                paused: false,
                description: None,
                on_failure: Default::default(),
            },
        );
        p.metadata.namespace = Some("lucid".into());
        p.metadata.generation = Some(1);
        p
    }

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn a_ready_phase_keeps_the_set_that_worked_together_and_its_time() {
        let phase = foundation();
        let members = [member("db", Some(3), true), member("cache", Some(1), true)];
        let snap = Snapshot::new(members.iter(), [&phase]);
        let status = summarise(&phase, &snap, LucidPhaseStatus::default(), at(10));
        let set = status.last_ready.clone().expect("the set");
        assert_eq!(set.revisions.get("db"), Some(&3));
        assert_eq!(set.revisions.get("cache"), Some(&1));
        assert_eq!(set.at, at(10));
        // The same set later: nothing to write (the time stays).
        let again = summarise(&phase, &snap, status.clone(), at(20));
        assert_eq!(again, status);
        // A member not Ready: the phase is not, and the last set stands.
        let members = [member("db", Some(4), false), member("cache", Some(1), true)];
        let snap = Snapshot::new(members.iter(), [&phase]);
        let later = summarise(&phase, &snap, status.clone(), at(30));
        assert_eq!(later.last_ready, status.last_ready);
    }
}
