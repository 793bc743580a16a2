//! Phase 2, the facts: every host the run touches (the seed, the gateway, the new nodes) asked
//! at once; then the run lock, before anything else, so a second run is refused at once.

use std::collections::BTreeMap;

use wk_plan::inventory::Node;
use wk_remote::Remote;

use super::{Known, Scope};
use crate::engine::{all, Engine, Options};
use crate::error::EngineError;
use crate::facts::Probe;

impl<R: Remote + 'static> Engine<R> {
    /// The inventory's nodes the seed's cluster has (the seed first), but for those being
    /// added: the members, as far as the seed's member list tells.
    fn cluster_nodes(&self, scope: &Scope, probe: &Probe) -> Vec<Node> {
        let ids: Vec<u64> = probe
            .members
            .as_ref()
            .map(|m| m.iter().map(|c| c.id).collect())
            .unwrap_or_default();
        std::iter::once(probe.node.clone())
            .chain(
                self.inv
                    .wukongim_nodes()
                    .filter(|n| {
                        n.name != probe.node.name
                            && ids.contains(&(n.id as u64))
                            && !scope.adds(&n.name)
                    })
                    .cloned(),
            )
            .collect()
    }

    pub(super) async fn gather(
        &self,
        opts: &Options,
        scope: &Scope,
        probe: Probe,
    ) -> Result<Known, EngineError> {
        let seed = probe.node.clone();
        let gateway = &scope.gateway;
        let mut wanted: Vec<Node> = vec![seed.clone()];
        if gateway.name != seed.name {
            wanted.push(gateway.clone());
        }
        wanted.extend(scope.added.iter().cloned());
        let members = self.cluster_nodes(scope, &probe);
        let mut jobs = Vec::new();
        for n in &wanted {
            let reach = scope.reach(n, &members);
            // The seed's compose file was read by its probe already.
            let known = (n.name == seed.name)
                .then(|| probe.compose_text.clone())
                .flatten();
            jobs.push(self.facts(n, reach, n.name == gateway.name, known));
        }
        let mut states = BTreeMap::new();
        for (n, st) in wanted.iter().zip(all(jobs).await) {
            states.insert(n.name.clone(), st?);
        }
        if let Some(holder) = &states[&gateway.name].lock {
            let ours = opts
                .resume
                .as_ref()
                .is_some_and(|r| crate::steps::names_run(holder.as_bytes(), &r.run_id));
            if !opts.force_unlock && !ours {
                return Err(EngineError::Locked {
                    host: gateway.name.clone(),
                    path: crate::steps::lock_path(&gateway.install_dir),
                    holder: holder.clone(),
                });
            }
        }
        Ok(Known {
            member_nodes: members,
            seed,
            probe,
            wanted,
            states,
            cluster: Vec::new(),
            already: Default::default(),
            members: Vec::new(),
            checks: Vec::new(),
            changes: Vec::new(),
            file_shas: BTreeMap::new(),
        })
    }
}
