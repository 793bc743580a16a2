//! How plans look in a terminal.

use std::fmt::Write;

use wk_plan::plan::{Action, Phase, COMPOSE_PLACEHOLDER, SERVICE_PLACEHOLDER};
use wk_plan::{Inventory, Plan, Sources};

/// Several problems, each its own `error:` paragraph (the first gets its prefix from the caller).
pub fn diagnostics(d: &wk_plan::Diagnostics) -> String {
    d.0.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("\nerror: ")
}

fn nodes(list: &[wk_plan::plan::NodeRef]) -> String {
    list.iter()
        .map(|n| format!("{} ({})", n.name, n.id))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quote_block(out: &mut String, text: &str) {
    for line in text.lines() {
        if line.is_empty() {
            out.push_str("       |\n");
        } else {
            let _ = writeln!(out, "       | {line}");
        }
    }
}

/// The numbered plan, every file in full and every command as it will run.
pub fn plan_text(plan: &Plan, inv: &Inventory, sources: &Sources, offline: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Plan: add {} to cluster {}",
        nodes(&plan.adding),
        plan.cluster
    );
    let _ = writeln!(o, "  inventory    {}", inv.file);
    let _ = writeln!(o, "  playbook     {}", sources.playbook_name);
    let _ = writeln!(o, "  fingerprint  {}", &plan.fingerprint[..16]);
    let _ = writeln!(o, "  members      {}", nodes(&plan.members_before));
    let _ = writeln!(o, "  after        {}", nodes(&plan.members_after));
    let _ = writeln!(
        o,
        "  gateway      {} (nginx, Prometheus)   seed {}",
        plan.gateway, plan.seed
    );
    if offline {
        o.push_str("\nOffline: no host was contacted. What only the hosts can tell is shown as:\n");
        let _ = writeln!(
            o,
            "  {COMPOSE_PLACEHOLDER:<11}  `docker compose` or `docker-compose`, found on each host"
        );
        let _ = writeln!(
            o,
            "  {SERVICE_PLACEHOLDER:<11}  the compose service running image …/wukongim, found in the host's file"
        );
    }
    if !plan.assumptions.is_empty() {
        o.push_str("\nAssumed:\n");
        for a in &plan.assumptions {
            let _ = writeln!(o, "  - {a}");
        }
    }
    if !plan.warnings.is_empty() {
        o.push_str("\nWarnings:\n");
        for w in &plan.warnings {
            let _ = writeln!(o, "  - {w}");
        }
    }

    let mut phase = None;
    for (i, step) in plan.steps.iter().enumerate() {
        if phase != Some(step.phase) {
            phase = Some(step.phase);
            let name = match step.phase {
                Phase::Prepare => "Prepare and configure",
                Phase::Join => "Join, one node at a time",
                Phase::Finish => "Finish",
            };
            let _ = writeln!(o, "\n{name}:");
        }
        let _ = writeln!(
            o,
            "{:>3}. [{}] {}  ({})",
            i + 1,
            step.host,
            step.title,
            step.id
        );
        let line = |o: &mut String, s: String| {
            let _ = writeln!(o, "       {s}");
        };
        match &step.action {
            Action::Preflight { checks } => {
                for c in checks {
                    line(&mut o, format!("check {:<13} {}", c.id, c.description));
                }
            }
            Action::Lock { path } => line(
                &mut o,
                format!("create {path} atomically (owner, run id, time); refuse if another run holds it"),
            ),
            Action::Unlock { path } => line(&mut o, format!("remove {path} if this run holds it")),
            Action::Mkdir { .. } => {}
            Action::Template {
                dest, mode, content, ..
            } => {
                line(
                    &mut o,
                    format!(
                        "write {dest} (mode {mode:04o}, {} bytes; a file already there is backed up first):",
                        content.len()
                    ),
                );
                quote_block(&mut o, content);
            }
            Action::ComposeEnv { file, service, env } => {
                line(&mut o, format!("in {file}, set on {service}:"));
                for (k, v) in env {
                    line(&mut o, format!("  {k}={v}"));
                }
                line(
                    &mut o,
                    "(only these entries change; comments, quoting and order stay)".to_string(),
                );
            }
            Action::ComposeService {
                file,
                service,
                content,
            } => {
                line(&mut o, format!("in {file}, add or replace service `{service}`:"));
                quote_block(&mut o, content);
            }
            Action::PrometheusJob { file, jobs, content } => {
                let names: Vec<String> = jobs
                    .iter()
                    .map(|j| {
                        format!(
                            "{} → {}{}",
                            j.job_name,
                            j.targets.join(", "),
                            j.id_label
                                .as_ref()
                                .map(|id| format!(" (id \"{id}\")"))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                line(&mut o, format!("in {file}, under scrape_configs, add or replace: {}", names.join("; ")));
                quote_block(&mut o, content);
            }
            Action::ComposeUp { .. } | Action::ComposeSignal { .. } | Action::Command { .. } => {}
            Action::WaitHealth {
                address,
                path,
                timeout_secs,
            } => line(
                &mut o,
                format!(
                    "GET http://{address}{path} through an SSH tunnel from {} until 200 (at most {timeout_secs} s)",
                    step.host
                ),
            ),
            Action::WaitJoined {
                node_id,
                timeout_secs,
            } => line(
                &mut o,
                format!(
                    "poll /cluster/simpleNodes on every member until node {node_id} shows status 3 (将加入 → 加入中 → 已加入), at most {timeout_secs} s"
                ),
            ),
        }
        for c in step.action.commands() {
            line(&mut o, format!("$ {}", c.run));
        }
        if let Action::Command { undo: Some(u), .. } = &step.action {
            line(&mut o, format!("undo: $ {}", u.run));
        }
    }
    let _ = writeln!(
        o,
        "\n{} steps. Nothing was changed. Without --dry-run, each step is journaled before it changes anything.",
        plan.steps.len()
    );
    o
}
