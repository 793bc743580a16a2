//! `unlock`: the end of a run removes the backups it left on the hosts and releases its lock
//! (only its own). Nothing to undo: a rollback releases the lock through the `lock` step.

use wk_remote::Remote;

use super::lock::names_run;
use super::{Cx, Done, Fut, Kind, Shape};
use crate::error::{step_err, EngineError};
use crate::pause::{self, Point};

pub(crate) struct Unlock<'a> {
    pub path: &'a str,
}

impl Unlock<'_> {
    /// Removes the lock while it names this run; another run's lock is left alone.
    async fn release_own<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Done, EngineError> {
        let (step, path) = (cx.step, self.path);
        if cx.run.dry {
            return Ok(Done::Ok(format!("would release {path}")));
        }
        let held = cx.r.read_file(path).await.map_err(|e| step_err(step, e))?;
        if held
            .as_ref()
            .is_none_or(|f| names_run(&f.content, &cx.run.run_id))
        {
            remove_backups(cx).await?;
        }
        match held {
            Some(f) if names_run(&f.content, &cx.run.run_id) => {
                pause::at(step, Point::Middle).await;
                cx.r.remove(path).await.map_err(|e| step_err(step, e))?;
                Ok(Done::Ok(format!("released {path}")))
            }
            Some(_) => Err(step_err(
                step,
                format!("{path} is held by another run; left alone"),
            )),
            None => Ok(Done::Ok("no lock to release".into())),
        }
    }
}

/// The run is done and verified: it leaves no copy of a file it changed on the hosts
/// (`<path>.wkctl-<run>.bak`, with the file's secrets; what a rollback needs is in the journal's
/// local copies), nor those of runs that stopped half way and whose changes it took over. A host
/// that cannot be reached fails the step (the run stops with its lock, and a resume ends it).
async fn remove_backups<R: Remote + 'static>(cx: &Cx<'_, R>) -> Result<(), EngineError> {
    let mut backups: Vec<(String, String)> = cx
        .run
        .before
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|(_, image)| image.is_some())
        .map(|((host, path), _)| (host.clone(), format!("{path}.wkctl-{}.bak", cx.run.run_id)))
        .collect();
    backups.extend(cx.run.stale_backups.iter().cloned());
    // One command per host.
    let mut by_host: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (host, bak) in backups {
        by_host
            .entry(host)
            .or_default()
            .push(wk_remote::shell::path(&bak));
    }
    for (host, paths) in by_host {
        let cmd = format!("rm -f -- {}", paths.join(" "));
        cx.e.remote(&host)?
            .run(wk_remote::ExecRequest::new(cmd))
            .await
            .map_err(|e| step_err(cx.step, format!("cannot remove the backups: {e}")))?;
    }
    Ok(())
}

impl Shape for Unlock<'_> {}

impl<R: Remote + 'static> Kind<R> for Unlock<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(self.release_own(cx))
    }
}
