//! Phase 1, the seed: who the run is about, and the member new nodes join through: the
//! inventory's seed (when resuming, the one the run chose), else the first other member that
//! answers, so a stopped seed does not block an expansion. Its API tells who the members are.

use wk_cluster::Health;
use wk_plan::inventory::Node;
use wk_remote::Remote;

use super::Scope;
use crate::engine::{Engine, Options};
use crate::error::EngineError;
use crate::events::Event;
use crate::facts::{probe, Probe};

impl<R: Remote + 'static> Engine<R> {
    /// The gateway and the nodes to add; both must be reachable from the start.
    pub(super) fn scope(&self, opts: &Options) -> Result<Scope, EngineError> {
        let inv = &self.inv;
        inv.check_additions(&opts.add)
            .map_err(|d| EngineError::Input(d.to_string()))?;
        let scope = Scope {
            gateway: inv.gateway_node().clone(),
            added: opts
                .add
                .iter()
                .map(|a| inv.node(a).expect("checked").clone())
                .collect(),
        };
        let down: Vec<String> = std::iter::once(&scope.gateway)
            .chain(scope.added.iter())
            .filter_map(|n| self.unreachable.get(&n.name).cloned())
            .collect();
        if !down.is_empty() {
            return Err(EngineError::Host(format!(
                "{}\n  nothing was changed",
                down.join("\n")
            )));
        }
        Ok(scope)
    }

    /// The seed's probe: the first candidate that is a healthy member of the preferred seed's
    /// cluster; when none is, what the preferred seed said (preflight reports it).
    pub(super) async fn choose_seed(
        &self,
        opts: &Options,
        scope: &Scope,
    ) -> Result<Probe, EngineError> {
        let inv = &self.inv;
        let preferred = opts
            .resume
            .as_ref()
            .and_then(|r| r.plan["seed"].as_str().map(str::to_string))
            .unwrap_or_else(|| inv.seed.clone());
        let preferred_id = inv.node(&preferred).map(|n| n.id as u64).unwrap_or(0);
        let mut candidates: Vec<Node> = inv.node(&preferred).into_iter().cloned().collect();
        candidates.extend(
            inv.wukongim_nodes()
                .filter(|n| n.name != preferred && !scope.adds(&n.name))
                .cloned(),
        );
        let mut chosen: Option<Probe> = None;
        let mut preferred_probe: Option<Probe> = None;
        // Why the inventory's seed was passed over, if it was.
        let mut seed_why: Option<String> = None;
        for c in &candidates {
            if let Some(why) = self.unreachable.get(&c.name) {
                if c.name == inv.seed {
                    seed_why = Some(why.clone());
                }
                continue;
            }
            let p = probe(self.hosts.get(&c.name).map(|r| r.as_ref()), c, true).await;
            // A member: healthy, in its own member list, and (when not the inventory's seed)
            // in the same cluster as the inventory's seed.
            let usable = matches!(p.health, Ok(Health::Ok))
                && p.not_ready.is_none()
                && p.members.as_ref().is_ok_and(|m| {
                    m.iter().any(|x| x.id == c.id as u64)
                        && (c.name == preferred || m.iter().any(|x| x.id == preferred_id))
                });
            if usable {
                chosen = Some(p);
                break;
            }
            if c.name == inv.seed {
                seed_why = Some(passed_over(&p));
            }
            if c.name == preferred {
                preferred_probe = Some(p);
            }
        }
        let Some(probe) = chosen.or(preferred_probe) else {
            return Err(EngineError::Host(format!(
                "{}\n  nothing was changed",
                self.unreachable
                    .get(&preferred)
                    .cloned()
                    .unwrap_or_else(|| format!("{preferred}: no member of the cluster answers"))
            )));
        };
        if probe.node.name != inv.seed {
            self.say(Event::Warning {
                message: format!(
                    "the seed {} does not answer ({}); the new nodes join through {}, the first member that does",
                    inv.seed,
                    seed_why.as_deref().unwrap_or("not reachable"),
                    probe.node.name
                ),
            });
        }
        Ok(probe)
    }
}

/// Why a member that answered cannot be the seed.
fn passed_over(p: &Probe) -> String {
    match (&p.health, &p.members) {
        (Ok(Health::Ok), _) if p.not_ready.is_some() => {
            format!(
                "its cluster does not work: {}",
                p.not_ready.as_deref().unwrap_or("")
            )
        }
        (Ok(Health::Ok), Ok(_)) => "not a member of the seed's cluster".to_string(),
        (Ok(Health::Ok), Err(e)) => format!("its member list: {e}"),
        (Ok(Health::Error(m)), _) => format!("/health: {m}"),
        (Err(e), _) => e.clone(),
    }
}
