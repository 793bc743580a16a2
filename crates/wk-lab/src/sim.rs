//! A WuKongIM v2 node, as seen over HTTP and TCP, for the lab. `docs/simulator.md` lists each
//! behaviour, whether it is modelled, and its source in FACTS.md.
//!
//! Configured as WuKongIM is (`wk.yaml` in its home, `WK_*` environment over it, its data
//! directory), plus `WKSIM_*` for what only a simulator has: join delays, faults, the ports.
//!
//! Between simulators, a protocol of our own on the cluster port (JSON lines), every message
//! one way, over the **sender's own** connection, as WuKongIM's raft transport is: `sync` (each
//! node pushes its config to every member every tick; the higher version wins), `join` (a new
//! node asks the seed, which forwards to the config leader; the answer carries no config: the
//! config reaches the new node only when the members dial it) and `propose_api` (a node asks
//! the leader to record its API URL). A peer is online only when both directions work: we
//! reached it, and it reached us, within the last 30 ticks. The leader (lowest id among voting
//! members online both ways, with a quorum of them) promotes joining nodes 1 → 2 → 3, makes a
//! new node a learner of every slot, balances slot leaders, and records who is online.
//!
//! The simulator is a server program: what it writes to stderr is its log, as WuKongIM's is
//! (Docker keeps it for `docker compose logs`).
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::http::{self, Request, Response};

/// WuKongIM's default `WK_CLUSTER_SLOTCOUNT`.
pub const SLOT_COUNT: u32 = 64;
pub const SLOT_REPLICAS: usize = 3;
const STATUS_WILL_JOIN: u8 = 1;
const STATUS_JOINING: u8 = 2;
const STATUS_JOINED: u8 = 3;
/// A peer not heard from (or not reached) for this many ticks is offline (WuKongIM: 30 ticks
/// of 200 ms).
const OFFLINE_TICKS: u32 = 30;
/// WuKongIM's default JWT secret.
const DEFAULT_JWT_SECRET: &str = "secret_wukongim";

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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Slot {
    pub id: u32,
    pub leader: u64,
    pub replicas: Vec<u64>,
    /// A learner being added (`migrate_from == migrate_to`, the learner) or a leader moving.
    #[serde(rename = "migrateFrom")]
    pub migrate_from: u64,
    #[serde(rename = "migrateTo")]
    pub migrate_to: u64,
    /// When the migration is done (ms since the epoch); 0 when not moving.
    pub migrate_until: u64,
    /// While its leader is being elected (ms since the epoch; 0: not electing): `slot not ready`.
    #[serde(default)]
    pub electing_until: u64,
}

/// The replicated cluster config (what WuKongIM keeps in `data/cluster/config/remote.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterConfig {
    pub version: u64,
    pub term: u64,
    pub leader: u64,
    pub nodes: Vec<Member>,
    pub slots: Vec<Slot>,
}

impl ClusterConfig {
    fn has(&self, id: u64) -> bool {
        self.nodes.iter().any(|n| n.id == id)
    }
}

/// Everything the simulator reads from its `wk.yaml` and environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_id: u64,
    pub server_addr: String,
    pub api_url: String,
    pub seed: Option<(u64, String)>,
    pub manager_token: Option<String>,
    pub jwt_secret: String,
    pub app_version: String,
    /// `WK_CLUSTER_SLOTCOUNT`: the slots a cluster this node creates has, and what its
    /// `/health` expects every config to have.
    pub slot_count: u32,
    /// WuKongIM's root dir (`rootDir`): `data/`, `logs/`, `plugins/` live under it.
    pub root_dir: PathBuf,
    /// Container port to the port it is published on; unpublished ports are not listened on.
    pub ports: BTreeMap<u16, u16>,
    pub join_delay: Duration,
    pub migrate: Duration,
    pub election: Duration,
    pub slot_timeout: Duration,
    pub tick: Duration,
    pub stuck_joining: bool,
    pub refuse_joins: bool,
}

/// `wk.yaml`'s keys as the environment names them (viper: prefix `WK_`, `.` becomes `_`, case
/// does not matter): `cluster: {nodeId: 7}` is `WK_CLUSTER_NODEID=7`.
pub fn yaml_as_env(text: &str) -> Result<BTreeMap<String, String>, String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    walk(&format!("{prefix}_{}", k.to_uppercase()), v, out);
                }
            }
            serde_json::Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            serde_json::Value::Null => {}
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let v: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| format!("panic: wk.yaml: {e}"))?;
    let mut out = BTreeMap::new();
    walk("WK", &v, &mut out);
    Ok(out)
}

impl Settings {
    /// From the home's `wk.yaml` (`WKSIM_HOME`, default `/root/wukongim`, as the image's
    /// `--config=/root/wukongim/wk.yaml`), then `WK_*` over it, and `WKSIM_*`. Errors are what
    /// WuKongIM would die of at start.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Settings, String> {
        let home = env
            .get("WKSIM_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root/wukongim"));
        let mut all = match std::fs::read_to_string(home.join("wk.yaml")) {
            Ok(text) => yaml_as_env(&text)?,
            Err(_) => BTreeMap::new(),
        };
        all.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let get = |k: &str| {
            all.get(k)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        // 0, or what does not parse, silently becomes the default 1001; too large panics.
        let node_id: u64 = get("WK_CLUSTER_NODEID")
            .and_then(|v| v.parse().ok())
            .filter(|id| *id != 0)
            .unwrap_or(1001);
        if node_id > 1023 {
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
        // rootDir: relative to the working directory, as WuKongIM resolves it; without one,
        // the home (~/wukongim).
        let root_dir = match get("WK_ROOTDIR") {
            Some(r) if Path::new(&r).is_absolute() => PathBuf::from(r),
            Some(r) => std::env::current_dir()
                .map_err(|e| format!("panic: the working directory: {e}"))?
                .join(r),
            None => home,
        };
        Ok(Settings {
            node_id,
            server_addr: get("WK_CLUSTER_SERVERADDR").unwrap_or_default(),
            api_url: get("WK_CLUSTER_APIURL").unwrap_or_default(),
            seed,
            manager_token: get("WK_MANAGERTOKEN"),
            jwt_secret: get("WK_JWT_SECRET").unwrap_or_else(|| DEFAULT_JWT_SECRET.into()),
            app_version: get("WKSIM_APP_VERSION").unwrap_or_else(|| "v2.2.5-20260422".into()),
            slot_count: get("WK_CLUSTER_SLOTCOUNT")
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(SLOT_COUNT),
            root_dir,
            ports,
            join_delay: ms("WKSIM_JOIN_DELAY_MS", 3000) * slow,
            migrate: ms("WKSIM_MIGRATE_MS", 2000) * slow,
            election: ms("WKSIM_ELECTION_MS", 1000),
            slot_timeout: get("WKSIM_SLOT_TIMEOUT_SECS")
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_secs(60)),
            tick: ms("WKSIM_TICK_MS", 200),
            stuck_joining: faults.contains(&"stuck_joining"),
            refuse_joins: faults.contains(&"refuse_joins"),
        })
    }

    pub fn config_file(&self) -> PathBuf {
        self.root_dir.join("data/cluster/config/remote.json")
    }

    fn offline_after(&self) -> Duration {
        self.tick * OFFLINE_TICKS
    }
}

/// The simulator's state.
pub struct Node {
    pub s: Settings,
    /// The local copy of the cluster config (`None`: not initialised, an empty remote.json).
    cfg: Mutex<Option<ClusterConfig>>,
    /// When each peer last took a message we sent over our own connection.
    reached: Mutex<BTreeMap<u64, Instant>>,
    /// When each peer's own connection last brought us a message.
    heard: Mutex<BTreeMap<u64, Instant>>,
    started: Instant,
}

fn api_host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

/// The replicated config as WuKongIM's `/cluster/info` gives it: its protobuf types as JSON,
/// camelCase, every zero value omitted, `online` and `allowVote` booleans.
fn raw_config(cfg: &ClusterConfig) -> serde_json::Value {
    fn put(o: &mut serde_json::Map<String, serde_json::Value>, k: &str, v: serde_json::Value) {
        let zero = v == json!(0) || v == json!("") || v == json!(false) || v == json!([]);
        if !zero {
            o.insert(k.into(), v);
        }
    }
    let nodes: Vec<_> = cfg
        .nodes
        .iter()
        .map(|m| {
            let mut o = serde_json::Map::new();
            put(&mut o, "id", json!(m.id));
            put(&mut o, "clusterAddr", json!(m.cluster_addr));
            put(&mut o, "apiServerAddr", json!(m.api_server_addr));
            put(&mut o, "online", json!(m.online));
            put(&mut o, "offlineCount", json!(m.offline_count));
            put(&mut o, "lastOffline", json!(m.last_offline / 1000));
            put(&mut o, "allowVote", json!(m.allow_vote));
            put(&mut o, "status", json!(m.status));
            serde_json::Value::Object(o)
        })
        .collect();
    let slots: Vec<_> = cfg
        .slots
        .iter()
        .map(|x| {
            let mut o = serde_json::Map::new();
            put(&mut o, "id", json!(x.id));
            put(&mut o, "leader", json!(x.leader));
            put(&mut o, "term", json!(cfg.term));
            put(&mut o, "replicas", json!(x.replicas));
            put(&mut o, "migrateFrom", json!(x.migrate_from));
            put(&mut o, "migrateTo", json!(x.migrate_to));
            put(&mut o, "status", json!(u8::from(x.electing_until != 0)));
            serde_json::Value::Object(o)
        })
        .collect();
    let mut o = serde_json::Map::new();
    put(&mut o, "version", json!(cfg.version));
    put(&mut o, "slotCount", json!(cfg.slots.len()));
    put(&mut o, "slotReplicaCount", json!(SLOT_REPLICAS));
    put(&mut o, "channelReplicaCount", json!(SLOT_REPLICAS));
    put(&mut o, "term", json!(cfg.term));
    put(&mut o, "nodes", json!(nodes));
    put(&mut o, "slots", json!(slots));
    serde_json::Value::Object(o)
}

/// A request forwarded to member `to`'s API (as WuKongIM's `c.Forward`: same path, the
/// caller's `token` header), its answer passed back.
async fn forward_to(cfg: &ClusterConfig, to: u64, req: &Request) -> Response {
    let addr = cfg
        .nodes
        .iter()
        .find(|n| n.id == to)
        .map(|n| api_host_port(&n.api_server_addr))
        .unwrap_or_default();
    if addr.is_empty() {
        return Response::json(
            400,
            &json!({"msg": format!("node {to} has no API address"), "status": 400}),
        );
    }
    let headers: Vec<(&str, &str)> = req
        .header("token")
        .map(|t| ("token", t))
        .into_iter()
        .collect();
    match http::get(&addr, &req.path, &headers, Duration::from_secs(10)).await {
        Ok((status, body)) => Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        },
        Err(e) => Response::json(
            400,
            &json!({"msg": format!("forwarding to node {to}: {e}"), "status": 400}),
        ),
    }
}

/// Slot `i`'s replicas among `ids` (sorted): three consecutive ids from the slot's own.
fn replicas_of(i: u32, ids: &[u64]) -> Vec<u64> {
    (0..SLOT_REPLICAS.min(ids.len()))
        .map(|k| ids[(i as usize + k) % ids.len()])
        .collect()
}

/// A new cluster's slots, all led by its one node.
fn first_slots(id: u64, count: u32) -> Vec<Slot> {
    (0..count)
        .map(|i| Slot {
            id: i,
            leader: id,
            replicas: vec![id],
            migrate_from: 0,
            migrate_to: 0,
            migrate_until: 0,
            electing_until: 0,
        })
        .collect()
}

impl Node {
    /// A node at start: its first boot writes `data/`, `logs/`, `plugins/` and an empty
    /// `remote.json` (not initialised) before anything else; a first boot without a seed (or
    /// seeded by itself) makes a cluster of one.
    pub fn new(s: Settings) -> Result<Arc<Node>, String> {
        let root = s.root_dir.clone();
        for d in ["data/cluster/config", "data/cfglogdb", "logs", "plugins"] {
            std::fs::create_dir_all(root.join(d))
                .map_err(|e| format!("panic: cannot create {}: {e}", root.join(d).display()))?;
        }
        let file = s.config_file();
        let cfg = match std::fs::read(&file) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => None,
            Ok(bytes) => Some(
                serde_json::from_slice::<ClusterConfig>(&bytes)
                    .map_err(|e| format!("panic: cannot read {}: {e}", file.display()))?,
            ),
            Err(_) => {
                std::fs::write(&file, b"")
                    .map_err(|e| format!("panic: cannot create {}: {e}", file.display()))?;
                None
            }
        };
        let node = Arc::new(Node {
            s,
            cfg: Mutex::new(cfg),
            reached: Mutex::new(BTreeMap::new()),
            heard: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
        });
        let first_boot = node.cfg.lock().expect("lock").is_none();
        let bootstrap = match &node.s.seed {
            None => true,
            Some((id, _)) => *id == node.s.node_id,
        };
        if first_boot && bootstrap {
            let me = node.me_member(STATUS_JOINED);
            let cfg = ClusterConfig {
                version: 1,
                term: 1,
                leader: node.s.node_id,
                nodes: vec![me],
                slots: first_slots(node.s.node_id, node.s.slot_count),
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
        }
    }

    pub fn config(&self) -> Option<ClusterConfig> {
        self.cfg.lock().expect("lock").clone()
    }

    /// Whether this node must (still) join: it has a seed, and the seed's id is not in its
    /// local config (WuKongIM's `server_join.go`). A config of another cluster joins too.
    pub fn joining(&self) -> bool {
        match &self.s.seed {
            Some((id, _)) if *id != self.s.node_id => self.config().is_none_or(|c| !c.has(*id)),
            _ => false,
        }
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

    /// Adopts a config that is newer than ours; a joining node adopts the first config of the
    /// cluster it joins (one with the seed in it), whatever it had.
    fn merge(&self, other: ClusterConfig) {
        let newer = match self.config() {
            Some(mine) => {
                (other.version, other.term) > (mine.version, mine.term)
                    || (self.joining()
                        && self.s.seed.as_ref().is_some_and(|(id, _)| other.has(*id)))
            }
            None => true,
        };
        if newer {
            let _ = self.store(other);
        }
    }

    /// Online both ways: we reached it, and it reached us, within the offline time.
    fn is_online(&self, id: u64) -> bool {
        let fresh = |m: &Mutex<BTreeMap<u64, Instant>>| {
            m.lock()
                .expect("lock")
                .get(&id)
                .is_some_and(|t| t.elapsed() < self.s.offline_after())
        };
        id == self.s.node_id || (fresh(&self.reached) && fresh(&self.heard))
    }

    /// Health as `/health` reports it, from the local config only (WuKongIM never checks that
    /// a leader is alive): `None` when ok, else WuKongIM's message.
    pub fn health(&self) -> Option<&'static str> {
        let Some(cfg) = self.config() else {
            return Some("no slots");
        };
        if cfg.slots.is_empty() {
            return Some("no slots");
        }
        if cfg.slots.len() != self.s.slot_count as usize {
            return Some("slot count not match");
        }
        if cfg.slots.iter().any(|s| s.leader == 0) {
            return Some("slot leader not found");
        }
        if cfg.slots.iter().any(|s| s.electing_until != 0) {
            return Some("slot not ready");
        }
        None
    }

    /// The config leader in our live view: the lowest voter (status 2 or 3) online both ways,
    /// if a quorum of voters is.
    fn leader_view(&self, cfg: &ClusterConfig) -> Option<u64> {
        let voters: Vec<u64> = cfg
            .nodes
            .iter()
            .filter(|n| n.status >= STATUS_JOINING && n.allow_vote)
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
        let mut changed = false;
        if cfg.leader != self.s.node_id {
            cfg.leader = self.s.node_id;
            cfg.term += 1;
            changed = true;
        }
        changed |= self.promote(&mut cfg, now);
        changed |= self.move_slots(&mut cfg, now);
        if changed {
            cfg.version += 1;
            let _ = self.store(cfg);
        }
    }

    /// Who is online, and joining nodes 1 → 2 → 3; at 3 a node becomes a learner of every slot.
    fn promote(&self, cfg: &mut ClusterConfig, now: u64) -> bool {
        let delay = self.s.join_delay.as_millis() as u64;
        let mut changed = false;
        let mut learners = Vec::new();
        for n in cfg.nodes.iter_mut() {
            let online = self.is_online(n.id);
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
                learners.push(n.id);
                changed = true;
            }
        }
        for id in learners {
            for s in cfg.slots.iter_mut().filter(|s| !s.replicas.contains(&id)) {
                s.migrate_from = id;
                s.migrate_to = id;
                s.migrate_until = now + self.s.migrate.as_millis() as u64;
            }
        }
        changed
    }

    /// Slot work: learners promoted to replicas, leaders balanced once every node is at 3 and
    /// nothing moves, leaders moved, and a slot whose leader went offline elected again (while
    /// it elects, `/health` says `slot not ready`).
    fn move_slots(&self, cfg: &mut ClusterConfig, now: u64) -> bool {
        let mut changed = false;
        let mut joined: Vec<u64> = cfg
            .nodes
            .iter()
            .filter(|n| n.status == STATUS_JOINED)
            .map(|n| n.id)
            .collect();
        joined.sort_unstable();
        let election = self.s.election.as_millis() as u64;
        for s in cfg.slots.iter_mut() {
            if s.migrate_to != 0 && now >= s.migrate_until && self.is_online(s.migrate_to) {
                if s.migrate_from == s.migrate_to {
                    // A learner caught up: the slot's replicas are its three among the joined.
                    s.replicas = replicas_of(s.id, &joined);
                    if !s.replicas.contains(&s.leader) {
                        s.replicas[0] = s.leader;
                    }
                } else {
                    s.leader = s.migrate_to;
                }
                s.migrate_from = 0;
                s.migrate_to = 0;
                s.migrate_until = 0;
                changed = true;
            }
            if s.migrate_to == 0 && s.electing_until == 0 && !self.is_online(s.leader) {
                s.electing_until = now + election;
                changed = true;
            }
            if s.electing_until != 0 && now >= s.electing_until {
                let online: Vec<u64> = s
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| self.is_online(*r))
                    .collect();
                if self.is_online(s.leader) {
                    s.electing_until = 0;
                    changed = true;
                } else if online.len() * 2 > s.replicas.len() {
                    s.leader = online[0];
                    s.electing_until = 0;
                    changed = true;
                }
            }
        }
        let all_joined = cfg.nodes.iter().all(|n| n.status == STATUS_JOINED);
        let quiet = cfg
            .slots
            .iter()
            .all(|s| s.migrate_to == 0 && s.electing_until == 0);
        if all_joined && quiet && !joined.is_empty() {
            for s in cfg.slots.iter_mut() {
                let want = joined[s.id as usize % joined.len()];
                if s.leader != want && s.replicas.contains(&want) && self.is_online(want) {
                    s.migrate_from = s.leader;
                    s.migrate_to = want;
                    s.migrate_until = now + self.s.migrate.as_millis() as u64;
                    changed = true;
                }
            }
        }
        changed
    }

    /// The join request as the config leader handles it. A taken id: the whole entry is
    /// replaced (status back to 1, no API URL; WuKongIM #497).
    fn accept_join(&self, id: u64, cluster_addr: String) -> Result<(), String> {
        if self.s.refuse_joins {
            return Err("join refused (WKSIM_FAULT=refuse_joins)".into());
        }
        let mut cfg = self.config().ok_or("this node has no cluster config yet")?;
        if self.leader_view(&cfg) != Some(self.s.node_id) {
            return Err("not the config leader".into());
        }
        let entry = Member {
            id,
            cluster_addr,
            api_server_addr: String::new(),
            status: STATUS_WILL_JOIN,
            since: now_ms(),
            allow_vote: true,
            online: false,
            offline_count: 0,
            last_offline: 0,
        };
        match cfg.nodes.iter_mut().find(|n| n.id == id) {
            Some(existing) => *existing = entry,
            None => cfg.nodes.push(entry),
        }
        cfg.nodes.sort_by_key(|n| n.id);
        cfg.version += 1;
        self.store(cfg)
    }

    /// A member's API URL, as the leader records it.
    fn accept_api(&self, id: u64, api: String) -> Result<(), String> {
        let mut cfg = self.config().ok_or("this node has no cluster config yet")?;
        if self.leader_view(&cfg) != Some(self.s.node_id) {
            return Err("not the config leader".into());
        }
        let Some(n) = cfg.nodes.iter_mut().find(|n| n.id == id) else {
            return Err(format!("node {id} is not a member"));
        };
        if n.api_server_addr != api {
            n.api_server_addr = api;
            cfg.version += 1;
            self.store(cfg)?;
        }
        Ok(())
    }

    /// The leader's cluster address in our live view.
    fn leader_addr(&self) -> Option<(u64, String)> {
        let cfg = self.config()?;
        let l = self.leader_view(&cfg)?;
        cfg.nodes
            .iter()
            .find(|n| n.id == l)
            .map(|n| (l, n.cluster_addr.clone()))
    }

    async fn handle_cluster_msg(self: &Arc<Self>, line: &str) -> serde_json::Value {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            return json!({"ok": false, "error": "bad message"});
        };
        match msg["type"].as_str() {
            Some("sync") => {
                if let Some(from) = msg["from"].as_u64() {
                    self.heard
                        .lock()
                        .expect("lock")
                        .insert(from, Instant::now());
                }
                if let Ok(cfg) = serde_json::from_value::<ClusterConfig>(msg["cfg"].clone()) {
                    self.merge(cfg);
                }
                json!({"ok": true})
            }
            Some("join") | Some("propose_api") => {
                let Some((l, leader_addr)) = self.leader_addr() else {
                    return json!({"ok": false, "error": "no config leader: a quorum of members is unreachable"});
                };
                if l != self.s.node_id {
                    // Forwarded to the config leader, once, over our own connection.
                    return match call(&leader_addr, &msg, Duration::from_secs(2)).await {
                        Ok(v) => v,
                        Err(e) => {
                            json!({"ok": false, "error": format!("forwarding to leader {l}: {e}")})
                        }
                    };
                }
                let id = msg["id"].as_u64().unwrap_or(0);
                let done = if msg["type"] == "join" {
                    let addr = msg["cluster_addr"].as_str().unwrap_or("").to_string();
                    self.accept_join(id, addr)
                } else {
                    self.accept_api(id, msg["api_url"].as_str().unwrap_or("").to_string())
                };
                match done {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => json!({"ok": false, "error": e}),
                }
            }
            _ => json!({"ok": false, "error": "unknown message"}),
        }
    }

    // -----------------------------------------------------------------------------------------
    // The HTTP API.

    /// A member as the API shows it; `leader` is the live config leader (`is_leader` comes from
    /// the raft, not from the config).
    fn node_json(
        &self,
        cfg: &ClusterConfig,
        m: &Member,
        leader: Option<u64>,
        extended: bool,
    ) -> serde_json::Value {
        let slot_count = cfg
            .slots
            .iter()
            .filter(|s| s.replicas.contains(&m.id))
            .count();
        let slot_leaders = cfg.slots.iter().filter(|s| s.leader == m.id).count();
        // WuKongIM omits every zero value but those of id, role, cluster_addr and allow_vote.
        let mut o = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value, keep: bool| {
            let zero = v == json!(0) || v == json!("");
            if keep || !zero {
                o.insert(k.into(), v);
            }
        };
        put("id", json!(m.id), true);
        put("is_leader", json!(u8::from(leader == Some(m.id))), false);
        put("role", json!(0), true);
        put("cluster_addr", json!(m.cluster_addr), true);
        put("api_server_addr", json!(m.api_server_addr), false);
        put("online", json!(u8::from(m.online)), false);
        put("allow_vote", json!(u8::from(m.allow_vote)), true);
        put("slot_count", json!(slot_count), false);
        put("slot_leader_count", json!(slot_leaders), false);
        put("status", json!(m.status), false);
        put("status_format", json!(status_format(m.status)), false);
        put("offline_count", json!(m.offline_count), false);
        if m.last_offline != 0 {
            put("last_offline", json!(last_offline(m.last_offline)), false);
        }
        if extended {
            let uptime = if m.id == self.s.node_id {
                format!("{}s", self.started.elapsed().as_secs())
            } else {
                String::new()
            };
            put("uptime", json!(uptime), false);
            // The build's version is the answering process's own (WuKongIM sets it only in
            // its local node's answer): an offline node, taken from the config, has none.
            if m.id == self.s.node_id {
                put("app_version", json!(self.s.app_version), false);
            }
            put("config_version", json!(cfg.version), false);
            put("term", json!(cfg.term), false);
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
                let mut v = self.node_json(c, m, self.leader_view(c), true);
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
                self.node_json(&empty, &m, None, true)
            }
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "the simulated API's routes, one arm each, read as one table"
    )]
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
                // No config: no members to list; no leader to forward to.
                "/cluster/simpleNodes" | "/cluster/nodes" => {
                    Response::json(200, &json!({"total": 0, "data": []}))
                }
                "/cluster/info" => {
                    Response::json(400, &json!({"msg": "leader not found", "status": 400}))
                }
                _ => Response::json(404, &json!({"msg": "404 page not found", "status": 404})),
            };
        };
        let leader = self.leader_view(&cfg);
        match req.path.as_str() {
            "/health" => match self.health() {
                None => Response::json(200, &json!({"status": "ok"})),
                Some(m) => Response::json(500, &json!({"status": "error", "message": m})),
            },
            "/cluster/simpleNodes" => {
                let data: Vec<_> = cfg
                    .nodes
                    .iter()
                    .map(|m| self.node_json(&cfg, m, leader, false))
                    .collect();
                Response::json(200, &json!({"total": data.len(), "data": data}))
            }
            "/cluster/nodes" => self.nodes(&cfg, leader).await,
            "/cluster/node" => Response::json(200, &self.local_node_json()),
            // Forwarded to the config leader (none without a quorum), which answers its raw
            // config.
            "/cluster/info" => match leader {
                None => Response::json(400, &json!({"msg": "leader not found", "status": 400})),
                Some(l) if l == self.s.node_id => Response::json(200, &raw_config(&cfg)),
                Some(l) => forward_to(&cfg, l, &req).await,
            },
            "/varz" => Response::json(
                200,
                &json!({"server_id": self.s.node_id.to_string(), "version": self.s.app_version, "uptime": format!("{}s", self.started.elapsed().as_secs()), "connections": 0, "tcp_addr": self.s.ports.get(&5100).map(|p| p.to_string()), "ws_addr": self.s.ports.get(&5200).map(|p| p.to_string())}),
            ),
            _ => Response::json(404, &json!({"msg": "404 page not found", "status": 404})),
        }
    }

    /// `/cluster/nodes`: every member of the config, sorted by id; each online one asked for
    /// itself (its answer's status code ignored, no time limit, as WuKongIM), an offline one as
    /// the config has it. One that cannot be asked fails the whole answer (400).
    async fn nodes(&self, cfg: &ClusterConfig, leader: Option<u64>) -> Response {
        let mut data = Vec::new();
        let mut members = cfg.nodes.clone();
        members.sort_by_key(|m| m.id);
        for m in &members {
            if m.id == self.s.node_id {
                data.push(self.local_node_json());
                continue;
            }
            if !m.online {
                data.push(self.node_json(cfg, m, leader, true));
                continue;
            }
            let addr = api_host_port(&m.api_server_addr);
            let mut headers = Vec::new();
            if let Some(t) = &self.s.manager_token {
                headers.push(("token", t.as_str()));
            }
            let fail = |e: String| {
                Response::json(
                    400,
                    &json!({"msg": format!("node {}: {e}", m.id), "status": 400}),
                )
            };
            match http::get(&addr, "/cluster/node", &headers, Duration::from_secs(3600)).await {
                Ok((_, body)) => match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(v) => data.push(v),
                    Err(e) => return fail(e.to_string()),
                },
                Err(e) => return fail(e),
            }
        }
        Response::json(200, &json!({"total": data.len(), "data": data}))
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
#[allow(
    clippy::too_many_lines,
    reason = "a node's listeners, started in the order WuKongIM starts them"
)]
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

    let mut next_join = Instant::now() + Duration::from_secs(2);
    let mut ever_healthy = false;
    loop {
        // Joining: the first request about 2 s after start, then 2 s after each attempt ends
        // (each may take its 5 s timeout). The answer carries no config: the members' own
        // connections bring it.
        if node.joining() && Instant::now() >= next_join {
            if let Some((_, seed_addr)) = &s.seed {
                let msg = json!({"type": "join", "id": s.node_id, "cluster_addr": s.server_addr});
                match call(seed_addr, &msg, Duration::from_secs(5)).await {
                    Ok(v) if v["ok"] == true => {}
                    Ok(v) => eprintln!("join via seed {seed_addr} refused: {}", v["error"]),
                    Err(e) => eprintln!("join via seed {seed_addr}: {e}"),
                }
            }
            next_join = Instant::now() + Duration::from_secs(2);
        }
        if let Some(cfg) = node.config() {
            sync(&node, &cfg).await;
            node.lead();
            propose_api(&node).await;
        }
        // Without ready slots in its local config within the first minute after start,
        // WuKongIM panics (`MustWaitAllSlotsReady`, #197).
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

/// Our config, pushed to every other member over our own connection to its cluster address.
async fn sync(node: &Arc<Node>, cfg: &ClusterConfig) {
    let me = node.s.node_id;
    let msg = json!({"type": "sync", "from": me, "cfg": cfg});
    let calls = cfg
        .nodes
        .iter()
        .filter(|n| n.id != me)
        .map(|n| (n.id, n.cluster_addr.clone()))
        .map(|(id, addr)| {
            let msg = msg.clone();
            let node = node.clone();
            async move {
                if let Ok(v) = call(&addr, &msg, Duration::from_millis(800)).await {
                    if v["ok"] == true {
                        node.reached
                            .lock()
                            .expect("lock")
                            .insert(id, Instant::now());
                    }
                }
            }
        });
    futures_join_all(calls).await;
}

/// A member whose recorded API URL is not its own `WK_CLUSTER_APIURL` proposes it to the
/// leader: after it joined (a join request carries none), and on a boot where it changed.
async fn propose_api(node: &Arc<Node>) {
    let s = &node.s;
    let Some(cfg) = node.config() else { return };
    let mismatch = cfg
        .nodes
        .iter()
        .find(|n| n.id == s.node_id)
        .is_some_and(|n| n.api_server_addr != s.api_url);
    if !mismatch || node.joining() {
        return;
    }
    let Some((_, addr)) = node.leader_addr() else {
        return;
    };
    let msg = json!({"type": "propose_api", "id": s.node_id, "api_url": s.api_url});
    if node.leader_view(&cfg) == Some(s.node_id) {
        let _ = node.accept_api(s.node_id, s.api_url.clone());
    } else if let Err(e) = call(&addr, &msg, Duration::from_secs(2)).await {
        eprintln!("proposing the API URL to the leader: {e}");
    }
}

/// `last_offline` as WuKongIM writes it: `2006-01-02 15:04`, Asia/Shanghai (UTC+8).
fn last_offline(secs: u64) -> String {
    let t = secs + 8 * 3600;
    let (days, rest) = (t / 86400, t % 86400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60
    )
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
