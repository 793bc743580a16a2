//! `wkctl status`: every node of the inventory as the cluster, the node itself, nginx and
//! Prometheus see it, read through the hosts' SSH connections.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use wk_cluster::{Api, Health};
use wk_compose::{edit, Selector};
use wk_plan::inventory::Node;
use wk_plan::inventory::{host_port, PORT_API, PORT_CLUSTER, PORT_MANAGER};
use wk_plan::Inventory;
use wk_remote::Remote;

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub id: u16,
    /// The address the cluster has for it (`-` when it is not a member).
    pub cluster_addr: Option<String>,
    pub online: bool,
    /// 1 将加入, 2 加入中, 3 已加入; 0 when not a member.
    pub status: u8,
    pub status_text: String,
    pub slots: u64,
    /// `ok`, WuKongIM's message, or why it could not be asked.
    pub health: String,
    pub image_tag: Option<String>,
    pub in_nginx: bool,
    pub in_prometheus: bool,
    /// What is wrong with it, if anything.
    pub problems: Vec<String>,
}

/// What the gateway runs and the cluster says, shared by every node's status.
struct Seen<'a> {
    /// nginx.conf as the nginx container runs it (the host's file when nginx was not asked).
    nginx: String,
    /// Prometheus's running configuration (the host's file when Prometheus was not asked).
    prom: String,
    /// What is wrong on the gateway: every node's status carries it.
    problems: Vec<String>,
    members: Result<Vec<wk_cluster::NodeInfo>, String>,
    token: Option<String>,
    /// Why hosts could not be reached (name -> the connection's error): shown on their rows.
    unreachable: &'a BTreeMap<String, String>,
    /// The gateway could not be reached: nginx and Prometheus were not asked, and no node is
    /// said to be missing from them.
    gateway_unknown: bool,
}

/// Reads every node's state, through the hosts connected (`unreachable`: the others, and
/// why). A node the cluster does not list is "declared, not deployed" only when its host
/// answered; a host whose key was refused says HOST KEY CHANGED wherever it is shown.
pub async fn status<R: Remote + 'static>(
    inv: &Inventory,
    hosts: &BTreeMap<String, Arc<R>>,
    unreachable: &BTreeMap<String, String>,
) -> Vec<NodeStatus> {
    let mut gw = Gateway {
        inv,
        hosts,
        problems: Vec::new(),
    };
    let gateway = &inv.gateway_node().name;
    let gateway_unknown = unreachable.contains_key(gateway);
    if let Some(e) = unreachable.get(gateway) {
        gw.problems.push(format!(
            "nginx and Prometheus on {gateway} were not asked: {}",
            refusal(e).unwrap_or("its host cannot be reached")
        ));
    }
    let nginx = gw.nginx().await;
    let prom = gw.prometheus().await;
    let problems = gw.problems;
    let (members, token) = members(inv, hosts).await;
    let seen = Seen {
        nginx,
        prom,
        problems,
        members,
        token,
        unreachable,
        gateway_unknown,
    };
    let mut out = Vec::new();
    for n in inv.wukongim_nodes() {
        out.push(node_status(n, hosts, &seen).await);
    }
    out
}

/// A file's text on a host (`None`: no file, or no connection).
async fn read<R: Remote + 'static>(
    hosts: &BTreeMap<String, Arc<R>>,
    host: &str,
    path: &str,
) -> Option<String> {
    crate::facts::read_text(hosts.get(host)?.as_ref(), path)
        .await
        .ok()
        .flatten()
}

/// A file on the gateway, and the gateway's connection when the file is there (a gateway
/// without it has no service to ask).
async fn gateway_file<'h, R: Remote + 'static>(
    hosts: &'h BTreeMap<String, Arc<R>>,
    gw: &Node,
    path: String,
) -> (String, Option<&'h Arc<R>>) {
    let file = read(hosts, &gw.name, &path).await.unwrap_or_default();
    let r = hosts.get(&gw.name).filter(|_| !file.is_empty());
    (file, r)
}

/// The gateway's nginx and Prometheus, and what is wrong with them.
struct Gateway<'a, R: Remote> {
    inv: &'a Inventory,
    hosts: &'a BTreeMap<String, Arc<R>>,
    problems: Vec<String>,
}

impl<R: Remote + 'static> Gateway<'_, R> {
    /// What nginx runs, not only what the host's file says: a container that bind-mounts a file
    /// replaced by rename goes on with the old one.
    async fn nginx(&mut self) -> String {
        let (inv, hosts, problems) = (self.inv, self.hosts, &mut self.problems);
        let gw = inv.gateway_node();
        let (file, Some(r)) =
            gateway_file(hosts, gw, format!("{}/nginx.conf", gw.install_dir)).await
        else {
            return String::new();
        };
        let sudo = gw.ssh.sudo != wk_plan::inventory::SudoMode::None;
        let seen = crate::docker::container_file(
            r.as_ref(),
            wk_plan::plan::sudo_prefix(gw.ssh.sudo),
            &gw.install_dir,
            "nginx",
            "/etc/nginx/nginx.conf",
            sudo,
        )
        .await
        .ok()
        .flatten();
        let Some(c) = seen else {
            problems.push(format!("nginx does not run on {}", gw.name));
            return String::new();
        };
        let c = String::from_utf8_lossy(&c).into_owned();
        if c != file {
            let prog = crate::docker::compose_program(r.as_ref(), sudo).await;
            problems.push(format!("the nginx container runs another nginx.conf than {}/nginx.conf holds (recreate it: `{prog} up -d --force-recreate nginx` in {})", gw.install_dir, gw.install_dir));
        }
        c
    }

    /// Prometheus's running configuration, asked at `gateway.prometheus_url` through the gateway.
    async fn prometheus(&mut self) -> String {
        let (inv, hosts, problems) = (self.inv, self.hosts, &mut self.problems);
        let gw = inv.gateway_node();
        let path = wk_plan::plan::join_path(&gw.install_dir, &inv.gateway.prometheus_file);
        let (_, Some(r)) = gateway_file(hosts, gw, path).await else {
            return String::new();
        };
        let url = &inv.gateway.prometheus_url;
        let (h, p) = crate::text::url_host_port(url);
        let running = match r.tunnel(&h, p).await {
            Ok(t) => wk_cluster::prometheus_config(&gw.name, &t.socket, &t.target)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        running.unwrap_or_else(|e| {
            problems.push(format!(
                "Prometheus's running configuration cannot be read at {url}: {e}"
            ));
            String::new()
        })
    }
}

/// The cluster's members as the seed tells them, or (the seed down) the first node that can,
/// asked as the expansion asks them (with the `token` header WK_MANAGERTOKEN calls for).
async fn members<R: Remote + 'static>(
    inv: &Inventory,
    hosts: &BTreeMap<String, Arc<R>>,
) -> (Result<Vec<wk_cluster::NodeInfo>, String>, Option<String>) {
    let seed = inv.seed_node();
    let mut members = Err(format!("{}: not connected", seed.name));
    let mut token = None;
    for n in std::iter::once(seed).chain(inv.wukongim_nodes().filter(|n| n.name != seed.name)) {
        let p = crate::facts::probe(hosts.get(&n.name).map(|r| r.as_ref()), n, false).await;
        let ok = p.members.is_ok();
        if ok || n.name == seed.name {
            members = p.members.map_err(|e| format!("{}: {e}", n.name));
            token = p.token;
        }
        if ok {
            break;
        }
    }
    (members, token)
}

/// The image tag of the WuKongIM service (found by image) of a compose file.
fn image_tag(compose: &str) -> Option<String> {
    let svc = edit::find_service(compose, &Selector::ImageName("wukongim".into())).ok()?;
    let doc = wk_compose::value::parse(compose).ok()?;
    let image = doc.get("services")?.get(&svc)?.get("image")?.scalar()?;
    Some(
        image
            .rsplit_once(':')
            .map(|(_, t)| t.to_string())
            .unwrap_or_else(|| "latest".into()),
    )
}

/// A member's /health, asked through its host (`-` for a node that is not a member).
async fn health<R: Remote + 'static>(
    n: &Node,
    member: bool,
    hosts: &BTreeMap<String, Arc<R>>,
    token: Option<String>,
    problems: &mut Vec<String>,
) -> String {
    if !member {
        return "-".to_string();
    }
    let Some(r) = hosts.get(&n.name) else {
        // Its row carries the connection's error.
        return "unknown".into();
    };
    let answer = match r.tunnel(&n.internal_address, PORT_API).await {
        Ok(t) => Api::new(&n.name, &t.socket, &t.target, token)
            .health()
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(Health::Ok) => "ok".into(),
        Ok(Health::Error(m)) => {
            problems.push(format!("/health: {m}"));
            m
        }
        Err(e) => {
            problems.push(e);
            "unreachable".into()
        }
    }
}

async fn node_status<R: Remote + 'static>(
    n: &Node,
    hosts: &BTreeMap<String, Arc<R>>,
    seen: &Seen<'_>,
) -> NodeStatus {
    let member = seen
        .members
        .as_ref()
        .ok()
        .and_then(|m| m.iter().find(|c| c.id == n.id as u64))
        .cloned();
    let mut problems = seen.problems.clone();
    let unreachable = seen.unreachable.get(&n.name);
    if let Some(e) = unreachable {
        problems.insert(0, e.clone());
    }
    if let Err(e) = &seen.members {
        problems.push(format!("cannot read the cluster's members: {e}"));
    }
    let compose = read(
        hosts,
        &n.name,
        &format!("{}/docker-compose.yml", n.install_dir),
    )
    .await;
    let image_tag = compose.as_deref().and_then(image_tag);
    let health = health(
        n,
        member.is_some(),
        hosts,
        seen.token.clone(),
        &mut problems,
    )
    .await;
    let upstream = wk_compose::nginx::upstream_servers(&seen.nginx)
        .ok()
        .and_then(|u| u.into_iter().find(|(name, _)| name == "wukongimapi"))
        .map(|(_, servers)| servers)
        .unwrap_or_default();
    let in_nginx = upstream.contains(&host_port(&n.internal_address, PORT_API));
    // A job targets it, or carries its `id` label (node1's job may target `wukongim:5300`).
    let in_prometheus = seen
        .prom
        .contains(&host_port(&n.internal_address, PORT_MANAGER))
        || seen.prom.contains(&format!("\"{}\"", n.id));
    if let Some(m) = &member {
        if m.status != 3 {
            problems.push(format!(
                "status {} {}",
                m.status,
                wk_cluster::status_text(m.status)
            ));
        }
        if m.online != 1 {
            problems.push("offline".into());
        }
        let want = host_port(&n.internal_address, PORT_CLUSTER);
        if m.cluster_addr != want {
            problems.push(format!(
                "the cluster has it at {}, the inventory at {want}",
                m.cluster_addr
            ));
        }
        let clustered = seen.members.as_ref().map(|m| m.len() > 1).unwrap_or(false);
        if clustered && !in_nginx && !seen.gateway_unknown {
            problems.push("not in the load balancer's nginx.conf".into());
        }
        if !in_prometheus && !seen.gateway_unknown {
            problems.push("no Prometheus job".into());
        }
    }
    NodeStatus {
        name: n.name.clone(),
        id: n.id,
        cluster_addr: member.as_ref().map(|m| m.cluster_addr.clone()),
        online: member.as_ref().is_some_and(|m| m.online == 1),
        status: member.as_ref().map(|m| m.status).unwrap_or(0),
        status_text: match (&member, unreachable) {
            (Some(m), _) => wk_cluster::status_text(m.status).to_string(),
            (None, Some(e)) => refusal(e)
                .unwrap_or("not a member; unreachable")
                .to_string(),
            (None, None) => "declared, not deployed".into(),
        },
        slots: member.as_ref().map(|m| m.slot_count).unwrap_or(0),
        health: match unreachable.and_then(|e| refusal(e)) {
            Some(r) => r.to_string(),
            None => health,
        },
        image_tag,
        in_nginx,
        in_prometheus,
        problems,
    }
}

/// The host-key refusal a connection's error is, in the words a table shows: never to be
/// mistaken for a host that is merely down or not deployed yet.
fn refusal(error: &str) -> Option<&'static str> {
    if error.contains("HOST KEY CHANGED") {
        Some("HOST KEY CHANGED")
    } else if error.contains("is marked @revoked") {
        Some("HOST KEY REVOKED")
    } else if error.contains("is not known; wkctl refuses") {
        Some("HOST KEY UNKNOWN")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use wk_remote::RemoteError;

    /// The table's words for a refused host key come from the connection's own errors.
    #[test]
    fn host_key_refusals_are_told_apart_from_a_host_that_is_down() {
        let changed = RemoteError::ChangedHostKey {
            host: "node2".into(),
            addr: "10.251.0.12".into(),
            fingerprint: "SHA256:x".into(),
            file: "known_hosts".into(),
            line: 2,
        };
        let revoked = RemoteError::RevokedHostKey {
            host: "node2".into(),
            addr: "10.251.0.12".into(),
            fingerprint: "SHA256:x".into(),
            file: "known_hosts".into(),
            line: 2,
        };
        let unknown = RemoteError::UnknownHostKey {
            host: "node2".into(),
            addr: "10.251.0.12".into(),
            port: 22,
            fingerprint: "SHA256:x".into(),
            known_hosts: "known_hosts".into(),
        };
        let down = RemoteError::Connect {
            host: "node2".into(),
            addr: "10.251.0.12:22".into(),
            message: "connection refused".into(),
        };
        assert_eq!(
            super::refusal(&changed.to_string()),
            Some("HOST KEY CHANGED")
        );
        assert_eq!(
            super::refusal(&revoked.to_string()),
            Some("HOST KEY REVOKED")
        );
        assert_eq!(
            super::refusal(&unknown.to_string()),
            Some("HOST KEY UNKNOWN")
        );
        assert_eq!(super::refusal(&down.to_string()), None);
    }
}
