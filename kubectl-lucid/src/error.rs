//! One error type for the plugin. Every variant reads as a sentence naming what to fix; none
//! carries a configuration value, so a secret can never reach the terminal through an error.

use std::fmt;
use std::path::PathBuf;

/// A problem in one input file, at one key (`services.api.ports[0]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(
        file: impl fmt::Display,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_string(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", list(.0))]
    Invalid(Vec<Problem>),
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} exists and is not empty: choose a new directory or remove it (nothing was written)"
    )]
    OutputExists(PathBuf),
    #[error("cannot serialise {what}: {message}")]
    Serialise { what: String, message: String },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the graph has errors: {0} (see above)")]
    Plan(usize),
    #[error("timed out after {0}s waiting for every phase and service to be Ready")]
    Timeout(u64),
    #[error("{0}")]
    Degraded(String),
    #[error("{0}")]
    Usage(String),
}

fn list(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    format!(
        "{} problem{} found, nothing was written:\n{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        lines.join("\n")
    )
}

impl Error {
    /// Exit codes: 1 for a failed command or a Degraded rollout, 3 for a timeout (2 is an
    /// import that wrote everything but could not carry some compose settings over).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Timeout(_) => 3,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
