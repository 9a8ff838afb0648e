//! Merging and interpolation held against the oracle: Debian's docker-compose 1.29, whose
//! `config` command prints the canonical merged form without a daemon. The import's merged
//! project and compose's output are reduced to the same shape and must be equal.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use kubectl_lucid::compose::{self, dotenv, merge::scalar};
use serde_json::Value;
use serde_json::{Value as Json, json};

fn oracle(files: &[&str]) -> BTreeMap<String, Json> {
    let mut args = Vec::new();
    for f in files {
        args.extend(["-f", f]);
    }
    args.push("config");
    let o = std::process::Command::new("docker-compose")
        .args(&args)
        .current_dir(docker_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("docker-compose 1.29 is the oracle: run tests/harness/install-tools.sh (apt-get install docker-compose)");
    assert!(o.status.success(), "docker-compose config: {}", stderr(&o));
    let doc: Value = serde_saphyr::from_slice(&o.stdout).unwrap();
    doc["services"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, body)| {
            let mut shaped = shape(body.as_object().unwrap(), BTreeMap::new());
            // `config` prints a literal `$` as `$$` (its output is itself a compose file);
            // the container sees one `$`.
            for v in shaped["environment"].as_object_mut().unwrap().values_mut() {
                *v = Json::String(v.as_str().unwrap().replace("$$", "$"));
            }
            (name.clone(), shaped)
        })
        .collect()
}

fn ours(files: &[&str]) -> BTreeMap<String, Json> {
    let dir = docker_dir();
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    // Interpolation from .env only, as the oracle runs with a cleared environment.
    let mut vars = compose::variables(&dir, None).unwrap();
    vars.values.retain(|k, _| {
        dotenv::read(&dir.join(".env"))
            .unwrap()
            .iter()
            .any(|(n, _)| n == k)
    });
    let project = compose::load(&paths, &vars).unwrap_or_else(|p| panic!("{p:#?}"));
    project
        .services
        .iter()
        .map(|s| {
            // Compose folds env_file into environment; so does this side, in order.
            let mut env = BTreeMap::new();
            if let Some(Value::Array(files)) = s.get("env_file") {
                for f in files {
                    for (k, v) in
                        dotenv::read_env_file(&dir.join(scalar(f)), &Default::default()).unwrap()
                    {
                        env.insert(k, v);
                    }
                }
            }
            (s.name.clone(), shape(&s.body, env))
        })
        .collect()
}

/// The fields the import reads, in one comparable form.
fn shape(
    body: &serde_json::Map<String, serde_json::Value>,
    mut env: BTreeMap<String, String>,
) -> Json {
    let get = |k: &str| body.get(k);
    let strings = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::Array(items)) => items.iter().map(scalar).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let map = |v: Option<&Value>| -> BTreeMap<String, String> {
        v.and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), scalar(v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    env.extend(map(get("environment")));
    let mut ports: Vec<String> = match get("ports") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|p| match p {
                Value::Object(m) => format!(
                    "{}:{}/{}",
                    m.get("published").map(scalar).unwrap_or_default(),
                    m.get("target").map(scalar).unwrap_or_default(),
                    m.get("protocol")
                        .map(scalar)
                        .unwrap_or_else(|| "tcp".into())
                ),
                other => {
                    let s = scalar(other);
                    let (spec, proto) = s
                        .split_once('/')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .unwrap_or((s.clone(), "tcp".into()));
                    let parts: Vec<&str> = spec.split(':').collect();
                    let published = if parts.len() > 1 {
                        parts[parts.len() - 2]
                    } else {
                        ""
                    };
                    format!("{published}:{}/{proto}", parts[parts.len() - 1])
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    ports.sort();
    let volumes: Vec<String> = strings(get("volumes"))
        .into_iter()
        .map(|v| {
            if v.matches(':').count() == 1 {
                format!("{v}:rw")
            } else {
                v
            }
        })
        .collect();
    let depends_on: BTreeMap<String, String> = get("depends_on")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.get("condition").map(scalar).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // A set: compose prints networks sorted.
    let mut networks: Vec<String> = get("networks")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    let hc = get("healthcheck").and_then(Value::as_object);
    let healthcheck = hc.map(|h| {
        let test = match h.get("test") {
            Some(Value::String(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
            other => strings(other),
        };
        json!({
            "test": test,
            "interval": h.get("interval").map(|d| seconds(&scalar(d))),
            "timeout": h.get("timeout").map(|d| seconds(&scalar(d))),
            "retries": h.get("retries").map(scalar),
            "start_period": h.get("start_period").map(|d| seconds(&scalar(d))),
        })
    });
    let mut expose = strings(get("expose"));
    expose.sort();
    json!({
        "image": get("image").map(scalar),
        "environment": env,
        "labels": map(get("labels")),
        "depends_on": depends_on,
        "networks": networks,
        "ports": ports,
        "expose": expose,
        "volumes": volumes,
        "tmpfs": strings(get("tmpfs")),
        "healthcheck": healthcheck,
        "user": get("user").map(scalar),
        "read_only": get("read_only").map(scalar),
        "cap_drop": strings(get("cap_drop")),
        "cap_add": strings(get("cap_add")),
        "security_opt": strings(get("security_opt")),
        "container_name": get("container_name").map(scalar),
        "restart": get("restart").map(scalar),
    })
}

/// Compose prints durations its own way (60s as 1m); the import reads seconds.
fn seconds(d: &str) -> Option<i32> {
    kubectl_lucid::import::duration_seconds(d)
}

fn same_as_compose(files: &[&str]) {
    let (theirs, ours) = (oracle(files), ours(files));
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "{files:?}: services"
    );
    for (name, expected) in &theirs {
        pretty_assertions::assert_eq!(expected, &ours[name], "{files:?}: service {name}");
    }
}

#[test]
fn one_phase_file_reads_as_compose_reads_it() {
    same_as_compose(&["docker-compose.foundation.yml"]);
}

#[test]
fn phase_files_merge_as_compose_merges_them() {
    same_as_compose(&[
        "docker-compose.foundation.yml",
        "docker-compose.core.yml",
        "docker-compose.support.yml",
    ]);
}

#[test]
fn an_override_merges_maps_lists_ports_volumes_and_healthchecks_as_compose_does() {
    same_as_compose(&[
        "docker-compose.foundation.yml",
        "docker-compose.core.yml",
        "docker-compose.support.yml",
        "docker-compose.override.yml",
    ]);
}

#[test]
fn the_master_file_reads_as_compose_reads_it() {
    same_as_compose(&["docker-compose.all.yml"]);
}

#[test]
fn merge_keys_apply_as_compose_applies_them() {
    // `<<: *anchor` and `<<: [*a, *b]`: the service's own keys win, the earlier anchor wins.
    same_as_compose(&["docker-compose.anchors.yml"]);
    let theirs = oracle(&["docker-compose.anchors.yml"]);
    assert_eq!(
        theirs["notifier"]["restart"], "always",
        "the earlier anchor wins"
    );
    assert_eq!(
        theirs["notifier"]["user"], "65533:65533",
        "the service's own key wins"
    );
    assert_eq!(theirs["audit-log"]["healthcheck"]["interval"], 15);
    assert_eq!(theirs["audit-log"]["healthcheck"]["retries"], "3");
}

#[test]
fn merge_keys_and_an_override_file_merge_as_compose_merges_them() {
    same_as_compose(&[
        "docker-compose.foundation.yml",
        "docker-compose.anchors.yml",
        "docker-compose.anchors.override.yml",
    ]);
}

#[test]
fn a_missing_required_variable_fails_in_both() {
    let o = std::process::Command::new("docker-compose")
        .args(["-f", "missing-required.yml", "config"])
        .current_dir(errors_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("docker-compose");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("MONGODB_URL not set"), "{}", stderr(&o));
    let ours = run(&errors_dir(), &["import", "missing-required.yml"]);
    assert_eq!(ours.status.code(), Some(1));
    assert!(common::stderr(&ours).contains("MONGODB_URL not set"));
}
