//! Checks a custom resource against its CRD's `openAPIV3Schema` (the checked-in
//! `crds/lucid.io.yaml`), as the API server would before storing it, without an API server.
//!
//! It covers the keywords our generated CRDs use (type, nullable, properties, required,
//! additionalProperties, items, enum, pattern, minimum/maximum, min/maxLength,
//! min/maxItems, x-kubernetes-int-or-string, format int32) and fails on any other, so a CRD
//! growing a keyword this does not know cannot pass unchecked. One way it is stricter than
//! the API server: a field the schema does not know is an error here, where the API server
//! would prune it silently (a misspelt field in the chart would vanish on the way in).

use std::collections::BTreeMap;

use serde_json::Value;

use super::ROOT;

/// Keywords that describe but do not constrain.
const ANNOTATIONS: &[&str] = &["description", "default", "title", "format"];

pub struct Crds {
    /// kind -> openAPIV3Schema of its served version.
    schemas: BTreeMap<String, Value>,
}

impl Crds {
    pub fn load() -> Self {
        let text = std::fs::read_to_string(format!("{ROOT}/crds/lucid.io.yaml"))
            .expect("crds/lucid.io.yaml");
        let mut schemas = BTreeMap::new();
        for doc in serde_saphyr::from_multiple::<serde_json::Value>(&text)
            .expect("YAML")
            .into_iter()
        {
            let crd: Value = doc;
            if crd.is_null() {
                continue;
            }
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .expect("kind")
                .to_string();
            let versions = crd["spec"]["versions"].as_array().expect("versions");
            let served = versions
                .iter()
                .find(|v| v["storage"].as_bool() == Some(true))
                .expect("a storage version");
            schemas.insert(kind, served["schema"]["openAPIV3Schema"].clone());
        }
        Crds { schemas }
    }

    /// Every way `object` breaks its CRD's schema, as `path: problem`; empty when valid.
    pub fn problems(&self, object: &Value) -> Vec<String> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let Some(schema) = self.schemas.get(kind) else {
            return vec![format!("no CRD for kind {kind:?}")];
        };
        let mut out = Vec::new();
        check(schema, object, "", &mut out);
        out
    }
}

fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let schema = schema.as_object().expect("a schema is an object");
    for key in schema.keys() {
        let known = ANNOTATIONS.contains(&key.as_str())
            || [
                "type",
                "nullable",
                "properties",
                "required",
                "additionalProperties",
                "items",
                "enum",
                "pattern",
                "minimum",
                "maximum",
                "minLength",
                "maxLength",
                "minItems",
                "maxItems",
                "x-kubernetes-int-or-string",
            ]
            .contains(&key.as_str());
        assert!(known, "{path}: schema keyword {key} is not evaluated here");
    }
    let here = if path.is_empty() { "." } else { path };
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            out.push(format!("{here}: null where the schema does not allow it"));
        }
        return;
    }
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            out.push(format!(
                "{here}: {value} is neither an integer nor a string"
            ));
        }
    } else if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            other => panic!("{here}: unknown type {other}"),
        };
        if !ok {
            out.push(format!("{here}: {value} is not of type {ty}"));
            return;
        }
        if ty == "integer" && schema.get("format").and_then(Value::as_str) == Some("int32") {
            let n = value.as_i64().unwrap_or(i64::MAX);
            if i32::try_from(n).is_err() {
                out.push(format!("{here}: {value} does not fit int32"));
            }
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        out.push(format!("{here}: {value} is not one of {allowed:?}"));
    }
    if let Some(s) = value.as_str() {
        let chars = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && chars < min
        {
            out.push(format!("{here}: {s:?} is shorter than {min}"));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && chars > max
        {
            out.push(format!("{here}: {s:?} is longer than {max}"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let re = regex::Regex::new(pattern).expect("CRD patterns compile");
            if !re.is_match(s) {
                out.push(format!("{here}: {s:?} does not match {pattern}"));
            }
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            out.push(format!("{here}: {n} is below {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            out.push(format!("{here}: {n} is above {max}"));
        }
    }
    if let Some(items) = value.as_array() {
        let len = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && len < min
        {
            out.push(format!("{here}: {len} items, fewer than {min}"));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && len > max
        {
            out.push(format!("{here}: {len} items, more than {max}"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(item_schema, item, &format!("{path}[{i}]"), out);
            }
        }
    }
    if let Some(fields) = value.as_object() {
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !fields.contains_key(required) {
                out.push(format!("{here}: required field {required} is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (key, field) in fields {
            let field_path = format!("{path}.{key}");
            if path.is_empty() && (key == "apiVersion" || key == "kind") {
                continue; // every object has them; the API server checks them by routing
            }
            if let Some(field_schema) = properties.and_then(|p| p.get(key)) {
                check(field_schema, field, &field_path, out);
            } else if let Some(extra) = additional.filter(|a| a.is_object()) {
                check(extra, field, &field_path, out);
            } else if additional.and_then(Value::as_bool) == Some(true)
                || (properties.is_none() && additional.is_none())
                || path == ".metadata"
            {
                // `type: object` alone or additionalProperties: true: anything. The root
                // metadata is ObjectMeta, whatever the CRD says of its name.
            } else {
                out.push(format!(
                    "{field_path}: unknown field (the API server would drop it)"
                ));
            }
        }
    }
}
