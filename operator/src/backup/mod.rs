//! The data copier behind "data protected before a stateful update" (issue 18): run as
//! `lucid-operator backup --source /data --target /backup` and
//! `lucid-operator restore --source /backup --target /data` inside a Job from the operator's
//! own image (FROM scratch: no shell, no `cp`, no `tar`), so an air-gapped cluster already
//! has it. The Job itself is rendered by [`crate::render::backup`].
//!
//! # What a backup claim holds
//!
//! ```text
//! <backup>/data/...        the copy: files 0600, directories 0700 (the real modes are in the manifest)
//! <backup>/MANIFEST.json   every path, kind, size, mode and blake3, plus the root hash over them
//! <backup>/COMPLETE        the root hash; written last, so its presence means "verified copy"
//! ```
//!
//! # Why a restore loses nothing a client was told was stored
//!
//! The copy is taken after the old revision's pods have stopped and before the new revision
//! starts, so it is a consistent copy of a stopped database: everything the old revision
//! acknowledged is in it. The new revision is rolled back only when it failed, and a failed
//! revision never became Ready; a pod that is not Ready is not an endpoint of the Service,
//! so no client ever sent it a write, and nothing it wrote (a migration, a half-written
//! journal) is anything a client was told was stored. Restoring the copy therefore gives
//! the old revision back exactly the data it had acknowledged when it stopped.
//!
//! # Crash safety
//!
//! The operator may be killed, or lose its lease, at any step; the Job is then run again
//! (or its pod retried), and each step converges:
//!
//! - **backup**: `COMPLETE` is written (temp file, fsync, rename, fsync of the directory)
//!   only after every copied file was fsynced, read back and matched its source's blake3,
//!   and after the manifest was made durable the same way. A claim without `COMPLETE` is a
//!   partial copy: a re-run wipes it and copies again. A claim with `COMPLETE` whose
//!   manifest and files verify is left as it is: the re-run exits 0 at once.
//! - **restore**: never starts unless `COMPLETE` is there and every file of the copy matches
//!   the manifest (a damaged copy is refused before the data is touched). It then makes the
//!   data directory equal to the manifest by comparing and fixing (removing what the
//!   manifest does not list, writing a changed or missing file to a temp file and renaming
//!   it over, fixing modes and symlinks), so a killed restore re-run simply finishes the
//!   job. It succeeds only when a fresh scan of the data directory gives the manifest's
//!   root hash.
//!
//! Both print one JSON line (`{"op":"backup","files":N,"bytes":N,"rootHash":"…","seconds":F}`,
//! or one with `"error"`) to stdout and to `/dev/termination-log`, so the operator reads the
//! result from the pod's status without reading logs.
//!
//! # Limits
//!
//! Regular files, directories and symlinks (kept as symlinks, never followed) are copied;
//! sockets and FIFOs hold no data and are skipped (counted in `skipped`); device files are
//! refused. Hard links become separate files. Ownership is not changed (the Job runs as the
//! service's user without capabilities): restored files belong to that user. A top-level
//! `lost+found` (made by `mkfs`, owned by root) is neither copied nor removed. Paths must be
//! UTF-8, as the manifest is JSON. The manifest is held in memory (about 200 bytes a path).

pub mod cli;
mod copy;
mod fsutil;
pub mod manifest;
mod restore;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use copy::backup;
pub use manifest::{Entry, Kind, Manifest};
pub use restore::restore;

/// The copy of the data lives here, under the backup claim's root.
pub const DATA_DIR: &str = "data";
/// The manifest file, under the backup claim's root.
pub const MANIFEST_FILE: &str = "MANIFEST.json";
/// Written last: its presence means the copy is complete and verified.
pub const COMPLETE_FILE: &str = "COMPLETE";
/// Left alone on both sides: made by `mkfs`, owned by root.
const LOST_AND_FOUND: &str = "lost+found";

/// What a finished backup or restore reports (one JSON line, also the termination message).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `backup` or `restore`.
    pub op: String,
    /// Regular files in the manifest.
    pub files: u64,
    /// Bytes of regular files in the manifest.
    pub bytes: u64,
    /// The manifest's root hash (blake3 over the sorted entries).
    pub root_hash: String,
    pub seconds: f64,
    /// Backup: the claim already held a verified copy and was left as it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_complete: bool,
    /// Backup: sockets and FIFOs, which hold no data, not copied.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// Restore: files and symlinks written because they were missing or differed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub written: u64,
    /// Restore: paths removed because the backup does not have them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub removed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a backup or restore failed. Each message names the path, so the status the operator
/// writes from it tells the user what to look at.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Usage(String),
    #[error("the source {} does not exist", .0.display())]
    SourceMissing(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error(
        "no space left on the device holding {}: the data needs {needed} bytes of files; \
         give its claim more room",
        path.display()
    )]
    NoSpace { path: PathBuf, needed: u64 },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: blake3 {found}, expected {expected}: the copy does not match what was read",
        path.display()
    )]
    HashMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{}: the name is not UTF-8, which the manifest cannot record", .0.display())]
    NotUtf8(PathBuf),
    #[error("{}: a device file cannot be copied without privileges", .0.display())]
    Device(PathBuf),
    #[error("{}: no {COMPLETE_FILE} marker: the backup was never finished, so it cannot be restored", .0.display())]
    Incomplete(PathBuf),
    #[error("the backup in {} is damaged ({reason}); nothing was changed", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error("after the restore {} still differs from the backup: {reason}", path.display())]
    RestoreMismatch { path: PathBuf, reason: String },
}

impl BackupError {
    /// An I/O error on `path`, told apart when it is a full device (the one a user fixes by
    /// giving the backup claim more room).
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| {
            if source.kind() == std::io::ErrorKind::StorageFull {
                BackupError::NoSpace { path, needed: 0 }
            } else {
                BackupError::Io {
                    action,
                    path,
                    source,
                }
            }
        }
    }

    /// The path the error is about, for the JSON error line.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            BackupError::Usage(_) => None,
            BackupError::SourceMissing(p)
            | BackupError::NotADirectory(p)
            | BackupError::NotUtf8(p)
            | BackupError::Device(p)
            | BackupError::Incomplete(p) => Some(p),
            BackupError::NoSpace { path, .. }
            | BackupError::Io { path, .. }
            | BackupError::HashMismatch { path, .. }
            | BackupError::Damaged { path, .. }
            | BackupError::RestoreMismatch { path, .. } => Some(path),
        }
    }

    /// A CamelCase reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            BackupError::Usage(_) => "Usage",
            BackupError::SourceMissing(_) => "SourceMissing",
            BackupError::NotADirectory(_) => "NotADirectory",
            BackupError::NoSpace { .. } => "NoSpace",
            BackupError::Io { .. } => "IoError",
            BackupError::HashMismatch { .. } => "HashMismatch",
            BackupError::NotUtf8(_) => "NotUtf8",
            BackupError::Device(_) => "DeviceFile",
            BackupError::Incomplete(_) => "BackupIncomplete",
            BackupError::Damaged { .. } => "BackupDamaged",
            BackupError::RestoreMismatch { .. } => "RestoreMismatch",
        }
    }
}
