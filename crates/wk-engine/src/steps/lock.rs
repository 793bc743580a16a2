//! `lock`: the cluster's run lock, a file on the gateway made only if it is not there
//! (`set -C`), naming the owner, the run and the process (a random nonce). Journaled before it
//! is taken, so a run cut right after can still release it; undone (released) only while it
//! names the run.

use serde_json::json;
use wk_remote::{shell, ExecRequest, Remote};

use super::{Cx, Done, Fut, Kind, Shape, Undo};
use crate::error::{host_err, step_err, EngineError};
use crate::pause::{self, Point};

pub(crate) struct Lock<'a> {
    pub path: &'a str,
}

/// The cluster's run lock: `.wkctl.lock` in the gateway's install dir (the playbook's `lock`
/// step takes it there; facts, preflight and rollback look at the same file).
pub(crate) fn lock_path(install_dir: &str) -> String {
    format!("{}/.wkctl.lock", install_dir.trim_end_matches('/'))
}

/// Whether a lock file's text names run `run_id`.
pub(crate) fn names_run(text: &[u8], run_id: &str) -> bool {
    field(&String::from_utf8_lossy(text), "run") == Some(run_id)
}

/// This process's nonce: a lock that names the run but another nonce was written by another
/// process of the same run (an earlier one that ended, or one still going on elsewhere).
fn nonce() -> &'static str {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE.get_or_init(|| {
        let mut b = [0u8; 8];
        let _ = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
        let pid = std::process::id().to_le_bytes();
        b.iter()
            .chain(pid.iter())
            .map(|x| format!("{x:02x}"))
            .collect()
    })
}

/// A field (`key=value`) of a lock file's text.
fn field<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// What to do with a lock that names this run: hold it (ours), take it over (written by an
/// earlier process of this run on this machine, as this user: this process holds the run's
/// journal, so that one has ended), or refuse (another machine or user: it may still run).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Same {
    Ours,
    TakeOver,
    Elsewhere,
}

pub(crate) fn same_run(holder: &str, owner: &str, nonce: &str) -> Same {
    if field(holder, "nonce") == Some(nonce) {
        Same::Ours
    } else if field(holder, "owner") == Some(owner) {
        Same::TakeOver
    } else {
        Same::Elsewhere
    }
}

/// How [`take`] came to hold the lock.
pub(crate) enum Held {
    Took,
    /// This process wrote it earlier.
    Already,
    /// An earlier process of the same run, here, wrote it (what it said).
    TakenOver(String),
}

/// Takes the cluster's lock at `path` for run `run_id` (`op` says what the run does: expand,
/// rollback): made only if absent, or held already by this run (see [`same_run`]); otherwise
/// refused with what the lock says.
pub(crate) async fn take<R: Remote + 'static>(
    r: &R,
    path: &str,
    owner: &str,
    run_id: &str,
    op: &str,
) -> Result<Held, EngineError> {
    let content = format!(
        "owner={owner} run={run_id} op={op} time={} nonce={}\n",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        nonce()
    );
    let out = r
        .exec(
            ExecRequest::new(format!("set -C; cat > {}", shell::path(path))).stdin(content.clone()),
        )
        .await
        .map_err(host_err)?;
    if out.success() {
        return Ok(Held::Took);
    }
    let holder = r
        .read_file(path)
        .await
        .ok()
        .flatten()
        .map(|f| String::from_utf8_lossy(&f.content).trim().to_string())
        .unwrap_or_default();
    // A resumed run finds its own lock: written by this process, or by an earlier one of
    // this run here (it has ended: this process holds the run's journal), which it takes
    // over. One written elsewhere may belong to a process still going on.
    if names_run(holder.as_bytes(), run_id) {
        match same_run(&holder, owner, nonce()) {
            Same::Ours => return Ok(Held::Already),
            Same::TakeOver => {
                r.run(ExecRequest::new(format!("cat > {}", shell::path(path))).stdin(content))
                    .await
                    .map_err(host_err)?;
                return Ok(Held::TakenOver(holder));
            }
            Same::Elsewhere => {}
        }
    }
    Err(EngineError::Locked {
        host: r.name().to_string(),
        path: path.to_string(),
        holder,
    })
}

/// Puts the lock back as it was before [`take`] (a run that took it and then refused to go on
/// changes nothing).
pub(crate) async fn give_back<R: Remote + 'static>(
    r: &R,
    path: &str,
    run_id: &str,
    held: Held,
) -> Result<(), EngineError> {
    match held {
        Held::Already => Ok(()),
        Held::Took => release(r, path, run_id).await.map(|_| ()),
        Held::TakenOver(before) => r
            .run(ExecRequest::new(format!("cat > {}", shell::path(path))).stdin(before + "\n"))
            .await
            .map(|_| ())
            .map_err(host_err),
    }
}

/// Removes the lock at `path` if it names run `run_id`; whether it did.
pub(crate) async fn release<R: Remote + 'static>(
    r: &R,
    path: &str,
    run_id: &str,
) -> Result<bool, EngineError> {
    let held = r.read_file(path).await.map_err(host_err)?;
    if !held.is_some_and(|f| names_run(&f.content, run_id)) {
        return Ok(false);
    }
    r.remove(path).await.map_err(host_err)?;
    Ok(true)
}

impl Lock<'_> {
    async fn take<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Done, EngineError> {
        let (step, run, r, path) = (cx.step, cx.run, &cx.r, self.path);
        if run.dry {
            return Ok(Done::Ok(format!("would take {path}")));
        }
        if run.force_unlock {
            r.remove(path).await.map_err(|e| step_err(step, e))?;
        }
        run.log(json!({"type": "lock", "step": step.id, "host": step.host, "path": path}))
            .await
            .map_err(|e| step_err(step, e))?;
        pause::at(step, Point::Middle).await;
        let held = take(r.as_ref(), path, &run.owner, &run.run_id, "expand")
            .await
            .map_err(|e| match e {
                EngineError::Locked { .. } => e,
                other => step_err(step, other),
            })?;
        Ok(Done::Ok(match held {
            Held::Took => format!("took {path} (released at the end)"),
            Held::Already => format!("holds {path} (since the run began)"),
            Held::TakenOver(_) => {
                format!("holds {path} (taken over from this run's earlier process)")
            }
        }))
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
        if u.dry {
            let held = r.read_file(path).await.map_err(host_err)?;
            if held.is_some_and(|f| names_run(&f.content, u.run_id)) {
                u.would(host, format!("would have released {path}"));
            }
            return Ok(0);
        }
        if release(r.as_ref(), path, u.run_id).await? {
            u.log(json!({"type": "undone", "host": host, "path": path}))?;
            u.done(host, format!("released {path}"));
        }
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

#[cfg(test)]
mod tests {
    use super::{same_run, Same};

    #[test]
    fn a_lock_of_this_run_is_held_taken_over_or_refused() {
        let lock = "owner=ops@laptop run=20260101T000000Z-beef time=1 nonce=aa11";
        assert_eq!(same_run(lock, "ops@laptop", "aa11"), Same::Ours);
        // An earlier process of this run, here: it ended (this one holds the journal).
        assert_eq!(same_run(lock, "ops@laptop", "bb22"), Same::TakeOver);
        // The same run from another machine (a copied journal) may still be going on.
        assert_eq!(same_run(lock, "ops@desk", "bb22"), Same::Elsewhere);
        // A lock from before nonces: judged by its owner.
        assert_eq!(
            same_run("owner=ops@laptop run=r time=1", "ops@laptop", "bb22"),
            Same::TakeOver
        );
        assert!(super::names_run(lock.as_bytes(), "20260101T000000Z-beef"));
        assert!(!super::names_run(lock.as_bytes(), "20260101T000000Z-bee"));
    }
}
