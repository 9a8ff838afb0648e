//! Status rules shared by both controllers: KEP-1623 conditions that never flap their
//! transition time, and when a Deployment counts as rolled out.

mod conditions;
mod rollout;

pub use conditions::{ConditionType, Health, set_condition};
pub use rollout::{Rollout, rollout};
