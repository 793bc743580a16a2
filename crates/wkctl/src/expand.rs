use std::io::Write;

use wk_plan::{Inventory, PlanRequest, Sources};

use crate::cli::{Cli, ExpandArgs, OutputFormat};
use crate::{output, Failure};

pub fn run(cli: &Cli, args: &ExpandArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let (inventory, text) = load_inventory(cli)?;
    let sources = Sources::with_overrides(args.playbook.as_deref(), args.templates.as_deref())
        .map_err(Failure::bad_input)?;
    if !(args.dry_run && args.offline) {
        return Err(Failure::bad_input(
            "this build of wkctl can only preview an expansion offline: the SSH engine is not in it yet.\n  \
             fix: run `wkctl expand --add <node> --dry-run --offline` to see every step, file and command",
        ));
    }
    let request = PlanRequest {
        add: args.add.clone(),
        ..PlanRequest::default()
    };
    let plan = wk_plan::build(&inventory, &text, &sources, &request).map_err(|e| match e {
        wk_plan::PlanError::Input(d) => Failure::bad_input(crate::output::diagnostics(&d)),
        other => Failure::bad_input(other.to_string()),
    })?;
    let written = match cli.output {
        OutputFormat::Text => {
            out.write_all(output::plan_text(&plan, &inventory, &sources, true).as_bytes())
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
    let inv = Inventory::parse(&name, &text)
        .map_err(|d| Failure::bad_input(crate::output::diagnostics(&d)))?;
    Ok((inv, text))
}
