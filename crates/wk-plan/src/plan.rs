//! Building the plan: playbook + inventory + templates give an ordered list of concrete steps.
//!
//! Every step has its host, its inputs fully rendered, and an id (`<playbook step>@<host>`) that
//! stays the same when the plan is built again from the same inputs.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::inventory::{
    host_port, ComposeCommand, Inventory, Node, Role, SudoMode, NODE_PORTS, PORT_API, PORT_CLUSTER,
    PORT_DEMO, PORT_MANAGER, PORT_TCP, PORT_WS,
};
use crate::playbook::{ActionSpec, On, Playbook, ServiceSelector, StepSpec};
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRef {
    pub name: String,
    pub id: u16,
    pub internal_address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Prepare,
    Join,
    Finish,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `<playbook step id>@<host>`: the same every time the plan is built from the same inputs.
    pub id: String,
    pub host: String,
    pub phase: Phase,
    pub title: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub id: String,
    pub description: String,
}

/// A shell command as it will run on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    pub run: String,
    /// Whether it runs through sudo (with the password on stdin in `password` mode).
    pub sudo: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromJob {
    pub job_name: String,
    pub targets: Vec<String>,
    pub id_label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

    // Who is in the cluster before and after.
    let mut assumptions = Vec::new();
    let member_names: Vec<String> = match &req.members {
        Some(m) => m.clone(),
        None => {
            let names: Vec<String> = inv
                .wukongim_nodes()
                .filter(|n| !req.add.contains(&n.name))
                .map(|n| n.name.clone())
                .collect();
            assumptions.push(format!(
                "the cluster was not asked who its members are: taking {} as already deployed and joined",
                names.join(", ")
            ));
            names
        }
    };
    let seed_name = req.seed.as_ref().unwrap_or(&inv.seed);
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
    let members: Vec<&Node> = inv
        .nodes
        .iter()
        .filter(|n| member_names.contains(&n.name))
        .collect();
    let added: Vec<&Node> = req
        .add
        .iter()
        .map(|a| inv.node(a).expect("checked by check_additions"))
        .collect();
    if let Some(n) = added.iter().find(|n| member_names.contains(&n.name)) {
        return Err(PlanError::Step {
            step: "plan".into(),
            host: n.name.clone(),
            message: format!(
                "`{}` is already a member of the cluster; there is nothing to add",
                n.name
            ),
        });
    }
    let after: Vec<&Node> = inv
        .nodes
        .iter()
        .filter(|n| member_names.contains(&n.name) || req.add.contains(&n.name))
        .collect();

    let mut warnings = Vec::new();
    if after.len() == 2 {
        warnings.push(
            "a two-node cluster survives no node loss: every slot's quorum needs both nodes; \
             three nodes is the minimum for surviving one (WuKongIM #282)"
                .to_string(),
        );
    }
    if after.len() > 2 && after.len().is_multiple_of(2) {
        warnings.push(format!(
            "{} nodes tolerate no more failures than {}; an odd count is the better size",
            after.len(),
            after.len() - 1
        ));
    }

    let gw_node = inv.gateway_node();
    let seed_node = inv.node(seed_name).ok_or_else(|| PlanError::Step {
        step: "plan".into(),
        host: seed_name.clone(),
        message: format!("the seed `{seed_name}` is not in {}", inv.file),
    })?;
    let ports = inv.gateway.ports;
    let ext = &inv.gateway.external_address;
    let gateway = GatewayView {
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
    };
    let seed = SeedView {
        name: seed_node.name.clone(),
        id: seed_node.id,
        spec: format!(
            "{}@{}",
            seed_node.id,
            host_port(&seed_node.internal_address, PORT_CLUSTER)
        ),
    };
    let member_views: Vec<NodeView> = after.iter().map(|n| node_view(n)).collect();
    let added_views: Vec<NodeView> = added.iter().map(|n| node_view(n)).collect();

    let mut b = Builder {
        inv,
        tera: &tera,
        req,
        gateway: &gateway,
        seed: &seed,
        member_views: &member_views,
        added_views: &added_views,
        members: &members,
        added: &added,
        steps: Vec::new(),
    };
    let involved: Vec<&Node> = inv
        .nodes
        .iter()
        .filter(|n| {
            member_names.contains(&n.name)
                || req.add.contains(&n.name)
                || n.name == inv.gateway.node
        })
        .collect();
    for spec in &playbook.steps {
        let hosts: Vec<&Node> = match spec.on {
            On::Gateway => vec![gw_node],
            On::Seed => vec![seed_node],
            On::Members => members.clone(),
            On::New => added.clone(),
            On::Involved => involved.clone(),
            On::Joining => unreachable!("checked by Playbook::parse"),
        };
        for h in hosts {
            b.step(spec, h, Phase::Prepare)?;
        }
    }
    for joining in &added {
        for spec in &playbook.join {
            let host = match spec.on {
                On::Joining => *joining,
                On::Gateway => gw_node,
                On::Seed => seed_node,
                other => {
                    return Err(PlanError::Step {
                        step: spec.id.clone(),
                        host: joining.name.clone(),
                        message: format!("`on: {other:?}` is not allowed in the join section"),
                    })
                }
            };
            // A join-section step runs once per joining node; its id names both.
            b.join_step(spec, host, joining)?;
        }
    }
    for spec in &playbook.finish {
        let hosts: Vec<&Node> = match spec.on {
            On::Gateway => vec![gw_node],
            On::Seed => vec![seed_node],
            On::Members => members.clone(),
            On::New => added.clone(),
            On::Involved => involved.clone(),
            On::Joining => unreachable!("checked by Playbook::parse"),
        };
        for h in hosts {
            b.step(spec, h, Phase::Finish)?;
        }
    }
    let steps = b.steps;

    let add_list = req.add.join(",");
    let member_list = member_names.join(",");
    let mut parts: Vec<(&str, &str)> = vec![
        ("inventory", inventory_text),
        ("playbook", &sources.playbook),
        ("add", &add_list),
        ("members", &member_list),
        ("seed", &seed_node.name),
    ];
    for (name, text) in &sources.templates {
        parts.push((name, text));
    }
    let extra = req.extra_env.join("\n");
    parts.push(("extra_env", &extra));

    Ok(Plan {
        cluster: inv.cluster.clone(),
        playbook: playbook.name.clone(),
        fingerprint: fingerprint(&parts),
        adding: added.iter().map(|n| node_ref(n)).collect(),
        members_before: members.iter().map(|n| node_ref(n)).collect(),
        members_after: after.iter().map(|n| node_ref(n)).collect(),
        gateway: inv.gateway.node.clone(),
        seed: seed_node.name.clone(),
        assumptions,
        warnings,
        steps,
    })
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
    fn step(&mut self, spec: &StepSpec, host: &Node, phase: Phase) -> Result<(), PlanError> {
        let id = format!("{}@{}", spec.id, host.name);
        let action = self.action(spec, host, &id)?;
        self.steps.push(Step {
            id,
            host: host.name.clone(),
            phase,
            title: spec.title.clone().unwrap_or_else(|| spec.id.clone()),
            action,
        });
        Ok(())
    }

    fn join_step(&mut self, spec: &StepSpec, host: &Node, joining: &Node) -> Result<(), PlanError> {
        let id = if host.name == joining.name {
            format!("{}@{}", spec.id, host.name)
        } else {
            format!("{}[{}]@{}", spec.id, joining.name, host.name)
        };
        let action = self.action(spec, host, &id)?;
        self.steps.push(Step {
            id,
            host: host.name.clone(),
            phase: Phase::Join,
            title: spec.title.clone().unwrap_or_else(|| spec.id.clone()),
            action,
        });
        Ok(())
    }

    fn action(&self, spec: &StepSpec, host: &Node, id: &str) -> Result<Action, PlanError> {
        let fail = |message: String| PlanError::Step {
            step: id.to_string(),
            host: host.name.clone(),
            message,
        };
        let ctx = tera::Context::from_serialize(&Ctx {
            cluster: &self.inv.cluster,
            image: &self.inv.image,
            node: node_view(host),
            gateway: self.gateway,
            seed: self.seed,
            members: self.member_views,
            added: self.added_views,
            extra_env: &self.req.extra_env,
        })
        .map_err(|e| fail(format!("cannot build the template context: {e}")))?;
        let render = |s: &str| -> Result<String, PlanError> {
            self.tera
                .render_str(s, &ctx, false)
                .map_err(|e| fail(format!("cannot render `{s}`: {}", error_chain(&e))))
        };
        let render_file = |name: &str| -> Result<String, PlanError> {
            self.tera.render(name, &ctx).map_err(|e| {
                fail(format!(
                    "cannot render template {name}: {}",
                    error_chain(&e)
                ))
            })
        };
        let facts = self.req.facts.get(&host.name);
        let sudo = host.ssh.sudo;
        let compose = facts
            .and_then(|f| f.compose.clone())
            .or_else(|| self.inv.compose_command.program().map(str::to_string))
            .unwrap_or_else(|| COMPOSE_PLACEHOLDER.to_string());
        let service_name = |sel: &ServiceSelector| -> String {
            match sel {
                ServiceSelector::Name(n) => n.clone(),
                ServiceSelector::ImageName(_) => facts
                    .and_then(|f| f.wukongim_service.clone())
                    .unwrap_or_else(|| SERVICE_PLACEHOLDER.to_string()),
            }
        };
        let render_selector = |sel: &ServiceSelector| -> Result<ServiceSelector, PlanError> {
            Ok(match sel {
                ServiceSelector::Name(n) => ServiceSelector::Name(render(n)?),
                ServiceSelector::ImageName(i) => ServiceSelector::ImageName(render(i)?),
            })
        };
        let docker = |dir: &str, args: &str| Command {
            run: format!(
                "cd {} && {}{} {}",
                shell_path(dir),
                sudo_prefix(sudo),
                compose,
                args
            ),
            sudo: sudo != SudoMode::None,
        };

        let action = match spec
            .action()
            .map_err(|_| fail("the step has no single action".into()))?
        {
            ActionSpec::Preflight => Action::Preflight {
                checks: self.preflight_checks(host),
            },
            ActionSpec::Lock(p) => Action::Lock {
                path: render(&p.path)?,
            },
            ActionSpec::Unlock(p) => Action::Unlock {
                path: render(&p.path)?,
            },
            ActionSpec::Mkdir(m) => {
                let path = render(&m.path)?;
                let mode = parse_mode(m.mode.as_deref(), 0o755).map_err(fail)?;
                Action::Mkdir {
                    command: Command {
                        run: format!("mkdir -p -m {mode:o} {}", shell_path(&path)),
                        sudo: false,
                    },
                    path,
                    mode,
                }
            }
            ActionSpec::Template(t) => {
                let content = render_file(&t.src)?;
                let dest = render(&t.dest)?;
                if dest.ends_with(".yml") || dest.ends_with(".yaml") {
                    check_yaml(&content).map_err(|e| {
                        fail(format!(
                            "template {} renders YAML that does not parse: {e}",
                            t.src
                        ))
                    })?;
                }
                Action::Template {
                    src: t.src.clone(),
                    dest,
                    mode: parse_mode(t.mode.as_deref(), 0o644).map_err(fail)?,
                    content,
                }
            }
            ActionSpec::NginxConf(t) => {
                let content = render_file(&t.src)?;
                let upstreams = wk_compose::nginx::upstream_servers(&content).map_err(|e| {
                    fail(format!(
                        "template {} renders an nginx.conf that does not parse: {e}",
                        t.src
                    ))
                })?;
                if upstreams.is_empty() {
                    return Err(fail(format!(
                        "template {} renders no `upstream` block",
                        t.src
                    )));
                }
                Action::NginxConf {
                    src: t.src.clone(),
                    file: render(&t.file)?,
                    mode: parse_mode(t.mode.as_deref(), 0o644).map_err(fail)?,
                    content,
                    upstreams,
                }
            }
            ActionSpec::ComposeEnv(e) => {
                let mut env = Vec::new();
                for (k, v) in &e.env.0 {
                    if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(fail(format!("`{k}` is not an environment variable name")));
                    }
                    env.push((k.clone(), render(v)?));
                }
                Action::ComposeEnv {
                    file: render(&e.file)?,
                    service: render_selector(&e.service)?,
                    env,
                }
            }
            ActionSpec::ComposeService(s) => {
                let content = render_file(&s.src)?;
                check_yaml_mapping(&content).map_err(|e| {
                    fail(format!(
                        "template {} must render one YAML mapping (the service's body): {e}",
                        s.src
                    ))
                })?;
                Action::ComposeService {
                    file: render(&s.file)?,
                    service: render(&s.service)?,
                    content,
                    if_missing: s.if_missing,
                }
            }
            ActionSpec::PrometheusJob(p) => {
                let content = render_file(&p.src)?;
                let jobs = parse_jobs(&content).map_err(|e| {
                    fail(format!(
                        "template {} must render a YAML list of scrape jobs: {e}",
                        p.src
                    ))
                })?;
                Action::PrometheusJob {
                    file: render(&p.file)?,
                    jobs,
                    content,
                }
            }
            ActionSpec::ComposeUp(u) => {
                let dir = render(&u.dir)?;
                let services: Vec<ServiceSelector> = u
                    .services
                    .iter()
                    .map(&render_selector)
                    .collect::<Result<_, _>>()?;
                let mut args = "up -d".to_string();
                for s in &services {
                    args.push(' ');
                    args.push_str(&service_name(s));
                }
                Action::ComposeUp {
                    command: docker(&dir, &args),
                    dir,
                    services,
                }
            }
            ActionSpec::ComposeSignal(s) => {
                let dir = render(&s.dir)?;
                let service = render_selector(&s.service)?;
                let signal = render(&s.signal)?;
                if signal.is_empty() || !signal.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(fail(format!("`{signal}` is not a signal name")));
                }
                Action::ComposeSignal {
                    command: docker(
                        &dir,
                        &format!("kill -s {signal} {}", service_name(&service)),
                    ),
                    dir,
                    service,
                    signal,
                }
            }
            ActionSpec::WaitHealth(w) => Action::WaitHealth {
                address: render(&w.address)?,
                path: render(&w.path)?,
                timeout_secs: w.timeout_secs,
            },
            ActionSpec::WaitJoined(w) => {
                let raw = render(&w.node_id)?;
                let node_id = raw
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| fail(format!("node_id renders as `{raw}`, not a node id")))?;
                Action::WaitJoined {
                    node_id,
                    timeout_secs: w.timeout_secs,
                }
            }
            ActionSpec::Command(c) => {
                let mk = |run: String| Command {
                    run: if c.sudo {
                        format!("{}{}", sudo_prefix(sudo), run)
                    } else {
                        run
                    },
                    sudo: c.sudo && sudo != SudoMode::None,
                };
                Action::Command {
                    command: mk(render(&c.run)?),
                    undo: c.undo.as_deref().map(render).transpose()?.map(mk),
                }
            }
        };
        Ok(action)
    }

    /// What preflight checks on a host, by the roles the host has in this run.
    fn preflight_checks(&self, host: &Node) -> Vec<Check> {
        let inv = self.inv;
        let is_new = self.added.iter().any(|n| n.name == host.name);
        let is_member = self.members.iter().any(|n| n.name == host.name);
        let is_gateway = host.name == inv.gateway.node;
        let is_seed = host.name == self.seed.name;
        let mut checks = Vec::new();
        let mut c = |id: &str, d: String| {
            checks.push(Check {
                id: id.into(),
                description: d,
            })
        };
        c(
            "ssh",
            format!(
                "log in as {} on {}",
                host.ssh.user.as_deref().unwrap_or("(from ~/.ssh/config)"),
                host_port(&host.ssh.host, host.ssh.port)
            ),
        );
        match host.ssh.sudo {
            SudoMode::None => c("docker", "the SSH user may run docker without sudo".into()),
            SudoMode::Passwordless => {
                c("sudo", "`sudo -n true` succeeds (no password asked)".into())
            }
            SudoMode::Password => c("sudo", "sudo accepts the password given on stdin".into()),
        }
        c(
            "compose",
            match inv.compose_command {
                ComposeCommand::Auto => {
                    "a compose command exists (`docker compose` v2, else `docker-compose`)".into()
                }
                other => format!("`{} version` runs", other.program().unwrap_or_default()),
            },
        );
        if is_new {
            c("install-dir", format!("{} is absent or holds no WuKongIM data (a data dir with a cluster config never re-joins)", host.install_dir));
            let ports: Vec<String> = NODE_PORTS.iter().map(|p| p.to_string()).collect();
            c("ports-free", format!("ports {} are free", ports.join(", ")));
            c(
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
        }
        if is_member {
            c(
                "health",
                format!(
                    "/health on {} answers 200",
                    host_port(&host.internal_address, PORT_API)
                ),
            );
            c("service", format!("{}/docker-compose.yml has a service running image …/wukongim (found by image, whatever its name)", host.install_dir));
            c(
                "image-tag",
                format!("the running image tag matches {}", inv.image),
            );
        }
        if is_member || is_gateway {
            c(
                "edits",
                "every file wkctl edits here (compose environment, nginx.conf upstreams, prometheus.yml) can be edited without touching anything else; the edits are tried on the files as they are".into(),
            );
        }
        if is_seed {
            c(
                "cluster-addr",
                format!(
                    "/cluster/simpleNodes shows {}'s cluster_addr as {} (WuKongIM fixes it at first boot)",
                    host.name,
                    host_port(&host.internal_address, PORT_CLUSTER)
                ),
            );
            let ids: Vec<String> = self.added.iter().map(|n| n.id.to_string()).collect();
            c(
                "ids-free",
                format!("no member of the cluster has id {}", ids.join(" or ")),
            );
            c("jwt-secret", "WK_JWT_SECRET, if set, is carried to the new nodes; WK_MANAGERTOKEN, if set, is sent as the `token` header".into());
        }
        if is_gateway {
            for n in self.added {
                c(
                    "reach-new",
                    format!(
                        "this host reaches {}'s API {}",
                        n.name,
                        host_port(&n.internal_address, PORT_API)
                    ),
                );
            }
            c(
                "prometheus",
                format!("{} exists and parses", self.gateway.prometheus_path),
            );
            let p = inv.gateway.ports;
            c(
                "lb-ports",
                format!(
                    "load-balancer ports {}, {}, {}, {}, {} are free or already nginx's",
                    p.api, p.tcp, p.ws, p.manager, p.demo
                ),
            );
        }
        checks
    }
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
