//! What the engine tells as it goes. The CLI draws these (text, progress or JSON lines);
//! the engine itself never prints.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Connected {
        host: String,
        addr: String,
    },
    Check {
        host: String,
        id: String,
        ok: bool,
        detail: String,
        fix: Option<String>,
    },
    Warning {
        message: String,
    },
    PlanReady {
        steps: usize,
        fingerprint: String,
        run_id: Option<String>,
    },
    StepStarted {
        n: usize,
        total: usize,
        id: String,
        host: String,
        title: String,
    },
    /// Dry run: the change a step would make to a file.
    StepDiff {
        id: String,
        host: String,
        path: String,
        diff: String,
    },
    /// Dry run: a command a step would run.
    StepCommand {
        id: String,
        host: String,
        command: String,
    },
    /// The host already is as the step wants: nothing done. `ms`: how long the step took
    /// (a rollback's notes have none).
    StepOk {
        id: String,
        host: String,
        note: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
    },
    StepChanged {
        id: String,
        host: String,
        note: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
    },
    StepFailed {
        id: String,
        host: String,
        error: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
    },
    JoinStatus {
        node: String,
        id: u64,
        status: u8,
        text: String,
    },
    Finished {
        run_id: Option<String>,
        dry_run: bool,
        changed: usize,
        ok: usize,
    },
    /// How long each phase took (ms): connect, facts and preflight; prepare; join; finish.
    Timings {
        phases: Vec<(String, u64)>,
    },
    /// Per host: SSH connections opened and commands run; wkctl's peak memory (kB).
    Stats {
        hosts: Vec<(String, usize, usize)>,
        peak_rss_kb: u64,
    },
    /// What the run is about to change, told (and asked about) before anything changes.
    Summary(Summary),
    /// After a run that went through: what clients and operators use now, the load balancer's
    /// addresses, and the members as the cluster lists them.
    Endpoints {
        api: String,
        tcp: String,
        ws: String,
        admin: String,
        demo: String,
        members: Vec<String>,
    },
}

/// What a run (`expand`, `resume`, `rollback`) is about to change, after its checks and before
/// its first change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// `expand`, `resume` or `rollback`.
    pub command: String,
    pub hosts: Vec<String>,
    pub files: Vec<FileChange>,
    /// What is started, recreated, reloaded or stopped, as `host: what`.
    pub services: Vec<String>,
    /// The nodes that join, in order, as `name (id)`.
    pub joins: Vec<String>,
    /// How to undo it.
    pub undo: String,
}

impl Summary {
    /// Whether there is anything to change (a run with nothing to change is not asked about).
    pub fn changes_something(&self) -> bool {
        !self.files.is_empty() || !self.joins.is_empty() || !self.services.is_empty()
    }

    /// One line: how much changes where.
    pub fn short(&self) -> String {
        let mut parts = vec![format!(
            "{} file(s) on {} host(s)",
            self.files.len(),
            self.hosts.len()
        )];
        if !self.services.is_empty() {
            parts.push(format!("{} service change(s)", self.services.len()));
        }
        if !self.joins.is_empty() {
            parts.push(format!("joins {}", self.joins.join(", ")));
        }
        parts.join(", ")
    }
}

/// A file a run writes: `what` it does (`edit`; `create` when the file is not there yet, or
/// its old text was not read because it is written whole from a template; a rollback's
/// `restore`, `remove`), and the lines added and removed.
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub host: String,
    pub path: String,
    pub what: String,
    pub added: usize,
    pub removed: usize,
}

/// The operator's answer to a [`Summary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// Nobody to ask (no terminal) and no `--yes`.
    NoTerminal,
}

/// Asks the operator whether to go on (the CLI: a y/N prompt on the terminal, or `--yes`).
pub trait Confirm: Send + Sync + std::fmt::Debug {
    fn ask(&self, summary: &Summary) -> Answer;
}

/// Receives events; must be cheap (it runs inside the engine's tasks).
pub trait Reporter: Send + Sync {
    fn event(&self, e: &Event);
}
