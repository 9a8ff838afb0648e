//! The container environment: what the compose templates always set, then the user's own.

use k8s_openapi::api::core::v1 as core;

use crate::api::{EnvVar, LucidService, env_prefix};

pub const DATA_DIR: &str = "/app/data";
pub const LOGS_DIR: &str = "/app/logs";

/// The container's `env`. The injected variables come first and a user variable of the
/// same name replaces one (server-side apply keys `env` by name, so names must be unique).
pub fn env(ls: &LucidService, name: &str, config_file: Option<&str>) -> Vec<core::EnvVar> {
    let prefix = env_prefix(name);
    let mut injected: Vec<(String, String)> = vec![
        ("LUCID_ENV".into(), "production".into()),
        ("LUCID_PLATFORM".into(), platform(ls)),
        (format!("{prefix}_HOST"), name.to_string()),
    ];
    if let Some(port) = ls.spec.ports.first() {
        injected.push((format!("{prefix}_PORT"), port.port.to_string()));
        injected.push((
            format!("{prefix}_URL"),
            format!("http://{name}:{}", port.port),
        ));
    }
    injected.push(("LUCID_STORAGE_PATH".into(), DATA_DIR.into()));
    injected.push(("LUCID_LOGS_PATH".into(), LOGS_DIR.into()));
    if let Some(path) = config_file {
        injected.push((format!("{prefix}_CONFIG_FILE"), path.to_string()));
    }

    let user = &ls.spec.env;
    let mut out: Vec<core::EnvVar> = injected
        .into_iter()
        .filter(|(k, _)| !user.iter().any(|u| &u.name == k))
        .map(|(name, value)| core::EnvVar {
            name,
            value: Some(value),
            value_from: None,
        })
        .collect();
    for (i, var) in user.iter().enumerate() {
        // A later duplicate wins, as it would in a compose file.
        if user[i + 1..].iter().any(|later| later.name == var.name) {
            continue;
        }
        out.push(user_var(var));
    }
    out
}

fn platform(ls: &LucidService) -> String {
    ls.spec
        .node_selector
        .get("kubernetes.io/arch")
        .cloned()
        .unwrap_or_else(|| "arm64".into())
}

fn user_var(var: &EnvVar) -> core::EnvVar {
    let value_from = var.value_from.as_ref().map(|from| core::EnvVarSource {
        secret_key_ref: from
            .secret_key_ref
            .as_ref()
            .map(|r| core::SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: r.optional.then_some(true),
            }),
        config_map_key_ref: from
            .config_map_key_ref
            .as_ref()
            .map(|r| core::ConfigMapKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: r.optional.then_some(true),
            }),
        ..Default::default()
    });
    core::EnvVar {
        name: var.name.clone(),
        value: if value_from.is_some() {
            None
        } else {
            var.value.clone()
        },
        value_from,
    }
}

pub fn env_from(ls: &LucidService) -> Vec<core::EnvFromSource> {
    ls.spec
        .env_from
        .iter()
        .map(|source| core::EnvFromSource {
            config_map_ref: source
                .config_map_ref
                .as_ref()
                .map(|r| core::ConfigMapEnvSource {
                    name: r.name.clone(),
                    optional: r.optional.then_some(true),
                }),
            secret_ref: source.secret_ref.as_ref().map(|r| core::SecretEnvSource {
                name: r.name.clone(),
                optional: r.optional.then_some(true),
            }),
            prefix: source.prefix.clone(),
        })
        .collect()
}
