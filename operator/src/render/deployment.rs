//! The Deployment that runs the service's pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CONFIG_HASH_ANNOTATION, RenderInputs, labels, pod, storage};
use crate::api::{DEFAULT_PROGRESS_DEADLINE_SECONDS, LucidService, UpdateStrategy};

/// Whether an update stops the old pods before starting new ones (see `UpdateStrategy`).
/// Two pods on a database's files would corrupt them; everything else rolls with no gap,
/// and an update that fails leaves the old pods serving.
pub fn recreates(ls: &LucidService) -> bool {
    match ls.spec.update_strategy {
        UpdateStrategy::Recreate => true,
        UpdateStrategy::RollingUpdate => false,
        UpdateStrategy::Auto => storage::data_on_read_write_once_claim(ls),
    }
}

pub fn deployment(
    ls: &LucidService,
    namespace: &str,
    owner: &OwnerReference,
    inputs: &RenderInputs,
) -> Deployment {
    let mut pod_annotations: BTreeMap<String, String> = ls.spec.annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), inputs.config_hash.clone());
    // The rolling update is spelled out, not left to defaults, so that switching to
    // Recreate removes it (see `pod::handler`).
    let strategy = if recreates(ls) {
        DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        }
    } else {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::String("25%".into())),
                max_unavailable: Some(IntOrString::String("25%".into())),
            }),
        }
    };
    Deployment {
        metadata: super::owned_metadata(ls, namespace, owner),
        spec: Some(DeploymentSpec {
            replicas: Some(ls.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels::selector(ls)),
                match_expressions: None,
            },
            strategy: Some(strategy),
            progress_deadline_seconds: Some(
                ls.spec
                    .progress_deadline_seconds
                    .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS),
            ),
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels::pod(ls)),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(pod::pod_spec(ls)),
            },
            ..Default::default()
        }),
        status: None,
    }
}
