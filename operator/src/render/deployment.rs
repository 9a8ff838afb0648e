//! The Deployment that runs the service's pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CONFIG_HASH_ANNOTATION, RenderInputs, labels, pod, storage};
use crate::api::LucidService;

pub fn deployment(
    ls: &LucidService,
    namespace: &str,
    owner: &OwnerReference,
    inputs: &RenderInputs,
) -> Deployment {
    let mut pod_annotations: BTreeMap<String, String> = ls.spec.annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), inputs.config_hash.clone());
    // Two pods on one ReadWriteOnce claim would fight over it (and a Pi is one node):
    // stop the old pod before starting the new one. The rolling update is spelled out, not
    // left to defaults, so that switching to Recreate removes it (see `pod::handler`).
    let strategy = if storage::mounts_read_write_once_claim(ls) {
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
