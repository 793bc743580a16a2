//! `lock`: the cluster's run lock, a file on the gateway made only if it is not there
//! (`set -C`), naming the owner and the run. Journaled before it is taken, so a run cut right
//! after can still release it; undone (released) only while it names the run.

use serde_json::json;
use wk_remote::{shell, ExecRequest, Remote};

use super::{Cx, Done, Fut, Kind, Shape, Undo};
use crate::error::{host_err, step_err, EngineError};
use crate::pause::{self, Point};

pub(crate) struct Lock<'a> {
    pub path: &'a str,
}

/// Whether a lock file's text names run `run_id`.
pub(crate) fn names_run(text: &[u8], run_id: &str) -> bool {
    String::from_utf8_lossy(text).contains(&format!("run={run_id} "))
}

impl Lock<'_> {
    async fn take<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Done, EngineError> {
        let (step, run, r, path) = (cx.step, cx.run, &cx.r, self.path);
        if run.dry {
            return Ok(Done::Ok(format!("would take {path}")));
        }
        let content = format!(
            "owner={} run={} time={}\n",
            run.owner,
            run.run_id,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        if run.force_unlock {
            r.remove(path).await.map_err(|e| step_err(step, e))?;
        }
        run.log(json!({"type": "lock", "step": step.id, "host": step.host, "path": path}))
            .await
            .map_err(|e| step_err(step, e))?;
        pause::at(step, Point::Middle).await;
        let out = r
            .exec(ExecRequest::new(format!("set -C; cat > {}", shell::path(path))).stdin(content))
            .await
            .map_err(|e| step_err(step, e))?;
        if out.success() {
            return Ok(Done::Ok(format!("took {path} (released at the end)")));
        }
        let holder = r
            .read_file(path)
            .await
            .ok()
            .flatten()
            .map(|f| String::from_utf8_lossy(&f.content).trim().to_string())
            .unwrap_or_default();
        // A resumed run finds its own lock.
        if names_run(holder.as_bytes(), &run.run_id) {
            return Ok(Done::Ok(format!("holds {path} (since the run began)")));
        }
        Err(EngineError::Locked {
            host: step.host.clone(),
            path: path.to_string(),
            holder,
        })
    }

    /// Releases the lock of a `lock` line, last in a rollback, while it names the run.
    async fn let_go<R: Remote + 'static>(
        &self,
        u: &Undo<'_, R>,
        line: &serde_json::Value,
    ) -> Result<usize, EngineError> {
        let host = line["host"].as_str().unwrap_or("");
        let path = line["path"].as_str().unwrap_or("");
        let r = u.e.remote(host)?;
        let held = r.read_file(path).await.map_err(host_err)?;
        if !held.is_some_and(|f| names_run(&f.content, u.run_id)) {
            return Ok(0);
        }
        if u.dry {
            u.would(host, format!("would have released {path}"));
            return Ok(0);
        }
        r.remove(path).await.map_err(host_err)?;
        u.log(json!({"type": "undone", "host": host, "path": path}))?;
        u.done(host, format!("released {path}"));
        Ok(0)
    }
}

impl Shape for Lock<'_> {}

impl<R: Remote + 'static> Kind<R> for Lock<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(self.take(cx))
    }

    fn release<'a>(&'a self, u: &'a Undo<'a, R>, line: &'a serde_json::Value) -> Fut<'a, usize> {
        Box::pin(self.let_go(u, line))
    }
}
