use crate::render::RenderError;
use crate::status::Reason;

/// Why a reconcile failed. The controller retries these with backoff; problems the user must
/// fix are reported as conditions instead and are not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed in one step of the reconcile.
    #[error("the Kubernetes API call failed while {}: {source}", step.doing())]
    Api {
        step: Step,
        #[source]
        source: kube::Error,
    },
    /// A call to the API server failed outside the reconcile's steps.
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

/// The step of a service's reconcile a call to the API server failed in. One category that
/// the metrics (`reconcile_failures_total{reason}`) and the condition shown on the object
/// both use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Reading the ConfigMaps and Secrets the service names.
    ReadConfig,
    /// Reading, recording or pruning the revisions kept to roll back to.
    Revisions,
    /// Backing up or restoring a stateful service's data around an update.
    DataProtection,
    /// Applying the children.
    Apply,
    /// Deleting children the spec no longer asks for.
    DeleteOrphans,
    /// Writing the status (the one failure that cannot be shown on the object).
    WriteStatus,
}

impl Step {
    /// The reason a failure in this step is shown and counted under.
    pub fn reason(self) -> Reason {
        match self {
            Step::ReadConfig => Reason::ReadConfigFailed,
            Step::Revisions => Reason::RevisionFailed,
            Step::DataProtection => Reason::DataProtectionFailed,
            Step::Apply => Reason::ApplyFailed,
            Step::DeleteOrphans => Reason::DeleteFailed,
            Step::WriteStatus => Reason::StatusWriteFailed,
        }
    }

    fn doing(self) -> &'static str {
        match self {
            Step::ReadConfig => "reading the ConfigMaps and Secrets the service names",
            Step::Revisions => "keeping the revisions to roll back to",
            Step::DataProtection => "protecting the service's data",
            Step::Apply => "applying the children",
            Step::DeleteOrphans => "deleting children the spec no longer asks for",
            Step::WriteStatus => "writing the status",
        }
    }
}

impl Error {
    /// The category metrics count it under (controller-rs's `metric_label`): for a failed
    /// API call, the reason of the step it failed in, the one its condition shows.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Api { step, .. } => step.reason().as_str(),
            Error::Kube(_) => Reason::ApiCallFailed.as_str(),
            Error::Startup(_) => "Startup",
            Error::Render(_) => "RenderFailed",
            Error::NotLeader => "NotLeader",
            Error::Revision(_) => Reason::RevisionFailed.as_str(),
        }
    }

    /// This error, as failed in `step` when it is an API call's.
    pub fn at(self, step: Step) -> Self {
        match self {
            Error::Kube(source) => Error::Api { step, source },
            other => other,
        }
    }
}

/// `.at(step)` on any result whose error is (or becomes) an [`Error`].
pub trait AtStep<T> {
    fn at(self, step: Step) -> Result<T, Error>;
}

impl<T, E: Into<Error>> AtStep<T> for Result<T, E> {
    fn at(self, step: Step) -> Result<T, Error> {
        self.map_err(|e| e.into().at(step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_failure() -> kube::Error {
        kube::Error::SerdeError(serde_json::from_str::<()>("not json").unwrap_err())
    }

    #[test]
    fn a_failed_call_is_counted_and_shown_under_the_step_it_failed_in() {
        let failed: Result<(), kube::Error> = Err(api_failure());
        let error = failed.at(Step::ReadConfig).unwrap_err();
        assert_eq!(error.metric_label(), "ReadConfigFailed");
        assert!(
            error.to_string().contains("reading the ConfigMaps"),
            "{error}"
        );
        // Tagged once: the step it failed in stands.
        assert_eq!(error.at(Step::Apply).metric_label(), "ReadConfigFailed");
        // Outside a step, and not an API call: their own categories, never "Kube".
        assert_eq!(Error::Kube(api_failure()).metric_label(), "ApiCallFailed");
        assert_eq!(Error::NotLeader.at(Step::Apply).metric_label(), "NotLeader");
        for step in [
            Step::ReadConfig,
            Step::Revisions,
            Step::DataProtection,
            Step::Apply,
            Step::DeleteOrphans,
            Step::WriteStatus,
        ] {
            let label = Error::Kube(api_failure()).at(step).metric_label();
            assert_eq!(crate::status::Reason::parse(label), Some(step.reason()));
        }
    }
}
