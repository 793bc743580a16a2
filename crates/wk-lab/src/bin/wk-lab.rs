//! `wk-lab up --hosts N` / `wk-lab down` / `wk-lab status`: the lab for tests and the demo.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: wk-lab up [--hosts N] | deploy-single HOST | inventory | sh HOST COMMAND | docker HOST ARGS… | clear HOST | down | status\n  WKLAB_DIR (default {}) and WKLAB_SUBNET (default {}) choose where", wk_lab::DEFAULT_DIR, wk_lab::DEFAULT_SUBNET);
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        // The lab engines' OCI runtime (see wk_lab::docker): never returns on success.
        Some("oci-runtime") if args.len() >= 2 => {
            wk_lab::docker::oci_runtime(std::path::Path::new(&args[1]), &args[2..]).map(|_| ())
        }
        // A host as new: no container, network or volume, no ~/wukongim (Docker's root-owned
        // files too).
        Some("clear") => match (args.get(1), wk_lab::Lab::from_env()) {
            (Some(host), Ok(lab)) => lab.clear_host(host).map(|()| println!("{host}: cleared")),
            (None, _) => return usage(),
            (_, Err(e)) => Err(e),
        },
        Some("docker") => match (args.get(1), wk_lab::Lab::from_env()) {
            (Some(host), Ok(lab)) => {
                let rest: Vec<&str> = args[2..].iter().map(String::as_str).collect();
                wk_lab::docker::docker(lab.host(host), &rest).map(|out| print!("{out}"))
            }
            (None, _) => return usage(),
            (_, Err(e)) => Err(e),
        },
        Some("up") => {
            let n = match args.iter().position(|a| a == "--hosts") {
                Some(i) => match args.get(i + 1).and_then(|n| n.parse().ok()) {
                    Some(n) if (1..=200).contains(&n) => n,
                    _ => return usage(),
                },
                None => 3,
            };
            wk_lab::up(&wk_lab::UpOptions::nodes(n)).map(|lab| {
                for h in &lab.hosts {
                    println!(
                        "{:<10} {:<15} netns {:<16} user {:<16} compose {:?}, {:?}",
                        h.name, h.ip, h.netns, h.user, h.profile.compose, h.profile.access
                    );
                }
                println!("lab is up in {}", lab.dir.display());
            })
        }
        Some("deploy-single") => match (args.get(1), wk_lab::Lab::from_env()) {
            (Some(host), Ok(lab)) => lab
                .deploy_single(host, &wk_lab::deploy::SingleNode::default())
                .map(|()| println!("{host}: single node 1001 is up and joined")),
            (None, _) => return usage(),
            (_, Err(e)) => Err(e),
        },
        Some("sh") => match (args.get(1), args.get(2), wk_lab::Lab::from_env()) {
            (Some(host), Some(cmd), Ok(lab)) => lab.sh(host, cmd).map(|out| print!("{out}")),
            (None, _, _) | (_, None, _) => return usage(),
            (_, _, Err(e)) => Err(e),
        },
        Some("inventory") => wk_lab::Lab::from_env().map(|lab| print!("{}", lab.inventory())),
        Some("down") => wk_lab::down(&wk_lab::lab_dir()).map(|()| println!("lab is down")),
        Some("status") => match wk_lab::Lab::from_env() {
            Ok(lab) => {
                for h in &lab.hosts {
                    println!("{:<10} {:<15} pids {:?}", h.name, h.ip, lab.pids(h));
                }
                Ok(())
            }
            Err(_) => {
                println!("no lab in {}", wk_lab::lab_dir().display());
                Ok(())
            }
        },
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wk-lab: {e}");
            ExitCode::FAILURE
        }
    }
}
