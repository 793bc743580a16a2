use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  done (for --dry-run: the plan was shown)
  1  a step failed on a host; the journal (.wkctl/runs/) says what was done
  2  bad input (command line, inventory, playbook, templates); nothing was changed
  3  a host cannot be used, or preflight failed; nothing was changed
  4  the cluster is locked by another run; nothing was changed
130  stopped by Ctrl-C (after the step under way; a second Ctrl-C cuts it): `wkctl resume` goes on";

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

    /// Run the preflight alone: every check on every host, with the fix for each failure.
    #[command(after_help = concat!(
        "Examples:\n",
        "  wkctl check --add node2     is the cluster ready for node2?\n",
        "  wkctl check --add node2 --output json\n\n",
        "Exit codes: 0 every check passed; 2 bad input; 3 a check failed or a host cannot be used"
    ))]
    Check(CheckArgs),

    /// Every node: cluster address, online, 将加入/加入中/已加入, slots, /health, image, whether
    /// nginx and Prometheus know it. Exits 1 when something is wrong.
    #[command(after_help = concat!(
        "Examples:\n",
        "  wkctl status\n",
        "  wkctl status --output json\n\n",
        "Exit codes: 0 all well; 1 something is wrong (see PROBLEMS); 2 bad input; 3 a host cannot be used"
    ))]
    Status,

    /// Write an inventory (cluster.yml, or -i FILE) from a running single node: reads its compose
    /// file over SSH and fills in what it finds, marking what you must still fill in.
    #[command(after_help = concat!(
        "Examples:\n",
        "  wkctl init --from deploy@10.0.0.11\n",
        "  wkctl -i prod.yml init --from root@node1.lan:2222 --dir /opt/wukongim --identity ~/.ssh/prod\n\n",
        "Exit codes: 0 written; 2 bad input (or the file exists: use --force); 3 the host cannot be used"
    ))]
    Init(InitArgs),

    /// The runs journaled beside the inventory (.wkctl/runs): id, command, start, state.
    #[command(
        after_help = "Examples:\n  wkctl runs\n  wkctl runs show              the last run, as a timeline\n  wkctl runs show 20261125T013520Z-d8d2"
    )]
    Runs {
        #[command(subcommand)]
        show: Option<RunsCommand>,
    },

    /// Go on with a run that stopped: steps already done are checked on the hosts and skipped.
    #[command(after_help = concat!(
        "Examples:\n",
        "  wkctl resume                           the last run that did not finish\n",
        "  wkctl resume 20261125T013520Z-d8d2\n\n",
        "It refuses when the inventory, playbook or templates changed since the run began.\n",
        "Exit codes: as for expand"
    ))]
    Resume(ResumeArgs),

    /// Undo a run, newest change first: files back byte for byte, what it created removed.
    #[command(after_help = concat!(
        "Examples:\n",
        "  wkctl rollback --dry-run                what the last run's rollback would do\n",
        "  wkctl rollback 20261125T013520Z-d8d2\n\n",
        "A node that has joined cannot leave a WuKongIM v2 cluster (no removal API): the rollback\n",
        "stops and explains, unless --after-join.\n",
        "Exit codes: 0 undone; 2 refused (see the message); 3 a host cannot be used"
    ))]
    Rollback(RollbackArgs),

    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = "Example:\n  wkctl completions bash > /etc/bash_completion.d/wkctl")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) to stdout.
    #[command(after_help = "Example:\n  wkctl man > /usr/local/share/man/man1/wkctl.1")]
    Man,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Node(s) of the inventory that would be added.
    #[arg(
        long = "add",
        value_name = "NODE",
        value_delimiter = ',',
        required = true
    )]
    pub add: Vec<String>,

    /// Go on though the cluster's nodes run different WuKongIM builds (`app_version`), or a new
    /// node starts on another build than the members. WuKongIM wants one build on every node.
    #[arg(long)]
    pub allow_version_mix: bool,
}

#[derive(Debug, Args)]
pub struct ExpandArgs {
    /// Node(s) of the inventory to add, in the order they join (repeat or separate with commas).
    #[arg(
        long = "add",
        value_name = "NODE",
        value_delimiter = ',',
        required_unless_present = "plan"
    )]
    pub add: Vec<String>,

    /// Show every step, file diff and command; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: save the plan, with what every host and the cluster look like now (file
    /// hashes, services, members), for a review; `--plan FILE` applies exactly that plan.
    #[arg(
        long,
        value_name = "FILE",
        requires = "dry_run",
        conflicts_with = "offline"
    )]
    pub save: Option<PathBuf>,

    /// Apply a plan saved with --save, and nothing else: refused (exit 3, nothing changed) when
    /// a host, the cluster, the inventory, the playbook or the templates changed since.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["add", "dry_run"])]
    pub plan: Option<PathBuf>,

    /// With --dry-run: contact no host at all; what only the hosts can tell is shown as placeholders.
    #[arg(long, requires = "dry_run")]
    pub offline: bool,

    /// Use this playbook instead of the built-in playbooks/expand.yml. A playbook is code: its
    /// `command:` steps run any shell command and its steps write any path on the hosts, as the
    /// SSH user and through sudo; use only one you trust as you trust wkctl.
    #[arg(long, value_name = "FILE")]
    pub playbook: Option<PathBuf>,

    /// Take templates from this directory (same names replace the built-in ones). Templates
    /// decide what every file wkctl writes holds (compose files: what runs, as root); use only
    /// ones you trust.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,

    /// Remove a lock left by a run that died (check first that no other run is going on).
    #[arg(long)]
    pub force_unlock: bool,

    /// Go on without asking (the summary of what changes is still shown). Without a terminal
    /// to ask on, a run that changes something needs it. Also WKCTL_YES=1.
    #[arg(long, short = 'y', env = "WKCTL_YES", value_parser = clap::builder::BoolishValueParser::new())]
    pub yes: bool,

    /// Go on though the cluster's nodes run different WuKongIM builds (`app_version`), or a new
    /// node starts on another build than the members. WuKongIM wants one build on every node.
    #[arg(long)]
    pub allow_version_mix: bool,

    /// At most this many hosts prepared at once (checks and file changes; joins are always one at a time).
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The running node: `[user@]host[:port]` (an alias of ~/.ssh/config works too).
    #[arg(long, value_name = "[USER@]HOST[:PORT]")]
    pub from: String,
    /// Where its docker-compose.yml is.
    #[arg(long, default_value = "~/wukongim", value_name = "DIR")]
    pub dir: String,
    /// A private key to log in with (repeatable); the agent and ~/.ssh keys are tried too.
    #[arg(long = "identity", value_name = "FILE")]
    pub identity: Vec<std::path::PathBuf>,
    /// An extra known_hosts file to check the host key against.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<std::path::PathBuf>,
    /// Record the host's key if it is not known yet (accept-new); a changed key is still refused.
    #[arg(long)]
    pub accept_new: bool,
    /// Overwrite an existing inventory file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One run's journal as a readable timeline (the last run when no id is given).
    Show { id: Option<String> },
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to resume (default: the last one that did not finish).
    pub id: Option<String>,
    /// The playbook to read (default: the one the run was started with).
    #[arg(long, value_name = "FILE")]
    pub playbook: Option<PathBuf>,
    /// The templates to read (default: those the run was started with).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// (As with expand; a run started with it keeps it.) Go on though the cluster's nodes run different WuKongIM builds (`app_version`), or a new
    /// node starts on another build than the members. WuKongIM wants one build on every node.
    #[arg(long)]
    pub allow_version_mix: bool,
    /// Remove a lock left by another run that died (check first that no other run is going on).
    #[arg(long)]
    pub force_unlock: bool,
    /// Go on without asking (the summary of what changes is still shown). Without a terminal
    /// to ask on, a run that changes something needs it. Also WKCTL_YES=1.
    #[arg(long, short = 'y', env = "WKCTL_YES", value_parser = clap::builder::BoolishValueParser::new())]
    pub yes: bool,
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The run to undo (default: the last one not rolled back).
    pub id: Option<String>,
    /// Show what would be undone; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Undo even though a node has joined (it stays in the cluster's member list, offline).
    #[arg(long)]
    pub after_join: bool,
    /// Put files back even where they changed since the run wrote them (by hand or by a later
    /// run): those changes are lost.
    #[arg(long)]
    pub force: bool,
    /// Remove a lock left by another run that died (check first that no other run is going on).
    #[arg(long)]
    pub force_unlock: bool,
    /// Go on without asking (the summary of what changes is still shown). Without a terminal
    /// to ask on, a run that changes something needs it. Also WKCTL_YES=1.
    #[arg(long, short = 'y', env = "WKCTL_YES", value_parser = clap::builder::BoolishValueParser::new())]
    pub yes: bool,
}
