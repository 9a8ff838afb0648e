//! Several compose files merged as compose 1.29's `merge_service_dicts` merges them: maps
//! (`environment`, `labels`, `depends_on`, `networks`, ...) key by key, volumes by container
//! path, ports by container port, some lists as ordered unions, some concatenated, the
//! healthcheck field by field, everything else replaced by the later file.

use super::{Mapping, Value};

/// Keys whose map form is merged key by key (lists were normalised to maps when loaded).
const MAPPINGS: &[&str] = &[
    "environment",
    "labels",
    "depends_on",
    "networks",
    "ulimits",
    "sysctls",
    "extra_hosts",
    "storage_opt",
    "deploy",
    "logging",
];
/// Ordered unions without repeats.
const UNIQUE_LISTS: &[&str] = &[
    "cap_add",
    "cap_drop",
    "expose",
    "external_links",
    "volumes_from",
    "device_cgroup_rules",
    "profiles",
    "security_opt",
    "links",
    "secrets",
    "configs",
];
/// Concatenated, a lone string counting as a one-item list.
const CONCATENATED: &[&str] = &["dns", "dns_search", "env_file", "tmpfs"];
/// Merged by the container-side path.
const PATH_MAPPINGS: &[&str] = &["volumes", "devices"];

/// `override_` laid over `base`, both already normalised.
pub fn merge_service(base: &mut Mapping, override_: &Mapping) {
    for (key, value) in override_ {
        let name = key.as_str();
        let merged = match (base.get(key), value) {
            (Some(Value::Object(b)), Value::Object(o)) if MAPPINGS.contains(&name) => {
                let mut b = b.clone();
                for (k, v) in o {
                    b.insert(k.clone(), v.clone());
                }
                Value::Object(b)
            }
            (Some(Value::Object(b)), Value::Object(o)) if name == "healthcheck" => {
                // A later `disable: true` replaces the whole check.
                if o.get("disable").and_then(Value::as_bool) == Some(true) {
                    Value::Object(o.clone())
                } else {
                    let mut b = b.clone();
                    for (k, v) in o {
                        b.insert(k.clone(), v.clone());
                    }
                    Value::Object(b)
                }
            }
            (Some(b), o) if UNIQUE_LISTS.contains(&name) => {
                let mut items = to_list(b);
                for item in to_list(o) {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                Value::Array(items)
            }
            (Some(b), o) if CONCATENATED.contains(&name) => {
                let mut items = to_list(b);
                items.extend(to_list(o));
                Value::Array(items)
            }
            (Some(Value::Array(b)), Value::Array(o)) if PATH_MAPPINGS.contains(&name) => {
                let mut items = b.clone();
                for item in o {
                    let target = container_path(item);
                    match items.iter_mut().find(|i| container_path(i) == target) {
                        Some(slot) => *slot = item.clone(),
                        None => items.push(item.clone()),
                    }
                }
                Value::Array(items)
            }
            (Some(Value::Array(b)), Value::Array(o)) if name == "ports" => {
                let mut items = b.clone();
                for item in o {
                    let target = port_key(item);
                    match items.iter_mut().find(|i| port_key(i) == target) {
                        Some(slot) => *slot = item.clone(),
                        None => items.push(item.clone()),
                    }
                }
                Value::Array(items)
            }
            _ => value.clone(),
        };
        base.insert(key.clone(), merged);
    }
}

fn to_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// `source:target[:mode]` or the long form's `target`.
pub fn container_path(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                1 => parts[0].to_string(),
                _ => parts[1].to_string(),
            }
        }
        Value::Object(m) => m
            .get("target")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

/// Container port and protocol: `[ip:][published:]target[/proto]` or the long form.
pub fn port_key(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let (spec, proto) = s.split_once('/').unwrap_or((s, "tcp"));
            let target = spec.rsplit(':').next().unwrap_or(spec);
            format!("{target}/{proto}")
        }
        Value::Number(n) => format!("{n}/tcp"),
        Value::Object(m) => format!(
            "{}/{}",
            m.get("target").map(scalar).unwrap_or_default(),
            m.get("protocol").and_then(Value::as_str).unwrap_or("tcp")
        ),
        _ => String::new(),
    }
}

/// A scalar as compose would print it in a string context.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(yaml: &str) -> Mapping {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn maps_merge_by_key_lists_by_their_rules_and_scalars_are_replaced() {
        let mut base = map(
            "image: a\nenvironment: {A: '1', B: '2'}\ncap_add: [X]\nenv_file: [e1]\nvolumes: ['/d:/app/data', 'c:/tmp/c']\nports: ['80:80']\nhealthcheck: {test: [CMD, x], interval: 10s}",
        );
        merge_service(
            &mut base,
            &map(
                "image: b\nenvironment: {B: '3'}\ncap_add: [X, Y]\nenv_file: e2\nvolumes: ['/e:/app/data']\nports: ['81:80', '90:90']\nhealthcheck: {interval: 20s}",
            ),
        );
        assert_eq!(
            base,
            map(
                "image: b\nenvironment: {A: '1', B: '3'}\ncap_add: [X, Y]\nenv_file: [e1, e2]\nvolumes: ['/e:/app/data', 'c:/tmp/c']\nports: ['81:80', '90:90']\nhealthcheck: {test: [CMD, x], interval: 20s}"
            )
        );
    }
}
