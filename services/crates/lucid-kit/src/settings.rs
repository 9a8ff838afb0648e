//! Settings: defaults (the struct's serde defaults), then the file named by
//! `<SERVICE>_CONFIG_FILE` (YAML or JSON), then environment variables, which win. Keys are
//! the environment variable names (`SESSION_STORAGE_PORT`, `MONGODB_URL`, ...).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the config file {path}: {reason} (unset {variable} or fix the file)")]
    File {
        path: String,
        variable: String,
        reason: String,
    },
    #[error("invalid settings: {0}")]
    Invalid(String),
    #[error("missing or invalid settings:\n  - {}", .0.join("\n  - "))]
    Problems(Vec<String>),
}

/// A secret setting's value: read like text, never shown by `Debug`.
#[derive(Clone, serde::Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Settings whose values are secrets: always read as text (a key of digits must not become
/// a number, whose type error would print it), and never shown in an error.
pub fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["KEY", "SECRET", "PASSWORD", "TOKEN"]
        .iter()
        .any(|w| n.contains(w))
}

/// `session-storage` -> `SESSION_STORAGE`.
pub fn prefix(service: &str) -> String {
    service.to_ascii_uppercase().replace('-', "_")
}

/// Loads `T` for `service` from the process environment.
pub fn load<T: DeserializeOwned>(service: &str) -> Result<T, SettingsError> {
    load_from(service, std::env::vars().collect())
}

pub fn load_from<T: DeserializeOwned>(
    service: &str,
    env: BTreeMap<String, String>,
) -> Result<T, SettingsError> {
    let mut merged = serde_yaml::Mapping::new();
    let variable = format!("{}_CONFIG_FILE", prefix(service));
    if let Some(path) = env.get(&variable).filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
            path: path.clone(),
            variable: variable.clone(),
            reason: e.to_string(),
        })?;
        // JSON is YAML, so one parser reads both.
        match serde_yaml::from_str::<Value>(&text) {
            Ok(Value::Mapping(m)) => merged.extend(m),
            Ok(Value::Null) => {}
            Ok(_) => {
                return Err(SettingsError::File {
                    path: path.clone(),
                    variable,
                    reason: "expected a mapping of settings".into(),
                });
            }
            Err(e) => {
                return Err(SettingsError::File {
                    path: path.clone(),
                    variable,
                    reason: e.to_string(),
                });
            }
        }
    }
    for (k, v) in env {
        // "8081" must become a number and "true" a bool, as in the file: parse as a YAML scalar.
        let value = match serde_yaml::from_str::<Value>(&v) {
            Ok(scalar @ (Value::Number(_) | Value::Bool(_))) if !is_secret(&k) => scalar,
            _ => Value::String(v),
        };
        merged.insert(Value::String(k), value);
    }
    // The file's secrets too: `JWT_SECRET_KEY: 123456` is the text "123456".
    for (k, v) in merged.iter_mut() {
        if k.as_str().is_some_and(is_secret) {
            if let Value::Number(n) = v {
                *v = Value::String(n.to_string());
            } else if let Value::Bool(b) = v {
                *v = Value::String(b.to_string());
            }
        }
    }
    // The path names the variable: "SESSION_STORAGE_PORT: invalid type ...".
    serde_path_to_error::deserialize(Value::Mapping(merged)).map_err(|e| {
        let path = e.path().to_string();
        SettingsError::Invalid(if path == "." {
            e.inner().to_string()
        } else if is_secret(&path) {
            format!("{path}: invalid value (not shown: it is a secret)")
        } else {
            format!("{path}: {}", e.inner())
        })
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    struct S {
        #[serde(default = "port")]
        demo_port: u16,
        #[serde(default)]
        log_level: Option<String>,
    }
    fn port() -> u16 {
        9000
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    #[allow(dead_code)]
    struct WithKey {
        jwt_secret_key: String,
        max_bytes: Option<u32>,
    }

    #[test]
    fn a_numeric_secret_is_read_as_text_and_never_printed() {
        let env: BTreeMap<String, String> = [("JWT_SECRET_KEY", "123456"), ("MAX_BYTES", "9")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let s = load_from::<WithKey>("demo", env).unwrap();
        assert_eq!(s.jwt_secret_key, "123456");

        #[derive(Deserialize, Debug)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[allow(dead_code)]
        struct NumericKey {
            api_token: u8,
        }
        let env: BTreeMap<String, String> = [("API_TOKEN".to_string(), "s3cr3t-value".to_string())]
            .into_iter()
            .collect();
        let err = load_from::<NumericKey>("demo", env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("API_TOKEN") && !err.contains("s3cr3t"),
            "{err}"
        );
    }

    #[test]
    fn env_beats_file_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("kit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(&file, "DEMO_PORT: 9100\nLOG_LEVEL: debug\n").unwrap();
        let env = |extra: &[(&str, &str)]| {
            let mut m: BTreeMap<String, String> = extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            m.insert("DEMO_CONFIG_FILE".into(), file.display().to_string());
            m
        };
        assert_eq!(
            load_from::<S>("demo", BTreeMap::new()).unwrap(),
            S {
                demo_port: 9000,
                log_level: None
            }
        );
        assert_eq!(
            load_from::<S>("demo", env(&[])).unwrap(),
            S {
                demo_port: 9100,
                log_level: Some("debug".into())
            }
        );
        assert_eq!(
            load_from::<S>("demo", env(&[("DEMO_PORT", "9200")]))
                .unwrap()
                .demo_port,
            9200
        );
        let err = load_from::<S>("demo", env(&[("DEMO_PORT", "not-a-port")])).unwrap_err();
        assert!(err.to_string().contains("DEMO_PORT"), "{err}");
    }
}
