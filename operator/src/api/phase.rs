//! `LucidPhase`: an ordered group of LucidServices (foundation, core, application, support).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::names::DNS_LABEL_PATTERN;

/// A rollout phase. Its members are the LucidServices in its namespace whose `spec.phase`
/// equals its name; none of them is created or updated until every phase in `dependsOn`
/// is Ready at its current generation.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "lucid.io",
    version = "v1alpha1",
    kind = "LucidPhase",
    plural = "lucidphases",
    shortname = "lp",
    category = "lucid",
    namespaced,
    status = "LucidPhaseStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Waiting-On","type":"string","jsonPath":".status.waitingOn"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LucidPhaseSpec {
    /// Phases that must be Ready before this one's services start (the order in which the
    /// compose files were run, as a graph: `core` depends on `foundation`, and so on).
    #[serde(default)]
    #[schemars(inner(pattern(DNS_LABEL_PATTERN), length(max = 63)), length(max = 32))]
    pub depends_on: Vec<String>,

    /// Holds the phase: its services are neither created nor updated while true. Running
    /// pods keep running.
    #[serde(default)]
    pub paused: bool,

    /// What this phase is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// What happens when a member's update fails (its new revision Degraded, or not Ready
    /// within its progress deadline). `RollbackService` (default): the failed member goes
    /// back to its last good revision and keeps serving, its failure shown as Ready=False
    /// `RolledBack`; `RollbackPhase`: every member changed since the phase was last Ready
    /// goes back too, so the phase is again a set that worked together; `Halt`: nothing goes
    /// back, the member stays Degraded and later phases wait. Either way later phases never
    /// start their own changes, and the failed update is not retried until the spec changes
    /// or `kubectl lucid retry` asks for it.
    #[serde(default, skip_serializing_if = "OnFailure::is_default")]
    pub on_failure: OnFailure,
}

impl OnFailure {
    fn is_default(&self) -> bool {
        *self == OnFailure::default()
    }
}

/// What a phase does when a member's update fails.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnFailure {
    /// Leave the failed update in place (Degraded); later phases wait.
    Halt,
    /// Roll the failed member back to its last good revision.
    #[default]
    RollbackService,
    /// Roll back every member changed since the phase was last Ready.
    RollbackPhase,
}

/// The rollout of a phase, at a glance and per member.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LucidPhaseStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Member services.
    #[serde(default)]
    pub services: i32,
    /// Members Ready at their current generation.
    #[serde(default)]
    pub ready_services: i32,
    /// Members rolling out.
    #[serde(default)]
    pub progressing_services: i32,
    /// Members waiting for a phase or a dependency.
    #[serde(default)]
    pub waiting_services: i32,
    /// `ready/services`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// One word for `kubectl get`: Ready, Progressing, Waiting, Paused or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// What holds the phase back, when something does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    /// Each member's state, sorted by name.
    #[serde(default)]
    pub members: Vec<PhaseMember>,
    /// The revision of each member when the phase was last Ready: the set that worked
    /// together, which `onFailure: RollbackPhase` goes back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ready: Option<PhaseReadySet>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The members' revisions when the phase was last Ready.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReadySet {
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// Member name to revision.
    pub revisions: std::collections::BTreeMap<String, i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseMember {
    pub name: String,
    pub state: MemberState,
    /// What the member waits for or why it is degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum MemberState {
    Waiting,
    Progressing,
    Ready,
    Degraded,
}
