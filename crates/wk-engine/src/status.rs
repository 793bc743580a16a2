//! `wkctl status`: every node of the inventory as the cluster, the node itself, nginx and
//! Prometheus see it, read through the hosts' SSH connections.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use wk_cluster::{Api, Health};
use wk_compose::{edit, Selector};
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

/// Reads every node's state. A node the cluster does not list is "declared, not deployed".
pub async fn status<R: Remote + 'static>(
    inv: &Inventory,
    hosts: &BTreeMap<String, Arc<R>>,
) -> Vec<NodeStatus> {
    let seed = inv.seed_node();
    let gw = inv.gateway_node();
    let read = |host: &str, path: String| {
        let r = hosts.get(host).cloned();
        async move {
            match r {
                Some(r) => r
                    .read_file(&path)
                    .await
                    .ok()
                    .flatten()
                    .map(|f| String::from_utf8_lossy(&f.content).into_owned()),
                None => None,
            }
        }
    };
    let nginx = read(&gw.name, format!("{}/nginx.conf", gw.install_dir))
        .await
        .unwrap_or_default();
    let prom = read(
        &gw.name,
        wk_plan::plan::join_path(&gw.install_dir, &inv.gateway.prometheus_file),
    )
    .await
    .unwrap_or_default();
    // The cluster's members as the seed tells them, or (the seed down) the first node that can,
    // asked as the expansion asks them (with the `token` header WK_MANAGERTOKEN calls for).
    let mut members = Err(format!("{}: not connected", seed.name));
    let mut token = None;
    for n in std::iter::once(seed).chain(inv.wukongim_nodes().filter(|n| n.name != seed.name)) {
        let p = crate::run::probe(hosts.get(&n.name).map(|r| r.as_ref()), n).await;
        let ok = p.members.is_ok();
        if ok || n.name == seed.name {
            members = p.members.map_err(|e| format!("{}: {e}", n.name));
            token = p.token;
        }
        if ok {
            break;
        }
    }
    let upstream = wk_compose::nginx::upstream_servers(&nginx)
        .ok()
        .and_then(|u| u.into_iter().find(|(name, _)| name == "wukongimapi"))
        .map(|(_, servers)| servers)
        .unwrap_or_default();
    let mut out = Vec::new();
    for n in inv.wukongim_nodes() {
        let member = members
            .as_ref()
            .ok()
            .and_then(|m| m.iter().find(|c| c.id == n.id as u64))
            .cloned();
        let mut problems = Vec::new();
        if let Err(e) = &members {
            problems.push(format!("cannot read the cluster's members: {e}"));
        }
        let compose = read(&n.name, format!("{}/docker-compose.yml", n.install_dir)).await;
        let image_tag = compose.as_deref().and_then(|t| {
            let svc = edit::find_service(t, &Selector::ImageName("wukongim".into())).ok()?;
            let doc = wk_compose::value::parse(t).ok()?;
            let image = doc.get("services")?.get(&svc)?.get("image")?.scalar()?;
            Some(
                image
                    .rsplit_once(':')
                    .map(|(_, t)| t.to_string())
                    .unwrap_or_else(|| "latest".into()),
            )
        });
        let health = match (&member, hosts.get(&n.name)) {
            (None, _) => "-".to_string(),
            (Some(_), None) => {
                problems.push("no SSH connection".into());
                "unknown".into()
            }
            (Some(_), Some(r)) => match r.tunnel(&n.internal_address, PORT_API).await {
                Ok(t) => match Api::new(&n.name, t.local, token.clone()).health().await {
                    Ok(Health::Ok) => "ok".into(),
                    Ok(Health::Error(m)) => {
                        problems.push(format!("/health: {m}"));
                        m
                    }
                    Err(e) => {
                        problems.push(e.to_string());
                        "unreachable".into()
                    }
                },
                Err(e) => {
                    problems.push(e.to_string());
                    "unreachable".into()
                }
            },
        };
        let in_nginx = upstream.contains(&host_port(&n.internal_address, PORT_API));
        // A job targets it, or carries its `id` label (node1's job may target `wukongim:5300`).
        let in_prometheus = prom.contains(&host_port(&n.internal_address, PORT_MANAGER))
            || prom.contains(&format!("\"{}\"", n.id));
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
            if m.cluster_addr != host_port(&n.internal_address, PORT_CLUSTER) {
                problems.push(format!(
                    "the cluster has it at {}, the inventory at {}",
                    m.cluster_addr,
                    host_port(&n.internal_address, PORT_CLUSTER)
                ));
            }
            let clustered = members.as_ref().map(|m| m.len() > 1).unwrap_or(false);
            if clustered && !in_nginx {
                problems.push("not in the load balancer's nginx.conf".into());
            }
            if !in_prometheus {
                problems.push("no Prometheus job".into());
            }
        }
        out.push(NodeStatus {
            name: n.name.clone(),
            id: n.id,
            cluster_addr: member.as_ref().map(|m| m.cluster_addr.clone()),
            online: member.as_ref().is_some_and(|m| m.online == 1),
            status: member.as_ref().map(|m| m.status).unwrap_or(0),
            status_text: member
                .as_ref()
                .map(|m| wk_cluster::status_text(m.status).to_string())
                .unwrap_or_else(|| "declared, not deployed".into()),
            slots: member.as_ref().map(|m| m.slot_count).unwrap_or(0),
            health,
            image_tag,
            in_nginx,
            in_prometheus,
            problems,
        });
    }
    out
}
