//! The inventory (`cluster.yml`): the cluster as the operator describes it.
//!
//! Parsing happens in two passes: serde-saphyr reads the file into `Raw*` structs that keep the
//! location of every value (and rejects unknown fields and duplicate keys), then [`Inventory::parse`]
//! checks every rule and resolves defaults, collecting every problem it finds, each with
//! `file:line:col` and a fix.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};

use crate::diag::{from_yaml_error, Diagnostic, Diagnostics};

/// The image of the seed document's deployment.
pub const DEFAULT_IMAGE: &str = "registry.cn-shanghai.aliyuncs.com/wukongim/wukongim:v2";
/// The nginx image of the seed document's load balancer.
pub const DEFAULT_NGINX_IMAGE: &str = "registry.cn-shanghai.aliyuncs.com/wukongim/nginx:1.27.0";
pub const DEFAULT_INSTALL_DIR: &str = "~/wukongim";
pub const DEFAULT_PROMETHEUS_FILE: &str = "prometheus.yml";

/// WuKongIM's own ports on every node (FACTS.md).
pub const PORT_API: u16 = 5001;
pub const PORT_TCP: u16 = 5100;
pub const PORT_WS: u16 = 5200;
pub const PORT_MANAGER: u16 = 5300;
pub const PORT_DEMO: u16 = 5172;
pub const PORT_CLUSTER: u16 = 11110;
pub const PORT_PROMETHEUS: u16 = 9090;
/// Every port a WuKongIM node listens on.
pub const NODE_PORTS: [u16; 6] = [
    PORT_API,
    PORT_TCP,
    PORT_WS,
    PORT_MANAGER,
    PORT_DEMO,
    PORT_CLUSTER,
];

// ---------------------------------------------------------------------------------------------
// What the file holds, as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    cluster: Spanned<String>,
    #[serde(default)]
    ssh: Option<Spanned<RawSsh>>,
    #[serde(default)]
    install_dir: Option<Spanned<String>>,
    #[serde(default)]
    image: Option<Spanned<String>>,
    #[serde(default)]
    compose_command: Option<Spanned<String>>,
    gateway: Spanned<RawGateway>,
    #[serde(default)]
    seed: Option<Spanned<String>>,
    nodes: Spanned<Vec<Spanned<RawNode>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    #[serde(default)]
    host: Option<Spanned<String>>,
    #[serde(default)]
    user: Option<Spanned<String>>,
    #[serde(default)]
    port: Option<Spanned<i64>>,
    #[serde(default)]
    identity_files: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    jump: Option<Spanned<String>>,
    #[serde(default)]
    sudo: Option<Spanned<String>>,
    #[serde(default)]
    host_key_policy: Option<Spanned<String>>,
    #[serde(default)]
    known_hosts: Option<Spanned<String>>,
    #[serde(default)]
    keepalive_secs: Option<Spanned<i64>>,
    #[serde(default)]
    connect_timeout_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    node: Spanned<String>,
    #[serde(default)]
    external_address: Option<Spanned<String>>,
    #[serde(default)]
    ports: Option<Spanned<RawLbPorts>>,
    #[serde(default)]
    nginx_image: Option<Spanned<String>>,
    #[serde(default)]
    prometheus_url: Option<Spanned<String>>,
    #[serde(default)]
    prometheus_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLbPorts {
    #[serde(default)]
    api: Option<Spanned<i64>>,
    #[serde(default)]
    tcp: Option<Spanned<i64>>,
    #[serde(default)]
    ws: Option<Spanned<i64>>,
    #[serde(default)]
    manager: Option<Spanned<i64>>,
    #[serde(default)]
    demo: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    #[serde(default)]
    role: Option<Spanned<String>>,
    #[serde(default)]
    id: Option<Spanned<i64>>,
    internal_address: Spanned<String>,
    #[serde(default)]
    external_address: Option<Spanned<String>>,
    #[serde(default)]
    install_dir: Option<Spanned<String>>,
    #[serde(default)]
    ssh: Option<Spanned<RawSsh>>,
}

// ---------------------------------------------------------------------------------------------
// What the rest of wkctl works with: checked, with every default filled in.

/// How commands that need root (docker) are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SudoMode {
    /// The SSH user runs docker itself.
    None,
    /// `sudo -n`: sudo must not ask for a password.
    Passwordless,
    /// `sudo -S`: the password is asked once and given on stdin, never on a command line.
    Password,
}

/// What to do with a host key that is not in `known_hosts`. There is deliberately no policy
/// that accepts any key; a key that differs from the recorded one is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Refuse unknown keys, showing the fingerprint and how to accept it.
    Strict,
    /// Record an unknown key on first contact.
    AcceptNew,
}

/// How docker compose is called on the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComposeCommand {
    /// `docker compose` (v2) if the host has it, otherwise `docker-compose`.
    Auto,
    /// `docker compose`.
    DockerCompose,
    /// `docker-compose` (the v1 command, or v2's standalone binary).
    DockerHyphenCompose,
}

impl ComposeCommand {
    /// The words that start a compose command; `None` while it is still to be detected.
    pub fn program(self) -> Option<&'static str> {
        match self {
            ComposeCommand::Auto => None,
            ComposeCommand::DockerCompose => Some("docker compose"),
            ComposeCommand::DockerHyphenCompose => Some("docker-compose"),
        }
    }
}

/// One hop of a jump-host chain (`[user@]host[:port]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JumpHost {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

/// SSH settings of one node, defaults and overrides merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshTarget {
    pub host: String,
    pub user: Option<String>,
    pub port: u16,
    pub identity_files: Vec<String>,
    pub jump: Vec<JumpHost>,
    pub sudo: SudoMode,
    pub host_key_policy: HostKeyPolicy,
    pub known_hosts: Option<String>,
    /// Seconds between keepalives; a connection that misses three answers is dead.
    pub keepalive_secs: u16,
    /// Seconds a connection (TCP and the SSH handshake) may take.
    pub connect_timeout_secs: u16,
}

/// The load balancer's published ports on the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LbPorts {
    pub api: u16,
    pub tcp: u16,
    pub ws: u16,
    pub manager: u16,
    pub demo: u16,
}

impl Default for LbPorts {
    fn default() -> Self {
        LbPorts {
            api: 15001,
            tcp: 15100,
            ws: 15200,
            manager: 15300,
            demo: 15172,
        }
    }
}

/// The node that runs nginx and Prometheus for the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gateway {
    /// Name of the node it runs on.
    pub node: String,
    /// The address clients use to reach the load balancer.
    pub external_address: String,
    pub ports: LbPorts,
    pub nginx_image: String,
    /// The Prometheus every node reports to (`WK_TRACE_PROMETHEUSAPIURL`).
    pub prometheus_url: String,
    /// prometheus.yml, relative to the gateway's install dir (or absolute).
    pub prometheus_file: String,
}

/// What a host of the inventory runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A WuKongIM node (and, on the gateway node, nginx and Prometheus too).
    Wukongim,
    /// The gateway only: nginx and Prometheus, no WuKongIM (the docs' multi-node deployment).
    Gateway,
}

/// One host: a WuKongIM node, or the gateway host that runs no WuKongIM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    pub role: Role,
    /// `WK_CLUSTER_NODEID`; 0 on a gateway-only host.
    pub id: u16,
    /// Intranet address other nodes, nginx and Prometheus reach it on.
    pub internal_address: String,
    /// Public address (`WK_EXTERNAL_IP`); the gateway's external address when not given.
    pub external_address: String,
    pub install_dir: String,
    pub ssh: SshTarget,
    /// Line of the node's entry in the inventory, for messages.
    #[serde(skip)]
    pub line: u64,
}

/// A checked inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The file as the operator named it.
    pub file: String,
    pub cluster: String,
    pub image: String,
    pub compose_command: ComposeCommand,
    pub gateway: Gateway,
    /// The member new nodes join through (`WK_CLUSTER_SEED`).
    pub seed: String,
    pub nodes: Vec<Node>,
}

impl Inventory {
    /// Parses and checks an inventory. `file` is how the operator named it, used in messages.
    pub fn parse(file: &str, text: &str) -> Result<Inventory, Diagnostics> {
        let raw: RawInventory = serde_saphyr::from_str(text)
            .map_err(|e| Diagnostics(vec![from_yaml_error(file, &e)]))?;
        let mut v = Validator {
            file,
            problems: Vec::new(),
        };
        let inv = v.inventory(raw);
        if v.problems.is_empty() {
            Ok(inv.expect("an inventory without problems is complete"))
        } else {
            Err(Diagnostics(v.problems))
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The hosts that run (or will run) WuKongIM: every node but a gateway-only host.
    pub fn wukongim_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Wukongim)
    }

    pub fn gateway_node(&self) -> &Node {
        self.node(&self.gateway.node)
            .expect("validated: the gateway names a node")
    }

    pub fn seed_node(&self) -> &Node {
        self.node(&self.seed)
            .expect("validated: the seed names a node")
    }

    /// Checks the `--add` list against the inventory: each name a node of it, not the gateway
    /// or the seed (they are running already), none twice.
    pub fn check_additions(&self, add: &[String]) -> Result<(), Diagnostics> {
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        if add.is_empty() {
            problems.push(
                Diagnostic::new("--add", None, "no node to add")
                    .fix("name the node(s) to add, e.g. `--add node2`"),
            );
        }
        for name in add {
            let here = |msg: String| Diagnostic::new("--add", None, msg);
            if !seen.insert(name.as_str()) {
                problems.push(
                    here(format!("node `{name}` is named twice"))
                        .fix("name each node once; nodes join one at a time in the order given"),
                );
                continue;
            }
            let Some(node) = self.node(name) else {
                let known: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                problems.push(
                    here(format!(
                        "node `{name}` is not in {} (it has: {})",
                        self.file,
                        known.join(", ")
                    ))
                    .fix(format!(
                        "add an entry for `{name}` under `nodes:` in {}, or correct the name",
                        self.file
                    )),
                );
                continue;
            };
            if node.role == Role::Gateway {
                problems.push(
                    here(format!(
                        "node `{name}` is the gateway host (`role: gateway`): it runs no WuKongIM to add"
                    ))
                    .fix("add a WuKongIM node"),
                );
            } else if node.name == self.gateway.node || node.name == self.seed {
                let role = if node.name == self.seed {
                    "seed"
                } else {
                    "gateway"
                };
                problems.push(
                    here(format!(
                        "node `{name}` is the cluster's {role}: it is already running and cannot be added"
                    ))
                    .fix("add a node that is not deployed yet"),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Diagnostics(problems))
        }
    }
}

// ---------------------------------------------------------------------------------------------

struct Validator<'a> {
    file: &'a str,
    problems: Vec<Diagnostic>,
}

/// What the nodes checked so far use: names (with their line), ids (with node and line) and
/// internal addresses (with node), each of which must be a node's own.
#[derive(Default)]
struct Seen {
    names: BTreeMap<String, u64>,
    ids: BTreeMap<i64, (String, u64)>,
    internals: BTreeMap<String, String>,
}

fn at<T>(s: &Spanned<T>) -> Option<Location> {
    Some(s.referenced)
}

impl Validator<'_> {
    fn err(&mut self, loc: Option<Location>, message: impl Into<String>, fix: impl Into<String>) {
        let d = Diagnostic::new(self.file, loc, message).fix(fix);
        // Shared defaults (the top-level `ssh:`) are checked once per node: report them once.
        if !self.problems.contains(&d) {
            self.problems.push(d);
        }
    }

    fn inventory(&mut self, raw: RawInventory) -> Option<Inventory> {
        let cluster = self.cluster(&raw.cluster);
        let defaults = raw.ssh.as_ref();
        if let Some(host) = defaults.and_then(|s| s.value.host.as_ref()) {
            self.err(
                at(host),
                "`ssh.host` at the top level would send every node to one host",
                "set `ssh.host` under the node it belongs to (it defaults to the node's internal_address)",
            );
        }
        let install_dir = match &raw.install_dir {
            Some(d) => self.install_dir(d),
            None => DEFAULT_INSTALL_DIR.to_string(),
        };
        let image = match &raw.image {
            Some(i) => self.image(i, "image"),
            None => DEFAULT_IMAGE.to_string(),
        };
        let compose_command = self.compose_command(raw.compose_command.as_ref());
        let nodes = self.nodes(&raw.nodes, defaults.map(|s| &s.value), &install_dir);
        let gateway_node = self.gateway_node(&raw, &nodes);
        let seed = self.seed(&raw, &nodes, gateway_node);
        let gateway = self.gateway(&raw, gateway_node);
        let nodes = nodes
            .into_iter()
            .map(|(mut n, ext)| {
                n.external_address = ext.unwrap_or_else(|| gateway.external_address.clone());
                n
            })
            .collect();
        Some(Inventory {
            file: self.file.to_string(),
            cluster,
            image,
            compose_command,
            gateway,
            seed,
            nodes,
        })
    }

    fn cluster(&mut self, c: &Spanned<String>) -> String {
        let cluster = c.value.trim().to_string();
        if cluster.is_empty()
            || !cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            self.err(
                at(c),
                format!("cluster name `{}` is not usable", c.value),
                "use letters, digits, `-`, `_` or `.`, e.g. `cluster: wukongim-prod`",
            );
        }
        cluster
    }

    fn compose_command(&mut self, c: Option<&Spanned<String>>) -> ComposeCommand {
        let Some(c) = c else {
            return ComposeCommand::Auto;
        };
        match c.value.trim() {
            "auto" => ComposeCommand::Auto,
            "docker compose" => ComposeCommand::DockerCompose,
            "docker-compose" => ComposeCommand::DockerHyphenCompose,
            other => {
                self.err(
                    at(c),
                    format!("compose_command `{other}` is not one wkctl knows"),
                    "use `auto`, `docker compose` or `docker-compose`",
                );
                ComposeCommand::Auto
            }
        }
    }

    /// The nodes, each checked on its own and against the ones before it, with the external
    /// address it sets (`None`: the gateway's).
    fn nodes(
        &mut self,
        raw: &Spanned<Vec<Spanned<RawNode>>>,
        defaults: Option<&RawSsh>,
        install_dir: &str,
    ) -> Vec<(Node, Option<String>)> {
        if raw.value.is_empty() {
            self.err(
                at(raw),
                "`nodes` is empty",
                "list the running node(s) and the node(s) to add under `nodes:`",
            );
        }
        let mut seen = Seen::default();
        raw.value
            .iter()
            .map(|rn| self.node(rn, &mut seen, defaults, install_dir))
            .collect()
    }

    fn node(
        &mut self,
        rn: &Spanned<RawNode>,
        seen: &mut Seen,
        defaults: Option<&RawSsh>,
        install_dir: &str,
    ) -> (Node, Option<String>) {
        let n = &rn.value;
        let name = self.node_name(&n.name, seen);
        let role = self.role(n.role.as_ref(), &name);
        let id = self.node_id(n, role, &name, seen);
        let internal = self.address(
            &n.internal_address,
            &format!("node `{name}`: internal_address"),
        );
        if let Some(other) = seen.internals.get(&internal) {
            let msg = format!(
                "node `{name}`: internal_address {internal} is already node `{other}`'s; two WuKongIM nodes on one address collide on every port"
            );
            self.err(
                at(&n.internal_address),
                msg,
                "give every node its own internal address",
            );
        } else {
            seen.internals.insert(internal.clone(), name.clone());
        }
        let external = n
            .external_address
            .as_ref()
            .map(|e| self.address(e, &format!("node `{name}`: external_address")));
        let node_dir = match &n.install_dir {
            Some(d) => self.install_dir(d),
            None => install_dir.to_string(),
        };
        let ssh = self.ssh(defaults, n.ssh.as_ref().map(|s| &s.value), &internal, &name);
        let node = Node {
            name,
            role,
            id,
            internal_address: internal,
            external_address: String::new(),
            install_dir: node_dir,
            ssh,
            line: rn.referenced.line(),
        };
        (node, external)
    }

    fn node_name(&mut self, n: &Spanned<String>, seen: &mut Seen) -> String {
        let name = n.value.trim().to_string();
        if !is_node_name(&name) {
            self.err(
                at(n),
                format!("node name `{}` is not usable", n.value),
                "use letters, digits, `-` or `_`, starting with a letter, e.g. `node2`",
            );
        } else if let Some(first) = seen.names.get(&name) {
            let msg = format!("node name `{name}` is used twice (first on line {first})");
            self.err(at(n), msg, "give every node its own name");
        } else {
            seen.names.insert(name.clone(), n.referenced.line());
        }
        name
    }

    fn role(&mut self, r: Option<&Spanned<String>>, name: &str) -> Role {
        match r.map(|r| (r, r.value.trim())) {
            None | Some((_, "wukongim")) => Role::Wukongim,
            Some((_, "gateway")) => Role::Gateway,
            Some((r, other)) => {
                self.err(
                    at(r),
                    format!("node `{name}`: role `{other}` is not one wkctl knows"),
                    "use `wukongim` (the default) or `gateway` (a host running only nginx and Prometheus)",
                );
                Role::Wukongim
            }
        }
    }

    /// A WuKongIM node's id: given, in WuKongIM's range, and no other node's (0 when not).
    fn node_id(&mut self, n: &RawNode, role: Role, name: &str, seen: &mut Seen) -> u16 {
        let id = match (&n.id, role) {
            (Some(id), Role::Wukongim) => id,
            (None, Role::Wukongim) => {
                self.err(
                    at(&n.name),
                    format!("node `{name}` has no `id`"),
                    "give it its WK_CLUSTER_NODEID, e.g. `id: 1002` (1..=1023, unused)",
                );
                return 0;
            }
            (Some(id), Role::Gateway) => {
                self.err(
                    at(id),
                    format!("node `{name}` has `role: gateway` and an `id`: a gateway host runs no WuKongIM"),
                    "remove the `id`, or the `role: gateway` if the host runs WuKongIM too",
                );
                return 0;
            }
            (None, Role::Gateway) => return 0,
        };
        let v = id.value;
        if !(1..=1023).contains(&v) {
            self.err(
                at(id),
                format!("node `{name}`: id {v} is out of range: WuKongIM accepts 1..=1023 (a larger id panics at start)"),
                "choose an id between 1 and 1023 that no other node uses",
            );
        } else if let Some((other, line)) = seen.ids.get(&v) {
            let msg = format!(
                "node `{name}`: id {v} is already node `{other}`'s (line {line}); a join with a taken id silently replaces that node in the cluster"
            );
            self.err(at(id), msg, "give every node its own id");
        } else {
            seen.ids.insert(v, (name.to_string(), id.referenced.line()));
        }
        u16::try_from(v).unwrap_or(0)
    }

    /// The node gateway.node names (`None` when it names none); a node with `role: gateway`
    /// must be that one.
    fn gateway_node<'n>(
        &mut self,
        raw: &RawInventory,
        nodes: &'n [(Node, Option<String>)],
    ) -> Option<&'n (Node, Option<String>)> {
        let g = &raw.gateway.value;
        let gateway_name = g.node.value.trim().to_string();
        let gateway_node = nodes.iter().find(|(n, _)| n.name == gateway_name);
        if gateway_node.is_none() {
            self.err(
                at(&g.node),
                format!("gateway.node `{gateway_name}` is not one of the nodes"),
                "name the node that runs (or will run) nginx and Prometheus, e.g. `node: node1`",
            );
        }
        for (n, _) in nodes.iter().filter(|(n, _)| n.role == Role::Gateway) {
            if n.name != gateway_name {
                let line = raw
                    .nodes
                    .value
                    .iter()
                    .find(|r| r.value.name.value.trim() == n.name)
                    .map(|r| r.value.name.referenced);
                self.err(
                    line,
                    format!(
                        "node `{}` has `role: gateway` but gateway.node is `{gateway_name}`",
                        n.name
                    ),
                    "name it in gateway.node, or remove its `role: gateway`",
                );
            }
        }
        gateway_node
    }

    /// The member new nodes join through: `seed`, else the gateway node when it runs
    /// WuKongIM, else the first WuKongIM node. Some node must run WuKongIM.
    fn seed(
        &mut self,
        raw: &RawInventory,
        nodes: &[(Node, Option<String>)],
        gateway_node: Option<&(Node, Option<String>)>,
    ) -> String {
        let seed = match &raw.seed {
            Some(s) => {
                let name = s.value.trim().to_string();
                match nodes.iter().find(|(n, _)| n.name == name) {
                    None => self.err(
                        at(s),
                        format!("seed `{name}` is not one of the nodes"),
                        "name a running member that new nodes join through, or leave `seed` out to use the gateway node",
                    ),
                    Some((n, _)) if n.role == Role::Gateway => self.err(
                        at(s),
                        format!("seed `{name}` is the gateway host, which runs no WuKongIM"),
                        "name a running WuKongIM member, or leave `seed` out to use the first node",
                    ),
                    Some(_) => {}
                }
                name
            }
            None => match gateway_node {
                Some((g, _)) if g.role == Role::Gateway => nodes
                    .iter()
                    .find(|(n, _)| n.role == Role::Wukongim)
                    .map(|(n, _)| n.name.clone())
                    .unwrap_or_default(),
                _ => raw.gateway.value.node.value.trim().to_string(),
            },
        };
        if !nodes.is_empty() && !nodes.iter().any(|(n, _)| n.role == Role::Wukongim) {
            self.err(
                at(&raw.nodes),
                "no node runs WuKongIM: every node has `role: gateway`",
                "list the running WuKongIM node(s) under `nodes:`",
            );
        }
        seed
    }

    /// The load balancer and Prometheus: the address clients use, the ports, nginx's image,
    /// where Prometheus answers and its file.
    fn gateway(
        &mut self,
        raw: &RawInventory,
        gateway_node: Option<&(Node, Option<String>)>,
    ) -> Gateway {
        let g = &raw.gateway.value;
        let external_address = match &g.external_address {
            Some(e) => self.address(e, "gateway.external_address"),
            None => match gateway_node.map(|(_, e)| e.clone()) {
                Some(Some(e)) => e,
                Some(None) => {
                    self.err(
                        at(&raw.gateway),
                        "the gateway has no external address: neither gateway.external_address nor the gateway node's external_address is set",
                        "set gateway.external_address to the address clients use to reach the load balancer",
                    );
                    String::new()
                }
                None => String::new(),
            },
        };
        let ports = self.lb_ports(g.ports.as_ref());
        let nginx_image = match &g.nginx_image {
            Some(i) => self.image(i, "gateway.nginx_image"),
            None => DEFAULT_NGINX_IMAGE.to_string(),
        };
        let prometheus_url = match &g.prometheus_url {
            Some(u) => self.http_url(u, "gateway.prometheus_url"),
            None => gateway_node
                .map(|(n, _)| format!("http://{}", host_port(&n.internal_address, PORT_PROMETHEUS)))
                .unwrap_or_default(),
        };
        let prometheus_file = match &g.prometheus_file {
            Some(p) if p.value.trim().is_empty() || p.value.contains('\0') => {
                self.err(
                    at(p),
                    "gateway.prometheus_file is empty",
                    "name the file, e.g. `prometheus.yml`",
                );
                String::new()
            }
            Some(p) => p.value.trim().to_string(),
            None => DEFAULT_PROMETHEUS_FILE.to_string(),
        };
        Gateway {
            node: g.node.value.trim().to_string(),
            external_address,
            ports,
            nginx_image,
            prometheus_url,
            prometheus_file,
        }
    }

    fn install_dir(&mut self, d: &Spanned<String>) -> String {
        let v = d.value.trim().trim_end_matches('/').to_string();
        let ok = (v.starts_with('/') || v == "~" || v.starts_with("~/"))
            && !v.contains(char::is_whitespace)
            && !v.split('/').any(|part| part == "..")
            && v.chars().all(|c| {
                !c.is_control() && !matches!(c, '\'' | '"' | '$' | '`' | '\\' | ';' | '&' | '|')
            });
        if !ok || v == "/" {
            self.err(
                at(d),
                format!("install_dir `{}` is not usable", d.value),
                "use an absolute path or one under `~/`, without spaces, quotes, `..` or shell characters, e.g. `~/wukongim`",
            );
        }
        v
    }

    fn image(&mut self, i: &Spanned<String>, field: &str) -> String {
        let v = i.value.trim().to_string();
        let ok = !v.is_empty()
            && v.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':' | '@')
            });
        if !ok {
            self.err(
                at(i),
                format!("{field} `{}` is not an image reference", i.value),
                "write it as docker does, e.g. `registry.cn-shanghai.aliyuncs.com/wukongim/wukongim:v2`",
            );
        }
        v
    }

    /// An address nodes or clients use: an IPv4/IPv6 address or a DNS name, without scheme or port.
    fn address(&mut self, a: &Spanned<String>, what: &str) -> String {
        let v = a.value.trim().to_string();
        if let Err(why) = check_address(&v) {
            self.err(
                at(a),
                format!("{what} `{}` is not an address: {why}", a.value),
                "write an IP address or a host name only, without scheme or port, e.g. `10.0.0.12`",
            );
        }
        v
    }

    fn http_url(&mut self, u: &Spanned<String>, what: &str) -> String {
        let v = u.value.trim().to_string();
        let ok = v
            .strip_prefix("http://")
            .or_else(|| v.strip_prefix("https://"))
            .map(|rest| {
                let hostport = rest.split('/').next().unwrap_or("");
                let (host, port) = split_host_port(hostport);
                // The URL goes into compose files, inside YAML quotes: no quote, backslash,
                // `$` (compose's interpolation), space or control character.
                let plain = rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~:/?#[]@!&()*+,;=%".contains(c));
                plain
                    && check_address(host).is_ok()
                    && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
            })
            .unwrap_or(false);
        if !ok {
            self.err(
                at(u),
                format!("{what} `{}` is not an http(s) URL", u.value),
                "write it like `http://10.0.0.11:9090`",
            );
        }
        v
    }

    fn port(&mut self, p: &Spanned<i64>, what: &str) -> u16 {
        match u16::try_from(p.value) {
            Ok(v) if v > 0 => v,
            _ => {
                self.err(
                    at(p),
                    format!("{what} {} is out of range", p.value),
                    "use a port between 1 and 65535",
                );
                0
            }
        }
    }

    fn lb_ports(&mut self, raw: Option<&Spanned<RawLbPorts>>) -> LbPorts {
        let mut ports = LbPorts::default();
        let Some(raw) = raw else { return ports };
        let r = &raw.value;
        let mut seen: BTreeMap<u16, &'static str> = BTreeMap::new();
        let fields: [(&Option<Spanned<i64>>, &'static str, &mut u16); 5] = [
            (&r.api, "api", &mut ports.api),
            (&r.tcp, "tcp", &mut ports.tcp),
            (&r.ws, "ws", &mut ports.ws),
            (&r.manager, "manager", &mut ports.manager),
            (&r.demo, "demo", &mut ports.demo),
        ];
        let mut located = Vec::new();
        for (value, name, slot) in fields {
            if let Some(v) = value {
                *slot = self.port(v, &format!("gateway.ports.{name}"));
                located.push((name, *slot, Some(v.referenced)));
            } else {
                located.push((name, *slot, None));
            }
        }
        for (name, port, loc) in located {
            if port == 0 {
                continue;
            }
            if let Some(other) = seen.get(&port) {
                let loc = loc.or(Some(raw.referenced));
                self.err(
                    loc,
                    format!("gateway.ports.{name} {port} is also gateway.ports.{other}"),
                    "give each load-balancer port its own number",
                );
            } else {
                seen.insert(port, name);
            }
        }
        ports
    }

    fn ssh(
        &mut self,
        defaults: Option<&RawSsh>,
        node: Option<&RawSsh>,
        internal: &str,
        name: &str,
    ) -> SshTarget {
        // A per-node value wins over the default of the same field.
        fn pick<'a, T>(
            node: Option<&'a RawSsh>,
            defaults: Option<&'a RawSsh>,
            f: impl Fn(&'a RawSsh) -> Option<&'a T>,
        ) -> Option<&'a T> {
            node.and_then(&f).or_else(|| defaults.and_then(&f))
        }
        let host = match node.and_then(|n| n.host.as_ref()) {
            Some(h) => self.address(h, &format!("node `{name}`: ssh.host")),
            None => internal.to_string(),
        };
        let user = pick(node, defaults, |s| s.user.as_ref()).map(|u| self.ssh_user(u));
        let port = match pick(node, defaults, |s| s.port.as_ref()) {
            Some(p) => self.port(p, "ssh.port"),
            None => 22,
        };
        let identity_files = pick(node, defaults, |s| s.identity_files.as_ref())
            .map(|files| self.identity_files(files))
            .unwrap_or_default();
        let jump = pick(node, defaults, |s| s.jump.as_ref())
            .map(|j| self.jump(j))
            .unwrap_or_default();
        let sudo = pick(node, defaults, |s| s.sudo.as_ref())
            .map(|s| self.sudo_mode(s))
            .unwrap_or(SudoMode::None);
        let host_key_policy = pick(node, defaults, |s| s.host_key_policy.as_ref())
            .map(|p| self.host_key_policy(p))
            .unwrap_or(HostKeyPolicy::Strict);
        let known_hosts =
            pick(node, defaults, |s| s.known_hosts.as_ref()).map(|k| k.value.trim().to_string());
        let keepalive_secs = self.secs(
            pick(node, defaults, |s| s.keepalive_secs.as_ref()),
            "keepalive_secs",
            15,
        );
        let connect_timeout_secs = self.secs(
            pick(node, defaults, |s| s.connect_timeout_secs.as_ref()),
            "connect_timeout_secs",
            15,
        );
        SshTarget {
            host,
            user,
            port,
            identity_files,
            jump,
            sudo,
            host_key_policy,
            known_hosts,
            keepalive_secs,
            connect_timeout_secs,
        }
    }

    fn ssh_user(&mut self, u: &Spanned<String>) -> String {
        let v = u.value.trim().to_string();
        if v.is_empty()
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            self.err(
                at(u),
                format!("ssh.user `{}` is not a user name", u.value),
                "use the login name on the host, e.g. `user: deploy`",
            );
        }
        v
    }

    fn identity_files(&mut self, files: &[Spanned<String>]) -> Vec<String> {
        files
            .iter()
            .map(|f| {
                let v = f.value.trim().to_string();
                if v.is_empty() {
                    self.err(
                        at(f),
                        "an entry of ssh.identity_files is empty",
                        "name a private key file, e.g. `~/.ssh/id_ed25519`",
                    );
                }
                v
            })
            .collect()
    }

    fn jump(&mut self, j: &Spanned<String>) -> Vec<JumpHost> {
        parse_jump_chain(&j.value).unwrap_or_else(|why| {
            self.err(
                at(j),
                format!("ssh.jump `{}` is not usable: {why}", j.value),
                "write `[user@]host[:port]`, several hops separated by commas",
            );
            Vec::new()
        })
    }

    fn sudo_mode(&mut self, s: &Spanned<String>) -> SudoMode {
        match s.value.trim() {
            "none" => SudoMode::None,
            "passwordless" => SudoMode::Passwordless,
            "password" => SudoMode::Password,
            other => {
                self.err(at(s), format!("ssh.sudo `{other}` is not a sudo mode"), "use `none` (the user runs docker), `passwordless` or `password` (asked once at run time, never stored)");
                SudoMode::None
            }
        }
    }

    fn host_key_policy(&mut self, p: &Spanned<String>) -> HostKeyPolicy {
        match p.value.trim() {
            "strict" => HostKeyPolicy::Strict,
            "accept-new" => HostKeyPolicy::AcceptNew,
            other => {
                self.err(at(p), format!("ssh.host_key_policy `{other}` is not a policy; wkctl never accepts a host key it cannot verify"), "use `strict` (the default) or `accept-new` (record a key on first contact)");
                HostKeyPolicy::Strict
            }
        }
    }

    /// A number of seconds in 1..=3600 (`default` when not given).
    fn secs(&mut self, v: Option<&Spanned<i64>>, what: &str, default: u16) -> u16 {
        let Some(p) = v else {
            return default;
        };
        match u16::try_from(p.value) {
            Ok(v) if (1..=3600).contains(&v) => v,
            _ => {
                self.err(
                    at(p),
                    format!("ssh.{what} {} is out of range", p.value),
                    "use a number of seconds between 1 and 3600",
                );
                default
            }
        }
    }
}

fn is_node_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// Checks an IP address or DNS name; says why it is not one.
pub fn check_address(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.contains("://") {
        return Err("it has a scheme".into());
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if s.contains(':') {
        return Err("it has a port or is not a valid IPv6 address".into());
    }
    if s.len() > 253 {
        return Err("it is longer than 253 characters".into());
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels
        .iter()
        .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()))
    {
        return match s.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err("it is not a valid IPv4 address".into()),
        };
    }
    for l in labels {
        if l.is_empty()
            || l.len() > 63
            || l.starts_with('-')
            || l.ends_with('-')
            || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err("it is neither an IP address nor a valid host name".into());
        }
    }
    Ok(())
}

/// `host:port` with IPv6 addresses in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            return (h, tail.strip_prefix(':'));
        }
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    }
}

fn parse_jump_chain(s: &str) -> Result<Vec<JumpHost>, String> {
    let mut hops = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err("a hop is empty".into());
        }
        let (user, rest) = match part.split_once('@') {
            Some((u, r)) => {
                if u.is_empty()
                    || !u
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    return Err(format!("`{u}` is not a user name"));
                }
                (Some(u.to_string()), r)
            }
            None => (None, part),
        };
        let (host, port) = split_host_port(rest);
        check_address(host).map_err(|why| format!("host `{host}`: {why}"))?;
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("port `{p}` is out of range")),
            },
            None => 22,
        };
        hops.push(JumpHost {
            user,
            host: host.to_string(),
            port,
        });
    }
    Ok(hops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in ["10.0.0.1", "node-1.lan", "fd00::1", "localhost"] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "10.0.0.300",
            "http://x",
            "10.0.0.1:22",
            "a b",
            "-x.lan",
            "1.2.3",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        assert_eq!(host_port("fd00::1", 11110), "[fd00::1]:11110");
        assert_eq!(host_port("10.0.0.1", 11110), "10.0.0.1:11110");
    }

    #[test]
    fn ssh_timings_default_and_override_per_node() {
        let text = "cluster: c\nssh:\n  keepalive_secs: 5\ngateway:\n  node: node1\n  external_address: 10.99.0.10\nnodes:\n  - name: node1\n    id: 1001\n    internal_address: 10.99.0.11\n  - name: node2\n    id: 1002\n    internal_address: 10.99.0.12\n    ssh: { keepalive_secs: 1, connect_timeout_secs: 3 }\n";
        let inv = Inventory::parse("c.yml", text).unwrap();
        let (a, b) = (
            &inv.node("node1").unwrap().ssh,
            &inv.node("node2").unwrap().ssh,
        );
        assert_eq!((a.keepalive_secs, a.connect_timeout_secs), (5, 15));
        assert_eq!((b.keepalive_secs, b.connect_timeout_secs), (1, 3));
        let err = Inventory::parse(
            "c.yml",
            &text.replace("connect_timeout_secs: 3", "connect_timeout_secs: 7200"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ssh.connect_timeout_secs 7200 is out of range"),
            "{err}"
        );
    }

    #[test]
    fn jump_chains() {
        let c = parse_jump_chain("ops@bastion:2222, inner").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].user.as_deref(), Some("ops"));
        assert_eq!(c[0].port, 2222);
        assert_eq!(c[1].host, "inner");
        assert_eq!(c[1].port, 22);
        assert!(parse_jump_chain("a,,b").is_err());
        assert!(parse_jump_chain("bastion:0").is_err());
    }
}
