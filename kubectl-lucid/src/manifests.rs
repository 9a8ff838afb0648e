//! Manifests in: the files and directories `plan` is given, as LucidPhases, LucidServices,
//! ConfigMaps and Secrets (other kinds are skipped and named).

use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use lucid_operator::api::{LucidPhase, LucidService};
use serde_json::Value;

use crate::error::Problem;

#[derive(Default, Debug)]
pub struct Manifests {
    /// In the order the files give them (the order the plan breaks ties by).
    pub phases: Vec<LucidPhase>,
    pub services: Vec<LucidService>,
    pub config_maps: Vec<ConfigMap>,
    pub secrets: Vec<Secret>,
    /// `file: kind/name` of objects that are none of those.
    pub skipped: Vec<String>,
}

/// Reads every `.yaml`/`.yml`/`.json` file (directories in name order, as `kubectl apply -f`).
pub fn read(paths: &[PathBuf]) -> Result<Manifests, Vec<Problem>> {
    let mut out = Manifests::default();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut list: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| {
                            f.extension()
                                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                        })
                        .collect();
                    list.sort();
                    files.extend(list);
                }
                Err(e) => problems.push(Problem::new(
                    p.display(),
                    "",
                    format!("cannot read directory: {e}"),
                )),
            }
        } else {
            files.push(p.clone());
        }
    }
    for f in &files {
        let text = if f == Path::new("-") {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map(|_| s)
        } else {
            std::fs::read_to_string(f)
        };
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem::new(
                    f.display(),
                    "",
                    format!("cannot read: {}", crate::compose::dotenv::io_reason(&e)),
                ));
                continue;
            }
        };
        let options = crate::compose::yaml_options();
        let documents = match serde_saphyr::from_multiple_with_options::<Value>(&text, options) {
            Ok(d) => d,
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!("line {}, column {}", l.line(), l.column()))
                    .unwrap_or_default();
                let reason = e.to_string();
                let reason = reason.split(" at line ").next().unwrap_or(&reason);
                problems.push(Problem::new(
                    f.display(),
                    at,
                    format!("not valid YAML: {reason}"),
                ));
                continue;
            }
        };
        for (i, value) in documents.into_iter().enumerate() {
            if value.is_null() {
                continue;
            }
            if value.get("kind").is_none() && value.get("services").is_some() {
                problems.push(Problem::new(
                    f.display(),
                    format!("document {}", i + 1),
                    "a compose file, not manifests: run `kubectl lucid import` on it first (plan reads what import writes)",
                ));
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string();
            let at = format!("document {} ({kind}/{name})", i + 1);
            let bad = |e: serde_json::Error| {
                Problem::new(f.display(), at.clone(), format!("not a valid {kind}: {e}"))
            };
            match kind.as_str() {
                "LucidPhase" => match serde_json::from_value(value) {
                    Ok(o) => out.phases.push(o),
                    Err(e) => problems.push(bad(e)),
                },
                "LucidService" => match serde_json::from_value(value) {
                    Ok(o) => out.services.push(o),
                    Err(e) => problems.push(bad(e)),
                },
                "ConfigMap" => match serde_json::from_value(value) {
                    Ok(o) => out.config_maps.push(o),
                    Err(e) => problems.push(bad(e)),
                },
                "Secret" => match serde_json::from_value(value) {
                    Ok(o) => out.secrets.push(o),
                    Err(e) => problems.push(bad(e)),
                },
                _ => out.skipped.push(format!("{}: {kind}/{name}", f.display())),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}
