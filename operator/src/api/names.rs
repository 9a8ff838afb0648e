//! Naming rules shared by the schema and the renderer.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};

/// A DNS-1035 label: what a Kubernetes Service name must be, so `http://<name>:<port>` resolves.
pub const DNS_LABEL_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
const DNS_LABEL_MAX: i64 = 63;

pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= DNS_LABEL_MAX as usize
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// `<SERVICE>` in the compose templates: the name upper-cased, dashes to underscores.
/// `lucid-auth-service` -> `LUCID_AUTH_SERVICE`.
pub fn env_prefix(service_name: &str) -> String {
    service_name
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

/// The API server checks object names only as DNS subdomains (`a.b` passes), but each Lucid
/// object names a Service, so its name must be a DNS label. Structural schemas may restrict
/// `metadata.name` and nothing else in metadata; the derive macro cannot express that, so it
/// is added here, once, for every version of the CRD.
pub(crate) fn restrict_object_name(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        let name = JSONSchemaProps {
            type_: Some("string".into()),
            pattern: Some(DNS_LABEL_PATTERN.into()),
            max_length: Some(DNS_LABEL_MAX),
            ..Default::default()
        };
        let metadata = JSONSchemaProps {
            type_: Some("object".into()),
            properties: Some([("name".to_string(), name)].into()),
            ..Default::default()
        };
        schema
            .properties
            .get_or_insert_with(Default::default)
            .insert("metadata".into(), metadata);
    }
    crd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_prefix_upper_cases_and_replaces_dashes() {
        assert_eq!(env_prefix("lucid-auth-service"), "LUCID_AUTH_SERVICE");
        assert_eq!(env_prefix("api-gateway"), "API_GATEWAY");
    }

    #[test]
    fn dns_labels_are_checked_like_the_api_server_would() {
        assert!(is_dns_label("lucid-redis"));
        assert!(is_dns_label("a1"));
        for bad in ["", "1abc", "Abc", "a.b", "a_b", "abc-", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad:?} should be rejected");
        }
    }
}
