//! Phase 4, the end of preflight: the plan, built from what the hosts told, and tried before
//! anything changes: every file edit on the files as the hosts hold them now (a file an
//! operator wrote in a way wkctl cannot edit safely stops the run before it starts), and every
//! image the compose files will name present (pulled now; in a dry run only asked about).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use wk_compose::{edit, Selector};
use wk_plan::plan::HostFacts;
use wk_plan::{Plan, PlanRequest};
use wk_remote::{shell, ExecOutput, ExecRequest, Remote};

use super::{CheckRow, Known, Scope};
use crate::engine::{Engine, Options};
use crate::error::EngineError;
use crate::steps::shape;
use crate::text::compose_path;

/// File texts by (host, path), as they are and then as the plan's edits make them.
type Files = BTreeMap<(String, String), Option<String>>;

impl<R: Remote + 'static> Engine<R> {
    pub(super) async fn plan_and_trial(
        &self,
        opts: &Options,
        scope: &Scope,
        k: &mut Known,
    ) -> Result<Plan, EngineError> {
        let inv = &self.inv;
        let mut facts = BTreeMap::new();
        for (name, st) in &k.states {
            let svc = st
                .compose_text
                .as_deref()
                .and_then(|t| edit::find_service(t, &Selector::ImageName("wukongim".into())).ok());
            facts.insert(
                name.clone(),
                HostFacts {
                    compose: st.compose.clone(),
                    wukongim_service: svc,
                },
            );
        }
        // The seed's cluster-wide settings go to every new node (preflight checks that the
        // members agree on them).
        let seed_state = &k.states[&k.seed.name];
        let extra_env = crate::text::cluster_settings(
            seed_state.compose_text.as_deref().unwrap_or_default(),
            seed_state.wk_yaml.as_deref(),
        )
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
        let req = PlanRequest {
            add: opts.add.clone(),
            members: Some(k.members.clone()),
            facts,
            extra_env,
            seed: Some(k.seed.name.clone()),
        };
        let plan = wk_plan::build(inv, &self.inv_text, &self.sources, &req)
            .map_err(|e| EngineError::Input(e.to_string()))?;
        // The files the facts read already (compose files, prometheus.yml) are not read again.
        let mut known = Files::new();
        for (name, st) in &k.states {
            let Some(n) = inv.node(name) else { continue };
            known.insert((name.clone(), compose_path(n)), st.compose_text.clone());
            if name == &scope.gateway.name {
                let prom = wk_plan::plan::join_path(&n.install_dir, &inv.gateway.prometheus_file);
                known.insert((name.clone(), prom), st.prometheus_text.clone());
            }
        }
        // A saved plan records every file it writes, whole-file templates too.
        let read_all = opts.snapshots();
        let (edits, after, mut before) = self.try_edits(&plan, known, read_all).await;
        k.checks.extend(edits);
        if read_all {
            k.file_shas = before
                .iter()
                .filter(|(key, _)| after.contains_key(*key))
                .map(|((h, p), text)| {
                    (
                        format!("{h}: {p}"),
                        text.as_deref()
                            .map(|t| crate::journal::sha256_hex(t.as_bytes())),
                    )
                })
                .collect();
        }
        k.changes = file_changes(&plan, &mut before, &after);
        k.checks
            .extend(self.check_images(&plan, &after, opts.dry_run).await);
        Ok(plan)
    }

    /// Every file edit of the plan, in plan order, on the files as the hosts hold them now
    /// (nothing is written). A check per host: all apply, or which cannot and why; the files
    /// after the edits, and as they were.
    async fn try_edits(
        &self,
        plan: &Plan,
        mut files: Files,
        read_all: bool,
    ) -> (Vec<CheckRow>, Files, Files) {
        let mut tried: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        let mut originals = files.clone();
        for step in &plan.steps {
            let kind = shape(&step.action);
            let Some(target) = kind.target() else {
                continue;
            };
            let path = target.path.to_string();
            let key = (step.host.clone(), path.clone());
            let entry = tried.entry(step.host.clone()).or_default();
            if (target.reads || read_all) && !files.contains_key(&key) {
                let text = match self.remote(&step.host) {
                    Ok(r) => match r.read_file(&path).await {
                        Ok(f) => f.map(|f| String::from_utf8_lossy(&f.content).into_owned()),
                        Err(e) => {
                            entry
                                .1
                                .push(format!("{}: {path}: cannot read it: {e}", step.id));
                            continue;
                        }
                    },
                    Err(e) => {
                        entry.1.push(format!("{}: {e}", step.id));
                        continue;
                    }
                };
                originals.insert(key.clone(), text.clone());
                files.insert(key.clone(), text);
            }
            let old = files.get(&key).cloned().flatten();
            entry.0 += 1;
            match kind.edit(old.as_deref()) {
                Ok(new) => {
                    files.insert(key, Some(new));
                }
                Err(e) => entry.1.push(format!("{}: {path}: {e}", step.id)),
            }
        }
        let checks = tried
            .into_iter()
            .map(|(host, (n, problems))| {
                if problems.is_empty() {
                    (host, "edits".to_string(), true, format!("{n} file edit(s) tried on the files as they are: each applies and changes only its own lines"), None)
                } else {
                    (host, "edits".to_string(), false, problems.join("; "), Some("change the file by hand so wkctl can find its place (or move a file wkctl writes away), then run again".to_string()))
                }
            })
            .collect();
        (checks, files, originals)
    }

    /// The images every host's compose files name once the plan's edits are made: each must
    /// be on the host before anything changes (compose would pull it half way through the run
    /// otherwise). A missing one is pulled now; in a dry run only asked about.
    async fn check_images(&self, plan: &Plan, files: &Files, dry: bool) -> Vec<CheckRow> {
        let mut checks = Vec::new();
        for (host, images) in wanted_images(files) {
            let Ok(r) = self.remote(&host) else { continue };
            let sudo = plan
                .steps
                .iter()
                .filter(|s| s.host == host)
                .flat_map(|s| s.action.commands())
                .any(|c| c.sudo);
            let out = r
                .exec(
                    ExecRequest::new(images_script(&images, dry))
                        .sudo(sudo)
                        .timeout(Duration::from_secs(900)),
                )
                .await;
            let (ok, detail) = match out {
                Err(e) => (false, format!("cannot ask Docker for its images: {e}")),
                Ok(o) => images_answer(&o, images.len(), dry),
            };
            checks.push((
                host,
                "images".to_string(),
                ok,
                detail,
                Some("load the image on the host (`docker load` of a `docker save` made where it can be pulled), or let the host reach its registry, then run again".to_string()),
            ));
        }
        checks
    }
}

/// The images of each host's compose files.
fn wanted_images(files: &Files) -> BTreeMap<String, BTreeSet<String>> {
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((host, path), text) in files {
        let Some(text) = text else { continue };
        if !path.ends_with("docker-compose.yml") && !path.ends_with("docker-compose.yaml") {
            continue;
        }
        let Ok(doc) = wk_compose::value::parse(text) else {
            continue;
        };
        if let Some(wk_compose::value::Yaml::Map(services)) = doc.get("services") {
            for (_, svc) in services {
                if let Some(img) = svc.get("image").and_then(wk_compose::value::Yaml::scalar) {
                    wanted.entry(host.clone()).or_default().insert(img);
                }
            }
        }
    }
    wanted
}

/// The files the plan changes, as the trial found them: lines added and removed where the
/// old text is known, as new otherwise (a file not there, or a whole-file template over a file
/// nothing read). `before`: the files as they were.
fn file_changes(plan: &Plan, before: &mut Files, after: &Files) -> Vec<crate::events::FileChange> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for step in &plan.steps {
        let kind = shape(&step.action);
        let Some(target) = kind.target() else {
            continue;
        };
        let key = (step.host.clone(), target.path.to_string());
        if !seen.insert(key.clone()) {
            continue;
        }
        let new = after.get(&key).cloned().flatten();
        // A whole-file template's old text is known when the facts read it (compose files).
        let old = before.remove(&key).flatten();
        let Some(new) = new else { continue };
        if old.as_deref() == Some(new.as_str()) {
            continue;
        }
        let (mut added, mut removed) = (0, 0);
        for c in
            similar::TextDiff::from_lines(old.as_deref().unwrap_or(""), &new).iter_all_changes()
        {
            match c.tag() {
                similar::ChangeTag::Insert => added += 1,
                similar::ChangeTag::Delete => removed += 1,
                similar::ChangeTag::Equal => {}
            }
        }
        out.push(crate::events::FileChange {
            host: key.0,
            path: key.1,
            what: if old.is_none() { "create" } else { "edit" }.into(),
            added,
            removed,
        });
    }
    out
}

/// A line per image: present, pulled (dry: pullable), or missing and why.
fn images_script(images: &BTreeSet<String>, dry: bool) -> String {
    images
        .iter()
        .map(|i| {
            let q = shell::quote(i);
            let get = if dry {
                format!("docker manifest inspect {q} >/dev/null 2>&1 && echo \"pullable {i}\" || echo \"missing {i}\"")
            } else {
                format!("if e=$(docker pull -q {q} 2>&1); then echo \"pulled {i}\"; else echo \"missing {i} $(printf '%s' \"$e\" | tr '\\n' ' ' | cut -c1-200)\"; fi")
            };
            format!("if docker image inspect {q} >/dev/null 2>&1; then echo \"present {i}\"; else {get}; fi\n")
        })
        .collect()
}

/// The images check from what [`images_script`] printed for `n` images.
fn images_answer(o: &ExecOutput, n: usize, dry: bool) -> (bool, String) {
    let text = o.stdout_str();
    let missing: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("missing "))
        .collect();
    if !missing.is_empty() {
        return (
            false,
            format!(
                "not on the host and cannot be pulled: {}",
                missing.join("; ")
            ),
        );
    }
    if text.lines().count() != n {
        return (
            false,
            format!(
                "cannot ask Docker for its images: {}",
                o.stderr_str().trim()
            ),
        );
    }
    let pulled: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("pulled ").or(l.strip_prefix("pullable ")))
        .collect();
    let detail = if pulled.is_empty() {
        format!("{n} image(s) present")
    } else if dry {
        format!(
            "{n} image(s) present or pullable (would pull {})",
            pulled.join(", ")
        )
    } else {
        format!("{n} image(s) present (pulled {})", pulled.join(", "))
    };
    (true, detail)
}
