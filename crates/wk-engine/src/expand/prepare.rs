//! Phase 5, prepare: a resumed run must find the plan it began with; the files earlier runs
//! changed and left half way still count as changed; the journal is opened (resume) or made.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use wk_plan::Plan;
use wk_remote::Remote;

use super::Planned;
use crate::engine::{Engine, Options, Resume};
use crate::error::EngineError;
use crate::events::Event;
use crate::journal::Journal;
use crate::steps::RunCtx;

impl<R: Remote + 'static> Engine<R> {
    pub(super) fn prepare(&self, opts: &Options, planned: &Planned) -> Result<RunCtx, EngineError> {
        let plan = &planned.plan;
        if let Some(r) = &opts.resume {
            same_plan(r, plan)?;
        }
        let changed_before = self.changed_before(opts);
        let journal = if opts.dry_run {
            None
        } else {
            Some(self.journal(opts, plan)?)
        };
        // A resumed run's files go back, when a step must take one back, to what they were
        // before the run began.
        let before = match &opts.resume {
            Some(r) => crate::runs::before_images(&r.dir)?,
            None => BTreeMap::new(),
        };
        let run_id = journal.as_ref().map(|j| j.run_id.clone());
        self.say(Event::PlanReady {
            steps: plan.steps.len(),
            fingerprint: plan.fingerprint.clone(),
            run_id: run_id.clone(),
        });
        Ok(RunCtx {
            dry: opts.dry_run,
            changed_paths: std::sync::Mutex::new(changed_before),
            before: std::sync::Mutex::new(before),
            journal: journal.map(tokio::sync::Mutex::new),
            owner: opts.owner.clone(),
            run_id: run_id.unwrap_or_default(),
            force_unlock: opts.force_unlock,
            token: planned.token.clone(),
            version: planned.version.clone(),
            stale_backups: match &opts.resume {
                Some(_) => Vec::new(),
                None => crate::runs::unfinished_backups(&opts.runs_dir),
            },
            looks: std::sync::Mutex::new(planned.looks.iter().cloned().collect()),
        })
    }

    /// Files a resumed run changed drive restarts and reloads; so do those of runs that
    /// stopped half way before a fresh one (their lock forced or removed).
    fn changed_before(&self, opts: &Options) -> BTreeSet<(String, String)> {
        let mut changed = BTreeSet::new();
        match &opts.resume {
            Some(r) => changed.extend(r.changed.iter().cloned()),
            None => {
                let (ids, paths) = crate::runs::unfinished_changes(&opts.runs_dir);
                if !ids.is_empty() {
                    self.say(Event::Warning {
                        message: format!(
                            "run(s) {} stopped half way (neither resumed nor rolled back); the files they changed count as changed here, so their restarts and reloads happen in this run",
                            ids.join(", ")
                        ),
                    });
                }
                changed.extend(paths);
            }
        }
        changed
    }

    /// The journal: the resumed run's, or a new one with the plan.
    fn journal(&self, opts: &Options, plan: &Plan) -> Result<Journal, EngineError> {
        if let Some(r) = &opts.resume {
            let mut j = Journal::open(&r.dir).map_err(|e| {
                EngineError::Host(format!(
                    "cannot open the journal in {}: {e}",
                    r.dir.display()
                ))
            })?;
            j.append(json!({"type": "run_resumed", "command": opts.command}))
                .map_err(|e| EngineError::Host(e.to_string()))?;
            return Ok(j);
        }
        std::fs::create_dir_all(&opts.runs_dir).map_err(|e| {
            EngineError::Host(format!("cannot create {}: {e}", opts.runs_dir.display()))
        })?;
        Journal::create(
            &opts.runs_dir,
            plan,
            &opts.command,
            json!({
                "playbook": self.sources.playbook_path,
                "templates": self.sources.templates_path,
                "allow_version_mix": opts.allow_version_mix,
            }),
        )
        .map_err(|e| {
            EngineError::Host(format!(
                "cannot write the journal in {}: {e}",
                opts.runs_dir.display()
            ))
        })
    }
}

/// A resumed run goes on only with the plan it began with.
fn same_plan(r: &Resume, plan: &Plan) -> Result<(), EngineError> {
    let now = serde_json::to_value(plan).map_err(|e| EngineError::Input(e.to_string()))?;
    if now["fingerprint"] == r.plan["fingerprint"] {
        return Ok(());
    }
    let ids = |p: &Value| -> BTreeMap<String, Value> {
        p["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|st| {
                (
                    st["id"].as_str().unwrap_or("").to_string(),
                    st["action"].clone(),
                )
            })
            .collect()
    };
    let (a, b) = (ids(&r.plan), ids(&now));
    let differ: Vec<String> = a
        .keys()
        .chain(b.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    Err(EngineError::Input(format!(
        "the inventory, playbook or templates changed since run {} began; resuming would do something else than it planned. Steps that differ: {}\n  fix: put the inputs back as they were, or roll the run back (`wkctl rollback {}`) and start a new one",
        r.run_id,
        if differ.is_empty() { "none (only inputs that do not change a step)".into() } else { differ.join(", ") },
        r.run_id
    )))
}
