use std::io::Write;
use std::sync::Arc;

use wk_plan::{Inventory, PlanRequest, Sources};

use crate::cli::{Cli, ExpandArgs, OutputFormat};
use crate::{output, Failure};

pub fn run(cli: &Cli, args: &ExpandArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let (inventory, text) = load_inventory(cli)?;
    let sources = Sources::with_overrides(args.playbook.as_deref(), args.templates.as_deref())
        .map_err(Failure::bad_input)?;
    if args.offline {
        return offline(cli, args, &inventory, &text, &sources, out);
    }
    // A saved plan names the nodes; it is read (and refused if it is none) before any host
    // is contacted, as bad input is.
    let expect = match &args.plan {
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::bad_input(format!("cannot read the saved plan {name}: {e}"))
            })?;
            Some(wk_engine::saved::SavedPlan::parse(&name, &text).map_err(engine_failure)?)
        }
        None => None,
    };
    let add = expect
        .as_ref()
        .map(|p| p.add.clone())
        .unwrap_or_else(|| args.add.clone());
    inventory
        .check_additions(&add)
        .map_err(|d| Failure::bad_input(output::diagnostics(&d)))?;
    let outcome = engine_run(
        cli,
        &inventory,
        &text,
        &sources,
        add,
        Flags {
            dry_run: args.dry_run,
            force_unlock: args.force_unlock,
            check_only: false,
            allow_version_mix: args.allow_version_mix,
            parallel: args.parallel as usize,
            yes: args.yes,
            saving: args.save.is_some(),
            expect,
        },
        None,
    )?;
    if let (Some(path), Some(saved)) = (&args.save, outcome.saved) {
        let json = serde_json::to_string_pretty(&saved).unwrap_or_default() + "\n";
        write_private(path, json.as_bytes()).map_err(|e| Failure {
            code: crate::exit::FAILED,
            message: format!("cannot write the saved plan {}: {e}", path.display()),
        })?;
        eprintln!(
            "saved the plan to {} (it holds the rendered files, secrets too: keep it as you keep the inventory); apply exactly it with `wkctl expand --plan {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Writes a file only its owner can read (0600): a saved plan holds rendered compose files.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// How a run goes, as the command line says.
struct Flags {
    dry_run: bool,
    force_unlock: bool,
    check_only: bool,
    allow_version_mix: bool,
    parallel: usize,
    yes: bool,
    saving: bool,
    expect: Option<wk_engine::saved::SavedPlan>,
}

/// `wkctl check`: the expansion's preflight, stopping before anything would change.
pub fn check(cli: &Cli, args: &crate::cli::CheckArgs) -> Result<(), Failure> {
    let (inventory, text) = load_inventory(cli)?;
    inventory
        .check_additions(&args.add)
        .map_err(|d| Failure::bad_input(output::diagnostics(&d)))?;
    engine_run(
        cli,
        &inventory,
        &text,
        &Sources::embedded(),
        args.add.clone(),
        Flags {
            dry_run: true,
            force_unlock: false,
            check_only: true,
            allow_version_mix: args.allow_version_mix,
            parallel: 8,
            yes: false,
            saving: false,
            expect: None,
        },
        None,
    )
    .map(|_| ())
}

fn engine_run(
    cli: &Cli,
    inventory: &Inventory,
    text: &str,
    sources: &Sources,
    add: Vec<String>,
    flags: Flags,
    resume: Option<wk_engine::Resume>,
) -> Result<wk_engine::Outcome, Failure> {
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reporter: Arc<dyn wk_engine::Reporter> = match cli.output {
        OutputFormat::Json => Arc::new(output::JsonLines),
        OutputFormat::Text if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            Arc::new(output::Progress::new())
        }
        OutputFormat::Text => Arc::new(output::Text),
    };
    let runs_dir = runs_dir(cli);
    let opts = wk_engine::Options {
        add,
        dry_run: flags.dry_run,
        force_unlock: flags.force_unlock,
        check_only: flags.check_only,
        allow_version_mix: flags.allow_version_mix,
        parallel: flags.parallel,
        resume,
        cancel: Some(cancel.clone()),
        runs_dir,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        owner: owner(),
        confirm: Some(Arc::new(output::Ask { yes: flags.yes })),
        saving: flags.saving,
        expect: flags.expect,
    };
    let rt = crate::runtime()?;
    rt.block_on(async {
        // Ctrl-C: the first stops after the step under way, the second aborts it.
        let flag = cancel.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    eprintln!("\nCtrl-C again: the step under way is cut; `wkctl resume` looks at it again");
                    std::process::exit(130);
                }
                eprintln!("\nCtrl-C: stopping after the step under way (Ctrl-C again cuts it)");
            }
        });
        // Hosts that cannot be reached are the engine's to judge: fine for a node declared
        // but not deployed, fatal (before any change) for the gateway, the new nodes, members.
        let (hosts, unreachable) = connect(inventory, reporter.as_ref()).await?;
        let engine = wk_engine::Engine::new(
            inventory.clone(),
            text.to_string(),
            sources.clone(),
            hosts.clone(),
            reporter.clone(),
        )
        .with_unreachable(unreachable);
        let result = engine.expand(&opts).await;
        reporter.event(&wk_engine::Event::Stats {
            hosts: hosts
                .iter()
                .map(|(n, h)| (n.clone(), h.connections_opened(), h.commands_run()))
                .collect(),
            peak_rss_kb: output::peak_rss_kb(),
        });
        for h in hosts.values() {
            h.close().await;
        }
        result.map_err(engine_failure)
    })
}

fn engine_failure(e: wk_engine::EngineError) -> Failure {
    Failure {
        code: e.exit_code(),
        message: e.to_string(),
    }
}

fn offline(
    cli: &Cli,
    args: &ExpandArgs,
    inventory: &Inventory,
    text: &str,
    sources: &Sources,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let request = PlanRequest {
        add: args.add.clone(),
        ..PlanRequest::default()
    };
    let plan = wk_plan::build(inventory, text, sources, &request).map_err(|e| match e {
        wk_plan::PlanError::Input(d) => Failure::bad_input(output::diagnostics(&d)),
        other => Failure::bad_input(other.to_string()),
    })?;
    let written = match cli.output {
        OutputFormat::Text => {
            out.write_all(output::plan_text(&plan, inventory, sources, true).as_bytes())
        }
        OutputFormat::Json => {
            let doc = serde_json::json!({ "v": output::JSON_VERSION, "offline": true, "dry_run": true, "plan": plan });
            serde_json::to_writer_pretty(&mut *out, &doc)
                .map_err(std::io::Error::other)
                .and_then(|()| out.write_all(b"\n"))
        }
    };
    written.map_err(|e| Failure {
        code: crate::exit::FAILED,
        message: format!("cannot write the plan to stdout: {e}"),
    })
}

/// Reads and checks the inventory; every problem becomes one bad-input failure.
pub fn load_inventory(cli: &Cli) -> Result<(Inventory, String), Failure> {
    let path = &cli.inventory;
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::bad_input(format!(
            "cannot read the inventory {name}: {e}\n  fix: run wkctl where cluster.yml is, or name it with `-i FILE` (examples/cluster.yml shows one)"
        ))
    })?;
    let inv =
        Inventory::parse(&name, &text).map_err(|d| Failure::bad_input(output::diagnostics(&d)))?;
    Ok((inv, text))
}

/// `wkctl status`: a table (or JSON) of every node; exit 1 when something is wrong.
pub fn status(cli: &Cli, out: &mut dyn Write) -> Result<(), Failure> {
    let (inventory, _) = load_inventory(cli)?;
    let quiet: Arc<dyn wk_engine::Reporter> = Arc::new(output::Quiet);
    let rt = crate::runtime()?;
    let rows = rt.block_on(async {
        let (hosts, unreachable) = connect(&inventory, quiet.as_ref()).await?;
        let rows = wk_engine::status::status(&inventory, &hosts, &unreachable).await;
        for h in hosts.values() {
            h.close().await;
        }
        Ok::<_, Failure>(rows)
    })?;
    let bad = rows.iter().filter(|r| !r.problems.is_empty()).count();
    let text =
        match cli.output {
            OutputFormat::Json => serde_json::to_string_pretty(
                &serde_json::json!({ "v": output::JSON_VERSION, "nodes": rows, "problems": bad }),
            )
            .unwrap_or_default()
                + "\n",
            OutputFormat::Text => output::status_table(&rows),
        };
    crate::write_out(out, text.as_bytes())?;
    if bad > 0 {
        return Err(Failure { code: crate::exit::FAILED, message: format!("{bad} node(s) need attention (see PROBLEMS); docs/troubleshooting.md says what to do") });
    }
    Ok(())
}

/// `.wkctl/runs` beside the inventory.
pub fn runs_dir(cli: &Cli) -> std::path::PathBuf {
    let parent = cli
        .inventory
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    parent.join(".wkctl/runs")
}

fn pick_run(
    cli: &Cli,
    id: Option<&String>,
    wanted: impl Fn(&str) -> bool,
    what: &str,
) -> Result<std::path::PathBuf, Failure> {
    let dir = runs_dir(cli);
    let runs = wk_engine::runs::list_runs(&dir);
    let id = match id {
        Some(i) => runs
            .iter()
            .find(|r| &r.0 == i)
            .map(|r| r.0.clone())
            .ok_or_else(|| {
                Failure::bad_input(format!(
                    "no run {i} in {}\n  fix: `wkctl runs` lists them",
                    dir.display()
                ))
            })?,
        None => runs
            .iter()
            .rev()
            .find(|r| wanted(&r.3))
            .map(|r| r.0.clone())
            .ok_or_else(|| Failure::bad_input(format!("no run to {what} in {}", dir.display())))?,
    };
    Ok(dir.join(id))
}

/// `wkctl runs` / `wkctl runs show [ID]`.
pub fn runs(
    cli: &Cli,
    show: Option<&crate::cli::RunsCommand>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut text = String::new();
    match show {
        None => {
            let runs = wk_engine::runs::list_runs(&runs_dir(cli));
            if cli.output == OutputFormat::Json {
                let v: Vec<_> = runs.iter().map(|(id, cmd, t, st)| serde_json::json!({"id": id, "command": cmd, "started": t, "state": st})).collect();
                text = serde_json::to_string_pretty(
                    &serde_json::json!({"v": output::JSON_VERSION, "runs": v}),
                )
                .unwrap_or_default()
                    + "\n";
            } else {
                let mut t = output::Table::new(&["RUN", "STATE", "COMMAND"], &[]);
                for (id, cmd, _, st) in &runs {
                    t.row(vec![id.clone(), st.clone(), cmd.clone()]);
                }
                text = t.render();
            }
        }
        Some(crate::cli::RunsCommand::Show { id }) => {
            let dir = pick_run(cli, id.as_ref(), |_| true, "show")?;
            let lines = wk_engine::journal::Journal::read(&dir)
                .map_err(|e| Failure::bad_input(e.to_string()))?;
            for l in &lines {
                let what = match l["type"].as_str().unwrap_or("") {
                    "run_started" => {
                        format!("run started: {}", l["command"].as_str().unwrap_or(""))
                    }
                    "run_resumed" => {
                        format!("run resumed: {}", l["command"].as_str().unwrap_or(""))
                    }
                    "step_started" => format!(
                        "{} on {}",
                        l["step"].as_str().unwrap_or(""),
                        l["host"].as_str().unwrap_or("")
                    ),
                    "before_image" => format!(
                        "  before: {} on {} ({})",
                        l["path"].as_str().unwrap_or(""),
                        l["host"].as_str().unwrap_or(""),
                        if l["existed"] == true {
                            "kept in before/"
                        } else {
                            "did not exist"
                        }
                    ),
                    "lock" => format!(
                        "  lock: {} on {}",
                        l["path"].as_str().unwrap_or(""),
                        l["host"].as_str().unwrap_or("")
                    ),
                    "applied" => format!("  written: {}", l["path"].as_str().unwrap_or("")),
                    "verified" => format!("  done: {}", l["note"].as_str().unwrap_or("")),
                    "ok" => format!("  already so: {}", l["note"].as_str().unwrap_or("")),
                    "failed" => format!("  FAILED: {}", l["error"].as_str().unwrap_or("")),
                    "undone" => format!(
                        "  undone: {} on {}",
                        l["path"].as_str().unwrap_or(""),
                        l["host"].as_str().unwrap_or("")
                    ),
                    other => other.replace('_', " "),
                };
                text.push_str(&format!("{:>4}  {what}\n", l["seq"].as_u64().unwrap_or(0)));
            }
        }
    }
    crate::write_out(out, text.as_bytes())
}

/// `wkctl resume [ID]`.
pub fn resume(cli: &Cli, args: &crate::cli::ResumeArgs) -> Result<(), Failure> {
    let dir = pick_run(
        cli,
        args.id.as_ref(),
        |st| st.starts_with("stopped") || st == "interrupted",
        "resume",
    )?;
    let state = wk_engine::runs::resume_state(&dir).map_err(engine_failure)?;
    let add: Vec<String> = state.plan["adding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    let (inventory, text) = load_inventory(cli)?;
    // The playbook and templates the run was started with, unless told otherwise.
    let playbook = args.playbook.clone().or_else(|| state.playbook.clone());
    let templates = args.templates.clone().or_else(|| state.templates.clone());
    let sources = Sources::with_overrides(playbook.as_deref(), templates.as_deref())
        .map_err(Failure::bad_input)?;
    inventory
        .check_additions(&add)
        .map_err(|d| Failure::bad_input(output::diagnostics(&d)))?;
    engine_run(
        cli,
        &inventory,
        &text,
        &sources,
        add,
        Flags {
            dry_run: false,
            force_unlock: args.force_unlock,
            check_only: false,
            // As the run was started, or told now.
            allow_version_mix: args.allow_version_mix || state.allow_version_mix,
            parallel: args.parallel as usize,
            yes: args.yes,
            saving: false,
            expect: None,
        },
        Some(state),
    )
    .map(|_| ())
}

/// `wkctl rollback [ID]`.
pub fn rollback(cli: &Cli, args: &crate::cli::RollbackArgs) -> Result<(), Failure> {
    let dir = pick_run(cli, args.id.as_ref(), |st| st != "rolled back", "roll back")?;
    let (inventory, text) = load_inventory(cli)?;
    let reporter: Arc<dyn wk_engine::Reporter> = match cli.output {
        OutputFormat::Json => Arc::new(output::JsonLines),
        OutputFormat::Text => Arc::new(output::Text),
    };
    let rt = crate::runtime()?;
    rt.block_on(async {
        let hosts = connect_every(&inventory, reporter.as_ref()).await?;
        let engine = wk_engine::Engine::new(
            inventory.clone(),
            text.clone(),
            Sources::embedded(),
            hosts.clone(),
            reporter.clone(),
        );
        let result = engine
            .rollback(
                &dir,
                &wk_engine::rollback::RollbackOptions {
                    dry_run: args.dry_run,
                    after_join: args.after_join,
                    force: args.force,
                    force_unlock: args.force_unlock,
                    owner: owner(),
                    confirm: Some(Arc::new(output::Ask { yes: args.yes })),
                },
            )
            .await;
        for h in hosts.values() {
            h.close().await;
        }
        let n = result.map_err(engine_failure)?;
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        reporter.event(&wk_engine::Event::Warning {
            message: if args.dry_run {
                format!("dry run: {n} change(s) of run {id} would be undone; nothing was changed")
            } else {
                format!("run {id}: {n} change(s) undone")
            },
        });
        Ok(())
    })
}

/// Like [`connect`], for commands that need every host (rollback): one that cannot be reached
/// stops the command before it changes anything.
async fn connect_every(
    inventory: &Inventory,
    reporter: &dyn wk_engine::Reporter,
) -> Result<std::collections::BTreeMap<String, Arc<wk_remote::SshRemote>>, Failure> {
    let (hosts, unreachable) = connect(inventory, reporter).await?;
    if unreachable.is_empty() {
        return Ok(hosts);
    }
    for h in hosts.values() {
        h.close().await;
    }
    Err(Failure {
        code: 3,
        message: format!(
            "{}\n  nothing was changed",
            unreachable.into_values().collect::<Vec<_>>().join("\n")
        ),
    })
}

/// One SSH connection to every host of the inventory, for every command that talks to hosts,
/// and the hosts that could not be reached (name -> why).
/// The sudo password, when a host needs one, comes from WKCTL_SUDO_PASSWORD or is asked once on
/// the terminal; it goes to the hosts on stdin only.
async fn connect(
    inventory: &Inventory,
    reporter: &dyn wk_engine::Reporter,
) -> Result<wk_engine::Connections, Failure> {
    let needs = inventory
        .nodes
        .iter()
        .any(|n| n.ssh.sudo == wk_plan::inventory::SudoMode::Password);
    let sudo_password = if needs {
        match std::env::var("WKCTL_SUDO_PASSWORD") {
            Ok(p) => Some(wk_remote::Secret::new(p)),
            Err(_) => rpassword::prompt_password("sudo password on the hosts: ")
                .ok()
                .map(wk_remote::Secret::new),
        }
    } else {
        None
    };
    wk_engine::connect_all(
        inventory,
        Arc::new(output::TtyPrompter),
        sudo_password,
        reporter,
    )
    .await
    .map_err(engine_failure)
}

/// `user@machine`: who holds a lock this process takes.
fn owner() -> String {
    format!(
        "{}@{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    )
}
