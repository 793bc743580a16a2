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
    env.insert("WKSIM_DATA".into(), data.display().to_string());
    env.insert("WKSIM_JOIN_DELAY_MS".into(), "300".into());
    env.insert("WKSIM_MIGRATE_MS".into(), "300".into());
    env.insert("WKSIM_TICK_MS".into(), "50".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    (Settings::from_env(&env).unwrap(), [p[0], p[1], p[2]])
}

fn start(id: u64, seed: Option<&Sim>, name: &str, extra: &[(&str, &str)]) -> Sim {
    let data = std::env::temp_dir().join(format!("wksim-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    start_in(id, seed, &data, extra)
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

/// NodeConfig keys as FACTS.md lists them; `is_leader`, `api_server_addr`, `online`, `status`
/// are omitted when zero or empty.
const NODE_KEYS: [&str; 13] = [
    "allow_vote",
    "api_server_addr",
    "cluster_addr",
    "id",
    "is_leader",
    "last_offline",
    "offline_count",
    "online",
    "role",
    "slot_count",
    "slot_leader_count",
    "status",
    "status_format",
];

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
    let (_, info) = get(&a.api, "/cluster/info").await;
    assert_eq!(info["slots"].as_array().unwrap().len(), 64);
    assert!(info["slots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["migrateFrom"] == 0 && s["migrateTo"] == 0));
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

#[tokio::test(flavor = "multi_thread")]
async fn a_second_node_joins_through_the_seed_1_2_3() {
    let a = start(1001, None, "join-a", &[]);
    get(&a.api, "/health").await;
    let b = start(1002, Some(&a), "join-b", &[]);
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
    // Both nodes tell the same story, and slot migration is planned then done.
    wait_status(&b, 1002, 3).await;
    let t = Instant::now();
    loop {
        let (_, info) = get(&a.api, "/cluster/info").await;
        let slots = info["slots"].as_array().unwrap();
        let moving = slots.iter().filter(|s| s["migrateTo"] != 0).count();
        let led_by_b = slots.iter().filter(|s| s["leader"] == 1002).count();
        if moving == 0 && led_by_b == 32 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "slots did not settle: {moving} moving, {led_by_b} led by 1002"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&b.api, "/health").await.0, 200);
    // /cluster/nodes asks every node; with b gone, it fails for a moment (400).
    let (code, nodes) = get(&a.api, "/cluster/nodes").await;
    assert_eq!((code, nodes["total"].as_u64()), (200, Some(2)));
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, err) = get(&a.api, "/cluster/nodes").await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["status"], 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_with_a_taken_id_replaces_that_node() {
    let a = start(1001, None, "taken-a", &[]);
    get(&a.api, "/health").await;
    let b = start(1002, Some(&a), "taken-b", &[]);
    wait_status(&a, 1002, 3).await;
    let b_addr = b.cluster.clone();
    let c = start(1002, Some(&a), "taken-c", &[]);
    let t = Instant::now();
    loop {
        let (_, list) = get(&a.api, "/cluster/simpleNodes").await;
        let n = node(&list, 1002).unwrap();
        if n["cluster_addr"] == c.cluster.as_str() {
            assert_eq!(list["total"], 2, "replaced, not added");
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

#[tokio::test(flavor = "multi_thread")]
async fn a_data_dir_with_a_config_never_joins_again() {
    let a = start(1001, None, "reuse-a", &[]);
    get(&a.api, "/health").await;
    // Another cluster's node, its data copied to the new node (what FACTS.md says never to do).
    let other = start(1001, None, "reuse-other", &[]);
    get(&other.api, "/health").await;
    let copied = std::env::temp_dir().join(format!("wksim-test-{}-reuse-copy", std::process::id()));
    let _ = std::fs::remove_dir_all(&copied);
    std::fs::create_dir_all(copied.join("cluster/config")).unwrap();
    std::fs::copy(
        other.data.join("cluster/config/remote.json"),
        copied.join("cluster/config/remote.json"),
    )
    .unwrap();
    let before = std::fs::read(copied.join("cluster/config/remote.json")).unwrap();
    let _c = start_in(1003, Some(&a), &copied, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, list) = get(&a.api, "/cluster/simpleNodes").await;
    assert!(
        node(&list, 1003).is_none(),
        "the seed was asked to add it: {list}"
    );
    assert_eq!(list["total"], 1);
    assert_eq!(
        std::fs::read(copied.join("cluster/config/remote.json")).unwrap(),
        before,
        "its config is its old one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_address_is_fixed_at_first_boot() {
    let data = std::env::temp_dir().join(format!("wksim-test-{}-fixed", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
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
    let data = std::env::temp_dir().join(format!("wksim-test-{}-dies", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
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
