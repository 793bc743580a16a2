//! The engine's errors: each kind of failure has its own exit code, and each message names the
//! host, the step and the path it concerns, and what the operator does next.

use wk_plan::plan::Step;
use wk_remote::RemoteError;

/// Exit codes the CLI uses for each kind of failure (documented in `wkctl --help`).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The inventory, playbook or command line is wrong; nothing changed.
    #[error("{0}")]
    Input(String),
    /// A host cannot be reached or used; nothing changed.
    #[error("{0}")]
    Host(String),
    /// Preflight found problems; nothing changed.
    #[error("preflight failed on {failed} check(s); nothing was changed. Fix them and run again")]
    Preflight { failed: usize },
    #[error("{host}: the cluster is locked by another run ({holder}) in {path}. Wait for it to finish; if it died, run again with --force-unlock (expand, resume and rollback take it) to remove the lock; nothing was changed")]
    Locked {
        host: String,
        path: String,
        holder: String,
    },
    /// A saved plan (`--plan`) no longer holds: what changed since it was made.
    #[error("the saved plan does not hold any more:\n  {0}\n  nothing was changed. Make a new one (`wkctl expand --add NODE --dry-run --save FILE`), review it, and apply that")]
    PlanStale(String),
    /// The operator answered no at the prompt.
    #[error("not confirmed ({0}); nothing was changed")]
    Declined(String),
    /// Nobody could be asked, and `--yes` was not given.
    #[error("this run would change {0}, and there is no terminal to ask on: run it again with --yes (or WKCTL_YES=1) to go on; nothing was changed")]
    NeedsYes(String),
    /// The operator stopped the run (Ctrl-C) between two steps.
    #[error("stopped after step `{after}` as asked (Ctrl-C); the journal is consistent: `wkctl resume` goes on, `wkctl rollback` undoes")]
    Interrupted { after: String },
    /// A step failed; the journal says what was done.
    #[error("step `{step}` on {host}: {message}")]
    Step {
        step: String,
        host: String,
        message: String,
    },
}

impl EngineError {
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Input(_) | EngineError::NeedsYes(_) => 2,
            EngineError::Declined(_) => 1,
            EngineError::Host(_) | EngineError::Preflight { .. } | EngineError::PlanStale(_) => 3,
            EngineError::Locked { .. } => 4,
            EngineError::Interrupted { .. } => 130,
            EngineError::Step { .. } => 1,
        }
    }
}

/// A step's failure, with its id and host.
pub(crate) fn step_err(step: &Step, message: impl std::fmt::Display) -> EngineError {
    EngineError::Step {
        step: step.id.clone(),
        host: step.host.clone(),
        message: message.to_string(),
    }
}

/// A host that cannot be used (its error names it).
pub(crate) fn host_err(e: RemoteError) -> EngineError {
    EngineError::Host(e.to_string())
}

/// A failure outside any step (the journal, the local copies): its message says where.
pub(crate) fn other_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Host(e.to_string())
}
