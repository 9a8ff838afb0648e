//! Wake-ups: which services or phases a change to some other object concerns. Each mapper
//! reads the caches (already holding the change, see `watches::fan_out`) and names the
//! objects to reconcile; filters keep status writes from waking anyone who would decide the
//! same again.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::context::NamespaceView;
use super::references::{ConfigKind, ConfigReference, references};
use super::{PhaseGuard, ServiceGuard};
use crate::api::LucidService;
use crate::graph::service_ready;
use crate::health::OperatorHealth;
use crate::leader::{Leadership, Role};

/// Each service's readiness and whether it rolled itself back, as last seen by
/// `dependents_to_wake`, by `namespace/name`: only a flip wakes anyone.
pub(super) type LastSeen = Mutex<HashMap<String, (bool, bool)>>;

/// The LucidService a child or pod belongs to, by its `lucid.io/service` label.
pub(super) fn owning_service(meta: &ObjectMeta) -> Option<ObjectRef<ServiceGuard>> {
    let service = meta.labels.as_ref()?.get(crate::render::labels::SERVICE)?;
    Some(ObjectRef::new(service).within(meta.namespace.as_deref().unwrap_or_default()))
}

/// The phase a changed service is in: its member counts and states may have changed.
pub(super) fn phase_of(guard: &ServiceGuard) -> Option<ObjectRef<PhaseGuard>> {
    let ls = guard.0.as_ref().ok()?;
    Some(ObjectRef::new(&ls.spec.phase).within(&ls.namespace().unwrap_or_default()))
}

/// Phases that may name a changed one: they may now have (or lose) a missing dependency or
/// a cycle.
pub(super) fn peers_of(
    phases: &Store<PhaseGuard>,
    changed: &PhaseGuard,
) -> Vec<ObjectRef<PhaseGuard>> {
    let ns = changed.namespace();
    phases
        .state()
        .iter()
        .filter(|p| p.namespace() == ns && p.name_any() != changed.name_any())
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

pub(super) fn references_config_map(r: &ConfigReference) -> bool {
    r.kind == ConfigKind::ConfigMap
}

pub(super) fn references_secret(r: &ConfigReference) -> bool {
    r.kind == ConfigKind::Secret
}

/// Services in `namespace` that read the ConfigMap or Secret `name`.
pub(super) fn services_reading(
    services: &Store<ServiceGuard>,
    kind: fn(&ConfigReference) -> bool,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<ServiceGuard>> {
    services
        .state()
        .iter()
        .filter(|g| g.namespace().as_deref() == Some(namespace))
        .filter(|g| {
            g.0.as_ref()
                .is_ok_and(|ls| references(ls).iter().any(|r| kind(r) && r.name == name))
        })
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// Members of a phase that changed, and of every phase after it (pausing or unpausing it,
/// or editing its dependsOn, changes what they wait for).
pub(super) fn services_after_phase_change(
    services: &Store<ServiceGuard>,
    phases: &Store<PhaseGuard>,
    phase: &PhaseGuard,
) -> Vec<ObjectRef<ServiceGuard>> {
    let changed = phase.name_any();
    let view = NamespaceView::read(services, phases, &phase.namespace().unwrap_or_default());
    let snapshot = view.snapshot();
    // A deleted phase is in nobody's upstream any more: those naming it directly now miss
    // a dependency.
    let downstream: Vec<String> = view
        .phases()
        .filter(|p| {
            p.spec.depends_on.contains(&changed)
                || snapshot
                    .upstream_phases(&p.name_any())
                    .contains(&changed.as_str())
        })
        .map(|p| p.name_any())
        .collect();
    view.services()
        .filter(|ls| ls.spec.phase == changed || downstream.contains(&ls.spec.phase))
        .map(service_ref)
        .collect()
}

/// A phase's spec changes and its deletion, not its status writes. `predicates::generation`
/// alone drops the delete event (a deleted object keeps its generation), and the members of
/// a deleted phase would go on saying Ready until a resync. The cache is written before an
/// event is copied out (`fan_out`), so a deleted phase is already gone from it here.
pub(super) fn generation_or_gone(phases: Store<PhaseGuard>) -> impl Fn(&PhaseGuard) -> Option<u64> {
    move |phase| {
        let gone = phases
            .get(&ObjectRef::new(&phase.name_any()).within(&phase.namespace().unwrap_or_default()))
            .is_none();
        // One value per (generation, gone); generations are positive.
        let generation = kube::Resource::meta(phase)
            .generation
            .unwrap_or_default()
            .unsigned_abs();
        Some(generation << 1 | u64::from(gone))
    }
}

/// A service's spec changes, and a new `lucid.io/retry` annotation (`kubectl lucid retry`
/// asks for a failed update again without a spec change, which bumps no generation).
pub(super) fn generation_or_retry(guard: &ServiceGuard) -> Option<u64> {
    let meta = kube::Resource::meta(guard);
    let retry = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::upgrade::RETRY_ANNOTATION));
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&meta.generation, &mut hasher);
    std::hash::Hash::hash(&retry, &mut hasher);
    Some(std::hash::Hasher::finish(&hasher))
}

fn service_ref(ls: &LucidService) -> ObjectRef<ServiceGuard> {
    ObjectRef::new(&ls.name_any()).within(&ls.namespace().unwrap_or_default())
}

/// When a service's readiness flips, the services that may now go ahead (or must now wait):
/// those that depend on it, and, when its whole phase just turned Ready or stopped being
/// Ready, the members of the phases after it. Only flips wake anyone, so a status write that
/// changes nothing about readiness costs no reconciles.
pub(super) fn dependents_to_wake(
    services: &Store<ServiceGuard>,
    phases: &Store<PhaseGuard>,
    last_readiness: &LastSeen,
    changed: &ServiceGuard,
) -> Vec<ObjectRef<ServiceGuard>> {
    let Ok(changed) = &changed.0 else {
        return Vec::new();
    };
    let key = format!(
        "{}/{}",
        changed.namespace().unwrap_or_default(),
        changed.name_any()
    );
    // The cache is written before this runs: a service missing from it was just deleted,
    // which can complete its phase as surely as turning Ready.
    let namespace = changed.namespace().unwrap_or_default();
    let deleted = services
        .get(&ObjectRef::new(&changed.name_any()).within(&namespace))
        .is_none();
    let now_ready = service_ready(changed) && !deleted;
    // Its own update failed and was rolled back (or that ended): under `RollbackPhase` its
    // phase-mates go back with it (or forward again).
    let now_rolled_back = crate::upgrade::rolled_back_itself(changed) && !deleted;
    let (ready_flipped, rollback_flipped) = {
        let mut last = last_readiness.lock().unwrap_or_else(|e| e.into_inner());
        if deleted {
            // A deleted member that had rolled itself back no longer holds its phase-mates
            // back (`choose_rollback` finds no failed cause): they go forward again.
            let before = last.remove(&key);
            (true, before.is_some_and(|b| b.1))
        } else {
            let before = last.insert(key, (now_ready, now_rolled_back));
            (
                before.map(|b| b.0) != Some(now_ready),
                before.is_some_and(|b| b.1 != now_rolled_back)
                    || (before.is_none() && now_rolled_back),
            )
        }
    };
    if !ready_flipped && !rollback_flipped {
        return Vec::new();
    }
    let view = NamespaceView::read(services, phases, &namespace);
    let snapshot = view.snapshot();
    let name = changed.name_any();
    let phase = changed.spec.phase.as_str();
    let phase_complete = snapshot.members_ready(phase);
    // A phase that just completed (a member turned Ready or a laggard was deleted), or a
    // member that just stopped being ready, changes the gate of every later phase.
    // A deleted laggard can complete the phase; a deleted Ready member cannot hold it back.
    let phase_flipped = phase_complete || (!now_ready && !deleted);
    tracing::debug!(service = %name, deleted, now_ready, phase_complete, "readiness flipped");
    view.services()
        .filter(|s| {
            (rollback_flipped && s.spec.phase == phase && s.name_any() != name)
                || (ready_flipped && s.spec.depends_on.contains(&name))
                || (ready_flipped
                    && phase_flipped
                    && s.spec.phase != phase
                    && snapshot.upstream_phases(&s.spec.phase).contains(&phase))
        })
        .map(service_ref)
        .collect()
}

/// Fires once when the controllers start (the caches have listed everything; listed objects
/// are not sent as triggers, see `fan_out`), when this replica starts leading and when a
/// failed watch works again.
pub(super) fn look_at_everything(
    leadership: &Leadership,
    health: &OperatorHealth,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    let recovered = futures::stream::unfold(health.recoveries(), |mut n| async move {
        n.changed().await.ok()?;
        Some(((), n))
    });
    let started = futures::stream::once(futures::future::ready(()));
    futures::stream::select(
        started,
        futures::stream::select(became_leader(leadership), recovered),
    )
}

/// Fires each time this replica starts leading.
fn became_leader(leadership: &Leadership) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(leadership.subscribe(), |mut role| async move {
        loop {
            role.changed().await.ok()?;
            if *role.borrow_and_update() == Role::Leader {
                return Some(((), role));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use kube::core::ObjectMeta;
    use kube::runtime::watcher::{Error, Event};

    use super::owning_service;

    fn guarded_phase(name: &str, uid: &str, depends_on: &[&str]) -> super::PhaseGuard {
        use crate::api::{LucidPhase, LucidPhaseSpec};
        let spec = LucidPhaseSpec {
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            paused: false,
            description: None,
            on_failure: Default::default(),
        };
        let mut phase = LucidPhase::new(name, spec);
        phase.metadata.namespace = Some("lucid".into());
        phase.metadata.uid = Some(uid.into());
        phase.metadata.generation = Some(1);
        kube::core::error_boundary::DeserializeGuard(Ok(phase))
    }

    /// Through the filter the phase wake-ups pass, fed as `fan_out` feeds it (the cache
    /// written before each event is let out): a status write is dropped; the deletion and
    /// a phase of the same name made again are let through.
    #[tokio::test]
    async fn a_deleted_phase_passes_the_generation_filter() {
        use kube::runtime::WatchStreamExt;
        use kube::runtime::reflector::store;

        let (phases, writer) = store::<super::PhaseGuard>();
        let first = guarded_phase("core", "uid-1", &[]);
        let mut status_written = first.clone();
        if let Ok(p) = &mut status_written.0 {
            p.metadata.resource_version = Some("2".into());
        }
        let again = guarded_phase("core", "uid-2", &[]);
        let events = vec![
            Event::Apply(first.clone()),
            Event::Apply(status_written),
            Event::Delete(first),
            Event::Apply(again),
        ];
        let passed: Vec<(Option<String>, bool)> = futures::stream::unfold(
            (events.into_iter(), writer),
            |(mut events, mut writer)| async move {
                let event = events.next()?;
                writer.apply_watcher_event(&event);
                let object = match event {
                    Event::Apply(o) | Event::Delete(o) => o,
                    _ => unreachable!(),
                };
                Some((Ok::<_, Error>(object), (events, writer)))
            },
        )
        .predicate_filter(
            super::generation_or_gone(phases.clone()),
            Default::default(),
        )
        .filter_map(|o| async move { o.ok() })
        .map(|o| {
            let uid = kube::Resource::meta(&o).uid.clone();
            let rv = kube::Resource::meta(&o).resource_version.is_some();
            (uid, rv)
        })
        .collect()
        .await;
        assert_eq!(
            passed,
            [
                (Some("uid-1".to_string()), false),
                (Some("uid-1".to_string()), false),
                (Some("uid-2".to_string()), false),
            ],
            "created, deleted, created again; the status write dropped"
        );
    }

    /// A deleted phase wakes its members and the members of phases that name it directly
    /// (it is in nobody's upstream any more).
    #[test]
    fn a_deleted_phase_wakes_its_members_and_the_phases_naming_it() {
        use crate::api::{LucidService, LucidServiceSpec};
        use kube::core::error_boundary::DeserializeGuard;
        use kube::runtime::reflector::store;

        let service = |name: &str, phase: &str| {
            let spec: LucidServiceSpec = serde_json::from_value(serde_json::json!({
                "image": {"repository": "r"}, "phase": phase,
            }))
            .expect("spec");
            let mut ls = LucidService::new(name, spec);
            ls.metadata.namespace = Some("lucid".into());
            DeserializeGuard(Ok(ls))
        };
        let (services, mut services_writer) = store();
        for (name, phase) in [("member", "core"), ("after", "app"), ("apart", "other")] {
            services_writer.apply_watcher_event(&Event::Apply(service(name, phase)));
        }
        let (phases, mut phases_writer) = store();
        let core = guarded_phase("core", "uid-core", &[]);
        for phase in [
            core.clone(),
            guarded_phase("app", "uid-app", &["core"]),
            guarded_phase("other", "uid-other", &[]),
        ] {
            phases_writer.apply_watcher_event(&Event::Apply(phase));
        }
        phases_writer.apply_watcher_event(&Event::Delete(core.clone()));
        let mut woken: Vec<String> = super::services_after_phase_change(&services, &phases, &core)
            .into_iter()
            .map(|r| r.name)
            .collect();
        woken.sort();
        assert_eq!(woken, ["after", "member"]);
    }

    #[test]
    fn children_and_pods_wake_the_service_named_by_their_label() {
        let meta = ObjectMeta {
            namespace: Some("lucid".into()),
            labels: Some([("lucid.io/service".to_string(), "redis".to_string())].into()),
            ..Default::default()
        };
        let woken = owning_service(&meta).expect("a service");
        assert_eq!(
            (woken.name.as_str(), woken.namespace.as_deref()),
            ("redis", Some("lucid"))
        );
        assert!(owning_service(&ObjectMeta::default()).is_none());
    }

    /// Deleting the member whose own failure rolled its phase back (`RollbackPhase`) ends
    /// the rollback of its phase-mates (`choose_rollback` no longer finds the cause failed):
    /// they are woken to go forward again, not left rolled back until a resync.
    #[test]
    fn deleting_the_member_that_rolled_its_phase_back_wakes_its_phase_mates() {
        use crate::api::{LucidService, LucidServiceSpec, LucidServiceStatus, RollbackStatus};
        use kube::core::error_boundary::DeserializeGuard;
        use kube::runtime::reflector::store;

        let service = |name: &str| {
            let spec: LucidServiceSpec = serde_json::from_value(serde_json::json!({
                "image": {"repository": "r"}, "phase": "core",
            }))
            .expect("spec");
            let mut ls = LucidService::new(name, spec);
            ls.metadata.namespace = Some("lucid".into());
            ls.metadata.generation = Some(2);
            DeserializeGuard(Ok(ls))
        };
        let mut failed = service("failed");
        if let Ok(ls) = &mut failed.0 {
            ls.status = Some(LucidServiceStatus {
                rollback: Some(RollbackStatus {
                    failed_generation: 2,
                    failed_hash: "h".into(),
                    retry: None,
                    to_revision: 1,
                    reason: "CrashLoopBackOff".into(),
                    message: "m".into(),
                    restored_from: None,
                    cause: None,
                    at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        jiff::Timestamp::UNIX_EPOCH,
                    ),
                }),
                ..Default::default()
            });
        }
        let (services, mut writer) = store();
        writer.apply_watcher_event(&Event::Apply(failed.clone()));
        writer.apply_watcher_event(&Event::Apply(service("mate")));
        let (phases, mut phases_writer) = store();
        phases_writer.apply_watcher_event(&Event::Apply(guarded_phase("core", "uid-core", &[])));
        let last_seen = super::LastSeen::default();
        // Its rollback seen first: the mate is woken to roll back with it.
        let woken = super::dependents_to_wake(&services, &phases, &last_seen, &failed);
        assert_eq!(
            woken.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["mate"]
        );
        // Then it is deleted (the cache first, as `fan_out` orders it).
        writer.apply_watcher_event(&Event::Delete(failed.clone()));
        let woken = super::dependents_to_wake(&services, &phases, &last_seen, &failed);
        assert_eq!(
            woken.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["mate"],
            "the mate goes forward again"
        );
    }
}
