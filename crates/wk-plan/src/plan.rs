//! Building the plan: playbook + inventory + templates give an ordered list of concrete steps.
//!
//! Every step has its host, its inputs fully rendered, and an id (`<playbook step>@<host>`) that
//! stays the same when the plan is built again from the same inputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::inventory::{
    host_port, ComposeCommand, Inventory, Node, Role, SudoMode, NODE_PORTS, PORT_API, PORT_CLUSTER,
    PORT_DEMO, PORT_MANAGER, PORT_TCP, PORT_WS,
};
use crate::playbook::{
    ActionSpec, CommandSpec, ComposeEnvSpec, ComposeServiceSpec, ComposeSignalSpec, ComposeUpSpec,
    MkdirSpec, NginxConfSpec, On, Playbook, PrometheusJobSpec, ServiceSelector, StepSpec,
    TemplateSpec, WaitJoinedSpec,
};
use crate::sources::Sources;

/// What the operator asked for.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// The nodes to add, in the order they join.
    pub add: Vec<String>,
    /// The nodes already in the cluster, as the cluster says. `None` when nobody asked it
    /// (offline): then every node of the inventory that is not being added is taken as a
    /// member, and the plan says so.
    pub members: Option<Vec<String>>,
    /// What was learnt on each host (by name); missing facts are shown as placeholders.
    pub facts: BTreeMap<String, HostFacts>,
    /// `K=V` entries every new node must carry from the members (e.g. `WK_JWT_SECRET`).
    pub extra_env: Vec<String>,
    /// The member new nodes join through, when not the inventory's seed (which is down).
    pub seed: Option<String>,
}

/// Facts about one host that only the host can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `docker compose` or `docker-compose`, as found on the host.
    pub compose: Option<String>,
    /// The name of the compose service running the WuKongIM image.
    pub wukongim_service: Option<String>,
}

/// Shown in commands for a compose program not yet detected.
pub const COMPOSE_PLACEHOLDER: &str = "$COMPOSE";
/// Shown in commands for the WuKongIM service not yet found by its image.
pub const SERVICE_PLACEHOLDER: &str = "$WK_SERVICE";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub cluster: String,
    pub playbook: String,
    /// Hash of everything the plan was built from; resume refuses a plan whose inputs changed.
    pub fingerprint: String,
    pub adding: Vec<NodeRef>,
    pub members_before: Vec<NodeRef>,
    pub members_after: Vec<NodeRef>,
    pub gateway: String,
    pub seed: String,
    /// What the plan takes for granted because it was not checked.
    pub assumptions: Vec<String>,
    /// Things the operator should know before going on.
    pub warnings: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    pub name: String,
    pub id: u16,
    pub internal_address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Prepare,
    Join,
    Finish,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// `<playbook step id>@<host>`: the same every time the plan is built from the same inputs.
    pub id: String,
    pub host: String,
    pub phase: Phase,
    pub title: String,
    pub action: Action,
    /// The playbook steps it waits for on other hosts (`after` in the playbook); `None`: every
    /// step before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub id: String,
    pub description: String,
}

/// A shell command as it will run on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub run: String,
    /// Whether it runs through sudo (with the password on stdin in `password` mode).
    pub sudo: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromJob {
    pub job_name: String,
    pub targets: Vec<String>,
    pub id_label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    Preflight {
        checks: Vec<Check>,
    },
    Lock {
        path: String,
    },
    Unlock {
        path: String,
    },
    Mkdir {
        path: String,
        mode: u32,
        command: Command,
    },
    Template {
        src: String,
        dest: String,
        mode: u32,
        content: String,
    },
    /// nginx.conf: `content` is written when the file is missing; a file already there only
    /// gets the `upstreams`' missing servers.
    NginxConf {
        src: String,
        file: String,
        mode: u32,
        content: String,
        upstreams: Vec<(String, Vec<String>)>,
    },
    ComposeEnv {
        file: String,
        service: ServiceSelector,
        env: Vec<(String, String)>,
    },
    ComposeService {
        file: String,
        service: String,
        content: String,
        /// Only add it: a service of that name already there stays as it is.
        if_missing: bool,
    },
    PrometheusJob {
        file: String,
        jobs: Vec<PromJob>,
        content: String,
    },
    ComposeUp {
        dir: String,
        services: Vec<ServiceSelector>,
        command: Command,
    },
    ComposeCreate {
        dir: String,
        command: Command,
    },
    ComposeSignal {
        dir: String,
        service: ServiceSelector,
        signal: String,
        command: Command,
    },
    WaitHealth {
        address: String,
        path: String,
        timeout_secs: u64,
    },
    WaitJoined {
        node_id: u16,
        timeout_secs: u64,
    },
    Command {
        command: Command,
        undo: Option<Command>,
    },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Preflight { .. } => "preflight",
            Action::Lock { .. } => "lock",
            Action::Unlock { .. } => "unlock",
            Action::Mkdir { .. } => "mkdir",
            Action::Template { .. } => "template",
            Action::NginxConf { .. } => "nginx_conf",
            Action::ComposeEnv { .. } => "compose_env",
            Action::ComposeService { .. } => "compose_service",
            Action::PrometheusJob { .. } => "prometheus_job",
            Action::ComposeUp { .. } => "compose_up",
            Action::ComposeCreate { .. } => "compose_create",
            Action::ComposeSignal { .. } => "compose_signal",
            Action::WaitHealth { .. } => "wait_health",
            Action::WaitJoined { .. } => "wait_joined",
            Action::Command { .. } => "command",
        }
    }

    /// The shell commands the step runs, in order.
    pub fn commands(&self) -> Vec<&Command> {
        match self {
            Action::Mkdir { command, .. }
            | Action::ComposeUp { command, .. }
            | Action::ComposeCreate { command, .. }
            | Action::ComposeSignal { command, .. }
            | Action::Command { command, .. } => vec![command],
            _ => Vec::new(),
        }
    }
}

/// Why a plan could not be built: the step and host it was building, and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Input(crate::diag::Diagnostics),
    #[error("step `{step}` on {host}: {message}")]
    Step {
        step: String,
        host: String,
        message: String,
    },
}

/// Values templates see for one node.
#[derive(Debug, Clone, Serialize)]
struct NodeView {
    name: String,
    id: u16,
    internal_address: String,
    external_address: String,
    install_dir: String,
    api_url: String,
    cluster_addr: String,
    metrics_addr: String,
    hostport: HostPorts,
}

#[derive(Debug, Clone, Serialize)]
struct HostPorts {
    api: String,
    tcp: String,
    ws: String,
    manager: String,
    demo: String,
    cluster: String,
}

#[derive(Debug, Clone, Serialize)]
struct GatewayView {
    node: String,
    external_address: String,
    ports: crate::inventory::LbPorts,
    nginx_image: String,
    prometheus_url: String,
    prometheus_path: String,
    /// What clients are told for WebSocket: `ws://<lb>:<ws port>`.
    ws_url: String,
    /// What clients are told for TCP: `<lb>:<tcp port>`.
    tcp_addr: String,
    /// The load balancer's public API URL.
    api_url: String,
    /// The load balancer's API as seen on the gateway host itself.
    local_api: String,
}

#[derive(Debug, Clone, Serialize)]
struct SeedView {
    name: String,
    id: u16,
    /// `WK_CLUSTER_SEED`: `id@host:11110` (the port is never defaulted by WuKongIM).
    spec: String,
}

#[derive(Debug, Clone, Serialize)]
struct Ctx<'a> {
    cluster: &'a str,
    image: &'a str,
    node: NodeView,
    gateway: &'a GatewayView,
    seed: &'a SeedView,
    members: &'a [NodeView],
    added: &'a [NodeView],
    extra_env: &'a [String],
}

fn node_view(n: &Node) -> NodeView {
    let a = &n.internal_address;
    NodeView {
        name: n.name.clone(),
        id: n.id,
        internal_address: a.clone(),
        external_address: n.external_address.clone(),
        install_dir: n.install_dir.clone(),
        api_url: format!("http://{}", host_port(a, PORT_API)),
        cluster_addr: host_port(a, PORT_CLUSTER),
        metrics_addr: host_port(a, PORT_MANAGER),
        hostport: HostPorts {
            api: host_port(a, PORT_API),
            tcp: host_port(a, PORT_TCP),
            ws: host_port(a, PORT_WS),
            manager: host_port(a, PORT_MANAGER),
            demo: host_port(a, PORT_DEMO),
            cluster: host_port(a, PORT_CLUSTER),
        },
    }
}

fn node_ref(n: &Node) -> NodeRef {
    NodeRef {
        name: n.name.clone(),
        id: n.id,
        internal_address: n.internal_address.clone(),
    }
}

/// Joins a directory and a file name the way the remote shell will see them.
pub fn join_path(dir: &str, file: &str) -> String {
    if file.starts_with('/') || file.starts_with("~/") {
        file.to_string()
    } else {
        format!("{}/{}", dir.trim_end_matches('/'), file)
    }
}

/// A path for a shell command line: validated paths go as they are (so `~` expands), anything
/// else is single-quoted.
pub fn shell_path(p: &str) -> String {
    if p.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '~' | '.' | '-' | '_' | '+' | ','))
    {
        p.to_string()
    } else {
        format!("'{}'", p.replace('\'', r"'\''"))
    }
}

fn parse_mode(s: Option<&str>, default: u32) -> Result<u32, String> {
    match s {
        None => Ok(default),
        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| format!("mode `{m}` is not an octal file mode like \"0644\"")),
    }
}

pub(crate) fn fingerprint(parts: &[(&str, &str)]) -> String {
    let mut h = Sha256::new();
    for (name, text) in parts {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the plan. Pure: reads nothing but its arguments.
pub fn build(
    inv: &Inventory,
    inventory_text: &str,
    sources: &Sources,
    req: &PlanRequest,
) -> Result<Plan, PlanError> {
    inv.check_additions(&req.add).map_err(PlanError::Input)?;
    let playbook =
        Playbook::parse(&sources.playbook_name, &sources.playbook).map_err(PlanError::Input)?;
    let tera = sources.tera().map_err(|message| PlanError::Step {
        step: "templates".into(),
        host: "-".into(),
        message,
    })?;
    let (member_names, assumptions) = member_names(inv, req);
    let seed_name = req.seed.as_ref().unwrap_or(&inv.seed);
    let who = Who::new(inv, req, &member_names, seed_name)?;
    let gateway = gateway_view(inv);
    let seed = SeedView {
        name: who.seed.name.clone(),
        id: who.seed.id,
        spec: format!(
            "{}@{}",
            who.seed.id,
            host_port(&who.seed.internal_address, PORT_CLUSTER)
        ),
    };
    let member_views: Vec<NodeView> = who.after.iter().map(|n| node_view(n)).collect();
    let added_views: Vec<NodeView> = who.added.iter().map(|n| node_view(n)).collect();
    let mut b = Builder {
        inv,
        tera: &tera,
        req,
        gateway: &gateway,
        seed: &seed,
        member_views: &member_views,
        added_views: &added_views,
        members: &who.members,
        added: &who.added,
        steps: Vec::new(),
    };
    b.playbook(&playbook, &who)?;
    let steps = b.steps;
    Ok(Plan {
        cluster: inv.cluster.clone(),
        playbook: playbook.name.clone(),
        fingerprint: plan_fingerprint(inventory_text, sources, req, &member_names, &who.seed.name),
        adding: who.added.iter().map(|n| node_ref(n)).collect(),
        members_before: who.members.iter().map(|n| node_ref(n)).collect(),
        members_after: who.after.iter().map(|n| node_ref(n)).collect(),
        gateway: inv.gateway.node.clone(),
        seed: who.seed.name.clone(),
        assumptions,
        warnings: size_warnings(who.after.len()),
        steps,
    })
}

/// Who is in the cluster before the run: as the cluster said, else (assumed, and said so)
/// every WuKongIM node not being added.
fn member_names(inv: &Inventory, req: &PlanRequest) -> (Vec<String>, Vec<String>) {
    if let Some(m) = &req.members {
        return (m.clone(), Vec::new());
    }
    let names: Vec<String> = inv
        .wukongim_nodes()
        .filter(|n| !req.add.contains(&n.name))
        .map(|n| n.name.clone())
        .collect();
    let assumption = format!(
        "the cluster was not asked who its members are: taking {} as already deployed and joined",
        names.join(", ")
    );
    (names, vec![assumption])
}

/// The nodes of a run by their part in it.
struct Who<'a> {
    gateway: &'a Node,
    seed: &'a Node,
    members: Vec<&'a Node>,
    added: Vec<&'a Node>,
    /// The members once the run is done.
    after: Vec<&'a Node>,
    /// Every node a step of `on: involved` runs on: the members, the new nodes, the gateway.
    involved: Vec<&'a Node>,
}

impl<'a> Who<'a> {
    /// The seed and the gateway (when it runs WuKongIM) must be members; a node to add must
    /// not be one.
    fn new(
        inv: &'a Inventory,
        req: &PlanRequest,
        member_names: &[String],
        seed_name: &String,
    ) -> Result<Who<'a>, PlanError> {
        let gateway_runs_wukongim = inv.gateway_node().role == Role::Wukongim;
        for special in [seed_name, &inv.gateway.node] {
            if special == &inv.gateway.node && !gateway_runs_wukongim {
                continue;
            }
            if !member_names.contains(special) {
                return Err(PlanError::Step {
                    step: "plan".into(),
                    host: special.clone(),
                    message: format!(
                        "`{special}` is the seed or gateway but is not a running member of the cluster; \
                         deploy it first (the single-node deployment) or name a running member in {}",
                        inv.file
                    ),
                });
            }
        }
        let is_member = |n: &Node| member_names.contains(&n.name);
        let added: Vec<&Node> = req
            .add
            .iter()
            .map(|a| inv.node(a).expect("checked by check_additions"))
            .collect();
        if let Some(n) = added.iter().find(|n| is_member(n)) {
            return Err(PlanError::Step {
                step: "plan".into(),
                host: n.name.clone(),
                message: format!(
                    "`{}` is already a member of the cluster; there is nothing to add",
                    n.name
                ),
            });
        }
        let seed = inv.node(seed_name).ok_or_else(|| PlanError::Step {
            step: "plan".into(),
            host: seed_name.clone(),
            message: format!("the seed `{seed_name}` is not in {}", inv.file),
        })?;
        let of = |keep: &dyn Fn(&Node) -> bool| inv.nodes.iter().filter(|n| keep(n)).collect();
        Ok(Who {
            gateway: inv.gateway_node(),
            seed,
            members: of(&|n| is_member(n)),
            after: of(&|n| is_member(n) || req.add.contains(&n.name)),
            involved: of(&|n| {
                is_member(n) || req.add.contains(&n.name) || n.name == inv.gateway.node
            }),
            added,
        })
    }

    /// The hosts a prepare or finish step runs on.
    fn on(&self, on: &On) -> Vec<&'a Node> {
        match on {
            On::Gateway => vec![self.gateway],
            On::Seed => vec![self.seed],
            On::Members => self.members.clone(),
            On::New => self.added.clone(),
            On::Involved => self.involved.clone(),
            On::Joining => unreachable!("checked by Playbook::parse"),
        }
    }
}

/// What the cluster's size after the run is worth.
fn size_warnings(n: usize) -> Vec<String> {
    let mut warnings = Vec::new();
    if n == 2 {
        warnings.push(
            "a two-node cluster survives no node loss: every slot's quorum needs both nodes; \
             three nodes is the minimum for surviving one (WuKongIM #282)"
                .to_string(),
        );
    }
    if n > 2 && n.is_multiple_of(2) {
        warnings.push(format!(
            "{n} nodes tolerate no more failures than {}; an odd count is the better size",
            n - 1
        ));
    }
    warnings
}

fn gateway_view(inv: &Inventory) -> GatewayView {
    let gw_node = inv.gateway_node();
    let ports = inv.gateway.ports;
    let ext = &inv.gateway.external_address;
    GatewayView {
        node: inv.gateway.node.clone(),
        external_address: ext.clone(),
        ports,
        nginx_image: inv.gateway.nginx_image.clone(),
        prometheus_url: inv.gateway.prometheus_url.clone(),
        prometheus_path: join_path(&gw_node.install_dir, &inv.gateway.prometheus_file),
        ws_url: format!("ws://{}", host_port(ext, ports.ws)),
        tcp_addr: host_port(ext, ports.tcp),
        api_url: format!("http://{}", host_port(ext, ports.api)),
        local_api: host_port("127.0.0.1", ports.api),
    }
}

/// Everything the plan is built from, hashed: a resumed run must find the same.
fn plan_fingerprint(
    inventory_text: &str,
    sources: &Sources,
    req: &PlanRequest,
    member_names: &[String],
    seed: &str,
) -> String {
    let add_list = req.add.join(",");
    let member_list = member_names.join(",");
    let mut parts: Vec<(&str, &str)> = vec![
        ("inventory", inventory_text),
        ("playbook", &sources.playbook),
        ("add", &add_list),
        ("members", &member_list),
        ("seed", seed),
    ];
    for (name, text) in &sources.templates {
        parts.push((name, text));
    }
    let extra = req.extra_env.join("\n");
    parts.push(("extra_env", &extra));
    fingerprint(&parts)
}

struct Builder<'a> {
    inv: &'a Inventory,
    tera: &'a tera::Tera,
    req: &'a PlanRequest,
    gateway: &'a GatewayView,
    seed: &'a SeedView,
    member_views: &'a [NodeView],
    added_views: &'a [NodeView],
    members: &'a [&'a Node],
    added: &'a [&'a Node],
    steps: Vec<Step>,
}

impl Builder<'_> {
    /// Every step of the playbook: its `steps` on the hosts each names, its `join` section once
    /// per new node (one after the other), then its `finish`.
    fn playbook(&mut self, playbook: &Playbook, who: &Who<'_>) -> Result<(), PlanError> {
        for spec in &playbook.steps {
            for h in who.on(&spec.on) {
                self.step(spec, h, Phase::Prepare)?;
            }
        }
        for joining in &who.added {
            for spec in &playbook.join {
                let host = match spec.on {
                    On::Joining => *joining,
                    On::Gateway => who.gateway,
                    On::Seed => who.seed,
                    other => {
                        return Err(PlanError::Step {
                            step: spec.id.clone(),
                            host: joining.name.clone(),
                            message: format!("`on: {other:?}` is not allowed in the join section"),
                        })
                    }
                };
                // A join-section step runs once per joining node; its id names both.
                self.join_step(spec, host, joining)?;
            }
        }
        for spec in &playbook.finish {
            for h in who.on(&spec.on) {
                self.step(spec, h, Phase::Finish)?;
            }
        }
        Ok(())
    }

    fn step(&mut self, spec: &StepSpec, host: &Node, phase: Phase) -> Result<(), PlanError> {
        let id = format!("{}@{}", spec.id, host.name);
        let action = self.action(spec, host, &id)?;
        if self.joined_up(spec, &format!("@{}", host.name), &action) {
            return Ok(());
        }
        self.steps.push(Step {
            id,
            host: host.name.clone(),
            phase,
            title: spec.title.clone().unwrap_or_else(|| spec.id.clone()),
            action,
            after: spec.after.clone(),
        });
        Ok(())
    }

    /// A `compose_up` step `together_with` an earlier one that runs on the same host in the
    /// same dir (the id that step has there: its playbook id and `suffix`): its services join
    /// that step's compose call (and its title that step's), and it adds no step of its own.
    /// Whether it did.
    fn joined_up(&mut self, spec: &StepSpec, suffix: &str, action: &Action) -> bool {
        let Some(with) = spec
            .compose_up
            .as_ref()
            .and_then(|u| u.together_with.as_ref())
        else {
            return false;
        };
        let Action::ComposeUp {
            dir,
            services,
            command,
        } = action
        else {
            return false;
        };
        let target = format!("{with}{suffix}");
        let Some(into) = self.steps.iter_mut().find(|st| st.id == target) else {
            return false;
        };
        let Action::ComposeUp {
            dir: into_dir,
            services: into_services,
            command: into_command,
        } = &mut into.action
        else {
            return false;
        };
        if into_dir != dir {
            return false;
        }
        // `cd … && COMPOSE up -d NAMES`: the names after `up -d` (none: all of the project's).
        let names = |run: &str| -> Vec<String> {
            let after = run.split(" up -d").nth(1).unwrap_or("");
            after.split_whitespace().map(str::to_string).collect()
        };
        let mine = names(&command.run);
        // Either step starting every service makes the call start every service.
        let all = services.is_empty() || names(&into_command.run).is_empty();
        if all {
            into_command.run = match command.run.find(" up -d") {
                Some(i) => command.run[..i + 6].to_string(),
                None => command.run.clone(),
            };
        }
        // Its selectors join the other step's (what the step checks of them follows them); its
        // names follow that step's, in the same order.
        for (i, sel) in services.iter().enumerate() {
            if !into_services.contains(sel) {
                into_services.push(sel.clone());
                if let (false, Some(name)) = (all, mine.get(i)) {
                    into_command.run.push(' ');
                    into_command.run.push_str(name);
                }
            }
        }
        let title = spec.title.clone().unwrap_or_else(|| spec.id.clone());
        into.title = format!("{}; {title}", into.title);
        true
    }

    fn join_step(&mut self, spec: &StepSpec, host: &Node, joining: &Node) -> Result<(), PlanError> {
        let suffix = if host.name == joining.name {
            format!("@{}", host.name)
        } else {
            format!("[{}]@{}", joining.name, host.name)
        };
        let id = format!("{}{suffix}", spec.id);
        let action = self.action(spec, host, &id)?;
        if self.joined_up(spec, &suffix, &action) {
            return Ok(());
        }
        self.steps.push(Step {
            id,
            host: host.name.clone(),
            phase: Phase::Join,
            title: spec.title.clone().unwrap_or_else(|| spec.id.clone()),
            action,
            after: spec.after.clone(),
        });
        Ok(())
    }

    fn action(&self, spec: &StepSpec, host: &Node, id: &str) -> Result<Action, PlanError> {
        let r = self.render(host, id)?;
        let spec = spec
            .action()
            .map_err(|_| r.fail("the step has no single action".into()))?;
        Ok(match spec {
            ActionSpec::Preflight => Action::Preflight {
                checks: self.preflight_checks(host),
            },
            ActionSpec::Lock(p) => Action::Lock {
                path: r.str(&p.path)?,
            },
            ActionSpec::Unlock(p) => Action::Unlock {
                path: r.str(&p.path)?,
            },
            ActionSpec::Mkdir(m) => r.mkdir(m)?,
            ActionSpec::Template(t) => r.template(t)?,
            ActionSpec::NginxConf(t) => r.nginx_conf(t)?,
            ActionSpec::ComposeEnv(e) => r.compose_env(e)?,
            ActionSpec::ComposeService(s) => r.compose_service(s)?,
            ActionSpec::PrometheusJob(p) => r.prometheus_job(p)?,
            ActionSpec::ComposeUp(u) => r.compose_up(u)?,
            ActionSpec::ComposeCreate(c) => {
                let dir = r.str(&c.dir)?;
                Action::ComposeCreate {
                    command: r.docker(&dir, "up --no-start"),
                    dir,
                }
            }
            ActionSpec::ComposeSignal(s) => r.compose_signal(s)?,
            ActionSpec::WaitHealth(w) => Action::WaitHealth {
                address: r.str(&w.address)?,
                path: r.str(&w.path)?,
                timeout_secs: w.timeout_secs,
            },
            ActionSpec::WaitJoined(w) => r.wait_joined(w)?,
            ActionSpec::Command(c) => r.command(c)?,
        })
    }

    /// What renders a step's strings and templates for `host`.
    fn render<'r>(&'r self, host: &'r Node, id: &'r str) -> Result<Render<'r>, PlanError> {
        let facts = self.req.facts.get(&host.name);
        let compose = facts
            .and_then(|f| f.compose.clone())
            .or_else(|| self.inv.compose_command.program().map(str::to_string))
            .unwrap_or_else(|| COMPOSE_PLACEHOLDER.to_string());
        let mut r = Render {
            tera: self.tera,
            host,
            id,
            ctx: tera::Context::new(),
            facts,
            compose,
        };
        r.ctx = tera::Context::from_serialize(&Ctx {
            cluster: &self.inv.cluster,
            image: &self.inv.image,
            node: node_view(host),
            gateway: self.gateway,
            seed: self.seed,
            members: self.member_views,
            added: self.added_views,
            extra_env: &self.req.extra_env,
        })
        .map_err(|e| r.fail(format!("cannot build the template context: {e}")))?;
        Ok(r)
    }

    /// What preflight checks on a host, by the roles the host has in this run.
    fn preflight_checks(&self, host: &Node) -> Vec<Check> {
        let mut c = Checks(Vec::new());
        self.host_checks(host, &mut c);
        if self.added.iter().any(|n| n.name == host.name) {
            self.new_node_checks(host, &mut c);
        }
        let is_member = self.members.iter().any(|n| n.name == host.name);
        let is_gateway = host.name == self.inv.gateway.node;
        if is_member {
            self.member_checks(host, &mut c);
        }
        if is_member || is_gateway {
            c.add(
                "edits",
                "every file wkctl edits here (compose environment, nginx.conf upstreams, prometheus.yml) can be edited without touching anything else; the edits are tried on the files as they are".into(),
            );
        } else {
            c.add(
                "edits",
                "every file wkctl writes here renders from its template, tried before anything changes (a file already there is backed up first)".into(),
            );
        }
        if host.name == self.seed.name {
            self.seed_checks(host, &mut c);
        }
        if is_gateway {
            self.gateway_checks(&mut c);
        }
        c.0
    }

    /// Every host: SSH, sudo, compose, the Docker daemon, the images.
    fn host_checks(&self, host: &Node, c: &mut Checks) {
        c.add(
            "ssh",
            format!(
                "log in as {} on {}",
                host.ssh.user.as_deref().unwrap_or("(from ~/.ssh/config)"),
                host_port(&host.ssh.host, host.ssh.port)
            ),
        );
        let through = match host.ssh.sudo {
            SudoMode::None => "as the SSH user",
            SudoMode::Passwordless => {
                c.add("sudo", "`sudo -n true` succeeds (no password asked)".into());
                "through sudo"
            }
            SudoMode::Password => {
                c.add("sudo", "sudo accepts the password given on stdin".into());
                "through sudo"
            }
        };
        c.add(
            "compose",
            match self.inv.compose_command {
                ComposeCommand::Auto => format!(
                    "a compose command exists {through}, as the steps call it (`docker compose` v2, else `docker-compose`)"
                ),
                other => format!(
                    "`{} version` runs {through}",
                    other.program().unwrap_or_default()
                ),
            },
        );
        c.add(
            "docker",
            format!("the Docker daemon answers `docker version` {through}"),
        );
        c.add(
            "images",
            "every image this host's compose files name is present (a missing one is pulled before anything changes)".into(),
        );
    }

    fn new_node_checks(&self, host: &Node, c: &mut Checks) {
        c.add("install-dir", format!("{} is absent or holds no WuKongIM data: no cluster config (a data dir with one never re-joins), at most what a failed first boot left", host.install_dir));
        let ports: Vec<String> = NODE_PORTS.iter().map(|p| p.to_string()).collect();
        c.add("ports-free", format!("ports {} are free", ports.join(", ")));
        c.add(
            "reach-seed",
            format!(
                "this host reaches the seed's cluster port {}",
                self.seed
                    .spec
                    .split_once('@')
                    .map(|(_, a)| a)
                    .unwrap_or_default()
            ),
        );
        c.add(
            "reach-members",
            "this host reaches every member's cluster port 11110 and API port 5001 (raft goes over each sender's own connection; the admin UI's node page asks every node's API), and those of every other node this run adds (refused counts there: nothing listens yet)".into(),
        );
    }

    fn member_checks(&self, host: &Node, c: &mut Checks) {
        c.add(
            "health",
            format!(
                "/health on {} answers 200, and the cluster works on live signals: a config leader, this node online, no slot leaderless or moving",
                host_port(&host.internal_address, PORT_API)
            ),
        );
        c.add(
            "reach-to-new",
            "this host reaches every new node's cluster port 11110 and API port 5001 (refused counts: nothing listens there yet), and every other member's API port 5001".into(),
        );
        c.add(
            "data-mount",
            "the WuKongIM service bind-mounts a host directory at /root/wukongim, and no wk.yaml there moves rootDir away (else recreating it could lose or hide its data)".into(),
        );
        c.add("service", format!("{}/docker-compose.yml has a service running image …/wukongim (found by image, whatever its name)", host.install_dir));
        c.add(
            "image-tag",
            format!("the running image tag matches {}", self.inv.image),
        );
    }

    fn seed_checks(&self, host: &Node, c: &mut Checks) {
        c.add(
            "cluster-addr",
            format!(
                "/cluster/simpleNodes shows {}'s cluster_addr as {} (WuKongIM fixes it at first boot)",
                host.name,
                host_port(&host.internal_address, PORT_CLUSTER)
            ),
        );
        let ids: Vec<String> = self.added.iter().map(|n| n.id.to_string()).collect();
        c.add(
            "ids-free",
            format!("no member of the cluster has id {}", ids.join(" or ")),
        );
        c.add("settings", "the seed's cluster-wide WuKongIM settings (WK_MODE, WK_TOKENAUTHON, WK_JWT_SECRET, webhooks, data sources, the slot count, ...: every WK_* and wk.yaml setting but the node-specific ones) go to the new nodes, and every member has the same ones; WK_MANAGERTOKEN, if set, is sent as the `token` header, never added".into());
        c.add("versions", "every member runs one WuKongIM build (`app_version` from /cluster/nodes, not the image tag), v2.1.2 or later; each new node is held to it once it answers (--allow-version-mix lets a mix go on)".into());
    }

    fn gateway_checks(&self, c: &mut Checks) {
        for n in self.added {
            c.add(
                "reach-new",
                format!(
                    "this host reaches {}'s API {}",
                    n.name,
                    host_port(&n.internal_address, PORT_API)
                ),
            );
        }
        c.add(
            "prometheus",
            format!("{} exists and parses", self.gateway.prometheus_path),
        );
        let p = self.inv.gateway.ports;
        c.add(
            "lb-ports",
            format!(
                "load-balancer ports {}, {}, {}, {}, {} are free or already nginx's",
                p.api, p.tcp, p.ws, p.manager, p.demo
            ),
        );
    }
}

/// The checks a host's preflight step lists.
struct Checks(Vec<Check>);

impl Checks {
    fn add(&mut self, id: &str, description: String) {
        self.0.push(Check {
            id: id.into(),
            description,
        });
    }
}

/// A step's values rendered for one host: its strings and templates (with the tera context of
/// the host), its compose commands (with the host's compose program and sudo).
struct Render<'r> {
    tera: &'r tera::Tera,
    host: &'r Node,
    id: &'r str,
    ctx: tera::Context,
    facts: Option<&'r HostFacts>,
    compose: String,
}

impl Render<'_> {
    fn fail(&self, message: String) -> PlanError {
        PlanError::Step {
            step: self.id.to_string(),
            host: self.host.name.clone(),
            message,
        }
    }

    fn str(&self, s: &str) -> Result<String, PlanError> {
        self.tera
            .render_str(s, &self.ctx, false)
            .map_err(|e| self.fail(format!("cannot render `{s}`: {}", error_chain(&e))))
    }

    fn file(&self, name: &str) -> Result<String, PlanError> {
        self.tera.render(name, &self.ctx).map_err(|e| {
            self.fail(format!(
                "cannot render template {name}: {}",
                error_chain(&e)
            ))
        })
    }

    fn mode(&self, m: Option<&str>, default: u32) -> Result<u32, PlanError> {
        parse_mode(m, default).map_err(|e| self.fail(e))
    }

    /// The compose service a selector names on this host (the WuKongIM service as the host's
    /// facts found it by image). It goes into a shell command, so it must be a name compose
    /// itself accepts (letters, digits, `_`, `.`, `-`, not first): a name read from a host's
    /// compose file is the host's word, not ours.
    fn service_name(&self, sel: &ServiceSelector) -> Result<String, PlanError> {
        let name = match sel {
            ServiceSelector::Name(n) => n.clone(),
            ServiceSelector::ImageName(_) => self
                .facts
                .and_then(|f| f.wukongim_service.clone())
                .unwrap_or_else(|| SERVICE_PLACEHOLDER.to_string()),
        };
        if name != SERVICE_PLACEHOLDER && !is_service_name(&name) {
            return Err(self.fail(format!(
                "the compose service name `{name}` is not one compose accepts (letters, digits, `_`, `.`, `-`); wkctl does not put it in a command. Rename the service in {}/docker-compose.yml",
                self.host.install_dir
            )));
        }
        Ok(name)
    }

    fn selector(&self, sel: &ServiceSelector) -> Result<ServiceSelector, PlanError> {
        Ok(match sel {
            ServiceSelector::Name(n) => ServiceSelector::Name(self.str(n)?),
            ServiceSelector::ImageName(i) => ServiceSelector::ImageName(self.str(i)?),
        })
    }

    /// `cd DIR && [sudo] COMPOSE ARGS`.
    /// A compose command in `dir`, under `flock .` (the project's directory locked): a compose
    /// call a killed run left going there ends before this one starts, and two never race to
    /// recreate one container.
    fn docker(&self, dir: &str, args: &str) -> Command {
        let sudo = self.host.ssh.sudo;
        Command {
            run: format!(
                "cd {} && {}flock . {} {}",
                shell_path(dir),
                sudo_prefix(sudo),
                self.compose,
                args
            ),
            sudo: sudo != SudoMode::None,
        }
    }

    fn mkdir(&self, m: &MkdirSpec) -> Result<Action, PlanError> {
        let path = self.str(&m.path)?;
        let mode = self.mode(m.mode.as_deref(), 0o755)?;
        Ok(Action::Mkdir {
            command: Command {
                run: format!("mkdir -p -m {mode:o} {}", shell_path(&path)),
                sudo: false,
            },
            path,
            mode,
        })
    }

    fn template(&self, t: &TemplateSpec) -> Result<Action, PlanError> {
        let content = self.file(&t.src)?;
        let dest = self.str(&t.dest)?;
        if dest.ends_with(".yml") || dest.ends_with(".yaml") {
            check_yaml(&content).map_err(|e| {
                self.fail(format!(
                    "template {} renders YAML that does not parse: {e}",
                    t.src
                ))
            })?;
        }
        Ok(Action::Template {
            src: t.src.clone(),
            dest,
            mode: self.mode(t.mode.as_deref(), 0o644)?,
            content,
        })
    }

    fn nginx_conf(&self, t: &NginxConfSpec) -> Result<Action, PlanError> {
        let content = self.file(&t.src)?;
        let upstreams = wk_compose::nginx::upstream_servers(&content).map_err(|e| {
            self.fail(format!(
                "template {} renders an nginx.conf that does not parse: {e}",
                t.src
            ))
        })?;
        if upstreams.is_empty() {
            return Err(self.fail(format!("template {} renders no `upstream` block", t.src)));
        }
        Ok(Action::NginxConf {
            src: t.src.clone(),
            file: self.str(&t.file)?,
            mode: self.mode(t.mode.as_deref(), 0o644)?,
            content,
            upstreams,
        })
    }

    fn compose_env(&self, e: &ComposeEnvSpec) -> Result<Action, PlanError> {
        let mut env = Vec::new();
        for (k, v) in &e.env.0 {
            if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(self.fail(format!("`{k}` is not an environment variable name")));
            }
            env.push((k.clone(), self.str(v)?));
        }
        Ok(Action::ComposeEnv {
            file: self.str(&e.file)?,
            service: self.selector(&e.service)?,
            env,
        })
    }

    fn compose_service(&self, s: &ComposeServiceSpec) -> Result<Action, PlanError> {
        let content = self.file(&s.src)?;
        check_yaml_mapping(&content).map_err(|e| {
            self.fail(format!(
                "template {} must render one YAML mapping (the service's body): {e}",
                s.src
            ))
        })?;
        Ok(Action::ComposeService {
            file: self.str(&s.file)?,
            service: self.str(&s.service)?,
            content,
            if_missing: s.if_missing,
        })
    }

    fn prometheus_job(&self, p: &PrometheusJobSpec) -> Result<Action, PlanError> {
        let content = self.file(&p.src)?;
        let jobs = parse_jobs(&content).map_err(|e| {
            self.fail(format!(
                "template {} must render a YAML list of scrape jobs: {e}",
                p.src
            ))
        })?;
        Ok(Action::PrometheusJob {
            file: self.str(&p.file)?,
            jobs,
            content,
        })
    }

    fn compose_up(&self, u: &ComposeUpSpec) -> Result<Action, PlanError> {
        let dir = self.str(&u.dir)?;
        let services: Vec<ServiceSelector> = u
            .services
            .iter()
            .map(|s| self.selector(s))
            .collect::<Result<_, _>>()?;
        let mut args = "up -d".to_string();
        for s in &services {
            args.push(' ');
            args.push_str(&self.service_name(s)?);
        }
        Ok(Action::ComposeUp {
            command: self.docker(&dir, &args),
            dir,
            services,
        })
    }

    fn compose_signal(&self, s: &ComposeSignalSpec) -> Result<Action, PlanError> {
        let dir = self.str(&s.dir)?;
        let service = self.selector(&s.service)?;
        let signal = self.str(&s.signal)?;
        if signal.is_empty() || !signal.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(self.fail(format!("`{signal}` is not a signal name")));
        }
        Ok(Action::ComposeSignal {
            command: self.docker(
                &dir,
                &format!("kill -s {signal} {}", self.service_name(&service)?),
            ),
            dir,
            service,
            signal,
        })
    }

    fn wait_joined(&self, w: &WaitJoinedSpec) -> Result<Action, PlanError> {
        let raw = self.str(&w.node_id)?;
        let node_id = raw
            .trim()
            .parse::<u16>()
            .map_err(|_| self.fail(format!("node_id renders as `{raw}`, not a node id")))?;
        Ok(Action::WaitJoined {
            node_id,
            timeout_secs: w.timeout_secs,
        })
    }

    fn command(&self, c: &CommandSpec) -> Result<Action, PlanError> {
        let sudo = self.host.ssh.sudo;
        let mk = |run: String| Command {
            run: if c.sudo {
                format!("{}{}", sudo_prefix(sudo), run)
            } else {
                run
            },
            sudo: c.sudo && sudo != SudoMode::None,
        };
        Ok(Action::Command {
            command: mk(self.str(&c.run)?),
            undo: c.undo.as_deref().map(|u| self.str(u)).transpose()?.map(mk),
        })
    }
}

/// Compose's rule for a service name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn is_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub fn sudo_prefix(mode: SudoMode) -> &'static str {
    match mode {
        SudoMode::None => "",
        SudoMode::Passwordless => "sudo -n ",
        // -k: sudo always reads the password line, which the engine puts first on stdin.
        SudoMode::Password => "sudo -k -S -p '' ",
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A loose YAML value, enough to check what templates render.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Loose {
    Map(BTreeMap<String, Loose>),
    List(Vec<Loose>),
    Scalar(Option<LooseScalar>),
}

#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum LooseScalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl LooseScalar {
    fn as_string(&self) -> String {
        match self {
            LooseScalar::Bool(b) => b.to_string(),
            LooseScalar::Int(i) => i.to_string(),
            LooseScalar::Float(f) => f.to_string(),
            LooseScalar::Str(s) => s.clone(),
        }
    }
}

fn yaml_err(e: serde_saphyr::Error) -> String {
    crate::diag::from_yaml_error("(rendered)", &e).to_string()
}

fn check_yaml(text: &str) -> Result<(), String> {
    serde_saphyr::from_str::<Loose>(text)
        .map(|_| ())
        .map_err(yaml_err)
}

fn check_yaml_mapping(text: &str) -> Result<(), String> {
    match serde_saphyr::from_str::<Loose>(text).map_err(yaml_err)? {
        Loose::Map(_) => Ok(()),
        _ => Err("it is not a mapping".into()),
    }
}

fn parse_jobs(text: &str) -> Result<Vec<PromJob>, String> {
    let Loose::List(items) = serde_saphyr::from_str::<Loose>(text).map_err(yaml_err)? else {
        return Err("it is not a list".into());
    };
    if items.is_empty() {
        return Err("it is empty".into());
    }
    let mut jobs = Vec::new();
    for item in items {
        let Loose::Map(m) = item else {
            return Err("an entry is not a mapping".into());
        };
        let Some(Loose::Scalar(Some(name))) = m.get("job_name") else {
            return Err("an entry has no job_name".into());
        };
        let mut targets = Vec::new();
        let mut id_label = None;
        if let Some(Loose::List(cfgs)) = m.get("static_configs") {
            for cfg in cfgs {
                let Loose::Map(cfg) = cfg else { continue };
                if let Some(Loose::List(ts)) = cfg.get("targets") {
                    for t in ts {
                        if let Loose::Scalar(Some(t)) = t {
                            targets.push(t.as_string());
                        }
                    }
                }
                if let Some(Loose::Map(labels)) = cfg.get("labels") {
                    if let Some(Loose::Scalar(Some(id))) = labels.get("id") {
                        id_label = Some(id.as_string());
                    }
                }
            }
        }
        if targets.is_empty() {
            return Err(format!("job {} has no target", name.as_string()));
        }
        jobs.push(PromJob {
            job_name: name.as_string(),
            targets,
            id_label,
        });
    }
    Ok(jobs)
}
