//! The manifest: every path of a copied tree with its kind, size, mode and content hash, and
//! a root hash over all of them, so two trees are equal exactly when their root hashes are.

use std::path::Path;

use super::{BackupError, COMPLETE_FILE, DATA_DIR, MANIFEST_FILE, fsutil};

/// The manifest format; a reader refuses any other.
pub const VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        }
    }
}

/// One path of the tree, relative to its root, `/`-separated.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    /// File: its length; symlink: the length of its target; directory: 0.
    pub size: u64,
    /// Permission bits (with setuid, setgid, sticky), octal as `ls -l` people read them.
    #[serde(with = "octal")]
    pub mode: u32,
    /// File: blake3 of the content; symlink: blake3 of the target; directory: empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blake3: String,
    /// Symlink: where it points (never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub version: u32,
    pub root_hash: String,
    pub files: u64,
    pub bytes: u64,
    /// Sorted by path, so a parent comes before what it holds.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// The manifest of `entries`, sorted and hashed.
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let files = entries.iter().filter(|e| e.kind == Kind::File);
        Manifest {
            version: VERSION,
            root_hash: root_hash(&entries),
            files: files.clone().count() as u64,
            bytes: files.map(|e| e.size).sum(),
            entries,
        }
    }

    /// Reads and checks a manifest: known version, sorted entries, safe relative paths, and
    /// a root hash that matches its entries.
    pub fn read(path: &Path) -> Result<Self, BackupError> {
        let damaged = |reason: String| BackupError::Damaged {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| damaged(format!("cannot read it: {e}")))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| damaged(format!("not a manifest: {e}")))?;
        if manifest.version != VERSION {
            return Err(damaged(format!(
                "manifest version {}, this operator reads {VERSION}",
                manifest.version
            )));
        }
        for pair in manifest.entries.windows(2) {
            if pair[0].path >= pair[1].path {
                return Err(damaged(format!(
                    "entries out of order at {:?}",
                    pair[1].path
                )));
            }
        }
        if let Some(bad) = manifest.entries.iter().find(|e| !is_safe_relative(&e.path)) {
            return Err(damaged(format!(
                "{:?} is not a plain relative path",
                bad.path
            )));
        }
        let recomputed = root_hash(&manifest.entries);
        if recomputed != manifest.root_hash {
            return Err(damaged(format!(
                "root hash {} does not match its entries ({recomputed})",
                manifest.root_hash
            )));
        }
        Ok(manifest)
    }

    /// Writes the manifest durably: temp file, fsync, rename, fsync of the directory.
    pub fn write(&self, path: &Path) -> Result<(), BackupError> {
        // Serialising plain structs of strings and numbers cannot fail.
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        fsutil::write_atomically(path, &json)
    }
}

/// blake3 over the sorted entries, each field length-prefixed (a file name may hold any
/// byte but `/` and NUL, newlines included, so no separator is safe).
pub fn root_hash(entries: &[Entry]) -> String {
    let mut hasher = blake3::Hasher::new();
    let mut field = |bytes: &[u8]| {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for e in entries {
        field(e.path.as_bytes());
        field(e.kind.as_str().as_bytes());
        field(&e.size.to_le_bytes());
        field(&e.mode.to_le_bytes());
        field(e.blake3.as_bytes());
        field(e.target.as_deref().unwrap_or("").as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// No absolute path, no `..`, no empty or `.` component: a manifest can never make a
/// restore write outside its target.
fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

mod octal {
    pub fn serialize<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        u32::from_str_radix(&text, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("mode {text:?} is not octal 0000-7777"))
            })
    }
}

/// Reads `<root>/COMPLETE` and `<root>/MANIFEST.json` and checks every entry against the copy
/// under `<root>/data` (kind, size, content hash, symlink target; the copy's own modes are
/// not the data's): the backup is whole and unchanged since it was made.
pub fn verify_backup(root: &Path, buffer: &mut fsutil::Buffer) -> Result<Manifest, BackupError> {
    let complete_path = root.join(COMPLETE_FILE);
    let complete = match std::fs::read_to_string(&complete_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::Incomplete(root.to_path_buf()));
        }
        Err(e) => return Err(BackupError::io("read", &complete_path)(e)),
    };
    let manifest = Manifest::read(&root.join(MANIFEST_FILE))?;
    if complete.trim() != manifest.root_hash {
        return Err(BackupError::Damaged {
            path: complete_path,
            reason: format!(
                "{COMPLETE_FILE} names root hash {}, the manifest {}",
                complete.trim(),
                manifest.root_hash
            ),
        });
    }
    let data = root.join(DATA_DIR);
    for expected in &manifest.entries {
        let path = data.join(&expected.path);
        let found =
            fsutil::describe(&path, &expected.path, buffer).map_err(|e| BackupError::Damaged {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if let Some(reason) = content_difference(expected, found.as_ref()) {
            return Err(BackupError::Damaged { path, reason });
        }
    }
    Ok(manifest)
}

/// How `found` differs from `expected` in what it holds (kind, size, content, target), or
/// None when it holds the same.
pub fn content_difference(expected: &Entry, found: Option<&Entry>) -> Option<String> {
    let Some(found) = found else {
        return Some(format!(
            "a socket or FIFO where the manifest has a {}",
            expected.kind.as_str()
        ));
    };
    if found.kind != expected.kind {
        Some(format!(
            "a {} where the manifest has a {}",
            found.kind.as_str(),
            expected.kind.as_str()
        ))
    } else if found.size != expected.size {
        Some(format!(
            "{} bytes, the manifest says {}",
            found.size, expected.size
        ))
    } else if found.blake3 != expected.blake3 {
        Some(format!(
            "blake3 {}, the manifest says {}",
            found.blake3, expected.blake3
        ))
    } else if found.target != expected.target {
        Some(format!(
            "points to {:?}, the manifest says {:?}",
            found.target.as_deref().unwrap_or(""),
            expected.target.as_deref().unwrap_or("")
        ))
    } else {
        None
    }
}
