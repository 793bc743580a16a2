//! The kinds of step: the playbook's closed set of actions, each in a file of its own with what
//! it observes, what a dry run shows, what it changes, how it verifies that, and how a rollback
//! undoes it. The runner (`expand::run`) and the rollback (`rollback`) call them through
//! [`Kind`]; [`kind`] is the one place that maps an action to its kind.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use wk_plan::plan::{Action, Plan, Step};
use wk_remote::Remote;

use crate::engine::Engine;
use crate::error::{other_err, EngineError};
use crate::events::Event;
use crate::journal::Journal;

/// How long a compose call that starts, stops or recreates services may take (stop timeouts,
/// health checks, a slow daemon); every other remote command has wk-remote's default.
pub(crate) const COMPOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

mod command;
pub(crate) mod compose;
mod compose_create;
mod compose_env;
mod compose_service;
pub(crate) mod compose_up;
mod file;
mod lock;
pub(crate) use lock::{
    give_back as give_back_lock, lock_path, names_run, release as release_lock, take as take_lock,
};
mod mkdir;
mod nginx_conf;
mod preflight;
mod prometheus_job;
mod reload;
mod template;
mod unlock;
mod wait_health;
mod wait_joined;

/// A boxed future of the engine's (steps are joined on the runner's task, not spawned).
pub(crate) type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + 'a>>;

/// What a step found or did.
pub(crate) enum Done {
    /// Nothing to change (a note says what it found).
    Ok(String),
    /// It changed something (in a dry run: it would).
    Changed(String),
}

/// The file a file-changing kind writes, and the mode it sets (`None`: the file's own).
pub(crate) struct Target<'a> {
    pub path: &'a str,
    pub mode: Option<u32>,
    /// Whether the new text depends on the file's current one (a whole-file template does not).
    pub reads: bool,
}

/// What a kind of step is, whatever host it runs on.
pub(crate) trait Shape {
    /// Safe to run at once on several hosts within one playbook step (checks, file changes;
    /// by default a kind that edits a file).
    fn parallel(&self) -> bool {
        self.target().is_some()
    }

    /// Time spent in it is WuKongIM's own (waiting for health, joins), not orchestration.
    fn waits(&self) -> bool {
        false
    }

    /// The file it edits, for the preflight that tries every edit before anything changes.
    fn target(&self) -> Option<Target<'_>> {
        None
    }

    /// What it makes of the file's current text (`None`: no file); see [`Shape::target`].
    fn edit(&self, _old: Option<&str>) -> Result<String, String> {
        Err("this step does not edit a file".into())
    }

    /// Whether it starts a new node's WuKongIM (rollback stops it; resume knows it started).
    fn starts_new_node(&self, _step: &Step, _plan: &Plan) -> bool {
        false
    }
}

impl<'a> Target<'a> {
    /// A file edited in place: its mode stays, its new text depends on its text now.
    pub fn edited(path: &'a str) -> Self {
        Target {
            path,
            mode: None,
            reads: true,
        }
    }

    /// A file given `mode`; `reads`: its new text depends on its text now.
    pub fn with_mode(path: &'a str, mode: u32, reads: bool) -> Self {
        Target {
            path,
            mode: Some(mode),
            reads,
        }
    }
}

/// One kind of step, as it runs on a host.
pub(crate) trait Kind<R: Remote + 'static>: Shape {
    /// Observes, and unless it is as wanted: reports what would change (dry run), or journals,
    /// changes and verifies it.
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done>;

    // What a rollback asks of it, stage by stage (`crate::rollback`); each returns how many
    // changes it undid, and does nothing by default.

    /// `Stop`: what it started on a new node stops.
    fn stop<'a>(&'a self, _u: &'a Undo<'a, R>, _step: &'a Step) -> Fut<'a, usize> {
        Box::pin(async { Ok(0) })
    }

    /// `Revert`: a command it ran is undone by the playbook's own `undo:` command (the steps
    /// in reverse plan order).
    fn revert<'a>(&'a self, _u: &'a Undo<'a, R>, _step: &'a Step) -> Fut<'a, usize> {
        Box::pin(async { Ok(0) })
    }

    /// `Remove`: what it added to a file stops before the file goes back (`line`: its
    /// `before_image`).
    fn remove<'a>(&'a self, _u: &'a Undo<'a, R>, _line: &'a Value) -> Fut<'a, usize> {
        Box::pin(async { Ok(0) })
    }

    /// `Restore`: the file or directory of its `before_image` line goes back as it was; by
    /// default, a kind that edits a file puts it back from its before-image.
    fn restore<'a>(&'a self, u: &'a Undo<'a, R>, line: &'a Value) -> Fut<'a, usize> {
        Box::pin(async move {
            match self.target() {
                Some(_) => file::undo(u, line).await,
                None => Ok(0),
            }
        })
    }

    /// `Release`: what it holds for the run (its `lock` line) is let go.
    fn release<'a>(&'a self, _u: &'a Undo<'a, R>, _line: &'a Value) -> Fut<'a, usize> {
        Box::pin(async { Ok(0) })
    }
}

/// Binds `$k` to the kind of action `$a` (borrowing its fields) and evaluates `$body`: the one
/// place that knows which kind each action is.
macro_rules! with_kind {
    ($a:expr, $k:ident => $body:expr) => {
        match $a {
            Action::Preflight { checks } => {
                let $k = preflight::Preflight { checks };
                $body
            }
            Action::Lock { path } => {
                let $k = lock::Lock { path };
                $body
            }
            Action::Unlock { path } => {
                let $k = unlock::Unlock { path };
                $body
            }
            Action::Mkdir {
                path,
                mode,
                command,
            } => {
                let $k = mkdir::Mkdir {
                    path,
                    mode: *mode,
                    command,
                };
                $body
            }
            Action::Template {
                dest,
                mode,
                content,
                ..
            } => {
                let $k = template::Template {
                    dest,
                    mode: *mode,
                    content,
                };
                $body
            }
            Action::NginxConf {
                file,
                mode,
                content,
                upstreams,
                ..
            } => {
                let $k = nginx_conf::NginxConf {
                    file,
                    mode: *mode,
                    content,
                    upstreams,
                };
                $body
            }
            Action::ComposeEnv { file, service, env } => {
                let $k = compose_env::ComposeEnv { file, service, env };
                $body
            }
            Action::ComposeService {
                file,
                service,
                content,
                if_missing,
            } => {
                let $k = compose_service::ComposeService {
                    file,
                    service,
                    content,
                    if_missing: *if_missing,
                };
                $body
            }
            Action::PrometheusJob { file, content, .. } => {
                let $k = prometheus_job::PrometheusJob { file, content };
                $body
            }
            Action::ComposeUp {
                dir,
                services,
                command,
            } => {
                let $k = compose_up::ComposeUp {
                    dir,
                    services,
                    command,
                };
                $body
            }
            Action::ComposeCreate { dir, command } => {
                let $k = compose_create::ComposeCreate { dir, command };
                $body
            }
            Action::ComposeSignal {
                dir,
                service,
                command,
                ..
            } => {
                let $k = reload::Reload {
                    dir,
                    service,
                    command,
                };
                $body
            }
            Action::WaitHealth {
                address,
                path,
                timeout_secs,
            } => {
                let $k = wait_health::WaitHealth {
                    address,
                    path,
                    timeout_secs: *timeout_secs,
                };
                $body
            }
            Action::WaitJoined {
                node_id,
                timeout_secs,
            } => {
                let $k = wait_joined::WaitJoined {
                    node_id: *node_id,
                    timeout_secs: *timeout_secs,
                };
                $body
            }
            Action::Command { command, undo } => {
                let $k = command::RunCommand {
                    command,
                    undo: undo.as_ref(),
                };
                $body
            }
        }
    };
}

/// The kind of an action, to run it or undo it.
pub(crate) fn kind<'a, R: Remote + 'static>(a: &'a Action) -> Box<dyn Kind<R> + 'a> {
    with_kind!(a, k => Box::new(k))
}

/// The shape of an action's kind.
pub(crate) fn shape(a: &Action) -> Box<dyn Shape + '_> {
    with_kind!(a, k => Box::new(k))
}

/// A file's bytes and mode as they were before the run changed it.
pub(crate) type BeforeImage = (Vec<u8>, u32);

/// The state of a run that its steps share.
pub(crate) struct RunCtx {
    pub dry: bool,
    pub changed_paths: Mutex<BTreeSet<(String, String)>>,
    /// The first before-image of each file this run changed (`None`: it did not exist).
    pub before: Mutex<BTreeMap<(String, String), Option<BeforeImage>>>,
    pub journal: Option<tokio::sync::Mutex<Journal>>,
    pub owner: String,
    pub run_id: String,
    pub force_unlock: bool,
    pub token: Option<String>,
    /// The build (`app_version`) every member runs, which a new node must run too (`None`: not
    /// checked, as `--allow-version-mix` says or when the members did not tell).
    pub version: Option<String>,
    /// Backups that runs which stopped half way left on the hosts, as (host, path): this run
    /// took their changes over, and removes them with its own when it ends.
    pub stale_backups: Vec<(String, String)>,
    /// The look at a compose project, as (host, dir), that the last step there ended on; gone
    /// once anything of ours runs on the host (see `Cx::compose_state_known`).
    pub looks: Mutex<BTreeMap<(String, String), crate::docker::Services>>,
}

impl RunCtx {
    pub fn mark(&self, host: &str, path: &str) {
        self.changed_paths
            .lock()
            .expect("not poisoned")
            .insert((host.to_string(), path.to_string()));
    }

    pub fn is_changed(&self, host: &str, path: &str) -> bool {
        self.changed_paths
            .lock()
            .expect("not poisoned")
            .contains(&(host.to_string(), path.to_string()))
    }

    /// Appends to the journal (none in a dry run); the lock is held only for the line.
    pub async fn log(&self, entry: Value) -> std::io::Result<()> {
        match &self.journal {
            Some(j) => j.lock().await.append(entry),
            None => Ok(()),
        }
    }
}

/// What a step runs with: the engine, the step, its plan, the run, its host's connection.
pub(crate) struct Cx<'a, R: Remote> {
    pub e: &'a Engine<R>,
    pub step: &'a Step,
    pub plan: &'a Plan,
    pub run: &'a RunCtx,
    pub r: Arc<R>,
}

impl<R: Remote + 'static> Cx<'_, R> {
    /// A dry run's answer for a step that would run `command`: the command is shown.
    pub fn would(&self, command: &wk_plan::plan::Command, note: impl Into<String>) -> Done {
        self.e.say(Event::StepCommand {
            id: self.step.id.clone(),
            host: self.step.host.clone(),
            command: command.run.clone(),
        });
        Done::Changed(note.into())
    }
}

/// What a rollback runs with.
pub(crate) struct Undo<'a, R: Remote> {
    pub e: &'a Engine<R>,
    /// The run's directory (its journal, plan.json, the local before-images).
    pub dir: &'a Path,
    pub run_id: &'a str,
    pub plan: &'a Plan,
    pub lines: &'a [Value],
    pub dry: bool,
    pub journal: Mutex<Option<Journal>>,
}

impl<R: Remote + 'static> Undo<'_, R> {
    /// Tells the operator what was undone.
    pub fn done(&self, host: &str, what: impl Into<String>) {
        self.e.say(Event::StepChanged {
            id: "rollback".into(),
            host: host.to_string(),
            note: what.into(),
            ms: None,
        });
    }

    /// Tells the operator what a dry run would have done.
    pub fn would(&self, host: &str, what: impl Into<String>) {
        self.e.say(Event::StepOk {
            id: "rollback".into(),
            host: host.to_string(),
            note: what.into(),
            ms: None,
        });
    }

    /// A dry run shows a command instead of running it.
    pub fn show(&self, host: &str, command: String) {
        self.e.say(Event::StepCommand {
            id: "rollback".into(),
            host: host.to_string(),
            command,
        });
    }

    /// The local copy of the file a `before_image` line saved.
    pub fn before_copy(&self, line: &Value) -> Result<Vec<u8>, EngineError> {
        crate::runs::before_copy(self.dir, line)
    }

    /// Reports a change undone (in a dry run: that it would be) and journals it; it counts one.
    pub fn undone(&self, host: &str, path: &str, what: String) -> Result<usize, EngineError> {
        if self.dry {
            self.would(host, format!("would have {what}"));
        } else {
            self.log(serde_json::json!({"type": "undone", "host": host, "path": path}))?;
            self.done(host, what);
        }
        Ok(1)
    }

    /// Appends to the run's journal (none in a dry run).
    pub fn log(&self, entry: Value) -> Result<(), EngineError> {
        match self.journal.lock().expect("not poisoned").as_mut() {
            Some(j) => j.append(entry).map_err(other_err),
            None => Ok(()),
        }
    }

    /// `[sudo] flock . COMPOSE` for a host: its compose program (found as it is called: under the
    /// host's sudo when it has one), and its sudo mode's prefix as plans show it.
    pub async fn compose_of(&self, host: &str) -> Result<String, EngineError> {
        let sudo = self.e.sudo_mode(host);
        let prog = crate::docker::compose_program(
            self.e.remote(host)?.as_ref(),
            sudo != wk_plan::inventory::SudoMode::None,
        )
        .await;
        // Under the project's lock, as the plan's compose commands are.
        Ok(format!(
            "{}flock . {prog}",
            wk_plan::plan::sudo_prefix(sudo)
        ))
    }

    /// Ends a recreate a cut compose call left half done in a host's `dir` (as
    /// [`Cx::finish_recreate`] does), before its services come up again.
    pub async fn finish_recreate(&self, host: &str, dir: &str) -> Result<(), EngineError> {
        let sudo = self.e.sudo_mode(host);
        let script = crate::docker::finish_recreate_script(dir, wk_plan::plan::sudo_prefix(sudo));
        let out = self
            .e
            .remote(host)?
            .run(
                wk_remote::ExecRequest::new(script)
                    .sudo_inside(sudo != wk_plan::inventory::SudoMode::None)
                    .timeout(COMPOSE_TIMEOUT),
            )
            .await
            .map_err(crate::error::host_err)?;
        for line in out.stdout_str().lines() {
            self.done(host, line);
        }
        Ok(())
    }

    /// Runs a compose command built by [`Undo::compose_of`]; the remote feeds sudo its password.
    pub async fn run_compose(&self, host: &str, cmd: String) -> Result<(), EngineError> {
        let sudo = self.e.sudo_mode(host) != wk_plan::inventory::SudoMode::None;
        self.e
            .remote(host)?
            .run(
                wk_remote::ExecRequest::new(cmd)
                    .sudo_inside(sudo)
                    .timeout(COMPOSE_TIMEOUT),
            )
            .await
            .map_err(crate::error::host_err)?;
        Ok(())
    }
}

impl<R: Remote + 'static> Engine<R> {
    /// A host's sudo mode (none for a host the inventory does not list).
    pub(crate) fn sudo_mode(&self, host: &str) -> wk_plan::inventory::SudoMode {
        self.inv
            .node(host)
            .map(|n| n.ssh.sudo)
            .unwrap_or(wk_plan::inventory::SudoMode::None)
    }
}

/// The plan's steps on new nodes that create or start their services, which the journal says
/// began (a step that was cut may have done its work all the same).
fn new_node_steps_begun<'p>(plan: &'p Plan, lines: &[Value]) -> Vec<&'p Step> {
    let started: BTreeSet<(&str, &str)> = lines
        .iter()
        .filter(|l| l["type"] == "step_started")
        .filter_map(|l| Some((l["step"].as_str()?, l["host"].as_str()?)))
        .collect();
    plan.steps
        .iter()
        .filter(|s| started.contains(&(s.id.as_str(), s.host.as_str())))
        .filter(|s| shape(&s.action).starts_new_node(s, plan))
        .collect()
}

/// The new nodes whose services a run created or started (or began to), from its journal's
/// `step_started` lines: a rollback stops them, a resume accepts what they hold.
pub(crate) fn started_new_nodes(plan: &Plan, lines: &[Value]) -> BTreeSet<String> {
    new_node_steps_begun(plan, lines)
        .into_iter()
        .map(|s| s.host.clone())
        .collect()
}

/// Of those, the nodes whose WuKongIM the run began to start (`compose_up`; a container only
/// created never ran): only they can have joined.
pub(crate) fn ran_new_nodes(plan: &Plan, lines: &[Value]) -> BTreeSet<String> {
    new_node_steps_begun(plan, lines)
        .into_iter()
        .filter(|s| matches!(s.action, Action::ComposeUp { .. }))
        .map(|s| s.host.clone())
        .collect()
}

/// The members' `compose_up` steps a run began and never ended (no `ok`, `verified` or `failed`
/// line after their last `step_started`): a run killed inside one may have left the member's
/// WuKongIM stopped, or its recreate half done, which a resume sets right before its checks.
pub(crate) fn cut_member_ups(plan: &Plan, lines: &[Value]) -> Vec<Step> {
    let mut open: BTreeSet<(&str, &str)> = BTreeSet::new();
    for l in lines {
        let (Some(step), Some(host)) = (l["step"].as_str(), l["host"].as_str()) else {
            continue;
        };
        match l["type"].as_str() {
            Some("step_started") => {
                open.insert((step, host));
            }
            Some("ok" | "verified" | "failed") => {
                open.remove(&(step, host));
            }
            _ => {}
        }
    }
    plan.steps
        .iter()
        .filter(|s| open.contains(&(s.id.as_str(), s.host.as_str())))
        .filter(|s| matches!(s.action, Action::ComposeUp { .. }) && !on_new_node(s, plan))
        .cloned()
        .collect()
}

/// Whether a step runs on one of the nodes the plan adds.
pub(crate) fn on_new_node(step: &Step, plan: &Plan) -> bool {
    plan.adding.iter().any(|a| a.name == step.host)
}

#[cfg(test)]
mod local_tests;

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wk_plan::plan::{Action, Plan, Step};

    use super::shape;

    fn action(v: serde_json::Value) -> Action {
        serde_json::from_value(v).expect("an action")
    }

    /// Every action's kind: whether it runs on several hosts at once, whether its time is
    /// WuKongIM's, the file it edits (and whether it reads it first).
    #[test]
    fn every_action_has_its_kind() {
        let cmd = json!({"run": "true", "sudo": false});
        let cases = [
            (
                json!({"kind": "preflight", "checks": []}),
                true,
                false,
                None,
            ),
            (json!({"kind": "lock", "path": "/l"}), false, false, None),
            (json!({"kind": "unlock", "path": "/l"}), false, false, None),
            (
                json!({"kind": "mkdir", "path": "/d", "mode": 493, "command": cmd}),
                true,
                false,
                None,
            ),
            (
                json!({"kind": "template", "src": "t", "dest": "/f", "mode": 420, "content": "x"}),
                true,
                false,
                Some(("/f", Some(0o644), false)),
            ),
            (
                json!({"kind": "nginx_conf", "src": "t", "file": "/n", "mode": 420, "content": "x", "upstreams": []}),
                true,
                false,
                Some(("/n", Some(0o644), true)),
            ),
            (
                json!({"kind": "compose_env", "file": "/c", "service": {"image_name": "wukongim"}, "env": []}),
                true,
                false,
                Some(("/c", None, true)),
            ),
            (
                json!({"kind": "compose_service", "file": "/c", "service": "nginx", "content": "image: x\n", "if_missing": true}),
                true,
                false,
                Some(("/c", None, true)),
            ),
            (
                json!({"kind": "prometheus_job", "file": "/p", "jobs": [], "content": "[]"}),
                true,
                false,
                Some(("/p", None, true)),
            ),
            (
                json!({"kind": "compose_up", "dir": "/d", "services": [], "command": cmd}),
                false,
                false,
                None,
            ),
            (
                json!({"kind": "compose_signal", "dir": "/d", "service": {"name": "prometheus"}, "signal": "HUP", "command": cmd}),
                false,
                false,
                None,
            ),
            (
                json!({"kind": "wait_health", "address": "a:1", "path": "/health", "timeout_secs": 1}),
                true,
                true,
                None,
            ),
            (
                json!({"kind": "wait_joined", "node_id": 2, "timeout_secs": 1}),
                false,
                true,
                None,
            ),
            (
                json!({"kind": "command", "command": cmd, "undo": null}),
                false,
                false,
                None,
            ),
        ];
        for (v, parallel, waits, target) in cases {
            let a = action(v);
            let s = shape(&a);
            assert_eq!(s.parallel(), parallel, "{}", a.kind());
            assert_eq!(s.waits(), waits, "{}", a.kind());
            let t = s.target().map(|t| (t.path, t.mode, t.reads));
            assert_eq!(t, target, "{}", a.kind());
        }
    }

    #[test]
    fn file_kinds_make_the_new_text() {
        let svc = action(
            json!({"kind": "compose_service", "file": "/c", "service": "nginx", "content": "image: n\n", "if_missing": true}),
        );
        let with = "services:\n  nginx:\n    image: mine\n";
        assert_eq!(
            shape(&svc).edit(Some(with)).unwrap(),
            with,
            "an nginx already there stays"
        );
        let added = shape(&svc)
            .edit(Some("services:\n  a:\n    image: x\n"))
            .unwrap();
        assert!(added.contains("  nginx:\n    image: n\n"), "{added}");
        assert!(shape(&svc).edit(None).is_err(), "no compose file, no edit");
        let conf = action(
            json!({"kind": "nginx_conf", "src": "t", "file": "/n", "mode": 420, "content": "whole", "upstreams": []}),
        );
        assert_eq!(
            shape(&conf).edit(None).unwrap(),
            "whole",
            "a missing nginx.conf is written whole"
        );
        let lock = action(json!({"kind": "lock", "path": "/l"}));
        assert!(shape(&lock).edit(Some("x")).is_err());
    }

    /// Only a compose_up on a node being added starts a new node (rollback stops it, resume
    /// counts it started), and only once the journal says its step started.
    #[test]
    fn new_nodes_started_by_a_run() {
        let cmd = json!({"run": "true", "sudo": false});
        let step = |id: &str, host: &str, a: serde_json::Value| -> Step {
            serde_json::from_value(
                json!({"id": id, "host": host, "phase": "join", "title": "t", "action": a}),
            )
            .unwrap()
        };
        let up = json!({"kind": "compose_up", "dir": "/d", "services": [], "command": cmd});
        let plan: Plan = serde_json::from_value(json!({
            "cluster": "c", "playbook": "p", "fingerprint": "f",
            "adding": [{"name": "n2", "id": 2, "internal_address": "a"}],
            "members_before": [], "members_after": [], "gateway": "n1", "seed": "n1",
            "assumptions": [], "warnings": [],
            "steps": [
                step("member-up@n1", "n1", up.clone()),
                step("node-up@n2", "n2", up),
                step("joined@n2", "n2", json!({"kind": "wait_joined", "node_id": 2, "timeout_secs": 1})),
            ],
        }))
        .unwrap();
        let started = |ids: &[(&str, &str)]| {
            let lines: Vec<serde_json::Value> = ids
                .iter()
                .map(|(s, h)| json!({"type": "step_started", "step": s, "host": h}))
                .collect();
            super::started_new_nodes(&plan, &lines)
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            started(&[("member-up@n1", "n1"), ("joined@n2", "n2")]),
            Vec::<String>::new()
        );
        assert_eq!(started(&[("node-up@n2", "n2")]), vec!["n2".to_string()]);
        // A member's compose_up is cut when its last start has no end after it; a new node's
        // never counts (a rollback or the resumed step takes it as it is).
        let cut = |lines: &[(&str, &str)]| {
            let lines: Vec<serde_json::Value> = lines
                .iter()
                .map(|(t, s)| json!({"type": t, "step": s, "host": s.split('@').nth(1)}))
                .collect();
            super::cut_member_ups(&plan, &lines)
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cut(&[
                ("step_started", "member-up@n1"),
                ("step_started", "node-up@n2")
            ]),
            vec!["member-up@n1".to_string()]
        );
        for end in ["ok", "verified", "failed"] {
            assert!(cut(&[("step_started", "member-up@n1"), (end, "member-up@n1")]).is_empty());
        }
        assert_eq!(
            cut(&[
                ("step_started", "member-up@n1"),
                ("verified", "member-up@n1"),
                ("step_started", "member-up@n1"),
            ]),
            vec!["member-up@n1".to_string()],
            "a resume cut in the same step again"
        );
    }
}
