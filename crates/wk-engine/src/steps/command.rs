//! `command`: a shell command of the playbook's, run as its plan shows it. A rollback runs its
//! `undo:` command (when the playbook gives one) if the journal says the step started, in
//! reverse plan order, after new nodes' services stopped.

use std::time::Duration;

use wk_plan::plan::{Command, Step};
use wk_remote::{ExecRequest, Remote};

use super::{Cx, Done, Fut, Kind, Shape, Undo};
use crate::error::{host_err, EngineError};

pub(crate) struct RunCommand<'a> {
    pub command: &'a Command,
    pub undo: Option<&'a Command>,
}

impl RunCommand<'_> {
    async fn run<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Done, EngineError> {
        if cx.run.dry {
            return Ok(cx.would(self.command, "would run"));
        }
        cx.exec(self.command).await?;
        Ok(Done::Changed("ran".into()))
    }

    async fn run_undo<R: Remote + 'static>(
        &self,
        u: &Undo<'_, R>,
        step: &Step,
    ) -> Result<usize, EngineError> {
        let Some(undo) = self.undo else {
            return Ok(0);
        };
        let started = u.lines.iter().any(|l| {
            l["type"] == "step_started"
                && l["step"] == step.id.as_str()
                && l["host"] == step.host.as_str()
        });
        if !started {
            return Ok(0);
        }
        if u.dry {
            u.show(&step.host, undo.run.clone());
            return Ok(0);
        }
        let out =
            u.e.remote(&step.host)?
                .exec(
                    ExecRequest::new(undo.run.clone())
                        .sudo_inside(undo.sudo)
                        .timeout(Duration::from_secs(600)),
                )
                .await
                .map_err(host_err)?;
        if !out.success() {
            return Err(EngineError::Host(format!(
                "{}: the undo of step `{}` failed ({:?}): {}\n  fix: undo it by hand (`{}`), then run the rollback again",
                step.host,
                step.id,
                out.status,
                out.stderr_str().trim(),
                undo.run
            )));
        }
        u.done(
            &step.host,
            format!("undid `{}`: ran `{}`", step.id, undo.run),
        );
        Ok(1)
    }
}

impl Shape for RunCommand<'_> {}

impl<R: Remote + 'static> Kind<R> for RunCommand<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(self.run(cx))
    }

    fn revert<'a>(&'a self, u: &'a Undo<'a, R>, step: &'a Step) -> Fut<'a, usize> {
        Box::pin(self.run_undo(u, step))
    }
}
