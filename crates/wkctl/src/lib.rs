//! The `wkctl` command line: parsing, output and exit codes. The work itself lives in the
//! library crates; this crate decides what the operator sees.

mod cli;
mod expand;
mod init;
mod output;

use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;

/// Exit codes, as `wkctl --help` documents them.
pub mod exit {
    /// Everything asked for was done (or, for a dry run, shown).
    pub const OK: u8 = 0;
    /// A step failed on a host; the journal says where; `wkctl resume` or `wkctl rollback`.
    pub const FAILED: u8 = 1;
    /// The input is wrong (command line, inventory, playbook, templates); nothing was changed.
    pub const BAD_INPUT: u8 = 2;
}

/// An error with the exit code it ends the process with.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Failure {
            code: exit::BAD_INPUT,
            message: message.into(),
        }
    }
}

/// The async runtime of a command that talks to hosts (two workers: the work is I/O).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: exit::FAILED,
            message: format!("cannot start the async runtime: {e}"),
        })
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_out(out: &mut dyn std::io::Write, buf: &[u8]) -> Result<(), Failure> {
    match out.write_all(buf).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure {
            code: exit::FAILED,
            message: format!("cannot write to stdout: {e}"),
        }),
        _ => Ok(()),
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let result = match &cli.command {
        cli::Command::Expand(args) => expand::run(&cli, args, &mut out),
        cli::Command::Check(args) => expand::check(&cli, args),
        cli::Command::Status => expand::status(&cli, &mut out),
        cli::Command::Init(args) => init::run(&cli, args, &mut out),
        cli::Command::Runs { show } => expand::runs(&cli, show.as_ref(), &mut out),
        cli::Command::Resume(args) => expand::resume(&cli, args),
        cli::Command::Rollback(args) => expand::rollback(&cli, args),
        cli::Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "wkctl", &mut buf);
            write_out(&mut out, &buf)
        }
        cli::Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            match clap_mangen::Man::new(cmd).render(&mut buf) {
                Ok(()) => write_out(&mut out, &buf),
                Err(e) => Err(Failure {
                    code: exit::FAILED,
                    message: e.to_string(),
                }),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            // A stream of JSON events ends with the error, as a run's ends with `finished`.
            let streams = matches!(
                cli.command,
                cli::Command::Expand(_)
                    | cli::Command::Check(_)
                    | cli::Command::Resume(_)
                    | cli::Command::Rollback(_)
            );
            if cli.output == cli::OutputFormat::Json && streams {
                let line = output::json_error(f.code, &f.message);
                let _ = write_out(&mut out, format!("{line}\n").as_bytes());
            }
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
