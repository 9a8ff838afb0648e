//! Why a rollout cannot finish, read from its pods: a Deployment's status only says pods are
//! unavailable, and gives up (`ProgressDeadlineExceeded`) after ten minutes. The pods say at
//! once that an image cannot be pulled, a container keeps crashing, its configuration is
//! unusable or no node fits it; each of those needs the user, so it is reported as Degraded
//! with the image or container named.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::Reason;

/// A reason for the `Degraded` condition and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    pub reason: Reason,
    pub message: String,
}

/// Waiting reasons the kubelet gives when an image cannot be had.
const IMAGE_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "ImageInspectError",
    "RegistryUnavailable",
];
const CONFIG_REASONS: &[&str] = &["CreateContainerConfigError", "CreateContainerError"];

/// The problem, among the pods of the current ReplicaSet, that only the user can fix. During
/// a rollout the old ReplicaSet's pod may still be stuck on the image the user has since
/// fixed; what matters is the current template. `current_hash` is the current ReplicaSet's
/// `pod-template-hash` when the Deployment says it ([`current_template_hash`]); without it,
/// the newest pod's is taken (an old ReplicaSet's pod re-created after the new one's would
/// mislead that guess, which is why the Deployment's word comes first). Pods go by name, so
/// the message does not flap between pods with the same problem.
pub fn pod_problem<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    current_hash: Option<&str>,
) -> Option<PodProblem> {
    let pods: Vec<&Pod> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let current = match current_hash {
        Some(hash) => Some(hash),
        None => {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let newest = pods.iter().max_by(|a, b| {
                created(a)
                    .cmp(&created(b))
                    .then_with(|| b.metadata.name.cmp(&a.metadata.name))
            })?;
            template_hash(newest)
        }
    };
    let mut current: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| template_hash(p) == current)
        .collect();
    current.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    current.into_iter().find_map(problem_of)
}

/// The current ReplicaSet's `pod-template-hash`, from the Deployment's `Progressing`
/// condition: the deployment controller names the new ReplicaSet there
/// (`ReplicaSet "api-gateway-6969f75475" is progressing.`, `Created new replica set "…"`),
/// and the hash is the suffix after the Deployment's name. None when it does not say (yet).
pub fn current_template_hash(deployment: &Deployment) -> Option<String> {
    let name = deployment.metadata.name.as_deref()?;
    // Until the controller has seen the current spec, the condition may name the old one.
    if deployment.status.as_ref()?.observed_generation != deployment.metadata.generation {
        return None;
    }
    let condition = deployment
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")?;
    // "ReplicaSet \"x\" is progressing.", "Created new replica set \"x\"", ...: the first
    // quoted name.
    let quoted = condition.message.as_deref()?.split('"').nth(1)?;
    let hash = quoted.strip_prefix(name)?.strip_prefix('-')?;
    (!hash.is_empty()).then(|| hash.to_string())
}

fn template_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get("pod-template-hash")
        .map(String::as_str)
}

fn problem_of(pod: &Pod) -> Option<PodProblem> {
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in containers {
        if let Some(problem) = container_problem(pod, container) {
            return Some(problem);
        }
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    Some(PodProblem {
        reason: Reason::Unschedulable,
        message: format!(
            "pod {} cannot be scheduled: {}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            unschedulable
                .message
                .as_deref()
                .unwrap_or("no node fits it")
        ),
    })
}

fn container_problem(pod: &Pod, container: &ContainerStatus) -> Option<PodProblem> {
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    let detail = waiting.message.as_deref().unwrap_or(reason);
    // The image the pod asked for (the status may hold a resolved name, or none yet).
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
                .find(|c| c.name == container.name)
        })
        .and_then(|c| c.image.clone())
        .unwrap_or_else(|| container.image.clone());
    if IMAGE_REASONS.contains(&reason) {
        return Some(PodProblem {
            reason: Reason::ImagePullFailed,
            message: format!("image {image} cannot be pulled ({reason}): {detail}"),
        });
    }
    if CONFIG_REASONS.contains(&reason) {
        return Some(PodProblem {
            reason: Reason::ContainerConfigError,
            message: format!(
                "container {} of image {image} cannot be created ({reason}): {detail}",
                container.name
            ),
        });
    }
    if reason == "CrashLoopBackOff" {
        let last = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| {
                format!(
                    "; last exit code {}{}",
                    t.exit_code,
                    t.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        return Some(PodProblem {
            reason: Reason::CrashLoopBackOff,
            message: format!(
                "container {} of image {image} keeps exiting: restarted {} times{last}",
                container.name, container.restart_count
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "api-gateway", "image": "docker.io/lucid/lucid-api-gateway:nope"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn waiting(reason: &str, message: &str) -> serde_json::Value {
        json!({"containerStatuses": [{
            "name": "api-gateway", "image": "docker.io/lucid/lucid-api-gateway:nope", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}},
        }]})
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_named() {
        let p = pod(
            "api-gateway-1",
            waiting(
                "ErrImageNeverPull",
                "Container image \"docker.io/lucid/lucid-api-gateway:nope\" is not present with pull policy of Never",
            ),
        );
        let problem = pod_problem([&p], None).unwrap();
        assert_eq!(problem.reason, Reason::ImagePullFailed);
        assert!(
            problem.message.starts_with(
                "image docker.io/lucid/lucid-api-gateway:nope cannot be pulled (ErrImageNeverPull)"
            ),
            "{}",
            problem.message
        );
    }

    #[test]
    fn a_crash_loop_names_the_container_and_the_last_exit() {
        let p = pod(
            "api-gateway-1",
            json!({"containerStatuses": [{
                "name": "api-gateway", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }]}),
        );
        assert_eq!(
            pod_problem([&p], None).unwrap().message,
            "container api-gateway of image docker.io/lucid/lucid-api-gateway:nope keeps exiting: restarted 4 times; last exit code 1 (Error)"
        );
    }

    #[test]
    fn an_unschedulable_pod_says_why() {
        let p = pod(
            "api-gateway-1",
            json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) didn't match node selector."}]}),
        );
        let problem = pod_problem([&p], None).unwrap();
        assert_eq!(problem.reason, Reason::Unschedulable);
        assert!(problem.message.contains("didn't match node selector"));
    }

    #[test]
    fn starting_pods_and_terminating_ones_are_no_problem() {
        let starting = pod("a", waiting("ContainerCreating", ""));
        let mut terminating = pod("b", waiting("ImagePullBackOff", "gone soon"));
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert_eq!(pod_problem([&starting, &terminating], None), None);
    }

    #[test]
    fn the_current_replica_sets_pods_speak_for_the_rollout_by_name() {
        let at = |p: &mut Pod, hash: &str, s: &str| {
            p.metadata.creation_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(s.parse().unwrap()),
            );
            p.metadata.labels = Some([("pod-template-hash".to_string(), hash.to_string())].into());
        };
        let mut old = pod("a-old", waiting("ErrImageNeverPull", "the old tag"));
        at(&mut old, "old", "2026-01-01T00:00:00Z");
        let mut new = pod("z-new", waiting("ContainerCreating", ""));
        at(&mut new, "new", "2026-01-01T00:01:00Z");
        // The fixed template's pod is still starting: nothing to report, whatever the old one says.
        assert_eq!(pod_problem([&old, &new], None), None);
        new = pod("z-new", waiting("CrashLoopBackOff", "back-off"));
        at(&mut new, "new", "2026-01-01T00:01:00Z");
        assert_eq!(
            pod_problem([&old, &new], None).unwrap().reason,
            Reason::CrashLoopBackOff
        );

        let mut b = pod("b", waiting("ImagePullBackOff", "from b"));
        at(&mut b, "new", "2026-01-01T00:02:00Z");
        let mut a = pod("a", waiting("ImagePullBackOff", "from a"));
        at(&mut a, "new", "2026-01-01T00:01:30Z");
        assert!(
            pod_problem([&b, &a], None)
                .unwrap()
                .message
                .ends_with("from a")
        );
    }

    #[test]
    fn the_deployment_names_the_current_replica_set_even_when_an_old_pod_is_newer() {
        let at = |p: &mut Pod, hash: &str, s: &str| {
            p.metadata.creation_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(s.parse().unwrap()),
            );
            p.metadata.labels = Some([("pod-template-hash".to_string(), hash.to_string())].into());
        };
        // Seen on the real cluster: the old ReplicaSet's pod (the bad tag) was re-created
        // after the new one's, and the newest-pod guess reported the fixed image.
        let mut new = pod(
            "api-gateway-6969f75475-xd868",
            waiting("CrashLoopBackOff", "back-off"),
        );
        at(&mut new, "6969f75475", "2026-01-01T00:01:00Z");
        let mut old = pod(
            "api-gateway-565f8c6d5b-rnz4f",
            waiting("ErrImageNeverPull", "the old tag"),
        );
        at(&mut old, "565f8c6d5b", "2026-01-01T00:02:00Z");
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "api-gateway"},
            "status": {"conditions": [{
                "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                "message": "ReplicaSet \"api-gateway-6969f75475\" is progressing.",
            }]},
        }))
        .unwrap();
        let hash = current_template_hash(&deployment);
        assert_eq!(hash.as_deref(), Some("6969f75475"));
        let created: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "api-gateway"},
            "status": {"conditions": [{
                "type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated",
                "message": "Created new replica set \"api-gateway-6969f75475\"",
            }]},
        }))
        .unwrap();
        assert_eq!(current_template_hash(&created), hash);
        assert_eq!(
            pod_problem([&old, &new], hash.as_deref()).unwrap().reason,
            Reason::CrashLoopBackOff
        );
        assert_eq!(
            pod_problem([&old, &new], None).unwrap().reason,
            Reason::ImagePullFailed
        );
    }
}
