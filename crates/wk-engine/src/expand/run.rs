//! Phases 6 to 8, the steps: the plan's prepare steps (files, then restarts), its joins (one new
//! node at a time) and its finish, in plan order, each through its kind. Steps of one playbook
//! step on different hosts run at once where their kind allows (at most `parallel`); the
//! journal says what each did; Ctrl-C stops between two steps; time is told per phase.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::json;
use wk_plan::plan::Step;
use wk_plan::Plan;
use wk_remote::Remote;

use crate::engine::{all, Engine, Options, Outcome};
use crate::error::{step_err, EngineError};
use crate::events::Event;
use crate::pause::{self, Point};
use crate::steps::{kind, shape, Cx, Done, RunCtx};

/// Milliseconds spent per phase, in the order first seen.
struct Timings(Vec<(String, u64)>);

impl Timings {
    fn add(&mut self, phase: String, ms: u64) {
        match self.0.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, t)) => *t += ms,
            None => self.0.push((phase, ms)),
        }
    }
}

impl<R: Remote + 'static> Engine<R> {
    pub(super) async fn run(
        &self,
        opts: &Options,
        plan: Plan,
        run: RunCtx,
        started: Instant,
    ) -> Result<Outcome, EngineError> {
        let total = plan.steps.len();
        let (mut changed, mut ok) = (0usize, 0usize);
        let mut timings = Timings(vec![(
            "connect+facts+preflight".into(),
            started.elapsed().as_millis() as u64,
        )]);
        let mut i = 0;
        while i < total {
            if opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::SeqCst))
            {
                let after = if i == 0 {
                    "(none)".to_string()
                } else {
                    plan.steps[i - 1].id.clone()
                };
                let _ = run
                    .log(json!({"type": "run_stopped", "reason": "interrupted by the operator"}))
                    .await;
                self.say(Event::Timings { phases: timings.0 });
                return Err(EngineError::Interrupted { after });
            }
            let j = group_end(&plan, i);
            let t = Instant::now();
            let mut failure = None;
            for chunk in (i..j).collect::<Vec<_>>().chunks(opts.parallel.max(1)) {
                let jobs = chunk
                    .iter()
                    .map(|&k| self.one_step(k, &plan, &run))
                    .collect();
                for r in all(jobs).await {
                    match r {
                        Ok(true) => changed += 1,
                        Ok(false) => ok += 1,
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                if failure.is_some() {
                    break;
                }
            }
            // Time spent waiting for WuKongIM itself (health, joins) is not orchestration.
            let first = &plan.steps[i];
            let phase = if shape(&first.action).waits() {
                "waiting for WuKongIM".to_string()
            } else {
                format!("{:?}", first.phase).to_lowercase()
            };
            timings.add(phase, t.elapsed().as_millis() as u64);
            if let Some(e) = failure {
                let _ = run.log(json!({"type": "run_stopped"})).await;
                self.say(Event::Timings { phases: timings.0 });
                return Err(e);
            }
            i = j;
        }
        let _ = run
            .log(json!({"type": "run_finished", "changed": changed, "ok": ok}))
            .await;
        self.say(Event::Timings { phases: timings.0 });
        let run_id = run.journal.is_some().then(|| run.run_id.clone());
        if !opts.dry_run {
            self.say(self.endpoints(&plan));
        }
        self.say(Event::Finished {
            run_id: run_id.clone(),
            dry_run: opts.dry_run,
            changed,
            ok,
        });
        Ok(Outcome {
            run_id,
            plan,
            changed,
            ok,
            saved: None,
        })
    }

    /// The load balancer's addresses, as clients and operators reach it, and the members the
    /// run leaves (every one at 已加入: the run waited for it).
    fn endpoints(&self, plan: &Plan) -> Event {
        let g = &self.inv.gateway;
        let at = |port: u16| wk_plan::inventory::host_port(&g.external_address, port);
        let members = self
            .inv
            .wukongim_nodes()
            .filter(|n| plan.members_after.iter().any(|a| a.name == n.name))
            .map(|n| format!("{} ({})", n.name, n.id))
            .collect();
        Event::Endpoints {
            api: format!("http://{}", at(g.ports.api)),
            tcp: at(g.ports.tcp),
            ws: format!("ws://{}", at(g.ports.ws)),
            admin: format!("http://{}/web", at(g.ports.manager)),
            demo: format!("http://{}", at(g.ports.demo)),
            members,
        }
    }

    /// Runs step `k` of the plan: journal, events; `Ok(true)` when it changed something.
    async fn one_step(&self, k: usize, plan: &Plan, run: &RunCtx) -> Result<bool, EngineError> {
        let step = &plan.steps[k];
        self.say(Event::StepStarted {
            n: k + 1,
            total: plan.steps.len(),
            id: step.id.clone(),
            host: step.host.clone(),
            title: step.title.clone(),
        });
        run.log(json!({"type": "step_started", "step": step.id, "host": step.host}))
            .await
            .map_err(|e| step_err(step, e))?;
        pause::at(step, Point::Start).await;
        let t = Instant::now();
        let done = self.step(step, plan, run).await;
        let ms = t.elapsed().as_millis() as u64;
        if done.is_ok() {
            pause::at(step, Point::End).await;
        }
        let (id, host) = (step.id.clone(), step.host.clone());
        let (kind, changed, note) = match done {
            Ok(Done::Ok(note)) => ("ok", false, note),
            Ok(Done::Changed(note)) => ("verified", true, note),
            Err(e) => {
                let error = e.to_string();
                let _ = run
                    .log(json!({"type": "failed", "step": id, "host": host, "error": error, "ms": ms}))
                    .await;
                self.say(Event::StepFailed {
                    id,
                    host,
                    error,
                    ms: Some(ms),
                });
                return Err(e);
            }
        };
        run.log(json!({"type": kind, "step": id, "host": host, "note": note, "ms": ms}))
            .await
            .map_err(|e| step_err(step, e))?;
        let ms = Some(ms);
        self.say(if changed {
            Event::StepChanged { id, host, note, ms }
        } else {
            Event::StepOk { id, host, note, ms }
        });
        Ok(changed)
    }

    async fn step(&self, step: &Step, plan: &Plan, run: &RunCtx) -> Result<Done, EngineError> {
        let cx = Cx {
            e: self,
            step,
            plan,
            run,
            r: self.remote(&step.host)?.clone(),
        };
        kind::<R>(&step.action).apply(&cx).await
    }
}

/// The end of the group of steps starting at `i` that run at once: the same playbook step on
/// other hosts, when its kind allows it; else `i` alone.
fn group_end(plan: &Plan, i: usize) -> usize {
    let steps = &plan.steps;
    let of = |st: &Step| (st.id.split('@').next().unwrap_or("").to_string(), st.phase);
    let mut j = i + 1;
    if shape(&steps[i].action).parallel() {
        while j < steps.len() && of(&steps[j]) == of(&steps[i]) {
            j += 1;
        }
    }
    j
}
