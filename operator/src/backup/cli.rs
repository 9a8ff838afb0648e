//! The `backup` and `restore` subcommands: arguments in, one JSON line out (stdout and the
//! Kubernetes termination message), exit status non-zero on failure.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{BackupError, Summary};

/// Where the kubelet reads a container's termination message (`terminationMessagePath`).
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// The kubelet keeps at most 4096 bytes of a termination message.
const TERMINATION_LIMIT: usize = 4096;

/// The usage line, also the error when the arguments are wrong.
pub const USAGE: &str = "usage: lucid-operator backup --source DIR --target DIR | \
                         lucid-operator restore --source DIR --target DIR";

/// Runs `op` (`backup` or `restore`) with the arguments after it. The JSON line is printed
/// either way; the error is returned too, so `main` prints it to stderr and exits 1.
pub fn run(op: &str, args: impl IntoIterator<Item = String>) -> Result<Summary, BackupError> {
    let result = parse(args).and_then(|(source, target)| match op {
        "backup" => super::backup(&source, &target),
        "restore" => super::restore(&source, &target),
        other => Err(BackupError::Usage(format!(
            "unknown operation {other:?}; {USAGE}"
        ))),
    });
    report(op, &result, Path::new(TERMINATION_LOG));
    result
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<(PathBuf, PathBuf), BackupError> {
    let (mut source, mut target) = (None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        let slot = match flag.as_str() {
            "--source" => &mut source,
            "--target" => &mut target,
            _ => {
                return Err(BackupError::Usage(format!(
                    "unknown argument {flag:?}; {USAGE}"
                )));
            }
        };
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| BackupError::Usage(format!("{flag} needs a directory; {USAGE}")))?;
        *slot = Some(PathBuf::from(value));
    }
    match (source, target) {
        (Some(source), Some(target)) => Ok((source, target)),
        _ => Err(BackupError::Usage(format!(
            "--source and --target are both needed; {USAGE}"
        ))),
    }
}

/// The JSON line for a result.
pub fn line(op: &str, result: &Result<Summary, BackupError>) -> String {
    let value = match result {
        Ok(summary) => serde_json::to_value(summary).unwrap_or_default(),
        Err(error) => serde_json::json!({
            "op": op,
            "error": error.to_string(),
            "reason": error.reason(),
            "path": error.path().map(|p| p.display().to_string()),
        }),
    };
    value.to_string()
}

/// Prints the line and writes it to `termination_log` when that file exists and is
/// writable (in a pod the kubelet creates it; elsewhere it is skipped).
fn report(op: &str, result: &Result<Summary, BackupError>, termination_log: &Path) {
    let line = line(op, result);
    println!("{line}");
    let _ = write_termination_message(termination_log, &line);
}

pub fn write_termination_message(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    let mut end = line.len().min(TERMINATION_LIMIT);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    file.write_all(&line.as_bytes()[..end])?;
    file.sync_all()
}
