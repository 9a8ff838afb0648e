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
            Ok(scalar @ (Value::Number(_) | Value::Bool(_))) => scalar,
            _ => Value::String(v),
        };
        merged.insert(Value::String(k), value);
    }
    // The path names the variable: "SESSION_STORAGE_PORT: invalid type ...".
    serde_path_to_error::deserialize(Value::Mapping(merged)).map_err(|e| {
        let path = e.path().to_string();
        SettingsError::Invalid(if path == "." {
            e.inner().to_string()
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
