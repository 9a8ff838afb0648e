//! Content-addressed chunk files under `<data>/chunks/<2 hex>/<64 hex>`.
//!
//! A chunk is accepted only if its blake3 equals its address; it is written to a temp file,
//! fsynced, renamed into place and the directory fsynced (a new prefix directory's entry
//! in its parent too), so after any crash a chunk file is either whole and correct or
//! absent, and once `put` returns it survives power loss. Reads verify the hash again; a
//! file that fails it is moved aside on read and replaced by the next good upload.
//!
//! Every step that matters for durability goes through [`Disk`], so a test can record the
//! order of writes, fsyncs and renames and check it against a model of what a crash keeps
//! (a process kill keeps the page cache, so killing cannot catch a missing fsync).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::address;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("address {0:?} is not a 64-character lower-case hex blake3 hash")]
    BadAddress(String),
    #[error("content hashes to {actual}, not to its address {address}")]
    HashMismatch { address: String, actual: String },
    #[error("chunk {0} on disk fails its hash; it was moved aside")]
    Corrupt(String),
    #[error("disk error: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    Created,
    /// The same content was already there, checked (deduplicated).
    Existing,
    /// A file was there but failed its hash; it was replaced by this content.
    Repaired,
}

/// The file-system steps durability depends on.
pub trait Disk: Send + Sync + std::fmt::Debug {
    /// Creates one directory (its parent exists).
    fn create_dir(&self, path: &Path) -> std::io::Result<()>;
    /// Creates `path` with `content` (not yet durable).
    fn write_new(&self, path: &Path, content: &[u8]) -> std::io::Result<()>;
    /// fsync of a file's content.
    fn sync_file(&self, path: &Path) -> std::io::Result<()>;
    /// Atomic rename over any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// fsync of a directory: makes its entries (new files, renames) durable.
    fn sync_dir(&self, path: &Path) -> std::io::Result<()>;
}

#[derive(Debug, Default)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        match fs::create_dir(path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    }
    fn write_new(&self, path: &Path, content: &[u8]) -> std::io::Result<()> {
        File::create_new(path)?.write_all(content)
    }
    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        // fsync flushes the inode's dirty pages whichever descriptor asks.
        File::open(path)?.sync_all()
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        fs::rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// Temp files older than this are a crashed writer's: no upload takes an hour to write
/// one chunk, and a younger one may belong to a write in flight.
pub const TMP_MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug)]
pub struct ChunkStore {
    root: PathBuf,
    disk: Arc<dyn Disk>,
}

impl ChunkStore {
    /// Opens the store, removing temp files older than [`TMP_MAX_AGE`].
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, Arc::new(RealDisk))
    }

    pub fn open_with(data_dir: &Path, disk: Arc<dyn Disk>) -> Result<Self, StoreError> {
        let root = data_dir.join("chunks");
        fs::create_dir_all(root.join("tmp"))?;
        let store = Self { root, disk };
        store.clean_tmp(TMP_MAX_AGE)?;
        Ok(store)
    }

    /// Removes temp files older than `max_age`; returns how many.
    pub fn clean_tmp(&self, max_age: Duration) -> Result<usize, StoreError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let entry = entry?;
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= max_age)
                .unwrap_or(false);
            if old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, address: &str) -> PathBuf {
        self.root.join(&address[..2]).join(address)
    }

    pub fn put(&self, address: &str, content: &[u8]) -> Result<Stored, StoreError> {
        if !address::is_valid(address) {
            return Err(StoreError::BadAddress(address.into()));
        }
        let actual = address::of(content);
        if actual != address {
            return Err(StoreError::HashMismatch {
                address: address.into(),
                actual,
            });
        }
        let path = self.path(address);
        // "Deduplicated" only for content that is really there: size and hash checked.
        let repairing = match file_holds(&path, content.len(), address) {
            Ok(true) => return Ok(Stored::Existing),
            Ok(false) => {
                tracing::warn!(%address, "chunk on disk fails its hash; replacing it with this upload");
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        let dir = self.root.join(&address[..2]);
        if !dir.is_dir() {
            self.disk.create_dir(&dir)?;
            // The new directory's entry lives in its parent: durable only once that is synced.
            self.disk.sync_dir(&self.root)?;
        }
        let tmp = self.root.join("tmp").join(format!(
            "{address}.{}.{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let written = self
            .disk
            .write_new(&tmp, content)
            .and_then(|()| self.disk.sync_file(&tmp))
            .and_then(|()| self.disk.rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        self.disk.sync_dir(&dir)?;
        Ok(if repairing {
            Stored::Repaired
        } else {
            Stored::Created
        })
    }

    /// The size of the file under `address`, if there is one.
    pub fn size(&self, address: &str) -> Result<Option<u64>, StoreError> {
        if !address::is_valid(address) {
            return Err(StoreError::BadAddress(address.into()));
        }
        match fs::metadata(self.path(address)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn get(&self, address: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !address::is_valid(address) {
            return Err(StoreError::BadAddress(address.into()));
        }
        let path = self.path(address);
        let content = match fs::read(&path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if address::of(&content) != address {
            let _ = fs::rename(&path, path.with_extension("corrupt"));
            return Err(StoreError::Corrupt(address.into()));
        }
        Ok(Some(content))
    }

    /// Every chunk file's address and whether its content still matches it.
    pub fn verify_all(&self) -> Result<Vec<(String, bool)>, StoreError> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?.path();
            if dir.file_name().is_some_and(|n| n == "tmp") || !dir.is_dir() {
                continue;
            }
            for file in fs::read_dir(dir)? {
                let path = file?.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                if name.ends_with(".corrupt") {
                    continue;
                }
                let ok = fs::read(&path)
                    .map(|c| address::of(&c) == name)
                    .unwrap_or(false);
                out.push((name, ok));
            }
        }
        Ok(out)
    }
}

/// Whether the file at `path` has `len` bytes hashing to `address`. Hashed as a stream:
/// a duplicate upload must not hold the stored copy in memory beside its own body.
fn file_holds(path: &Path, len: usize, address: &str) -> std::io::Result<bool> {
    let file = fs::File::open(path)?;
    if file.metadata()?.len() != len as u64 {
        return Ok(false);
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file)?;
    Ok(hasher.finalize().to_hex().as_str() == address)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    use super::*;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!(
            "chunks-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ))
    }

    fn store() -> ChunkStore {
        ChunkStore::open(&temp_dir()).unwrap()
    }

    #[test]
    fn a_chunk_is_stored_once_under_its_hash_and_read_back_verified() {
        let s = store();
        let data = b"session bytes";
        let addr = address::of(data);
        assert_eq!(s.put(&addr, data).unwrap(), Stored::Created);
        assert_eq!(s.put(&addr, data).unwrap(), Stored::Existing);
        assert_eq!(s.get(&addr).unwrap().unwrap(), data);
        assert_eq!(s.verify_all().unwrap(), vec![(addr, true)]);
    }

    #[test]
    fn wrong_hashes_and_bad_addresses_are_refused_and_nothing_is_written() {
        let s = store();
        let wrong = address::of(b"other");
        assert!(matches!(
            s.put(&wrong, b"data"),
            Err(StoreError::HashMismatch { .. })
        ));
        assert!(matches!(
            s.put("../../etc/passwd", b"x"),
            Err(StoreError::BadAddress(_))
        ));
        assert!(s.verify_all().unwrap().is_empty());
    }

    #[test]
    fn a_corrupted_file_is_detected_on_read() {
        let s = store();
        let data = b"abc";
        let addr = address::of(data);
        s.put(&addr, data).unwrap();
        std::fs::write(s.path(&addr), b"abd").unwrap();
        assert!(matches!(s.get(&addr), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_corrupt_or_truncated_file_is_not_deduplicated_but_repaired_by_the_next_upload() {
        let s = store();
        let data = b"the real content";
        let addr = address::of(data);
        s.put(&addr, data).unwrap();
        for damage in [&b"the real contenX"[..], &b"the real"[..], &b""[..]] {
            std::fs::write(s.path(&addr), damage).unwrap();
            assert_eq!(s.put(&addr, data).unwrap(), Stored::Repaired);
            assert_eq!(s.get(&addr).unwrap().unwrap(), data);
        }
    }

    #[test]
    fn only_old_temp_files_are_cleaned() {
        let dir = temp_dir();
        let s = ChunkStore::open(&dir).unwrap();
        let young = s.root.join("tmp").join("in-flight");
        std::fs::write(&young, b"x").unwrap();
        let s = ChunkStore::open(&dir).unwrap();
        assert!(young.exists(), "a write in flight keeps its temp file");
        assert_eq!(s.clean_tmp(Duration::ZERO).unwrap(), 1);
        assert!(!young.exists());
    }

    /// Records each step and checks it against a model of a crash: a file's content
    /// survives only once fsynced; a directory entry (a new file, a rename, a new
    /// directory) may survive as soon as it is made but is sure to only once its directory
    /// is fsynced.
    #[derive(Debug, Default)]
    struct RecordingDisk {
        log: Mutex<Vec<String>>,
        model: Mutex<Model>,
        /// A step (by its index) to skip, to show the model catches each missing fsync.
        skip: Option<usize>,
    }

    #[derive(Debug, Default)]
    struct Model {
        /// Paths whose content is durable.
        synced: BTreeSet<PathBuf>,
        /// Entries made in a directory but not yet made durable, and durable ones.
        pending: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        durable: BTreeSet<PathBuf>,
        violations: Vec<String>,
    }

    impl Model {
        fn entry(&mut self, path: &Path) {
            let parent = path.parent().unwrap().to_path_buf();
            self.pending
                .entry(parent)
                .or_default()
                .insert(path.to_path_buf());
        }
        /// After any step: an entry that may survive a crash under the chunk directories
        /// must have durable content, or a crash leaves a chunk that fails its hash.
        fn check(&mut self, step: &str) {
            for entries in self.pending.values() {
                for p in entries {
                    let is_chunk =
                        p.extension().is_none() && p.file_name().is_some_and(|n| n.len() == 64);
                    if is_chunk && !self.synced.contains(p) {
                        self.violations.push(format!(
                            "after {step}: {} may survive unsynced",
                            p.display()
                        ));
                    }
                }
            }
        }
    }

    impl RecordingDisk {
        fn step(&self, name: &'static str, path: &Path) -> bool {
            let mut log = self.log.lock().unwrap();
            let index = log.len();
            log.push(format!(
                "{name} {}",
                path.file_name().unwrap().to_string_lossy()
            ));
            self.skip != Some(index)
        }
    }

    impl Disk for RecordingDisk {
        fn create_dir(&self, path: &Path) -> std::io::Result<()> {
            self.step("create_dir", path);
            RealDisk.create_dir(path)?;
            let mut m = self.model.lock().unwrap();
            m.entry(path);
            m.check("create_dir");
            Ok(())
        }
        fn write_new(&self, path: &Path, content: &[u8]) -> std::io::Result<()> {
            self.step("write_new", path);
            RealDisk.write_new(path, content)?;
            let mut m = self.model.lock().unwrap();
            m.entry(path);
            m.check("write_new");
            Ok(())
        }
        fn sync_file(&self, path: &Path) -> std::io::Result<()> {
            if self.step("sync_file", path) {
                RealDisk.sync_file(path)?;
                self.model.lock().unwrap().synced.insert(path.to_path_buf());
            }
            Ok(())
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            self.step("rename", to);
            RealDisk.rename(from, to)?;
            let mut m = self.model.lock().unwrap();
            if m.synced.remove(from) {
                m.synced.insert(to.to_path_buf());
            } else {
                m.synced.remove(to);
            }
            m.entry(to);
            m.check("rename");
            Ok(())
        }
        fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
            if self.step("sync_dir", path) {
                RealDisk.sync_dir(path)?;
                let mut m = self.model.lock().unwrap();
                if let Some(entries) = m.pending.remove(path) {
                    m.durable.extend(entries);
                }
            }
            Ok(())
        }
    }

    /// Is `path` sure to survive a crash: its entry and every directory's up to the root.
    fn survives(m: &Model, path: &Path, root: &Path) -> bool {
        let mut p = path;
        while p != root {
            if !m.durable.contains(p) {
                return false;
            }
            p = p.parent().unwrap();
        }
        m.synced.contains(path)
    }

    fn put_with(skip: Option<usize>) -> (Vec<String>, Vec<String>, bool) {
        let disk = Arc::new(RecordingDisk {
            skip,
            ..Default::default()
        });
        let s = ChunkStore::open_with(&temp_dir(), disk.clone()).unwrap();
        let data = b"durable content";
        let addr = address::of(data);
        assert_eq!(s.put(&addr, data).unwrap(), Stored::Created);
        let m = disk.model.lock().unwrap();
        let ok = survives(&m, &s.path(&addr), &s.root);
        (disk.log.lock().unwrap().clone(), m.violations.clone(), ok)
    }

    #[test]
    fn an_acknowledged_chunk_survives_a_crash_in_the_write_order_model() {
        let (log, violations, survives) = put_with(None);
        assert!(violations.is_empty(), "{violations:?}");
        assert!(survives, "not durable when put returned: {log:?}");
        let steps: Vec<&str> = log.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            steps,
            [
                "create_dir",
                "sync_dir",
                "write_new",
                "sync_file",
                "rename",
                "sync_dir"
            ]
        );
    }

    #[test]
    fn the_model_catches_every_missing_fsync() {
        // Each fsync left out (steps 1, 3 and 5 above) breaks the promise: the checks
        // above can fail.
        for skip in [1, 3, 5] {
            let (log, violations, survives) = put_with(Some(skip));
            assert!(
                !violations.is_empty() || !survives,
                "without {skip} the model saw no problem: {log:?}"
            );
        }
    }
}
