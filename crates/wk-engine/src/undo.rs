//! `wkctl rollback`: a run undone from its journal, newest change first. Files go back to their
//! before-images byte for byte (content and mode, from the local copies); what the run created is
//! removed; services it started on new nodes are stopped and removed; members are recreated on
//! their restored compose files. A node that has joined cannot leave a WuKongIM v2 cluster (there
//! is no removal API), so a rollback after a join stops and explains, unless `after_join`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;
use wk_remote::{shell, ExecRequest, Remote};

use crate::events::Event;
use crate::journal::Journal;
use crate::run::{Engine, EngineError};

#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub dry_run: bool,
    pub after_join: bool,
}

fn host_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Host(e.to_string())
}

impl<R: Remote + 'static> Engine<R> {
    pub async fn rollback(&self, dir: &Path, opts: &RollbackOptions) -> Result<usize, EngineError> {
        let lines = Journal::read(dir).map_err(host_err)?;
        let plan: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("plan.json")).map_err(host_err)?)
                .map_err(host_err)?;
        let run_id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if lines.iter().any(|l| l["type"] == "run_rolled_back") {
            return Err(EngineError::Input(format!(
                "run {run_id} was rolled back already"
            )));
        }
        let adding: Vec<(String, u64)> = plan["adding"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or("").to_string(),
                    n["id"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let inv = self.inventory();

        // Has a new node become a member? The cluster says, not the journal.
        let joined = self.joined(&adding).await?;
        if !joined.is_empty() && !opts.after_join {
            let names: Vec<String> = joined.iter().map(|(n, id)| format!("{n} ({id})")).collect();
            return Err(EngineError::Input(format!(
                "{} joined the cluster during run {run_id}. WuKongIM v2 cannot remove a member (it has no removal API): a rollback would stop it while the cluster still counts it, and its slots' quorums would miss it.\n  fix: keep the node (run `wkctl resume {run_id}` to finish the run), or add --after-join: the files and services on every host go back, and the cluster keeps {} in its member list, offline",
                names.join(", "),
                names.join(", ")
            )));
        }

        let mut journal = if opts.dry_run {
            None
        } else {
            Some(Journal::open(dir).map_err(host_err)?)
        };
        if let Some(j) = journal.as_mut() {
            j.append(json!({"type": "rollback_started", "after_join": opts.after_join}))
                .map_err(host_err)?;
        }
        let mut undone = 0;
        let say_undo = |e: &Self, host: &str, what: String| {
            e.report(Event::StepChanged {
                id: "rollback".into(),
                host: host.to_string(),
                note: what,
            });
        };

        // 1. Services the run started on new nodes: stopped and removed. A start that was cut
        //    (not verified) may have started them too.
        for (name, _) in &adding {
            let started = lines.iter().any(|l| {
                l["type"] == "step_started"
                    && l["step"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("node-up@"))
                    && l["host"] == name.as_str()
            });
            if !started {
                continue;
            }
            let node = inv.node(name).ok_or_else(|| {
                EngineError::Input(format!("{name} is not in the inventory any more"))
            })?;
            let cmd = format!(
                "cd {} && {} down",
                shell::path(&node.install_dir),
                self.compose_of(name).await?
            );
            if opts.dry_run {
                self.report(Event::StepCommand {
                    id: "rollback".into(),
                    host: name.clone(),
                    command: cmd,
                });
                continue;
            }
            self.run_compose(name, cmd).await?;
            say_undo(self, name, "stopped and removed WuKongIM".into());
            undone += 1;
        }
        // A join under way when the cluster was asked may have finished before the node
        // stopped: then nothing more is undone, and the operator chooses.
        if !opts.dry_run && !opts.after_join {
            let late = self.joined(&adding).await?;
            if !late.is_empty() {
                let names: Vec<String> = late.iter().map(|(n, id)| format!("{n} ({id})")).collect();
                if let Some(j) = journal.as_mut() {
                    j.append(json!({"type": "rollback_stopped", "joined": names}))
                        .map_err(host_err)?;
                }
                return Err(EngineError::Host(format!(
                    "{} joined the cluster while the rollback stopped it (its join was under way); no file was restored.\n  fix: `wkctl resume {run_id}` starts it again and finishes the run, or `wkctl rollback --after-join {run_id}` goes on undoing (the cluster keeps {} in its member list, offline)",
                    names.join(", "),
                    names.join(", ")
                )));
            }
        }
        // 2. A service the run added to a compose file: stopped and removed before the file goes back.
        let added_service: Vec<(String, String, String)> = lines
            .iter()
            .filter(|l| {
                l["type"] == "before_image"
                    && l["step"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("nginx-service@"))
            })
            .filter_map(|l| {
                Some((
                    l["host"].as_str()?.to_string(),
                    l["path"].as_str()?.to_string(),
                    "nginx".to_string(),
                ))
            })
            .collect();
        for (host, path, svc) in &added_service {
            let dir_of = path
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default();
            let cmd = format!(
                "cd {} && {} rm -s -f {svc}",
                shell::path(&dir_of),
                self.compose_of(host).await?
            );
            if opts.dry_run {
                self.report(Event::StepCommand {
                    id: "rollback".into(),
                    host: host.clone(),
                    command: cmd,
                });
                continue;
            }
            self.run_compose(host, cmd).await?;
            say_undo(self, host, format!("stopped and removed service {svc}"));
            undone += 1;
        }
        // 3. Every change, newest first: files back to their first before-image, created files
        //    and directories removed.
        let mut seen = BTreeSet::new();
        let mut firsts = Vec::new();
        for l in lines.iter().filter(|l| l["type"] == "before_image") {
            let key = (
                l["host"].as_str().unwrap_or("").to_string(),
                l["path"].as_str().unwrap_or("").to_string(),
            );
            if seen.insert(key) {
                firsts.push(l.clone());
            }
        }
        let mut restored_hosts = BTreeSet::new();
        for l in firsts.iter().rev() {
            let host = l["host"].as_str().unwrap_or("");
            let path = l["path"].as_str().unwrap_or("");
            let r = self.host(host)?;
            let what = if l["existed"] == true {
                let copy = dir.join("before").join(l["copy"].as_str().unwrap_or(""));
                let content = std::fs::read(&copy)
                    .map_err(|e| host_err(format!("{}: {e}", copy.display())))?;
                let mode = l["mode"].as_u64().map(|m| m as u32);
                if !opts.dry_run {
                    r.write_file(path, &content, mode).await.map_err(host_err)?;
                    // The host's backup of the file holds what it holds again: it goes.
                    if let Some(bak) = l["backup"].as_str() {
                        r.run(ExecRequest::new(format!("rm -f -- {}", shell::path(bak))))
                            .await
                            .map_err(host_err)?;
                    }
                }
                restored_hosts.insert(host.to_string());
                format!(
                    "restored {path} ({} bytes, mode {:o})",
                    content.len(),
                    mode.unwrap_or(0o644)
                )
            } else if l["dir"] == true {
                // A directory the run created (a new node's install dir): all of it goes.
                if !opts.dry_run {
                    r.run(ExecRequest::new(format!("rm -rf -- {}", shell::path(path))))
                        .await
                        .map_err(host_err)?;
                }
                format!("removed {path} (created by the run)")
            } else {
                if !opts.dry_run {
                    r.remove(path).await.map_err(host_err)?;
                }
                format!("removed {path} (created by the run)")
            };
            if opts.dry_run {
                self.report(Event::StepOk {
                    id: "rollback".into(),
                    host: host.to_string(),
                    note: format!("would have {what}"),
                });
            } else {
                if let Some(j) = journal.as_mut() {
                    j.append(json!({"type": "undone", "host": host, "path": path}))
                        .map_err(host_err)?;
                }
                say_undo(self, host, what);
            }
            undone += 1;
        }
        // 4. Members back on their restored compose files; Prometheus re-reads its file.
        for host in &restored_hosts {
            let Some(node) = inv.node(host) else { continue };
            let compose = self.compose_of(host).await?;
            let d = shell::path(&node.install_dir);
            // One compose call per command line: sudo reads its password once per command.
            let up = format!("cd {d} && {compose} up -d");
            let reload = format!("cd {d} && {compose} kill -s HUP prometheus");
            if opts.dry_run {
                for command in [up, reload] {
                    self.report(Event::StepCommand {
                        id: "rollback".into(),
                        host: host.clone(),
                        command,
                    });
                }
            } else {
                self.run_compose(host, up).await?;
                // A host without Prometheus has nothing to reload.
                let _ = self.run_compose(host, reload).await;
            }
            if !opts.dry_run {
                say_undo(self, host, "services up again on the restored files".into());
            }
        }
        // 5. The run's lock, last: only while it still names this run.
        for l in lines.iter().filter(|l| l["type"] == "lock") {
            let host = l["host"].as_str().unwrap_or("");
            let path = l["path"].as_str().unwrap_or("");
            let r = self.host(host)?;
            let held = r.read_file(path).await.map_err(host_err)?;
            if !held.is_some_and(|f| {
                String::from_utf8_lossy(&f.content).contains(&format!("run={run_id} "))
            }) {
                continue;
            }
            if opts.dry_run {
                self.report(Event::StepOk {
                    id: "rollback".into(),
                    host: host.to_string(),
                    note: format!("would have released {path}"),
                });
                continue;
            }
            r.remove(path).await.map_err(host_err)?;
            if let Some(j) = journal.as_mut() {
                j.append(json!({"type": "undone", "host": host, "path": path}))
                    .map_err(host_err)?;
            }
            say_undo(self, host, format!("released {path}"));
        }
        if let Some(j) = journal.as_mut() {
            j.append(json!({"type": "run_rolled_back", "undone": undone}))
                .map_err(host_err)?;
        }
        Ok(undone)
    }

    /// The nodes of `adding` the cluster lists as members (at any status), asked of the seed.
    async fn joined(&self, adding: &[(String, u64)]) -> Result<Vec<(String, u64)>, EngineError> {
        let seed = self.inventory().seed_node();
        let p = crate::run::probe(Some(self.host(&seed.name)?.as_ref()), seed).await;
        let members = p.members.map_err(|e| {
            EngineError::Host(format!(
                "{}: cannot read the cluster's members, which tell whether a new node joined: {e}\n  fix: check that WuKongIM runs on {} and answers on its API port, then run the rollback again",
                seed.name, seed.name
            ))
        })?;
        Ok(adding
            .iter()
            .filter(|(_, id)| members.iter().any(|m| m.id == *id))
            .cloned()
            .collect())
    }

    /// `[sudo] COMPOSE` for a host: its compose program, and its sudo mode's prefix as plans show it.
    async fn compose_of(&self, host: &str) -> Result<String, EngineError> {
        let out = self
            .host(host)?
            .run(ExecRequest::new("if docker compose version >/dev/null 2>&1; then echo 'docker compose'; else echo docker-compose; fi"))
            .await
            .map_err(host_err)?;
        let sudo = self
            .inventory()
            .node(host)
            .map(|n| n.ssh.sudo)
            .unwrap_or(wk_plan::inventory::SudoMode::None);
        Ok(format!(
            "{}{}",
            wk_plan::plan::sudo_prefix(sudo),
            out.stdout_str().trim()
        ))
    }

    /// Runs a compose command built by [`Engine::compose_of`]; the remote feeds sudo its password.
    async fn run_compose(&self, host: &str, cmd: String) -> Result<(), EngineError> {
        let sudo = self
            .inventory()
            .node(host)
            .is_some_and(|n| n.ssh.sudo != wk_plan::inventory::SudoMode::None);
        self.host(host)?
            .run(ExecRequest::new(cmd).sudo_inside(sudo))
            .await
            .map_err(host_err)?;
        Ok(())
    }
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
    for (id, _, _, state) in list_runs(runs_dir).into_iter().rev() {
        if state == "finished" || state == "rolled back" {
            break;
        }
        if !(state.starts_with("stopped") || state == "interrupted") {
            continue;
        }
        if let Ok(r) = resume_state(&runs_dir.join(&id)) {
            if !r.changed.is_empty() {
                ids.push(id);
                changed.extend(r.changed);
            }
        }
    }
    (ids, changed)
}

/// What a journal carries into a resumed run.
pub fn resume_state(dir: &Path) -> Result<crate::run::Resume, EngineError> {
    let lines = Journal::read(dir).map_err(host_err)?;
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("plan.json")).map_err(host_err)?)
            .map_err(host_err)?;
    let changed = lines
        .iter()
        .filter(|l| l["type"] == "applied")
        .filter_map(|l| {
            Some((
                l["host"].as_str()?.to_string(),
                l["path"].as_str()?.to_string(),
            ))
        })
        .collect();
    let started = lines
        .iter()
        .filter(|l| {
            l["type"] == "step_started"
                && l["step"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("node-up@"))
        })
        .filter_map(|l| l["host"].as_str().map(str::to_string))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let recorded = |k: &str| {
        lines
            .first()
            .and_then(|l| l[k].as_str())
            .map(std::path::PathBuf::from)
    };
    Ok(crate::run::Resume {
        run_id: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dir: dir.to_path_buf(),
        plan,
        changed,
        started,
        playbook: recorded("playbook"),
        templates: recorded("templates"),
    })
}
