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
    /// The host already is as the step wants: nothing done.
    StepOk {
        id: String,
        host: String,
        note: String,
    },
    StepChanged {
        id: String,
        host: String,
        note: String,
    },
    StepFailed {
        id: String,
        host: String,
        error: String,
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
}

/// Receives events; must be cheap (it runs inside the engine's tasks).
pub trait Reporter: Send + Sync {
    fn event(&self, e: &Event);
}
