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
    // Bad input is refused before any host is contacted.
    inventory
        .check_additions(&args.add)
        .map_err(|d| Failure::bad_input(output::diagnostics(&d)))?;
    engine_run(
        cli,
        &inventory,
        &text,
        &sources,
        args.add.clone(),
        args.dry_run,
        args.force_unlock,
        false,
        args.parallel as usize,
    )
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
        true,
        false,
        true,
        8,
    )
}

#[allow(clippy::too_many_arguments)]
fn engine_run(
    cli: &Cli,
    inventory: &Inventory,
    text: &str,
    sources: &Sources,
    add: Vec<String>,
    dry_run: bool,
    force_unlock: bool,
    check_only: bool,
    parallel: usize,
) -> Result<(), Failure> {
    let reporter: Arc<dyn wk_engine::Reporter> = match cli.output {
        OutputFormat::Json => Arc::new(output::JsonLines),
        OutputFormat::Text if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            Arc::new(output::Progress::new())
        }
        OutputFormat::Text => Arc::new(output::Text),
    };
    let runs_dir = cli
        .inventory
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(std::path::Path::new("."))
        .join(".wkctl/runs");
    let opts = wk_engine::Options {
        add,
        dry_run,
        force_unlock,
        check_only,
        parallel,
        runs_dir,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        owner: format!(
            "{}@{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "unknown".into())
        ),
    };
    let sudo_password = if inventory
        .nodes
        .iter()
        .any(|n| n.ssh.sudo == wk_plan::inventory::SudoMode::Password)
    {
        match std::env::var("WKCTL_SUDO_PASSWORD") {
            Ok(p) => Some(wk_remote::Secret::new(p)),
            Err(_) => rpassword::prompt_password("sudo password on the hosts: ")
                .ok()
                .map(wk_remote::Secret::new),
        }
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: 1,
            message: e.to_string(),
        })?;
    rt.block_on(async {
        let hosts = wk_engine::connect_all(
            inventory,
            Arc::new(output::TtyPrompter),
            sudo_password,
            reporter.as_ref(),
        )
        .await
        .map_err(engine_failure)?;
        let engine = wk_engine::Engine::new(
            inventory.clone(),
            text.to_string(),
            sources.clone(),
            hosts.clone(),
            reporter.clone(),
        );
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
        result.map(|_| ()).map_err(engine_failure)
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
            let doc = serde_json::json!({ "offline": true, "dry_run": true, "plan": plan });
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: 1,
            message: e.to_string(),
        })?;
    let rows = rt.block_on(async {
        let hosts = wk_engine::connect_all(
            &inventory,
            Arc::new(output::TtyPrompter),
            None,
            quiet.as_ref(),
        )
        .await
        .map_err(engine_failure)?;
        let rows = wk_engine::status::status(&inventory, &hosts).await;
        for h in hosts.values() {
            h.close().await;
        }
        Ok::<_, Failure>(rows)
    })?;
    let bad = rows.iter().filter(|r| !r.problems.is_empty()).count();
    let text = match cli.output {
        OutputFormat::Json => {
            serde_json::to_string_pretty(&serde_json::json!({ "nodes": rows, "problems": bad }))
                .unwrap_or_default()
                + "\n"
        }
        OutputFormat::Text => output::status_table(&rows),
    };
    crate::write_out(out, text.as_bytes())?;
    if bad > 0 {
        return Err(Failure { code: crate::exit::FAILED, message: format!("{bad} node(s) need attention (see PROBLEMS); docs/troubleshooting.md says what to do") });
    }
    Ok(())
}
