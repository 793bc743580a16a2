//! `compose_up`: `docker compose up -d` of an install dir's services, when their compose file
//! changed or they do not all run; a running nginx whose nginx.conf changed checks it and
//! reloads instead (or after). Verified: every service it started runs and keeps running, nginx
//! runs the file the run wrote, and a member's WuKongIM works in its cluster again (live
//! signals, not /health alone) before anything else restarts (a rolling restart). Undone: a new
//! node's services stop and go (`down`); a host whose files a rollback restored has its
//! services come up on them again.

use std::time::{Duration, Instant};

use wk_cluster::Api;
use wk_plan::inventory::PORT_API;
use wk_plan::plan::{Command, Plan, Step};
use wk_plan::playbook::ServiceSelector;
use wk_remote::{shell, Remote};

use super::{Cx, Done, Fut, Kind, Shape, Undo};
use crate::docker::Services;
use crate::error::{step_err, EngineError};
use crate::pause::{self, Point};

/// Docker restarts a container whose process exited after 100 ms at first (doubling after):
/// a process that dies at once shows `restarting`, or a higher restart count, at a look this
/// long after one that saw it run.
const STEADY: Duration = Duration::from_millis(100);

pub(crate) struct ComposeUp<'a> {
    pub dir: &'a str,
    pub services: &'a [ServiceSelector],
    pub command: &'a Command,
}

/// What the step found before it acts.
struct Seen {
    compose_file_changed: bool,
    conf_changed: bool,
    nginx_conf: String,
    /// The services the command names (none: all of the project's).
    names: Vec<String>,
    /// Those of them that are a member's WuKongIM (found by image).
    member_names: Vec<String>,
    all_running: bool,
    /// Every member service among them runs (true when there is none).
    member_running: bool,
    /// Whether nginx is among its services, and runs now.
    nginx: bool,
    nginx_ran: bool,
    /// Whether it waits for a member's WuKongIM to work in its cluster again.
    member: bool,
    /// The look it started from.
    state: Services,
}

impl ComposeUp<'_> {
    /// Whether a member's WuKongIM (found by image) is among its services.
    fn member(&self) -> bool {
        self.services
            .iter()
            .any(|sv| matches!(sv, ServiceSelector::ImageName(_)))
    }

    async fn seen<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Seen, EngineError> {
        let dir = self.dir.trim_end_matches('/');
        let compose_file = format!("{dir}/docker-compose.yml");
        let nginx_conf = format!("{dir}/nginx.conf");
        let state = cx.compose_state_known(self.dir).await?;
        let names: Vec<String> = self
            .command
            .run
            .split_whitespace()
            .skip_while(|w| *w != "-d")
            .skip(1)
            .map(str::to_string)
            .collect();
        let all_running = if names.is_empty() {
            state.all_running()
        } else {
            names.iter().all(|n| state.running(n))
        };
        let member_names: Vec<String> = self
            .services
            .iter()
            .zip(&names)
            .filter(|(sv, _)| matches!(sv, ServiceSelector::ImageName(_)))
            .map(|(_, n)| n.clone())
            .collect();
        let member_running = if member_names.is_empty() && self.member() {
            // All of the project's services, the member's among them.
            all_running
        } else {
            member_names.iter().all(|n| state.running(n))
        };
        let nginx = self
            .services
            .iter()
            .any(|s| *s == ServiceSelector::Name("nginx".into()));
        Ok(Seen {
            compose_file_changed: cx.run.is_changed(&cx.step.host, &compose_file),
            conf_changed: cx.run.is_changed(&cx.step.host, &nginx_conf),
            nginx_conf,
            names,
            member_names,
            all_running,
            member_running,
            nginx,
            nginx_ran: nginx && state.running("nginx"),
            member: self.member(),
            state,
        })
    }

    async fn up<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Done, EngineError> {
        let (step, dir) = (cx.step, self.dir);
        let mut s = self.seen(cx).await?;
        if !s.compose_file_changed && s.all_running && !(s.nginx && s.conf_changed) {
            return Ok(Done::Ok(
                "running, and its configuration did not change".into(),
            ));
        }
        // A member the operator stopped stays stopped unless its configuration changed; the
        // step's other services (nginx started together with the gateway's member) still come
        // up, by a command that names only them.
        let mut command = self.command.clone();
        let mut left = None;
        if s.member && !s.compose_file_changed && !s.member_running {
            let others: Vec<String> = s
                .names
                .iter()
                .filter(|n| !s.member_names.contains(n))
                .cloned()
                .collect();
            let note = "not running, and its compose file did not change: left stopped";
            // No names (all of the project's services): the member's among them.
            if others.is_empty() {
                return Ok(Done::Ok(note.into()));
            }
            let at = command
                .run
                .find(" up -d")
                .map_or(command.run.len(), |i| i + 6);
            command.run = format!("{} {}", &command.run[..at], others.join(" "));
            s.all_running = others.iter().all(|n| s.state.running(n));
            s.names = others;
            s.member = false;
            left = Some(note);
            if s.all_running && !(s.nginx && s.conf_changed) {
                return Ok(Done::Ok(format!("its WuKongIM is {note}; the rest runs")));
            }
        }
        if cx.run.dry {
            let first = match s.state.leftovers().len() {
                0 => String::new(),
                n => format!("; would first end the recreate a cut compose call left half done ({n} container(s) under a temporary name)"),
            };
            return Ok(cx.would(&command, format!("would (re)start{first}")));
        }
        // nginx reads its file only when it starts or reloads: a running nginx whose file
        // changed checks it, then reloads (after `up -d`, which recreates it only when its
        // service changed).
        let reload = s.nginx && s.conf_changed && s.nginx_ran;
        if reload {
            let out = cx.compose(dir, "exec -T nginx nginx -t").await?;
            if !out.success() {
                let why = cx.restore(&s.nginx_conf).await?;
                return Err(step_err(
                    step,
                    format!("nginx rejected the new nginx.conf ({}); {why}; nginx goes on serving the old one", out.stderr_str().trim()),
                ));
            }
        }
        let reload_only = s.nginx && s.conf_changed && s.all_running && !s.compose_file_changed;
        let mut fixed = None;
        if !reload_only {
            fixed = cx.finish_recreate(dir, &s.state).await?;
            cx.exec(&command).await?;
        }
        if reload {
            let out = cx.compose(dir, "kill -s HUP nginx").await?;
            if !out.success() {
                return Err(step_err(
                    step,
                    format!("reloading nginx failed: {}", out.stderr_str().trim()),
                ));
            }
        }
        // Every container the call (re)started was running by now.
        let returned = Instant::now();
        pause::at(step, Point::Middle).await;
        self.steady(cx, &s, returned).await?;
        let done = if reload_only {
            "nginx reloaded".into()
        } else {
            format!(
                "up: {}",
                if s.names.is_empty() {
                    "all services".into()
                } else {
                    s.names.join(", ")
                }
            )
        };
        let done = match fixed {
            Some(f) => format!("{done} (first ended a cut recreate: {f})"),
            None => done,
        };
        Ok(Done::Changed(match left {
            Some(note) => format!("{done}; its WuKongIM is {note}"),
            None => done,
        }))
    }

    /// Every service it started runs, does what the step verifies, and still runs the same
    /// process at a look [`STEADY`] or more after it was known to run (a container whose
    /// process keeps dying shows `running` between its restarts): after the compose call
    /// returned, when the first look shows the runs it started (no restart since: each
    /// container's restart count as before it, 0 for a new one), else after that look. What
    /// the step verifies fills the time between the two looks: nothing waits for its own sake
    /// once it has passed. A restart in between sends it round again, as what was verified may
    /// have been the run before. An nginx that refused the new file at its first start gets its
    /// old file back and is stopped.
    async fn steady<R: Remote + 'static>(
        &self,
        cx: &Cx<'_, R>,
        s: &Seen,
        returned: Instant,
    ) -> Result<(), EngineError> {
        let t = Instant::now();
        let mut poll = crate::poll::Poll::up_to(Duration::from_millis(300));
        let mut anchor = Some(returned);
        loop {
            let first = self.running(cx, s, t, &mut poll).await?;
            let seen = Instant::now();
            let since = match anchor.take() {
                Some(r) if s.state.first_runs(&first) => r,
                _ => seen,
            };
            let verified = self.verify(cx, s).await;
            if let Some(rest) = STEADY.checked_sub(since.elapsed()) {
                tokio::time::sleep(rest).await;
            }
            let last = cx.compose_state(self.dir).await?;
            if first.same_run(&last) {
                if verified.is_ok() {
                    cx.keep_look(self.dir, last);
                }
                return verified;
            }
        }
    }

    /// The first look at which every service it started runs (polled from 25 ms on); errors
    /// once they have not within 20 s, or nginx has kept restarting for 2 s.
    async fn running<R: Remote + 'static>(
        &self,
        cx: &Cx<'_, R>,
        s: &Seen,
        t: Instant,
        poll: &mut crate::poll::Poll,
    ) -> Result<Services, EngineError> {
        let (step, dir) = (cx.step, self.dir);
        loop {
            let state = cx.compose_state(dir).await?;
            let ok = if s.names.is_empty() {
                state.none_restarting()
            } else {
                s.names.iter().all(|n| state.running(n))
            };
            let nginx_looping = state.restarting("nginx")
                || state
                    .0
                    .iter()
                    .any(|c| c.service == "nginx" && c.restarts > 0);
            if t.elapsed() > Duration::from_secs(20)
                || (nginx_looping && t.elapsed() > Duration::from_secs(2))
            {
                if s.nginx && s.conf_changed && (nginx_looping || !state.running("nginx")) {
                    let logs = cx
                        .compose(dir, "logs nginx 2>&1 | tail -5")
                        .await
                        .map(|o| o.stdout_str())
                        .unwrap_or_default();
                    // Stopped before its file goes: a restart in between would find the bind
                    // mount's source missing, and Docker would make it a directory.
                    let _ = cx.compose(dir, "stop nginx").await;
                    let why = cx.restore(&s.nginx_conf).await?;
                    return Err(step_err(step, format!("nginx did not start with the new nginx.conf:\n{}\n{why}; nginx was stopped", logs.trim())));
                }
                return Err(step_err(
                    step,
                    format!("services did not start: {}", state.describe()),
                ));
            }
            if ok {
                return Ok(state);
            }
            poll.sleep().await;
        }
    }

    /// What the step checks once its services run: nginx runs the file the run wrote; a
    /// member's WuKongIM works in its cluster again.
    async fn verify<R: Remote + 'static>(
        &self,
        cx: &Cx<'_, R>,
        s: &Seen,
    ) -> Result<(), EngineError> {
        // Both at once: nginx started together with the gateway's member.
        let nginx = async {
            if s.nginx && s.conf_changed {
                cx.container_sees(self.dir, "nginx", &s.nginx_conf, "/etc/nginx/nginx.conf")
                    .await?;
            }
            Ok(())
        };
        let member = async {
            if s.member {
                self.member_healthy(cx).await?;
            }
            Ok(())
        };
        tokio::try_join!(nginx, member).map(|_| ())
    }

    /// A member's WuKongIM restarted: wait until it works in its cluster again, on live
    /// signals (`Api::not_ready`: /health reads only the local config, 200 at once after a
    /// restart), before anything else restarts, so a cluster never loses two members at once.
    async fn member_healthy<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<(), EngineError> {
        let step = cx.step;
        let Some(node) = cx.e.inv.node(&step.host) else {
            return Ok(());
        };
        let t = Instant::now();
        let mut last: String;
        let mut poll = crate::poll::Poll::up_to(crate::poll::API);
        loop {
            match cx.r.tunnel(&node.internal_address, PORT_API).await {
                Ok(tn) => match Api::new(&step.host, &tn.socket, &tn.target, cx.run.token.clone())
                    .not_ready(node.id as u64)
                    .await
                {
                    Ok(None) => return Ok(()),
                    Ok(Some(why)) => last = why,
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            if t.elapsed() > Duration::from_secs(120) {
                return Err(step_err(step, format!("WuKongIM did not work in its cluster again within 120 s after its restart (last: {last}); see `docker compose logs` on the host")));
            }
            poll.sleep().await;
        }
    }
}

/// A new node's services, stopped and removed, first in a rollback, by the first step of the
/// plan that starts them on the host (its containers' creation, else its start), once the
/// journal says one of those started (a start that was cut may have started them too).
pub(crate) async fn down<R: Remote + 'static>(
    u: &Undo<'_, R>,
    step: &Step,
) -> Result<usize, EngineError> {
    let name = &step.host;
    let first = u
        .plan
        .steps
        .iter()
        .find(|s| s.host == *name && super::shape(&s.action).starts_new_node(s, u.plan));
    if first.map(|s| &s.id) != Some(&step.id)
        || !super::started_new_nodes(u.plan, u.lines).contains(name)
    {
        return Ok(0);
    }
    let node =
        u.e.inv.node(name).ok_or_else(|| {
            EngineError::Input(format!("{name} is not in the inventory any more"))
        })?;
    // A rollback cut after it removed the install dir runs again: nothing is left to stop.
    let dir = u.e.remote(name)?.stat(&node.install_dir).await;
    if dir.map_err(crate::error::host_err)?.is_none() {
        return Ok(0);
    }
    let cmd = format!(
        "cd {} && {} down",
        shell::path(&node.install_dir),
        u.compose_of(name).await?
    );
    if u.dry {
        u.show(name, cmd);
        return Ok(0);
    }
    u.run_compose(name, cmd).await?;
    u.done(name, "stopped and removed WuKongIM");
    Ok(1)
}

/// A host whose files a rollback restored: its services come up on them again, and nginx and
/// Prometheus re-read theirs (kept inode: the containers see them; `up -d` recreates neither
/// when its service did not change). A host without one of them has nothing to reload.
pub(crate) async fn restart_restored<R: Remote + 'static>(
    u: &Undo<'_, R>,
    host: &str,
) -> Result<(), EngineError> {
    let Some(node) = u.e.inv.node(host) else {
        return Ok(());
    };
    let compose = u.compose_of(host).await?;
    let d = shell::path(&node.install_dir);
    // One compose call per command line: sudo reads its password once per command.
    let up = format!("cd {d} && {compose} up -d");
    let reload = format!("cd {d} && {compose} kill -s HUP prometheus");
    let reload_nginx = format!("cd {d} && {compose} kill -s HUP nginx");
    if u.dry {
        for command in [up, reload, reload_nginx] {
            u.show(host, command);
        }
        return Ok(());
    }
    u.finish_recreate(host, &node.install_dir).await?;
    u.run_compose(host, up).await?;
    let _ = u.run_compose(host, reload).await;
    let _ = u.run_compose(host, reload_nginx).await;
    u.done(host, "services up again on the restored files");
    Ok(())
}

impl Shape for ComposeUp<'_> {
    fn starts_new_node(&self, step: &Step, plan: &Plan) -> bool {
        super::on_new_node(step, plan)
    }
}

impl<R: Remote + 'static> Kind<R> for ComposeUp<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(self.up(cx))
    }

    fn stop<'a>(&'a self, u: &'a Undo<'a, R>, step: &'a Step) -> Fut<'a, usize> {
        Box::pin(down(u, step))
    }
}
