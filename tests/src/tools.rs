//! Where the harness finds the repository, its install scripts' outputs, kubectl and Helm.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// What an install script prints last (a directory), running it if `var` is unset.
pub fn script_output(var: &str, script: &Path, envs: &[(&str, &str)]) -> PathBuf {
    if let Ok(dir) = std::env::var(var) {
        return PathBuf::from(dir);
    }
    let out = Command::new("bash")
        .arg(script)
        .envs(envs.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(out.status.success(), "{} failed", script.display());
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("the script prints a directory")
            .trim(),
    )
}

/// `kubectl` or `helm`: `$var` if set, else what `tests/harness/install-tools.sh` installs.
pub fn tool(name: &str, var: &str) -> PathBuf {
    if let Ok(path) = std::env::var(var) {
        return PathBuf::from(path);
    }
    script_output(
        "LUCID_TOOLS",
        &repo().join("tests/harness/install-tools.sh"),
        &[],
    )
    .join(name)
}
