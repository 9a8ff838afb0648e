//! Merged compose services in, Lucid resources out: a LucidPhase per `lucid.cluster` label, a
//! LucidService per compose service, a ConfigMap and (for values that look secret) a Secret
//! per env file. What cannot be carried over is reported per service, never dropped.

mod healthcheck;
mod secrets;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::compose::Value;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use lucid_operator::api::{LucidPhase, LucidPhaseSpec, LucidService};
use lucid_operator::graph::Snapshot;

use crate::compose::{Project, dotenv, merge::scalar};
use crate::error::Problem;

pub use healthcheck::seconds as duration_seconds;

/// The compose label naming a service's rollout phase.
pub const PHASE_LABEL: &str = "lucid.cluster";
/// Label on every object the import makes, so they can be listed and removed together.
pub const IMPORTED_BY: &str = "app.kubernetes.io/created-by";

/// Everything one import makes.
#[derive(Debug, Default)]
pub struct Imported {
    /// In rollout order.
    pub phases: Vec<LucidPhase>,
    pub config_maps: Vec<ConfigMap>,
    pub secrets: Vec<Secret>,
    /// In rollout order: by phase, then as the files list them.
    pub services: Vec<LucidService>,
    /// What could not be carried over; each makes the import exit 2.
    pub lost: Vec<Finding>,
    /// Where the result differs from compose by design (the hardening); informational.
    pub notes: Vec<Finding>,
}

/// One service's setting that did not carry over as it was, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub service: String,
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.service, self.key, self.reason)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Where `env_file` entries are found by file name, instead of the paths the files give
    /// (the seeds name absolute paths on the Pi).
    pub env_dir: Option<PathBuf>,
}

/// One env file, split into what is secret and what is not.
#[derive(Debug)]
struct EnvFile {
    object: String,
    plain: Vec<(String, String)>,
    secret: Vec<(String, String)>,
}

pub fn import(project: &Project, options: &Options) -> Result<Imported, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut out = Imported::default();

    let env_files = read_env_files(project, options, &mut problems);
    let phases = phases(project, &mut problems);

    for s in &project.services {
        let Some(phase) = phases.of.get(&s.name) else {
            continue;
        };
        match service::service(s, phase, &env_files, &mut out) {
            Ok((ls, secret)) => {
                out.services.push(ls);
                out.secrets.extend(secret);
            }
            Err(p) => problems.extend(p),
        }
    }
    for ef in env_files.values().flatten() {
        let labels = Some(imported_labels());
        if !ef.plain.is_empty() {
            out.config_maps.push(ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ef.object.clone()),
                    labels: labels.clone(),
                    ..Default::default()
                },
                data: Some(ef.plain.iter().cloned().collect()),
                ..Default::default()
            });
        }
        if !ef.secret.is_empty() {
            out.secrets.push(Secret {
                metadata: ObjectMeta {
                    name: Some(ef.object.clone()),
                    labels,
                    ..Default::default()
                },
                data: Some(
                    ef.secret
                        .iter()
                        .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                        .collect(),
                ),
                type_: Some("Opaque".into()),
                ..Default::default()
            });
        }
    }
    out.config_maps.sort_by_key(|c| c.name_any());
    out.secrets.sort_by_key(|c| c.name_any());
    for (name, depends_on) in &phases.order {
        let mut phase = LucidPhase::new(
            name,
            LucidPhaseSpec {
                depends_on: depends_on.clone(),
                paused: false,
                description: Some(format!("Imported from {}", phases.files[name].join(", "))),
                on_failure: Default::default(),
            },
        );
        phase.metadata.labels = Some(imported_labels());
        out.phases.push(phase);
    }
    let rank: BTreeMap<&str, usize> = phases
        .order
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    out.services.sort_by_key(|s| {
        rank.get(s.spec.phase.as_str())
            .copied()
            .unwrap_or(usize::MAX)
    });

    problems.extend(duplicate_names(&out));
    problems.extend(operator_checks(project, &out));
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

pub fn imported_labels() -> BTreeMap<String, String> {
    [(IMPORTED_BY.to_string(), "kubectl-lucid".to_string())].into()
}

/// The file name an env file's objects are named after: `.env.foundation` -> `env-foundation`.
fn object_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut name: String = file
        .trim_start_matches('.')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with("env") {
        name = format!("env-{name}");
    }
    name.trim_end_matches('-').to_string()
}

/// Every env file any service lists, read once, keyed by the path as written in the compose
/// file. `None` for one that could not be read (the problem is already recorded).
fn read_env_files(
    project: &Project,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Option<EnvFile>> {
    let mut out: BTreeMap<String, Option<EnvFile>> = BTreeMap::new();
    let shell: BTreeMap<String, String> = std::env::vars().collect();
    let mut objects: BTreeMap<String, PathBuf> = BTreeMap::new();
    for s in &project.services {
        let Some(Value::Array(list)) = s.get("env_file") else {
            continue;
        };
        for (i, entry) in list.iter().enumerate() {
            let written = scalar(entry);
            if out.contains_key(&written) {
                continue;
            }
            let path = match &options.env_dir {
                Some(dir) => dir.join(Path::new(&written).file_name().unwrap_or_default()),
                None => project.dir.join(&written),
            };
            let key = format!("services.{}.env_file[{i}]", s.name);
            let vars = match dotenv::read_env_file(&path, &shell) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(Problem::new(
                        s.file_of("env_file"),
                        key,
                        format!("env file {}: {}", path.display(), e.message),
                    ));
                    out.insert(written, None);
                    continue;
                }
            };
            let object = object_name(&path);
            if let Some(other) = objects.insert(object.clone(), path.clone())
                && other != path
            {
                problems.push(Problem::new(
                    s.file_of("env_file"),
                    key,
                    format!(
                        "env files {} and {} would both become {object}: rename one",
                        other.display(),
                        path.display()
                    ),
                ));
            }
            let whole_file_secret = object.contains("secret");
            let (secret, plain) = vars
                .into_iter()
                .partition(|(k, v)| whole_file_secret || secrets::looks_secret(k, v));
            out.insert(
                written,
                Some(EnvFile {
                    object,
                    plain,
                    secret,
                }),
            );
        }
    }
    out
}

struct Phases {
    /// Service name -> phase.
    of: BTreeMap<String, String>,
    /// Phases in rollout order with the phases each depends on.
    order: Vec<(String, Vec<String>)>,
    files: BTreeMap<String, Vec<String>>,
}

/// Phases from the `lucid.cluster` labels (or a `docker-compose.<phase>.yml` file name), in
/// the order the files first name them; a service depending on another phase's service makes
/// its phase depend on that phase.
fn phases(project: &Project, problems: &mut Vec<Problem>) -> Phases {
    let mut of = BTreeMap::new();
    let mut first_seen: Vec<String> = Vec::new();
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &project.services {
        let label = s.get("labels").and_then(|l| l.get(PHASE_LABEL)).map(scalar);
        let from_file = s.files.first().and_then(|f| phase_from_file_name(f));
        let Some(phase) = label.clone().or(from_file) else {
            problems.push(Problem::new(
                s.file_of("labels"),
                format!("services.{}.labels", s.name),
                format!("no {PHASE_LABEL} label names the service's phase (and the file name is not docker-compose.<phase>.yml): add {PHASE_LABEL}=<phase>"),
            ));
            continue;
        };
        if !lucid_operator::api::is_dns_label(&phase) {
            problems.push(Problem::new(
                s.file_of("labels"),
                format!("services.{}.labels.{PHASE_LABEL}", s.name),
                format!("phase {phase:?} is not a DNS label (lower-case letters, digits and '-'): rename it"),
            ));
            continue;
        }
        if !first_seen.contains(&phase) {
            first_seen.push(phase.clone());
        }
        for f in &s.files {
            let shown = f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let list = files.entry(phase.clone()).or_default();
            if !list.contains(&shown) {
                list.push(shown);
            }
        }
        of.insert(s.name.clone(), phase);
    }
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &project.services {
        let Some(mine) = of.get(&s.name) else {
            continue;
        };
        let Some(Value::Object(d)) = s.get("depends_on") else {
            continue;
        };
        for dep in d.keys() {
            if let Some(theirs) = of.get(dep)
                && theirs != mine
            {
                deps.entry(mine.clone()).or_default().insert(theirs.clone());
            }
        }
    }
    // Kahn's algorithm, ties broken by the files' order. A cycle leaves phases over; they are
    // appended as they are and the operator's own cycle check reports them.
    let mut order: Vec<(String, Vec<String>)> = Vec::new();
    let mut left = first_seen.clone();
    while !left.is_empty() {
        let placed: BTreeSet<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        let next = left
            .iter()
            .position(|p| {
                deps.get(p)
                    .is_none_or(|d| d.iter().all(|x| placed.contains(x.as_str())))
            })
            .unwrap_or(0);
        let phase = left.remove(next);
        let mut d: Vec<String> = deps
            .get(&phase)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        d.sort_by_key(|x| first_seen.iter().position(|p| p == x));
        order.push((phase, d));
    }
    Phases { of, order, files }
}

fn phase_from_file_name(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_string_lossy().to_string();
    let stem = name.strip_prefix("docker-compose.")?;
    let phase = stem
        .strip_suffix(".yml")
        .or_else(|| stem.strip_suffix(".yaml"))?;
    (phase != "all" && !phase.is_empty()).then(|| phase.to_string())
}

/// Two objects of one kind with one name: only one could be applied.
fn duplicate_names(out: &Imported) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let names = out
        .config_maps
        .iter()
        .map(|o| ("ConfigMap", o.name_any()))
        .chain(out.secrets.iter().map(|o| ("Secret", o.name_any())));
    for (kind, name) in names {
        if !seen.insert((kind, name.clone())) {
            problems.push(Problem::new(
                "(generated)",
                format!("{kind}/{name}"),
                "two generated objects share this name (an env file and a service's own variables): rename the env file or the service",
            ));
        }
    }
    problems
}

/// The operator's own checks, on what the import made: the same messages it would put in
/// status, found before anything is applied.
fn operator_checks(project: &Project, out: &Imported) -> Vec<Problem> {
    let snapshot = Snapshot::new(&out.services, &out.phases);
    let mut problems = Vec::new();
    for ls in &out.services {
        let name = ls.name_any();
        let file = project
            .services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.file_of("depends_on"))
            .unwrap_or_default();
        for p in lucid_operator::validate::problems(ls) {
            problems.push(Problem::new(&file, format!("services.{name}"), p));
        }
        if let Some((reason, message)) = snapshot.problem(ls) {
            problems.push(Problem::new(
                &file,
                format!("services.{name}.depends_on"),
                format!("{reason}: {message}"),
            ));
        }
    }
    problems
}
