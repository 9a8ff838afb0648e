//! Safe upgrades, decided: whether an update failed, whether a rollback is in force, and
//! which revision a phase rollback goes back to. Pure: status and health in, a decision out.
//!
//! The rules that keep this from looping (flux#1742, argo-cd#9570):
//! - the spec is never edited: a rollback renders an old revision in place of the spec;
//! - a failed attempt is known by the digest of its rendering (spec, and the ConfigMaps and
//!   Secrets it reads) and the `lucid.io/retry` annotation; while both are unchanged it is not
//!   tried again, whatever happens to the old revision;
//! - a member rolled back because another member of its phase failed stays back only while
//!   that member's own rollback is in force.

use crate::api::{GoodRevision, LucidService, OnFailure, RollbackStatus};
use crate::status::{Health, Reason};

/// The annotation `kubectl lucid retry` sets: a new value asks for the failed update again.
pub const RETRY_ANNOTATION: &str = "lucid.io/retry";

/// The attempt the spec asks for now.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// Digest of the current spec's rendering (the Deployment's applied hash).
    pub hash: &'a str,
    pub generation: i64,
    pub retry: Option<&'a str>,
}

impl<'a> Attempt<'a> {
    pub fn of(ls: &'a LucidService, hash: &'a str) -> Self {
        Attempt {
            hash,
            generation: ls.metadata.generation.unwrap_or_default(),
            retry: ls
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RETRY_ANNOTATION))
                .map(String::as_str),
        }
    }

    /// What names this attempt among all tries of the service: its rendering and the retry
    /// asked. A backup is taken per attempt: a retry of a failed update runs after the old
    /// revision served again, so the copy taken before the first try is out of date.
    pub fn key(&self) -> String {
        attempt_key(self.hash, self.retry)
    }

    /// This is the attempt `rollback` gave up on.
    pub fn is(&self, rollback: &RollbackStatus) -> bool {
        rollback.failed_hash == self.hash && rollback.retry.as_deref() == self.retry
    }
}

/// See [`Attempt::key`].
pub fn attempt_key(hash: &str, retry: Option<&str>) -> String {
    match retry {
        None => hash.to_string(),
        Some(retry) => format!("{hash}+retry={retry}"),
    }
}

/// Whether the recorded rollback still holds: the same attempt, and, for a member rolled
/// back with its phase, the member whose failure caused it still rolled back itself.
pub fn rollback_holds(
    rollback: &RollbackStatus,
    attempt: &Attempt<'_>,
    cause_still_failed: impl Fn(&str) -> bool,
) -> bool {
    attempt.is(rollback) && rollback.cause.as_deref().is_none_or(cause_still_failed)
}

/// Whether a service's own update failed and is rolled back now (not for another member):
/// what makes its phase-mates go back under `RollbackPhase`.
pub fn rolled_back_itself(ls: &LucidService) -> bool {
    ls.status
        .as_ref()
        .and_then(|s| s.rollback.as_ref())
        .is_some_and(|r| r.cause.is_none() && Some(r.failed_generation) == ls.metadata.generation)
}

/// The failure that ends an update, when `health` (read from the live objects of the new
/// rendering) is one; None while it is fine or still going.
pub fn failure(health: &Health) -> Option<(&str, &str)> {
    match health {
        Health::Degraded { reason, message }
            if Reason::parse(reason).is_some_and(Reason::is_rollout_failure) =>
        {
            Some((reason.as_str(), message.as_str()))
        }
        _ => None,
    }
}

/// What happens to a failed update of a service in a phase with `policy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnFailed {
    /// Leave it: `Halt`, or nothing good to go back to (a first install).
    Stay,
    /// Go back to this revision.
    RollBack(i64),
}

/// Where a failed update goes. `phase_ready_revision`: the service's revision when its
/// phase was last Ready (RollbackPhase goes back to the set that worked together).
pub fn on_failed(
    policy: OnFailure,
    history: &[GoodRevision],
    attempt: &Attempt<'_>,
    phase_ready_revision: Option<i64>,
) -> OnFailed {
    let last_good = history.first();
    // Nothing to go back to, or the last good revision is what failed (it ran before; a
    // node problem, not an update, made it fail now).
    let Some(last_good) = last_good.filter(|g| g.hash != attempt.hash) else {
        return OnFailed::Stay;
    };
    match policy {
        OnFailure::Halt => OnFailed::Stay,
        OnFailure::RollbackService => OnFailed::RollBack(last_good.revision),
        OnFailure::RollbackPhase => OnFailed::RollBack(
            phase_ready_revision
                .filter(|r| history.iter().any(|g| g.revision == *r))
                .unwrap_or(last_good.revision),
        ),
    }
}

/// Under `RollbackPhase`, whether this member goes back with a failed phase-mate, and to
/// which revision: only if it changed since the phase was last Ready (it runs another
/// revision than the one recorded then) and that revision is still kept.
pub fn follows_phase(
    current_revision: Option<i64>,
    phase_ready_revision: Option<i64>,
    history: &[GoodRevision],
) -> Option<i64> {
    let then = phase_ready_revision?;
    (current_revision != Some(then) && history.iter().any(|g| g.revision == then)).then_some(then)
}

/// The Ready=False message of a rolled-back service: what failed, what serves, what to do.
pub fn rolled_back_message(rollback: &RollbackStatus, name: &str) -> String {
    let why = match &rollback.cause {
        None => format!(
            "generation {} failed ({}: {})",
            rollback.failed_generation, rollback.reason, rollback.message
        ),
        Some(cause) => format!(
            "generation {} was rolled back with its phase because {cause} failed",
            rollback.failed_generation
        ),
    };
    format!(
        "{why}; revision {} serves in its place. Not retried until the spec changes, or \
         `kubectl lucid retry {name}`",
        rollback.to_revision
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn good(revision: i64, hash: &str) -> GoodRevision {
        GoodRevision {
            revision,
            generation: revision,
            ready_at: Time(jiff::Timestamp::from_second(revision).unwrap()),
            hash: hash.into(),
        }
    }

    fn attempt<'a>(hash: &'a str, retry: Option<&'a str>) -> Attempt<'a> {
        Attempt {
            hash,
            generation: 5,
            retry,
        }
    }

    fn rollback(hash: &str, cause: Option<&str>) -> RollbackStatus {
        RollbackStatus {
            failed_generation: 5,
            failed_hash: hash.into(),
            retry: None,
            to_revision: 2,
            reason: "ImagePullFailed".into(),
            message: "image x".into(),
            cause: cause.map(str::to_string),
            restored_from: None,
            at: Time(jiff::Timestamp::from_second(1).unwrap()),
        }
    }

    #[test]
    fn a_rollback_holds_until_the_spec_changes_or_a_retry_is_asked() {
        let r = rollback("bad", None);
        assert!(rollback_holds(&r, &attempt("bad", None), |_| true));
        assert!(!rollback_holds(&r, &attempt("fixed", None), |_| true));
        assert!(!rollback_holds(&r, &attempt("bad", Some("1")), |_| true));
    }

    #[test]
    fn a_member_rolled_back_with_its_phase_goes_forward_once_the_cause_does() {
        let r = rollback("mine", Some("redis"));
        assert!(rollback_holds(&r, &attempt("mine", None), |n| n == "redis"));
        assert!(!rollback_holds(&r, &attempt("mine", None), |_| false));
    }

    #[test]
    fn only_failures_of_the_new_revision_count() {
        let degraded = |reason: &str| Health::Degraded {
            reason: reason.into(),
            message: "m".into(),
        };
        assert!(failure(&degraded("ImagePullFailed")).is_some());
        assert!(failure(&degraded("RolloutStuck")).is_some());
        assert!(failure(&degraded("CrashLoopBackOff")).is_some());
        // Found before anything was applied: the old revision still runs.
        assert!(failure(&degraded("MissingSecret")).is_none());
        assert!(failure(&degraded("InvalidSpec")).is_none());
        let progressing = Health::Progressing {
            reason: "RollingOut".into(),
            message: "m".into(),
        };
        assert!(failure(&progressing).is_none());
    }

    #[test]
    fn a_failed_update_goes_back_by_policy_and_a_first_install_stays() {
        let history = [good(3, "h3"), good(2, "h2")];
        let a = attempt("h4", None);
        assert_eq!(
            on_failed(OnFailure::RollbackService, &history, &a, None),
            OnFailed::RollBack(3)
        );
        assert_eq!(
            on_failed(OnFailure::Halt, &history, &a, None),
            OnFailed::Stay
        );
        assert_eq!(
            on_failed(OnFailure::RollbackPhase, &history, &a, Some(2)),
            OnFailed::RollBack(2)
        );
        // The phase's revision is no longer kept: the last good one will do.
        assert_eq!(
            on_failed(OnFailure::RollbackPhase, &history, &a, Some(1)),
            OnFailed::RollBack(3)
        );
        assert_eq!(
            on_failed(OnFailure::RollbackService, &[], &a, None),
            OnFailed::Stay
        );
        // The last good revision itself failing is not an update that failed.
        assert_eq!(
            on_failed(
                OnFailure::RollbackService,
                &history,
                &attempt("h3", None),
                None
            ),
            OnFailed::Stay
        );
    }

    #[test]
    fn a_phase_mate_goes_back_only_if_it_changed_since_the_phase_was_ready() {
        let history = [good(4, "h4"), good(3, "h3")];
        assert_eq!(follows_phase(Some(4), Some(3), &history), Some(3));
        assert_eq!(follows_phase(Some(3), Some(3), &history), None);
        assert_eq!(follows_phase(Some(4), None, &history), None);
        assert_eq!(follows_phase(Some(4), Some(1), &history), None);
    }
}
