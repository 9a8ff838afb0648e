//! `lucid-operator restore`: make a data directory byte-identical to a verified backup.
//!
//! Compare-and-fix rather than wipe-and-copy: a restore killed half-way and run again only
//! does what is left, and a file the failed revision never touched is not rewritten.

use std::collections::HashMap;
use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Instant;

use super::copy::seconds;
use super::fsutil::{self, Buffer};
use super::manifest::{self, Entry, Kind, Manifest};
use super::{BackupError, DATA_DIR, LOST_AND_FOUND, Summary};

/// Restores the backup at `source` (a backup claim's root) into `target`. Refuses a backup
/// without `COMPLETE` or one that does not verify, before touching `target`.
pub fn restore(source: &Path, target: &Path) -> Result<Summary, BackupError> {
    let started = Instant::now();
    let mut buffer = Buffer::new();
    let manifest = manifest::verify_backup(source, &mut buffer)?;
    match fs::metadata(target) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(BackupError::NotADirectory(target.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(target).map_err(BackupError::io("create", target))?;
        }
        Err(e) => return Err(BackupError::io("inspect", target)(e)),
    }
    let wanted: HashMap<&str, &Entry> = manifest
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();

    let mut removed = 0;
    prune(target, "", &wanted, &mut removed)?;
    let written = write(&source.join(DATA_DIR), target, &manifest, &mut buffer).map_err(|e| {
        match e {
            // The data claim is smaller than the data it held (it was resized, or the
            // failed revision filled it and the old files are not all replaced yet).
            BackupError::NoSpace { path, .. } => BackupError::NoSpace {
                path,
                needed: manifest.bytes,
            },
            other => other,
        }
    })?;
    for dir in manifest.entries.iter().filter(|e| e.kind == Kind::Dir) {
        fsutil::sync_dir(&target.join(&dir.path))?;
    }
    fsutil::sync_dir(target)?;
    verify(target, &manifest, &mut buffer)?;
    // Modes were set after the last fsync of anything: make them durable too.
    fsutil::sync_filesystem(target)?;

    Ok(Summary {
        op: "restore".into(),
        files: manifest.files,
        bytes: manifest.bytes,
        root_hash: manifest.root_hash.clone(),
        seconds: seconds(started),
        already_complete: false,
        skipped: 0,
        written,
        removed,
    })
}

/// Removes every path the manifest does not list, or lists as another kind (a symlink
/// where a directory belongs is removed, never followed). Directories that stay get their
/// owner's write bit, so what they hold can be replaced.
fn prune(
    dir: &Path,
    relative: &str,
    wanted: &HashMap<&str, &Entry>,
    removed: &mut u64,
) -> Result<(), BackupError> {
    for child in fs::read_dir(dir).map_err(BackupError::io("list", dir))? {
        let child = child.map_err(BackupError::io("list", dir))?;
        let path = child.path();
        // A name that is not UTF-8 cannot be in the manifest: it goes.
        let name = child.file_name().into_string().unwrap_or_default();
        if relative.is_empty() && name == LOST_AND_FOUND {
            continue;
        }
        let child_relative = fsutil::join_relative(relative, &name);
        let meta = fs::symlink_metadata(&path).map_err(BackupError::io("inspect", &path))?;
        let expected = (!name.is_empty())
            .then(|| wanted.get(child_relative.as_str()))
            .flatten()
            .map(|e| e.kind);
        match expected {
            Some(Kind::Dir) if meta.is_dir() => {
                fsutil::make_owner_writable(&path, fsutil::mode_of(&meta))?;
                prune(&path, &child_relative, wanted, removed)?;
            }
            Some(Kind::File) if meta.is_file() => {}
            Some(Kind::Symlink) if meta.is_symlink() => {}
            _ => {
                fsutil::remove_tree(&path)?;
                *removed += 1;
            }
        }
    }
    Ok(())
}

/// Creates what is missing and replaces what differs, parents before children (the
/// manifest is sorted). Returns how many files and symlinks were written.
fn write(
    backup: &Path,
    target: &Path,
    manifest: &Manifest,
    buffer: &mut Buffer,
) -> Result<u64, BackupError> {
    let mut written = 0;
    for entry in &manifest.entries {
        let path = target.join(&entry.path);
        let on_disk = match fs::symlink_metadata(&path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(BackupError::io("inspect", &path)(e)),
        };
        match entry.kind {
            Kind::Dir => {
                if on_disk.is_none() {
                    DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .map_err(BackupError::io("create", &path))?;
                }
            }
            Kind::File => {
                let same = on_disk.is_some_and(|m| m.is_file() && m.len() == entry.size)
                    // Unreadable counts as different: it is rewritten.
                    && fsutil::hash_file(&path, buffer).is_ok_and(|(_, h)| h == entry.blake3);
                if !same {
                    let from = backup.join(&entry.path);
                    let temp = fsutil::temp_path(&path);
                    fsutil::remove_tree(&temp)?;
                    let (_, blake3) = fsutil::copy_file(&from, &temp, 0o600, buffer)?;
                    if blake3 != entry.blake3 {
                        // Verified moments ago: the backup claim is failing under us.
                        return Err(BackupError::Damaged {
                            path: from,
                            reason: format!(
                                "read blake3 {blake3}, the manifest says {}",
                                entry.blake3
                            ),
                        });
                    }
                    fs::rename(&temp, &path)
                        .map_err(BackupError::io("rename into place", &path))?;
                    written += 1;
                }
                // The owner keeps read access until the tree is verified (see `verify`).
                fsutil::set_mode(&path, entry.mode | 0o400)?;
            }
            Kind::Symlink => {
                let target_text = entry.target.as_deref().unwrap_or_default();
                let same = on_disk.is_some_and(|m| m.is_symlink())
                    && fsutil::read_link(&path).is_ok_and(|t| t == target_text);
                if !same {
                    let temp = fsutil::temp_path(&path);
                    fsutil::remove_tree(&temp)?;
                    std::os::unix::fs::symlink(target_text, &temp)
                        .map_err(BackupError::io("create the symlink", &temp))?;
                    fs::rename(&temp, &path)
                        .map_err(BackupError::io("rename into place", &path))?;
                    written += 1;
                }
            }
        }
    }
    Ok(written)
}

/// Scans `target` afresh and compares it with the manifest. Contents are read while every
/// directory is still 0700 and every file owner-readable; then the modes that would stop
/// the owner reading (a directory's, a `0o040` file's) are set and checked by `lstat`; the
/// root hash of what was found must equal the manifest's.
fn verify(target: &Path, manifest: &Manifest, buffer: &mut Buffer) -> Result<(), BackupError> {
    let mut found = Vec::new();
    scan(target, "", buffer, &mut found)?;
    let mut found = Manifest::new(found).entries;

    // Deepest first, so a directory is still searchable while what it holds is changed.
    for entry in manifest.entries.iter().rev() {
        let deferred =
            entry.kind == Kind::Dir || (entry.kind == Kind::File && entry.mode & 0o400 == 0);
        if deferred {
            fsutil::set_mode(&target.join(&entry.path), entry.mode)?;
        }
    }
    for entry in found.iter_mut().filter(|e| e.kind != Kind::Symlink) {
        let path = target.join(&entry.path);
        let meta = fs::symlink_metadata(&path).map_err(BackupError::io("inspect", &path))?;
        entry.mode = fsutil::mode_of(&meta);
    }

    if manifest::root_hash(&found) == manifest.root_hash {
        return Ok(());
    }
    Err(first_difference(target, &manifest.entries, &found))
}

fn scan(
    dir: &Path,
    relative: &str,
    buffer: &mut Buffer,
    found: &mut Vec<Entry>,
) -> Result<(), BackupError> {
    for name in fsutil::sorted_names(dir)? {
        if relative.is_empty() && name == LOST_AND_FOUND {
            continue;
        }
        let path = dir.join(&name);
        let child_relative = fsutil::join_relative(relative, &name);
        let Some(entry) = fsutil::describe(&path, &child_relative, buffer)? else {
            // A socket or FIFO made after prune (nothing should be running): not in the
            // backup, so the tree differs.
            return Err(BackupError::RestoreMismatch {
                path,
                reason: "a socket or FIFO appeared during the restore".into(),
            });
        };
        let is_dir = entry.kind == Kind::Dir;
        found.push(entry);
        if is_dir {
            scan(&path, &child_relative, buffer, found)?;
        }
    }
    Ok(())
}

/// Names the first path where the restored tree and the manifest disagree.
fn first_difference(target: &Path, expected: &[Entry], found: &[Entry]) -> BackupError {
    let mismatch = |path: &str, reason: String| BackupError::RestoreMismatch {
        path: target.join(path),
        reason,
    };
    let (mut e, mut f) = (expected.iter().peekable(), found.iter().peekable());
    loop {
        match (e.peek(), f.peek()) {
            (Some(x), Some(y)) if x.path == y.path => {
                if let Some(reason) = manifest::content_difference(x, Some(y)) {
                    return mismatch(&x.path, reason);
                }
                if x.mode != y.mode {
                    return mismatch(
                        &x.path,
                        format!("mode {:04o}, the manifest says {:04o}", y.mode, x.mode),
                    );
                }
                e.next();
                f.next();
            }
            (Some(x), Some(y)) if x.path < y.path => {
                return mismatch(&x.path, "missing".into());
            }
            (Some(x), None) => return mismatch(&x.path, "missing".into()),
            (_, Some(y)) => return mismatch(&y.path, "not in the backup".into()),
            (None, None) => {
                return mismatch("", "the root hash differs".into());
            }
        }
    }
}
