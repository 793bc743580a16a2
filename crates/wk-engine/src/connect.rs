//! One SSH connection per host of the inventory, opened at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wk_plan::inventory::{host_port, HostKeyPolicy as P, Node, SudoMode};
use wk_plan::Inventory;
use wk_remote::ssh::{Hop, HostKeyPolicy, SshOptions};

use crate::error::EngineError;
use crate::events::{Event, Reporter};

/// The SSH connections of a run, and the hosts that could not be reached (name -> why).
pub type Connections = (
    BTreeMap<String, Arc<wk_remote::SshRemote>>,
    BTreeMap<String, String>,
);

/// Connects to every host of the inventory, concurrently: one SSH connection each. A host that
/// cannot be reached is returned with the reason; whether that matters is the caller's call
/// (a node declared but not deployed yet may well not exist).
pub async fn connect_all(
    inv: &Inventory,
    prompter: Arc<dyn wk_remote::ssh::Prompter>,
    sudo_password: Option<wk_remote::Secret>,
    reporter: &dyn Reporter,
) -> Result<Connections, EngineError> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut tasks = Vec::new();
    for n in &inv.nodes {
        let o = ssh_options(n, &home, &sudo_password)?;
        let p = prompter.clone();
        let addr = host_port(&n.ssh.host, n.ssh.port);
        let name = n.name.clone();
        tasks.push(tokio::spawn(async move {
            (name, addr, wk_remote::SshRemote::connect(o, p).await)
        }));
    }
    let mut hosts = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for t in tasks {
        let (name, addr, r) = t.await.map_err(|e| EngineError::Host(e.to_string()))?;
        match r {
            Ok(r) => {
                reporter.event(&Event::Connected {
                    host: name.clone(),
                    addr,
                });
                hosts.insert(name, Arc::new(r));
            }
            Err(e) => {
                errors.insert(name, e.to_string());
            }
        }
    }
    Ok((hosts, errors))
}

/// How a node is reached, as its inventory entry says (`~/` is the operator's home).
fn ssh_options(
    n: &Node,
    home: &Path,
    sudo_password: &Option<wk_remote::Secret>,
) -> Result<SshOptions, EngineError> {
    let expand = |f: &str| {
        PathBuf::from(
            f.strip_prefix("~/")
                .map(|r| home.join(r).display().to_string())
                .unwrap_or_else(|| f.to_string()),
        )
    };
    let mut o = SshOptions::new(&n.name, &n.ssh.host);
    o.port = Some(n.ssh.port);
    o.user = n.ssh.user.clone();
    o.identity_files = n.ssh.identity_files.iter().map(|f| expand(f)).collect();
    o.jump = n
        .ssh
        .jump
        .iter()
        .map(|j| Hop {
            user: j.user.clone(),
            host: j.host.clone(),
            port: Some(j.port),
        })
        .collect();
    o.keepalive = std::time::Duration::from_secs(n.ssh.keepalive_secs.into());
    o.connect_timeout = std::time::Duration::from_secs(n.ssh.connect_timeout_secs.into());
    o.host_key_policy = match n.ssh.host_key_policy {
        P::Strict => HostKeyPolicy::Strict,
        P::AcceptNew => HostKeyPolicy::AcceptNew,
    };
    if let Some(k) = &n.ssh.known_hosts {
        o.known_hosts.insert(0, expand(k));
    }
    o.sudo = match n.ssh.sudo {
        SudoMode::None => wk_remote::Sudo::None,
        SudoMode::Passwordless => wk_remote::Sudo::Passwordless,
        SudoMode::Password => wk_remote::Sudo::Password(sudo_password.clone().ok_or_else(|| EngineError::Input(format!("{}: `sudo: password` needs the sudo password (asked at start, or WKCTL_SUDO_PASSWORD)", n.name)))?),
    };
    Ok(o)
}
