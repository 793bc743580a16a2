//! Phase 3, the members: who is in the cluster, as its API says. Every member must be in the
//! inventory where the inventory says (nginx balances to the inventory's addresses, and a node
//! added by hand is recognised by its id), and reachable (wkctl checks, and if needed sets, its
//! addresses); their facts are asked too.

use wk_plan::inventory::{host_port, Node, PORT_CLUSTER};
use wk_remote::Remote;

use super::{Known, Scope};
use crate::engine::{all, Engine};
use crate::error::EngineError;
use crate::events::Event;

impl<R: Remote + 'static> Engine<R> {
    pub(super) async fn members(&self, scope: &Scope, k: &mut Known) -> Result<(), EngineError> {
        let inv = &self.inv;
        let seed = k.seed.clone();
        let members_api = k.probe.members.clone();
        k.cluster = match &members_api {
            Ok(m) => m.clone(),
            Err(e) => {
                k.check(
                    &seed.name,
                    "members",
                    false,
                    format!("cannot read the cluster's members: {e}"),
                    Some("check that WuKongIM runs on the seed and answers on its API port"),
                );
                Vec::new()
            }
        };
        let cluster = k.cluster.clone();
        k.already = scope
            .added
            .iter()
            .filter(|a| {
                cluster.iter().any(|c| {
                    c.id == a.id as u64
                        && c.cluster_addr == host_port(&a.internal_address, PORT_CLUSTER)
                        && c.status == 3
                })
            })
            .map(|a| a.name.clone())
            .collect();
        k.members = inv
            .wukongim_nodes()
            .filter(|n| cluster.iter().any(|c| c.id == n.id as u64) && !scope.adds(&n.name))
            .map(|n| n.name.clone())
            .collect();
        for c in &cluster {
            match inv.wukongim_nodes().find(|n| n.id as u64 == c.id) {
                None => k.check(
                    &seed.name,
                    "members",
                    false,
                    format!("the cluster has node {} at {} ({}), which {} does not list", c.id, c.cluster_addr, wk_cluster::status_text(c.status), inv.file),
                    Some("add it under `nodes:` with its id and internal address (wkctl keeps every member in the load balancer), then run again"),
                ),
                Some(n) if c.cluster_addr != host_port(&n.internal_address, PORT_CLUSTER) && !scope.adds(&n.name) => k.check(
                    &n.name,
                    "members",
                    false,
                    format!("the cluster knows {} (id {}) at {}, the inventory at {}", n.name, c.id, c.cluster_addr, host_port(&n.internal_address, PORT_CLUSTER)),
                    Some("correct the node's internal_address in the inventory (WuKongIM fixes a node's cluster address at its first boot)"),
                ),
                Some(_) => {}
            }
        }
        let declared: Vec<&str> = inv
            .wukongim_nodes()
            .filter(|n| !k.members.contains(&n.name) && !scope.adds(&n.name))
            .map(|n| n.name.as_str())
            .collect();
        if !declared.is_empty() && members_api.is_ok() {
            self.say(Event::Warning {
                message: format!(
                    "{} {} in {} but not in the cluster: declared, not deployed yet; left alone",
                    declared.join(", "),
                    if declared.len() == 1 { "is" } else { "are" },
                    inv.file
                ),
            });
        }
        let lost: Vec<String> = k
            .members
            .iter()
            .filter_map(|m| self.unreachable.get(m).cloned())
            .collect();
        if !lost.is_empty() {
            return Err(EngineError::Host(format!(
                "{}\n  a member must be reachable: wkctl checks (and if needed sets) its addresses; nothing was changed",
                lost.join("\n")
            )));
        }
        // Facts from the other members too (their compose command and WuKongIM service).
        let others: Vec<Node> = k
            .members
            .iter()
            .filter(|m| !k.states.contains_key(*m))
            .filter_map(|m| inv.node(m).cloned())
            .collect();
        let more = all(others
            .iter()
            .map(|n| self.facts(n, scope.reach(n, &k.member_nodes), false, None))
            .collect())
        .await;
        for (n, st) in others.iter().zip(more) {
            k.states.insert(n.name.clone(), st?);
            k.wanted.push(n.clone());
        }
        Ok(())
    }
}
