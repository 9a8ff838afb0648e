//! Backup and restore throughput of a 256 MiB data directory (issue 18), with `cp -a` +
//! `sync` of the same tree beside it (a copy with no hashing, no verification, no manifest).
//!
//! ```sh
//! cargo build --release -p lucid-operator --bin lucid-operator --example backup_bench
//! target/release/examples/backup_bench [WORK_DIR]   # default /var/tmp/lucid-backup-bench
//! ```
//!
//! Runs the release `lucid-operator` binary exactly as the Job does (`backup`/`restore`
//! subcommands), three times per case, and prints a Markdown table (median of three) and the
//! copier's peak RSS. Every case starts with the page cache of both trees dropped
//! (`posix_fadvise(DONTNEED)` after `sync`), so reads come from the disk, not memory.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const BIG_FILES: usize = 64;
const BIG_SIZE: usize = 4 << 20;
const SMALL_FILES: usize = 256;
const RUNS: usize = 3;

type Failure = Box<dyn std::error::Error>;

fn main() -> Result<(), Failure> {
    let work = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/var/tmp/lucid-backup-bench".into()),
    );
    let copier = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|release| release.join("lucid-operator"))
        .filter(|p| p.exists())
        .ok_or("build the release lucid-operator binary first (see the example's docs)")?;
    let _ = fs::remove_dir_all(&work);
    let source = work.join("data");
    let bytes = make_tree(&source)?;
    let mib = bytes as f64 / (1 << 20) as f64;
    println!(
        "data: {BIG_FILES} files of 4 MiB + {SMALL_FILES} small files in 16 directories = {mib:.1} MiB"
    );

    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    let backup_dir = work.join("backup");
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let _ = fs::remove_dir_all(&backup_dir);
        drop_caches(&work)?;
        times.push(run(&copier, "backup", &source, &backup_dir)?);
    }
    rows.push((
        "backup (copy, fsync, read back and verify, manifest, COMPLETE)".into(),
        times,
    ));

    let mut times = Vec::new();
    for _ in 0..RUNS {
        drop_caches(&work)?;
        times.push(run(&copier, "backup", &source, &backup_dir)?);
    }
    rows.push((
        "backup re-run over a complete backup (verify only)".into(),
        times,
    ));

    let restored = work.join("restored");
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let _ = fs::remove_dir_all(&restored);
        fs::create_dir(&restored)?;
        drop_caches(&work)?;
        times.push(run(&copier, "restore", &backup_dir, &restored)?);
    }
    rows.push(("restore into an empty directory".into(), times));

    let mut times = Vec::new();
    for _ in 0..RUNS {
        // What a failed revision leaves: 8 of the 64 big files rewritten, new files added.
        for i in 0..8 {
            fs::write(
                restored.join(format!("d{}/big-{i:02}.wt", i % 16)),
                b"migrated",
            )?;
        }
        fs::write(restored.join("d0/new-journal"), vec![1u8; 1 << 20])?;
        drop_caches(&work)?;
        times.push(run(&copier, "restore", &backup_dir, &restored)?);
    }
    rows.push((
        "restore after a failed revision (8 files changed, 1 added)".into(),
        times,
    ));

    let mut times = Vec::new();
    for _ in 0..RUNS {
        drop_caches(&work)?;
        times.push(run(&copier, "restore", &backup_dir, &restored)?);
    }
    rows.push(("restore over identical data (compare only)".into(), times));
    let copier_rss = children_peak_rss_kib();

    let copy = work.join("cp");
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let _ = fs::remove_dir_all(&copy);
        drop_caches(&work)?;
        let started = Instant::now();
        let status = Command::new("cp")
            .arg("-a")
            .arg(&source)
            .arg(&copy)
            .status()?;
        let synced = Command::new("sync").status()?;
        if !status.success() || !synced.success() {
            return Err("cp -a failed".into());
        }
        times.push(started.elapsed().as_secs_f64());
    }
    rows.push((
        "baseline: `cp -a` + `sync` (no hash, no verification)".into(),
        times,
    ));

    let all = fs::read(source.join("d0/big-00.wt"))?;
    let started = Instant::now();
    let mut hashed = 0usize;
    while hashed < 256 << 20 {
        std::hint::black_box(blake3::hash(&all));
        hashed += all.len();
    }
    let hash_rate = hashed as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64();

    println!();
    println!("| case | median of {RUNS} | runs | throughput |");
    println!("|---|---|---|---|");
    for (name, mut times) in rows {
        let runs = times
            .iter()
            .map(|t| format!("{t:.2} s"))
            .collect::<Vec<_>>()
            .join(", ");
        times.sort_by(f64::total_cmp);
        let median = times[RUNS / 2];
        println!(
            "| {name} | {median:.2} s | {runs} | {:.0} MiB/s |",
            mib / median
        );
    }
    println!();
    println!("raw blake3 (one thread, in memory): {hash_rate:.0} MiB/s");
    println!(
        "copier peak RSS (largest of all backup and restore runs): {:.1} MiB",
        copier_rss as f64 / 1024.0
    );
    fs::remove_dir_all(&work)?;
    Ok(())
}

/// Runs the copier, checks it succeeded, returns the wall time.
fn run(copier: &Path, op: &str, source: &Path, target: &Path) -> Result<f64, Failure> {
    let started = Instant::now();
    let output = Command::new(copier)
        .arg(op)
        .arg("--source")
        .arg(source)
        .arg("--target")
        .arg(target)
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(format!("{op} failed: {}", String::from_utf8_lossy(&output.stdout)).into());
    }
    eprintln!("{}", String::from_utf8_lossy(&output.stdout).trim());
    Ok(elapsed)
}

/// 64 × 4 MiB + 256 small files (1-16 KiB) spread over 16 directories; content from a
/// xorshift generator (incompressible, unlike zeros). Returns the bytes written.
fn make_tree(root: &Path) -> Result<u64, Failure> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut fill = |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
    };
    let mut total = 0u64;
    let mut buffer = vec![0u8; BIG_SIZE];
    for d in 0..16 {
        fs::create_dir_all(root.join(format!("d{d}")))?;
    }
    for i in 0..BIG_FILES {
        fill(&mut buffer);
        let mut file = fs::File::create(root.join(format!("d{}/big-{i:02}.wt", i % 16)))?;
        file.write_all(&buffer)?;
        total += BIG_SIZE as u64;
    }
    for i in 0..SMALL_FILES {
        let size = 1024 * (1 + i % 16);
        fill(&mut buffer[..size]);
        fs::write(
            root.join(format!("d{}/small-{i:03}", i % 16)),
            &buffer[..size],
        )?;
        total += size as u64;
    }
    Ok(total)
}

/// `sync`, then drop every file's pages under `root` from the page cache.
fn drop_caches(root: &Path) -> Result<(), Failure> {
    Command::new("sync").status()?;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for child in fs::read_dir(&dir)? {
            let child = child?;
            let kind = child.file_type()?;
            if kind.is_dir() {
                stack.push(child.path());
            } else if kind.is_file() {
                let file = fs::File::open(child.path())?;
                // SAFETY: plain integer arguments; the descriptor is open for the call.
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
        }
    }
    Ok(())
}

/// The largest peak RSS of the children waited for so far (KiB on Linux).
fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage writes into the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    }
}
