//! Content-addressed chunk files under `<data>/chunks/<2 hex>/<64 hex>`.
//!
//! A chunk is accepted only if its blake3 equals its address; it is written to a temp file,
//! fsynced, renamed into place and the directory fsynced, so after any crash a chunk file
//! is either whole and correct or absent. Reads verify the hash again.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// The same content was already there (deduplicated).
    Existing,
}

#[derive(Clone, Debug)]
pub struct ChunkStore {
    root: PathBuf,
}

impl ChunkStore {
    /// Opens the store, removing temp files a crash left behind.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("chunks");
        fs::create_dir_all(root.join("tmp"))?;
        for entry in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(Self { root })
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
        if path.exists() {
            return Ok(Stored::Existing);
        }
        let dir = path.parent().expect("chunk paths have a parent");
        fs::create_dir_all(dir)?;
        let tmp = self.root.join("tmp").join(format!(
            "{address}.{}.{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut file = File::create(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()?;
        Ok(Stored::Created)
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
                let ok = fs::read(&path)
                    .map(|c| address::of(&c) == name)
                    .unwrap_or(false);
                out.push((name, ok));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ChunkStore {
        let dir = std::env::temp_dir().join(format!(
            "chunks-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        ChunkStore::open(&dir).unwrap()
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
}
