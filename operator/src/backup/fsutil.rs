//! File-system steps shared by backup and restore: streaming copy with hashing, durable
//! writes, and removing a tree whatever its modes.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::BackupError;
use super::manifest::{Entry, Kind};

/// Large enough that blake3's SIMD and the disk see long runs, small enough that memory
/// stays flat whatever the file size.
const BUFFER: usize = 256 * 1024;

/// A reusable buffer, so a tree of many files allocates it once.
pub struct Buffer(Vec<u8>);

impl Buffer {
    pub fn new() -> Self {
        Buffer(vec![0; BUFFER])
    }
}

/// Copies `from` into a new file `to` (created with `mode`), hashing what was read; fsyncs
/// the copy. Returns the bytes copied and their blake3.
pub fn copy_file(
    from: &Path,
    to: &Path,
    mode: u32,
    buffer: &mut Buffer,
) -> Result<(u64, String), BackupError> {
    let mut input = File::open(from).map_err(BackupError::io("open", from))?;
    let mut output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(to)
        .map_err(BackupError::io("create", to))?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    loop {
        let n = read_some(&mut input, &mut buffer.0, from)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer.0[..n]);
        output
            .write_all(&buffer.0[..n])
            .map_err(BackupError::io("write", to))?;
        size += n as u64;
    }
    output.sync_all().map_err(BackupError::io("fsync", to))?;
    drop_cached_pages(&output);
    Ok((size, hasher.finalize().to_hex().to_string()))
}

/// Asks the kernel to drop a file's (clean, just fsynced) pages from the page cache, so that
/// reading the copy back to verify it reads the disk, not the memory it was written from.
/// Only advice: where it is ignored the verification still compares, from the cache.
pub fn drop_cached_pages(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open for the
    // whole call because `file` is borrowed.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// blake3 and length of a file's content, streamed.
pub fn hash_file(path: &Path, buffer: &mut Buffer) -> Result<(u64, String), BackupError> {
    let mut input = File::open(path).map_err(BackupError::io("open", path))?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    loop {
        let n = read_some(&mut input, &mut buffer.0, path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer.0[..n]);
        size += n as u64;
    }
    Ok((size, hasher.finalize().to_hex().to_string()))
}

fn read_some(input: &mut File, buffer: &mut [u8], path: &Path) -> Result<usize, BackupError> {
    loop {
        match input.read(buffer) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BackupError::io("read", path)(e)),
        }
    }
}

pub fn symlink_hash(target: &str) -> String {
    blake3::hash(target.as_bytes()).to_hex().to_string()
}

/// fsyncs a directory, so the names created, renamed or removed in it are durable.
pub fn sync_dir(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(BackupError::io("fsync the directory", path))
}

/// Flushes the whole file system holding `path` (syncfs): after a restore, the mode changes
/// too are on disk, which fsyncing files and directories alone does not promise.
pub fn sync_filesystem(path: &Path) -> Result<(), BackupError> {
    use std::os::fd::AsRawFd;
    let dir = File::open(path).map_err(BackupError::io("open", path))?;
    // SAFETY: syncfs only reads its descriptor argument, open for the whole call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(BackupError::io("sync the file system of", path)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the whole new one:
/// temp file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let temp = temp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(BackupError::io("create", &temp))?;
    file.write_all(bytes)
        .map_err(BackupError::io("write", &temp))?;
    file.sync_all().map_err(BackupError::io("fsync", &temp))?;
    drop(file);
    fs::rename(&temp, path).map_err(BackupError::io("rename into place", path))?;
    sync_dir(parent(path))
}

/// `<dir>/.<name>.lucid-tmp`: beside the file, so the rename stays on one file system.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent(path).join(format!(".{name}.lucid-tmp"))
}

pub fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Removes `path` and everything under it without following symlinks, first giving each
/// directory back its owner's write and search bits (a read-only directory would refuse
/// the removal of what it holds). A path already gone is fine.
pub fn remove_tree(path: &Path) -> Result<(), BackupError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackupError::io("inspect", path)(e)),
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(BackupError::io("remove", path)(e))
            }
            _ => Ok(()),
        };
    }
    make_owner_writable(path, meta.permissions().mode())?;
    for child in fs::read_dir(path).map_err(BackupError::io("list", path))? {
        let child = child.map_err(BackupError::io("list", path))?;
        remove_tree(&child.path())?;
    }
    match fs::remove_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(BackupError::io("remove", path)(e))
        }
        _ => Ok(()),
    }
}

/// Gives a directory its owner's read, write and search bits when it lacks them.
pub fn make_owner_writable(path: &Path, mode: u32) -> Result<(), BackupError> {
    if mode & 0o700 == 0o700 {
        return Ok(());
    }
    set_mode(path, (mode & 0o7777) | 0o700)
}

/// chmod (never on a symlink: it would change the symlink's target).
pub fn set_mode(path: &Path, mode: u32) -> Result<(), BackupError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(BackupError::io("set the mode of", path))
}

pub fn mode_of(meta: &fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

/// The relative manifest path of `name` under `dir` (`""` is the root).
pub fn join_relative(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The sorted names in a directory, as UTF-8.
pub fn sorted_names(path: &Path) -> Result<Vec<String>, BackupError> {
    let mut names = Vec::new();
    for child in fs::read_dir(path).map_err(BackupError::io("list", path))? {
        let child = child.map_err(BackupError::io("list", path))?;
        let name = child
            .file_name()
            .into_string()
            .map_err(|_| BackupError::NotUtf8(child.path()))?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// What is at `path` now, as a manifest entry (the file's content hashed), or None for a
/// socket or FIFO. Used to verify a tree after copying it.
pub fn describe(
    path: &Path,
    relative: &str,
    buffer: &mut Buffer,
) -> Result<Option<Entry>, BackupError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = fs::symlink_metadata(path).map_err(BackupError::io("inspect", path))?;
    let kind = meta.file_type();
    let mode = mode_of(&meta);
    let entry = |kind, size, blake3, target| Entry {
        path: relative.to_string(),
        kind,
        size,
        mode,
        blake3,
        target,
    };
    if kind.is_dir() {
        Ok(Some(entry(Kind::Dir, 0, String::new(), None)))
    } else if kind.is_symlink() {
        let target = read_link(path)?;
        Ok(Some(entry(
            Kind::Symlink,
            target.len() as u64,
            symlink_hash(&target),
            Some(target),
        )))
    } else if kind.is_file() {
        let (size, hash) = hash_file(path, buffer)?;
        Ok(Some(entry(Kind::File, size, hash, None)))
    } else if kind.is_block_device() || kind.is_char_device() {
        Err(BackupError::Device(path.to_path_buf()))
    } else {
        Ok(None)
    }
}

pub fn read_link(path: &Path) -> Result<String, BackupError> {
    fs::read_link(path)
        .map_err(BackupError::io("read the symlink", path))?
        .into_os_string()
        .into_string()
        .map_err(|_| BackupError::NotUtf8(path.to_path_buf()))
}
