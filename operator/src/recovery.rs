//! Recovery in dependency order after a power cut. Every board boots at once and the
//! kubelets start all 27 services in whatever order their pods come: a service whose
//! database is not up yet exits, and the kubelet restarts it after 10 s, 20 s, 40 s ... up
//! to five minutes. By the time the database is Ready, its dependents sit in back-off, and
//! the stack's Ready time is the sum of those waits rather than of the starts.
//!
//! So: a pod whose container waits in `CrashLoopBackOff` and last crashed *before* every
//! dependency of its service had a Ready pod is deleted, and its ReplicaSet starts a new one
//! at once. A pod that crashes again after its dependencies were Ready keeps its back-off:
//! its crash is its own, and deleting it again would loop. One deletion per crash, by
//! construction, with no state kept here.
//!
//! Chosen over an init container that waits for dependencies: that would add a container
//! (and the operator's image) to every pod of the stack, and each service already says when
//! it is Ready; the operator knows the graph.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

/// When a dependency became able to serve: the earliest `Ready` transition among its ready
/// pods (it has served since). None while it has no ready pod.
pub fn ready_since<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Option<Timestamp> {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let ready = p
                .status
                .as_ref()?
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready" && c.status == "True")?;
            ready.last_transition_time.as_ref().map(|t| t.0)
        })
        .min()
}

/// A pod to start again, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    pub pod: String,
    /// The pod's UID, a precondition of the delete: never a replacement of the same name.
    pub uid: String,
    pub container: String,
    pub crashed_at: Timestamp,
}

/// The pods in crash-loop back-off whose last crash came before `dependencies_ready`.
pub fn backed_off<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    dependencies_ready: Timestamp,
) -> Vec<Restart> {
    let mut restarts: Vec<Restart> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let (container, crashed_at) = status
                .init_container_statuses
                .iter()
                .flatten()
                .chain(status.container_statuses.iter().flatten())
                .find_map(|c| {
                    let waiting = c.state.as_ref()?.waiting.as_ref()?;
                    if waiting.reason.as_deref() != Some("CrashLoopBackOff") {
                        return None;
                    }
                    let finished = c
                        .last_state
                        .as_ref()?
                        .terminated
                        .as_ref()?
                        .finished_at
                        .as_ref()?;
                    (finished.0 < dependencies_ready).then(|| (c.name.clone(), finished.0))
                })?;
            Some(Restart {
                pod: p.metadata.name.clone()?,
                uid: p.metadata.uid.clone()?,
                container,
                crashed_at,
            })
        })
        .collect();
    restarts.sort_by(|a, b| a.pod.cmp(&b.pod));
    restarts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ready_pod(name: &str, since: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": format!("uid-{name}")},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": since}]},
        }))
        .unwrap()
    }

    fn backed_off_pod(name: &str, crashed: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": format!("uid-{name}")},
            "status": {"containerStatuses": [{
                "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": crashed}},
            }]},
        }))
        .unwrap()
    }

    #[test]
    fn a_dependency_serves_from_its_first_ready_pod_and_not_before_one_is() {
        let pods = [
            ready_pod("db-b", "2026-12-06T10:00:30Z"),
            ready_pod("db-a", "2026-12-06T10:00:10Z"),
        ];
        assert_eq!(ready_since(&pods), Some(at("2026-12-06T10:00:10Z")));
        let starting: Pod = serde_json::from_value(json!({
            "metadata": {"name": "db"},
            "status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-06T10:00:00Z"}]},
        }))
        .unwrap();
        assert_eq!(ready_since([&starting]), None);
    }

    #[test]
    fn only_a_crash_from_before_the_dependencies_were_ready_is_restarted() {
        let ready = at("2026-12-06T10:01:00Z");
        let pods = [
            backed_off_pod("early", "2026-12-06T10:00:40Z"),
            backed_off_pod("own-bug", "2026-12-06T10:01:30Z"),
        ];
        let restarts = backed_off(&pods, ready);
        assert_eq!(
            restarts,
            [Restart {
                pod: "early".into(),
                uid: "uid-early".into(),
                container: "app".into(),
                crashed_at: at("2026-12-06T10:00:40Z"),
            }]
        );
        // Its replacement crashing after the dependency was Ready is left in its back-off.
        assert!(backed_off(&pods[1..], ready).is_empty());
        // A running pod, or one waiting for another reason, is left alone.
        let mut pulling = backed_off_pod("pulling", "2026-12-06T10:00:40Z");
        pulling
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .state
            .as_mut()
            .unwrap()
            .waiting
            .as_mut()
            .unwrap()
            .reason = Some("ImagePullBackOff".into());
        assert!(backed_off([&pulling], ready).is_empty());
    }
}
