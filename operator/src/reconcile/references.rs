//! Dereference: read the ConfigMaps and Secrets a LucidService names, report what is missing,
//! and hash their contents so a change rolls the pods. Values never leave this module, and
//! are not kept: between reconciles only key names and a digest are (see `ContentCache`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

use crate::api::LucidService;
use crate::status::Reason;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

/// One ConfigMap or Secret a service reads, and which key of it when only one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigReference {
    pub kind: ConfigKind,
    pub name: String,
    pub key: Option<String>,
    pub optional: bool,
}

/// What is missing, in words a user can act on. Names only: never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingConfig {
    pub reason: Reason,
    pub message: String,
}

/// Every ConfigMap and Secret the pods read, sorted so the hash is stable.
pub fn references(ls: &LucidService) -> Vec<ConfigReference> {
    let spec = &ls.spec;
    let mut refs = Vec::new();
    for var in &spec.env {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.secret_key_ref {
            refs.push(ConfigReference {
                kind: ConfigKind::Secret,
                name: r.name.clone(),
                key: Some(r.key.clone()),
                optional: r.optional,
            });
        }
        if let Some(r) = &from.config_map_key_ref {
            refs.push(ConfigReference {
                kind: ConfigKind::ConfigMap,
                name: r.name.clone(),
                key: Some(r.key.clone()),
                optional: r.optional,
            });
        }
    }
    for source in &spec.env_from {
        if let Some(r) = &source.config_map_ref {
            refs.push(ConfigReference {
                kind: ConfigKind::ConfigMap,
                name: r.name.clone(),
                key: None,
                optional: r.optional,
            });
        }
        if let Some(r) = &source.secret_ref {
            refs.push(ConfigReference {
                kind: ConfigKind::Secret,
                name: r.name.clone(),
                key: None,
                optional: r.optional,
            });
        }
    }
    if let Some(config) = &spec.storage.config {
        refs.push(ConfigReference {
            kind: ConfigKind::ConfigMap,
            name: config.config_map_name.clone(),
            key: Some(config.key.clone()),
            optional: false,
        });
    }
    refs.sort();
    refs.dedup();
    refs
}

/// What a reconcile needs of one ConfigMap or Secret: which keys it has and a digest of its
/// contents. Never a value: this is all that is kept between reconciles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    keys: BTreeSet<String>,
    digest: [u8; 32],
}

impl Summary {
    /// Keys and values are length-prefixed, so `("ab","c")` and `("a","bc")` differ.
    pub fn of(contents: &BTreeMap<String, Vec<u8>>) -> Self {
        let mut hasher = blake3::Hasher::new();
        for (k, v) in contents {
            field(&mut hasher, k.as_bytes());
            field(&mut hasher, v);
        }
        Summary {
            keys: contents.keys().cloned().collect(),
            digest: *hasher.finalize().as_bytes(),
        }
    }
}

/// One object as read: its summary, or None when it does not exist.
type Contents = Option<Summary>;

/// Summaries of the ConfigMaps and Secrets read so far, by (kind, namespace, name), each
/// with the resourceVersion it was read at. The metadata watches say which version is
/// current, so a reconcile GETs an object only when it changed since it was last read:
/// wake-ups and resyncs read nothing.
#[derive(Default)]
pub struct ContentCache {
    entries: Mutex<HashMap<CacheKey, (String, Summary)>>,
}

/// (kind, namespace, name).
type CacheKey = (ConfigKind, String, String);

impl ContentCache {
    fn get(&self, key: &CacheKey, resource_version: &str) -> Option<Summary> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(rv, _)| rv == resource_version)
            .map(|(_, summary)| summary.clone())
    }

    fn put(&self, key: CacheKey, resource_version: String, summary: Summary) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (resource_version, summary));
    }

    fn forget(&self, key: &CacheKey) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The metadata caches of ConfigMaps and Secrets (names and resourceVersions, no values).
pub struct ConfigVersions<'a> {
    pub config_maps: &'a Store<PartialObjectMeta<ConfigMap>>,
    pub secrets: &'a Store<PartialObjectMeta<Secret>>,
}

impl ConfigVersions<'_> {
    /// The current resourceVersion of an object, None when the watch has not seen it.
    fn resource_version(&self, kind: ConfigKind, namespace: &str, name: &str) -> Option<String> {
        match kind {
            ConfigKind::ConfigMap => self
                .config_maps
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|o| o.metadata.resource_version.clone()),
            ConfigKind::Secret => self
                .secrets
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|o| o.metadata.resource_version.clone()),
        }
    }
}

/// Reads every referenced object, from the cache when its resourceVersion is the one the
/// watch last saw, else with one GET. Returns the config hash, or what is missing.
pub async fn dereference(
    client: &Client,
    cache: &ContentCache,
    watched: &ConfigVersions<'_>,
    namespace: &str,
    ls: &LucidService,
) -> Result<Result<String, Vec<MissingConfig>>, kube::Error> {
    let refs = references(ls);
    let mut contents: BTreeMap<(ConfigKind, String), Contents> = BTreeMap::new();
    for r in &refs {
        let key = (r.kind, r.name.clone());
        if contents.contains_key(&key) {
            continue;
        }
        let cache_key = (r.kind, namespace.to_string(), r.name.clone());
        let value = match watched.resource_version(r.kind, namespace, &r.name) {
            // The watch has listed every object in scope: not there means not there.
            None => {
                cache.forget(&cache_key);
                None
            }
            Some(rv) => match cache.get(&cache_key, &rv) {
                Some(summary) => Some(summary),
                None => {
                    let read = read(client, r.kind, namespace, &r.name).await?;
                    if let Some((rv, summary)) = &read {
                        cache.put(cache_key, rv.clone(), summary.clone());
                    }
                    read.map(|(_, summary)| summary)
                }
            },
        };
        contents.insert(key, value);
    }
    Ok(check_and_hash(&refs, &contents))
}

/// The config hash from objects at hand instead of the API server, by the same rules
/// (`kubectl lucid plan --render` hashes the ConfigMaps and Secrets it was given exactly as
/// the operator will hash them once they are in the cluster).
pub fn config_hash_of(
    ls: &LucidService,
    config_maps: &[ConfigMap],
    secrets: &[Secret],
) -> Result<String, Vec<MissingConfig>> {
    let refs = references(ls);
    let mut contents: BTreeMap<(ConfigKind, String), Contents> = BTreeMap::new();
    for r in &refs {
        let found = match r.kind {
            ConfigKind::ConfigMap => config_maps
                .iter()
                .find(|cm| cm.metadata.name.as_deref() == Some(r.name.as_str()))
                .map(|cm| Summary::of(&config_map_contents(cm))),
            ConfigKind::Secret => secrets
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(r.name.as_str()))
                .map(|s| Summary::of(&secret_contents(s))),
        };
        contents.insert((r.kind, r.name.clone()), found);
    }
    check_and_hash(&refs, &contents)
}

/// One GET: the object's resourceVersion and summary; the values go no further.
async fn read(
    client: &Client,
    kind: ConfigKind,
    namespace: &str,
    name: &str,
) -> Result<Option<(String, Summary)>, kube::Error> {
    Ok(match kind {
        ConfigKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(|cm| {
                let rv = cm.metadata.resource_version.clone().unwrap_or_default();
                (rv, Summary::of(&config_map_contents(&cm)))
            }),
        ConfigKind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(|secret| {
                let rv = secret.metadata.resource_version.clone().unwrap_or_default();
                (rv, Summary::of(&secret_contents(&secret)))
            }),
    })
}

fn config_map_contents(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let text = cm.data.iter().flatten().map(|(k, v)| (k, v.as_bytes()));
    let binary = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(k, v)| (k, v.0.as_slice()));
    text.chain(binary)
        .map(|(k, v)| (k.clone(), v.to_vec()))
        .collect()
}

fn secret_contents(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let data = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k, v.0.as_slice()));
    let string_data = secret
        .string_data
        .iter()
        .flatten()
        .map(|(k, v)| (k, v.as_bytes()));
    data.chain(string_data)
        .map(|(k, v)| (k.clone(), v.to_vec()))
        .collect()
}

fn kind_name(kind: ConfigKind) -> &'static str {
    match kind {
        ConfigKind::ConfigMap => "ConfigMap",
        ConfigKind::Secret => "Secret",
    }
}

/// Pure: decides what is missing and hashes what is there (absent optional objects hash as
/// absent, so creating one later rolls the pods too).
pub fn check_and_hash(
    refs: &[ConfigReference],
    contents: &BTreeMap<(ConfigKind, String), Contents>,
) -> Result<String, Vec<MissingConfig>> {
    let mut missing = Vec::new();
    for r in refs.iter().filter(|r| !r.optional) {
        match (contents.get(&(r.kind, r.name.clone())), &r.key) {
            (Some(None) | None, _) => missing.push(MissingConfig {
                reason: match r.kind {
                    ConfigKind::ConfigMap => Reason::MissingConfigMap,
                    ConfigKind::Secret => Reason::MissingSecret,
                },
                message: format!(
                    "{} {} not found: create it, or mark the reference optional",
                    kind_name(r.kind),
                    r.name
                ),
            }),
            (Some(Some(data)), Some(key)) if !data.keys.contains(key) => {
                missing.push(MissingConfig {
                    reason: Reason::MissingKey,
                    message: format!(
                        "{} {} has no key {key}: add it, or mark the reference optional",
                        kind_name(r.kind),
                        r.name
                    ),
                })
            }
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
            Some(summary) => {
                hasher.update(&summary.digest);
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

    /// (kind, name, its key/value pairs or None when absent).
    type Entry<'a> = (ConfigKind, &'a str, Option<&'a [(&'a str, &'a str)]>);

    fn contents(entries: &[Entry<'_>]) -> BTreeMap<(ConfigKind, String), Contents> {
        entries
            .iter()
            .map(|(kind, name, data)| {
                let data = data.map(|d| {
                    Summary::of(
                        &d.iter()
                            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                            .collect(),
                    )
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
                (ConfigKind::ConfigMap, "lucid-env-foundation"),
                (ConfigKind::Secret, "lucid-secrets")
            ]
        );
    }

    #[test]
    fn a_missing_secret_is_named_and_its_values_never_appear() {
        let refs = references(&redis());
        let c = contents(&[
            (
                ConfigKind::ConfigMap,
                "lucid-env-foundation",
                Some(&[("A", "1")]),
            ),
            (ConfigKind::Secret, "lucid-secrets", None),
        ]);
        let missing = check_and_hash(&refs, &c).unwrap_err();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].reason, Reason::MissingSecret);
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
            (
                ConfigKind::ConfigMap,
                "lucid-env-foundation",
                Some(&[("A", "1")]),
            ),
            (
                ConfigKind::Secret,
                "lucid-secrets",
                Some(&[("JWT", "s3cret")]),
            ),
        ]);
        let b = contents(&[
            (
                ConfigKind::ConfigMap,
                "lucid-env-foundation",
                Some(&[("A", "1")]),
            ),
            (
                ConfigKind::Secret,
                "lucid-secrets",
                Some(&[("JWT", "other")]),
            ),
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
        let secret = (
            ConfigKind::Secret,
            "lucid-secrets",
            Some(&[("JWT", "x")][..]),
        );
        let missing = check_and_hash(&refs, &contents(&[secret])).unwrap_err();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert_eq!(missing[0].reason, Reason::MissingConfigMap);
        assert!(
            missing[0]
                .message
                .contains("ConfigMap lucid-env-foundation not found")
        );
        let foundation = (
            ConfigKind::ConfigMap,
            "lucid-env-foundation",
            Some(&[("MONGODB_URL", "mongodb://lucid-mongodb:27017/lucid")][..]),
        );
        assert!(check_and_hash(&refs, &contents(&[foundation, secret])).is_ok());
    }

    #[test]
    fn a_missing_key_is_reported_unless_optional() {
        let mut refs = vec![ConfigReference {
            kind: ConfigKind::Secret,
            name: "s".into(),
            key: Some("jwt".into()),
            optional: false,
        }];
        let c = contents(&[(ConfigKind::Secret, "s", Some(&[("other", "x")]))]);
        assert_eq!(
            check_and_hash(&refs, &c).unwrap_err()[0].reason,
            Reason::MissingKey
        );
        refs[0].optional = true;
        assert!(check_and_hash(&refs, &c).is_ok());
    }
}
