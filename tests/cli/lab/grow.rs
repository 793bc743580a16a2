//! Growing a cluster that grew before (issue 9), on lab hosts node12..node15: 1 → 2 → 3 in
//! separate runs with the operator's hand edits kept and a client connection held through the
//! nginx TCP stream, a node added while the seed is stopped, the scale-out document's two-node
//! result made by hand and grown by wkctl, and a gateway host that runs no WuKongIM.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wk_lab::deploy::SingleNode;
use wk_lab::Lab;

use super::{lab_with, paused, reset, text, wkctl};

const HOSTS: [&str; 4] = ["node12", "node13", "node14", "node15"];

/// An inventory naming lab hosts: `nodes` as (name, lab host, id; 0 = the gateway host).
fn inventory(lab: &Lab, dir: &Path, gateway: &str, nodes: &[(&str, &str, u16)]) {
    let gw_ip = &lab
        .host(nodes.iter().find(|n| n.0 == gateway).unwrap().1)
        .ip;
    let mut t = format!(
        "cluster: grow\nssh:\n  identity_files: [{}]\n  known_hosts: {}\ngateway:\n  node: {gateway}\n  external_address: {gw_ip}\nnodes:\n",
        lab.key().display(),
        lab.known_hosts().display()
    );
    for (name, host, id) in nodes {
        let h = lab.host(host);
        t.push_str(&format!("  - name: {name}\n"));
        if *id == 0 {
            t.push_str("    role: gateway\n");
        } else {
            t.push_str(&format!("    id: {id}\n"));
        }
        t.push_str(&format!(
            "    internal_address: {}\n    ssh: {{ user: {} }}\n",
            h.ip, h.user
        ));
    }
    std::fs::write(dir.join("cluster.yml"), t).unwrap();
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wkctl-lab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn expand(dir: &Path, add: &str) -> String {
    let out = wkctl(dir, &["expand", "--add", add]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "expand --add {add}:\n{all}");
    all
}

fn joined_count(dir: &Path) -> usize {
    let st = wkctl(dir, &["status"]);
    text(&st.stdout).matches("3 已加入").count()
}

/// The lines of `after` that are not in `before`, with `before` required to be what is left of
/// `after` once they are taken out (in order): only lines were added, none changed.
fn added_lines(before: &str, after: &str) -> Vec<String> {
    let b: Vec<&str> = before.lines().collect();
    let mut added = Vec::new();
    let mut i = 0;
    for l in after.lines() {
        if i < b.len() && b[i] == l {
            i += 1;
        } else {
            added.push(l.to_string());
        }
    }
    assert_eq!(
        i,
        b.len(),
        "a line of the old file is gone or changed:\n--- before\n{before}\n--- after\n{after}"
    );
    added
}

fn sha(lab: &Lab, host: &str, file: &str) -> String {
    lab.sh(host, &format!("sha256sum {file}")).unwrap()
}

#[test]
fn a_grown_cluster_grows_again() {
    let Some(lab) = lab_with(15) else { return };
    let _turn = hosts_turn();
    for h in HOSTS {
        reset(&lab, h);
    }
    let ip = |h: &str| lab.host(h).ip.clone();

    // ---- 1 → 2 → 3 in separate runs, hand edits in between, a client connection held.
    lab.deploy_single("node12", &SingleNode::default()).unwrap();
    let dir = fresh_dir("grow");
    inventory(
        &lab,
        &dir,
        "node1",
        &[
            ("node1", "node12", 1001),
            ("node2", "node13", 1002),
            ("node3", "node14", 1003),
            ("node4", "node15", 1004),
        ],
    );
    let first = expand(&dir, "node2");
    assert!(
        first.contains("node3, node4 are in cluster.yml but not in the cluster"),
        "declared nodes are told apart from deployed ones: {first}"
    );
    assert_eq!(joined_count(&dir), 2);

    // The operator edits nginx.conf and prometheus.yml by hand, and reloads both.
    let conf = lab.sh("node12", "cat ~/wukongim/nginx.conf").unwrap();
    let mut edited = conf
        .replace(
            "    upstream wukongimapi {\n",
            "    upstream wukongimapi {\n        least_conn;   # ops: long polls\n",
        )
        .replace(":5001;\n", ":5001 max_fails=3 fail_timeout=30s;\n")
        .replace(
            "    server {\n        listen 5001;",
            "    # ops: a page for the monitoring box\n    server {\n        listen 8080;\n        location / { return 200 \"ops\\n\"; }\n    }\n\n    server {\n        listen 5001;",
        );
    edited.insert_str(0, "# ops: edited by hand on purpose\n");
    assert_ne!(edited, conf);
    lab.put("node12", "~/wukongim/nginx.conf", &edited).unwrap();
    let prom = lab.sh("node12", "cat ~/wukongim/prometheus.yml").unwrap();
    let prom_edited = format!(
        "{prom}  # ops: Prometheus watches itself\n  - job_name: ops-self\n    static_configs:\n      - targets: ['127.0.0.1:9090']\n"
    );
    lab.put("node12", "~/wukongim/prometheus.yml", &prom_edited)
        .unwrap();
    lab.sh(
        "node12",
        "cd ~/wukongim && docker compose exec -T nginx nginx -t && docker compose kill -s HUP nginx && docker compose kill -s HUP prometheus",
    )
    .unwrap();
    let composes = |hosts: &[&str]| -> Vec<String> {
        hosts
            .iter()
            .map(|h| sha(&lab, h, "~/wukongim/docker-compose.yml"))
            .collect()
    };
    let members_before = composes(&["node12", "node13"]);
    // nginx's master is PID 1 of its container: a reload keeps it, a restart does not.
    let nginx_pid = || {
        lab.docker(
            "node12",
            &[
                "inspect",
                "-f",
                "{{.State.Pid}} {{.State.StartedAt}}",
                "wukongim-nginx-1",
            ],
        )
        .unwrap()
    };
    let nginx_before = nginx_pid();

    // A client on the load balancer's TCP port, through nginx's stream to a member.
    lab.guard(&ip("node12")).unwrap();
    let conn = TcpStream::connect((ip("node12").as_str(), 15100)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("wksim node 100"), "{greeting}");

    let third = expand(&dir, "node3");
    assert!(third.contains("nginx reloaded"), "{third}");
    assert_eq!(joined_count(&dir), 3);
    // The connection lived through the reload.
    (&conn).write_all(b"still here\n").unwrap();
    let mut echo = String::new();
    reader.read_line(&mut echo).unwrap();
    assert_eq!(echo, "still here\n", "the held connection was dropped");
    assert_eq!(
        nginx_pid(),
        nginx_before,
        "nginx was reloaded, not restarted"
    );
    // What the containers run is what the run wrote (a bind-mounted file keeps its inode).
    for (svc, host_file, inner) in [
        ("nginx", "~/wukongim/nginx.conf", "/etc/nginx/nginx.conf"),
        (
            "prometheus",
            "~/wukongim/prometheus.yml",
            "/etc/prometheus/prometheus.yml",
        ),
    ] {
        let seen = lab
            .sh(
                "node12",
                &format!("cd ~/wukongim && docker compose exec -T {svc} sha256sum {inner}"),
            )
            .unwrap();
        assert_eq!(
            seen.split_whitespace().next(),
            sha(&lab, "node12", host_file).split_whitespace().next(),
            "the {svc} container sees another {inner} than {host_file}"
        );
    }
    // A request through the load balancer's 15001 reaches node3.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let t = std::time::Instant::now();
    while !ids.contains(&1003) && t.elapsed() < Duration::from_secs(20) {
        lab.guard(&ip("node12")).unwrap();
        if let Ok((200, body)) = rt.block_on(wk_lab::http::get(
            &format!("{}:15001", ip("node12")),
            "/cluster/node",
            &[],
            Duration::from_secs(3),
        )) {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(id) = v["id"].as_u64() {
                ids.insert(id);
            }
        }
    }
    assert!(
        ids.contains(&1003),
        "no request through 15001 reached node3: {ids:?}"
    );
    // The members' compose files were already right: untouched.
    assert_eq!(composes(&["node12", "node13"]), members_before);
    // Hand edits kept: only node3's lines were added.
    let conf_after = lab.sh("node12", "cat ~/wukongim/nginx.conf").unwrap();
    let added = added_lines(&edited, &conf_after);
    let n3 = ip("node14");
    assert_eq!(
        added,
        vec![
            format!("        server {n3}:5001 max_fails=3 fail_timeout=30s;"),
            format!("        server {n3}:5172;"),
            format!("        server {n3}:5300;"),
            format!("        server {n3}:5200;"),
            format!("        server {n3}:5100;"),
        ],
        "{conf_after}"
    );
    let prom_after = lab.sh("node12", "cat ~/wukongim/prometheus.yml").unwrap();
    let added = added_lines(&prom_edited, &prom_after);
    assert!(
        added.len() == 5
            && added[0].contains("wukongim-1003-trace-metrics")
            && added.iter().any(|l| l.contains(&format!("{n3}:5300"))),
        "{prom_after}"
    );
    // Prometheus read it: its running configuration has node3's job.
    let running = lab
        .sh("node12", "wget -q -Y off -O - http://127.0.0.1:9090/api/v1/status/config 2>/dev/null || curl -s http://127.0.0.1:9090/api/v1/status/config")
        .unwrap();
    assert!(running.contains("wukongim-1003-trace-metrics"), "{running}");
    // And scrapes node3 (its target up within two scrape intervals).
    let target = format!("{}:5300", ip("node14"));
    let t = std::time::Instant::now();
    loop {
        let targets = lab
            .sh(
                "node12",
                "wget -q -Y off -O - http://127.0.0.1:9090/api/v1/targets",
            )
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&targets).unwrap_or_default();
        let up = v["data"]["activeTargets"].as_array().is_some_and(|a| {
            a.iter()
                .any(|t| t["labels"]["instance"] == target.as_str() && t["health"] == "up")
        });
        if up {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "Prometheus does not scrape {target}: {targets}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A second run of the same expansion changes nothing.
    let again = expand(&dir, "node3");
    assert!(again.contains(" 0 step(s) changed, "), "{again}");

    // ---- node4 joins while node1 (the inventory's seed) is stopped: through node2.
    lab.sh("node12", "cd ~/wukongim && docker compose stop wukongim")
        .unwrap();
    // As an operator finds it: the others have seen node1 go (offline after some 6 s) and work
    // without it (a config leader again: /cluster/info answers only through one). Right after
    // the stop they still take node1 for online, and wkctl rightly finds no member whose
    // cluster works.
    let t = std::time::Instant::now();
    loop {
        lab.guard(&ip("node13")).unwrap();
        let get = |path: &str| {
            rt.block_on(wk_lab::http::get(
                &format!("{}:5001", ip("node13")),
                path,
                &[],
                Duration::from_secs(3),
            ))
        };
        let gone = matches!(get("/cluster/simpleNodes"), Ok((200, body))
            if serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default()["data"]
                .as_array()
                .is_some_and(|d| d.iter().any(|n| n["id"] == 1001 && n.get("online").is_none())));
        if gone
            && matches!(get("/cluster/info"), Ok((200, _)))
            && matches!(get("/health"), Ok((200, _)))
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "node2's cluster did not go on without node1"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let fourth = expand(&dir, "node4");
    assert!(
        fourth.contains("the new nodes join through node2"),
        "{fourth}"
    );
    let seed_env = lab
        .sh(
            "node15",
            "grep WK_CLUSTER_SEED ~/wukongim/docker-compose.yml",
        )
        .unwrap();
    assert!(
        seed_env.contains(&format!("1002@{}:11110", ip("node13"))),
        "{seed_env}"
    );
    let ps = lab
        .sh("node12", "cd ~/wukongim && docker compose ps")
        .unwrap();
    assert!(
        !ps.lines().any(|l| l.contains("wukongim-wukongim-1")),
        "node1 stays stopped as the operator left it: {ps}"
    );
    lab.sh("node12", "cd ~/wukongim && docker compose start wukongim")
        .unwrap();
    lab.wait_joined("node12", &ip("node13"), 1001, Duration::from_secs(30))
        .unwrap();
    let t = std::time::Instant::now();
    while joined_count(&dir) != 4 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        joined_count(&dir),
        4,
        "{}",
        text(&wkctl(&dir, &["status"]).stdout)
    );

    // `status` tells what nginx runs, not what the host's file says: nginx.conf replaced by
    // rename (as some editors save) is not what the nginx container sees.
    lab.sh(
        "node12",
        "cd ~/wukongim && cp -p nginx.conf nginx.conf.new && echo '# saved by an editor' >> nginx.conf.new && mv nginx.conf.new nginx.conf",
    )
    .unwrap();
    let st = wkctl(&dir, &["status"]);
    let said = text(&st.stdout);
    assert_eq!(st.status.code(), Some(1), "{said}");
    assert!(
        said.contains("the nginx container runs another nginx.conf"),
        "{said}"
    );
    lab.sh(
        "node12",
        "cd ~/wukongim && docker compose up -d --force-recreate nginx",
    )
    .unwrap();
    let st = wkctl(&dir, &["status"]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st.stdout));
}

/// The scale-out document's result made by hand (its files' shape, our own text), grown to
/// three by wkctl; then a gateway host that runs only nginx and Prometheus.
#[test]
fn a_hand_made_cluster_and_a_gateway_host() {
    let Some(lab) = lab_with(15) else { return };
    let _turn = hosts_turn();
    for h in HOSTS {
        reset(&lab, h);
    }
    let ip = |h: &str| lab.host(h).ip.clone();
    let (ip1, ip2, ip3) = (ip("node12"), ip("node13"), ip("node14"));

    // ---- By hand, as the document does it: node1 as `wukongim1`, node2's own compose file
    // (without the demo port, as the document forgets), nginx and the jobs on node1.
    let single = SingleNode {
        service: "wukongim1".into(),
        ..SingleNode::default()
    };
    lab.deploy_single("node12", &single).unwrap();
    let lb = |p: u16| format!("{ip1}:{p}");
    lab.sh(
        "node12",
        &format!(
            "cd ~/wukongim && sed -i 's|      - \"WK_EXTERNAL_IP={ip1}\" # the server.s public address|      - \"WK_EXTERNAL_IP={ip1}\"\\n      - \"WK_EXTERNAL_WSADDR=ws://{ws}\"\\n      - \"WK_EXTERNAL_TCPADDR={tcp}\"|' docker-compose.yml && grep -q WK_EXTERNAL_WSADDR docker-compose.yml",
            ws = lb(15200),
            tcp = lb(15100)
        ),
    )
    .unwrap();
    let node2_compose = format!(
        "version: '3.7'\nservices:\n  wukongim2:\n    image: registry.cn-shanghai.aliyuncs.com/wukongim/wukongim:v2\n    environment:\n      - \"WK_CLUSTER_NODEID=1002\"\n      - \"WK_CLUSTER_SERVERADDR={ip2}:11110\"\n      - \"WK_CLUSTER_SEED=1001@{ip1}:11110\"\n      - \"WK_CLUSTER_APIURL=http://{ip2}:5001\"\n      - \"WK_TRACE_PROMETHEUSAPIURL=http://{ip1}:9090\"\n      - \"WK_MODE=release\"\n      - \"WK_EXTERNAL_IP={ip2}\"\n      - \"WK_EXTERNAL_WSADDR=ws://{ws}\"\n      - \"WK_EXTERNAL_TCPADDR={tcp}\"\n    restart: always\n    volumes:\n      - ./wukongim_data:/root/wukongim\n    ports:\n      - 5001:5001\n      - 5100:5100\n      - 5200:5200\n      - 5300:5300\n      - 11110:11110\n",
        ws = lb(15200),
        tcp = lb(15100)
    );
    lab.put("node13", "~/wukongim/docker-compose.yml", &node2_compose)
        .unwrap();
    let upstream = |name: &str, port: u16| {
        format!("    upstream {name} {{\n        server {ip1}:{port};\n        server {ip2}:{port};\n    }}\n")
    };
    let hand_conf = format!(
        "user  nginx;\nworker_processes  auto;\npid        /var/run/nginx.pid;\n\nevents {{\n    worker_connections  4096;   # per worker\n}}\n\nhttp {{\n    include       /etc/nginx/mime.types;\n    default_type  application/octet-stream;\n    # api\n{}    # demo\n{}    # manager\n{}    # ws\n{}    server {{\n        listen 5001;\n        location / {{ proxy_pass http://wukongimapi; }}\n    }}\n    server {{\n        listen 5172;\n        location / {{ proxy_pass http://wukongimdemo; }}\n    }}\n    server {{\n        listen 5300;\n        location / {{ proxy_pass http://wukongimanager; }}\n    }}\n    server {{\n        listen 5200;\n        location / {{\n            proxy_pass http://wukongimws;\n            proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection \"upgrade\";\n        }}\n    }}\n}}\n\nstream {{\n    # tcp\n{}    server {{\n        listen 5100;\n        proxy_pass wukongimtcp;\n    }}\n}}\n",
        upstream("wukongimapi", 5001),
        upstream("wukongimdemo", 5172),
        upstream("wukongimanager", 5300),
        upstream("wukongimws", 5200),
        upstream("wukongimtcp", 5100),
    );
    lab.put("node12", "~/wukongim/nginx.conf", &hand_conf)
        .unwrap();
    lab.sh(
        "node12",
        &format!("cd ~/wukongim && printf '  nginx:\\n    image: registry.cn-shanghai.aliyuncs.com/wukongim/nginx:1.27.0\\n    restart: always\\n    volumes:\\n      - ./nginx.conf:/etc/nginx/nginx.conf\\n    ports:\\n      - \"15001:5001\"\\n      - \"15100:5100\"\\n      - \"15200:5200\"\\n      - \"15300:5300\"\\n      - \"15172:5172\"\\n' >> docker-compose.yml && printf '  - job_name: wukongim2-trace-metrics\\n    static_configs:\\n    - targets: [\"{ip2}:5300\"]\\n      labels:\\n        id: \"1002\"\\n' >> prometheus.yml && docker compose up -d"),
    )
    .unwrap();
    lab.sh("node13", "cd ~/wukongim && docker compose up -d")
        .unwrap();
    lab.wait_joined("node12", &ip1, 1002, Duration::from_secs(60))
        .unwrap();

    // ---- wkctl grows it to three.
    let dir = fresh_dir("byhand");
    inventory(
        &lab,
        &dir,
        "node1",
        &[
            ("node1", "node12", 1001),
            ("node2", "node13", 1002),
            ("node3", "node14", 1003),
        ],
    );
    let before: Vec<String> = ["node12", "node13"]
        .iter()
        .map(|h| sha(&lab, h, "~/wukongim/docker-compose.yml"))
        .collect();
    let prom_before = lab.sh("node12", "cat ~/wukongim/prometheus.yml").unwrap();
    let out = expand(&dir, "node3");
    assert!(out.contains("nginx reloaded"), "{out}");
    let after: Vec<String> = ["node12", "node13"]
        .iter()
        .map(|h| sha(&lab, h, "~/wukongim/docker-compose.yml"))
        .collect();
    assert_eq!(
        before, after,
        "the hand-made members' files were right: untouched"
    );
    let conf_after = lab.sh("node12", "cat ~/wukongim/nginx.conf").unwrap();
    assert_eq!(
        added_lines(&hand_conf, &conf_after).len(),
        5,
        "{conf_after}"
    );
    let prom_after = lab.sh("node12", "cat ~/wukongim/prometheus.yml").unwrap();
    let added = added_lines(&prom_before, &prom_after);
    assert!(
        added
            .iter()
            .any(|l| l.contains("wukongim-1003-trace-metrics"))
            && !added
                .iter()
                .any(|l| l.contains("1001") || l.contains("1002")),
        "node1's and node2's jobs (by their id labels) stay as they were: {prom_after}"
    );
    assert_eq!(joined_count(&dir), 3);

    // ---- A gateway host (node12) without WuKongIM: node13 runs the single node, node14 joins.
    for h in ["node12", "node13", "node14"] {
        reset(&lab, h);
    }
    lab.deploy_single(
        "node13",
        &SingleNode {
            with_prometheus: false,
            ..SingleNode::default()
        },
    )
    .unwrap();
    let gw_compose = "services:\n  prometheus: # the cluster's metrics\n    image: registry.cn-shanghai.aliyuncs.com/wukongim/prometheus:v2.53.1\n    volumes:\n      - \"./prometheus.yml:/etc/prometheus/prometheus.yml\"\n    ports:\n      - \"9090:9090\"\n";
    let gw_prom = format!("global:\n  scrape_interval: 10s\nscrape_configs:\n  - job_name: node1\n    static_configs:\n      - targets: ['{ip2}:5300']\n        labels:\n          id: \"1001\"\n");
    lab.put("node12", "~/wukongim/docker-compose.yml", gw_compose)
        .unwrap();
    lab.put("node12", "~/wukongim/prometheus.yml", &gw_prom)
        .unwrap();
    lab.sh("node12", "cd ~/wukongim && docker compose up -d")
        .unwrap();
    let dir = fresh_dir("gwhost");
    inventory(
        &lab,
        &dir,
        "gw",
        &[
            ("gw", "node12", 0),
            ("node1", "node13", 1001),
            ("node2", "node14", 1002),
        ],
    );
    expand(&dir, "node2");
    // node1 patched for its addresses only: the load balancer's, on the gateway host.
    let n1 = lab
        .sh("node13", "cat ~/wukongim/docker-compose.yml")
        .unwrap();
    assert!(
        n1.contains(&format!("WK_EXTERNAL_TCPADDR={ip1}:15100"))
            && n1.contains(&format!("WK_EXTERNAL_WSADDR=ws://{ip1}:15200")),
        "{n1}"
    );
    // The gateway runs nginx and Prometheus only, with both nodes in every upstream.
    let ps = lab
        .sh("node12", "cd ~/wukongim && docker compose ps")
        .unwrap();
    assert!(
        ps.contains("nginx") && ps.contains("prometheus") && !ps.contains("wukongim-wukongim"),
        "{ps}"
    );
    let conf = lab.sh("node12", "cat ~/wukongim/nginx.conf").unwrap();
    assert!(
        conf.contains(&format!("server {ip2}:5100;"))
            && conf.contains(&format!("server {ip3}:5100;")),
        "{conf}"
    );
    let prom = lab.sh("node12", "cat ~/wukongim/prometheus.yml").unwrap();
    assert!(
        prom.starts_with(&gw_prom) && prom.contains("wukongim-1002-trace-metrics"),
        "{prom}"
    );
    // A client through the gateway reaches a node.
    lab.guard(&ip1).unwrap();
    let conn = TcpStream::connect((ip1.as_str(), 15100)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = String::new();
    BufReader::new(conn).read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("wksim node 100"), "{greeting}");
    assert_eq!(joined_count(&dir), 2);
}

/// A gateway that is a member starts nginx in that member's compose call; when the member was
/// stopped (by the operator, after the preflight) and its compose file does not change, the
/// member stays stopped and nginx alone is brought up to date (here: reloaded with the third
/// node in its upstreams). The run is killed once that step is done, and rolled back.
#[test]
fn a_stopped_gateway_member_stays_stopped_while_nginx_reloads() {
    let Some(lab) = lab_with(15) else { return };
    let _turn = hosts_turn();
    for h in HOSTS {
        reset(&lab, h);
    }
    lab.deploy_single("node12", &SingleNode::default()).unwrap();
    let dir = fresh_dir("stopped-member");
    inventory(
        &lab,
        &dir,
        "node1",
        &[
            ("node1", "node12", 1001),
            ("node2", "node13", 1002),
            ("node3", "node14", 1003),
        ],
    );
    expand(&dir, "node2");
    let pause = dir.join("member-up.pause");
    let mut run = paused(
        &dir,
        &["--output", "json", "expand", "--add", "node3", "--yes"],
        "member-up@node1:start",
        &pause,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    lab.sh("node12", "cd ~/wukongim && docker compose stop wukongim")
        .unwrap();
    std::fs::remove_file(&pause).unwrap();
    let mut note = None;
    for line in BufReader::new(run.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let e: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if e["id"] == "member-up@node1" && e["event"] != "step_started" {
            note = Some(line);
            break;
        }
    }
    run.kill().unwrap();
    run.wait().unwrap();
    let note = note.expect("member-up@node1 ended");
    assert!(
        note.contains("\"step_ok\"") || note.contains("\"step_changed\""),
        "{note}"
    );
    assert!(
        note.contains(
            "its WuKongIM is not running, and its compose file did not change: left stopped"
        ),
        "{note}"
    );
    let ps = lab
        .sh(
            "node12",
            "cd ~/wukongim && docker compose ps --services --filter status=running",
        )
        .unwrap();
    assert!(!ps.lines().any(|l| l == "wukongim"), "{ps}");
    assert!(ps.lines().any(|l| l == "nginx"), "{ps}");
    let seen = lab
        .sh(
            "node12",
            "cd ~/wukongim && docker compose exec -T nginx cat /etc/nginx/nginx.conf",
        )
        .unwrap();
    assert!(
        seen.contains(&format!("server {}:5001", lab.host("node14").ip)),
        "nginx runs the file with node3: {seen}"
    );
    // The operator starts it again; the rollback asks the cluster whether node3 joined.
    lab.sh("node12", "cd ~/wukongim && docker compose start wukongim")
        .unwrap();
    let ip1 = lab.host("node12").ip.clone();
    lab.wait_joined("node12", &ip1, 1001, Duration::from_secs(60))
        .unwrap();
    let rb = wkctl(&dir, &["rollback", "--yes"]);
    assert_eq!(
        rb.status.code(),
        Some(0),
        "{}{}",
        text(&rb.stdout),
        text(&rb.stderr)
    );
}

/// The tests of this file share hosts node12..node15: each holds this lock while it uses them.
static HOSTS_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hosts_turn() -> std::sync::MutexGuard<'static, ()> {
    HOSTS_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
