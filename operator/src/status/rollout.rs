//! When a Deployment counts as rolled out: the same rules as `kubectl rollout status`.

use k8s_openapi::api::apps::v1::Deployment;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    Complete {
        ready: i32,
        replicas: i32,
    },
    InProgress {
        ready: i32,
        replicas: i32,
        message: String,
    },
    /// The Deployment controller gave up (`ProgressDeadlineExceeded`).
    Stuck {
        ready: i32,
        replicas: i32,
        message: String,
    },
}

impl Rollout {
    pub fn ready_replicas(&self) -> (i32, i32) {
        match self {
            Rollout::Complete { ready, replicas }
            | Rollout::InProgress {
                ready, replicas, ..
            }
            | Rollout::Stuck {
                ready, replicas, ..
            } => (*ready, *replicas),
        }
    }
}

pub fn rollout(deployment: &Deployment) -> Rollout {
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let in_progress = |message: String| Rollout::InProgress {
        ready,
        replicas,
        message,
    };

    let generation = deployment.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return in_progress(format!(
            "waiting for the Deployment controller to observe generation {generation}"
        ));
    }
    if let Some(stuck) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return Rollout::Stuck {
            ready,
            replicas,
            message: stuck
                .message
                .clone()
                .unwrap_or_else(|| "progress deadline exceeded".into()),
        };
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if updated < replicas {
        return in_progress(format!("{updated} of {replicas} pods updated"));
    }
    if status.replicas.unwrap_or(0) > updated {
        return in_progress(format!(
            "{} old pods terminating",
            status.replicas.unwrap_or(0) - updated
        ));
    }
    let available = status.available_replicas.unwrap_or(0);
    if available < replicas {
        return in_progress(format!("{available} of {replicas} pods available"));
    }
    Rollout::Complete { ready, replicas }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};

    use super::*;

    fn deployment(generation: i64, status: DeploymentStatus) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(2),
                ..Default::default()
            }),
            status: Some(status),
            ..Default::default()
        };
        d.metadata.generation = Some(generation);
        d
    }

    fn available(observed: i64) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(2),
            updated_replicas: Some(2),
            ready_replicas: Some(2),
            available_replicas: Some(2),
            ..Default::default()
        }
    }

    #[test]
    fn complete_only_when_the_current_generation_is_available() {
        assert_eq!(
            rollout(&deployment(3, available(3))),
            Rollout::Complete {
                ready: 2,
                replicas: 2
            }
        );
        assert!(matches!(
            rollout(&deployment(4, available(3))),
            Rollout::InProgress { .. }
        ));
    }

    #[test]
    fn old_pods_and_unavailable_pods_keep_it_in_progress() {
        let mut s = available(1);
        s.replicas = Some(3);
        assert!(
            matches!(rollout(&deployment(1, s)), Rollout::InProgress { message, .. } if message.contains("old pods"))
        );
        let mut s = available(1);
        s.available_replicas = Some(1);
        assert!(
            matches!(rollout(&deployment(1, s)), Rollout::InProgress { message, .. } if message == "1 of 2 pods available")
        );
    }

    #[test]
    fn progress_deadline_exceeded_is_stuck() {
        let mut s = available(1);
        s.updated_replicas = Some(1);
        s.conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet \"x\" has timed out progressing.".into()),
            ..Default::default()
        }]);
        assert!(matches!(rollout(&deployment(1, s)), Rollout::Stuck { .. }));
    }
}
