//! Phase 2b, a resume only: the members the resumed run was cut inside the compose call of. A
//! run killed inside a member's `up -d` leaves its WuKongIM stopped (the new container created
//! and never started), or its recreate half done (a container under a temporary name, which
//! compose's next `up -d` refuses); the resume's checks would then refuse it for what the run
//! itself did. So first, one member after the other: the recreate is ended, the step's own
//! command starts the member's services again, and WuKongIM works in its cluster again. The
//! resumed step itself runs again after the checks, and verifies what it always does.

use std::time::{Duration, Instant};

use wk_plan::plan::{sudo_prefix, Action, Step};
use wk_remote::{ExecRequest, Remote};

use crate::docker::{self, Services};
use crate::engine::{Engine, Options};
use crate::error::{step_err, EngineError};
use crate::events::Event;

/// How long a member restarted here has to work in its cluster again (as `compose_up` allows).
const BACK: Duration = Duration::from_secs(120);

/// What a cut compose call left that compose did not end: a container under a temporary name,
/// or one created and never started.
fn cut_left(look: &Services) -> Vec<String> {
    let mut out: Vec<String> = look
        .leftovers()
        .iter()
        .map(|c| format!("{} {} under a temporary name", c.service, c.status))
        .collect();
    out.extend(
        look.0
            .iter()
            .filter(|c| c.status == "created" && !look.leftovers().contains(c))
            .map(|c| format!("{} created, never started", c.service)),
    );
    out
}

impl<R: Remote + 'static> Engine<R> {
    /// Sets right what the resumed run's cut `compose_up` steps on members left; `Ok(true)`
    /// when it started something (the seed and the facts are then asked again).
    pub(super) async fn restart_cut(&self, opts: &Options) -> Result<bool, EngineError> {
        let Some(r) = &opts.resume else {
            return Ok(false);
        };
        let mut started = false;
        for step in &r.cut {
            let Action::ComposeUp { dir, command, .. } = &step.action else {
                continue;
            };
            let left = cut_left(&self.cut_look(step, dir).await?);
            if left.is_empty() {
                continue;
            }
            let what = format!(
                "{}: the run being resumed was cut inside {} ({})",
                step.host,
                step.id,
                left.join(", ")
            );
            if opts.dry_run || opts.check_only {
                self.say(Event::Warning {
                    message: format!(
                        "{what}: `wkctl resume` starts its services again before its checks"
                    ),
                });
                continue;
            }
            let t = Instant::now();
            let (sudo, remote) = (self.sudo_mode(&step.host), self.remote(&step.host)?);
            let prefix = sudo_prefix(sudo);
            let inside = sudo != wk_plan::inventory::SudoMode::None;
            for (cmd, why) in [
                (
                    docker::finish_recreate_script(dir, prefix),
                    "cannot end the recreate",
                ),
                (command.run.clone(), "cannot start its services again"),
            ] {
                remote
                    .run(
                        ExecRequest::new(cmd)
                            .sudo_inside(inside)
                            .timeout(crate::steps::COMPOSE_TIMEOUT),
                    )
                    .await
                    .map_err(|e| step_err(step, format!("{what}; {why}: {e}")))?;
            }
            self.back_in_cluster(step).await?;
            started = true;
            self.say(Event::Warning {
                message: format!(
                    "{what}: its services run again, and its WuKongIM works in its cluster ({} ms)",
                    t.elapsed().as_millis()
                ),
            });
        }
        Ok(started)
    }

    async fn cut_look(&self, step: &Step, dir: &str) -> Result<Services, EngineError> {
        let sudo = self.sudo_mode(&step.host);
        let out = self
            .remote(&step.host)?
            .run(
                ExecRequest::new(docker::state_script(dir, sudo_prefix(sudo)))
                    .sudo_inside(sudo != wk_plan::inventory::SudoMode::None)
                    .timeout(Duration::from_secs(60)),
            )
            .await
            .map_err(|e| step_err(step, format!("cannot read what compose runs in {dir}: {e}")))?;
        Ok(Services::parse(&out.stdout_str()))
    }

    /// Waits until the member's WuKongIM answers healthy and works in its cluster again.
    async fn back_in_cluster(&self, step: &Step) -> Result<(), EngineError> {
        let Some(node) = self.inv.node(&step.host) else {
            return Ok(());
        };
        let r = self.remote(&step.host)?;
        let t = Instant::now();
        let mut poll = crate::poll::Poll::up_to(crate::poll::API);
        loop {
            let p = crate::facts::probe(Some(r.as_ref()), node, false).await;
            let last = match (&p.health, &p.not_ready) {
                (Ok(wk_cluster::Health::Ok), None) if p.members.is_ok() => return Ok(()),
                (Ok(_), Some(why)) => why.clone(),
                (Ok(h), None) => format!("{h:?}"),
                (Err(e), _) => e.clone(),
            };
            if t.elapsed() > BACK {
                return Err(step_err(
                    step,
                    format!("its services were started again, but WuKongIM did not work in its cluster within {} s (last: {last}); see `docker compose logs` on the host, then `wkctl resume` again", BACK.as_secs()),
                ));
            }
            poll.sleep().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::docker::{Container, Services};

    fn c(service: &str, status: &str, name: &str) -> Container {
        Container {
            id: "0123456789abcdef".into(),
            service: service.into(),
            status: status.into(),
            health: String::new(),
            restarts: 0,
            image: "i".into(),
            name: name.into(),
        }
    }

    /// What a cut recreate leaves is told; a member the operator stopped (exited under its
    /// own name) is not the run's doing, and is left alone.
    #[test]
    fn a_cut_compose_call_leaves_a_temporary_name_or_a_container_never_started() {
        let running = c("wukongim", "running", "wk-wukongim-1");
        assert!(super::cut_left(&Services(vec![running.clone()])).is_empty());
        assert!(
            super::cut_left(&Services(vec![c("wukongim", "exited", "wk-wukongim-1")])).is_empty()
        );
        assert_eq!(
            super::cut_left(&Services(vec![c("wukongim", "created", "wk-wukongim-1")])),
            ["wukongim created, never started"]
        );
        assert_eq!(
            super::cut_left(&Services(vec![
                c("wukongim", "exited", "wk-wukongim-1"),
                c("wukongim", "created", "0123456789ab_wk-wukongim-1"),
            ])),
            ["wukongim created under a temporary name"]
        );
    }
}
