//! Dereference: read the ConfigMaps and Secrets a LucidService names, report what is missing,
//! and hash their contents so a change rolls the pods. Values never leave this module.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::api::LucidService;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    ConfigMap,
    Secret,
}

/// One ConfigMap or Secret a service reads, and which key of it when only one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub kind: Kind,
    pub name: String,
    pub key: Option<String>,
    pub optional: bool,
}

/// What is missing, in words a user can act on. Names only: never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub reason: &'static str,
    pub message: String,
}

/// Every ConfigMap and Secret the pods read, sorted so the hash is stable.
pub fn references(ls: &LucidService) -> Vec<Reference> {
    let spec = &ls.spec;
    let mut refs = Vec::new();
    for var in &spec.env {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.secret_key_ref {
            refs.push(Reference {
                kind: Kind::Secret,
                name: r.name.clone(),
                key: Some(r.key.clone()),
                optional: r.optional,
            });
        }
        if let Some(r) = &from.config_map_key_ref {
            refs.push(Reference {
                kind: Kind::ConfigMap,
                name: r.name.clone(),
                key: Some(r.key.clone()),
                optional: r.optional,
            });
        }
    }
    for source in &spec.env_from {
        if let Some(r) = &source.config_map_ref {
            refs.push(Reference {
                kind: Kind::ConfigMap,
                name: r.name.clone(),
                key: None,
                optional: r.optional,
            });
        }
        if let Some(r) = &source.secret_ref {
            refs.push(Reference {
                kind: Kind::Secret,
                name: r.name.clone(),
                key: None,
                optional: r.optional,
            });
        }
    }
    if let Some(config) = &spec.storage.config {
        refs.push(Reference {
            kind: Kind::ConfigMap,
            name: config.config_map_name.clone(),
            key: Some(config.key.clone()),
            optional: false,
        });
    }
    refs.sort();
    refs.dedup();
    refs
}

/// The contents of one object as key -> bytes, or None when it does not exist.
type Contents = Option<BTreeMap<String, Vec<u8>>>;

/// Reads every referenced object once. Returns the config hash, or what is missing.
pub async fn dereference(
    client: &Client,
    namespace: &str,
    ls: &LucidService,
) -> Result<Result<String, Vec<Missing>>, kube::Error> {
    let refs = references(ls);
    let mut contents: BTreeMap<(Kind, String), Contents> = BTreeMap::new();
    for r in &refs {
        let key = (r.kind, r.name.clone());
        if contents.contains_key(&key) {
            continue;
        }
        let value = match r.kind {
            Kind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(&r.name)
                .await?
                .map(config_map_contents),
            Kind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(&r.name)
                .await?
                .map(secret_contents),
        };
        contents.insert(key, value);
    }
    Ok(check_and_hash(&refs, &contents))
}

fn config_map_contents(cm: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    out.extend(
        cm.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    out
}

fn secret_contents(secret: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    out.extend(
        secret
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes())),
    );
    out
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::ConfigMap => "ConfigMap",
        Kind::Secret => "Secret",
    }
}

/// Pure: decides what is missing and hashes what is there (absent optional objects hash as
/// absent, so creating one later rolls the pods too).
pub fn check_and_hash(
    refs: &[Reference],
    contents: &BTreeMap<(Kind, String), Contents>,
) -> Result<String, Vec<Missing>> {
    let mut missing = Vec::new();
    for r in refs.iter().filter(|r| !r.optional) {
        match (contents.get(&(r.kind, r.name.clone())), &r.key) {
            (Some(None) | None, _) => missing.push(Missing {
                reason: match r.kind {
                    Kind::ConfigMap => "MissingConfigMap",
                    Kind::Secret => "MissingSecret",
                },
                message: format!(
                    "{} {} not found: create it, or mark the reference optional",
                    kind_name(r.kind),
                    r.name
                ),
            }),
            (Some(Some(data)), Some(key)) if !data.contains_key(key) => missing.push(Missing {
                reason: "MissingKey",
                message: format!(
                    "{} {} has no key {key}: add it, or mark the reference optional",
                    kind_name(r.kind),
                    r.name
                ),
            }),
            _ => {}
        }
    }
    missing.dedup();
    if !missing.is_empty() {
        return Err(missing);
    }
    let mut hasher = blake3::Hasher::new();
    for ((kind, name), data) in contents {
        hasher.update(kind_name(*kind).as_bytes());
        field(&mut hasher, name.as_bytes());
        match data {
            None => {
                hasher.update(b"\0absent");
            }
            Some(data) => {
                for (k, v) in data {
                    field(&mut hasher, k.as_bytes());
                    field(&mut hasher, v);
                }
            }
        }
    }
    Ok(hasher.finalize().to_hex()[..32].to_string())
}

/// Length-prefixed, so `("ab","c")` and `("a","bc")` hash differently.
fn field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::redis;

    fn contents(
        entries: &[(Kind, &str, Option<&[(&str, &str)]>)],
    ) -> BTreeMap<(Kind, String), Contents> {
        entries
            .iter()
            .map(|(kind, name, data)| {
                let data = data.map(|d| {
                    d.iter()
                        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                        .collect()
                });
                ((*kind, name.to_string()), data)
            })
            .collect()
    }

    #[test]
    fn references_cover_env_env_from_and_the_config_file() {
        let refs = references(&redis());
        let names: Vec<_> = refs.iter().map(|r| (r.kind, r.name.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (Kind::ConfigMap, "lucid-env-foundation"),
                (Kind::Secret, "lucid-secrets")
            ]
        );
    }

    #[test]
    fn a_missing_secret_is_named_and_its_values_never_appear() {
        let refs = references(&redis());
        let c = contents(&[
            (Kind::ConfigMap, "lucid-env-foundation", Some(&[("A", "1")])),
            (Kind::Secret, "lucid-secrets", None),
        ]);
        let missing = check_and_hash(&refs, &c).unwrap_err();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].reason, "MissingSecret");
        assert!(
            missing[0]
                .message
                .contains("Secret lucid-secrets not found")
        );
    }

    #[test]
    fn the_hash_changes_with_any_value_and_is_stable_otherwise() {
        let refs = references(&redis());
        let a = contents(&[
            (Kind::ConfigMap, "lucid-env-foundation", Some(&[("A", "1")])),
            (Kind::Secret, "lucid-secrets", Some(&[("JWT", "s3cret")])),
        ]);
        let b = contents(&[
            (Kind::ConfigMap, "lucid-env-foundation", Some(&[("A", "1")])),
            (Kind::Secret, "lucid-secrets", Some(&[("JWT", "other")])),
        ]);
        let ha = check_and_hash(&refs, &a).unwrap();
        assert_eq!(ha, check_and_hash(&refs, &a.clone()).unwrap());
        assert_ne!(ha, check_and_hash(&refs, &b).unwrap());
        assert!(!ha.contains("s3cret"));
    }

    #[test]
    fn a_missing_required_config_map_holds_the_rollout_and_optional_ones_do_not() {
        // What the stack chart renders for a foundation service: the env file carrying
        // MONGODB_URL is required, the others optional.
        let ls = crate::render::fixtures::service(
            "lucid-redis",
            r#"
image: {repository: x}
phase: foundation
envFrom:
  - configMapRef: {name: lucid-env-foundation}
  - configMapRef: {name: lucid-env-distroless, optional: true}
  - configMapRef: {name: lucid-env-core, optional: true}
  - secretRef: {name: lucid-secrets}
"#,
        );
        let refs = references(&ls);
        let secret = (Kind::Secret, "lucid-secrets", Some(&[("JWT", "x")][..]));
        let missing = check_and_hash(&refs, &contents(&[secret])).unwrap_err();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert_eq!(missing[0].reason, "MissingConfigMap");
        assert!(
            missing[0]
                .message
                .contains("ConfigMap lucid-env-foundation not found")
        );
        let foundation = (
            Kind::ConfigMap,
            "lucid-env-foundation",
            Some(&[("MONGODB_URL", "mongodb://lucid-mongodb:27017/lucid")][..]),
        );
        assert!(check_and_hash(&refs, &contents(&[foundation, secret])).is_ok());
    }

    #[test]
    fn a_missing_key_is_reported_unless_optional() {
        let mut refs = vec![Reference {
            kind: Kind::Secret,
            name: "s".into(),
            key: Some("jwt".into()),
            optional: false,
        }];
        let c = contents(&[(Kind::Secret, "s", Some(&[("other", "x")]))]);
        assert_eq!(
            check_and_hash(&refs, &c).unwrap_err()[0].reason,
            "MissingKey"
        );
        refs[0].optional = true;
        assert!(check_and_hash(&refs, &c).is_ok());
    }
}
