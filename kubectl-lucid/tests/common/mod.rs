//! Shared by the plugin's tests: fixture paths, running the binary in a clean environment,
//! fresh scratch directories, golden files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_kubectl-lucid");

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn docker_dir() -> PathBuf {
    fixtures().join("lucid/configs/docker")
}

pub fn errors_dir() -> PathBuf {
    fixtures().join("errors")
}

/// The fixture's secret values: none may ever appear on a terminal or in stderr.
pub const SECRET_VALUES: &[&str] = &[
    "fixture-mongo-password",
    "fixture-redis-password",
    "fixture-encryption-master",
    "fixture-jwt-secret-value",
    "fixture-tron-token-value",
    "fixture-url-password",
];

/// The plugin run in `dir` with only PATH set: nothing from the test's own environment
/// (a CI runner's REDIS_URL, say) may leak into ${VAR} interpolation.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run kubectl-lucid")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A new, not yet existing path under the system temp dir, unique to this test and process.
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("kubectl-lucid-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `actual` against the golden file; `LUCID_UPDATE_GOLDEN=1` rewrites it instead.
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("LUCID_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with LUCID_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    pretty_assertions::assert_eq!(expected, actual, "golden file {}", path.display());
}

/// Every file of a directory, concatenated with its name, as one golden text.
pub fn directory_text(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        out.push_str(&format!(
            "# ==> {} <==\n",
            f.file_name().unwrap().to_string_lossy()
        ));
        out.push_str(&std::fs::read_to_string(&f).unwrap());
    }
    out
}
