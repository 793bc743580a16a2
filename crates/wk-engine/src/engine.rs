//! The engine: the inventory, the sources the plan is built from, one connection per host and
//! where events go. What it does lives beside it: `expand` (a run, in phases), `steps` (each
//! kind of step, with its undo), `rollback`, `status`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use wk_plan::{Inventory, Plan, Sources};
use wk_remote::Remote;

use crate::error::EngineError;
use crate::events::{Event, Reporter};

#[derive(Debug, Clone)]
pub struct Options {
    pub add: Vec<String>,
    pub dry_run: bool,
    pub force_unlock: bool,
    /// Go on though the nodes run different WuKongIM builds (`app_version`).
    pub allow_version_mix: bool,
    /// `.wkctl/runs` beside the inventory.
    pub runs_dir: PathBuf,
    /// The command line, for the journal.
    pub command: String,
    /// Who runs it (`user@machine`), for the lock.
    pub owner: String,
    /// Stop after preflight (`wkctl check`).
    pub check_only: bool,
    /// At most this many hosts worked on at once within one playbook step.
    pub parallel: usize,
    /// Going on with a run that stopped (`wkctl resume`).
    pub resume: Option<Resume>,
    /// Set (by Ctrl-C) to stop after the step under way.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Asked, with what the run will change, before its first change (`None`: go on).
    pub confirm: Option<std::sync::Arc<dyn crate::events::Confirm>>,
    /// A dry run whose plan is saved (`--save`): every file the plan writes is read and hashed.
    pub saving: bool,
    /// Apply this saved plan and nothing else (`--plan`): refused if anything changed since.
    pub expect: Option<crate::saved::SavedPlan>,
}

impl Options {
    /// Whether the run saves its plan or checks a saved one: then every file the plan writes
    /// is read and hashed, and the plan is kept with what the hosts looked like.
    pub(crate) fn snapshots(&self) -> bool {
        self.saving || self.expect.is_some()
    }
}

/// What a resumed run carries over from its journal.
#[derive(Debug, Clone)]
pub struct Resume {
    pub run_id: String,
    pub dir: PathBuf,
    /// The plan the run began with (plan.json): a plan built now must be the same.
    pub plan: serde_json::Value,
    /// Files the run changed, as (host, path): what they feed (restarts, reloads) still runs.
    pub changed: Vec<(String, String)>,
    /// New nodes whose WuKongIM the run started.
    pub started: Vec<String>,
    /// The members' `compose_up` steps the run was cut inside of (see `expand::cut`).
    pub cut: Vec<wk_plan::plan::Step>,
    /// The playbook file and templates directory the run read (`None`: built in).
    pub playbook: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    /// Whether the run was started with `--allow-version-mix`.
    pub allow_version_mix: bool,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub run_id: Option<String>,
    pub plan: Plan,
    pub changed: usize,
    pub ok: usize,
    /// A dry run's plan with what the hosts looked like, for `--save`.
    pub saved: Option<crate::saved::SavedPlan>,
}

pub struct Engine<R: Remote> {
    pub(crate) inv: Inventory,
    pub(crate) inv_text: String,
    pub(crate) sources: Sources,
    pub(crate) hosts: BTreeMap<String, Arc<R>>,
    /// Hosts that could not be connected to, and why: fine for nodes declared but not deployed.
    pub(crate) unreachable: BTreeMap<String, String>,
    reporter: Arc<dyn Reporter>,
}

impl<R: Remote + 'static> Engine<R> {
    pub fn new(
        inv: Inventory,
        inv_text: String,
        sources: Sources,
        hosts: BTreeMap<String, Arc<R>>,
        reporter: Arc<dyn Reporter>,
    ) -> Self {
        Engine {
            inv,
            inv_text,
            sources,
            hosts,
            unreachable: BTreeMap::new(),
            reporter,
        }
    }

    /// Hosts the connection to failed (`name -> why`): the run goes on without them as long as
    /// they are not part of it (a node declared in the inventory but not deployed yet).
    pub fn with_unreachable(mut self, unreachable: BTreeMap<String, String>) -> Self {
        self.unreachable = unreachable;
        self
    }

    pub(crate) fn say(&self, e: Event) {
        self.reporter.event(&e);
    }

    /// The connection to `host`, or why there is none.
    pub(crate) fn remote(&self, host: &str) -> Result<&Arc<R>, EngineError> {
        self.hosts.get(host).ok_or_else(|| {
            EngineError::Host(
                self.unreachable
                    .get(host)
                    .cloned()
                    .unwrap_or_else(|| format!("{host}: not connected (is it in the inventory?)")),
            )
        })
    }
}

/// Runs every future at once on this task and returns their outputs in order. The futures
/// borrow the engine, so they are joined here rather than spawned.
pub(crate) async fn all<T>(jobs: Vec<impl std::future::Future<Output = T>>) -> Vec<T> {
    let mut pinned: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + '_>>> =
        jobs.into_iter().map(|j| Box::pin(j) as _).collect();
    let mut results: Vec<Option<T>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future finished"))
        .collect()
}
