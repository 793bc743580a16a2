//! `wkctl rollback`: a run undone from its journal, in stages, each step's kind undoing its own
//! part (`steps::Kind`, a method per stage): new nodes' services stop; services the run added
//! to compose files go; every file and directory goes back to its first before-image, newest
//! first; hosts whose files went back run on them again; the run's lock is released. A node
//! that has joined cannot leave a WuKongIM v2 cluster (there is no removal API), so a rollback
//! after a join stops and explains, unless `after_join`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};
use wk_plan::plan::Plan;
use wk_remote::Remote;

use crate::engine::Engine;
use crate::error::{other_err, EngineError};
use crate::journal::Journal;
use crate::steps::{compose_up, kind, Kind, Undo};

#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub dry_run: bool,
    pub after_join: bool,
    /// Restore files even where they changed since the run wrote them.
    pub force: bool,
    /// Remove a lock another run left (it died) before taking the lock for this rollback.
    pub force_unlock: bool,
    /// `user@machine`, written into the lock.
    pub owner: String,
    /// Asked, with what the rollback will undo, before its first change (`None`: go on).
    pub confirm: Option<std::sync::Arc<dyn crate::events::Confirm>>,
}

impl<R: Remote + 'static> Engine<R> {
    pub async fn rollback(&self, dir: &Path, opts: &RollbackOptions) -> Result<usize, EngineError> {
        let lines = Journal::read(dir).map_err(other_err)?;
        let plan = crate::runs::read_plan(dir)?;
        let run_id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if lines.iter().any(|l| l["type"] == "run_rolled_back") {
            return Err(EngineError::Input(format!(
                "run {run_id} was rolled back already"
            )));
        }
        // Has a new node become a member? The cluster says, not the journal.
        let joined = self.joined(&plan, &lines).await?;
        if !joined.is_empty() && !opts.after_join {
            let names = joined.join(", ");
            return Err(EngineError::Input(format!(
                "{names} joined the cluster during run {run_id}. WuKongIM v2 cannot remove a member (it has no removal API): a rollback would stop it while the cluster still counts it, and its slots' quorums would miss it.\n  fix: keep the node (run `wkctl resume {run_id}` to finish the run), or add --after-join: the files and services on every host go back, and the cluster keeps {names} in its member list, offline"
            )));
        }
        let (journal, lock) = self.hold(dir, (&plan, &lines), &run_id, opts).await?;
        crate::pause::named("rollback", crate::pause::Point::Start).await;
        let u = Undo {
            e: self,
            dir,
            run_id: &run_id,
            plan: &plan,
            lines: &lines,
            dry: opts.dry_run,
            journal: std::sync::Mutex::new(journal),
        };
        u.log(json!({"type": "rollback_started", "after_join": opts.after_join}))?;
        let mut undone = 0;
        for step in &plan.steps {
            undone += kind::<R>(&step.action).stop(&u, step).await?;
        }
        // A join under way when the cluster was asked may have finished before the node
        // stopped: then nothing more is undone, and the operator chooses.
        if !opts.dry_run && !opts.after_join {
            let late = self.joined(&plan, &lines).await?;
            if !late.is_empty() {
                u.log(json!({"type": "rollback_stopped", "joined": late}))?;
                let names = late.join(", ");
                return Err(EngineError::Host(format!(
                    "{names} joined the cluster while the rollback stopped it (its join was under way); no file was restored.\n  fix: `wkctl resume {run_id}` starts it again and finishes the run, or `wkctl rollback --after-join {run_id}` goes on undoing (the cluster keeps {names} in its member list, offline)"
                )));
            }
        }
        // The playbook's own commands, undone newest first.
        for step in plan.steps.iter().rev() {
            undone += kind::<R>(&step.action).revert(&u, step).await?;
        }
        let before: Vec<&Value> = of_type(&lines, "before_image").collect();
        for l in &before {
            undone += journaled::<R>(&plan, l)?.remove(&u, l).await?;
        }
        // Every change, newest first: each file to its first before-image.
        let mut seen = BTreeSet::new();
        let firsts: Vec<&Value> = before
            .iter()
            .copied()
            .filter(|l| seen.insert((l["host"].as_str(), l["path"].as_str())))
            .collect();
        let mut restored = BTreeSet::new();
        for l in firsts.iter().rev() {
            undone += journaled::<R>(&plan, l)?.restore(&u, l).await?;
            if l["existed"] == true {
                restored.insert(l["host"].as_str().unwrap_or("").to_string());
            }
        }
        for host in &restored {
            compose_up::restart_restored(&u, host).await?;
        }
        // The run's lock, last: the journaled one (the rollback's own names the same run and
        // path, so that release ends it too), else the one the rollback took.
        let gw = &self.inv.gateway_node().name;
        let mut released = false;
        for l in of_type(&lines, "lock") {
            undone += journaled::<R>(&plan, l)?.release(&u, l).await?;
            released |= l["host"] == gw.as_str() && l["path"] == lock.as_str();
        }
        if !opts.dry_run && !released {
            crate::steps::release_lock(self.remote(gw)?.as_ref(), &lock, &run_id).await?;
        }
        u.log(json!({"type": "run_rolled_back", "undone": undone}))?;
        Ok(undone)
    }

    /// The journal first (no other process of this machine may undo or resume the run
    /// meanwhile), then the cluster's lock (no other machine's run may change what this one
    /// puts back), then the files' drift, checked under the lock, then the operator's yes: a
    /// refusal gives the lock back as it was. A dry run only looks at the lock.
    async fn hold(
        &self,
        dir: &Path,
        (plan, lines): (&Plan, &[Value]),
        run_id: &str,
        opts: &RollbackOptions,
    ) -> Result<(Option<Journal>, String), EngineError> {
        let journal = if opts.dry_run {
            None
        } else {
            Some(Journal::open(dir).map_err(other_err)?)
        };
        let lock = self.lock_path();
        let gw = self.remote(&self.inv.gateway_node().name)?;
        let held = if opts.dry_run {
            self.not_locked_by_another(run_id).await?;
            None
        } else {
            if opts.force_unlock {
                gw.remove(&lock).await.map_err(crate::error::host_err)?;
            }
            Some(
                crate::steps::take_lock(gw.as_ref(), &lock, &opts.owner, run_id, "rollback")
                    .await?,
            )
        };
        let checked = match opts.force {
            true => Ok(()),
            false => self.no_drift(lines, run_id).await,
        };
        let asked = checked.and_then(|()| match opts.dry_run {
            true => Ok(()),
            false => {
                crate::expand::ask(self, opts.confirm.as_deref(), &summary(run_id, plan, lines))
            }
        });
        if let Err(e) = asked {
            if let Some(held) = held {
                crate::steps::give_back_lock(gw.as_ref(), &lock, run_id, held).await?;
            }
            return Err(e);
        }
        Ok((journal, lock))
    }

    /// The cluster's run lock, on the gateway.
    fn lock_path(&self) -> String {
        crate::steps::lock_path(&self.inv.gateway_node().install_dir)
    }

    /// A dry run's look at the lock: refused while another run holds it, as the rollback
    /// itself would be.
    async fn not_locked_by_another(&self, run_id: &str) -> Result<(), EngineError> {
        let gw = self.inv.gateway_node();
        let path = self.lock_path();
        let held = self
            .remote(&gw.name)?
            .read_file(&path)
            .await
            .map_err(crate::error::host_err)?;
        match held {
            Some(f) if !crate::steps::names_run(&f.content, run_id) => Err(EngineError::Locked {
                host: gw.name.clone(),
                path,
                holder: String::from_utf8_lossy(&f.content).trim().to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Refuses, before anything changes, to put back a file that changed since the run wrote
    /// it (by hand, or by a later run): the file must hold what it held before the run or what
    /// the run wrote (`sha256`, `writes` and `applied` lines). A journal without `writes` (an
    /// older wkctl's) is not checked for files it has no `applied` line for.
    pub(crate) async fn no_drift(&self, lines: &[Value], run_id: &str) -> Result<(), EngineError> {
        let mut allowed: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
        for l in lines {
            let (Some(h), Some(p)) = (l["host"].as_str(), l["path"].as_str()) else {
                continue;
            };
            let shas = allowed.entry((h, p)).or_default();
            match l["type"].as_str() {
                Some("before_image") => shas.extend(
                    [l["sha256"].as_str(), l["writes"].as_str()]
                        .into_iter()
                        .flatten(),
                ),
                Some("applied") => shas.extend(l["sha256"].as_str()),
                _ => {}
            }
        }
        let mut drifted = Vec::new();
        let mut seen = BTreeSet::new();
        for l in of_type(lines, "before_image") {
            let (Some(h), Some(p)) = (l["host"].as_str(), l["path"].as_str()) else {
                continue;
            };
            let wrote = l["writes"].is_string()
                || lines
                    .iter()
                    .any(|a| a["type"] == "applied" && a["host"] == h && a["path"] == p);
            if l["dir"] == true || !wrote || !seen.insert((h, p)) {
                continue;
            }
            let now = self
                .remote(h)?
                .read_file(p)
                .await
                .map_err(crate::error::host_err)?;
            let Some(now) = now else { continue };
            let sha = crate::journal::sha256_hex(&now.content);
            if !allowed[&(h, p)].contains(sha.as_str()) {
                drifted.push(format!("{h}: {p}"));
            }
        }
        if drifted.is_empty() {
            return Ok(());
        }
        Err(EngineError::Input(format!(
            "these files changed since run {run_id} wrote them (by hand, or by a later run), and a rollback would put the run's before-image over the change:\n  {}\n  nothing was changed.\n  fix: roll back the later runs first (`wkctl runs`), or put the files back as the run left them; `wkctl rollback --force {run_id}` restores them anyway, and the changes since are lost",
            drifted.join("\n  ")
        )))
    }

    /// The nodes the run adds that the cluster lists as members (at any status), as
    /// `name (id)`, asked of the seed.
    async fn joined(&self, plan: &Plan, lines: &[Value]) -> Result<Vec<String>, EngineError> {
        // A node whose WuKongIM never started cannot have joined (its containers may have been
        // created): then the cluster is not asked, as a member a killed run left restarting
        // may not answer yet.
        let ran = crate::steps::ran_new_nodes(plan, lines);
        if ran.is_empty() {
            return Ok(Vec::new());
        }
        let seed = self.inv.seed_node();
        let p = crate::facts::probe(Some(self.remote(&seed.name)?.as_ref()), seed, false).await;
        let members = p.members.map_err(|e| {
            EngineError::Host(format!(
                "{}: cannot read the cluster's members, which tell whether a new node joined: {e}\n  fix: check that WuKongIM runs on {} and answers on its API port, then run the rollback again",
                seed.name, seed.name
            ))
        })?;
        Ok(plan
            .adding
            .iter()
            .filter(|a| members.iter().any(|m| m.id == a.id as u64))
            .map(|a| format!("{} ({})", a.name, a.id))
            .collect())
    }
}

/// What a rollback of the run undoes: each file to its first before-image (or removed, if the
/// run made it), the new nodes' services stopped, the hosts whose files go back started again.
fn summary(run_id: &str, plan: &Plan, lines: &[Value]) -> crate::events::Summary {
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    let mut hosts = BTreeSet::new();
    let mut restored = BTreeSet::new();
    for l in of_type(lines, "before_image") {
        let (Some(h), Some(p)) = (l["host"].as_str(), l["path"].as_str()) else {
            continue;
        };
        if !seen.insert((h, p)) {
            continue;
        }
        hosts.insert(h.to_string());
        let existed = l["existed"] == true;
        if existed {
            restored.insert(h.to_string());
        }
        files.push(crate::events::FileChange {
            host: h.into(),
            path: p.into(),
            added: 0,
            removed: 0,
            what: if existed { "restore" } else { "remove" }.into(),
        });
    }
    let stopped = crate::steps::started_new_nodes(plan, lines);
    let services = stopped
        .iter()
        .map(|h| format!("{h}: stop and remove WuKongIM"))
        .chain(
            restored
                .iter()
                .map(|h| format!("{h}: start its services again with the restored files")),
        )
        .collect();
    hosts.extend(stopped);
    crate::events::Summary {
        command: "rollback".into(),
        hosts: hosts.into_iter().collect(),
        files,
        services,
        joins: Vec::new(),
        undo: format!(
            "none: a rollback is not undone (`wkctl expand` again redoes run {run_id}'s changes)"
        ),
    }
}

fn of_type<'a>(lines: &'a [Value], t: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    lines.iter().filter(move |l| l["type"] == t)
}

/// The kind of the plan's step a journal line names.
fn journaled<'p, R: Remote + 'static>(
    plan: &'p Plan,
    line: &Value,
) -> Result<Box<dyn Kind<R> + 'p>, EngineError> {
    let id = line["step"].as_str().unwrap_or("");
    let step = plan.steps.iter().find(|s| s.id == id).ok_or_else(|| {
        other_err(format!(
            "the journal names step `{id}`, which the run's plan.json does not have; the run's directory was changed by hand?"
        ))
    })?;
    Ok(kind::<R>(&step.action))
}
