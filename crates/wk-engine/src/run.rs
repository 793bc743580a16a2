//! The run: facts from every host, the cluster's own view of its members, preflight, then each
//! step observed, changed if it must be (journaled first), and verified. A dry run stops after
//! observing and reports the diffs and commands instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wk_cluster::{Api, Health};
use wk_compose::{edit, Selector};
use wk_plan::inventory::{host_port, Node, NODE_PORTS, PORT_API, PORT_CLUSTER};
use wk_plan::plan::{Action, HostFacts, Step};
use wk_plan::playbook::ServiceSelector;
use wk_plan::{Inventory, Plan, PlanRequest, Sources};
use wk_remote::{shell, ExecRequest, Remote, RemoteError};

use crate::events::{Event, Reporter};
use crate::journal::{sha256_hex, Journal};
use crate::pause::{self, Point};

/// Exit codes the CLI uses for each kind of failure (documented in `wkctl --help`).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The inventory, playbook or command line is wrong; nothing changed.
    #[error("{0}")]
    Input(String),
    /// A host cannot be reached or used; nothing changed.
    #[error("{0}")]
    Host(String),
    /// Preflight found problems; nothing changed.
    #[error("preflight failed on {failed} check(s); nothing was changed. Fix them and run again")]
    Preflight { failed: usize },
    #[error("{host}: the cluster is locked by another run ({holder}) in {path}. Wait for it to finish; if it died, `wkctl expand --force-unlock` removes the lock; nothing was changed")]
    Locked {
        host: String,
        path: String,
        holder: String,
    },
    /// The operator stopped the run (Ctrl-C) between two steps.
    #[error("stopped after step `{after}` as asked (Ctrl-C); the journal is consistent: `wkctl resume` goes on, `wkctl rollback` undoes")]
    Interrupted { after: String },
    /// A step failed; the journal says what was done.
    #[error("step `{step}` on {host}: {message}")]
    Step {
        step: String,
        host: String,
        message: String,
    },
}

impl EngineError {
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Input(_) => 2,
            EngineError::Host(_) | EngineError::Preflight { .. } => 3,
            EngineError::Locked { .. } => 4,
            EngineError::Interrupted { .. } => 130,
            EngineError::Step { .. } => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub add: Vec<String>,
    pub dry_run: bool,
    pub force_unlock: bool,
    /// `.wkctl/runs` beside the inventory.
    pub runs_dir: PathBuf,
    /// The command line, for the journal.
    pub command: String,
    /// Who runs it (`user@machine`), for the lock.
    pub owner: String,
    /// Stop after preflight (`wkctl check`).
    pub check_only: bool,
    /// At most this many hosts worked on at once within one playbook step.
    pub parallel: usize,
    /// Going on with a run that stopped (`wkctl resume`).
    pub resume: Option<Resume>,
    /// Set (by Ctrl-C) to stop after the step under way.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// What a resumed run carries over from its journal.
#[derive(Debug, Clone)]
pub struct Resume {
    pub run_id: String,
    pub dir: PathBuf,
    /// The plan the run began with (plan.json): a plan built now must be the same.
    pub plan: serde_json::Value,
    /// Files the run changed, as (host, path): what they feed (restarts, reloads) still runs.
    pub changed: Vec<(String, String)>,
    /// New nodes whose WuKongIM the run started.
    pub started: Vec<String>,
    /// The playbook file and templates directory the run read (`None`: built in).
    pub playbook: Option<PathBuf>,
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub run_id: Option<String>,
    pub plan: Plan,
    pub changed: usize,
    pub ok: usize,
}

/// What one host told us in one command.
#[derive(Debug, Clone, Default)]
struct HostState {
    /// `None` when the host uses no sudo; else whether `sudo true` worked, and why not.
    sudo: Option<Result<(), String>>,
    compose: Option<String>,
    data_present: bool,
    listening: BTreeSet<u16>,
    reach: BTreeMap<String, String>,
    lock: Option<String>,
    compose_text: Option<String>,
    prometheus_text: Option<String>,
}

pub struct Engine<R: Remote> {
    inv: Inventory,
    inv_text: String,
    sources: Sources,
    hosts: BTreeMap<String, Arc<R>>,
    /// Hosts that could not be connected to, and why: fine for nodes declared but not deployed.
    unreachable: BTreeMap<String, String>,
    reporter: Arc<dyn Reporter>,
}

/// What a member answered: its compose file (read once: the API token is in it, and the facts
/// use it too), the token, its health and the cluster's members.
pub(crate) struct Probe {
    pub node: Node,
    pub compose_text: Option<String>,
    pub token: Option<String>,
    pub health: Result<Health, String>,
    pub members: Result<Vec<wk_cluster::NodeInfo>, String>,
}

/// Asks a member (through its SSH connection, `None` when there is none) for its health and the
/// cluster's members, with the `token` header when its compose file sets WK_MANAGERTOKEN.
pub(crate) async fn probe<R: Remote>(r: Option<&R>, node: &Node) -> Probe {
    let fail = |compose_text: Option<String>, token: Option<String>, e: String| Probe {
        node: node.clone(),
        compose_text,
        token,
        health: Err(e.clone()),
        members: Err(e),
    };
    let Some(r) = r else {
        return fail(None, None, format!("{}: not connected", node.name));
    };
    let compose_text = r
        .read_file(&compose_path(node))
        .await
        .ok()
        .flatten()
        .map(|f| String::from_utf8_lossy(&f.content).into_owned());
    let token = compose_text.as_deref().and_then(|t| {
        wukongim_env(t)
            .into_iter()
            .find(|(k, _)| k == "WK_MANAGERTOKEN")
            .map(|(_, v)| v)
    });
    let tunnel = match r.tunnel(&node.internal_address, PORT_API).await {
        Ok(t) => t,
        Err(e) => return fail(compose_text, token, e.to_string()),
    };
    let api = Api::new(&node.name, tunnel.local, token.clone());
    Probe {
        node: node.clone(),
        compose_text,
        token,
        health: api.health().await.map_err(|e| e.to_string()),
        members: api.simple_nodes().await.map_err(|e| e.to_string()),
    }
}

fn step_err(step: &Step, message: impl std::fmt::Display) -> EngineError {
    EngineError::Step {
        step: step.id.clone(),
        host: step.host.clone(),
        message: message.to_string(),
    }
}

fn host_err(e: RemoteError) -> EngineError {
    EngineError::Host(e.to_string())
}

fn split_addr(addr: &str) -> (String, u16) {
    let (h, p) = addr.rsplit_once(':').unwrap_or((addr, "80"));
    (
        h.trim_start_matches('[').trim_end_matches(']').to_string(),
        p.parse().unwrap_or(80),
    )
}

/// The file a file-changing action writes, and the mode it sets (`None`: the file's own).
fn file_target(a: &Action) -> Option<(String, Option<u32>)> {
    match a {
        Action::Template { dest, mode, .. } => Some((dest.clone(), Some(*mode))),
        Action::NginxConf { file, mode, .. } => Some((file.clone(), Some(*mode))),
        Action::ComposeEnv { file, .. }
        | Action::ComposeService { file, .. }
        | Action::PrometheusJob { file, .. } => Some((file.clone(), None)),
        _ => None,
    }
}

/// What a file-changing action makes of the file's current text (`None`: no file). The same
/// function serves the step and the preflight that tries every edit before anything changes.
fn edit_file(a: &Action, old: Option<&str>) -> Result<String, String> {
    match a {
        Action::Template { content, .. } => Ok(content.clone()),
        Action::NginxConf {
            content, upstreams, ..
        } => match old {
            None => Ok(content.clone()),
            Some(old) => {
                wk_compose::nginx::set_upstream_servers(old, upstreams).map_err(|e| e.to_string())
            }
        },
        Action::ComposeEnv { service, env, .. } => {
            let sel = match service {
                ServiceSelector::Name(n) => Selector::Name(n.clone()),
                ServiceSelector::ImageName(i) => Selector::ImageName(i.clone()),
            };
            let old = old.ok_or("the compose file is missing")?;
            edit::set_env(old, &sel, env).map_err(|e| e.to_string())
        }
        Action::ComposeService {
            service,
            content,
            if_missing,
            ..
        } => {
            let old = old.ok_or("the compose file is missing")?;
            if *if_missing && edit::find_service(old, &Selector::Name(service.clone())).is_ok() {
                return Ok(old.to_string());
            }
            edit::set_service(old, service, content).map_err(|e| e.to_string())
        }
        Action::PrometheusJob { content, .. } => {
            let old = old.ok_or("the file is missing")?;
            edit::set_prometheus_jobs(old, content).map_err(|e| e.to_string())
        }
        other => Err(format!("`{}` does not edit a file", other.kind())),
    }
}

/// A node's docker-compose.yml.
fn compose_path(node: &Node) -> String {
    format!(
        "{}/docker-compose.yml",
        node.install_dir.trim_end_matches('/')
    )
}

/// The environment of the service running the WuKongIM image (found by image), in file order.
fn wukongim_env(compose: &str) -> Vec<(String, String)> {
    match (
        edit::find_service(compose, &Selector::ImageName("wukongim".into())),
        wk_compose::value::parse(compose),
    ) {
        (Ok(s), Ok(doc)) => edit::service_env(&doc, &s),
        _ => Vec::new(),
    }
}

/// The lines `compose ps` prints for a service, and whether it runs.
fn running(ps: &str, service: &str) -> bool {
    ps.lines().any(|l| {
        l.split_whitespace().any(|w| w == service)
            && (l.contains(" Up ") || l.contains("Up ") || l.contains("running"))
    })
}

impl<R: Remote + 'static> Engine<R> {
    pub fn new(
        inv: Inventory,
        inv_text: String,
        sources: Sources,
        hosts: BTreeMap<String, Arc<R>>,
        reporter: Arc<dyn Reporter>,
    ) -> Self {
        Engine {
            inv,
            inv_text,
            sources,
            hosts,
            unreachable: BTreeMap::new(),
            reporter,
        }
    }

    /// Hosts the connection to failed (`name -> why`): the run goes on without them as long as
    /// they are not part of it (a node declared in the inventory but not deployed yet).
    pub fn with_unreachable(mut self, unreachable: BTreeMap<String, String>) -> Self {
        self.unreachable = unreachable;
        self
    }

    fn say(&self, e: Event) {
        self.reporter.event(&e);
    }

    pub(crate) fn report(&self, e: Event) {
        self.reporter.event(&e);
    }

    pub(crate) fn inventory(&self) -> &Inventory {
        &self.inv
    }

    pub(crate) fn host(&self, host: &str) -> Result<&Arc<R>, EngineError> {
        self.remote(host)
    }

    fn remote(&self, host: &str) -> Result<&Arc<R>, EngineError> {
        self.hosts.get(host).ok_or_else(|| {
            EngineError::Host(
                self.unreachable
                    .get(host)
                    .cloned()
                    .unwrap_or_else(|| format!("{host}: not connected (is it in the inventory?)")),
            )
        })
    }

    /// One command per host: compose command, data dir, listening ports, reachability of the
    /// peers it must reach, the run lock, the compose file and prometheus.yml.
    async fn facts(
        &self,
        node: &Node,
        reach: Vec<(String, u16)>,
        gateway: bool,
        known_compose: Option<String>,
    ) -> Result<HostState, EngineError> {
        let r = self.remote(&node.name)?;
        let dir = &node.install_dir;
        let mut script = String::from(
            "if docker compose version >/dev/null 2>&1; then echo 'compose=docker compose'; elif docker-compose version >/dev/null 2>&1; then echo 'compose=docker-compose'; else echo compose=; fi\n",
        );
        script.push_str(&format!(
            "if [ -n \"$(ls -A {d}/wukongim_data 2>/dev/null)\" ]; then echo data=1; else echo data=0; fi\n",
            d = shell::path(dir)
        ));
        script.push_str("printf 'listening='; for f in /proc/net/tcp /proc/net/tcp6; do [ -r $f ] && while read -r sl local rem st rest; do [ \"$st\" = 0A ] && printf '%d ' \"0x${local##*:}\"; done < $f; done; echo\n");
        for (h, p) in &reach {
            script.push_str(&format!(
                "if command -v bash >/dev/null; then o=$(timeout 3 bash -c 'exec 3<>/dev/tcp/{h}/{p}' 2>&1); c=$?; if [ $c = 0 ]; then echo 'reach {h}:{p}=open'; elif [ $c = 124 ]; then echo 'reach {h}:{p}=timeout'; else case \"$o\" in *refused*) echo 'reach {h}:{p}=refused';; *) echo 'reach {h}:{p}=unreachable';; esac; fi; else echo 'reach {h}:{p}=unknown'; fi\n"
            ));
        }
        let lock = format!("{}/.wkctl.lock", dir.trim_end_matches('/'));
        if gateway {
            script.push_str(&format!(
                "if [ -e {l} ]; then echo \"lock=$(tr '\\n' ' ' < {l})\"; fi\n",
                l = shell::path(&lock)
            ));
        }
        let out = r.run(ExecRequest::new(script)).await.map_err(host_err)?;
        let mut st = HostState::default();
        if node.ssh.sudo != wk_plan::inventory::SudoMode::None {
            st.sudo = Some(match r.exec(ExecRequest::new("true").sudo(true)).await {
                Ok(o) if o.success() => Ok(()),
                Ok(o) => Err(o.stderr_str().trim().to_string()),
                Err(e) => Err(e.to_string()),
            });
        }
        for line in out.stdout_str().lines() {
            if let Some(v) = line.strip_prefix("compose=") {
                st.compose = (!v.is_empty()).then(|| v.to_string());
            } else if let Some(v) = line.strip_prefix("data=") {
                st.data_present = v == "1";
            } else if let Some(v) = line.strip_prefix("listening=") {
                st.listening = v
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
            } else if let Some(v) = line.strip_prefix("reach ") {
                if let Some((k, v)) = v.split_once('=') {
                    st.reach.insert(k.to_string(), v.to_string());
                }
            } else if let Some(v) = line.strip_prefix("lock=") {
                st.lock = Some(v.trim().to_string());
            }
        }
        st.compose_text = match known_compose {
            Some(t) => Some(t),
            None => r
                .read_file(&compose_path(node))
                .await
                .map_err(host_err)?
                .map(|f| String::from_utf8_lossy(&f.content).into_owned()),
        };
        if gateway {
            let p = wk_plan::plan::join_path(dir, &self.inv.gateway.prometheus_file);
            st.prometheus_text = r
                .read_file(&p)
                .await
                .map_err(host_err)?
                .map(|f| String::from_utf8_lossy(&f.content).into_owned());
        }
        Ok(st)
    }

    /// The whole expansion (or its dry run).
    pub async fn expand(&self, opts: &Options) -> Result<Outcome, EngineError> {
        let started = Instant::now();
        let inv = &self.inv;
        inv.check_additions(&opts.add)
            .map_err(|d| EngineError::Input(d.to_string()))?;
        let gateway = inv.gateway_node().clone();
        let added: Vec<Node> = opts
            .add
            .iter()
            .map(|a| inv.node(a).expect("checked").clone())
            .collect();

        // Hosts that must be reachable from the start: the gateway and the nodes to add.
        let down: Vec<String> = std::iter::once(&gateway)
            .chain(added.iter())
            .filter_map(|n| self.unreachable.get(&n.name).cloned())
            .collect();
        if !down.is_empty() {
            return Err(EngineError::Host(format!(
                "{}\n  nothing was changed",
                down.join("\n")
            )));
        }

        // The member new nodes join through: the inventory's seed (when resuming, the one the
        // run chose), else the first other member that answers, so a stopped seed does not
        // block an expansion. Its API tells who the members are.
        let preferred = opts
            .resume
            .as_ref()
            .and_then(|r| r.plan["seed"].as_str().map(str::to_string))
            .unwrap_or_else(|| inv.seed.clone());
        let preferred_id = inv.node(&preferred).map(|n| n.id as u64).unwrap_or(0);
        let mut candidates: Vec<Node> = inv.node(&preferred).into_iter().cloned().collect();
        candidates.extend(
            inv.wukongim_nodes()
                .filter(|n| n.name != preferred && !added.iter().any(|a| a.name == n.name))
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
            let p = probe(self.hosts.get(&c.name).map(|r| r.as_ref()), c).await;
            // A member: healthy, in its own member list, and (when not the inventory's seed)
            // in the same cluster as the inventory's seed.
            let usable = matches!(p.health, Ok(Health::Ok))
                && p.members.as_ref().is_ok_and(|m| {
                    m.iter().any(|x| x.id == c.id as u64)
                        && (c.name == preferred || m.iter().any(|x| x.id == preferred_id))
                });
            if usable {
                chosen = Some(p);
                break;
            }
            if c.name == inv.seed {
                seed_why = Some(match (&p.health, &p.members) {
                    (Ok(Health::Ok), Ok(_)) => "not a member of the seed's cluster".to_string(),
                    (Ok(Health::Ok), Err(e)) => format!("its member list: {e}"),
                    (Ok(Health::Error(m)), _) => format!("/health: {m}"),
                    (Err(e), _) => e.clone(),
                });
            }
            if c.name == preferred {
                preferred_probe = Some(p);
            }
        }
        // When no member answers, preflight reports what the preferred seed said.
        let Some(probe) = chosen.or(preferred_probe) else {
            return Err(EngineError::Host(format!(
                "{}\n  nothing was changed",
                self.unreachable
                    .get(&preferred)
                    .cloned()
                    .unwrap_or_else(|| format!("{preferred}: no member of the cluster answers"))
            )));
        };
        let seed = probe.node.clone();
        if seed.name != inv.seed {
            self.say(Event::Warning {
                message: format!(
                    "the seed {} does not answer ({}); the new nodes join through {}, the first member that does",
                    inv.seed,
                    seed_why.as_deref().unwrap_or("not reachable"),
                    seed.name
                ),
            });
        }

        // Facts, from every host at once.
        let mut wanted: Vec<Node> = vec![seed.clone()];
        if gateway.name != seed.name {
            wanted.push(gateway.clone());
        }
        wanted.extend(added.iter().cloned());
        let mut jobs = Vec::new();
        for n in &wanted {
            let mut reach = Vec::new();
            if added.iter().any(|a| a.name == n.name) {
                reach.push((seed.internal_address.clone(), PORT_CLUSTER));
            }
            if n.name == gateway.name {
                for a in &added {
                    reach.push((a.internal_address.clone(), PORT_API));
                }
            }
            // The seed's compose file was read by its probe already.
            let known = (n.name == seed.name)
                .then(|| probe.compose_text.clone())
                .flatten();
            jobs.push(self.facts(n, reach, n.name == gateway.name, known));
        }
        let mut states = BTreeMap::new();
        for (n, st) in wanted.iter().zip(futures_all(jobs).await) {
            states.insert(n.name.clone(), st?);
        }

        // The lock, before anything else: a second run is refused at once.
        if let Some(holder) = &states[&gateway.name].lock {
            let ours = opts
                .resume
                .as_ref()
                .is_some_and(|r| holder.contains(&format!("run={} ", r.run_id)));
            if !opts.force_unlock && !ours {
                return Err(EngineError::Locked {
                    host: gateway.name.clone(),
                    path: format!("{}/.wkctl.lock", gateway.install_dir),
                    holder: holder.clone(),
                });
            }
        }

        // The seed's compose file: its WuKongIM service (found by image), token and JWT secret.
        let seed_compose = states[&seed.name].compose_text.clone().unwrap_or_default();
        let seed_service =
            edit::find_service(&seed_compose, &Selector::ImageName("wukongim".into()));
        let seed_env = wukongim_env(&seed_compose);
        let env_of = |k: &str| {
            seed_env
                .iter()
                .find(|(ek, _)| ek == k)
                .map(|(_, v)| v.clone())
        };
        let token = env_of("WK_MANAGERTOKEN");
        let health = probe.health.clone();
        let members_api = probe.members.clone();

        let mut checks: Vec<(String, String, bool, String, Option<String>)> = Vec::new();
        let mut check = |host: &str, id: &str, ok: bool, detail: String, fix: Option<&str>| {
            checks.push((
                host.to_string(),
                id.to_string(),
                ok,
                detail,
                fix.map(str::to_string),
            ));
        };
        let cluster = match &members_api {
            Ok(m) => m.clone(),
            Err(e) => {
                check(
                    &seed.name,
                    "members",
                    false,
                    format!("cannot read the cluster's members: {e}"),
                    Some("check that WuKongIM runs on the seed and answers on its API port"),
                );
                Vec::new()
            }
        };
        // Nodes already joined with the address the inventory gives them: a re-run.
        let already: BTreeSet<String> = added
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
        let members: Vec<String> = inv
            .wukongim_nodes()
            .filter(|n| {
                cluster.iter().any(|c| c.id == n.id as u64)
                    && !added.iter().any(|a| a.name == n.name)
            })
            .map(|n| n.name.clone())
            .collect();
        // Every member must be in the inventory, where the inventory says: nginx balances to
        // the inventory's addresses, and a node added by hand is recognised by its id.
        for c in &cluster {
            match inv.wukongim_nodes().find(|n| n.id as u64 == c.id) {
                None => check(
                    &seed.name,
                    "members",
                    false,
                    format!("the cluster has node {} at {} ({}), which {} does not list", c.id, c.cluster_addr, wk_cluster::status_text(c.status), inv.file),
                    Some("add it under `nodes:` with its id and internal address (wkctl keeps every member in the load balancer), then run again"),
                ),
                Some(n) if c.cluster_addr != host_port(&n.internal_address, PORT_CLUSTER) && !added.iter().any(|a| a.name == n.name) => check(
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
            .filter(|n| !members.contains(&n.name) && !added.iter().any(|a| a.name == n.name))
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
        let lost: Vec<String> = members
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
        let others: Vec<Node> = members
            .iter()
            .filter(|m| !states.contains_key(*m))
            .filter_map(|m| inv.node(m).cloned())
            .collect();
        let more = futures_all(
            others
                .iter()
                .map(|n| self.facts(n, Vec::new(), false, None))
                .collect(),
        )
        .await;
        for (n, st) in others.iter().zip(more) {
            states.insert(n.name.clone(), st?);
            wanted.push(n.clone());
        }

        // Preflight.
        for n in &wanted {
            let st = &states[&n.name];
            check(
                &n.name,
                "ssh",
                true,
                format!("logged in to {}", host_port(&n.ssh.host, n.ssh.port)),
                None,
            );
            if let Some(sudo) = &st.sudo {
                check(
                    &n.name,
                    "sudo",
                    sudo.is_ok(),
                    match sudo {
                        Ok(()) => "sudo works".to_string(),
                        Err(e) => format!("sudo does not work: {e}"),
                    },
                    Some("check the sudo mode and password (ssh.sudo in the inventory, WKCTL_SUDO_PASSWORD or the prompt), or the host's sudoers"),
                );
            }
            check(
                &n.name,
                "compose",
                st.compose.is_some(),
                st.compose
                    .clone()
                    .map(|c| format!("`{c}` found"))
                    .unwrap_or_else(|| "neither `docker compose` nor `docker-compose` runs".into()),
                Some("install Docker Compose on the host"),
            );
        }
        for a in &added {
            let st = &states[&a.name];
            if already.contains(&a.name) {
                check(
                    &a.name,
                    "joined",
                    true,
                    "already a member at status 3 (已加入)".into(),
                    None,
                );
                continue;
            }
            if opts
                .resume
                .as_ref()
                .is_some_and(|r| r.started.contains(&a.name))
            {
                check(
                    &a.name,
                    "resumed",
                    true,
                    "its WuKongIM was started by the run being resumed".into(),
                    None,
                );
                continue;
            }
            check(
                &a.name,
                "install-dir",
                !st.data_present,
                if st.data_present { format!("{}/wukongim_data holds data", a.install_dir) } else { format!("{} holds no WuKongIM data", a.install_dir) },
                Some("a data dir that holds a cluster config never joins again: move it away (after checking it is not needed)"),
            );
            let busy: Vec<String> = NODE_PORTS
                .iter()
                .filter(|p| st.listening.contains(p))
                .map(|p| p.to_string())
                .collect();
            check(
                &a.name,
                "ports-free",
                busy.is_empty(),
                if busy.is_empty() {
                    "5001, 5100, 5200, 5300, 5172, 11110 are free".into()
                } else {
                    format!("port(s) {} are in use", busy.join(", "))
                },
                Some("stop what listens there, or add another host"),
            );
            let key = host_port(&seed.internal_address, PORT_CLUSTER);
            let r = st.reach.get(&key).cloned().unwrap_or_default();
            check(&a.name, "reach-seed", r == "open", format!("{key} from {}: {r}", a.name), Some("open port 11110 between the nodes (the seed document's port table leaves it out)"));
            if let Some(c) = cluster.iter().find(|c| c.id == a.id as u64) {
                check(
                    &seed.name,
                    "ids-free",
                    false,
                    format!("id {} is already taken by {} in the cluster; a join with it would silently replace that node", a.id, c.cluster_addr),
                    Some("give the new node an unused id in the inventory"),
                );
            }
            let gst = &states[&gateway.name];
            let key = host_port(&a.internal_address, PORT_API);
            let r = gst.reach.get(&key).cloned().unwrap_or_default();
            check(
                &gateway.name,
                "reach-new",
                r == "open" || r == "refused",
                format!("{key} from {}: {r}", gateway.name),
                Some("open port 5001 from the gateway to the new node"),
            );
        }
        match &health {
            Ok(Health::Ok) => check(
                &seed.name,
                "health",
                true,
                "/health answers 200".into(),
                None,
            ),
            Ok(Health::Error(m)) => check(
                &seed.name,
                "health",
                false,
                format!("/health: {m}"),
                Some("the cluster must be healthy before it grows"),
            ),
            Err(e) => check(
                &seed.name,
                "health",
                false,
                e.to_string(),
                Some("check that WuKongIM runs on the seed"),
            ),
        }
        match &seed_service {
            Ok(s) => check(
                &seed.name,
                "service",
                true,
                format!("service `{s}` runs the WuKongIM image"),
                None,
            ),
            Err(e) => check(
                &seed.name,
                "service",
                false,
                format!("{}/docker-compose.yml: {e}", seed.install_dir),
                Some("wkctl finds WuKongIM by its image in the compose file"),
            ),
        }
        if let (Ok(s), Ok(doc)) = (&seed_service, wk_compose::value::parse(&seed_compose)) {
            let image = doc
                .get("services")
                .and_then(|x| x.get(s))
                .and_then(|x| x.get("image"))
                .and_then(|i| i.scalar())
                .unwrap_or_default();
            let tag = |i: &str| {
                i.rsplit_once(':')
                    .map(|(_, t)| t.to_string())
                    .unwrap_or_else(|| "latest".into())
            };
            check(
                &seed.name,
                "image-tag",
                tag(&image) == tag(&inv.image),
                format!("the seed runs {image}; new nodes get {}", inv.image),
                Some("give `image:` in the inventory the tag the cluster runs"),
            );
        }
        if let Some(me) = cluster.iter().find(|c| c.id == seed.id as u64) {
            let want = host_port(&seed.internal_address, PORT_CLUSTER);
            check(
                &seed.name,
                "cluster-addr",
                me.cluster_addr == want,
                format!("the cluster knows {} at {} (inventory: {want})", seed.name, me.cluster_addr),
                Some("WuKongIM fixed the cluster address at the seed's first boot; new nodes would dial it. Make the inventory's internal_address match, or fix the seed first"),
            );
        } else if members_api.is_ok() {
            check(
                &seed.name,
                "cluster-addr",
                false,
                format!("node {} is not in the cluster's member list", seed.id),
                Some("check the seed's WK_CLUSTER_NODEID and the inventory's id"),
            );
        }
        if gateway.name == seed.name || states.contains_key(&gateway.name) {
            let p = &states[&gateway.name].prometheus_text;
            let ok = p
                .as_deref()
                .is_some_and(|t| wk_compose::value::parse(t).is_ok());
            check(
                &gateway.name,
                "prometheus",
                ok,
                format!(
                    "{} {}",
                    self.inv.gateway.prometheus_file,
                    if ok {
                        "parses"
                    } else {
                        "is missing or does not parse"
                    }
                ),
                Some("the single-node deployment's prometheus.yml must be there"),
            );
        }
        // The plan, with what the hosts told (once every check so far passed: a plan needs
        // the members the cluster named).
        let mut plan = None;
        if checks.iter().all(|c| c.2) {
            let mut facts = BTreeMap::new();
            for (name, st) in &states {
                let svc = st.compose_text.as_deref().and_then(|t| {
                    edit::find_service(t, &Selector::ImageName("wukongim".into())).ok()
                });
                facts.insert(
                    name.clone(),
                    HostFacts {
                        compose: st.compose.clone(),
                        wukongim_service: svc,
                    },
                );
            }
            let extra_env = env_of("WK_JWT_SECRET")
                .map(|s| vec![format!("WK_JWT_SECRET={s}")])
                .unwrap_or_default();
            let req = PlanRequest {
                add: opts.add.clone(),
                members: Some(members),
                facts,
                extra_env,
                seed: Some(seed.name.clone()),
            };
            let p = wk_plan::build(inv, &self.inv_text, &self.sources, &req)
                .map_err(|e| EngineError::Input(e.to_string()))?;
            // Every file edit of the plan, tried on the files as they are now: a file an
            // operator wrote in a way wkctl cannot edit safely stops the run before it starts.
            // The files the facts read already (compose files, prometheus.yml) are not read again.
            let mut known = BTreeMap::new();
            for (name, st) in &states {
                let Some(n) = inv.node(name) else { continue };
                known.insert((name.clone(), compose_path(n)), st.compose_text.clone());
                if name == &gateway.name {
                    let prom =
                        wk_plan::plan::join_path(&n.install_dir, &inv.gateway.prometheus_file);
                    known.insert((name.clone(), prom), st.prometheus_text.clone());
                }
            }
            checks.extend(self.try_edits(&p, known).await);
            plan = Some(p);
        }
        let mut failed = 0;
        for (host, id, ok, detail, fix) in checks {
            if !ok {
                failed += 1;
            }
            self.say(Event::Check {
                host,
                id,
                ok,
                detail,
                fix: if ok { None } else { fix },
            });
        }
        if env_of("WK_JWT_SECRET").is_some() {
            self.say(Event::Warning { message: format!("{} sets WK_JWT_SECRET: the new nodes get the same value, or admin logins would fail across the load balancer", seed.name) });
        }
        if token.is_some() {
            self.say(Event::Warning { message: format!("{} sets WK_MANAGERTOKEN, which WuKongIM v2 clusters do not support (#159, #533); API calls send its `token` header", seed.name) });
        }
        let plan = match plan {
            Some(p) if failed == 0 => p,
            _ => {
                return Err(EngineError::Preflight {
                    failed: failed.max(1),
                })
            }
        };
        if opts.check_only {
            for w in &plan.warnings {
                self.say(Event::Warning { message: w.clone() });
            }
            return Ok(Outcome {
                run_id: None,
                plan,
                changed: 0,
                ok: 0,
            });
        }

        if let Some(r) = &opts.resume {
            let now = serde_json::to_value(&plan).map_err(|e| EngineError::Input(e.to_string()))?;
            if now["fingerprint"] != r.plan["fingerprint"] {
                let ids = |p: &serde_json::Value| -> BTreeMap<String, serde_json::Value> {
                    p["steps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|st| {
                            (
                                st["id"].as_str().unwrap_or("").to_string(),
                                st["action"].clone(),
                            )
                        })
                        .collect()
                };
                let (a, b) = (ids(&r.plan), ids(&now));
                let differ: Vec<String> = a
                    .keys()
                    .chain(b.keys())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|k| a.get(*k) != b.get(*k))
                    .cloned()
                    .collect();
                return Err(EngineError::Input(format!(
                    "the inventory, playbook or templates changed since run {} began; resuming would do something else than it planned. Steps that differ: {}\n  fix: put the inputs back as they were, or roll the run back (`wkctl rollback {}`) and start a new one",
                    r.run_id,
                    if differ.is_empty() { "none (only inputs that do not change a step)".into() } else { differ.join(", ") },
                    r.run_id
                )));
            }
        }
        // Files a resumed run changed drive restarts and reloads; so do those of runs that
        // stopped half way before a fresh one (their lock forced or removed).
        let mut changed_before: BTreeSet<(String, String)> = BTreeSet::new();
        match &opts.resume {
            Some(r) => changed_before.extend(r.changed.iter().cloned()),
            None => {
                let (ids, paths) = crate::undo::unfinished_changes(&opts.runs_dir);
                if !ids.is_empty() {
                    self.say(Event::Warning {
                        message: format!(
                            "run(s) {} stopped half way (neither resumed nor rolled back); the files they changed count as changed here, so their restarts and reloads happen in this run",
                            ids.join(", ")
                        ),
                    });
                }
                changed_before.extend(paths);
            }
        }
        let journal = if opts.dry_run {
            None
        } else if let Some(r) = &opts.resume {
            let mut j = Journal::open(&r.dir).map_err(|e| {
                EngineError::Host(format!(
                    "cannot open the journal in {}: {e}",
                    r.dir.display()
                ))
            })?;
            j.append(json!({"type": "run_resumed", "command": opts.command}))
                .map_err(|e| EngineError::Host(e.to_string()))?;
            Some(j)
        } else {
            std::fs::create_dir_all(&opts.runs_dir).map_err(|e| {
                EngineError::Host(format!("cannot create {}: {e}", opts.runs_dir.display()))
            })?;
            Some(
                Journal::create(
                    &opts.runs_dir,
                    &plan,
                    &opts.command,
                    json!({
                        "playbook": self.sources.playbook_path,
                        "templates": self.sources.templates_path,
                    }),
                )
                .map_err(|e| {
                    EngineError::Host(format!(
                        "cannot write the journal in {}: {e}",
                        opts.runs_dir.display()
                    ))
                })?,
            )
        };
        let run_id = journal.as_ref().map(|j| j.run_id.clone());
        self.say(Event::PlanReady {
            steps: plan.steps.len(),
            fingerprint: plan.fingerprint.clone(),
            run_id: run_id.clone(),
        });

        let ctx = Ctx {
            dry: opts.dry_run,
            changed_paths: std::sync::Mutex::new(changed_before),
            before: std::sync::Mutex::new(BTreeMap::new()),
            journal: journal.map(tokio::sync::Mutex::new),
            owner: opts.owner.clone(),
            run_id: run_id.clone().unwrap_or_default(),
            force_unlock: opts.force_unlock,
            token,
        };
        let total = plan.steps.len();
        let (mut changed, mut ok) = (0usize, 0usize);
        let mut phase_ms: Vec<(String, u64)> = vec![(
            "connect+facts+preflight".into(),
            started.elapsed().as_millis() as u64,
        )];
        let mut i = 0;
        while i < total {
            if opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst))
            {
                let after = if i == 0 {
                    "(none)".to_string()
                } else {
                    plan.steps[i - 1].id.clone()
                };
                let _ = ctx
                    .log(json!({"type": "run_stopped", "reason": "interrupted by the operator"}))
                    .await;
                self.say(Event::Timings { phases: phase_ms });
                return Err(EngineError::Interrupted { after });
            }
            // Steps of one playbook step on different hosts run at once (at most `parallel`),
            // where that is safe: checks and file changes. Restarts and joins stay one at a time.
            let kind = |st: &Step| (st.id.split('@').next().unwrap_or("").to_string(), st.phase);
            let parallel_safe = |st: &Step| {
                matches!(
                    st.action,
                    Action::Preflight { .. }
                        | Action::Mkdir { .. }
                        | Action::Template { .. }
                        | Action::NginxConf { .. }
                        | Action::ComposeEnv { .. }
                        | Action::ComposeService { .. }
                        | Action::PrometheusJob { .. }
                        | Action::WaitHealth { .. }
                )
            };
            let mut j = i + 1;
            if parallel_safe(&plan.steps[i]) {
                while j < total && kind(&plan.steps[j]) == kind(&plan.steps[i]) {
                    j += 1;
                }
            }
            let t = Instant::now();
            let mut failure = None;
            for chunk in (i..j).collect::<Vec<_>>().chunks(opts.parallel.max(1)) {
                let results = futures_all(
                    chunk
                        .iter()
                        .map(|&k| self.one_step(k, total, &plan, &ctx))
                        .collect(),
                )
                .await;
                for r in results {
                    match r {
                        Ok(true) => changed += 1,
                        Ok(false) => ok += 1,
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                if failure.is_some() {
                    break;
                }
            }
            // Time spent waiting for WuKongIM itself (health, joins) is not orchestration.
            let phase = if matches!(
                plan.steps[i].action,
                Action::WaitHealth { .. } | Action::WaitJoined { .. }
            ) {
                "waiting for WuKongIM".to_string()
            } else {
                format!("{:?}", plan.steps[i].phase).to_lowercase()
            };
            match phase_ms.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, ms)) => *ms += t.elapsed().as_millis() as u64,
                None => phase_ms.push((phase, t.elapsed().as_millis() as u64)),
            }
            if let Some(e) = failure {
                let _ = ctx.log(json!({"type": "run_stopped"})).await;
                self.say(Event::Timings { phases: phase_ms });
                return Err(e);
            }
            i = j;
        }
        let _ = ctx
            .log(json!({"type": "run_finished", "changed": changed, "ok": ok}))
            .await;
        self.say(Event::Timings { phases: phase_ms });
        self.say(Event::Finished {
            run_id: run_id.clone(),
            dry_run: opts.dry_run,
            changed,
            ok,
        });
        Ok(Outcome {
            run_id,
            plan,
            changed,
            ok,
        })
    }

    /// Runs step `k` of the plan: journal, events; `Ok(true)` when it changed something.
    async fn one_step(
        &self,
        k: usize,
        total: usize,
        plan: &Plan,
        ctx: &Ctx,
    ) -> Result<bool, EngineError> {
        let step = &plan.steps[k];
        self.say(Event::StepStarted {
            n: k + 1,
            total,
            id: step.id.clone(),
            host: step.host.clone(),
            title: step.title.clone(),
        });
        ctx.log(json!({"type": "step_started", "step": step.id, "host": step.host}))
            .await
            .map_err(|e| step_err(step, e))?;
        pause::at(step, Point::Start).await;
        let done = self.step(step, plan, ctx).await;
        if done.is_ok() {
            pause::at(step, Point::End).await;
        }
        match done {
            Ok(Done::Ok(note)) => {
                ctx.log(json!({"type": "ok", "step": step.id, "host": step.host, "note": note}))
                    .await
                    .map_err(|e| step_err(step, e))?;
                self.say(Event::StepOk {
                    id: step.id.clone(),
                    host: step.host.clone(),
                    note,
                });
                Ok(false)
            }
            Ok(Done::Changed(note)) => {
                ctx.log(
                    json!({"type": "verified", "step": step.id, "host": step.host, "note": note}),
                )
                .await
                .map_err(|e| step_err(step, e))?;
                self.say(Event::StepChanged {
                    id: step.id.clone(),
                    host: step.host.clone(),
                    note,
                });
                Ok(true)
            }
            Err(e) => {
                let _ = ctx.log(json!({"type": "failed", "step": step.id, "host": step.host, "error": e.to_string()})).await;
                self.say(Event::StepFailed {
                    id: step.id.clone(),
                    host: step.host.clone(),
                    error: e.to_string(),
                });
                Err(e)
            }
        }
    }
}

/// A file's bytes and mode as they were before the run changed it.
type BeforeImage = (Vec<u8>, u32);

struct Ctx {
    dry: bool,
    changed_paths: std::sync::Mutex<BTreeSet<(String, String)>>,
    /// The first before-image of each file this run changed (`None`: it did not exist).
    before: std::sync::Mutex<BTreeMap<(String, String), Option<BeforeImage>>>,
    journal: Option<tokio::sync::Mutex<Journal>>,
    owner: String,
    run_id: String,
    force_unlock: bool,
    token: Option<String>,
}

impl Ctx {
    fn mark(&self, host: &str, path: &str) {
        self.changed_paths
            .lock()
            .expect("not poisoned")
            .insert((host.to_string(), path.to_string()));
    }
    fn is_changed(&self, host: &str, path: &str) -> bool {
        self.changed_paths
            .lock()
            .expect("not poisoned")
            .contains(&(host.to_string(), path.to_string()))
    }
    /// Appends to the journal (none in a dry run); the lock is held only for the line.
    async fn log(&self, entry: serde_json::Value) -> std::io::Result<()> {
        match &self.journal {
            Some(j) => j.lock().await.append(entry),
            None => Ok(()),
        }
    }
}

enum Done {
    Ok(String),
    Changed(String),
}

/// The text with the values of secret settings hidden: `KEY=value` and `KEY: value` where the
/// key (letters, digits, `_`) holds SECRET, TOKEN or PASSWORD. For what is shown to the operator
/// (a dry run's diffs); the hosts get the real values.
fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        while let Some(i) = rest.find(['=', ':']) {
            let (head, tail) = rest.split_at(i);
            let key_start = head
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |k| k + 1);
            let key = head[key_start..].to_ascii_uppercase();
            let sep = if tail.starts_with(": ") { 2 } else { 1 };
            let secret = ["SECRET", "TOKEN", "PASSWORD"]
                .iter()
                .any(|w| key.contains(w))
                && (tail.starts_with('=') || tail.starts_with(": "));
            out.push_str(head);
            out.push_str(&tail[..sep]);
            rest = &tail[sep..];
            if secret {
                let end = rest
                    .find(|c: char| c == '"' || c == '\'' || c.is_whitespace() || c == ',')
                    .unwrap_or(rest.len());
                if end > 0 {
                    out.push_str("********");
                }
                rest = &rest[end..];
            }
        }
        out.push_str(rest);
    }
    out
}

fn unified(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(&format!("{path} (now)"), &format!("{path} (after)"))
        .to_string()
}

impl<R: Remote + 'static> Engine<R> {
    async fn exec(
        &self,
        step: &Step,
        r: &R,
        command: &wk_plan::plan::Command,
    ) -> Result<String, EngineError> {
        let out = r
            .exec(
                ExecRequest::new(command.run.clone())
                    .sudo_inside(command.sudo)
                    .timeout(Duration::from_secs(600)),
            )
            .await
            .map_err(|e| step_err(step, e))?;
        if !out.success() {
            return Err(step_err(
                step,
                format!(
                    "`{}` failed ({:?}): {}{}",
                    command.run,
                    out.status,
                    out.stderr_str().trim(),
                    out.stdout_str().trim()
                ),
            ));
        }
        Ok(out.stdout_str())
    }

    /// `cd DIR && [sudo] COMPOSE ARGS` with the step's compose program and sudo, as its plan
    /// command shows them; the remote feeds sudo its password when the host needs one.
    async fn compose(
        &self,
        step: &Step,
        r: &R,
        dir: &str,
        args: &str,
    ) -> Result<wk_remote::ExecOutput, EngineError> {
        let sudo = step.action.commands().first().is_some_and(|c| c.sudo);
        let cmd = format!(
            "cd {} && {} {args}",
            shell::path(dir),
            self.compose_cmd(step)?
        );
        r.exec(ExecRequest::new(cmd).sudo_inside(sudo))
            .await
            .map_err(|e| step_err(step, e))
    }

    async fn compose_ps(&self, step: &Step, r: &R, dir: &str) -> Result<String, EngineError> {
        Ok(self.compose(step, r, dir, "ps").await?.stdout_str())
    }

    /// The compose program of a step's command line (after `cd … &&` and any sudo).
    fn compose_cmd(&self, step: &Step) -> Result<String, EngineError> {
        let run = step
            .action
            .commands()
            .first()
            .map(|c| c.run.clone())
            .unwrap_or_default();
        let after = run.split(" && ").nth(1).unwrap_or("");
        let words: Vec<&str> = after.split_whitespace().collect();
        let i = words
            .iter()
            .position(|w| *w == "docker" || *w == "docker-compose")
            .ok_or_else(|| step_err(step, "no compose command in the plan"))?;
        let prefix = words[..i].join(" ");
        let prog = if words[i] == "docker" {
            "docker compose"
        } else {
            "docker-compose"
        };
        Ok(if prefix.is_empty() {
            prog.to_string()
        } else {
            format!("{prefix} {prog}")
        })
    }

    /// Every file edit of the plan, in plan order, on the files as the hosts hold them now
    /// (nothing is written). A check per host: all apply, or which cannot and why.
    async fn try_edits(
        &self,
        plan: &Plan,
        mut files: BTreeMap<(String, String), Option<String>>,
    ) -> Vec<(String, String, bool, String, Option<String>)> {
        let mut tried: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        for step in &plan.steps {
            let Some((path, _)) = file_target(&step.action) else {
                continue;
            };
            let key = (step.host.clone(), path.clone());
            let entry = tried.entry(step.host.clone()).or_default();
            // A whole-file template does not look at what is there.
            let reads = !matches!(step.action, Action::Template { .. });
            if reads && !files.contains_key(&key) {
                let text = match self.remote(&step.host) {
                    Ok(r) => match r.read_file(&path).await {
                        Ok(f) => f.map(|f| String::from_utf8_lossy(&f.content).into_owned()),
                        Err(e) => {
                            entry
                                .1
                                .push(format!("{}: {path}: cannot read it: {e}", step.id));
                            continue;
                        }
                    },
                    Err(e) => {
                        entry.1.push(format!("{}: {e}", step.id));
                        continue;
                    }
                };
                files.insert(key.clone(), text);
            }
            let old = files.get(&key).cloned().flatten();
            entry.0 += 1;
            match edit_file(&step.action, old.as_deref()) {
                Ok(new) => {
                    files.insert(key, Some(new));
                }
                Err(e) => entry.1.push(format!("{}: {path}: {e}", step.id)),
            }
        }
        tried
            .into_iter()
            .map(|(host, (n, problems))| {
                if problems.is_empty() {
                    (host, "edits".to_string(), true, format!("{n} file edit(s) tried on the files as they are: each applies and changes only its own lines"), None)
                } else {
                    (host, "edits".to_string(), false, problems.join("; "), Some("change the file by hand so wkctl can find its place (or move a file wkctl writes away), then run again".to_string()))
                }
            })
            .collect()
    }

    /// A dry run's answer for a step that would run `command`: the command is shown.
    fn would(
        &self,
        step: &Step,
        command: &wk_plan::plan::Command,
        note: impl Into<String>,
    ) -> Done {
        self.say(Event::StepCommand {
            id: step.id.clone(),
            host: step.host.clone(),
            command: command.run.clone(),
        });
        Done::Changed(note.into())
    }

    /// Observe a file, compute what it should be, and (unless dry) journal and write it.
    async fn file_step(
        &self,
        step: &Step,
        ctx: &Ctx,
        path: &str,
        mode: Option<u32>,
        want: impl FnOnce(Option<&str>) -> Result<String, String>,
    ) -> Result<Done, EngineError> {
        let r = self.remote(&step.host)?;
        let old = r.read_file(path).await.map_err(|e| step_err(step, e))?;
        let old_text = old
            .as_ref()
            .map(|f| String::from_utf8_lossy(&f.content).into_owned());
        let new = want(old_text.as_deref()).map_err(|e| step_err(step, format!("{path}: {e}")))?;
        let same_mode =
            mode.is_none() || old.as_ref().map(|f| Some(f.mode) == mode).unwrap_or(false);
        if old.as_ref().is_some_and(|f| f.content == new.as_bytes()) && same_mode {
            return Ok(Done::Ok(format!("{path} is already as wanted")));
        }
        // Later steps (compose up, reloads) act on what changed, or would change in a dry run.
        ctx.mark(&step.host, path);
        if ctx.dry {
            let diff = mask_secrets(&unified(path, old_text.as_deref().unwrap_or(""), &new));
            self.say(Event::StepDiff {
                id: step.id.clone(),
                host: step.host.clone(),
                path: path.to_string(),
                diff,
            });
            return Ok(Done::Changed(format!(
                "would {} {path}",
                if old.is_some() { "change" } else { "create" }
            )));
        }
        ctx.before
            .lock()
            .expect("not poisoned")
            .entry((step.host.clone(), path.to_string()))
            .or_insert_with(|| old.as_ref().map(|f| (f.content.clone(), f.mode)));
        // The journal is held only while a line is written: steps on other hosts go on.
        let copy = match &old {
            Some(f) => Some(
                ctx.journal
                    .as_ref()
                    .expect("a journal when not dry")
                    .lock()
                    .await
                    .save_before(&step.id, &f.content)
                    .map_err(|e| step_err(step, e))?,
            ),
            None => None,
        };
        ctx.log(json!({
            "type": "before_image", "step": step.id, "host": step.host, "path": path,
            "existed": old.is_some(), "mode": old.as_ref().map(|f| f.mode),
            "sha256": old.as_ref().map(|f| sha256_hex(&f.content)), "copy": copy,
            "backup": old.as_ref().map(|_| format!("{path}.wkctl-{}.bak", ctx.run_id)),
        }))
        .await
        .map_err(|e| step_err(step, e))?;
        if old.is_some() {
            // A backup stays on the host too: the file as it was before the run's first change
            // (a later step or a resumed one does not overwrite it).
            let bak = shell::path(&format!("{path}.wkctl-{}.bak", ctx.run_id));
            let cmd = format!("[ -e {bak} ] || cp -p -- {} {bak}", shell::path(path));
            r.run(ExecRequest::new(cmd))
                .await
                .map_err(|e| step_err(step, e))?;
        }
        pause::at(step, Point::Middle).await;
        r.write_file(path, new.as_bytes(), mode.or(old.as_ref().map(|f| f.mode)))
            .await
            .map_err(|e| step_err(step, e))?;
        ctx.log(json!({"type": "applied", "step": step.id, "host": step.host, "path": path, "sha256": sha256_hex(new.as_bytes())}))
            .await
            .map_err(|e| step_err(step, e))?;
        let back = r.read_file(path).await.map_err(|e| step_err(step, e))?;
        if back.map(|f| f.content) != Some(new.into_bytes()) {
            return Err(step_err(
                step,
                format!("{path} does not read back as written"),
            ));
        }
        ctx.mark(&step.host, path);
        Ok(Done::Changed(format!(
            "{} {path}",
            if old.is_some() { "changed" } else { "created" }
        )))
    }

    /// Puts a file this run changed back as it was (or removes it if it was not there).
    async fn restore(
        &self,
        step: &Step,
        ctx: &Ctx,
        r: &R,
        path: &str,
    ) -> Result<String, EngineError> {
        let before = ctx
            .before
            .lock()
            .expect("not poisoned")
            .get(&(step.host.clone(), path.to_string()))
            .cloned();
        match before {
            Some(Some((content, mode))) => {
                r.write_file(path, &content, Some(mode))
                    .await
                    .map_err(|e| step_err(step, e))?;
                Ok(format!("{path} is restored as it was before this run"))
            }
            Some(None) => {
                r.remove(path).await.map_err(|e| step_err(step, e))?;
                Ok(format!("{path}, which this run created, is removed"))
            }
            None => Ok(format!("{path} was not changed by this run")),
        }
    }

    async fn step(&self, step: &Step, plan: &Plan, ctx: &Ctx) -> Result<Done, EngineError> {
        let r = self.remote(&step.host)?.clone();
        match &step.action {
            Action::Preflight { checks } => {
                pause::at(step, Point::Middle).await;
                Ok(Done::Ok(format!("{} checks passed", checks.len())))
            }
            Action::Lock { path } => {
                if ctx.dry {
                    return Ok(Done::Ok(format!("would take {path}")));
                }
                let content = format!(
                    "owner={} run={} time={}\n",
                    ctx.owner,
                    ctx.run_id,
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                );
                if ctx.force_unlock {
                    r.remove(path).await.map_err(|e| step_err(step, e))?;
                }
                // Journal first: a run cut right after it took the lock can still release it
                // (a rollback removes the lock only while it names this run).
                ctx.log(json!({"type": "lock", "step": step.id, "host": step.host, "path": path}))
                    .await
                    .map_err(|e| step_err(step, e))?;
                pause::at(step, Point::Middle).await;
                let out = r
                    .exec(
                        ExecRequest::new(format!("set -C; cat > {}", shell::path(path)))
                            .stdin(content),
                    )
                    .await
                    .map_err(|e| step_err(step, e))?;
                if !out.success() {
                    let holder = r
                        .read_file(path)
                        .await
                        .ok()
                        .flatten()
                        .map(|f| String::from_utf8_lossy(&f.content).trim().to_string())
                        .unwrap_or_default();
                    // A resumed run finds its own lock.
                    if holder.contains(&format!("run={} ", ctx.run_id)) {
                        return Ok(Done::Ok(format!("holds {path} (since the run began)")));
                    }
                    return Err(EngineError::Locked {
                        host: step.host.clone(),
                        path: path.clone(),
                        holder,
                    });
                }
                Ok(Done::Ok(format!("took {path} (released at the end)")))
            }
            Action::Unlock { path } => {
                if ctx.dry {
                    return Ok(Done::Ok(format!("would release {path}")));
                }
                let held = r.read_file(path).await.map_err(|e| step_err(step, e))?;
                match held {
                    Some(f)
                        if String::from_utf8_lossy(&f.content)
                            .contains(&format!("run={}", ctx.run_id)) =>
                    {
                        pause::at(step, Point::Middle).await;
                        r.remove(path).await.map_err(|e| step_err(step, e))?;
                        Ok(Done::Ok(format!("released {path}")))
                    }
                    Some(_) => Err(step_err(
                        step,
                        format!("{path} is held by another run; left alone"),
                    )),
                    None => Ok(Done::Ok("no lock to release".into())),
                }
            }
            Action::Mkdir {
                path,
                mode,
                command,
            } => {
                if r.stat(path)
                    .await
                    .map_err(|e| step_err(step, e))?
                    .is_some_and(|s| s.is_dir)
                {
                    return Ok(Done::Ok(format!("{path} exists")));
                }
                if ctx.dry {
                    return Ok(self.would(step, command, format!("would create {path}")));
                }
                ctx.log(json!({"type": "before_image", "step": step.id, "host": step.host, "path": path, "existed": false, "dir": true}))
                    .await
                    .map_err(|e| step_err(step, e))?;
                pause::at(step, Point::Middle).await;
                r.mkdir_p(path, *mode)
                    .await
                    .map_err(|e| step_err(step, e))?;
                Ok(Done::Changed(format!("created {path}")))
            }
            Action::Template { .. }
            | Action::NginxConf { .. }
            | Action::ComposeEnv { .. }
            | Action::ComposeService { .. }
            | Action::PrometheusJob { .. } => {
                let (path, mode) = file_target(&step.action).expect("a file action");
                let action = step.action.clone();
                self.file_step(step, ctx, &path, mode, move |old| edit_file(&action, old))
                    .await
            }
            Action::ComposeUp {
                dir,
                services,
                command,
            } => {
                let compose_file = format!("{}/docker-compose.yml", dir.trim_end_matches('/'));
                let nginx_conf = format!("{}/nginx.conf", dir.trim_end_matches('/'));
                let changed = ctx.is_changed(&step.host, &compose_file);
                let conf_changed = ctx.is_changed(&step.host, &nginx_conf);
                let ps = self.compose_ps(step, &r, dir).await?;
                let names: Vec<String> = command
                    .run
                    .split_whitespace()
                    .skip_while(|w| *w != "-d")
                    .skip(1)
                    .map(str::to_string)
                    .collect();
                let all_running = if names.is_empty() {
                    ps.lines().count() > 1 && !ps.contains("Restarting") && !ps.contains("Exited")
                } else {
                    names.iter().all(|n| running(&ps, n))
                };
                let nginx = services
                    .iter()
                    .any(|s| *s == ServiceSelector::Name("nginx".into()));
                if !changed && all_running && !(nginx && conf_changed) {
                    return Ok(Done::Ok(
                        "running, and its configuration did not change".into(),
                    ));
                }
                // A member the operator stopped stays stopped unless its configuration changed.
                let member = services
                    .iter()
                    .any(|sv| matches!(sv, ServiceSelector::ImageName(_)));
                if member && !changed && !all_running {
                    return Ok(Done::Ok(
                        "not running, and its compose file did not change: left stopped".into(),
                    ));
                }
                if ctx.dry {
                    return Ok(self.would(step, command, "would (re)start"));
                }
                let reload = nginx && conf_changed && all_running && !changed;
                if nginx && conf_changed && running(&ps, "nginx") {
                    // nginx checks the new file before it serves it.
                    let out = self
                        .compose(step, &r, dir, "exec -T nginx nginx -t")
                        .await?;
                    if !out.success() {
                        let why = self.restore(step, ctx, &r, &nginx_conf).await?;
                        return Err(step_err(
                            step,
                            format!("nginx rejected the new nginx.conf ({}); {why}; nginx goes on serving the old one", out.stderr_str().trim()),
                        ));
                    }
                }
                if reload {
                    let out = self.compose(step, &r, dir, "kill -s HUP nginx").await?;
                    if !out.success() {
                        return Err(step_err(
                            step,
                            format!("reloading nginx failed: {}", out.stderr_str().trim()),
                        ));
                    }
                } else {
                    self.exec(step, &r, command).await?;
                }
                pause::at(step, Point::Middle).await;
                // Verify: every service it started runs.
                let t = Instant::now();
                loop {
                    let ps = self.compose_ps(step, &r, dir).await?;
                    let ok = if names.is_empty() {
                        ps.lines().count() > 1 && !ps.contains("Restarting")
                    } else {
                        names.iter().all(|n| running(&ps, n))
                    };
                    if ok {
                        break;
                    }
                    let nginx_looping = ps.lines().any(|l| {
                        l.split_whitespace().any(|w| w == "nginx") && l.contains("Restarting")
                    });
                    if t.elapsed() > Duration::from_secs(20)
                        || (nginx_looping && t.elapsed() > Duration::from_secs(2))
                    {
                        if nginx && conf_changed && !running(&ps, "nginx") {
                            // A first start that nginx refused: the file goes back, nginx stops.
                            let logs = self
                                .compose(step, &r, dir, "logs nginx 2>&1 | tail -5")
                                .await
                                .map(|o| o.stdout_str())
                                .unwrap_or_default();
                            let why = self.restore(step, ctx, &r, &nginx_conf).await?;
                            let _ = self.compose(step, &r, dir, "stop nginx").await;
                            return Err(step_err(step, format!("nginx did not start with the new nginx.conf:\n{}\n{why}; nginx was stopped", logs.trim())));
                        }
                        return Err(step_err(step, format!("services did not start:\n{ps}")));
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                // A member's WuKongIM restarted: wait for its /health before anything else
                // restarts, so a cluster never loses two members at once (a rolling restart).
                if services
                    .iter()
                    .any(|sv| matches!(sv, ServiceSelector::ImageName(_)))
                {
                    if let Some(node) = self.inv.node(&step.host) {
                        let t = Instant::now();
                        loop {
                            let healthy = match r.tunnel(&node.internal_address, PORT_API).await {
                                Ok(tn) => matches!(
                                    Api::new(&step.host, tn.local, ctx.token.clone())
                                        .health()
                                        .await,
                                    Ok(Health::Ok)
                                ),
                                Err(_) => false,
                            };
                            if healthy {
                                break;
                            }
                            if t.elapsed() > Duration::from_secs(120) {
                                return Err(step_err(step, "WuKongIM did not answer /health 200 within 120 s after its restart; see `docker compose logs` on the host"));
                            }
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                    }
                }
                Ok(Done::Changed(if reload {
                    "nginx reloaded".into()
                } else {
                    format!(
                        "up: {}",
                        if names.is_empty() {
                            "all services".into()
                        } else {
                            names.join(", ")
                        }
                    )
                }))
            }
            Action::ComposeSignal {
                dir,
                service,
                command,
                ..
            } => {
                let prom = wk_plan::plan::join_path(dir, &self.inv.gateway.prometheus_file);
                if !ctx.is_changed(&step.host, &prom) {
                    return Ok(Done::Ok("its configuration did not change".into()));
                }
                let name = match service {
                    ServiceSelector::Name(n) => n.clone(),
                    ServiceSelector::ImageName(i) => i.clone(),
                };
                let ps = self.compose_ps(step, &r, dir).await?;
                if !running(&ps, &name) {
                    return Ok(Done::Ok(format!(
                        "{name} does not run here; nothing to reload"
                    )));
                }
                if ctx.dry {
                    return Ok(self.would(step, command, "would signal"));
                }
                pause::at(step, Point::Middle).await;
                self.exec(step, &r, command).await?;
                Ok(Done::Changed(format!("{name} reloaded its configuration")))
            }
            Action::WaitHealth {
                address,
                path,
                timeout_secs,
            } => {
                if ctx.dry {
                    return Ok(Done::Ok(format!("would wait for http://{address}{path}")));
                }
                let (h, p) = split_addr(address);
                let t = Instant::now();
                let mut last = String::new();
                while t.elapsed() < Duration::from_secs(*timeout_secs) {
                    let answer = match r.tunnel(&h, p).await {
                        Ok(tunnel) => Some(
                            Api::new(&step.host, tunnel.local, ctx.token.clone())
                                .health()
                                .await,
                        ),
                        Err(_) => None,
                    };
                    pause::at(step, Point::Middle).await;
                    match answer {
                        Some(Ok(Health::Ok)) => {
                            return Ok(Done::Ok(format!("http://{address}{path} answers 200")))
                        }
                        Some(Ok(Health::Error(m))) => last = m,
                        Some(Err(e)) => last = e.to_string(),
                        None => {}
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(step_err(step, format!("http://{address}{path} did not answer 200 within {timeout_secs} s (last: {last})")))
            }
            Action::WaitJoined {
                node_id,
                timeout_secs,
            } => {
                if ctx.dry {
                    return Ok(Done::Ok(format!(
                        "would wait for node {node_id} to reach 已加入"
                    )));
                }
                self.wait_joined(
                    step,
                    plan,
                    *node_id,
                    Duration::from_secs(*timeout_secs),
                    ctx,
                )
                .await
            }
            Action::Command { command, .. } => {
                if ctx.dry {
                    return Ok(self.would(step, command, "would run"));
                }
                self.exec(step, &r, command).await?;
                Ok(Done::Changed("ran".into()))
            }
        }
    }

    /// Status 3 on every member's view; statuses are reported as they change. When the node
    /// stays at 加入中 (#529), the fallback: online, slots, /health on every node, nothing moving.
    async fn wait_joined(
        &self,
        step: &Step,
        plan: &Plan,
        node_id: u16,
        timeout: Duration,
        ctx: &Ctx,
    ) -> Result<Done, EngineError> {
        let mut apis = Vec::new();
        let mut tunnels = Vec::new();
        // Nodes added after this one are not started yet: ask only the members that exist now.
        let later: Vec<&str> = plan
            .adding
            .iter()
            .skip_while(|a| a.id != node_id)
            .skip(1)
            .map(|a| a.name.as_str())
            .collect();
        // A member whose API cannot be reached counts only while the cluster sees it online.
        let mut unreachable: Vec<u64> = Vec::new();
        for m in plan
            .members_after
            .iter()
            .filter(|m| !later.contains(&m.name.as_str()))
        {
            let r = self.remote(&m.name)?;
            match r.tunnel(&m.internal_address, PORT_API).await {
                Ok(t) => {
                    apis.push((
                        m.name.clone(),
                        m.id as u64,
                        Api::new(&m.name, t.local, ctx.token.clone()),
                    ));
                    tunnels.push(t);
                }
                Err(_) => unreachable.push(m.id as u64),
            }
        }
        let node = plan
            .members_after
            .iter()
            .find(|m| m.id == node_id)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let start = Instant::now();
        let mut last_status = 0u8;
        let mut polls = 0;
        loop {
            polls += 1;
            let mut all = true;
            let mut status_seen = 0u8;
            let mut answered = 0;
            let mut silent: Vec<u64> = unreachable.clone();
            let mut offline: BTreeSet<u64> = BTreeSet::new();
            for (_, id, api) in &apis {
                match api.simple_nodes().await {
                    Ok(list) => {
                        answered += 1;
                        offline.extend(list.iter().filter(|n| n.online != 1).map(|n| n.id));
                        let s = list
                            .iter()
                            .find(|n| n.id == node_id as u64)
                            .map(|n| n.status)
                            .unwrap_or(0);
                        status_seen = status_seen.max(s);
                        all &= s == 3;
                    }
                    Err(_) => silent.push(*id),
                }
            }
            pause::at(step, Point::Middle).await;
            // Silent members count unless the members that answer see them offline.
            all &= answered > 0 && silent.iter().all(|id| offline.contains(id));
            let skipped: Vec<String> = silent
                .iter()
                .filter(|id| offline.contains(id))
                .filter_map(|id| plan.members_after.iter().find(|m| m.id as u64 == *id))
                .map(|m| m.name.clone())
                .collect();
            if status_seen != last_status && status_seen != 0 {
                last_status = status_seen;
                self.say(Event::JoinStatus {
                    node: node.clone(),
                    id: node_id as u64,
                    status: status_seen,
                    text: wk_cluster::status_text(status_seen).into(),
                });
            }
            if all {
                let but = if skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        " that is online ({} offline, not asked)",
                        skipped.join(", ")
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
            if start.elapsed() >= timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Stuck at 加入中 (#529): accept the join if everything else says it worked.
        let mut reasons = Vec::new();
        for (name, _, api) in &apis {
            match api.health().await {
                Ok(Health::Ok) => {}
                other => reasons.push(format!("{name}: /health {other:?}")),
            }
            if let Ok(n) = api.slots_migrating().await {
                if n > 0 {
                    reasons.push(format!("{name}: {n} slot(s) still migrating"));
                }
            }
        }
        if let Some((_, _, api)) = apis.first() {
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
            self.say(Event::Warning { message: format!("node {node_id} stays at 加入中 (WuKongIM #529) but is online, has slots, every node is healthy and no slot is moving: taken as joined") });
            return Ok(Done::Changed(format!(
                "node {node_id} works (still shown as 加入中)"
            )));
        }
        Err(step_err(
            step,
            format!(
                "node {node_id} did not reach 已加入 within {} s (last seen: {}); {}",
                timeout.as_secs(),
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

async fn futures_all<T>(jobs: Vec<impl std::future::Future<Output = T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(jobs.len());
    // The futures borrow the engine, so they are joined here rather than spawned.
    let mut pinned: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + '_>>> =
        jobs.into_iter().map(|j| Box::pin(j) as _).collect();
    let mut results: Vec<Option<T>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    for r in results {
        out.push(r.expect("every future finished"));
    }
    out
}

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
    use wk_plan::inventory::{HostKeyPolicy as P, SudoMode};
    use wk_remote::ssh::{Hop, HostKeyPolicy, SshOptions};
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut tasks = Vec::new();
    for n in &inv.nodes {
        let mut o = SshOptions::new(&n.name, &n.ssh.host);
        o.port = Some(n.ssh.port);
        o.user = n.ssh.user.clone();
        o.identity_files = n
            .ssh
            .identity_files
            .iter()
            .map(|f| {
                PathBuf::from(
                    f.strip_prefix("~/")
                        .map(|r| home.join(r).display().to_string())
                        .unwrap_or_else(|| f.clone()),
                )
            })
            .collect();
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
            o.known_hosts.insert(
                0,
                PathBuf::from(
                    k.strip_prefix("~/")
                        .map(|r| home.join(r).display().to_string())
                        .unwrap_or_else(|| k.clone()),
                ),
            );
        }
        o.sudo = match n.ssh.sudo {
            SudoMode::None => wk_remote::Sudo::None,
            SudoMode::Passwordless => wk_remote::Sudo::Passwordless,
            SudoMode::Password => wk_remote::Sudo::Password(sudo_password.clone().ok_or_else(|| EngineError::Input(format!("{}: `sudo: password` needs the sudo password (asked at start, or WKCTL_SUDO_PASSWORD)", n.name)))?),
        };
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

#[cfg(test)]
mod tests {
    use super::mask_secrets;

    #[test]
    fn secrets_are_masked_in_what_the_operator_sees() {
        let text = "+      - \"WK_JWT_SECRET=s3cr3t-value\"\n+      WK_MANAGERTOKEN: abc123\n       - \"WK_CLUSTER_SEED=1001@10.0.0.1:11110\"\n password=hunter2, user=ops\n";
        assert_eq!(
            mask_secrets(text),
            "+      - \"WK_JWT_SECRET=********\"\n+      WK_MANAGERTOKEN: ********\n       - \"WK_CLUSTER_SEED=1001@10.0.0.1:11110\"\n password=********, user=ops\n"
        );
        assert_eq!(
            mask_secrets("services:\n  a: b\nsecrets:\n"),
            "services:\n  a: b\nsecrets:\n"
        );
    }
}
