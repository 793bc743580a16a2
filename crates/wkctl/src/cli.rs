use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  done (for --dry-run: the plan was shown)
  1  a step failed on a host; the journal (.wkctl/runs/) says what was done
  2  bad input (command line, inventory, playbook, templates); nothing was changed
  3  a host cannot be used, or preflight failed; nothing was changed
  4  the cluster is locked by another run; nothing was changed";

/// Grow a running WuKongIM docker-compose deployment into a cluster, over SSH.
#[derive(Debug, Parser)]
#[command(name = "wkctl", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// The inventory describing the cluster.
    #[arg(
        short = 'i',
        long = "inventory",
        global = true,
        default_value = "cluster.yml",
        value_name = "FILE"
    )]
    pub inventory: PathBuf,

    /// How to print results: readable text, or JSON for scripts.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add nodes to the cluster: plan, apply step by step, wait until each has joined.
    #[command(after_help = concat!(
        "Examples:\n",
        "  wkctl expand --add node2                       add node2, step by step, journaled\n",
        "  wkctl expand --add node2 --dry-run             every diff and command; nothing changed\n",
        "  wkctl expand --add node2 --dry-run --offline   the plan alone, contacting nothing\n",
        "  wkctl -i prod.yml expand --add node2 --output json\n\n",
        "Exit codes:\n",
        "  0  done (for --dry-run: the plan was shown)\n",
        "  1  a step failed on a host; the journal (.wkctl/runs/) says what was done\n",
        "  2  bad input (command line, inventory, playbook, templates); nothing was changed\n",
        "  3  a host cannot be used, or preflight failed; nothing was changed\n",
        "  4  the cluster is locked by another run; nothing was changed"
    ))]
    Expand(ExpandArgs),
}

#[derive(Debug, Args)]
pub struct ExpandArgs {
    /// Node(s) of the inventory to add, in the order they join (repeat or separate with commas).
    #[arg(
        long = "add",
        value_name = "NODE",
        value_delimiter = ',',
        required = true
    )]
    pub add: Vec<String>,

    /// Show every step, file diff and command; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: contact no host at all; what only the hosts can tell is shown as placeholders.
    #[arg(long, requires = "dry_run")]
    pub offline: bool,

    /// Use this playbook instead of the built-in playbooks/expand.yml.
    #[arg(long, value_name = "FILE")]
    pub playbook: Option<PathBuf>,

    /// Take templates from this directory (same names replace the built-in ones).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,

    /// Remove a lock left by a run that died (check first that no other run is going on).
    #[arg(long)]
    pub force_unlock: bool,
}
