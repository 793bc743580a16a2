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

use crate::engine::{Engine, Options, Outcome};
use crate::error::{step_err, EngineError};
use crate::events::Event;
use crate::pause::{self, Point};
use crate::steps::{kind, shape, Cx, Done, RunCtx};

/// When each step ran, to tell the time per phase: a phase's time is the wall time some step
/// of it was under way (steps that overlap count once).
#[derive(Default)]
struct Timings {
    /// (phase, start, end) in the order the steps ended.
    spans: Vec<(String, Instant, Instant)>,
    first: Vec<(String, u64)>,
}

impl Timings {
    fn phases(&self) -> Vec<(String, u64)> {
        let mut out = self.first.clone();
        let mut names: Vec<&String> = Vec::new();
        for (p, _, _) in &self.spans {
            if !names.contains(&p) {
                names.push(p);
            }
        }
        for name in names {
            let mut spans: Vec<(Instant, Instant)> = self
                .spans
                .iter()
                .filter(|(p, _, _)| p == name)
                .map(|&(_, a, b)| (a, b))
                .collect();
            spans.sort();
            let (mut ms, mut reach) = (0u128, None::<Instant>);
            for (a, b) in spans {
                let from = reach.map_or(a, |r| r.max(a));
                if b > from {
                    ms += (b - from).as_millis();
                }
                reach = Some(reach.map_or(b, |r| r.max(b)));
            }
            out.push((name.clone(), ms as u64));
        }
        out
    }
}

/// For each step of the plan, the earlier steps it waits for. Steps on one host run in plan
/// order. A step the playbook gives `after` waits on other hosts only for the steps of those
/// playbook steps; any other waits for every step before its group (the same playbook step
/// on other hosts, side by side in the plan, where its kind runs on several hosts at once).
fn needs(plan: &Plan) -> Vec<Vec<usize>> {
    let steps = &plan.steps;
    let of = |st: &Step| playbook_id(&st.id).to_string();
    let mut group = vec![0usize; steps.len()];
    let mut i = 0;
    let mut g = 0;
    while i < steps.len() {
        let j = group_end(plan, i);
        group[i..j].iter_mut().for_each(|x| *x = g);
        g += 1;
        i = j;
    }
    (0..steps.len())
        .map(|k| {
            (0..k)
                .filter(|&j| {
                    steps[j].host == steps[k].host
                        || match &steps[k].after {
                            Some(after) => after.contains(&of(&steps[j])),
                            None => group[j] < group[k],
                        }
                })
                .collect()
        })
        .collect()
}

/// The playbook step a plan step comes from: its id up to `@` (or `[`, in a join step run on
/// another host than the joining node).
fn playbook_id(id: &str) -> &str {
    id.split(['@', '[']).next().unwrap_or("")
}

/// Steps under way: each its index and future; they run on the runner's task.
type Running<'a> = Vec<(
    usize,
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, EngineError>> + 'a>>,
)>;

/// The first step under way to end: its index and what it returned.
async fn next_done(running: &mut Running<'_>) -> (usize, Result<bool, EngineError>) {
    std::future::poll_fn(|cx| {
        for n in 0..running.len() {
            if let std::task::Poll::Ready(r) = running[n].1.as_mut().poll(cx) {
                let (k, _) = running.swap_remove(n);
                return std::task::Poll::Ready((k, r));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

impl<R: Remote + 'static> Engine<R> {
    /// Every step, each once the steps it waits for ([`needs`]) have ended, at most `parallel`
    /// at once. After a failure or Ctrl-C no step starts; those under way end first.
    pub(super) async fn run(
        &self,
        opts: &Options,
        plan: Plan,
        run: RunCtx,
        started: Instant,
    ) -> Result<Outcome, EngineError> {
        let total = plan.steps.len();
        let (mut changed, mut ok) = (0usize, 0usize);
        let mut timings = Timings {
            first: vec![(
                "connect+facts+preflight".into(),
                started.elapsed().as_millis() as u64,
            )],
            ..Timings::default()
        };
        let needs = needs(&plan);
        let mut begun = vec![None::<Instant>; total];
        let mut ended = vec![false; total];
        let mut last_ended: Option<usize> = None;
        let mut failure: Option<EngineError> = None;
        let mut interrupted = false;
        let mut running: Running<'_> = Vec::new();
        loop {
            interrupted |= opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::SeqCst));
            if failure.is_none() && !interrupted {
                for k in 0..total {
                    if running.len() >= opts.parallel.max(1) {
                        break;
                    }
                    if begun[k].is_none() && needs[k].iter().all(|&j| ended[j]) {
                        begun[k] = Some(Instant::now());
                        running.push((k, Box::pin(self.one_step(k, &plan, &run))));
                    }
                }
            }
            if running.is_empty() {
                break;
            }
            let (k, r) = next_done(&mut running).await;
            ended[k] = true;
            last_ended = Some(k);
            // Time spent waiting for WuKongIM itself (health, joins) is not orchestration.
            let step = &plan.steps[k];
            let phase = if shape(&step.action).waits() {
                "waiting for WuKongIM".to_string()
            } else {
                format!("{:?}", step.phase).to_lowercase()
            };
            let from = begun[k].unwrap_or_else(Instant::now);
            timings.spans.push((phase, from, Instant::now()));
            match r {
                Ok(true) => changed += 1,
                Ok(false) => ok += 1,
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        drop(running);
        if let Some(e) = failure {
            let _ = run.log(json!({"type": "run_stopped"})).await;
            self.say(Event::Timings {
                phases: timings.phases(),
            });
            return Err(e);
        }
        if ended.iter().any(|e| !e) {
            let after = last_ended.map_or("(none)".to_string(), |k| plan.steps[k].id.clone());
            let _ = run
                .log(json!({"type": "run_stopped", "reason": "interrupted by the operator"}))
                .await;
            self.say(Event::Timings {
                phases: timings.phases(),
            });
            return Err(EngineError::Interrupted { after });
        }
        let _ = run
            .log(json!({"type": "run_finished", "changed": changed, "ok": ok}))
            .await;
        self.say(Event::Timings {
            phases: timings.phases(),
        });
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;
    use wk_plan::Plan;

    use super::{needs, Timings};

    /// The playbook's shape: new nodes' steps (`after: [lock]`) wait for the lock and their own
    /// host's earlier steps only; the members' steps do not wait for them; the first join waits
    /// for everything before it; steps of one playbook step on several hosts go side by side.
    #[test]
    fn steps_wait_for_their_host_their_after_and_every_group_before() {
        let st = |id: &str, host: &str, kind: serde_json::Value, after: Option<&str>| {
            let mut v = json!({"id": format!("{id}@{host}"), "host": host, "phase": "prepare", "title": "t", "action": kind});
            if let Some(a) = after {
                v["after"] = json!([a]);
            }
            v
        };
        let cmd = |run: &str| json!({"run": run, "sudo": false});
        let file =
            json!({"kind": "template", "src": "t", "dest": "/d/f", "mode": 420, "content": "x"});
        let up =
            json!({"kind": "compose_up", "dir": "/d", "services": [], "command": cmd("up -d")});
        let create =
            json!({"kind": "compose_create", "dir": "/d", "command": cmd("up --no-start")});
        let lock = json!({"kind": "lock", "path": "/d/.lock"});
        let steps = vec![
            st("lock", "n1", lock, None),                          // 0
            st("env", "n1", file.clone(), None),                   // 1
            st("env", "n2", file.clone(), None),                   // 2
            st("member-up", "n1", up.clone(), None),               // 3
            st("member-up", "n2", up.clone(), None),               // 4
            st("node-compose", "n3", file.clone(), Some("lock")),  // 5
            st("node-compose", "n4", file, Some("lock")),          // 6
            st("node-create", "n3", create.clone(), Some("lock")), // 7
            st("node-create", "n4", create, Some("lock")),         // 8
            st("node-up", "n3", up, None),                         // 9
        ];
        let mut plan: Plan = serde_json::from_value(json!({
            "cluster": "t", "playbook": "p", "fingerprint": "f", "adding": [],
            "members_before": [], "members_after": [], "gateway": "n1", "seed": "n1",
            "assumptions": [], "warnings": [], "steps": [],
        }))
        .unwrap();
        plan.steps = steps
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        let n = needs(&plan);
        assert_eq!(n[1], [0], "env@n1");
        assert_eq!(n[2], [0], "env@n2 beside env@n1");
        assert_eq!(n[3], [0, 1, 2], "member-up@n1");
        assert_eq!(n[4], [0, 1, 2, 3], "restarts one at a time");
        assert_eq!(n[5], [0], "a new node's file waits only for the lock");
        assert_eq!(n[7], [0, 5], "its create follows its own host's file");
        assert_eq!(n[8], [0, 6]);
        assert_eq!(n[9], (0..9).collect::<Vec<_>>(), "the join waits for all");
    }

    /// A phase's time counts the wall time some step of it ran: overlaps once, gaps not.
    #[test]
    fn a_phase_counts_overlapping_steps_once() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let t = Timings {
            first: vec![("connect".into(), 5)],
            spans: vec![
                ("prepare".into(), at(0), at(100)),
                ("prepare".into(), at(50), at(120)),
                ("join".into(), at(120), at(150)),
                ("prepare".into(), at(200), at(210)),
                ("prepare".into(), at(60), at(70)),
            ],
        };
        assert_eq!(
            t.phases(),
            [
                ("connect".to_string(), 5),
                ("prepare".to_string(), 130),
                ("join".to_string(), 30)
            ]
        );
    }
}
