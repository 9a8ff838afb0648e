use crate::render::RenderError;

/// Why a reconcile failed. The controller retries these with backoff; problems the user must
/// fix are reported as conditions instead and are not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("the operator could not start: {0}")]
    Startup(&'static str),
    #[error("could not render the objects: {0}")]
    Render(#[from] RenderError),
    /// This replica does not hold the Lease (or its renew deadline passed): it must not write.
    #[error("not the leader")]
    NotLeader,
    /// A revision to roll back to could not be written or read back.
    #[error("revision: {0}")]
    Revision(String),
}

impl Error {
    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "Kube",
            Error::Startup(_) => "Startup",
            Error::Render(_) => "Render",
            Error::NotLeader => "NotLeader",
            Error::Revision(_) => "Revision",
        }
    }
}
