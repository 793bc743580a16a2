//! Inventory, playbook, templates and plan building for wkctl.
//!
//! Pure: nothing here touches the network, and nothing prints. Every error names the file (with
//! line and column), or the step and host, and says what to do.

pub mod diag;
pub mod inventory;
pub mod plan;
pub mod playbook;
pub mod secrets;
pub mod sources;

pub use diag::{Diagnostic, Diagnostics};
pub use inventory::Inventory;
pub use plan::{build, Action, Plan, PlanError, PlanRequest, Step};
pub use secrets::mask_secrets;
pub use sources::Sources;

#[cfg(test)]
mod tests;
