//! LucidServices for render tests, shaped like the catalog's entries.

use kube::api::ObjectMeta;

use crate::api::{LucidService, LucidServiceSpec};

/// Parses a spec written as YAML (what a user writes) and gives it the metadata the API
/// server would.
pub fn service(name: &str, spec_yaml: &str) -> LucidService {
    let spec: LucidServiceSpec = serde_saphyr::from_str(spec_yaml).expect("fixture spec parses");
    LucidService {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("lucid".into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// The catalog's lucid-redis: one port, depends on lucid-mongodb, external.
pub fn redis() -> LucidService {
    service(
        "lucid-redis",
        r#"
image: {repository: pickme/lucid-redis}
phase: foundation
dependsOn: [lucid-mongodb]
ports: [{name: redis, port: 6379}]
healthCheck: {kind: Tcp}
service: {type: NodePort}
envFrom:
  - configMapRef: {name: lucid-env-foundation}
  - secretRef: {name: lucid-secrets}
"#,
    )
}
