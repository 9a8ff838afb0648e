//! `lucid-operator backup`: copy a data directory into a backup claim, verify the copy, and
//! only then mark it complete.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Instant;

use super::fsutil::{self, Buffer};
use super::manifest::{self, Entry, Kind, Manifest};
use super::{BackupError, COMPLETE_FILE, DATA_DIR, LOST_AND_FOUND, MANIFEST_FILE, Summary};

/// Copies the tree at `source` into `<target>/data`, verifies it, writes the manifest and
/// then `COMPLETE`. A target already holding a verified backup is left as it is; one
/// without `COMPLETE` (a copy that was interrupted) is wiped and copied again.
pub fn backup(source: &Path, target: &Path) -> Result<Summary, BackupError> {
    let started = Instant::now();
    let mut buffer = Buffer::new();
    match fs::metadata(source) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(BackupError::NotADirectory(source.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::SourceMissing(source.to_path_buf()));
        }
        Err(e) => return Err(BackupError::io("inspect", source)(e)),
    }
    fs::create_dir_all(target).map_err(BackupError::io("create", target))?;

    if fs::symlink_metadata(target.join(COMPLETE_FILE)).is_ok() {
        // Made before (the Job ran again after the operator restarted): it must still verify;
        // a damaged complete backup is an error, never silently replaced, because the
        // source may no longer be the data that was backed up.
        let manifest = manifest::verify_backup(target, &mut buffer)?;
        return Ok(summary(&manifest, started, true, 0));
    }

    wipe(target)?;
    let data = target.join(DATA_DIR);
    make_dir(&data)?;
    let mut copy = Copy {
        entries: Vec::new(),
        skipped: 0,
        buffer,
    };
    copy.dir(source, &data, "")
        .map_err(|e| with_needed(e, source))?;
    fsutil::sync_dir(&data)?;
    let Copy {
        entries,
        skipped,
        mut buffer,
    } = copy;
    let manifest = Manifest::new(entries);

    verify_copy(&data, &manifest, &mut buffer)?;

    manifest
        .write(&target.join(MANIFEST_FILE))
        .map_err(|e| with_needed(e, source))?;
    fsutil::write_atomically(
        &target.join(COMPLETE_FILE),
        format!("{}\n", manifest.root_hash).as_bytes(),
    )?;
    Ok(summary(&manifest, started, false, skipped))
}

fn summary(manifest: &Manifest, started: Instant, already_complete: bool, skipped: u64) -> Summary {
    Summary {
        op: "backup".into(),
        files: manifest.files,
        bytes: manifest.bytes,
        root_hash: manifest.root_hash.clone(),
        seconds: seconds(started),
        already_complete,
        skipped,
        written: 0,
        removed: 0,
    }
}

pub(super) fn seconds(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// Removes what an interrupted run left: only the names this copier writes, so a
/// `lost+found` (or anything else the volume came with) stays.
fn wipe(target: &Path) -> Result<(), BackupError> {
    for name in [COMPLETE_FILE, MANIFEST_FILE, DATA_DIR] {
        let path = target.join(name);
        fsutil::remove_tree(&fsutil::temp_path(&path))?;
        fsutil::remove_tree(&path)?;
    }
    fsutil::sync_dir(target)
}

/// The copy keeps every directory 0700 and every file 0600, whatever the source's modes
/// (those are in the manifest): the copier, running as the service's user, can then always
/// read the copy back, verify it and restore from it.
fn make_dir(path: &Path) -> Result<(), BackupError> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(BackupError::io("create", path))
}

struct Copy {
    entries: Vec<Entry>,
    skipped: u64,
    buffer: Buffer,
}

impl Copy {
    fn dir(&mut self, from: &Path, to: &Path, relative: &str) -> Result<(), BackupError> {
        for name in fsutil::sorted_names(from)? {
            if relative.is_empty() && name == LOST_AND_FOUND {
                continue;
            }
            let source = from.join(&name);
            let copy = to.join(&name);
            let path = fsutil::join_relative(relative, &name);
            let meta =
                fs::symlink_metadata(&source).map_err(BackupError::io("inspect", &source))?;
            let kind = meta.file_type();
            let mode = fsutil::mode_of(&meta);
            if kind.is_dir() {
                make_dir(&copy)?;
                self.entries.push(Entry {
                    path: path.clone(),
                    kind: Kind::Dir,
                    size: 0,
                    mode,
                    blake3: String::new(),
                    target: None,
                });
                self.dir(&source, &copy, &path)?;
                fsutil::sync_dir(&copy)?;
            } else if kind.is_symlink() {
                let target = fsutil::read_link(&source)?;
                std::os::unix::fs::symlink(&target, &copy)
                    .map_err(BackupError::io("create the symlink", &copy))?;
                self.entries.push(Entry {
                    path,
                    kind: Kind::Symlink,
                    size: target.len() as u64,
                    mode,
                    blake3: fsutil::symlink_hash(&target),
                    target: Some(target),
                });
            } else if kind.is_file() {
                let (size, blake3) = fsutil::copy_file(&source, &copy, 0o600, &mut self.buffer)?;
                self.entries.push(Entry {
                    path,
                    kind: Kind::File,
                    size,
                    mode,
                    blake3,
                    target: None,
                });
            } else if kind.is_block_device() || kind.is_char_device() {
                return Err(BackupError::Device(source));
            } else {
                // A socket or FIFO: a name, no data; the service makes it again when it starts.
                self.skipped += 1;
            }
        }
        Ok(())
    }
}

/// Reads every copied file back and compares it with the hash taken while reading the
/// source, so a write the disk lost or garbled is caught before `COMPLETE` says "good".
fn verify_copy(data: &Path, manifest: &Manifest, buffer: &mut Buffer) -> Result<(), BackupError> {
    for expected in &manifest.entries {
        let path = data.join(&expected.path);
        let found = fsutil::describe(&path, &expected.path, buffer)?;
        if manifest::content_difference(expected, found.as_ref()).is_some() {
            return Err(BackupError::HashMismatch {
                path,
                expected: expected.blake3.clone(),
                found: found.map(|f| f.blake3).unwrap_or_default(),
            });
        }
    }
    Ok(())
}

/// A full device is reported with how much the data needs, so the user knows how large to
/// make the backup claim.
fn with_needed(error: BackupError, source: &Path) -> BackupError {
    match error {
        BackupError::NoSpace { path, .. } => BackupError::NoSpace {
            path,
            needed: bytes_under(source),
        },
        other => other,
    }
}

/// Bytes of regular files under `path` (best effort: only for the error message).
fn bytes_under(path: &Path) -> u64 {
    let Ok(children) = fs::read_dir(path) else {
        return 0;
    };
    children
        .flatten()
        .filter_map(|c| fs::symlink_metadata(c.path()).ok().map(|m| (c.path(), m)))
        .map(|(p, m)| {
            if m.is_dir() {
                bytes_under(&p)
            } else if m.is_file() {
                m.size()
            } else {
                0
            }
        })
        .sum()
}
