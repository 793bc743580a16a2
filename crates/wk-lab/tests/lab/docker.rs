//! Real Docker and Compose on the lab's hosts, driven over OpenSSH as an operator would; what the
//! containers do is read from the host's engine (as root, through its socket). Each test has its
//! hosts to itself: node1+node2 (gateway), node3 (restart loop), node4 (recreate), node5 (where
//! the data goes), bastion (config checks), mix1..mix4 (the fleet's odd hosts).

use std::time::{Duration, Instant};

use serde_json::Value;
use wk_lab::deploy::SingleNode;
use wk_lab::{http, Lab};

use super::main_lab as lab;

/// Every container of the host's engine, as `docker inspect` describes it.
fn ps(lab: &Lab, host: &str) -> Vec<Value> {
    let ids = lab.docker(host, &["ps", "-aq"]).unwrap();
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["inspect"];
    args.extend(ids);
    serde_json::from_str(&lab.docker(host, &args).unwrap()).unwrap()
}

/// The container of a compose service.
fn svc<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|c| c["Config"]["Labels"]["com.docker.compose.service"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {list:?}"))
}

fn state<'a>(list: &'a [Value], name: &str) -> &'a str {
    svc(list, name)["State"]["Status"].as_str().unwrap_or("")
}

fn reset(lab: &Lab, host: &str) {
    lab.reset_host(host).unwrap();
}

async fn http_get(lab: &Lab, ip: &str, port: u16, path: &str) -> Result<(u16, Vec<u8>), String> {
    lab.guard(ip).map_err(|e| e.to_string())?;
    http::get(&format!("{ip}:{port}"), path, &[], Duration::from_secs(3)).await
}

/// The lab's inventory for node1 (gateway, seed) and node2, rendered by wkctl's own plan.
fn plan_files(lab: &Lab) -> (String, String, String) {
    let (n1, n2) = (lab.host("node1"), lab.host("node2"));
    let inv = format!(
        "cluster: lab\ngateway:\n  node: node1\n  external_address: {}\nnodes:\n  - name: node1\n    id: 1001\n    internal_address: {}\n  - name: node2\n    id: 1002\n    internal_address: {}\n",
        n1.ip, n1.ip, n2.ip
    );
    let inv = wk_plan::Inventory::parse("lab.yml", &inv).unwrap();
    let req = wk_plan::PlanRequest {
        add: vec!["node2".into()],
        ..Default::default()
    };
    let plan = wk_plan::build(&inv, "", &wk_plan::Sources::embedded(), &req).unwrap();
    let mut compose = String::new();
    let mut nginx_conf = String::new();
    let mut nginx_service = String::new();
    for s in &plan.steps {
        match &s.action {
            wk_plan::Action::Template { dest, content, .. }
                if s.host == "node2" && dest.ends_with("docker-compose.yml") =>
            {
                compose = content.clone()
            }
            wk_plan::Action::NginxConf { content, .. } => nginx_conf = content.clone(),
            wk_plan::Action::ComposeService { content, .. } => nginx_service = content.clone(),
            _ => {}
        }
    }
    (compose, nginx_conf, nginx_service)
}

#[test]
fn the_gateway_nginx_balances_http_and_tcp_to_both_nodes() {
    let Some(lab) = lab() else { return };
    for h in ["node1", "node2"] {
        reset(&lab, h);
        lab.put(
            h,
            "~/.config/wksim/env",
            "WKSIM_JOIN_DELAY_MS=300\nWKSIM_MIGRATE_MS=300\n",
        )
        .unwrap();
    }
    lab.deploy_single("node1", &SingleNode::default()).unwrap();
    let (compose, nginx_conf, nginx_service) = plan_files(&lab);
    lab.put("node2", "~/wukongim/docker-compose.yml", &compose)
        .unwrap();
    lab.sh("node2", "cd ~/wukongim && docker compose up -d")
        .unwrap();
    let (n1, n2) = (lab.host("node1").ip.clone(), lab.host("node2").ip.clone());
    lab.wait_joined("node1", &n1, 1002, Duration::from_secs(30))
        .unwrap();
    // The nginx service and its config on node1, as the expansion adds them.
    let body: String = nginx_service
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    lab.sh(
        "node1",
        &format!("printf '%s' '  nginx:\n{body}' >> ~/wukongim/docker-compose.yml"),
    )
    .unwrap();
    lab.put("node1", "~/wukongim/nginx.conf", &nginx_conf)
        .unwrap();
    let up = lab
        .ssh("node1", "cd ~/wukongim && docker compose up -d")
        .unwrap();
    let said = String::from_utf8_lossy(&up.stderr).into_owned();
    assert!(up.status.success(), "{said}");
    assert!(
        said.contains("wukongim-nginx-1  Created") && said.contains("wukongim-wukongim-1  Running"),
        "only nginx starts: {said}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // HTTP through the load balancer reaches both nodes.
        let mut ids = std::collections::BTreeSet::new();
        let t = Instant::now();
        while ids.len() < 2 && t.elapsed() < Duration::from_secs(20) {
            if let Ok((200, body)) = http_get(&lab, &n1, 15001, "/cluster/node").await {
                let v: Value = serde_json::from_slice(&body).unwrap();
                ids.insert(v["id"].as_u64().unwrap());
            }
            let (code, _) = http_get(&lab, &n1, 15001, "/health")
                .await
                .unwrap_or((0, vec![]));
            assert!(
                code == 200 || t.elapsed() < Duration::from_secs(5),
                "/health through the LB: {code}"
            );
        }
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            [1001, 1002],
            "nginx reached both nodes' API"
        );
        // The TCP stream reaches both nodes (each greets with its id).
        let mut greeted = std::collections::BTreeSet::new();
        for _ in 0..20 {
            lab.guard(&n1).unwrap();
            let mut s = tokio::net::TcpStream::connect((n1.as_str(), 15100))
                .await
                .unwrap();
            let mut buf = vec![0u8; 64];
            use tokio::io::AsyncReadExt;
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            greeted.insert(String::from_utf8_lossy(&buf[..n]).trim().to_string());
            if greeted.len() == 2 {
                break;
            }
        }
        assert_eq!(
            greeted.into_iter().collect::<Vec<_>>(),
            ["wksim node 1001", "wksim node 1002"]
        );
        // Each node's own API answers on the intranet too.
        assert_eq!(http_get(&lab, &n2, 5001, "/health").await.unwrap().0, 200);
    });
    let list = ps(&lab, "node1");
    assert_eq!(state(&list, "nginx"), "running");
    assert_eq!(state(&list, "prometheus"), "running");
    // The healthcheck (busybox's `wget -Y off` in the image) says healthy in time.
    let t = Instant::now();
    while svc(&ps(&lab, "node1"), "wukongim")["State"]["Health"]["Status"] != "healthy" {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{:?}",
            ps(&lab, "node1")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn an_unreachable_seed_makes_a_restart_loop() {
    let Some(lab) = lab() else { return };
    reset(&lab, "node3");
    let ip = lab.host("node3").ip.clone();
    // The seed is a lab address where nothing listens; WuKongIM dies after the slot timeout.
    let dead = format!("{}:11110", lab.host("bastion").ip);
    lab.put(
        "node3",
        "~/.config/wksim/env",
        "WKSIM_SLOT_TIMEOUT_SECS=1\n",
    )
    .unwrap();
    let compose = format!(
        "services:\n  wukongim:\n    image: registry.cn-shanghai.aliyuncs.com/wukongim/wukongim:v2\n    restart: always\n    environment:\n      - WK_CLUSTER_NODEID=1003\n      - WK_CLUSTER_SERVERADDR={ip}:11110\n      - WK_CLUSTER_APIURL=http://{ip}:5001\n      - WK_CLUSTER_SEED=1001@{dead}\n    volumes: [./wukongim_data:/root/wukongim]\n    ports: [\"5001:5001\", \"11110:11110\"]\n"
    );
    lab.put("node3", "~/t-loop/docker-compose.yml", &compose)
        .unwrap();
    lab.sh("node3", "cd ~/t-loop && docker-compose up -d")
        .unwrap();
    let t = Instant::now();
    let mut saw_restarting = false;
    loop {
        let list = ps(&lab, "node3");
        let w = svc(&list, "wukongim");
        saw_restarting |= w["State"]["Status"] == "restarting";
        if saw_restarting && w["RestartCount"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no restart loop: {w}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = lab
        .sh(
            "node3",
            "cd ~/t-loop && docker-compose ps; docker-compose logs",
        )
        .unwrap();
    assert!(text.contains("panic: no slot leader found"), "{text}");
    lab.sh("node3", "cd ~/t-loop && docker-compose down")
        .unwrap();
    assert!(ps(&lab, "node3").is_empty(), "down removes the service");
}

#[test]
fn up_recreates_only_the_services_whose_definition_changed() {
    let Some(lab) = lab() else { return };
    reset(&lab, "node4");
    let ip = lab.host("node4").ip.clone();
    let write = |mode: &str| {
        let compose = format!(
            "services:\n  wukongim1:\n    image: registry.cn-shanghai.aliyuncs.com/wukongim/wukongim:v2\n    environment:\n      WK_CLUSTER_SERVERADDR: \"{ip}:11110\"\n      WK_MODE: {mode}\n    volumes: [./wukongim_data:/root/wukongim]\n    ports: [\"5001:5001\", \"11110:11110\"]\n  prometheus:\n    image: registry.cn-shanghai.aliyuncs.com/wukongim/prometheus:v2.53.1\n    volumes: [\"./prometheus.yml:/etc/prometheus/prometheus.yml\"]\n    ports: [\"9090:9090\"]\n"
        );
        lab.put("node4", "~/t-recreate/docker-compose.yml", &compose)
            .unwrap();
    };
    write("release");
    lab.put("node4", "~/t-recreate/prometheus.yml", "global:\n  scrape_interval: 10s\nscrape_configs:\n  - job_name: w\n    static_configs:\n      - targets: ['wukongim1:5300']\n").unwrap();
    lab.sh("node4", "cd ~/t-recreate && docker compose up -d")
        .unwrap();
    let pid = |list: &[Value], s: &str| svc(list, s)["State"]["Pid"].as_u64().unwrap();
    let first = ps(&lab, "node4");
    assert!(
        pid(&first, "wukongim1") > 0 && pid(&first, "prometheus") > 0,
        "{first:?}"
    );
    let again = lab
        .ssh("node4", "cd ~/t-recreate && docker compose up -d")
        .unwrap();
    let said = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(
        said.contains("t-recreate-wukongim1-1  Running")
            && said.contains("t-recreate-prometheus-1  Running"),
        "{said}"
    );
    let second = ps(&lab, "node4");
    assert_eq!(
        (pid(&second, "wukongim1"), pid(&second, "prometheus")),
        (pid(&first, "wukongim1"), pid(&first, "prometheus"))
    );
    write("debug");
    let third = lab
        .ssh("node4", "cd ~/t-recreate && docker compose up -d")
        .unwrap();
    let said = String::from_utf8_lossy(&third.stderr).into_owned();
    assert!(
        said.contains("t-recreate-wukongim1-1  Recreated")
            && said.contains("t-recreate-prometheus-1  Running"),
        "{said}"
    );
    let after = ps(&lab, "node4");
    assert_ne!(pid(&after, "wukongim1"), pid(&first, "wukongim1"));
    assert_eq!(pid(&after, "prometheus"), pid(&first, "prometheus"));
    // `kill -s HUP` reaches the process (Prometheus reloads, and keeps running).
    lab.sh(
        "node4",
        "cd ~/t-recreate && docker compose kill -s HUP prometheus",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&ps(&lab, "node4"), "prometheus"), "running");
    let log = lab
        .sh("node4", "cd ~/t-recreate && docker compose logs prometheus")
        .unwrap();
    assert!(log.contains("Loading configuration file"), "{log}");
    lab.sh("node4", "cd ~/t-recreate && docker compose down")
        .unwrap();
}

#[test]
fn configs_are_checked_as_the_real_programs_check_them() {
    let Some(lab) = lab() else { return };
    let h = "bastion";
    reset(&lab, h);
    // config -q rejects what Compose rejects, and is silent on a good file.
    lab.put(
        h,
        "~/t-config/docker-compose.yml",
        "services:\n  web:\n    image: nginx:1.27\n    portz: [\"80:80\"]\n",
    )
    .unwrap();
    let out = lab
        .ssh(h, "cd ~/t-config && docker compose config -q")
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("portz"),
        "compose names the key it does not know"
    );
    // nginx refuses a broken nginx.conf: the service does not run, and says why.
    lab.put(h, "~/t-config/docker-compose.yml", "services:\n  nginx:\n    image: registry.cn-shanghai.aliyuncs.com/wukongim/nginx:1.27.0\n    restart: always\n    volumes: [./nginx.conf:/etc/nginx/nginx.conf]\n    ports: [\"15001:5001\"]\n  prometheus:\n    image: registry.cn-shanghai.aliyuncs.com/wukongim/prometheus:v2.53.1\n    restart: always\n    volumes: [\"./prometheus.yml:/etc/prometheus/prometheus.yml\"]\n    ports: [\"19090:9090\"]\n").unwrap();
    assert!(lab
        .ssh(h, "cd ~/t-config && docker compose config -q")
        .unwrap()
        .status
        .success());
    lab.put(h, "~/t-config/nginx.conf", "events {}\nhttp {\n  server {\n    listen 5001;\n    location / { proxy_pass http://nowhere_upstream; }\n  }\n  upstream {\n}\n").unwrap();
    lab.put(
        h,
        "~/t-config/prometheus.yml",
        "global:\n  scrape_interval: banana\nscrape_configs:\n  - job_name: x\n",
    )
    .unwrap();
    lab.sh(h, "cd ~/t-config && docker compose up -d").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // Each dies at once and restarts: between two restarts Docker shows it `running`, so the
    // restart count tells.
    let list = ps(&lab, h);
    for svc_name in ["nginx", "prometheus"] {
        let c = svc(&list, svc_name);
        assert!(
            c["RestartCount"].as_u64().unwrap_or(0) > 0 || c["State"]["Status"] != "running",
            "{svc_name} runs with a file it must refuse"
        );
    }
    let logs = lab
        .sh(h, "cd ~/t-config && docker compose logs 2>&1")
        .unwrap();
    assert!(logs.contains("[emerg]"), "{logs}");
    assert!(logs.contains("Error loading config"), "{logs}");
    let t = lab
        .ssh(h, "cd ~/t-config && docker compose exec nginx nginx -t")
        .unwrap();
    assert!(!t.status.success());
    // Fixed files: the restart loop picks them up, as a container would.
    lab.put(
        h,
        "~/t-config/nginx.conf",
        "events {}\nhttp {\n  server {\n    listen 5001;\n    return 200 'ok';\n  }\n}\n",
    )
    .unwrap();
    lab.put(h, "~/t-config/prometheus.yml", "scrape_configs:\n  - job_name: x\n    static_configs:\n      - targets: ['127.0.0.1:5300']\n").unwrap();
    let t0 = Instant::now();
    loop {
        let list = ps(&lab, h);
        if state(&list, "nginx") == "running" && state(&list, "prometheus") == "running" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{list:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(lab
        .ssh(h, "cd ~/t-config && docker compose exec nginx nginx -t")
        .unwrap()
        .status
        .success());
    let ip = lab.host(h).ip.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (code, body) = rt.block_on(http_get(&lab, &ip, 15001, "/")).unwrap();
    assert_eq!((code, body.as_slice()), (200, &b"ok"[..]));
    lab.sh(h, "cd ~/t-config && docker compose down").unwrap();
}

/// Where WuKongIM's data goes, on a real engine (node5): with the docs' bind mount it is in the
/// host directory; with a named volume Docker copies the image's wk.yaml (`rootDir:
/// ./wukongimdata`) into the volume, and the data goes to the container's /home/wukongimdata,
/// which a recreated container does not have (why wkctl's `data-mount` check refuses one).
#[test]
fn a_named_volume_leaves_the_data_in_the_container() {
    let Some(lab) = lab() else { return };
    reset(&lab, "node5");
    let img = wk_lab::docker::WUKONGIM_IMAGE;
    let run = |name: &str, volume: &str| {
        lab.docker(
            "node5",
            &[
                "run",
                "-d",
                "--name",
                name,
                "-e",
                "WKSIM_SLOT_TIMEOUT_SECS=600",
                "-v",
                volume,
                img,
            ],
        )
        .unwrap();
    };
    let sh = |name: &str, cmd: &str| lab.docker("node5", &["exec", name, "sh", "-c", cmd]);
    let wait_for = |name: &str, path: &str| {
        let t = Instant::now();
        while sh(name, &format!("test -e {path}")).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "{name}: no {path}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    run("named", "wkvol:/root/wukongim");
    wait_for(
        "named",
        "/home/wukongimdata/data/cluster/config/remote.json",
    );
    assert_eq!(
        sh("named", "cat /root/wukongim/wk.yaml")
            .unwrap()
            .lines()
            .last(),
        Some("rootDir: \"./wukongimdata\""),
        "Docker copied the image's wk.yaml into the volume"
    );
    assert!(
        sh("named", "test -e /root/wukongim/data").is_err(),
        "the volume holds no data"
    );
    let src = lab.host("node5").home.join("bind-data");
    std::fs::create_dir_all(&src).unwrap();
    run("bound", &format!("{}:/root/wukongim", src.display()));
    wait_for("bound", "/root/wukongim/data/cluster/config/remote.json");
    assert!(
        src.join("data/cluster/config/remote.json").exists(),
        "the data is on the host"
    );
    assert!(
        sh("bound", "test -e /home/wukongimdata").is_err(),
        "nothing in the container's /home"
    );
    reset(&lab, "node5");
    let _ = std::fs::remove_dir_all(&src);
}
