//! Checks the schema cannot express (Kubernetes 1.20 has no CEL rules). Each problem reads as
//! what to change.

use std::collections::BTreeSet;

use kube::ResourceExt;

use crate::api::LucidService;

/// Problems with a LucidService's spec; empty when it is valid.
pub fn problems(ls: &LucidService) -> Vec<String> {
    let spec = &ls.spec;
    let name = ls.name_any();
    let mut out = Vec::new();

    let mut port_names = BTreeSet::new();
    let mut port_numbers = BTreeSet::new();
    for port in &spec.ports {
        if !port_names.insert(&port.name) {
            out.push(format!(
                "port name {:?} is used twice; give each port its own name",
                port.name
            ));
        }
        if !port_numbers.insert((port.port, port.protocol.as_str())) {
            out.push(format!("port {} is listed twice", port.port));
        }
    }
    if spec.depends_on.contains(&name) {
        out.push(format!(
            "dependsOn names the service itself ({name}); remove it"
        ));
    }
    for var in &spec.env {
        match (&var.value, &var.value_from) {
            (Some(_), Some(_)) => out.push(format!(
                "env {}: set value or valueFrom, not both",
                var.name
            )),
            (_, Some(from)) => match (&from.secret_key_ref, &from.config_map_key_ref) {
                (Some(_), Some(_)) | (None, None) => out.push(format!(
                    "env {}: valueFrom needs exactly one of secretKeyRef or configMapKeyRef",
                    var.name
                )),
                _ => {}
            },
            _ => {}
        }
    }
    for (i, source) in spec.env_from.iter().enumerate() {
        if source.config_map_ref.is_some() == source.secret_ref.is_some() {
            out.push(format!(
                "envFrom[{i}]: set exactly one of configMapRef or secretRef"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{redis, service};

    #[test]
    fn a_catalog_service_is_valid() {
        assert_eq!(problems(&redis()), Vec::<String>::new());
    }

    #[test]
    fn each_problem_names_what_to_change() {
        let ls = service(
            "api",
            r#"
image: {repository: x}
phase: core
dependsOn: [api]
ports: [{name: http, port: 80}, {name: http, port: 80}]
env:
  - {name: A, value: x, valueFrom: {secretKeyRef: {name: s, key: k}}}
  - {name: B, valueFrom: {}}
envFrom: [{}]
"#,
        );
        let p = problems(&ls);
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(
            p.iter()
                .any(|m| m.contains("dependsOn names the service itself"))
        );
        assert!(p.iter().any(|m| m.contains("envFrom[0]")));
    }
}
