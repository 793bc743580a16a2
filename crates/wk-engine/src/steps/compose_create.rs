//! `compose_create`: a new node's containers created and not started (`up --no-start`), while
//! the members restart: its start in the join is then only a start, and an image it cannot
//! have shows before any member restarts. Verified: the project has its containers. Undone
//! with the node's start (`compose_up`): its services stop and go (`down`).

use wk_plan::plan::{Command, Plan, Step};
use wk_remote::Remote;

use super::{Cx, Done, Fut, Kind, Shape, Undo};
use crate::error::{step_err, EngineError};
use crate::pause::{self, Point};

pub(crate) struct ComposeCreate<'a> {
    pub dir: &'a str,
    pub command: &'a Command,
}

impl ComposeCreate<'_> {
    async fn create<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Done, EngineError> {
        let (step, dir) = (cx.step, self.dir);
        let compose_file = format!("{}/docker-compose.yml", dir.trim_end_matches('/'));
        let before = cx.compose_state_known(dir).await?;
        if !cx.run.is_changed(&step.host, &compose_file) && !before.0.is_empty() {
            return Ok(Done::Ok(format!(
                "its containers exist and its compose file did not change ({})",
                before.describe()
            )));
        }
        if cx.run.dry {
            return Ok(cx.would(self.command, "would create its containers"));
        }
        let fixed = cx.finish_recreate(dir, &before).await?;
        cx.exec(self.command).await?;
        pause::at(step, Point::Middle).await;
        let look = cx.compose_state(dir).await?;
        if look.0.is_empty() {
            return Err(step_err(
                step,
                format!(
                    "`{}` left no container in {dir}; see `docker compose config` there",
                    self.command.run
                ),
            ));
        }
        let mut note = format!("created: {}", look.describe());
        if let Some(f) = fixed {
            note.push_str(&format!(" (first ended a cut recreate: {f})"));
        }
        // The node's start begins from this look: nothing of ours runs there in between.
        cx.keep_look(dir, look);
        Ok(Done::Changed(note))
    }
}

impl Shape for ComposeCreate<'_> {
    /// New nodes' containers are created on all of them at once.
    fn parallel(&self) -> bool {
        true
    }

    fn starts_new_node(&self, step: &Step, plan: &Plan) -> bool {
        super::on_new_node(step, plan)
    }
}

impl<R: Remote + 'static> Kind<R> for ComposeCreate<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(self.create(cx))
    }

    fn stop<'a>(&'a self, u: &'a Undo<'a, R>, step: &'a Step) -> Fut<'a, usize> {
        Box::pin(super::compose_up::down(u, step))
    }
}
