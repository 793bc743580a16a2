//! The simulator (in this process, on loopback) and the compose stand-in (on the lab's hosts).
//! Included by `tests/lab.rs`, so the crate keeps one test binary.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use wk_lab::http;
use wk_lab::sim::{Node, Settings};

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

struct Sim {
    api: String,
    manager: String,
    cluster: String,
    data: std::path::PathBuf,
    task: tokio::task::JoinHandle<i32>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn settings(
    id: u64,
    seed: Option<&Sim>,
    data: &std::path::Path,
    extra: &[(&str, &str)],
) -> (Settings, [u16; 3]) {
    let p = free_ports(3);
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("WK_CLUSTER_NODEID".into(), id.to_string());
    env.insert(
        "WK_CLUSTER_SERVERADDR".into(),
        format!("127.0.0.1:{}", p[2]),
    );
    env.insert(
        "WK_CLUSTER_APIURL".into(),
        format!("http://127.0.0.1:{}", p[0]),
    );
    if let Some(s) = seed {
        env.insert("WK_CLUSTER_SEED".into(), format!("1001@{}", s.cluster));
    }
    env.insert(
        "WKSIM_PORTS".into(),
        format!("5001:{},5300:{},11110:{}", p[0], p[1], p[2]),
    );
    env.insert("WKSIM_HOME".into(), data.display().to_string());
    env.insert("WKSIM_JOIN_DELAY_MS".into(), "300".into());
    env.insert("WKSIM_MIGRATE_MS".into(), "300".into());
    env.insert("WKSIM_TICK_MS".into(), "50".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    (Settings::from_env(&env).unwrap(), [p[0], p[1], p[2]])
}

/// An empty data dir of this test process.
fn fresh_dir(name: &str) -> std::path::PathBuf {
    let data = std::env::temp_dir().join(format!("wksim-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    data
}

fn start(id: u64, seed: Option<&Sim>, name: &str, extra: &[(&str, &str)]) -> Sim {
    start_in(id, seed, &fresh_dir(name), extra)
}

fn start_in(id: u64, seed: Option<&Sim>, data: &std::path::Path, extra: &[(&str, &str)]) -> Sim {
    let (s, p) = settings(id, seed, data, extra);
    let node = Node::new(s).unwrap();
    Sim {
        api: format!("127.0.0.1:{}", p[0]),
        manager: format!("127.0.0.1:{}", p[1]),
        cluster: format!("127.0.0.1:{}", p[2]),
        data: data.to_path_buf(),
        task: tokio::spawn(wk_lab::sim::run(node)),
    }
}

async fn get(addr: &str, path: &str) -> (u16, Value) {
    get_h(addr, path, &[]).await
}

async fn get_h(addr: &str, path: &str, h: &[(&str, &str)]) -> (u16, Value) {
    for _ in 0..50 {
        if let Ok((code, body)) = http::get(addr, path, h, Duration::from_secs(2)).await {
            return (
                code,
                serde_json::from_slice(&body)
                    .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned())),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr}{path} does not answer");
}

fn node(list: &Value, id: u64) -> Option<&Value> {
    list["data"].as_array()?.iter().find(|n| n["id"] == id)
}

/// Replaces what changes from run to run (ports, uptimes) so a snapshot compares.
fn normalize(v: &Value, ports: &[(&str, &str)]) -> Value {
    let mut text = v.to_string();
    for (from, to) in ports {
        text = text.replace(from, to);
    }
    let mut v: Value = serde_json::from_str(&text).unwrap();
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "uptime" {
                        *x = Value::String("<uptime>".into());
                    } else {
                        walk(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

fn snapshot(name: &str, got: &Value) {
    let p = repo()
        .join("tests/fixtures/sim")
        .join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(got).unwrap() + "\n";
    if std::env::var_os("WKCTL_BLESS").is_some() {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &text).unwrap();
    }
    let want = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(text == want, "{name} differs from {}:\n{text}", p.display());
}

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// NodeConfig keys of a healthy single node as FACTS.md lists them: every zero value is
/// omitted but `id`, `role`, `cluster_addr` and `allow_vote` (`offline_count`, `last_offline`
/// are zero here).
const NODE_KEYS: [&str; 11] = [
    "allow_vote",
    "api_server_addr",
    "cluster_addr",
    "id",
    "is_leader",
    "online",
    "role",
    "slot_count",
    "slot_leader_count",
    "status",
    "status_format",
];

/// /cluster/info: the raw config, camelCase, zero values omitted, booleans for online.
async fn raw_config_shape(a: &Sim) {
    let (_, info) = get(&a.api, "/cluster/info").await;
    assert_eq!(info["slots"].as_array().unwrap().len(), 64);
    assert!(info["slots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s.get("migrateFrom").is_none()
            && s.get("migrateTo").is_none()
            && s["leader"] == 1001));
    let keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "channelReplicaCount",
            "nodes",
            "slotCount",
            "slotReplicaCount",
            "slots",
            "term",
            "version"
        ]
    );
    let n = &info["nodes"][0];
    assert_eq!(
        (
            n["clusterAddr"].as_str(),
            &n["online"],
            &n["allowVote"],
            n.get("cluster_addr")
        ),
        (
            Some(a.cluster.as_str()),
            &Value::Bool(true),
            &Value::Bool(true),
            None
        ),
        "{n}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_shapes_follow_facts() {
    let a = start(1001, None, "shapes", &[]);
    let ports = [
        (a.api.as_str(), "<api>"),
        (a.manager.as_str(), "<manager>"),
        (a.cluster.as_str(), "<cluster>"),
    ];
    let (code, health) = get(&a.api, "/health").await;
    assert_eq!(
        (code, health.clone()),
        (200, serde_json::json!({"status": "ok"}))
    );
    let (_, simple) = get(&a.api, "/cluster/simpleNodes").await;
    let keys: Vec<&str> = simple["data"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, NODE_KEYS);
    snapshot("simpleNodes-single", &normalize(&simple, &ports));
    let (_, one) = get(&a.api, "/cluster/node").await;
    assert!(one.get("data").is_none(), "/cluster/node is not wrapped");
    snapshot("node-single", &normalize(&one, &ports));
    let (_, nodes) = get(&a.api, "/cluster/nodes").await;
    snapshot("nodes-single", &normalize(&nodes, &ports));
    assert_eq!(one["app_version"], "v2.2.5-20260422", "the build's version");
    raw_config_shape(&a).await;
    // 5300: /health is not there; /metrics needs no auth; /cluster/* needs a bearer token.
    assert_eq!(get(&a.manager, "/health").await.0, 404);
    let (code, metrics) = get(&a.manager, "/metrics").await;
    assert!(
        code == 200
            && metrics
                .as_str()
                .unwrap()
                .contains("# TYPE wukongim_cluster_members gauge")
    );
    assert_eq!(get(&a.manager, "/cluster/simpleNodes").await.0, 401);
    let (code, body) = http::request(
        &a.manager,
        "POST",
        "/manager/login",
        &[("Content-Type", "application/json")],
        br#"{"username":"guest","password":"guest"}"#,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    let token = serde_json::from_slice::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let bearer = format!("Bearer {token}");
    let (code, via_manager) = get_h(
        &a.manager,
        "/cluster/simpleNodes",
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!((code, via_manager), (200, simple));
    let (code, _) = http::request(
        &a.manager,
        "POST",
        "/manager/login",
        &[],
        br#"{"username":"guest","password":"x"}"#,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(code, 400);
}

/// /cluster/nodes asks every node, which tells its own build (it is not in the config:
/// simpleNodes has none); /cluster/info of either node is the config leader's.
async fn builds_and_forwarding(a: &Sim, b: &Sim) {
    let (code, nodes) = get(&a.api, "/cluster/nodes").await;
    assert_eq!((code, nodes["total"].as_u64()), (200, Some(2)));
    assert_eq!(
        node(&nodes, 1001).unwrap()["app_version"],
        "v2.2.5-20260422"
    );
    assert_eq!(
        node(&nodes, 1002).unwrap()["app_version"],
        "v2.2.6-20260601"
    );
    // /cluster/info of either node is the config leader's: the non-leader forwards it.
    let (ca, ia) = get(&a.api, "/cluster/info").await;
    let (cb, ib) = get(&b.api, "/cluster/info").await;
    assert_eq!((ca, cb), (200, 200), "{ia} {ib}");
    assert_eq!(ia["nodes"], ib["nodes"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_node_joins_through_the_seed_1_2_3() {
    let a = start(1001, None, "join-a", &[]);
    get(&a.api, "/health").await;
    let b = start(
        1002,
        Some(&a),
        "join-b",
        &[("WKSIM_APP_VERSION", "v2.2.6-20260601")],
    );
    // Before it has the config, the new node has no slots.
    let mut seen: Vec<u64> = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        let (_, list) = get(&a.api, "/cluster/simpleNodes").await;
        if let Some(n) = node(&list, 1002) {
            let s = n["status"].as_u64().unwrap_or(0);
            if seen.last() != Some(&s) {
                seen.push(s);
                let label = n["status_format"].as_str().unwrap();
                assert_eq!(label, ["", "将加入", "加入中", "已加入"][s as usize]);
            }
            if s == 3 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, [1, 2, 3], "statuses seen on the seed");
    // Both nodes tell the same story. The new node is first a learner of every slot
    // (migrateFrom = migrateTo = its id, slot_count 0), then a replica, then leaders are
    // balanced.
    wait_status(&b, 1002, 3).await;
    let t = Instant::now();
    let mut learner_seen = false;
    loop {
        let (_, info) = get(&a.api, "/cluster/info").await;
        let slots = info["slots"].as_array().unwrap();
        let learning = slots
            .iter()
            .filter(|s| s["migrateFrom"] == 1002 && s["migrateTo"] == 1002)
            .count();
        if learning == 64 {
            let (_, list) = get(&a.api, "/cluster/simpleNodes").await;
            assert!(
                node(&list, 1002).unwrap().get("slot_count").is_none(),
                "a learner has no slots yet: {list}"
            );
            learner_seen = true;
        }
        let moving = slots
            .iter()
            .filter(|s| s["migrateTo"].as_u64().unwrap_or(0) != 0)
            .count();
        let led_by_b = slots.iter().filter(|s| s["leader"] == 1002).count();
        if moving == 0 && led_by_b == 32 {
            assert!(
                learner_seen,
                "the new node was never a learner of every slot"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "slots did not settle: {moving} moving, {led_by_b} led by 1002"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&b.api, "/health").await.0, 200);
    // The join request carried no API URL: the node proposed its own once it had joined.
    let (_, list) = get(&a.api, "/cluster/simpleNodes").await;
    assert_eq!(
        node(&list, 1002).unwrap()["api_server_addr"],
        format!("http://{}", b.api).as_str()
    );
    builds_and_forwarding(&a, &b).await;
    // With b gone, /cluster/nodes fails (400).
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, err) = get(&a.api, "/cluster/nodes").await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["status"], 400);
    // Two nodes, one gone: no quorum. /health reads only the local config and still says 200;
    // only the live signals tell: no `is_leader`, and /cluster/info has no leader.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(get(&a.api, "/health").await.0, 200);
    let (_, list) = get(&a.api, "/cluster/simpleNodes").await;
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n.get("is_leader").is_none()),
        "{list}"
    );
    let (code, info) = get(&a.api, "/cluster/info").await;
    assert_eq!(
        (code, info["msg"].as_str()),
        (400, Some("leader not found"))
    );
}

/// Raft messages go over the sender's own connection: a new node the members cannot dial
/// (its cluster address leads nowhere) reaches the seed, yet never gets the config. It stays at
/// 将加入, its /health says `no slots`, and it dies at the slot timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_the_members_cannot_dial_never_gets_the_config() {
    let a = start(1001, None, "oneway-a", &[]);
    get(&a.api, "/health").await;
    let nowhere = format!("127.0.0.1:{}", free_ports(1)[0]);
    let data = fresh_dir("oneway-b");
    let (s, p) = settings(
        1002,
        Some(&a),
        &data,
        &[
            ("WK_CLUSTER_SERVERADDR", nowhere.as_str()),
            ("WKSIM_SLOT_TIMEOUT_SECS", "6"),
        ],
    );
    let b_api = format!("127.0.0.1:{}", p[0]);
    let task = tokio::spawn(wk_lab::sim::run(Node::new(s).unwrap()));
    wait_status(&a, 1002, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, list) = get(&a.api, "/cluster/simpleNodes").await;
    let n = node(&list, 1002).unwrap();
    assert_eq!(n["status"], 1, "{list}");
    assert_eq!(n["cluster_addr"], nowhere.as_str());
    assert!(
        n.get("online").is_none() && n.get("api_server_addr").is_none(),
        "{list}"
    );
    let (code, health) = get(&b_api, "/health").await;
    assert_eq!((code, health["message"].as_str()), (500, Some("no slots")));
    let code = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("it dies")
        .unwrap();
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_with_a_taken_id_replaces_that_node() {
    let a = start(1001, None, "taken-a", &[]);
    get(&a.api, "/health").await;
    let b = start(1002, Some(&a), "taken-b", &[]);
    wait_status(&a, 1002, 3).await;
    let b_addr = b.cluster.clone();
    let (_, list) = get(&a.api, "/cluster/simpleNodes").await;
    assert_eq!(
        node(&list, 1002).unwrap()["api_server_addr"],
        format!("http://{}", b.api).as_str()
    );
    let c = start(1002, Some(&a), "taken-c", &[]);
    let t = Instant::now();
    loop {
        let (_, list) = get(&a.api, "/cluster/simpleNodes").await;
        let n = node(&list, 1002).unwrap();
        if n["cluster_addr"] == c.cluster.as_str() {
            assert_eq!(list["total"], 2, "replaced, not added");
            // The whole entry: back to 将加入, and b's API URL gone (c proposes its own later).
            assert_eq!(n["status"], 1, "{list}");
            assert_ne!(
                n["api_server_addr"],
                format!("http://{}", b.api).as_str(),
                "{list}"
            );
            break;
        }
        assert_eq!(n["cluster_addr"], b_addr.as_str());
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the entry was not replaced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_status(seed: &Sim, id: u64, status: u64) {
    let t = Instant::now();
    loop {
        let (_, list) = get(&seed.api, "/cluster/simpleNodes").await;
        if node(&list, id).is_some_and(|n| n["status"] == status) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "node {id} did not reach status {status}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// A node joins iff it has a seed and the seed's id is not in its local config: a member
/// restarted on its data never joins again; a data dir of another cluster joins all the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_joins_iff_the_seed_is_not_in_its_config() {
    let a = start(1001, None, "reuse-a", &[]);
    get(&a.api, "/health").await;
    let b_data = fresh_dir("reuse-b");
    let b = start_in(1002, Some(&a), &b_data, &[]);
    wait_status(&a, 1002, 3).await;
    drop(b);
    // Restarted on its data: the seed is in its config, so it does not join.
    let (again, _) = settings(1002, Some(&a), &b_data, &[]);
    assert!(!Node::new(again).unwrap().joining(), "it would join again");
    // Another cluster's node, its data copied to a new node (what FACTS.md says never to do):
    // that config lacks the seed's id, so it joins.
    // (Its node is 1005: one with the seed's id 1001 would count as the seed, and not join.)
    let other = start(1005, None, "reuse-other", &[]);
    get(&other.api, "/health").await;
    let copied = fresh_dir("reuse-copy");
    std::fs::create_dir_all(copied.join("data/cluster/config")).unwrap();
    std::fs::copy(
        other.data.join("data/cluster/config/remote.json"),
        copied.join("data/cluster/config/remote.json"),
    )
    .unwrap();
    // (A cluster of its own: a's lost its quorum when b stopped.)
    let a2 = start(1001, None, "reuse-a2", &[]);
    get(&a2.api, "/health").await;
    let (foreign, _) = settings(1003, Some(&a2), &copied, &[]);
    assert!(Node::new(foreign).unwrap().joining());
    let _c = start_in(1003, Some(&a2), &copied, &[]);
    wait_status(&a2, 1003, 3).await;
}

/// A first boot writes its dirs and an empty remote.json (not initialised) before any join,
/// so a node whose join failed leaves files behind; its /health says `no slots`.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_boot_writes_files_before_it_joins() {
    let nowhere = Sim {
        api: String::new(),
        manager: String::new(),
        cluster: format!("127.0.0.1:{}", free_ports(1)[0]),
        data: std::env::temp_dir(),
        task: tokio::spawn(async { 0 }),
    };
    let b = start(1002, Some(&nowhere), "firstboot", &[]);
    let (code, health) = get(&b.api, "/health").await;
    assert_eq!((code, health["message"].as_str()), (500, Some("no slots")));
    for d in ["data", "logs", "plugins", "data/cfglogdb"] {
        assert!(b.data.join(d).is_dir(), "{d} is not there");
    }
    let remote = b.data.join("data/cluster/config/remote.json");
    assert_eq!(std::fs::read(&remote).unwrap(), b"", "remote.json is empty");
    let (code, list) = get(&b.api, "/cluster/simpleNodes").await;
    assert_eq!(
        (code, list),
        (200, serde_json::json!({"total": 0, "data": []}))
    );
}

/// `wk.yaml` in the home is read (viper keys: `cluster.nodeId` is WK_CLUSTER_NODEID), the
/// environment overrides it, and its `rootDir` moves the data.
#[tokio::test(flavor = "multi_thread")]
async fn wk_yaml_and_the_environment() {
    let home = fresh_dir("yaml");
    std::fs::create_dir_all(&home).unwrap();
    let root = home.join("elsewhere");
    std::fs::write(
        home.join("wk.yaml"),
        format!(
            "rootDir: \"{}\"\ncluster:\n  nodeId: 1007\n  slotCount: 32\njwt:\n  secret: from-yaml\n",
            root.display()
        ),
    )
    .unwrap();
    let env = |pairs: &[(&str, &str)]| {
        let mut m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.insert("WKSIM_HOME".into(), home.display().to_string());
        m
    };
    let s = Settings::from_env(&env(&[])).unwrap();
    assert_eq!(
        (s.node_id, s.slot_count, s.jwt_secret.as_str()),
        (1007, 32, "from-yaml")
    );
    assert_eq!(
        s.config_file(),
        root.join("data/cluster/config/remote.json")
    );
    let s = Settings::from_env(&env(&[("WK_CLUSTER_NODEID", "1009")])).unwrap();
    assert_eq!(s.node_id, 1009, "the environment overrides wk.yaml");
    // The image's own wk.yaml, relative rootDir: relative to the working directory.
    std::fs::write(home.join("wk.yaml"), "rootDir: \"./wukongimdata\"\n").unwrap();
    let s = Settings::from_env(&env(&[])).unwrap();
    assert_eq!(
        s.root_dir,
        std::env::current_dir().unwrap().join("./wukongimdata")
    );
}

/// Different slot counts never agree: the node that joins with another count reports `slot
/// count not match` once it has the cluster's config.
#[tokio::test(flavor = "multi_thread")]
async fn a_slot_count_that_differs_never_matches() {
    let a = start(1001, None, "slots-a", &[]);
    get(&a.api, "/health").await;
    let b = start(1002, Some(&a), "slots-b", &[("WK_CLUSTER_SLOTCOUNT", "32")]);
    let t = Instant::now();
    loop {
        let (_, h) = get(&b.api, "/health").await;
        if h["message"] == "slot count not match" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "{h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_address_is_fixed_at_first_boot() {
    let data = fresh_dir("fixed");
    let a = start_in(1001, None, &data, &[]);
    let (_, first) = get(&a.api, "/cluster/node").await;
    let first_addr = first["cluster_addr"].clone();
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Restarted with another WK_CLUSTER_SERVERADDR (new ports): the recorded address stays.
    let b = start_in(1001, None, &data, &[]);
    let (_, again) = get(&b.api, "/cluster/node").await;
    assert_eq!(again["cluster_addr"], first_addr);
    assert_ne!(first_addr, b.cluster.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn manager_token_and_jwt_secret() {
    let a = start(
        1001,
        None,
        "token",
        &[("WK_MANAGERTOKEN", "s3cret"), ("WK_JWT_SECRET", "one")],
    );
    assert_eq!(
        get_h(&a.api, "/health", &[("token", "s3cret")]).await.0,
        200
    );
    assert_eq!(get(&a.api, "/health").await.0, 401);
    assert_eq!(get(&a.api, "/cluster/simpleNodes").await.0, 401);
    let b = start(1001, None, "token-b", &[("WK_JWT_SECRET", "two")]);
    let (_, body) = http::request(
        &a.manager,
        "POST",
        "/manager/login",
        &[],
        br#"{"username":"guest","password":"guest"}"#,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let bearer = format!(
        "Bearer {}",
        serde_json::from_slice::<Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        get_h(
            &a.manager,
            "/cluster/simpleNodes",
            &[("Authorization", &bearer), ("token", "s3cret")]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        get_h(
            &b.manager,
            "/cluster/simpleNodes",
            &[("Authorization", &bearer)]
        )
        .await
        .0,
        401,
        "another secret refuses the token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_wukongim_dies_of_at_start() {
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    assert!(Settings::from_env(&env(&[("WK_CLUSTER_NODEID", "1024")]))
        .unwrap_err()
        .contains("out of range"));
    assert!(
        Settings::from_env(&env(&[("WK_CLUSTER_SEED", "1001@10.0.0.1")]))
            .unwrap_err()
            .contains("no port")
    );
    assert_eq!(
        Settings::from_env(&env(&[])).unwrap().node_id,
        1001,
        "the default id is 1001"
    );
    for garbage in ["0", "node2", "-4"] {
        assert_eq!(
            Settings::from_env(&env(&[("WK_CLUSTER_NODEID", garbage)]))
                .unwrap()
                .node_id,
            1001,
            "`{garbage}` silently becomes 1001"
        );
    }
    // An unreachable seed: no slot leaders, so the node dies after the slot timeout.
    let dead = Sim {
        api: String::new(),
        manager: String::new(),
        cluster: free_ports(1)
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .next()
            .unwrap(),
        data: std::env::temp_dir(),
        task: tokio::spawn(async { 0 }),
    };
    let data = fresh_dir("dies");
    let (s, _) = settings(
        1005,
        Some(&dead),
        &data,
        &[("WKSIM_SLOT_TIMEOUT_SECS", "1")],
    );
    let node = Node::new(s).unwrap();
    let t = Instant::now();
    let code = tokio::time::timeout(Duration::from_secs(10), wk_lab::sim::run(node))
        .await
        .expect("it exits");
    assert_eq!(code, 2);
    assert!(t.elapsed() >= Duration::from_secs(1));
}
