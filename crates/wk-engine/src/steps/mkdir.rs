//! `mkdir`: a new node's install directory. Undone by removing it with all it holds, including
//! what Docker made in it as root (a bind mount's missing source: `wukongim_data`).

use serde_json::json;
use wk_plan::plan::Command;
use wk_remote::{shell, ExecRequest, Remote};

use super::{Cx, Done, Fut, Kind, Shape, Undo};
use crate::engine::Engine;
use crate::error::{host_err, step_err, EngineError};
use crate::pause::{self, Point};

pub(crate) struct Mkdir<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub command: &'a Command,
}

impl Mkdir<'_> {
    async fn make<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Done, EngineError> {
        let (step, path) = (cx.step, self.path);
        match cx.r.stat(path).await.map_err(|e| step_err(step, e))? {
            Some(s) if s.is_dir => return Ok(Done::Ok(format!("{path} exists"))),
            // Not ours to replace: a rollback would remove what it took for the run's directory.
            Some(_) => {
                return Err(step_err(
                    step,
                    format!("{path} exists and is not a directory; move it away (after checking it is not needed), then run again"),
                ))
            }
            None => {}
        }
        if cx.run.dry {
            return Ok(cx.would(self.command, format!("would create {path}")));
        }
        cx.run
            .log(json!({"type": "before_image", "step": step.id, "host": step.host, "path": path, "existed": false, "dir": true}))
            .await
            .map_err(|e| step_err(step, e))?;
        pause::at(step, Point::Middle).await;
        cx.r.mkdir_p(path, self.mode)
            .await
            .map_err(|e| step_err(step, e))?;
        Ok(Done::Changed(format!("created {path}")))
    }
}

impl Shape for Mkdir<'_> {
    fn parallel(&self) -> bool {
        true
    }
}

impl<R: Remote + 'static> Kind<R> for Mkdir<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(self.make(cx))
    }

    fn restore<'a>(&'a self, u: &'a Undo<'a, R>, line: &'a serde_json::Value) -> Fut<'a, usize> {
        Box::pin(async move {
            let host = line["host"].as_str().unwrap_or("");
            let path = line["path"].as_str().unwrap_or("");
            if !u.dry {
                u.e.remove_tree(host, path).await?;
            }
            u.undone(host, path, format!("removed {path} (created by the run)"))
        })
    }
}

impl<R: Remote + 'static> Engine<R> {
    /// Removes a directory the run created, with what Docker put in it: a bind mount's source
    /// that did not exist is made by the daemon, as root (a new node's `wukongim_data`). Through
    /// the host's sudo when it has one; else a throwaway container of the node's image (the user
    /// reaches Docker, not root) empties what the user cannot remove.
    async fn remove_tree(&self, host: &str, path: &str) -> Result<(), EngineError> {
        let mode = self.sudo_mode(host);
        let sudo = mode != wk_plan::inventory::SudoMode::None;
        let p = shell::path(path);
        let script = if sudo {
            // The path as the SSH user sees it (`~` is the user's home; sudo would make it root's).
            let prefix = wk_plan::plan::sudo_prefix(mode);
            format!("p={p}\n{prefix}rm -rf -- \"$p\"")
        } else {
            format!(
                "p={p}\nrm -rf -- \"$p\" 2>/dev/null && exit 0\nd=$(cd -- \"$p\" && pwd) || exit 1\ndocker run --rm --network none --entrypoint /bin/sh -v \"$d\":/wkctl-clean {} -c 'rm -rf /wkctl-clean/* /wkctl-clean/.[!.]* /wkctl-clean/..?*' && rm -rf -- \"$p\"",
                shell::quote(&self.inv.image)
            )
        };
        let out = self
            .remote(host)?
            .exec(ExecRequest::new(script).sudo_inside(sudo))
            .await
            .map_err(host_err)?;
        if !out.success() {
            return Err(EngineError::Host(format!(
                "{host}: cannot remove {path}: {}\n  fix: remove it by hand (it holds what Docker made as root: `sudo rm -rf {path}`), then run the rollback again",
                out.stderr_str().trim()
            )));
        }
        Ok(())
    }
}
