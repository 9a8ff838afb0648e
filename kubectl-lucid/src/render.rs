//! `plan --render`: each service's children from the operator's own pure `render`, as the
//! operator would create them in `namespace`.

use kube::ResourceExt;
use lucid_operator::reconcile::config_hash_of;
use lucid_operator::render::{RenderInputs, render};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::manifests::Manifests;

/// The API server gives each object its uid; until then the owner references carry this.
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Deployments, Services, claims and NetworkPolicies, service by service in the given order.
pub fn rendered(m: &Manifests, order: &[String], namespace: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for name in order {
        let Some(ls) = m.services.iter().find(|s| &s.name_any() == name) else {
            continue;
        };
        let mut ls = ls.clone();
        ls.metadata.namespace = Some(namespace.to_string());
        ls.metadata.uid = Some(PLACEHOLDER_UID.to_string());
        // The config hash of the ConfigMaps and Secrets given beside the service, by the
        // operator's own rule: the same the operator writes once they are in the cluster.
        // Empty when one it needs is not among them (the operator would report it missing).
        let config_hash = config_hash_of(&ls, &m.config_maps, &m.secrets).unwrap_or_default();
        let children = render(
            &ls,
            &RenderInputs {
                config_hash,
                // k3s today; a 1.20 cluster would get policy/v1beta1 from the operator.
                ..Default::default()
            },
        )
        .map_err(|e| Error::Serialise {
            what: format!("LucidService {name}"),
            message: e.to_string(),
        })?;
        let json = |v: serde_json::Result<Value>, what: &str| {
            v.map_err(|e| Error::Serialise {
                what: what.to_string(),
                message: e.to_string(),
            })
        };
        out.push(with_kind(
            json(serde_json::to_value(&children.deployment), "Deployment")?,
            "apps/v1",
            "Deployment",
        ));
        if let Some(svc) = &children.service {
            out.push(with_kind(
                json(serde_json::to_value(svc), "Service")?,
                "v1",
                "Service",
            ));
        }
        for c in &children.claims {
            out.push(with_kind(
                json(serde_json::to_value(c), "PersistentVolumeClaim")?,
                "v1",
                "PersistentVolumeClaim",
            ));
        }
        out.push(with_kind(
            json(
                serde_json::to_value(&children.network_policy),
                "NetworkPolicy",
            )?,
            "networking.k8s.io/v1",
            "NetworkPolicy",
        ));
        if let Some(lucid_operator::render::disruption_budget::DisruptionBudget::V1(budget)) =
            &children.disruption_budget
        {
            out.push(with_kind(
                json(serde_json::to_value(budget), "PodDisruptionBudget")?,
                "policy/v1",
                "PodDisruptionBudget",
            ));
        }
    }
    Ok(out)
}

/// k8s-openapi structs serialise without apiVersion and kind; an object to apply needs them
/// first.
fn with_kind(v: Value, api_version: &str, kind: &str) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("apiVersion".into(), api_version.into());
    out.insert("kind".into(), kind.into());
    if let Value::Object(fields) = v {
        for (k, v) in fields {
            if k != "apiVersion" && k != "kind" {
                out.insert(k, v);
            }
        }
    }
    Value::Object(out)
}
