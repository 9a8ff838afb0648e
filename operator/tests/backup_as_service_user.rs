//! The copier as the Job runs it: the real binary, as the service's user (65532) with no
//! capabilities, so modes are enforced as in the pod (a root test process reads anything).
//! Needs root to switch user (`setpriv`, util-linux), as the development machine and CI have.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Output};

const USER: &str = "65532";

fn as_service_user(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid", USER, "--regid", USER, "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(env!("CARGO_BIN_EXE_lucid-operator"))
        .args(args)
        .output()
        .expect("setpriv runs")
}

/// `find -printf`-like listing: mode, kind and content of every path.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for child in fs::read_dir(&dir).unwrap() {
            let path = child.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".into()
            } else {
                format!("{:?}", String::from_utf8_lossy(&fs::read(&path).unwrap()))
            };
            out.push(format!("{relative} {mode:o} {what}"));
        }
    }
    out.sort();
    out
}

fn chown_tree(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", &format!("{USER}:{USER}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn backup_and_restore_work_as_the_unprivileged_service_user_with_read_only_modes() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching to the service's user needs root");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let data = temp.path().join("data");
    let backup = temp.path().join("backup");
    fs::create_dir_all(data.join("db/journal")).unwrap();
    fs::create_dir(&backup).unwrap();
    fs::write(data.join("db/journal/0001"), vec![3u8; 300_000]).unwrap();
    fs::write(data.join("db/VERSION"), "7\n").unwrap();
    fs::set_permissions(data.join("db/VERSION"), fs::Permissions::from_mode(0o444)).unwrap();
    symlink("db/journal/0001", data.join("current")).unwrap();
    chown_tree(temp.path());
    // Read-only directory, as a database may leave its files.
    fs::set_permissions(data.join("db"), fs::Permissions::from_mode(0o555)).unwrap();
    let before = listing(&data);

    let made = as_service_user(&[
        "backup",
        "--source",
        data.to_str().unwrap(),
        "--target",
        backup.to_str().unwrap(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    assert_eq!(summary["op"], "backup");
    assert_eq!(summary["files"], 2);

    // The failed revision, running as the same user, migrates in place.
    let migrate = Command::new("setpriv")
        .args([
            "--reuid",
            USER,
            "--regid",
            USER,
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!(
            "cd {} && chmod 755 db && chmod 644 db/VERSION && echo 8 > db/VERSION && \
             echo new > db/journal/0002 && rm current && chmod 500 db",
            data.display()
        ))
        .status()
        .unwrap();
    assert!(migrate.success());
    assert_ne!(listing(&data), before);

    let restored = as_service_user(&[
        "restore",
        "--source",
        backup.to_str().unwrap(),
        "--target",
        data.to_str().unwrap(),
    ]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(listing(&data), before);
    let summary: serde_json::Value = serde_json::from_slice(&restored.stdout).unwrap();
    assert_eq!(
        summary["rootHash"],
        serde_json::from_slice::<serde_json::Value>(&made.stdout).unwrap()["rootHash"]
    );

    // A failure exits non-zero with one JSON line naming the path.
    let missing = data.join("missing");
    let failed = as_service_user(&[
        "backup",
        "--source",
        missing.to_str().unwrap(),
        "--target",
        backup.to_str().unwrap(),
    ]);
    assert!(!failed.status.success());
    let line: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(line["reason"], "SourceMissing");
    assert_eq!(line["path"], missing.to_str().unwrap());
}
