//! Every reason the operator writes in a condition, spelled once: the operator writes them
//! and `kubectl lucid` reads them back through the same enum. CamelCase, as Kubernetes
//! reasons are.

/// Why a LucidService or LucidPhase is in its state (the conditions' `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    // Ready, and the Progressing condition once ready.
    RolloutComplete,
    AllServicesReady,
    // Progressing.
    RollingOut,
    BackingUp,
    RollingBack,
    // Waiting: held back on purpose or by the order.
    WaitingForPhase,
    WaitingForDependency,
    PhasePaused,
    Paused,
    NotYetObserved,
    // Degraded: the spec, or the objects it names, must change.
    InvalidSpec,
    InvalidObject,
    PhaseNotFound,
    DependencyNotFound,
    PhaseDependencyNotFound,
    PhaseCycle,
    DependencyCycle,
    MissingConfigMap,
    MissingSecret,
    MissingKey,
    RevisionNotFound,
    ApplyRejected,
    // Degraded: the new revision cannot run (what pods and the Deployment say).
    ImagePullFailed,
    ContainerConfigError,
    CrashLoopBackOff,
    Unschedulable,
    RolloutStuck,
    // Degraded: an update failed and went back, or a step of it failed.
    RolledBack,
    PhaseRolledBack,
    BackupFailed,
    RestoreFailed,
    // Degraded: a phase's member is.
    ServiceDegraded,
    // Progressing while its pods move off a node that stopped answering; Degraded when a
    // claim of it lives on that node.
    NodeLost,
    // Degraded while retried: a call to the API server failed in one step.
    ApiCallFailed,
    ReadConfigFailed,
    RevisionFailed,
    DataProtectionFailed,
    ApplyFailed,
    DeleteFailed,
    /// Never on an object (the status write is what failed): in metrics and logs only.
    StatusWriteFailed,
    // Degraded=False.
    AsExpected,
    // Available.
    NoDeployment,
    ScaledToZero,
    PodsAvailable,
    NoPodsAvailable,
    // DependenciesReady.
    AllReady,
    DependencyNotReady,
}

impl Reason {
    pub const ALL: [Reason; 47] = [
        Reason::RolloutComplete,
        Reason::AllServicesReady,
        Reason::RollingOut,
        Reason::BackingUp,
        Reason::RollingBack,
        Reason::WaitingForPhase,
        Reason::WaitingForDependency,
        Reason::PhasePaused,
        Reason::Paused,
        Reason::NotYetObserved,
        Reason::InvalidSpec,
        Reason::InvalidObject,
        Reason::PhaseNotFound,
        Reason::DependencyNotFound,
        Reason::PhaseDependencyNotFound,
        Reason::PhaseCycle,
        Reason::DependencyCycle,
        Reason::MissingConfigMap,
        Reason::MissingSecret,
        Reason::MissingKey,
        Reason::RevisionNotFound,
        Reason::ApplyRejected,
        Reason::ImagePullFailed,
        Reason::ContainerConfigError,
        Reason::CrashLoopBackOff,
        Reason::Unschedulable,
        Reason::RolloutStuck,
        Reason::RolledBack,
        Reason::PhaseRolledBack,
        Reason::BackupFailed,
        Reason::RestoreFailed,
        Reason::ServiceDegraded,
        Reason::NodeLost,
        Reason::ApiCallFailed,
        Reason::ReadConfigFailed,
        Reason::RevisionFailed,
        Reason::DataProtectionFailed,
        Reason::ApplyFailed,
        Reason::DeleteFailed,
        Reason::StatusWriteFailed,
        Reason::AsExpected,
        Reason::NoDeployment,
        Reason::ScaledToZero,
        Reason::PodsAvailable,
        Reason::NoPodsAvailable,
        Reason::AllReady,
        Reason::DependencyNotReady,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RolloutComplete => "RolloutComplete",
            Reason::AllServicesReady => "AllServicesReady",
            Reason::RollingOut => "RollingOut",
            Reason::BackingUp => "BackingUp",
            Reason::RollingBack => "RollingBack",
            Reason::WaitingForPhase => "WaitingForPhase",
            Reason::WaitingForDependency => "WaitingForDependency",
            Reason::PhasePaused => "PhasePaused",
            Reason::Paused => "Paused",
            Reason::NotYetObserved => "NotYetObserved",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::InvalidObject => "InvalidObject",
            Reason::PhaseNotFound => "PhaseNotFound",
            Reason::DependencyNotFound => "DependencyNotFound",
            Reason::PhaseDependencyNotFound => "PhaseDependencyNotFound",
            Reason::PhaseCycle => "PhaseCycle",
            Reason::DependencyCycle => "DependencyCycle",
            Reason::MissingConfigMap => "MissingConfigMap",
            Reason::MissingSecret => "MissingSecret",
            Reason::MissingKey => "MissingKey",
            Reason::RevisionNotFound => "RevisionNotFound",
            Reason::ApplyRejected => "ApplyRejected",
            Reason::ImagePullFailed => "ImagePullFailed",
            Reason::ContainerConfigError => "ContainerConfigError",
            Reason::CrashLoopBackOff => "CrashLoopBackOff",
            Reason::Unschedulable => "Unschedulable",
            Reason::RolloutStuck => "RolloutStuck",
            Reason::RolledBack => "RolledBack",
            Reason::PhaseRolledBack => "PhaseRolledBack",
            Reason::BackupFailed => "BackupFailed",
            Reason::RestoreFailed => "RestoreFailed",
            Reason::ServiceDegraded => "ServiceDegraded",
            Reason::NodeLost => "NodeLost",
            Reason::ApiCallFailed => "ApiCallFailed",
            Reason::ReadConfigFailed => "ReadConfigFailed",
            Reason::RevisionFailed => "RevisionFailed",
            Reason::DataProtectionFailed => "DataProtectionFailed",
            Reason::ApplyFailed => "ApplyFailed",
            Reason::DeleteFailed => "DeleteFailed",
            Reason::StatusWriteFailed => "StatusWriteFailed",
            Reason::AsExpected => "AsExpected",
            Reason::NoDeployment => "NoDeployment",
            Reason::ScaledToZero => "ScaledToZero",
            Reason::PodsAvailable => "PodsAvailable",
            Reason::NoPodsAvailable => "NoPodsAvailable",
            Reason::AllReady => "AllReady",
            Reason::DependencyNotReady => "DependencyNotReady",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// A graph the user must fix: a phase or service named that does not exist, or a
    /// cycle. Seen from a lagging cache, such a report can be stale (`kubectl lucid status
    /// --wait` checks it again against what it sees).
    pub fn is_graph_problem(self) -> bool {
        matches!(
            self,
            Reason::PhaseNotFound
                | Reason::DependencyNotFound
                | Reason::PhaseDependencyNotFound
                | Reason::PhaseCycle
                | Reason::DependencyCycle
        )
    }

    /// A Degraded reason that means the new revision cannot run: an update ending in one
    /// of these failed (and may be rolled back). Anything found before the apply (an
    /// invalid spec, a missing Secret, an order problem) leaves the old revision running.
    pub fn is_rollout_failure(self) -> bool {
        matches!(
            self,
            Reason::ImagePullFailed
                | Reason::ContainerConfigError
                | Reason::CrashLoopBackOff
                | Reason::Unschedulable
                | Reason::RolloutStuck
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> String {
        reason.as_str().to_string()
    }
}

impl PartialEq<Reason> for str {
    fn eq(&self, reason: &Reason) -> bool {
        self == reason.as_str()
    }
}

impl PartialEq<Reason> for String {
    fn eq(&self, reason: &Reason) -> bool {
        self == reason.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn every_reason_reads_back_as_itself_and_is_spelled_once() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
            seen.insert(reason.as_str());
        }
        assert_eq!(Reason::parse("Kube"), None);
        // ALL names each reason once (a match in `as_str` makes each spelled once).
        assert_eq!(seen.len(), Reason::ALL.len());
    }
}
