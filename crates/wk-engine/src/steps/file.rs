//! What every file-changing kind (template, nginx_conf, compose_env, compose_service,
//! prometheus_job) does with its file: observe it, make the new text with the kind's edit, show
//! the diff (dry run) or journal the before-image, keep a backup on the host, write it (keeping
//! its inode when a container bind-mounts it), read it back; and undo it from the before-image.

use serde_json::{json, Value};
use wk_remote::{shell, ExecRequest, Remote};

use super::{Cx, Done, Shape, Undo};
use crate::docker;
use crate::error::{host_err, step_err, EngineError};
use crate::events::Event;
use crate::journal::sha256_hex;
use crate::pause::{self, Point};
use crate::text::unified;
use wk_plan::mask_secrets;

/// Observe the kind's file, compute what it should be, and (unless dry) journal and write it.
pub(super) async fn apply<R: Remote + 'static>(
    cx: &Cx<'_, R>,
    kind: &dyn Shape,
) -> Result<Done, EngineError> {
    let (step, run, r) = (cx.step, cx.run, &cx.r);
    let target = kind.target().expect("a file-changing kind");
    let (path, mode) = (target.path, target.mode);
    let old = r.read_file(path).await.map_err(|e| step_err(step, e))?;
    let old_text = old
        .as_ref()
        .map(|f| String::from_utf8_lossy(&f.content).into_owned());
    let new = kind
        .edit(old_text.as_deref())
        .map_err(|e| step_err(step, format!("{path}: {e}")))?;
    let same_mode = mode.is_none() || old.as_ref().map(|f| Some(f.mode) == mode).unwrap_or(false);
    if old.as_ref().is_some_and(|f| f.content == new.as_bytes()) && same_mode {
        return Ok(Done::Ok(format!("{path} is already as wanted")));
    }
    // Later steps (compose up, reloads) act on what changed, or would change in a dry run.
    run.mark(&step.host, path);
    if run.dry {
        let diff = mask_secrets(&unified(path, old_text.as_deref().unwrap_or(""), &new));
        cx.e.say(Event::StepDiff {
            id: step.id.clone(),
            host: step.host.clone(),
            path: path.to_string(),
            diff,
        });
        return Ok(Done::Changed(format!(
            "would {} {path}",
            if old.is_some() { "change" } else { "create" }
        )));
    }
    journal_before(cx, path, old.as_ref(), new.as_bytes()).await?;
    pause::at(step, Point::Middle).await;
    docker::write(
        &**r,
        path,
        new.as_bytes(),
        mode.or(old.as_ref().map(|f| f.mode)),
    )
    .await
    .map_err(|e| step_err(step, e))?;
    run.log(json!({"type": "applied", "step": step.id, "host": step.host, "path": path, "sha256": sha256_hex(new.as_bytes())}))
        .await
        .map_err(|e| step_err(step, e))?;
    let back = r.read_file(path).await.map_err(|e| step_err(step, e))?;
    if back.map(|f| f.content) != Some(new.into_bytes()) {
        return Err(step_err(
            step,
            format!("{path} does not read back as written"),
        ));
    }
    run.mark(&step.host, path);
    Ok(Done::Changed(format!(
        "{} {path}",
        if old.is_some() { "changed" } else { "created" }
    )))
}

/// Before a file changes: its first before-image kept for the run, a local copy and a journal
/// line, and a backup beside it on the host (as it was before the run's first change: a later
/// step or a resumed one does not overwrite it).
async fn journal_before<R: Remote + 'static>(
    cx: &Cx<'_, R>,
    path: &str,
    old: Option<&wk_remote::FileImage>,
    new: &[u8],
) -> Result<(), EngineError> {
    let (step, run) = (cx.step, cx.run);
    run.before
        .lock()
        .expect("not poisoned")
        .entry((step.host.clone(), path.to_string()))
        .or_insert_with(|| old.map(|f| (f.content.clone(), f.mode)));
    // The journal is held only while a line is written: steps on other hosts go on.
    let copy = match old {
        Some(f) => Some(
            run.journal
                .as_ref()
                .expect("a journal when not dry")
                .lock()
                .await
                .save_before(&step.id, &f.content)
                .map_err(|e| step_err(step, e))?,
        ),
        None => None,
    };
    run.log(json!({
        "type": "before_image", "step": step.id, "host": step.host, "path": path,
        "existed": old.is_some(), "mode": old.map(|f| f.mode),
        "sha256": old.map(|f| sha256_hex(&f.content)), "copy": copy,
        "backup": old.map(|_| format!("{path}.wkctl-{}.bak", run.run_id)),
        "writes": sha256_hex(new),
    }))
    .await
    .map_err(|e| step_err(step, e))?;
    if old.is_some() {
        let bak = shell::path(&format!("{path}.wkctl-{}.bak", run.run_id));
        let cmd = format!("[ -e {bak} ] || cp -p -- {} {bak}", shell::path(path));
        cx.r.run(ExecRequest::new(cmd))
            .await
            .map_err(|e| step_err(step, e))?;
    }
    Ok(())
}

impl<R: Remote + 'static> Cx<'_, R> {
    /// Puts a file this run changed back as it was (or removes it if it was not there).
    pub async fn restore(&self, path: &str) -> Result<String, EngineError> {
        let before = self
            .run
            .before
            .lock()
            .expect("not poisoned")
            .get(&(self.step.host.clone(), path.to_string()))
            .cloned();
        match before {
            Some(Some((content, mode))) => {
                docker::write(&*self.r, path, &content, Some(mode))
                    .await
                    .map_err(|e| step_err(self.step, e))?;
                Ok(format!("{path} is restored as it was before this run"))
            }
            Some(None) => {
                self.r
                    .remove(path)
                    .await
                    .map_err(|e| step_err(self.step, e))?;
                Ok(format!("{path}, which this run created, is removed"))
            }
            None => Ok(format!("{path} was not changed by this run")),
        }
    }
}

/// A rollback puts the file of a `before_image` line back: the bytes and mode of the local
/// copy (and the host's backup goes: the file holds what it holds again), or, for a file the
/// run created, removes it.
pub(super) async fn undo<R: Remote + 'static>(
    u: &Undo<'_, R>,
    line: &Value,
) -> Result<usize, EngineError> {
    let host = line["host"].as_str().unwrap_or("");
    let path = line["path"].as_str().unwrap_or("");
    let r = u.e.remote(host)?;
    let what = if line["existed"] == true {
        let content = u.before_copy(line)?;
        let mode = line["mode"].as_u64().map(|m| m as u32);
        if !u.dry {
            docker::write(&**r, path, &content, mode)
                .await
                .map_err(host_err)?;
            if let Some(bak) = line["backup"].as_str() {
                r.run(ExecRequest::new(format!("rm -f -- {}", shell::path(bak))))
                    .await
                    .map_err(host_err)?;
            }
        }
        format!(
            "restored {path} ({} bytes, mode {:o})",
            content.len(),
            mode.unwrap_or(0o644)
        )
    } else {
        if !u.dry {
            r.remove(path).await.map_err(host_err)?;
        }
        format!("removed {path} (created by the run)")
    };
    u.undone(host, path, what)
}
