//! `wkctl expand` (and `check`, `resume`): a run, as a list of phases, each in a module named
//! for it. The hosts and the cluster are asked first and nothing changes until every check has
//! passed; then the plan's steps run, each through its kind (`crate::steps`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use wk_cluster::NodeInfo;
use wk_plan::inventory::{Node, PORT_API, PORT_CLUSTER};
use wk_remote::Remote;

use crate::engine::{Engine, Options, Outcome};
use crate::error::EngineError;
use crate::events::{Answer, Event, Summary};
use crate::facts::{HostState, Probe};
use crate::saved::SavedPlan;

mod cut;
mod gather;
mod members;
mod preflight;
mod prepare;
mod run;
mod seed;
mod trial;

/// Who a run is about: the gateway and the nodes it adds.
pub(super) struct Scope {
    pub gateway: Node,
    pub added: Vec<Node>,
}

impl Scope {
    fn adds(&self, name: &str) -> bool {
        self.added.iter().any(|a| a.name == name)
    }

    /// The addresses host `n` must reach, given the cluster's `members` (the seed among them):
    /// WuKongIM sends every raft message over the sender's own connection, so 11110 must be
    /// open both ways between a new node and every member, and the admin UI's node page asks
    /// every node's API from whichever node the load balancer picked, so 5001 too.
    fn reach(&self, n: &Node, members: &[Node]) -> Vec<(String, u16)> {
        let mut out: Vec<(String, u16)> = Vec::new();
        let mut add = |to: &Node, port: u16| {
            let k = (to.internal_address.clone(), port);
            if to.name != n.name && !out.contains(&k) {
                out.push(k);
            }
        };
        let member = members.iter().any(|m| m.name == n.name);
        if self.adds(&n.name) || member {
            for to in members.iter().chain(&self.added) {
                add(to, PORT_CLUSTER);
                add(to, PORT_API);
            }
        }
        if n.name == self.gateway.name {
            for a in &self.added {
                add(a, PORT_API);
            }
        }
        if member {
            // Between members, 11110 works already (they are a cluster).
            out.retain(|(h, p)| {
                *p != PORT_CLUSTER || !members.iter().any(|m| &m.internal_address == h)
            });
        }
        out
    }
}

/// A plan every check passed for, the API token the seed's compose file sets, and the build
/// new nodes must run (when it is checked).
pub(super) struct Planned {
    pub plan: wk_plan::Plan,
    pub token: Option<String>,
    pub version: Option<String>,
    /// The files the plan changes, and the nodes that still have to join (name, id).
    pub changes: Vec<crate::events::FileChange>,
    pub joins: Vec<(String, u16)>,
    /// The plan with what the hosts and the cluster looked like, made only for `--save` and
    /// `--plan`.
    pub saved: Option<SavedPlan>,
    /// What the facts saw running in each new node's install dir: its `node-up` starts from
    /// it. It runs `up -d` for the compose file the run wrote whatever it says, and nothing of
    /// ours runs compose there before, so the look cannot mislead it.
    pub looks: Vec<((String, String), crate::docker::Services)>,
}

impl Planned {
    /// What the run is about to change: the files, the services on the hosts whose files
    /// change (or that join), the joins.
    fn summary(&self, opts: &Options) -> Summary {
        use wk_plan::plan::Action;
        let touched: BTreeSet<&str> = self
            .changes
            .iter()
            .map(|c| c.host.as_str())
            .chain(self.joins.iter().map(|(name, _)| name.as_str()))
            .collect();
        let services = self
            .plan
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.action,
                    Action::ComposeUp { .. }
                        | Action::ComposeCreate { .. }
                        | Action::ComposeSignal { .. }
                )
            })
            .filter(|s| touched.contains(s.host.as_str()))
            .map(|s| format!("{}: {}", s.host, s.title))
            .collect();
        Summary {
            command: if opts.resume.is_some() {
                "resume"
            } else {
                "expand"
            }
            .into(),
            hosts: touched.iter().map(|h| h.to_string()).collect(),
            files: self.changes.clone(),
            services,
            joins: self
                .joins
                .iter()
                .map(|(name, id)| format!("{name} ({id})"))
                .collect(),
            undo: match &opts.resume {
                Some(r) => format!("wkctl rollback {}", r.run_id),
                None => "wkctl rollback (this run: the last one)".into(),
            },
        }
    }
}

/// A preflight check's result: host, check id, passed, what was found, how to fix it.
pub(super) type CheckRow = (String, String, bool, String, Option<String>);

/// What the hosts and the cluster told, phase by phase.
pub(super) struct Known {
    /// The member new nodes join through, and what it answered.
    pub seed: Node,
    pub probe: Probe,
    /// Every host asked, in the order asked, and what each said.
    pub wanted: Vec<Node>,
    pub states: BTreeMap<String, HostState>,
    /// The cluster's members as the seed lists them (empty when it did not answer).
    pub cluster: Vec<NodeInfo>,
    /// Nodes to add that are members already, with the inventory's address (a re-run).
    pub already: BTreeSet<String>,
    /// The inventory's nodes the cluster has, but for those being added.
    pub members: Vec<String>,
    /// The same as nodes, the seed first, as the seed's member list told before the members
    /// phase checked it (what the reachability was asked for).
    pub member_nodes: Vec<Node>,
    pub checks: Vec<CheckRow>,
    /// The files the plan changes, as its trial found them.
    pub changes: Vec<crate::events::FileChange>,
    /// Every file the plan writes (`host: path`) and the sha256 of what it holds now.
    pub file_shas: BTreeMap<String, Option<String>>,
}

impl Known {
    /// Records a preflight check.
    pub fn check(&mut self, host: &str, id: &str, ok: bool, detail: String, fix: Option<&str>) {
        self.checks.push((
            host.to_string(),
            id.to_string(),
            ok,
            detail,
            fix.map(str::to_string),
        ));
    }

    /// A variable of the seed's WuKongIM service.
    pub fn seed_env(&self, key: &str) -> Option<String> {
        let compose = self.states[&self.seed.name].compose_text.as_deref()?;
        crate::text::wukongim_env(compose)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

impl<R: Remote + 'static> Engine<R> {
    /// The whole expansion (or its dry run, or only its checks).
    pub async fn expand(&self, opts: &Options) -> Result<Outcome, EngineError> {
        let started = Instant::now();
        let scope = self.scope(opts)?;
        let probe = self.choose_seed(opts, &scope).await?;
        let mut known = self.gather(opts, &scope, probe).await?;
        // A resume, once the lock said the run is ours: what its cut compose calls left first.
        if self.restart_cut(opts).await? {
            let probe = self.choose_seed(opts, &scope).await?;
            known = self.gather(opts, &scope, probe).await?;
        }
        self.members(&scope, &mut known).await?;
        let planned = self.preflight(opts, &scope, known).await?;
        if opts.check_only {
            return Ok(self.checked(planned.plan));
        }
        if let (Some(want), Some(now)) = (&opts.expect, &planned.saved) {
            let differ = want.differences(now);
            if !differ.is_empty() {
                return Err(EngineError::PlanStale(differ.join("\n  ")));
            }
        }
        if !opts.dry_run {
            ask(self, opts.confirm.as_deref(), &planned.summary(opts))?;
        }
        let run = self.prepare(opts, &planned)?;
        let saved = planned.saved;
        let mut out = self.run(opts, planned.plan, run, started).await?;
        if opts.dry_run {
            out.saved = saved;
        }
        Ok(out)
    }
}

/// Tells `summary` and asks `confirm` (when there is something to change and someone to ask).
pub(crate) fn ask<R: Remote + 'static>(
    e: &Engine<R>,
    confirm: Option<&dyn crate::events::Confirm>,
    summary: &Summary,
) -> Result<(), EngineError> {
    if !summary.changes_something() {
        return Ok(());
    }
    e.say(Event::Summary(summary.clone()));
    match confirm.map(|c| c.ask(summary)) {
        None | Some(Answer::Yes) => Ok(()),
        Some(Answer::No) => Err(EngineError::Declined(summary.short())),
        Some(Answer::NoTerminal) => Err(EngineError::NeedsYes(summary.short())),
    }
}
