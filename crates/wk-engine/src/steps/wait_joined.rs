//! `wait_joined`: waits until every member shows the new node at status 3 (已加入), reporting
//! its status as it changes. When the node stays at 加入中 (WuKongIM #529), the fallback takes it
//! as joined if it is online, has slots, every node is healthy and no slot is moving. Nothing
//! to undo (a member cannot leave a WuKongIM v2 cluster).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use wk_cluster::Api;
use wk_plan::inventory::PORT_API;
use wk_remote::{Remote, Tunnel};

use super::{Cx, Done, Fut, Kind, Shape};
use crate::error::{step_err, EngineError};
use crate::events::Event;
use crate::pause::{self, Point};

pub(crate) struct WaitJoined {
    pub node_id: u16,
    pub timeout_secs: u64,
}

/// The members' APIs the wait asks, and the members whose API cannot be reached (they count
/// only while the cluster sees them online).
struct Members {
    apis: Vec<(String, u64, Api)>,
    _tunnels: Vec<Tunnel>,
    unreachable: Vec<u64>,
}

/// What one round of asking every member found.
struct Round {
    /// Every member that answered shows the node at 3 and online, and a config leader; every
    /// silent one is offline.
    all: bool,
    /// The highest status any member shows.
    status: u8,
    /// Silent members the others see offline.
    skipped: Vec<String>,
}

impl WaitJoined {
    async fn members<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Members, EngineError> {
        let plan = cx.plan;
        // Nodes added after this one are not started yet: ask only the members that exist now.
        let later: Vec<&str> = plan
            .adding
            .iter()
            .skip_while(|a| a.id != self.node_id)
            .skip(1)
            .map(|a| a.name.as_str())
            .collect();
        let mut m = Members {
            apis: Vec::new(),
            _tunnels: Vec::new(),
            unreachable: Vec::new(),
        };
        for n in plan
            .members_after
            .iter()
            .filter(|n| !later.contains(&n.name.as_str()))
        {
            let r = cx.e.remote(&n.name)?;
            match r.tunnel(&n.internal_address, PORT_API).await {
                Ok(t) => {
                    m.apis.push((
                        n.name.clone(),
                        n.id as u64,
                        Api::new(&n.name, &t.socket, &t.target, cx.run.token.clone()),
                    ));
                    m._tunnels.push(t);
                }
                Err(_) => m.unreachable.push(n.id as u64),
            }
        }
        Ok(m)
    }

    async fn ask<R: Remote + 'static>(&self, cx: &Cx<'_, R>, m: &Members) -> Round {
        let mut all = true;
        let mut status = 0u8;
        let mut answered = 0;
        let mut silent: Vec<u64> = m.unreachable.clone();
        let mut offline: BTreeSet<u64> = BTreeSet::new();
        // Every member at once: a round takes the slowest answer, not their sum.
        let lists = crate::engine::all(
            m.apis
                .iter()
                .map(|(_, _, api)| api.simple_nodes())
                .collect(),
        )
        .await;
        for ((_, id, _), answer) in m.apis.iter().zip(lists) {
            match answer {
                Ok(list) => {
                    answered += 1;
                    offline.extend(list.iter().filter(|n| n.online != 1).map(|n| n.id));
                    let me = list.iter().find(|n| n.id == self.node_id as u64);
                    let s = me.map(|n| n.status).unwrap_or(0);
                    status = status.max(s);
                    // Live signals too: the member sees a config leader (from its raft, not
                    // the config), and the node online.
                    all &= s == 3
                        && me.is_some_and(|n| n.online == 1)
                        && list.iter().any(|n| n.is_leader == 1);
                }
                Err(_) => silent.push(*id),
            }
        }
        pause::at(cx.step, Point::Middle).await;
        // Silent members count unless the members that answer see them offline.
        all &= answered > 0 && silent.iter().all(|id| offline.contains(id));
        // And the cluster settled: a leader, no slot leaderless or moving (a new node is a
        // learner of every slot first; the next join or run waits for none of that).
        if all {
            // Asked of the first member that answers (a stopped one does not).
            let mut settled = false;
            for (_, id, api) in &m.apis {
                match api.not_ready(*id).await {
                    Ok(None) => settled = true,
                    Ok(Some(_)) => {}
                    Err(_) => continue,
                }
                break;
            }
            all = settled;
        }
        let skipped = silent
            .iter()
            .filter(|id| offline.contains(id))
            .filter_map(|id| cx.plan.members_after.iter().find(|m| m.id as u64 == *id))
            .map(|m| m.name.clone())
            .collect();
        Round {
            all,
            status,
            skipped,
        }
    }

    async fn wait<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Done, EngineError> {
        let node_id = self.node_id;
        if cx.run.dry {
            return Ok(Done::Ok(format!(
                "would wait for node {node_id} to reach 已加入"
            )));
        }
        let m = self.members(cx).await?;
        let node = cx
            .plan
            .members_after
            .iter()
            .find(|m| m.id == node_id)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let start = Instant::now();
        let mut last_status = 0u8;
        let mut polls = 0;
        let mut poll = crate::poll::Poll::up_to(crate::poll::API);
        // The node's build, compared once it tells it (its /health answered already).
        let mut build_checked = cx.run.version.is_none();
        loop {
            polls += 1;
            if !build_checked {
                if let Some(runs) = self.build(&m).await {
                    build_checked = true;
                    let want = cx.run.version.as_deref().unwrap_or_default();
                    if runs != want {
                        return Err(step_err(
                            cx.step,
                            format!("{node} ({node_id}) runs WuKongIM build {runs}, the members {want}: its image's tag names another build there (tags like :v2 move with every release), and WuKongIM wants one build on every node\n  fix: `wkctl rollback`, give {node} the members' image (or pin `image:` in the inventory to their exact tag) and run again; or `wkctl resume --allow-version-mix` to keep the mix"),
                        ));
                    }
                }
            }
            let round = self.ask(cx, &m).await;
            if round.status != last_status && round.status != 0 {
                last_status = round.status;
                cx.e.say(Event::JoinStatus {
                    node: node.clone(),
                    id: node_id as u64,
                    status: round.status,
                    text: wk_cluster::status_text(round.status).into(),
                });
            }
            if round.all {
                let but = if round.skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        " that is online ({} offline, not asked)",
                        round.skipped.join(", ")
                    )
                };
                if polls == 1 {
                    return Ok(Done::Ok(format!(
                        "node {node_id} was already 已加入 on every member{but}"
                    )));
                }
                return Ok(Done::Changed(format!(
                    "node {node_id} is 已加入 on every member{but}"
                )));
            }
            if start.elapsed() >= Duration::from_secs(self.timeout_secs) {
                break;
            }
            poll.sleep().await;
        }
        self.stuck(cx, &m, last_status).await
    }

    /// The build the new node says it runs (`None`: it does not answer yet).
    async fn build(&self, m: &Members) -> Option<String> {
        let (_, _, api) = m
            .apis
            .iter()
            .find(|(_, id, _)| *id == self.node_id as u64)?;
        api.app_version().await.ok().filter(|v| !v.is_empty())
    }

    /// Stuck at 加入中 (#529): the join is accepted if everything else says it worked.
    async fn stuck<R: Remote + 'static>(
        &self,
        cx: &Cx<'_, R>,
        m: &Members,
        last_status: u8,
    ) -> Result<Done, EngineError> {
        let node_id = self.node_id;
        let mut reasons = Vec::new();
        for (name, id, api) in &m.apis {
            match api.not_ready(*id).await {
                Ok(None) => {}
                Ok(Some(why)) => reasons.push(format!("{name}: {why}")),
                Err(e) => reasons.push(format!("{name}: {e}")),
            }
        }
        if let Some((_, _, api)) = m.apis.first() {
            if let Ok(list) = api.simple_nodes().await {
                match list.iter().find(|n| n.id == node_id as u64) {
                    Some(n) if n.online == 1 && n.slot_count > 0 => {}
                    Some(n) => reasons.push(format!(
                        "node {node_id}: online={} slot_count={}",
                        n.online, n.slot_count
                    )),
                    None => reasons.push(format!("node {node_id} is not a member")),
                }
            }
        }
        if reasons.is_empty() && last_status == 2 {
            cx.e.say(Event::Warning { message: format!("node {node_id} stays at 加入中 (WuKongIM #529) but is online, has slots, every node is healthy and no slot is moving: taken as joined") });
            return Ok(Done::Changed(format!(
                "node {node_id} works (still shown as 加入中)"
            )));
        }
        Err(step_err(
            cx.step,
            format!(
                "node {node_id} did not reach 已加入 within {} s (last seen: {}); {}",
                self.timeout_secs,
                wk_cluster::status_text(last_status),
                if reasons.is_empty() {
                    "see the node's logs (`docker compose logs`)".into()
                } else {
                    reasons.join("; ")
                }
            ),
        ))
    }
}

impl Shape for WaitJoined {
    fn waits(&self) -> bool {
        true
    }
}

impl<R: Remote + 'static> Kind<R> for WaitJoined {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(self.wait(cx))
    }
}
