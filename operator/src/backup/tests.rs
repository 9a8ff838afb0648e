use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use pretty_assertions::assert_eq;

use super::*;

/// What a tree holds, read independently of the code under test: path → (kind, mode,
/// content or symlink target).
type Snapshot = BTreeMap<String, (&'static str, u32, Vec<u8>)>;

fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
    for child in fs::read_dir(dir).unwrap() {
        let path = child.unwrap().path();
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            out.insert(
                relative,
                ("symlink", 0, target.to_str().unwrap().as_bytes().to_vec()),
            );
        } else if meta.is_dir() {
            out.insert(relative, ("dir", mode, Vec::new()));
            walk(root, &path, out);
        } else {
            out.insert(relative, ("file", mode, fs::read(&path).unwrap()));
        }
    }
}

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Nested directories, an empty file, a large file (several buffers), unusual modes, a
/// read-only directory, relative, absolute and dangling symlinks.
fn sample_tree(root: &Path) {
    write(&root.join("journal/0001.wt"), &vec![7u8; 700_000], 0o600);
    write(&root.join("journal/nested/deep/x.bin"), b"deep", 0o640);
    write(&root.join("empty"), b"", 0o644);
    write(&root.join("run.sh"), b"#!/bin/sh\n", 0o750);
    write(&root.join("sealed/inside"), b"kept", 0o444);
    fs::set_permissions(root.join("sealed"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(
        root.join("journal/nested"),
        fs::Permissions::from_mode(0o2750),
    )
    .unwrap();
    symlink("journal/0001.wt", root.join("current")).unwrap();
    symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    symlink("journal", root.join("journal-link")).unwrap();
}

struct Dirs {
    _temp: tempfile::TempDir,
    data: PathBuf,
    backup: PathBuf,
}

fn dirs() -> Dirs {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let backup = temp.path().join("backup");
    fs::create_dir(&data).unwrap();
    fs::create_dir(&backup).unwrap();
    sample_tree(&data);
    Dirs {
        data,
        backup,
        _temp: temp,
    }
}

#[test]
fn a_backup_restores_into_an_empty_directory_as_the_same_tree() {
    let d = dirs();
    let before = snapshot(&d.data);
    let made = backup(&d.data, &d.backup).unwrap();
    assert_eq!(made.op, "backup");
    assert_eq!(made.files, 5);
    assert_eq!(made.bytes, 700_000 + 4 + 10 + 4);
    assert!(!made.already_complete);
    assert_eq!(
        fs::read_to_string(d.backup.join(COMPLETE_FILE))
            .unwrap()
            .trim(),
        made.root_hash
    );

    let fresh = d.backup.parent().unwrap().join("fresh");
    let restored = restore(&d.backup, &fresh).unwrap();
    assert_eq!(restored.root_hash, made.root_hash);
    assert_eq!(snapshot(&fresh), before);
}

#[test]
fn the_manifest_lists_every_path_with_its_kind_size_mode_and_hash() {
    let d = dirs();
    backup(&d.data, &d.backup).unwrap();
    let manifest = Manifest::read(&d.backup.join(MANIFEST_FILE)).unwrap();
    let by_path: BTreeMap<&str, &Entry> = manifest
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
    let run = by_path["run.sh"];
    assert_eq!((run.kind, run.size, run.mode), (Kind::File, 10, 0o750));
    assert_eq!(
        run.blake3,
        blake3::hash(b"#!/bin/sh\n").to_hex().to_string()
    );
    assert_eq!(by_path["journal/nested"].mode, 0o2750);
    assert_eq!(by_path["sealed"].kind, Kind::Dir);
    assert_eq!(
        by_path["current"].target.as_deref(),
        Some("journal/0001.wt")
    );
    // Symlinks are recorded, not followed: nothing under journal-link.
    assert!(!by_path.keys().any(|p| p.starts_with("journal-link/")));
    // The JSON spells modes in octal.
    let text = fs::read_to_string(d.backup.join(MANIFEST_FILE)).unwrap();
    assert!(text.contains("\"mode\": \"0750\""), "{text}");
}

#[test]
fn restore_makes_the_data_byte_identical_to_the_backup_whatever_the_failed_revision_did() {
    let d = dirs();
    let before = snapshot(&d.data);
    backup(&d.data, &d.backup).unwrap();

    // What a failed release might do: migrate files in place, add new ones, delete,
    // change modes, turn a directory into a file and a file into a symlink.
    write(&d.data.join("journal/0001.wt"), b"migrated", 0o600);
    write(&d.data.join("journal/0002.wt"), b"new journal", 0o600);
    write(&d.data.join("v2/schema/x"), b"new dir", 0o600);
    fs::set_permissions(d.data.join("run.sh"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::remove_file(d.data.join("empty")).unwrap();
    fs::set_permissions(d.data.join("sealed"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_dir_all(d.data.join("sealed")).unwrap();
    fs::write(d.data.join("sealed"), b"now a file").unwrap();
    fs::remove_file(d.data.join("journal/nested/deep/x.bin")).unwrap();
    symlink("/etc/passwd", d.data.join("journal/nested/deep/x.bin")).unwrap();
    fs::remove_file(d.data.join("current")).unwrap();
    fs::create_dir(d.data.join("current")).unwrap();
    assert_ne!(snapshot(&d.data), before);

    let restored = restore(&d.backup, &d.data).unwrap();
    assert_eq!(snapshot(&d.data), before);
    assert!(restored.written >= 4, "{restored:?}");
    assert!(restored.removed >= 4, "{restored:?}");
}

#[test]
fn a_restore_run_again_changes_nothing_and_a_killed_one_converges() {
    let d = dirs();
    let before = snapshot(&d.data);
    backup(&d.data, &d.backup).unwrap();
    write(&d.data.join("journal/0001.wt"), b"migrated", 0o600);
    restore(&d.backup, &d.data).unwrap();

    let again = restore(&d.backup, &d.data).unwrap();
    assert_eq!((again.written, again.removed), (0, 0));
    assert_eq!(snapshot(&d.data), before);

    // Killed half-way: a temp file left beside a file it was replacing, one file still the
    // failed revision's, a directory left 0700 instead of its mode.
    write(
        &d.data.join("journal/.0001.wt.lucid-tmp"),
        &vec![7u8; 1000],
        0o600,
    );
    write(&d.data.join("run.sh"), b"half", 0o600);
    fs::set_permissions(d.data.join("sealed"), fs::Permissions::from_mode(0o700)).unwrap();
    let resumed = restore(&d.backup, &d.data).unwrap();
    assert_eq!((resumed.written, resumed.removed), (1, 1));
    assert_eq!(snapshot(&d.data), before);
}

#[test]
fn a_backup_without_complete_is_wiped_and_made_again() {
    let d = dirs();
    backup(&d.data, &d.backup).unwrap();
    // Killed before COMPLETE: a stale extra file, a truncated copy, a temp manifest.
    fs::remove_file(d.backup.join(COMPLETE_FILE)).unwrap();
    fs::write(d.backup.join("data/stale"), b"from an older attempt").unwrap();
    fs::write(d.backup.join("data/journal/0001.wt"), b"trunc").unwrap();
    fs::write(d.backup.join(".MANIFEST.json.lucid-tmp"), b"{").unwrap();
    // Something the volume came with stays.
    fs::create_dir(d.backup.join("lost+found")).unwrap();

    let made = backup(&d.data, &d.backup).unwrap();
    assert!(!made.already_complete);
    assert!(!d.backup.join("data/stale").exists());
    assert!(!d.backup.join(".MANIFEST.json.lucid-tmp").exists());
    assert!(d.backup.join("lost+found").is_dir());
    assert_eq!(
        fs::metadata(d.backup.join("data/journal/0001.wt"))
            .unwrap()
            .len(),
        700_000
    );
    let fresh = d.backup.parent().unwrap().join("fresh");
    restore(&d.backup, &fresh).unwrap();
    assert_eq!(snapshot(&fresh), snapshot(&d.data));
}

#[test]
fn a_complete_backup_is_verified_and_left_as_it_is() {
    let d = dirs();
    let first = backup(&d.data, &d.backup).unwrap();
    let inode = fs::metadata(d.backup.join("data/journal/0001.wt"))
        .unwrap()
        .ino();
    // The data changed since (the new revision ran): the backup must keep the old state.
    write(&d.data.join("journal/0001.wt"), b"migrated", 0o600);

    let second = backup(&d.data, &d.backup).unwrap();
    assert!(second.already_complete);
    assert_eq!(second.root_hash, first.root_hash);
    assert_eq!(
        fs::metadata(d.backup.join("data/journal/0001.wt"))
            .unwrap()
            .ino(),
        inode
    );
}

#[test]
fn a_damaged_backup_is_refused_before_the_data_is_touched() {
    let d = dirs();
    backup(&d.data, &d.backup).unwrap();
    let mut bytes = fs::read(d.backup.join("data/journal/0001.wt")).unwrap();
    bytes[123_456] ^= 1;
    fs::write(d.backup.join("data/journal/0001.wt"), &bytes).unwrap();
    write(&d.data.join("journal/0002.wt"), b"new revision's", 0o600);
    let before = snapshot(&d.data);

    let error = restore(&d.backup, &d.data).unwrap_err();
    assert!(matches!(error, BackupError::Damaged { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("data/journal/0001.wt"), "{message}");
    assert!(message.contains("blake3"), "{message}");
    assert_eq!(snapshot(&d.data), before);

    // A re-run backup does not paper over it either.
    let error = backup(&d.data, &d.backup).unwrap_err();
    assert!(matches!(error, BackupError::Damaged { .. }), "{error:?}");
}

#[test]
fn an_edited_manifest_or_marker_is_refused() {
    let d = dirs();
    backup(&d.data, &d.backup).unwrap();
    let path = d.backup.join(MANIFEST_FILE);
    let original = fs::read_to_string(&path).unwrap();

    fs::write(&path, original.replace("\"0750\"", "\"0755\"")).unwrap();
    let error = restore(&d.backup, &d.data).unwrap_err().to_string();
    assert!(error.contains("root hash"), "{error}");

    // A consistent manifest (hash recomputed) that escapes the target is still refused.
    let mut manifest: Manifest = serde_json::from_str(&original).unwrap();
    manifest.entries.push(Entry {
        path: "../escape".into(),
        kind: Kind::File,
        size: 0,
        mode: 0o600,
        blake3: blake3::hash(b"").to_hex().to_string(),
        target: None,
    });
    let manifest = Manifest::new(manifest.entries);
    fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    fs::write(d.backup.join(COMPLETE_FILE), &manifest.root_hash).unwrap();
    let error = restore(&d.backup, &d.data).unwrap_err().to_string();
    assert!(error.contains("not a plain relative path"), "{error}");

    fs::write(&path, &original).unwrap();
    fs::write(d.backup.join(COMPLETE_FILE), "0000\n").unwrap();
    let error = restore(&d.backup, &d.data).unwrap_err().to_string();
    assert!(error.contains("COMPLETE names root hash 0000"), "{error}");
}

#[test]
fn restore_needs_the_complete_marker() {
    let d = dirs();
    backup(&d.data, &d.backup).unwrap();
    fs::remove_file(d.backup.join(COMPLETE_FILE)).unwrap();
    let before = snapshot(&d.data);
    let error = restore(&d.backup, &d.data).unwrap_err();
    assert!(matches!(error, BackupError::Incomplete(_)), "{error:?}");
    assert!(error.to_string().contains("never finished"));
    assert_eq!(snapshot(&d.data), before);
}

#[test]
fn a_missing_source_is_named() {
    let d = dirs();
    let missing = d.data.join("nope");
    let error = backup(&missing, &d.backup).unwrap_err();
    assert!(matches!(error, BackupError::SourceMissing(_)), "{error:?}");
    assert!(error.to_string().contains(&*missing.to_string_lossy()));
    let file = d.data.join("empty");
    assert!(matches!(
        backup(&file, &d.backup).unwrap_err(),
        BackupError::NotADirectory(_)
    ));
}

#[test]
fn sockets_are_skipped_and_lost_and_found_left_alone() {
    let d = dirs();
    let _socket = std::os::unix::net::UnixListener::bind(d.data.join("mongod.sock")).unwrap();
    fs::create_dir(d.data.join("lost+found")).unwrap();
    write(&d.data.join("lost+found/#1234"), b"fsck found this", 0o600);
    let made = backup(&d.data, &d.backup).unwrap();
    assert_eq!(made.skipped, 1);
    assert!(!d.backup.join("data/lost+found").exists());

    // Restore removes the socket (not in the backup) but never lost+found.
    restore(&d.backup, &d.data).unwrap();
    assert!(!d.data.join("mongod.sock").exists());
    assert!(d.data.join("lost+found/#1234").exists());
}

#[test]
fn a_full_device_is_reported_as_no_space() {
    let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
    let error = BackupError::io("write", "/backup/data/x")(full);
    assert!(matches!(error, BackupError::NoSpace { .. }), "{error:?}");
    assert_eq!(error.reason(), "NoSpace");
}

/// A real full file system: a 1 MiB tmpfs (needs root, which the development machine and CI
/// have; elsewhere the test says so and checks nothing).
#[test]
fn a_backup_claim_too_small_fails_with_no_space_and_how_much_is_needed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let d = dirs();
    let small = d.backup.parent().unwrap().join("small");
    fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    let result = backup(&d.data, &small);
    let _ = std::process::Command::new("umount").arg(&small).status();
    let error = result.unwrap_err();
    match &error {
        BackupError::NoSpace { needed, .. } => assert_eq!(*needed, 700_000 + 4 + 10 + 4),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(error.to_string().contains("no space left"), "{error}");
}

#[test]
fn the_summary_line_is_json_with_the_fields_the_operator_reads() {
    let d = dirs();
    let result = backup(&d.data, &d.backup);
    let line = cli::line("backup", &result);
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["op"], "backup");
    assert_eq!(value["files"], 5);
    assert_eq!(value["bytes"], 700_018);
    assert_eq!(
        value["rootHash"],
        result.as_ref().unwrap().root_hash.as_str()
    );
    assert!(value["seconds"].is_f64());
    let parsed: Summary = serde_json::from_str(&line).unwrap();
    assert_eq!(&parsed, result.as_ref().unwrap());

    let error = restore(&d.data, &d.backup);
    let value: serde_json::Value = serde_json::from_str(&cli::line("restore", &error)).unwrap();
    assert_eq!(value["op"], "restore");
    assert_eq!(value["reason"], "BackupIncomplete");
    assert!(value["error"].as_str().unwrap().contains("COMPLETE"));
}

#[test]
fn the_termination_message_is_written_only_where_the_file_exists() {
    let temp = tempfile::tempdir().unwrap();
    let log = temp.path().join("termination-log");
    assert!(cli::write_termination_message(&log, "{}").is_err());
    assert!(!log.exists());
    fs::write(&log, "old, longer content").unwrap();
    cli::write_termination_message(&log, "{\"op\":\"backup\"}").unwrap();
    assert_eq!(fs::read_to_string(&log).unwrap(), "{\"op\":\"backup\"}");
    let long = "é".repeat(3000);
    cli::write_termination_message(&log, &long).unwrap();
    assert!(fs::read_to_string(&log).unwrap().len() <= 4096);
}

#[test]
fn arguments_are_checked() {
    let error = cli::run("backup", ["--source".to_string()]).unwrap_err();
    assert!(
        error.to_string().contains("--source needs a directory"),
        "{error}"
    );
    let error = cli::run("backup", ["--from=/x".to_string()]).unwrap_err();
    assert!(
        error.to_string().contains("unknown argument \"--from\""),
        "{error}"
    );
    let error = cli::run("restore", ["--source=/x".to_string()]).unwrap_err();
    assert!(error.to_string().contains("both needed"), "{error}");
}
