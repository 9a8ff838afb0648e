//! Leader election on a `coordination.k8s.io/v1` Lease, with fencing.
//!
//! Every replica runs the watches (standbys keep warm caches); only the leader writes. A
//! leader counts as one only until `last successful renewal + renew_deadline`: past that
//! instant [`Leadership::ensure`] refuses every write, whether or not the election loop has
//! noticed yet. A standby takes the Lease over only after it has seen the same record
//! unchanged for a whole `lease_duration`, measured on its own clock (as client-go does:
//! clocks of different nodes are never compared). Since `renew_deadline < lease_duration`,
//! an old leader stops writing at least `lease_duration - renew_deadline` before a new one
//! can start. On shutdown the leader releases the Lease (empty holder) so a standby takes
//! over at its next try instead of waiting out the lease.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::error::Error;

#[derive(Clone, Debug)]
pub struct ElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// Bounds as client-go's defaults scaled for a small cluster: a dead leader is replaced
    /// within `lease_duration + retry_period`.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Whether this replica leads, as far as writing is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// No election yet (starting up).
    Unknown,
    Leader,
    Standby,
}

#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: not leading. `Some(t)`: leading until `t` unless renewed. `elect: false`
    /// replicas lead for ever (one replica, no election).
    leading_until: Mutex<Option<Instant>>,
    role: watch::Sender<Role>,
    elect: bool,
}

impl Leadership {
    /// A replica that is the only writer by configuration (no Lease): always the leader.
    pub fn sole() -> Self {
        let (role, _) = watch::channel(Role::Leader);
        Self {
            inner: Arc::new(Inner {
                leading_until: Mutex::new(None),
                role,
                elect: false,
            }),
        }
    }

    /// A replica that must win the Lease before writing.
    pub fn elected() -> Self {
        let (role, _) = watch::channel(Role::Unknown);
        Self {
            inner: Arc::new(Inner {
                leading_until: Mutex::new(None),
                role,
                elect: true,
            }),
        }
    }

    pub fn is_leader(&self) -> bool {
        if !self.inner.elect {
            return true;
        }
        self.until().is_some_and(|until| Instant::now() < until)
    }

    /// The fence every write goes through.
    pub fn ensure(&self) -> Result<(), Error> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    pub fn role(&self) -> Role {
        if !self.inner.elect {
            return Role::Leader;
        }
        match *self.inner.role.borrow() {
            Role::Leader if !self.is_leader() => Role::Standby,
            role => role,
        }
    }

    /// Changes of role, for waking the controllers when this replica starts leading.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.inner.role.subscribe()
    }

    fn until(&self) -> Option<Instant> {
        *self
            .inner
            .leading_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lead_until(&self, until: Instant) {
        *self
            .inner
            .leading_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(until);
        self.inner.role.send_if_modified(|role| {
            let changed = *role != Role::Leader;
            *role = Role::Leader;
            changed
        });
    }

    fn stand_by(&self) {
        *self
            .inner
            .leading_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.inner.role.send_if_modified(|role| {
            let changed = *role != Role::Standby;
            *role = Role::Standby;
            changed
        });
    }
}

/// What this replica last saw of another holder's record, and since when (its own clock).
#[derive(Debug, Default)]
pub struct Observation {
    record: Option<(Option<String>, Option<String>)>,
    since: Option<Instant>,
}

/// What to do with the Lease as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Released, or not renewed for a whole lease duration: take it over.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

/// The election's one decision, pure: from the Lease as read, this replica's identity, what
/// it observed before and the time now.
pub fn decide(
    lease: Option<&LeaseSpec>,
    identity: &str,
    lease_duration: Duration,
    observed: &mut Observation,
    now: Instant,
) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    match holder.as_deref() {
        Some(h) if h == identity => return Step::Renew,
        None => return Step::TakeOver,
        Some(_) => {}
    }
    let record = (holder, spec.renew_time.as_ref().map(|t| t.0.to_string()));
    if observed.record.as_ref() != Some(&record) {
        observed.record = Some(record);
        observed.since = Some(now);
        return Step::Wait;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(lease_duration);
    match observed.since {
        Some(since) if now.duration_since(since) >= duration => Step::TakeOver,
        _ => Step::Wait,
    }
}

/// Runs the election until `shutdown` resolves, then releases the Lease if it still names
/// this replica. Every transition is logged and reported through `on_transition` exactly
/// once: the role channel always goes back to Standby when the fence closes, so winning the
/// Lease again is a change the controllers see (and they look at everything again).
pub async fn run(
    client: Client,
    config: ElectionConfig,
    leadership: Leadership,
    on_transition: impl Fn(Role) + Send + Sync,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed = Observation::default();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut reported = Role::Unknown;
    let mut ever_held = false;
    let report = |role: Role, reported: &mut Role, why: &str| {
        if *reported == role {
            return;
        }
        match role {
            Role::Leader => {
                tracing::info!(lease = %config.name, identity = %config.identity, "leading")
            }
            _ if *reported == Role::Leader => {
                tracing::warn!(lease = %config.name, why, "stopped writing; standing by")
            }
            _ => tracing::info!(lease = %config.name, "standing by"),
        }
        if role != Role::Leader {
            leadership.stand_by();
        }
        // Unknown -> Standby at start is not a transition worth counting.
        if !(*reported == Role::Unknown && role == Role::Standby) {
            on_transition(role);
        }
        *reported = role;
    };
    loop {
        let attempt = Instant::now();
        // No call may outlive the lease: a leader's budget ends at its renew deadline. A
        // standby's write is a compare-and-swap, so a slow call cannot make two leaders; its
        // budget is the renew deadline, not the retry period, so that a loaded API server
        // answering in more than a retry period still lets it take over. (The client itself
        // has no read timeout.)
        let budget = match leadership.until() {
            Some(until) if until > attempt => until - attempt,
            _ => config.renew_deadline,
        };
        let outcome = tokio::select! {
            _ = &mut shutdown => break,
            outcome = tokio::time::timeout(budget, try_once(&api, &config, &mut observed)) => outcome,
        };
        match outcome {
            Ok(Ok(true)) => {
                ever_held = true;
                leadership.lead_until(attempt + config.renew_deadline);
                report(Role::Leader, &mut reported, "");
            }
            Ok(Ok(false)) => report(Role::Standby, &mut reported, "the lease is held by another"),
            Ok(Err(error)) => {
                tracing::warn!(lease = %config.name, error = %error, "lease renewal failed");
            }
            Err(_) => tracing::warn!(lease = %config.name, ?budget, "lease call timed out"),
        }
        // Until the next try; a leader whose fence closes meanwhile says so at that instant.
        let next = Instant::now() + config.retry_period;
        let deadline = leadership
            .until()
            .filter(|until| reported == Role::Leader && *until < next);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(deadline.unwrap_or(next).into()) => {}
        }
        if reported == Role::Leader && !leadership.is_leader() {
            report(Role::Standby, &mut reported, "renew deadline passed");
        }
    }
    let held = reported == Role::Leader;
    leadership.stand_by();
    if ever_held {
        // Compare-and-swap on the holder: safe whenever the Lease still names us. The renew
        // deadline as budget, like every Lease call: a loaded API server answering slower
        // than a retry period would otherwise leave the standby a whole lease to wait.
        match tokio::time::timeout(config.renew_deadline, release(&api, &config)).await {
            Ok(Ok(())) => tracing::info!(lease = %config.name, "released the lease"),
            Ok(Err(error)) => {
                tracing::warn!(lease = %config.name, error = %error, "could not release the lease")
            }
            Err(_) => tracing::warn!(lease = %config.name, "releasing the lease timed out"),
        }
    }
    if held {
        on_transition(Role::Standby);
    }
}

/// One read and at most one write of the Lease; `true` when this replica holds it now.
async fn try_once(
    api: &Api<Lease>,
    config: &ElectionConfig,
    observed: &mut Observation,
) -> Result<bool, kube::Error> {
    let lease = api.get_opt(&config.name).await?;
    // A standby dates what it saw by when the read came back (as client-go does): a slow
    // read must not make the record look older than it is.
    let step = decide(
        lease.as_ref().and_then(|l| l.spec.as_ref()),
        &config.identity,
        config.lease_duration,
        observed,
        Instant::now(),
    );
    let stamp = Some(MicroTime(jiff::Timestamp::now()));
    let held = |mut spec: LeaseSpec, transition: bool| {
        if transition {
            spec.acquire_time = stamp.clone();
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(config.identity.clone());
        spec.lease_duration_seconds =
            Some(i32::try_from(config.lease_duration.as_secs()).unwrap_or(15));
        spec.renew_time = stamp.clone();
        spec
    };
    let write = match (step, lease) {
        (Step::Wait, _) => return Ok(false),
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..Default::default()
                },
                spec: Some(held(
                    LeaseSpec {
                        lease_transitions: Some(-1),
                        ..Default::default()
                    },
                    true,
                )),
            };
            api.create(&PostParams::default(), &lease).await
        }
        (step, Some(mut lease)) => {
            // The resourceVersion in the body makes this a compare-and-swap: of two standbys
            // taking over at once, one gets a conflict.
            let spec = lease.spec.take().unwrap_or_default();
            lease.spec = Some(held(spec, step == Step::TakeOver));
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
        }
        (_, None) => return Ok(false),
    };
    match write {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

async fn release(api: &Api<Lease>, config: &ElectionConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    fn held_by(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed.parse().expect("timestamp"))),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    #[test]
    fn no_lease_is_created_and_an_own_lease_is_renewed() {
        let mut seen = Observation::default();
        let now = Instant::now();
        assert_eq!(decide(None, "a", LEASE, &mut seen, now), Step::Create);
        let mine = held_by("a", "2026-01-01T00:00:00Z");
        assert_eq!(decide(Some(&mine), "a", LEASE, &mut seen, now), Step::Renew);
    }

    #[test]
    fn a_released_lease_is_taken_over_at_once() {
        let released = LeaseSpec::default();
        let mut seen = Observation::default();
        assert_eq!(
            decide(Some(&released), "b", LEASE, &mut seen, Instant::now()),
            Step::TakeOver
        );
    }

    #[test]
    fn a_lease_is_taken_over_only_after_a_whole_duration_without_renewal_on_our_clock() {
        let mut seen = Observation::default();
        let t0 = Instant::now();
        let other = held_by("a", "2026-01-01T00:00:00Z");
        assert_eq!(decide(Some(&other), "b", LEASE, &mut seen, t0), Step::Wait);
        let just_before = t0 + LEASE - Duration::from_millis(1);
        assert_eq!(
            decide(Some(&other), "b", LEASE, &mut seen, just_before),
            Step::Wait
        );
        // A renewal seen restarts the count, whatever the timestamps say.
        let renewed = held_by("a", "2026-01-01T00:00:02Z");
        assert_eq!(
            decide(Some(&renewed), "b", LEASE, &mut seen, t0 + LEASE),
            Step::Wait
        );
        assert_eq!(
            decide(Some(&renewed), "b", LEASE, &mut seen, t0 + LEASE * 2),
            Step::TakeOver
        );
    }

    #[test]
    fn the_fence_closes_at_the_renew_deadline_without_the_loop() {
        let leadership = Leadership::elected();
        assert!(leadership.ensure().is_err(), "no election yet: no writes");
        leadership.lead_until(Instant::now() + Duration::from_secs(60));
        assert!(leadership.ensure().is_ok());
        assert_eq!(leadership.role(), Role::Leader);
        leadership.lead_until(Instant::now() - Duration::from_millis(1));
        assert!(leadership.ensure().is_err(), "past the deadline: no writes");
        assert_eq!(leadership.role(), Role::Standby);
        assert!(Leadership::sole().ensure().is_ok());
    }
}
