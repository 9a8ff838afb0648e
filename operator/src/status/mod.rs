//! Status rules shared by both controllers: KEP-1623 conditions that never flap their
//! transition time, when a Deployment counts as rolled out, and what its pods say when it
//! cannot.

mod conditions;
mod placement;
mod pods;
mod reasons;
mod rollout;

pub use conditions::{ConditionType, Health, State, set_condition};
pub use placement::{
    LostNode, NodeLoss, SELECTED_NODE_ANNOTATION, lost_nodes, node_loss, ready_nodes,
};
pub use pods::{PodProblem, current_template_hash, pod_problem};
pub use reasons::Reason;
pub use rollout::{Rollout, rollout};
