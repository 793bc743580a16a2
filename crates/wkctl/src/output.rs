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

/// A file's text as the plan shows it, secrets hidden.
fn quote_block(out: &mut String, text: &str) {
    for line in wk_plan::mask_secrets(text).lines() {
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
    plan_head(&mut o, plan, inv, sources, offline);
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
        step_text(&mut o, step);
    }
    let _ = writeln!(
        o,
        "\n{} steps. Nothing was changed. Without --dry-run, each step is journaled before it changes anything.\nFiles are replaced whole or not at all; a file that is a symbolic link is followed: the file it names takes the change, with its own mode and owner, and the link stays.",
        plan.steps.len()
    );
    o
}

/// What the plan is about: its nodes, its sources, what it assumed and warns of.
fn plan_head(o: &mut String, plan: &Plan, inv: &Inventory, sources: &Sources, offline: bool) {
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
}

/// What a step does, in full: the files it writes, the checks it makes, its commands.
fn step_text(o: &mut String, step: &wk_plan::plan::Step) {
    let line = |o: &mut String, s: String| {
        let _ = writeln!(o, "       {s}");
    };
    if let Some(after) = &step.after {
        line(
            o,
            format!(
                "starts once {} ended, beside the steps listed before it on other hosts",
                after.join(", ")
            ),
        );
    }
    match &step.action {
            Action::Preflight { checks } => {
                for c in checks {
                    line(o, format!("check {:<13} {}", c.id, c.description));
                }
            }
            Action::Lock { path } => line(
                o,
                format!("create {path} atomically (owner, run id, time, process nonce); refuse if another run holds it"),
            ),
            Action::Unlock { path } => line(o, format!("remove {path} if this run holds it")),
            Action::Mkdir { .. } => {}
            Action::Template { .. }
            | Action::NginxConf { .. }
            | Action::ComposeEnv { .. }
            | Action::ComposeService { .. }
            | Action::PrometheusJob { .. } => file_text(o, &step.action),
            Action::ComposeUp { .. }
            | Action::ComposeCreate { .. }
            | Action::ComposeSignal { .. }
            | Action::Command { .. } => {}
            Action::WaitHealth {
                address,
                path,
                timeout_secs,
            } => line(
                o,
                format!(
                    "GET http://{address}{path} through an SSH tunnel from {} until 200 (at most {timeout_secs} s)",
                    step.host
                ),
            ),
            Action::WaitJoined {
                node_id,
                timeout_secs,
            } => line(
                o,
                format!(
                    "poll /cluster/simpleNodes on every member until node {node_id} shows status 3 (将加入 → 加入中 → 已加入), at most {timeout_secs} s"
                ),
            ),
        }
    for c in step.action.commands() {
        line(o, format!("$ {}", c.run));
    }
    if let Action::Command { undo: Some(u), .. } = &step.action {
        line(o, format!("undo: $ {}", u.run));
    }
}

/// What a file-changing step writes, the file's new text in full.
fn file_text(o: &mut String, action: &Action) {
    let line = |o: &mut String, s: String| {
        let _ = writeln!(o, "       {s}");
    };
    match action {
        Action::Template {
            dest,
            mode,
            content,
            ..
        } => {
            line(
                o,
                format!(
                    "write {dest} (mode {mode:04o}, {} bytes; a file already there is backed up first):",
                    content.len()
                ),
            );
            quote_block(o, content);
        }
        Action::NginxConf {
            file,
            mode,
            content,
            upstreams,
            ..
        } => {
            line(
                o,
                format!(
                    "if {file} is missing, write it (mode {mode:04o}, {} bytes):",
                    content.len()
                ),
            );
            quote_block(o, content);
            line(
                o,
                "if it is there, add to its upstreams the servers they lack (everything else stays):".to_string(),
            );
            for (name, servers) in upstreams {
                line(o, format!("  {name}: {}", servers.join(" ")));
            }
        }
        Action::ComposeEnv { file, service, env } => {
            line(o, format!("in {file}, set on {service}:"));
            for (k, v) in env {
                line(o, format!("  {k}={v}"));
            }
            line(
                o,
                "(only these entries change; comments, quoting and order stay)".to_string(),
            );
        }
        Action::ComposeService {
            file,
            service,
            content,
            if_missing,
        } => {
            let what = if *if_missing {
                "add service `{service}` (one already there stays as it is)"
            } else {
                "add or replace service `{service}`"
            };
            line(
                o,
                format!("in {file}, {}:", what.replace("{service}", service)),
            );
            quote_block(o, content);
        }
        Action::PrometheusJob {
            file,
            jobs,
            content,
        } => {
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
            line(o, format!("in {file}, under scrape_configs, add each job no job with its `id` label is there for (or replace a stale one of the same name): {}", names.join("; ")));
            quote_block(o, content);
        }
        _ => {}
    }
}

/// Events as readable lines (stdout), one or a few per event.
pub struct Text;

/// The readable text of an event (empty for events shown only as progress).
#[allow(
    clippy::too_many_lines,
    reason = "one arm per event: the text of every event in one place"
)]
pub fn event_text(e: &wk_engine::Event) -> String {
    use wk_engine::Event as E;
    let mut o = String::new();
    {
        match e {
            E::Connected { host, addr } => {
                let _ = writeln!(o, "connected  {host} ({addr})");
            }
            E::Check {
                host,
                id,
                ok,
                detail,
                fix,
            } => {
                let _ = writeln!(
                    o,
                    "check      {host:<8} {id:<13} {}  {detail}",
                    if *ok { "ok    " } else { "FAILED" }
                );
                if let Some(f) = fix {
                    let _ = writeln!(o, "             fix: {f}");
                }
            }
            E::Warning { message } => {
                let _ = writeln!(o, "warning    {message}");
            }
            E::PlanReady {
                steps,
                fingerprint,
                run_id,
            } => {
                let _ = writeln!(
                    o,
                    "plan       {steps} steps (fingerprint {}){}",
                    &fingerprint[..16.min(fingerprint.len())],
                    run_id
                        .as_ref()
                        .map(|r| format!(", journal .wkctl/runs/{r}"))
                        .unwrap_or_else(|| ", dry run: nothing will change".into())
                );
            }
            E::StepStarted { .. } => {}
            E::Summary(s) => summary_text(&mut o, s),
            E::Endpoints {
                api,
                tcp,
                ws,
                admin,
                demo,
                members,
            } => {
                let _ = writeln!(
                    o,
                    "\nThe cluster is {}. Clients and operators use the load balancer:\n  HTTP API   {api}\n  TCP        {tcp}\n  WebSocket  {ws}\n  admin UI   {admin}   (节点管理 lists every node at 已加入)\n  demo       {demo}\n",
                    members.join(", ")
                );
            }
            E::StepDiff { diff, .. } => {
                for l in diff.lines() {
                    let _ = writeln!(o, "           {l}");
                }
            }
            E::StepCommand { command, .. } => {
                let _ = writeln!(o, "           $ {command}");
            }
            E::StepOk { id, host, note, ms } => {
                let _ = writeln!(o, "ok         {host:<8} {id:<28} {note}{}", slow(*ms));
            }
            E::StepChanged { id, host, note, ms } => {
                let _ = writeln!(o, "changed    {host:<8} {id:<28} {note}{}", slow(*ms));
            }
            E::StepFailed {
                id,
                host,
                error,
                ms,
            } => {
                let _ = writeln!(o, "FAILED     {host:<8} {id:<28} {error}{}", slow(*ms));
            }
            E::JoinStatus {
                node,
                id,
                status,
                text,
            } => {
                let _ = writeln!(o, "join       {node} ({id}): status {status} {text}");
            }
            E::Timings { phases } => {
                let parts: Vec<String> = phases
                    .iter()
                    .map(|(p, ms)| format!("{p} {ms} ms"))
                    .collect();
                let _ = writeln!(o, "timings    {}", parts.join(", "));
            }
            E::Stats { hosts, peak_rss_kb } => {
                let parts: Vec<String> = hosts
                    .iter()
                    .map(|(h, c, n)| format!("{h} {c} connection(s) {n} command(s)"))
                    .collect();
                let _ = writeln!(
                    o,
                    "stats      {}; peak memory {:.1} MB",
                    parts.join(", "),
                    *peak_rss_kb as f64 / 1024.0
                );
            }
            E::Finished {
                run_id,
                dry_run,
                changed,
                ok,
            } => {
                let _ = writeln!(
                    o,
                    "{}       {changed} step(s) {}, {ok} already as wanted{}",
                    if *dry_run { "dry-run" } else { "done   " },
                    if *dry_run {
                        "would change something"
                    } else {
                        "changed"
                    },
                    run_id
                        .as_ref()
                        .map(|r| format!("; journal .wkctl/runs/{r}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    o
}

impl wk_engine::Reporter for Text {
    fn event(&self, e: &wk_engine::Event) {
        let o = event_text(e);
        let mut out = std::io::stdout().lock();
        let _ = std::io::Write::write_all(&mut out, o.as_bytes());
        let _ = std::io::Write::flush(&mut out);
    }
}

/// On a terminal: a spinner for the step under way; the lines of [`Text`] above it.
pub struct Progress {
    multi: indicatif::MultiProgress,
    current: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            multi: indicatif::MultiProgress::new(),
            current: std::sync::Mutex::new(None),
        }
    }
}

impl wk_engine::Reporter for Progress {
    fn event(&self, e: &wk_engine::Event) {
        use wk_engine::Event as E;
        let mut cur = self.current.lock().expect("not poisoned");
        if let E::StepStarted {
            n,
            total,
            id,
            host,
            title,
        } = e
        {
            if let Some(pb) = cur.take() {
                pb.finish_and_clear();
            }
            let pb = self.multi.add(indicatif::ProgressBar::new_spinner());
            pb.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{prefix}] {msg} {elapsed}")
                    .expect("a valid template"),
            );
            pb.set_prefix(format!("{n}/{total}"));
            pb.set_message(format!("{host}: {title} ({id})"));
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            *cur = Some(pb);
            return;
        }
        let text = event_text(e);
        if matches!(
            e,
            E::StepOk { .. } | E::StepChanged { .. } | E::StepFailed { .. } | E::Finished { .. }
        ) {
            if let Some(pb) = cur.take() {
                pb.finish_and_clear();
            }
        }
        for line in text.lines() {
            let _ = self.multi.println(line);
        }
    }
}

/// The version of `--output json`'s lines (`docs/json.md`): bumped when a field changes
/// meaning or goes; new fields and events do not bump it.
pub const JSON_VERSION: u64 = 1;

/// An event as a JSON line: its fields, the schema version (`v`) and when it happened (`ts`,
/// RFC 3339 UTC with milliseconds).
pub fn json_line(e: &wk_engine::Event) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("v".into(), JSON_VERSION.into());
        m.insert("ts".into(), wk_engine::journal::timestamp().into());
    }
    v
}

/// The last JSON line of a command that failed: its exit code and message.
pub fn json_error(code: u8, message: &str) -> serde_json::Value {
    serde_json::json!({
        "event": "error",
        "code": code,
        "message": message,
        "v": JSON_VERSION,
        "ts": wk_engine::journal::timestamp(),
    })
}

/// Events as JSON lines (stdout).
pub struct JsonLines;

impl wk_engine::Reporter for JsonLines {
    fn event(&self, e: &wk_engine::Event) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, &json_line(e));
        let _ = std::io::Write::write_all(&mut out, b"\n");
        let _ = std::io::Write::flush(&mut out);
    }
}

/// Asks whether to go on, after the summary: `--yes` answers yes; otherwise a y/N prompt when
/// stdin is a terminal (anything but y or yes is no); without one, nobody can answer.
#[derive(Debug)]
pub struct Ask {
    pub yes: bool,
}

impl wk_engine::Confirm for Ask {
    fn ask(&self, _: &wk_engine::Summary) -> wk_engine::Answer {
        use std::io::{BufRead, IsTerminal, Write};
        if self.yes {
            return wk_engine::Answer::Yes;
        }
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return wk_engine::Answer::NoTerminal;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "Do you want to continue? Only 'y' goes on. [y/N] ");
        let _ = err.flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).is_err() {
            return wk_engine::Answer::No;
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => wk_engine::Answer::Yes,
            _ => wk_engine::Answer::No,
        }
    }
}

/// Asks on the terminal (never echoed, never logged); without a terminal, answers nothing.
pub struct TtyPrompter;

impl wk_remote::ssh::Prompter for TtyPrompter {
    fn passphrase(&self, key: &std::path::Path) -> Option<wk_remote::Secret> {
        rpassword::prompt_password(format!("passphrase for {}: ", key.display()))
            .ok()
            .map(wk_remote::Secret::new)
    }
    fn password(&self, user: &str, host: &str) -> Option<wk_remote::Secret> {
        rpassword::prompt_password(format!("password for {user}@{host}: "))
            .ok()
            .map(wk_remote::Secret::new)
    }
    fn keyboard_interactive(
        &self,
        user: &str,
        host: &str,
        prompts: &[(String, bool)],
    ) -> Option<Vec<wk_remote::Secret>> {
        prompts
            .iter()
            .map(|(p, _)| {
                rpassword::prompt_password(format!("{user}@{host} {p}"))
                    .ok()
                    .map(wk_remote::Secret::new)
            })
            .collect()
    }
}

/// A reporter that shows nothing (commands that print their own result).
pub struct Quiet;

impl wk_engine::Reporter for Quiet {
    fn event(&self, _: &wk_engine::Event) {}
}

/// A step's duration when it took a second or more (where the time of a run went).
fn slow(ms: Option<u64>) -> String {
    match ms {
        Some(ms) if ms >= 1000 => format!("  ({:.1} s)", ms as f64 / 1000.0),
        _ => String::new(),
    }
}

/// What a run is about to change, before it asks.
fn summary_text(o: &mut String, s: &wk_engine::Summary) {
    let _ = writeln!(
        o,
        "\n{} will change {} host(s): {}",
        s.command,
        s.hosts.len(),
        s.hosts.join(", ")
    );
    let mut t = Table::new(&["", "HOST", "FILE", "CHANGE"], &[]);
    for f in &s.files {
        let change = match f.what.as_str() {
            "edit" => format!("+{} -{}", f.added, f.removed),
            "create" => format!("new, {} lines", f.added),
            other => other.to_string(),
        };
        t.row(vec![String::new(), f.host.clone(), f.path.clone(), change]);
    }
    if !s.files.is_empty() {
        o.push_str(&t.render());
    }
    for v in &s.services {
        let _ = writeln!(o, "  service  {v}");
    }
    if !s.joins.is_empty() {
        let _ = writeln!(o, "  join     {} (one at a time)", s.joins.join(", "));
    }
    let _ = writeln!(o, "  undo     {}\n", s.undo);
}

/// A table whose columns line up on a terminal: widths are display widths (将加入 takes six
/// columns, not three), each column as wide as its widest cell; the last is not padded.
pub struct Table {
    rows: Vec<Vec<String>>,
    /// Columns aligned right (numbers).
    right: Vec<usize>,
}

impl Table {
    pub fn new(header: &[&str], right: &[usize]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
            right: right.to_vec(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        use unicode_width::UnicodeWidthStr;
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.width())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut o = String::new();
        for r in &self.rows {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                let pad = " ".repeat(widths[c].saturating_sub(cell.width()));
                if c > 0 {
                    line.push_str("  ");
                }
                if self.right.contains(&c) {
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if c + 1 < r.len() {
                        line.push_str(&pad);
                    }
                }
            }
            o.push_str(line.trim_end());
            o.push('\n');
        }
        o
    }
}

/// `wkctl status`'s table: a row per node, what is wrong with it last.
pub fn status_table(rows: &[wk_engine::status::NodeStatus]) -> String {
    let mut t = Table::new(
        &[
            "NAME",
            "ID",
            "CLUSTER ADDR",
            "ONLINE",
            "STATUS",
            "SLOTS",
            "HEALTH",
            "IMAGE",
            "NGINX",
            "PROMETHEUS",
            "PROBLEMS",
        ],
        &[5],
    );
    let yn = |b: bool| if b { "yes" } else { "no" };
    for r in rows {
        let status = if r.status == 0 {
            r.status_text.clone()
        } else {
            format!("{} {}", r.status, r.status_text)
        };
        t.row(vec![
            r.name.clone(),
            r.id.to_string(),
            r.cluster_addr.clone().unwrap_or_else(|| "-".into()),
            (if r.status == 0 { "-" } else { yn(r.online) }).to_string(),
            status,
            r.slots.to_string(),
            r.health.clone(),
            r.image_tag.clone().unwrap_or_else(|| "-".into()),
            yn(r.in_nginx).to_string(),
            yn(r.in_prometheus).to_string(),
            if r.problems.is_empty() {
                "-".to_string()
            } else {
                r.problems.join("; ")
            },
        ]);
    }
    t.render()
}

/// wkctl's peak resident memory (VmHWM), in kB; 0 where /proc does not tell.
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
