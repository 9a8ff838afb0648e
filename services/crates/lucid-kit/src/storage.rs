//! The template's storage checks: `/app/data` and `/app/logs` must exist and be writable by
//! the service user (65532). If not, the service runs degraded and says how to fix it.

use std::path::Path;

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct StorageStatus {
    pub degraded: bool,
    pub messages: Vec<String>,
}

pub fn check(paths: &[&Path]) -> StorageStatus {
    let mut status = StorageStatus::default();
    for path in paths {
        if !path.is_dir() {
            status.messages.push(format!(
                "{} does not exist: mount a volume there (LucidService storage) or create it owned by 65532:65532",
                path.display()
            ));
            continue;
        }
        let probe = path.join(format!(".write-check-{}", std::process::id()));
        match std::fs::write(&probe, b"ok") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
            }
            Err(e) => status.messages.push(format!(
                "{} is not writable ({e}): chown -R 65532:65532 it, or set the pod's fsGroup to 65532",
                path.display()
            )),
        }
    }
    status.degraded = !status.messages.is_empty();
    for m in &status.messages {
        tracing::warn!(message = %m, "storage degraded");
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_degrades_with_an_actionable_message() {
        let ok = std::env::temp_dir();
        let s = check(&[&ok, Path::new("/definitely/not/here")]);
        assert!(s.degraded);
        assert_eq!(s.messages.len(), 1);
        assert!(s.messages[0].contains("65532"));
    }
}
