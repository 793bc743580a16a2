//! A WuKongIM v2 node, as seen over HTTP and TCP, for the lab. `docs/simulator.md` lists each
//! behaviour, whether it is modelled, and its source in FACTS.md.
//!
//! Configured as WuKongIM is (`WK_*` environment, its data directory), plus `WKSIM_*` for what
//! only a simulator has: join delays, faults, the published ports.
//!
//! Between simulators, a protocol of our own on the cluster port (JSON lines): `join` (a new node
//! asks the seed, which forwards to the config leader) and `sync` (each node sends its config to
//! every member every tick; the higher version wins). The leader (lowest id among joined, voting,
//! reachable members, with a quorum of them reachable) promotes joining nodes 1 → 2 → 3, plans slot
//! migration, and records who is online.
//!
//! The simulator is a server program: what it writes to stderr is its log, as WuKongIM's is
//! (the compose stand-in keeps it for `docker compose logs`).
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::http::{self, Request, Response};

pub const SLOT_COUNT: u32 = 64;
pub const SLOT_REPLICAS: usize = 3;
const STATUS_WILL_JOIN: u8 = 1;
const STATUS_JOINING: u8 = 2;
const STATUS_JOINED: u8 = 3;
/// A member not heard from for this long is offline.
const OFFLINE_AFTER: Duration = Duration::from_millis(2500);
const DEFAULT_JWT_SECRET: &str = "wukongim-default-jwt-secret";

fn status_format(s: u8) -> &'static str {
    match s {
        STATUS_WILL_JOIN => "将加入",
        STATUS_JOINING => "加入中",
        STATUS_JOINED => "已加入",
        _ => "",
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One member in the replicated config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub id: u64,
    pub cluster_addr: String,
    pub api_server_addr: String,
    pub status: u8,
    /// When `status` last changed (ms since the epoch, the leader's clock).
    pub since: u64,
    pub allow_vote: bool,
    pub online: bool,
    pub offline_count: u64,
    pub last_offline: u64,
    pub app_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Slot {
    pub id: u32,
    pub leader: u64,
    pub replicas: Vec<u64>,
    #[serde(rename = "migrateFrom")]
    pub migrate_from: u64,
    #[serde(rename = "migrateTo")]
    pub migrate_to: u64,
    /// When the migration is done (ms since the epoch); 0 when not moving.
    pub migrate_until: u64,
}

/// The replicated cluster config (what WuKongIM keeps in `cluster/config/remote.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterConfig {
    pub version: u64,
    pub term: u64,
    pub leader: u64,
    pub nodes: Vec<Member>,
    pub slots: Vec<Slot>,
}

/// Everything the simulator reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_id: u64,
    pub server_addr: String,
    pub api_url: String,
    pub seed: Option<(u64, String)>,
    pub manager_token: Option<String>,
    pub jwt_secret: String,
    pub app_version: String,
    pub data_dir: PathBuf,
    /// Container port to the port it is published on; unpublished ports are not listened on.
    pub ports: BTreeMap<u16, u16>,
    pub join_delay: Duration,
    pub migrate: Duration,
    pub slot_timeout: Duration,
    pub tick: Duration,
    pub stuck_joining: bool,
    pub refuse_joins: bool,
}

impl Settings {
    /// From `WK_*` and `WKSIM_*` variables. Errors are what WuKongIM would die of at start.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Settings, String> {
        let get = |k: &str| {
            env.get(k)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let node_id: u64 = match get("WK_CLUSTER_NODEID") {
            Some(v) => v
                .parse()
                .map_err(|_| format!("WK_CLUSTER_NODEID `{v}` is not a number"))?,
            None => 1001,
        };
        if node_id == 0 || node_id > 1023 {
            return Err(format!("panic: node id {node_id} out of range (1..=1023)"));
        }
        let seed = match get("WK_CLUSTER_SEED") {
            None => None,
            Some(s) => {
                let (id, addr) = s
                    .split_once('@')
                    .ok_or_else(|| format!("WK_CLUSTER_SEED `{s}` is not id@host:port"))?;
                let id: u64 = id
                    .parse()
                    .map_err(|_| format!("WK_CLUSTER_SEED `{s}`: bad id"))?;
                // The port is not defaulted: an address without one cannot be dialled.
                if addr
                    .rsplit_once(':')
                    .is_none_or(|(_, p)| p.parse::<u16>().is_err())
                {
                    return Err(format!(
                        "WK_CLUSTER_SEED `{s}` has no port: the seed cannot be dialled"
                    ));
                }
                Some((id, addr.to_string()))
            }
        };
        let ms = |k: &str, d: u64| {
            get(k)
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_millis(d))
        };
        let faults = get("WKSIM_FAULT").unwrap_or_default();
        let faults: Vec<&str> = faults.split(',').map(str::trim).collect();
        let slow = if faults.contains(&"slow_join") { 10 } else { 1 };
        let mut ports = BTreeMap::new();
        match get("WKSIM_PORTS") {
            Some(list) => {
                for pair in list.split(',') {
                    if let Some((c, h)) = pair.split_once(':') {
                        if let (Ok(c), Ok(h)) = (c.parse(), h.parse()) {
                            ports.insert(c, h);
                        }
                    }
                }
            }
            None => {
                for p in [5001u16, 5100, 5200, 5300, 5172, 11110] {
                    ports.insert(p, p);
                }
            }
        }
        Ok(Settings {
            node_id,
            server_addr: get("WK_CLUSTER_SERVERADDR").unwrap_or_default(),
            api_url: get("WK_CLUSTER_APIURL").unwrap_or_default(),
            seed,
            manager_token: get("WK_MANAGERTOKEN"),
            jwt_secret: get("WK_JWT_SECRET").unwrap_or_else(|| DEFAULT_JWT_SECRET.into()),
            app_version: get("WKSIM_APP_VERSION").unwrap_or_else(|| "v2.2.5-20260422".into()),
            data_dir: get("WKSIM_DATA")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root/wukongim")),
            ports,
            join_delay: ms("WKSIM_JOIN_DELAY_MS", 3000) * slow,
            migrate: ms("WKSIM_MIGRATE_MS", 2000) * slow,
            slot_timeout: get("WKSIM_SLOT_TIMEOUT_SECS")
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_secs(60)),
            tick: ms("WKSIM_TICK_MS", 300),
            stuck_joining: faults.contains(&"stuck_joining"),
            refuse_joins: faults.contains(&"refuse_joins"),
        })
    }

    pub fn config_file(&self) -> PathBuf {
        self.data_dir.join("cluster/config/remote.json")
    }
}

/// The simulator's state.
pub struct Node {
    pub s: Settings,
    cfg: Mutex<Option<ClusterConfig>>,
    seen: Mutex<BTreeMap<u64, Instant>>,
    started: Instant,
}

fn api_host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

fn plan_slots(joined: &[u64], old: &[Slot], now: u64, migrate: Duration) -> Vec<Slot> {
    let mut ids = joined.to_vec();
    ids.sort_unstable();
    (0..SLOT_COUNT)
        .map(|i| {
            let want = ids[i as usize % ids.len()];
            let replicas: Vec<u64> = (0..SLOT_REPLICAS.min(ids.len()))
                .map(|k| ids[(i as usize + k) % ids.len()])
                .collect();
            match old.iter().find(|s| s.id == i) {
                Some(o) if o.leader != want => Slot {
                    id: i,
                    leader: o.leader,
                    replicas,
                    migrate_from: o.leader,
                    migrate_to: want,
                    migrate_until: now + migrate.as_millis() as u64,
                },
                _ => Slot {
                    id: i,
                    leader: want,
                    replicas,
                    migrate_from: 0,
                    migrate_to: 0,
                    migrate_until: 0,
                },
            }
        })
        .collect()
}

impl Node {
    pub fn new(s: Settings) -> Result<Arc<Node>, String> {
        let cfg =
            match std::fs::read(s.config_file()) {
                Ok(bytes) => Some(serde_json::from_slice::<ClusterConfig>(&bytes).map_err(
                    |e| format!("panic: cannot read {}: {e}", s.config_file().display()),
                )?),
                Err(_) => None,
            };
        let node = Arc::new(Node {
            s,
            cfg: Mutex::new(cfg),
            seen: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
        });
        let first_boot = node.cfg.lock().expect("lock").is_none();
        let bootstrap = match &node.s.seed {
            None => true,
            Some((id, _)) => *id == node.s.node_id,
        };
        if first_boot && bootstrap {
            // A first boot without a seed: a cluster of one, joined, leading every slot.
            let me = node.me_member(STATUS_JOINED);
            let cfg = ClusterConfig {
                version: 1,
                term: 1,
                leader: node.s.node_id,
                nodes: vec![me],
                slots: plan_slots(&[node.s.node_id], &[], now_ms(), Duration::ZERO),
            };
            node.store(cfg)?;
        }
        Ok(node)
    }

    fn me_member(&self, status: u8) -> Member {
        Member {
            id: self.s.node_id,
            cluster_addr: self.s.server_addr.clone(),
            api_server_addr: self.s.api_url.clone(),
            status,
            since: now_ms(),
            allow_vote: true,
            online: true,
            offline_count: 0,
            last_offline: 0,
            app_version: self.s.app_version.clone(),
        }
    }

    pub fn config(&self) -> Option<ClusterConfig> {
        self.cfg.lock().expect("lock").clone()
    }

    fn store(&self, cfg: ClusterConfig) -> Result<(), String> {
        let path = self.s.config_file();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&cfg).expect("serializable"))
            .map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
        *self.cfg.lock().expect("lock") = Some(cfg);
        Ok(())
    }

    /// Adopts a config that is newer than ours.
    fn merge(&self, other: ClusterConfig) {
        let newer = match self.config() {
            Some(mine) => (other.version, other.term) > (mine.version, mine.term),
            None => true,
        };
        if newer {
            let _ = self.store(other);
        }
    }

    fn is_online(&self, id: u64) -> bool {
        id == self.s.node_id
            || self
                .seen
                .lock()
                .expect("lock")
                .get(&id)
                .is_some_and(|t| t.elapsed() < OFFLINE_AFTER)
    }

    /// Health as `/health` reports it: `None` when ok, else WuKongIM's message.
    pub fn health(&self) -> Option<&'static str> {
        let Some(cfg) = self.config() else {
            return Some("no slots");
        };
        if cfg.slots.is_empty() {
            return Some("no slots");
        }
        if cfg.slots.len() != SLOT_COUNT as usize {
            return Some("slot count not match");
        }
        let leaders_online = cfg
            .slots
            .iter()
            .all(|s| self.is_online(s.leader) && cfg.nodes.iter().any(|n| n.id == s.leader));
        if !leaders_online {
            return Some("slot leader not found");
        }
        None
    }

    /// The config leader in our view: lowest joined voter we can reach, if a quorum is reachable.
    fn leader_view(&self, cfg: &ClusterConfig) -> Option<u64> {
        let voters: Vec<u64> = cfg
            .nodes
            .iter()
            .filter(|n| n.status == STATUS_JOINED && n.allow_vote)
            .map(|n| n.id)
            .collect();
        let reachable: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|id| self.is_online(*id))
            .collect();
        if reachable.len() * 2 <= voters.len() {
            return None;
        }
        reachable.into_iter().min()
    }

    /// One tick of the leader's work; other nodes only sync.
    fn lead(&self) {
        let Some(mut cfg) = self.config() else { return };
        if self.leader_view(&cfg) != Some(self.s.node_id) {
            return;
        }
        let now = now_ms();
        let delay = self.s.join_delay.as_millis() as u64;
        let mut changed = false;
        if cfg.leader != self.s.node_id {
            cfg.leader = self.s.node_id;
            cfg.term += 1;
            changed = true;
        }
        let mut promoted_to_joined = false;
        for n in cfg.nodes.iter_mut() {
            let online = n.id == self.s.node_id || self.is_online(n.id);
            if n.online != online {
                n.online = online;
                if !online {
                    n.offline_count += 1;
                    n.last_offline = now / 1000;
                }
                changed = true;
            }
            if n.status == STATUS_WILL_JOIN && online && now >= n.since + delay {
                n.status = STATUS_JOINING;
                n.since = now;
                changed = true;
            } else if n.status == STATUS_JOINING
                && online
                && now >= n.since + delay
                && !self.s.stuck_joining
            {
                n.status = STATUS_JOINED;
                n.since = now;
                promoted_to_joined = true;
                changed = true;
            }
        }
        if promoted_to_joined {
            let joined: Vec<u64> = cfg
                .nodes
                .iter()
                .filter(|n| n.status == STATUS_JOINED)
                .map(|n| n.id)
                .collect();
            cfg.slots = plan_slots(&joined, &cfg.slots, now, self.s.migrate);
        }
        // A slot whose leader went offline elects another among its replicas when a majority
        // of them is online (three replicas: one node may be lost; two nodes survive none).
        for s in cfg.slots.iter_mut() {
            if s.migrate_to == 0 && !self.is_online(s.leader) {
                let online: Vec<u64> = s
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| self.is_online(*r))
                    .collect();
                if online.len() * 2 > s.replicas.len() {
                    s.leader = online[0];
                    changed = true;
                }
            }
        }
        for s in cfg.slots.iter_mut() {
            if s.migrate_to != 0 && now >= s.migrate_until && self.is_online(s.migrate_to) {
                s.leader = s.migrate_to;
                s.migrate_from = 0;
                s.migrate_to = 0;
                s.migrate_until = 0;
                changed = true;
            }
        }
        if changed {
            cfg.version += 1;
            let _ = self.store(cfg);
        }
    }

    /// The join request as the config leader handles it.
    fn accept_join(
        &self,
        id: u64,
        cluster_addr: String,
        api: String,
        version: String,
    ) -> Result<ClusterConfig, String> {
        if self.s.refuse_joins {
            return Err("join refused (WKSIM_FAULT=refuse_joins)".into());
        }
        let mut cfg = self.config().ok_or("this node has no cluster config yet")?;
        if self.leader_view(&cfg) != Some(self.s.node_id) {
            return Err("not the config leader".into());
        }
        let now = now_ms();
        let entry = Member {
            id,
            cluster_addr,
            api_server_addr: api,
            status: STATUS_WILL_JOIN,
            since: now,
            allow_vote: true,
            online: true,
            offline_count: 0,
            last_offline: 0,
            app_version: version,
        };
        match cfg.nodes.iter_mut().find(|n| n.id == id) {
            // A join with a taken id silently replaces that node's entry (WuKongIM #497).
            Some(existing) => {
                existing.cluster_addr = entry.cluster_addr;
                existing.api_server_addr = entry.api_server_addr;
                existing.app_version = entry.app_version;
            }
            None => cfg.nodes.push(entry),
        }
        cfg.version += 1;
        self.store(cfg.clone())?;
        Ok(cfg)
    }

    async fn handle_cluster_msg(self: &Arc<Self>, line: &str) -> serde_json::Value {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            return json!({"ok": false, "error": "bad message"});
        };
        match msg["type"].as_str() {
            Some("sync") => {
                if let Some(from) = msg["from"].as_u64() {
                    self.seen.lock().expect("lock").insert(from, Instant::now());
                }
                if let Ok(cfg) = serde_json::from_value::<ClusterConfig>(msg["cfg"].clone()) {
                    self.merge(cfg);
                }
                json!({"ok": true, "from": self.s.node_id, "cfg": self.config()})
            }
            Some("join") => {
                let id = msg["id"].as_u64().unwrap_or(0);
                let addr = msg["cluster_addr"].as_str().unwrap_or("").to_string();
                let api = msg["api_url"].as_str().unwrap_or("").to_string();
                let version = msg["app_version"].as_str().unwrap_or("").to_string();
                let Some(cfg) = self.config() else {
                    return json!({"ok": false, "error": "the seed has no cluster config"});
                };
                match self.leader_view(&cfg) {
                    Some(l) if l == self.s.node_id => {
                        match self.accept_join(id, addr, api, version) {
                            Ok(cfg) => json!({"ok": true, "cfg": cfg}),
                            Err(e) => json!({"ok": false, "error": e}),
                        }
                    }
                    Some(l) => {
                        // Forward to the config leader, once.
                        let leader_addr = cfg
                            .nodes
                            .iter()
                            .find(|n| n.id == l)
                            .map(|n| n.cluster_addr.clone())
                            .unwrap_or_default();
                        match call(&leader_addr, &msg, Duration::from_secs(2)).await {
                            Ok(v) => v,
                            Err(e) => {
                                json!({"ok": false, "error": format!("forwarding to leader {l}: {e}")})
                            }
                        }
                    }
                    None => {
                        json!({"ok": false, "error": "no config leader: a quorum of members is unreachable"})
                    }
                }
            }
            _ => json!({"ok": false, "error": "unknown message"}),
        }
    }

    // -----------------------------------------------------------------------------------------
    // The HTTP API.

    fn node_json(&self, cfg: &ClusterConfig, m: &Member, extended: bool) -> serde_json::Value {
        let slot_count = cfg
            .slots
            .iter()
            .filter(|s| s.replicas.contains(&m.id))
            .count();
        let slot_leaders = cfg.slots.iter().filter(|s| s.leader == m.id).count();
        let mut o = serde_json::Map::new();
        o.insert("id".into(), json!(m.id));
        if cfg.leader == m.id {
            o.insert("is_leader".into(), json!(1));
        }
        o.insert("role".into(), json!(0));
        o.insert("cluster_addr".into(), json!(m.cluster_addr));
        if !m.api_server_addr.is_empty() {
            o.insert("api_server_addr".into(), json!(m.api_server_addr));
        }
        if m.online {
            o.insert("online".into(), json!(1));
        }
        o.insert("allow_vote".into(), json!(if m.allow_vote { 1 } else { 0 }));
        o.insert("slot_count".into(), json!(slot_count));
        o.insert("slot_leader_count".into(), json!(slot_leaders));
        if m.status != 0 {
            o.insert("status".into(), json!(m.status));
        }
        o.insert("status_format".into(), json!(status_format(m.status)));
        o.insert("offline_count".into(), json!(m.offline_count));
        o.insert("last_offline".into(), json!(m.last_offline));
        if extended {
            o.insert(
                "uptime".into(),
                json!(if m.id == self.s.node_id {
                    format!("{}s", self.started.elapsed().as_secs())
                } else {
                    String::new()
                }),
            );
            o.insert("app_version".into(), json!(m.app_version));
            o.insert("config_version".into(), json!(cfg.version));
            o.insert("term".into(), json!(cfg.term));
        }
        serde_json::Value::Object(o)
    }

    fn local_node_json(&self) -> serde_json::Value {
        let cfg = self.config();
        match cfg.as_ref().and_then(|c| {
            c.nodes
                .iter()
                .find(|n| n.id == self.s.node_id)
                .map(|m| (c, m))
        }) {
            Some((c, m)) => {
                let mut v = self.node_json(c, m, true);
                v["uptime"] = json!(format!("{}s", self.started.elapsed().as_secs()));
                v
            }
            None => {
                let m = self.me_member(0);
                let empty = ClusterConfig {
                    version: 0,
                    term: 0,
                    leader: 0,
                    nodes: vec![],
                    slots: vec![],
                };
                self.node_json(&empty, &m, true)
            }
        }
    }

    async fn api(self: Arc<Self>, req: Request, manager: bool) -> Response {
        let needs_token = self.s.manager_token.is_some()
            && (req.path == "/health" || req.path.starts_with("/cluster/"));
        if needs_token && req.header("token") != self.s.manager_token.as_deref() {
            return Response::json(401, &json!({"msg": "token错误", "status": 401}));
        }
        if manager {
            match req.path.as_str() {
                "/web" | "/web/" => {
                    return Response {
                        content_type: "text/html; charset=utf-8",
                        ..Response::text(
                            200,
                            format!(
                            "<html><body>WuKongIM manager (lab simulator, node {})</body></html>",
                            self.s.node_id
                        ),
                        )
                    }
                }
                "/metrics" => return Response::text(200, self.metrics()),
                "/manager/login" => return self.login(&req),
                "/health" => {
                    return Response::json(
                        404,
                        &json!({"msg": "404 page not found", "status": 404}),
                    )
                }
                _ => {}
            }
            if !self.authorized(&req) {
                return Response::json(
                    401,
                    &json!({"msg": "token不能为空或token已过期", "status": 401}),
                );
            }
        }
        let Some(cfg) = self.config() else {
            return match req.path.as_str() {
                "/health" => {
                    Response::json(500, &json!({"status": "error", "message": "no slots"}))
                }
                "/cluster/node" => Response::json(200, &self.local_node_json()),
                _ => Response::json(
                    400,
                    &json!({"msg": "cluster config not ready", "status": 400}),
                ),
            };
        };
        match req.path.as_str() {
            "/health" => match self.health() {
                None => Response::json(200, &json!({"status": "ok"})),
                Some(m) => Response::json(500, &json!({"status": "error", "message": m})),
            },
            "/cluster/simpleNodes" => {
                let data: Vec<_> = cfg
                    .nodes
                    .iter()
                    .map(|m| self.node_json(&cfg, m, false))
                    .collect();
                Response::json(200, &json!({"total": data.len(), "data": data}))
            }
            "/cluster/nodes" => {
                // Asks every online node for itself; one failure fails the whole answer.
                let mut data = Vec::new();
                for m in cfg.nodes.iter().filter(|m| m.online) {
                    if m.id == self.s.node_id {
                        data.push(self.local_node_json());
                        continue;
                    }
                    let addr = api_host_port(&m.api_server_addr);
                    let mut headers = Vec::new();
                    if let Some(t) = &self.s.manager_token {
                        headers.push(("token", t.as_str()));
                    }
                    match http::get(&addr, "/cluster/node", &headers, Duration::from_secs(2)).await
                    {
                        Ok((200, body)) => match serde_json::from_slice::<serde_json::Value>(&body)
                        {
                            Ok(v) => data.push(v),
                            Err(e) => {
                                return Response::json(
                                    400,
                                    &json!({"msg": format!("node {}: {e}", m.id), "status": 400}),
                                )
                            }
                        },
                        Ok((code, _)) => {
                            return Response::json(
                                400,
                                &json!({"msg": format!("node {} answered {code}", m.id), "status": 400}),
                            )
                        }
                        Err(e) => {
                            return Response::json(
                                400,
                                &json!({"msg": format!("node {}: {e}", m.id), "status": 400}),
                            )
                        }
                    }
                }
                Response::json(200, &json!({"total": data.len(), "data": data}))
            }
            "/cluster/node" => Response::json(200, &self.local_node_json()),
            "/cluster/info" => {
                let nodes: Vec<_> = cfg
                    .nodes
                    .iter()
                    .map(|m| self.node_json(&cfg, m, false))
                    .collect();
                let slots: Vec<_> = cfg
                    .slots
                    .iter()
                    .map(|s| json!({"id": s.id, "leader": s.leader, "replicas": s.replicas, "term": cfg.term, "migrateFrom": s.migrate_from, "migrateTo": s.migrate_to}))
                    .collect();
                Response::json(
                    200,
                    &json!({"version": cfg.version, "term": cfg.term, "leader": cfg.leader, "nodes": nodes, "slots": slots}),
                )
            }
            "/varz" => Response::json(
                200,
                &json!({"server_id": self.s.node_id.to_string(), "version": self.s.app_version, "uptime": format!("{}s", self.started.elapsed().as_secs()), "connections": 0, "tcp_addr": self.s.ports.get(&5100).map(|p| p.to_string()), "ws_addr": self.s.ports.get(&5200).map(|p| p.to_string())}),
            ),
            _ => Response::json(404, &json!({"msg": "404 page not found", "status": 404})),
        }
    }

    fn metrics(&self) -> String {
        let cfg = self.config();
        let members = cfg.as_ref().map(|c| c.nodes.len()).unwrap_or(0);
        let leaders = cfg
            .as_ref()
            .map(|c| {
                c.slots
                    .iter()
                    .filter(|s| s.leader == self.s.node_id)
                    .count()
            })
            .unwrap_or(0);
        format!(
            "# HELP wukongim_cluster_members Members in the cluster config.\n# TYPE wukongim_cluster_members gauge\nwukongim_cluster_members {members}\n\
             # HELP wukongim_slot_leaders Slots this node leads.\n# TYPE wukongim_slot_leaders gauge\nwukongim_slot_leaders {leaders}\n\
             # HELP wukongim_uptime_seconds Seconds since start.\n# TYPE wukongim_uptime_seconds counter\nwukongim_uptime_seconds {}\n",
            self.started.elapsed().as_secs()
        )
    }

    fn token_for(&self, user: &str) -> String {
        use hmac::{KeyInit, Mac};
        let payload = data_encoding::BASE64URL_NOPAD
            .encode(format!("{{\"username\":\"{user}\"}}").as_bytes());
        let mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(self.s.jwt_secret.as_bytes())
            .expect("any key length")
            .chain_update(payload.as_bytes())
            .finalize()
            .into_bytes();
        format!(
            "wksim.{payload}.{}",
            data_encoding::BASE64URL_NOPAD.encode(&mac)
        )
    }

    fn login(&self, req: &Request) -> Response {
        if req.method != "POST" {
            return Response::json(404, &json!({"msg": "404 page not found", "status": 404}));
        }
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let (u, p) = (
            body["username"].as_str().unwrap_or(""),
            body["password"].as_str().unwrap_or(""),
        );
        if u == "guest" && p == "guest" {
            Response::json(200, &json!({"token": self.token_for(u), "username": u}))
        } else {
            Response::json(400, &json!({"msg": "用户名或密码错误", "status": 400}))
        }
    }

    /// A bearer token made with this node's JWT secret: a node with another secret refuses it.
    fn authorized(&self, req: &Request) -> bool {
        let Some(t) = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return false;
        };
        let mut parts = t.splitn(3, '.');
        let (Some("wksim"), Some(payload)) = (parts.next(), parts.next()) else {
            return false;
        };
        let Ok(user) = data_encoding::BASE64URL_NOPAD.decode(payload.as_bytes()) else {
            return false;
        };
        let user: serde_json::Value = serde_json::from_slice(&user).unwrap_or_default();
        user["username"]
            .as_str()
            .is_some_and(|u| self.token_for(u) == t)
    }
}

async fn call(
    addr: &str,
    msg: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let work = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut line = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        line.push(b'\n');
        s.write_all(&line).await.map_err(|e| e.to_string())?;
        let mut reply = String::new();
        BufReader::new(s)
            .read_line(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&reply).map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("{addr}: no answer"))?
}

async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(("0.0.0.0", port)).await
}

/// Runs the node until it dies. Returns the process exit code.
pub async fn run(node: Arc<Node>) -> i32 {
    let s = node.s.clone();
    let port = |c: u16| s.ports.get(&c).copied();
    // The listeners end with this function, also when it is dropped (a node that stops).
    let mut tasks = AbortOnDrop(Vec::new());

    // Cluster port: join and sync.
    if let Some(p) = port(11110) {
        let Ok(l) = bind(p).await else {
            eprintln!("panic: listen tcp :{p}: address already in use");
            return 2;
        };
        let n = node.clone();
        tasks.0.push(tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let n = n.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply = n.handle_cluster_msg(&line).await;
                        let mut out = serde_json::to_vec(&reply).expect("json");
                        out.push(b'\n');
                        if w.write_all(&out).await.is_err() {
                            break;
                        }
                    }
                });
            }
        }));
    }
    // HTTP API and manager.
    for (container, manager) in [(5001u16, false), (5300u16, true)] {
        if let Some(p) = port(container) {
            let Ok(l) = bind(p).await else {
                eprintln!("panic: listen tcp :{p}: address already in use");
                return 2;
            };
            let n = node.clone();
            tasks.0.push(tokio::spawn(http::serve(
                l,
                Arc::new(move |req| n.clone().api(req, manager)),
            )));
        }
    }
    // Demo.
    if let Some(p) = port(5172) {
        if let Ok(l) = bind(p).await {
            let id = s.node_id;
            tasks.0.push(tokio::spawn(http::serve(
                l,
                Arc::new(move |req: Request| async move {
                    let api = req.query.split('&').find_map(|kv| kv.strip_prefix("apiurl=")).unwrap_or("").to_string();
                    Response { content_type: "text/html; charset=utf-8", ..Response::text(200, format!("<html><body>WuKongIM chat demo (lab simulator, node {id}) apiurl={api}</body></html>")) }
                }),
            )));
        }
    }
    // Client TCP: a greeting naming the node, then an echo, until the client closes.
    if let Some(p) = port(5100) {
        if let Ok(l) = bind(p).await {
            let id = s.node_id;
            tasks.0.push(tokio::spawn(async move {
                while let Ok((mut sock, _)) = l.accept().await {
                    tokio::spawn(async move {
                        if sock
                            .write_all(format!("wksim node {id}\n").as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                        let mut buf = [0u8; 4096];
                        loop {
                            match sock.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if sock.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    });
                }
            }));
        }
    }
    // WebSocket: the upgrade handshake, then an echo of raw bytes.
    if let Some(p) = port(5200) {
        if let Ok(l) = bind(p).await {
            let id = s.node_id;
            tasks.0.push(tokio::spawn(async move {
                while let Ok((mut sock, _)) = l.accept().await {
                    tokio::spawn(async move {
                        let Ok(Some(req)) = http::read_request(&mut sock).await else { return };
                        let Some(key) = req.header("sec-websocket-key") else {
                            let _ = http::write_response(&mut sock, &Response::text(400, format!("wksim node {id}: websocket only\n"))).await;
                            return;
                        };
                        use sha1::Digest;
                        let accept = data_encoding::BASE64.encode(&sha1::Sha1::digest(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes()));
                        let head = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nX-Wksim-Node: {id}\r\n\r\n");
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = sock.read(&mut buf).await {
                            if n == 0 || sock.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }));
        }
    }

    let mut last_join_try: Option<Instant> = None;
    let mut ever_healthy = false;
    loop {
        // Join through the seed while we have no config (every 2 s, as WuKongIM).
        if node.config().is_none() {
            if let Some((_, seed_addr)) = &s.seed {
                if last_join_try.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                    last_join_try = Some(Instant::now());
                    let msg = json!({"type": "join", "id": s.node_id, "cluster_addr": s.server_addr, "api_url": s.api_url, "app_version": s.app_version});
                    match call(seed_addr, &msg, Duration::from_secs(2)).await {
                        Ok(v) if v["ok"] == true => {
                            if let Ok(cfg) =
                                serde_json::from_value::<ClusterConfig>(v["cfg"].clone())
                            {
                                node.merge(cfg);
                            }
                        }
                        Ok(v) => eprintln!("join via seed {seed_addr} refused: {}", v["error"]),
                        Err(e) => eprintln!("join via seed {seed_addr}: {e}"),
                    }
                }
            }
        }
        // Sync with every member.
        if let Some(cfg) = node.config() {
            let msg = json!({"type": "sync", "from": s.node_id, "cfg": cfg});
            let peers: Vec<(u64, String)> = cfg
                .nodes
                .iter()
                .filter(|n| n.id != s.node_id)
                .map(|n| (n.id, n.cluster_addr.clone()))
                .collect();
            let calls = peers.into_iter().map(|(id, addr)| {
                let msg = msg.clone();
                let node = node.clone();
                async move {
                    if let Ok(v) = call(&addr, &msg, Duration::from_millis(800)).await {
                        node.seen.lock().expect("lock").insert(id, Instant::now());
                        if let Ok(cfg) = serde_json::from_value::<ClusterConfig>(v["cfg"].clone()) {
                            node.merge(cfg);
                        }
                    }
                }
            });
            futures_join_all(calls).await;
            node.lead();
        }
        // Without slot leaders within the first minute after start, WuKongIM panics (#197).
        ever_healthy |= node.health().is_none();
        if !ever_healthy && node.started.elapsed() >= s.slot_timeout {
            eprintln!(
                "panic: no slot leader found within {} s of start: {}",
                s.slot_timeout.as_secs(),
                node.health().unwrap_or("")
            );
            return 2;
        }
        tokio::time::sleep(s.tick).await;
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    fs: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

/// The environment of this process, as a map.
pub fn env_map() -> BTreeMap<String, String> {
    std::env::vars().collect()
}
