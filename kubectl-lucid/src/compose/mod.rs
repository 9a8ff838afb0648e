//! Compose files read as compose 1.29 reads them: each file parsed, its keys checked, its
//! strings interpolated, then the files merged service by service. The result is the merged
//! form `docker-compose config` prints (tests hold the two side by side).

pub mod dotenv;
pub mod interpolate;
pub mod merge;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use serde_json::Value;

use crate::error::Problem;
use interpolate::{Failure, Variables};

/// Every service key compose 1.29 accepts. Anything else is a typo or a newer compose's key,
/// and compose itself refuses the file.
pub const SERVICE_KEYS: &[&str] = &[
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "privileged",
    "profiles",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "user",
    "userns_mode",
    "volume_driver",
    "volumes",
    "volumes_from",
    "working_dir",
];
const TOP_LEVEL_KEYS: &[&str] = &[
    "version", "services", "networks", "volumes", "secrets", "configs",
];

/// A compose mapping in the order it was written (keys are strings, as compose requires).
pub type Mapping = serde_json::Map<String, Value>;

/// How compose 1.29 (PyYAML, YAML 1.1) reads a file: merge keys expanded (`<<: *common`, or a
/// list of anchors, the earlier winning), `0755` octal. Errors without a source snippet: the
/// problem names file, line and column itself.
pub fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Merge;
    options.legacy_octal_numbers = true;
    options.with_snippet = false;
    options
}

/// The merged project.
#[derive(Debug)]
pub struct Project {
    /// The first file's directory: relative paths and `.env` are found from here.
    pub dir: PathBuf,
    /// Services in the order they first appear across the files.
    pub services: Vec<Service>,
    /// Unset variables that became blank, as `file: key: NAME` (compose warns about each).
    pub blanks: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// The merged definition.
    pub body: Mapping,
    /// The files that define it, in order.
    pub files: Vec<PathBuf>,
    /// For each key, the last file that set it: errors name the file the user must edit.
    pub origin: BTreeMap<String, PathBuf>,
}

impl Service {
    /// The file to name in a problem with `key`.
    pub fn file_of(&self, key: &str) -> String {
        self.origin
            .get(key)
            .or(self.files.last())
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.body.get(key)
    }
}

/// The variables compose would interpolate with: the shell's environment over `.env` (from
/// `env_file` when given, else the project directory's `.env` if there is one).
pub fn variables(dir: &Path, env_file: Option<&Path>) -> Result<Variables, Problem> {
    let mut values = BTreeMap::new();
    let dotenv = match env_file {
        Some(p) => Some(p.to_path_buf()),
        None => Some(dir.join(".env")).filter(|p| p.is_file()),
    };
    if let Some(path) = dotenv {
        for (k, v) in dotenv::read(&path)? {
            values.insert(k, v);
        }
    }
    for (k, v) in std::env::vars() {
        values.insert(k, v);
    }
    Ok(Variables { values })
}

/// Reads, checks, interpolates and merges `files`. Every problem in every file is returned,
/// not just the first.
pub fn load(files: &[PathBuf], vars: &Variables) -> Result<Project, Vec<Problem>> {
    let dir = files
        .first()
        .and_then(|f| f.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mut blanks = Vec::new();
    let mut services: Vec<Service> = Vec::new();
    for file in files {
        let shown = file.display().to_string();
        let Some(doc) = read_file(file, &mut problems) else {
            continue;
        };
        let Some(defined) = check_file(&shown, &doc, &mut problems) else {
            continue;
        };
        for (name, body) in defined {
            let key = format!("services.{name}");
            let mut value = Value::Object(body);
            let mut unset = Vec::new();
            let mut failures = Vec::new();
            interpolate::walk(vars, &mut value, &key, &mut unset, &mut failures);
            for (path, failure) in failures {
                problems.push(match failure {
                    Failure::Required { name, message } => Problem::new(
                        &shown,
                        path,
                        format!("required variable {name} is missing: {message}"),
                    ),
                    Failure::Invalid(s) => Problem::new(
                        &shown,
                        path,
                        format!("invalid interpolation format in {s:?}: use $$ for a literal $"),
                    ),
                });
            }
            for (path, var) in unset {
                blanks.push(Problem::new(
                    &shown,
                    path,
                    format!("variable {var} is not set; it becomes an empty string"),
                ));
            }
            let Value::Object(body) = value else {
                continue;
            };
            let body = match normalise(&shown, &name, body) {
                Ok(b) => b,
                Err(p) => {
                    problems.extend(p);
                    continue;
                }
            };
            let origin_keys: Vec<String> = body.keys().cloned().collect();
            match services.iter_mut().find(|s| s.name == name) {
                Some(existing) => {
                    if let Some(p) = phase_conflict(existing, &body, file) {
                        problems.push(p);
                    }
                    merge::merge_service(&mut existing.body, &body);
                    existing.files.push(file.clone());
                    for k in origin_keys {
                        existing.origin.insert(k, file.clone());
                    }
                }
                None => services.push(Service {
                    name: name.clone(),
                    body,
                    files: vec![file.clone()],
                    origin: origin_keys.into_iter().map(|k| (k, file.clone())).collect(),
                }),
            }
        }
    }
    problems.extend(undefined_dependencies(&services));
    problems.extend(container_name_clashes(&services));
    if problems.is_empty() {
        Ok(Project {
            dir,
            services,
            blanks,
        })
    } else {
        Err(problems)
    }
}

fn read_file(file: &Path, problems: &mut Vec<Problem>) -> Option<Mapping> {
    let shown = file.display();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::new(
                shown,
                "",
                format!("cannot read: {}", dotenv::io_reason(&e)),
            ));
            return None;
        }
    };
    match serde_saphyr::from_str_with_options::<Value>(&text, yaml_options()) {
        Ok(Value::Object(m)) => Some(m),
        Ok(_) => {
            problems.push(Problem::new(
                shown,
                "",
                "not a compose file: the top level must be a mapping",
            ));
            None
        }
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            // The message repeats the location; keep only the reason.
            let reason = e.to_string();
            let reason = reason
                .split(" at line ")
                .next()
                .unwrap_or(&reason)
                .to_string();
            problems.push(Problem::new(shown, at, format!("not valid YAML: {reason}")));
            None
        }
    }
}

/// Top-level and service keys, service names. Returns the file's services when it is usable.
fn check_file(
    file: &str,
    doc: &Mapping,
    problems: &mut Vec<Problem>,
) -> Option<Vec<(String, Mapping)>> {
    let before = problems.len();
    for k in doc.keys() {
        if !TOP_LEVEL_KEYS.contains(&k.as_str()) && !k.starts_with("x-") {
            problems.push(Problem::new(file, k, "unknown top-level compose key"));
        }
    }
    let services = match doc.get("services") {
        Some(Value::Object(m)) => m,
        Some(_) => {
            problems.push(Problem::new(
                file,
                "services",
                "must be a mapping of service names to services",
            ));
            return None;
        }
        None => {
            problems.push(Problem::new(
                file,
                "services",
                "missing: a compose file for Lucid defines services",
            ));
            return None;
        }
    };
    let mut out = Vec::new();
    for (name, body) in services {
        let key = format!("services.{name}");
        if !lucid_operator::api::is_dns_label(name) {
            problems.push(Problem::new(
                file,
                &key,
                format!(
                    "{name:?} is not a DNS label (lower-case letters, digits and '-', starting with a letter, at most 63): Kubernetes names each Service after it; rename the service"
                ),
            ));
        }
        let Value::Object(body) = body else {
            problems.push(Problem::new(file, &key, "must be a mapping"));
            continue;
        };
        for k in body.keys() {
            if !SERVICE_KEYS.contains(&k.as_str()) && !k.starts_with("x-") {
                let hint = closest(k)
                    .map(|c| format!(" (did you mean {c}?)"))
                    .unwrap_or_default();
                problems.push(Problem::new(
                    file,
                    format!("{key}.{k}"),
                    format!("unknown compose key{hint}"),
                ));
            }
        }
        out.push((name.clone(), body.clone()));
    }
    (problems.len() == before).then_some(out)
}

/// A known key one edit or a swap away, for typos like `enviroment`.
fn closest(key: &str) -> Option<&'static str> {
    SERVICE_KEYS.iter().copied().find(|k| {
        let (a, b) = (k.as_bytes(), key.as_bytes());
        if a.len().abs_diff(b.len()) > 1 {
            return false;
        }
        let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let tail_a = &a[common..];
        let tail_b = &b[common..];
        tail_a.get(1..) == tail_b.get(1..)
            || tail_a.get(1..) == Some(tail_b)
            || Some(tail_a) == tail_b.get(1..)
    })
}

/// List forms turned into the map forms compose merges by key.
fn normalise(file: &str, name: &str, mut body: Mapping) -> Result<Mapping, Vec<Problem>> {
    let mut problems = Vec::new();
    for key in ["environment", "labels"] {
        let Some(v) = body.get(key).cloned() else {
            continue;
        };
        let path = format!("services.{name}.{key}");
        let map = match v {
            Value::Array(items) => {
                let mut m = Mapping::new();
                for (i, item) in items.iter().enumerate() {
                    let Value::String(s) = item else {
                        problems.push(Problem::new(
                            file,
                            format!("{path}[{i}]"),
                            "must be a string KEY=VALUE",
                        ));
                        continue;
                    };
                    match s.split_once('=') {
                        Some((k, v)) => m.insert(k.into(), v.into()),
                        None => m.insert(s.clone(), Value::Null),
                    };
                }
                m
            }
            Value::Object(m) => {
                let mut out = Mapping::new();
                for (k, v) in m {
                    let v = match v {
                        Value::Null => Value::Null,
                        Value::String(_) | Value::Number(_) => merge::scalar(&v).into(),
                        _ => {
                            problems.push(Problem::new(
                                file,
                                format!("{path}.{k}"),
                                "must be a string, a number or empty",
                            ));
                            continue;
                        }
                    };
                    out.insert(k, v);
                }
                out
            }
            Value::Null => Mapping::new(),
            _ => {
                problems.push(Problem::new(
                    file,
                    path,
                    "must be a list of KEY=VALUE or a mapping",
                ));
                continue;
            }
        };
        body.insert(key.into(), Value::Object(map));
    }
    if let Some(v) = body.get("depends_on").cloned() {
        let path = format!("services.{name}.depends_on");
        let map = match v {
            Value::Array(items) => items
                .iter()
                .map(|d| {
                    let mut c = Mapping::new();
                    c.insert("condition".into(), "service_started".into());
                    (merge::scalar(d), Value::Object(c))
                })
                .collect(),
            Value::Object(m) => m,
            _ => {
                problems.push(Problem::new(
                    file,
                    path,
                    "must be a list of services or a mapping",
                ));
                Mapping::new()
            }
        };
        body.insert("depends_on".into(), Value::Object(map));
    }
    if let Some(v) = body.get("networks").cloned() {
        let map = match v {
            Value::Array(items) => items
                .iter()
                .map(|n| (merge::scalar(n), Value::Null))
                .collect(),
            Value::Object(m) => m,
            _ => {
                problems.push(Problem::new(
                    file,
                    format!("services.{name}.networks"),
                    "must be a list or a mapping",
                ));
                Mapping::new()
            }
        };
        body.insert("networks".into(), Value::Object(map));
    }
    if problems.is_empty() {
        Ok(body)
    } else {
        Err(problems)
    }
}

/// The same service given two different phases by two files: one of them is not an override
/// of the other but a second service that happens to share the name.
fn phase_conflict(existing: &Service, body: &Mapping, file: &Path) -> Option<Problem> {
    let phase = |m: &Mapping| {
        m.get("labels")
            .and_then(|l| l.get(crate::import::PHASE_LABEL))
            .map(merge::scalar)
    };
    let (Some(before), Some(now)) = (phase(&existing.body), phase(body)) else {
        return None;
    };
    (before != now).then(|| {
        Problem::new(
            file.display(),
            format!("services.{}.labels.{}", existing.name, crate::import::PHASE_LABEL),
            format!(
                "service {} is already defined in {} in phase {before}; here it is in phase {now}: rename one of them (two files' services with one name are merged into one)",
                existing.name,
                existing.file_of("labels"),
            ),
        )
    })
}

fn undefined_dependencies(services: &[Service]) -> Vec<Problem> {
    let mut out = Vec::new();
    for s in services {
        let Some(Value::Object(deps)) = s.get("depends_on") else {
            continue;
        };
        for dep in deps.keys() {
            if !services.iter().any(|o| &o.name == dep) {
                out.push(Problem::new(
                    s.file_of("depends_on"),
                    format!("services.{}.depends_on", s.name),
                    format!("depends on service {dep}, which no file defines: add its file to the import, or remove the dependency"),
                ));
            }
        }
    }
    out
}

fn container_name_clashes(services: &[Service]) -> Vec<Problem> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = Vec::new();
    for s in services {
        let Some(cn) = s.get("container_name").map(merge::scalar) else {
            continue;
        };
        if let Some(other) = seen.insert(cn.clone(), &s.name) {
            out.push(Problem::new(
                s.file_of("container_name"),
                format!("services.{}.container_name", s.name),
                format!(
                    "container name {cn} is also service {other}'s: each container needs its own"
                ),
            ));
        }
    }
    out
}
