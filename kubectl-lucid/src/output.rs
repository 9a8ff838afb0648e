//! Manifests out: a multi-document stream on stdout, or one file per object in a new
//! directory that appears whole or not at all.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::import::Imported;

/// One object ready to write: a file name (for `-o DIR`) and its YAML.
pub struct Document {
    pub file: String,
    pub yaml: String,
}

fn yaml_of<T: Serialize>(what: &str, object: &T) -> Result<String> {
    lucid_operator::api::to_yaml(object).map_err(|e| Error::Serialise {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// The objects in apply order: phases, ConfigMaps, Secrets, services. With `hide_secrets`
/// every Secret's values are left out (a terminal must never show them).
pub fn documents(imported: &Imported, hide_secrets: bool) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for p in &imported.phases {
        docs.push(Document {
            file: format!("10-lucidphase-{}.yaml", p.name_any()),
            yaml: yaml_of("LucidPhase", p)?,
        });
    }
    for c in &imported.config_maps {
        let c = c.clone();
        docs.push(Document {
            file: format!("20-configmap-{}.yaml", c.name_any()),
            yaml: yaml_of("ConfigMap", &c)?,
        });
    }
    for s in &imported.secrets {
        let mut s: Secret = s.clone();
        let mut yaml = String::new();
        if hide_secrets {
            let keys: Vec<String> = s
                .data
                .as_ref()
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            yaml.push_str(&format!(
                "# Values of {} hidden on a terminal: write with -o DIR or pipe into kubectl apply.\n",
                keys.join(", ")
            ));
            s.data = None;
        }
        yaml.push_str(&yaml_of("Secret", &s)?);
        docs.push(Document {
            file: format!("30-secret-{}.yaml", s.name_any()),
            yaml,
        });
    }
    for ls in &imported.services {
        docs.push(Document {
            file: format!("40-lucidservice-{}.yaml", ls.name_any()),
            yaml: yaml_of("LucidService", ls)?,
        });
    }
    Ok(docs)
}

pub fn to_stdout(docs: &[Document]) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let write = |out: &mut std::io::StdoutLock, s: &str| {
        out.write_all(s.as_bytes()).map_err(|source| Error::Write {
            path: PathBuf::from("(stdout)"),
            source,
        })
    };
    for d in docs {
        write(&mut out, "---\n")?;
        write(&mut out, &d.yaml)?;
    }
    out.flush().map_err(|source| Error::Write {
        path: PathBuf::from("(stdout)"),
        source,
    })
}

/// Writes every document into a temporary sibling of `dir`, then renames it into place: a
/// reader (or `kubectl apply -f dir`) sees all of the objects or none.
pub fn to_directory(dir: &Path, docs: &[Document]) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(Error::OutputExists(dir.to_path_buf()));
        }
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "lucid".into());
    let tmp = parent.join(format!(".{base}.tmp-{}", std::process::id()));
    let result = write_all(&tmp, docs).and_then(|()| {
        std::fs::rename(&tmp, dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        // Best effort: the error already says what failed; a leftover temp dir is harmless.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_all(tmp: &Path, docs: &[Document]) -> Result<()> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir(tmp).map_err(err(tmp))?;
    for d in docs {
        let path = tmp.join(&d.file);
        // Secrets readable by their owner only, as kubectl writes kubeconfigs.
        let mode = if d.file.starts_with("30-secret-") {
            0o600
        } else {
            0o644
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(err(&path))?;
        f.write_all(d.yaml.as_bytes()).map_err(err(&path))?;
        f.sync_all().map_err(err(&path))?;
    }
    Ok(())
}
