//! The runs of an inventory (`.wkctl/runs`): which there are and how each ended, and what a
//! journal carries into a resumed run.

use std::path::Path;

use wk_plan::Plan;

use crate::error::{other_err, EngineError};
use crate::journal::Journal;

/// A run's plan, as its plan.json holds it.
pub(crate) fn read_plan(dir: &Path) -> Result<Plan, EngineError> {
    let path = dir.join("plan.json");
    let text = std::fs::read(&path).map_err(|e| other_err(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| {
        other_err(format!(
            "{}: {e} (written by another version of wkctl? use that version for this run)",
            path.display()
        ))
    })
}

/// The local copy a `before_image` line of the run in `dir` saved.
pub(crate) fn before_copy(dir: &Path, line: &serde_json::Value) -> Result<Vec<u8>, EngineError> {
    let copy = dir.join("before").join(line["copy"].as_str().unwrap_or(""));
    std::fs::read(&copy).map_err(|e| other_err(format!("{}: {e}", copy.display())))
}

/// The runs under a `.wkctl/runs` directory, newest last: (id, command, started, state).
pub fn list_runs(runs_dir: &Path) -> Vec<(String, String, u64, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return out;
    };
    let mut dirs: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("journal.jsonl").exists())
        .collect();
    dirs.sort();
    for d in dirs {
        let id = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (command, started, state) = match Journal::read(&d) {
            Ok(lines) => {
                let first = lines.first().cloned().unwrap_or_default();
                let has = |t: &str| lines.iter().any(|l| l["type"] == t);
                let state = if has("run_rolled_back") {
                    "rolled back"
                } else if has("run_finished") {
                    "finished"
                } else if lines
                    .iter()
                    .any(|l| l["type"] == "run_stopped" && l["reason"].is_string())
                {
                    "stopped (Ctrl-C)"
                } else if has("run_stopped") {
                    "stopped (a step failed)"
                } else {
                    "interrupted"
                };
                (
                    first["command"].as_str().unwrap_or("").to_string(),
                    first["time"].as_u64().unwrap_or(0),
                    state.to_string(),
                )
            }
            Err(e) => (String::new(), 0, format!("unreadable journal: {e}")),
        };
        out.push((id, command, started, state));
    }
    out
}

/// The runs that stopped half way since the last one that finished or was rolled back (newest
/// first), and the files they changed, as (host, path): a fresh run after them (their lock
/// forced or removed) counts those files as changed, so the restarts and reloads they need
/// still happen.
pub fn unfinished_changes(runs_dir: &Path) -> (Vec<String>, Vec<(String, String)>) {
    let mut ids = Vec::new();
    let mut changed = Vec::new();
    for id in unfinished(runs_dir) {
        if let Ok(r) = resume_state(&runs_dir.join(&id)) {
            if !r.changed.is_empty() {
                ids.push(id);
                changed.extend(r.changed);
            }
        }
    }
    (ids, changed)
}

/// The backups the runs of [`unfinished_changes`] left on the hosts, as (host, path): a fresh
/// run that takes their changes over removes them when it ends, as it removes its own.
pub(crate) fn unfinished_backups(runs_dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for id in unfinished(runs_dir) {
        for l in Journal::read(&runs_dir.join(&id)).unwrap_or_default() {
            if let (true, Some(h), Some(b)) = (
                l["type"] == "before_image",
                l["host"].as_str(),
                l["backup"].as_str(),
            ) {
                out.push((h.to_string(), b.to_string()));
            }
        }
    }
    out
}

/// The runs that stopped half way since the last one that finished or was rolled back.
fn unfinished(runs_dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for (id, _, _, state) in list_runs(runs_dir).into_iter().rev() {
        if state == "finished" || state == "rolled back" {
            break;
        }
        if state.starts_with("stopped") || state == "interrupted" {
            ids.push(id);
        }
    }
    ids
}

/// What a journal carries into a resumed run.
pub fn resume_state(dir: &Path) -> Result<crate::engine::Resume, EngineError> {
    let lines = Journal::read(dir).map_err(other_err)?;
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("plan.json")).map_err(other_err)?)
            .map_err(other_err)?;
    // Every file the run set out to change: its before-image is journaled before the write, and
    // a run killed between the write and its `applied` line left the file changed all the same
    // (a resumed run then finds it as wanted, and must still reload or restart for it).
    let changed = lines
        .iter()
        .filter(|l| l["type"] == "before_image")
        .filter_map(|l| {
            Some((
                l["host"].as_str()?.to_string(),
                l["path"].as_str()?.to_string(),
            ))
        })
        .collect();
    let steps = read_plan(dir)?;
    let started = crate::steps::started_new_nodes(&steps, &lines)
        .into_iter()
        .collect();
    let cut = crate::steps::cut_member_ups(&steps, &lines);
    let recorded = |k: &str| {
        lines
            .first()
            .and_then(|l| l[k].as_str())
            .map(std::path::PathBuf::from)
    };
    Ok(crate::engine::Resume {
        run_id: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dir: dir.to_path_buf(),
        plan,
        changed,
        started,
        cut,
        playbook: recorded("playbook"),
        templates: recorded("templates"),
        allow_version_mix: lines
            .first()
            .is_some_and(|l| l["allow_version_mix"] == true),
    })
}

/// The first before-image of every file a run changed, from its journal and the local copies
/// (`None`: the run created the file): a resumed run that must take a file back (an nginx.conf
/// nginx rejects) puts back what was there before the run, not what the resume found.
pub(crate) fn before_images(
    dir: &Path,
) -> Result<
    std::collections::BTreeMap<(String, String), Option<crate::steps::BeforeImage>>,
    EngineError,
> {
    let mut out = std::collections::BTreeMap::new();
    for l in Journal::read(dir).map_err(other_err)? {
        if l["type"] != "before_image" || l["dir"] == true {
            continue;
        }
        let (Some(host), Some(path)) = (l["host"].as_str(), l["path"].as_str()) else {
            continue;
        };
        let key = (host.to_string(), path.to_string());
        if out.contains_key(&key) {
            continue;
        }
        let image = if l["existed"] == true {
            let bytes = before_copy(dir, &l)?;
            Some((bytes, l["mode"].as_u64().unwrap_or(0o644) as u32))
        } else {
            None
        };
        out.insert(key, image);
    }
    Ok(out)
}
