//! `wkctl expand` through its binary against the lab: real OpenSSH, the simulator, real nginx
//! and Prometheus. Uses lab hosts node1 (gateway, seed) and node2 (added).

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use wk_lab::deploy::SingleNode;
use wk_lab::Lab;

mod faults;
mod fleet;
mod grow;

fn lab() -> Option<Lab> {
    let lab = wk_lab::deploy::test_lab().unwrap_or_else(|e| panic!("{e}"));
    if lab.is_none() {
        eprintln!("skipped: no lab; run scripts/test, or `wk-lab up --hosts 11`");
    }
    lab
}

/// A lab of at least `nodes` nodes (else the test is skipped, or fails under WKLAB_REQUIRED).
fn lab_with(nodes: usize) -> Option<Lab> {
    let lab = lab()?;
    if lab
        .hosts
        .iter()
        .filter(|h| h.name.starts_with("node"))
        .count()
        < nodes
    {
        assert!(
            std::env::var_os("WKLAB_REQUIRED").is_none(),
            "this test needs `wk-lab up --hosts {nodes}`"
        );
        eprintln!("skipped: the lab has fewer than {nodes} nodes");
        return None;
    }
    Some(lab)
}

/// `seed` runs the single node (after `env` went into its simulator settings) and `add` is
/// cleared; a fresh directory holds their inventory (as node1 and node2). Returns the directory.
fn single_and_new(lab: &Lab, seed: &str, add: &str, env: &str, name: &str) -> std::path::PathBuf {
    reset(lab, seed);
    reset(lab, add);
    if !env.is_empty() {
        lab.put(seed, "~/.config/wksim/env", env).unwrap();
    }
    lab.deploy_single(seed, &SingleNode::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("wkctl-lab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    inventory_of(lab, &dir, seed, add);
    dir
}

/// The built-in playbook with its waits cut to a few seconds (for runs meant to fail there).
fn quick_playbook(dir: &std::path::Path) {
    playbook_with_waits(dir, "quick.yml", &[(180, 3), (600, 3)]);
}

/// The built-in playbook written to `dir/file`, each wait of `from` seconds made `to` seconds.
fn playbook_with_waits(dir: &std::path::Path, file: &str, waits: &[(u32, u32)]) {
    let mut pb = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks/expand.yml"),
    )
    .unwrap();
    for (from, to) in waits {
        pb = pb.replace(
            &format!("timeout_secs: {from}\n"),
            &format!("timeout_secs: {to}\n"),
        );
    }
    std::fs::write(dir.join(file), pb).unwrap();
}

/// Starts `wkctl expand` (its output piped) and returns once `host` has the new node's compose
/// file: the run is then in its prepare phase.
fn start_until_prepared(
    lab: &Lab,
    dir: &std::path::Path,
    args: &[&str],
    host: &str,
) -> std::process::Child {
    let run = Command::new(env!("CARGO_BIN_EXE_wkctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .env("WKCTL_YES", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !lab.exists(host, "~/wukongim/docker-compose.yml").unwrap() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the run never wrote {host}'s compose file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run
}

/// The host as new: no container, network or volume in its engine, no WuKongIM files (Docker's
/// root-owned ones too, removed as root here), the simulator's test settings in place.
fn reset(lab: &Lab, host: &str) {
    lab.reset_host(host).unwrap();
    lab.put(
        host,
        "~/.config/wksim/env",
        "WKSIM_JOIN_DELAY_MS=700\nWKSIM_MIGRATE_MS=300\n",
    )
    .unwrap();
}

/// A process's parent (0 when it is gone).
fn parent_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
        })
        .unwrap_or(0)
}

/// Whether `pid` is an sshd session process or runs under one. A session's processes (PAM's
/// motd scripts at login, the session's command) end with it, a little after the client is gone;
/// a process a session leaves behind outlives it and is reparented, so it is still seen.
fn in_ssh_session(pid: u32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        if cmd.starts_with(b"sshd:") {
            return true;
        }
        let parent = parent_of(p);
        if parent <= 1 {
            return false;
        }
        p = parent;
    }
    false
}

/// Every file's hash under the host's home (the simulator's own data changes by itself, and is
/// left out), every container of its engine (service, image, state), and every process in its
/// namespace but the engine's own (dockerd, containerd, shims). Read as root on this machine (the
/// home is a directory here, the engine answers on its socket): no SSH session per look.
fn snapshot(lab: &Lab, host: &str) -> (String, Vec<(u32, String)>) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("find . \\( -path ./wukongim/wukongim_data -o -path ./.ssh \\) -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum")
        .current_dir(&lab.host(host).home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{host}: hashing its home: {}",
        text(&out.stderr)
    );
    let files = text(&out.stdout);
    // sshd's per-connection processes come and go with every SSH session (ours included),
    // and a process caught between fork and exec has no command line yet.
    let mut procs: Vec<(u32, String)> = lab
        .pids(lab.host(host))
        .into_iter()
        .filter_map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // The engine's own processes, and every process they start for a moment (runc for a
            // healthcheck's exec, the lab's runtime wrapper, iptables): the engine's, not the
            // host's state.
            let engine = |pid: u32| -> bool {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let comm = comm.trim();
                [
                    "dockerd",
                    "containerd",
                    "docker-proxy",
                    "nsenter",
                    "runc",
                    "wk-lab",
                ]
                .contains(&comm)
                    || comm.starts_with("containerd-shim")
                    || comm.starts_with("runc:")
            };
            let engine = engine(p) || engine(parent_of(p)) || cmd.contains("/d/runtime ");
            (!in_ssh_session(p) && !cmd.trim().is_empty() && !engine).then_some((p, cmd))
        })
        .collect();
    // Containers by what they are, not by id: a container the run recreated and a rollback
    // recreated again is the same service in the same state.
    for line in lab
        .docker(host, &["ps", "-a", "--format", "{{.Label \"com.docker.compose.project\"}}/{{.Label \"com.docker.compose.service\"}} {{.Image}} {{.State}}"])
        .unwrap_or_else(|_| "(the engine does not answer)".into())
        .lines()
    {
        procs.push((0, format!("container {line}")));
    }
    procs.sort_unstable();
    (files, procs)
}

fn inventory(lab: &Lab, dir: &std::path::Path) -> std::path::PathBuf {
    inventory_of(lab, dir, "node1", "node2")
}

/// Runs `cmd` on lab host `h` as its user; `@h`: as root on this machine, with the host's
/// Docker environment (its engine's socket) and its home as the working directory.
fn on(lab: &Lab, h: &str, cmd: &str) {
    match h.strip_prefix('@') {
        Some(h) => {
            let host = lab.host(h);
            let mut c = Command::new("sh");
            c.arg("-c").arg(cmd).current_dir(&host.home);
            for (k, v) in wk_lab::docker::session_env(host) {
                c.env(k, v);
            }
            let out = c.output().unwrap();
            assert!(out.status.success(), "{h}: `{cmd}`: {}", text(&out.stderr));
        }
        None => {
            lab.sh(h, cmd).unwrap();
        }
    }
}

/// An inventory where `a` runs the single node (gateway, seed) and `b` is to be added; the
/// inventory names them node1 and node2 whatever lab hosts they are.
fn inventory_of(lab: &Lab, dir: &std::path::Path, a: &str, b: &str) -> std::path::PathBuf {
    let (n1, n2) = (lab.host(a), lab.host(b));
    let text = format!(
        "cluster: lab\nssh:\n  identity_files: [{key}]\n  known_hosts: {kh}\ngateway:\n  node: node1\n  external_address: {ip1}\nnodes:\n  - name: node1\n    id: 1001\n    internal_address: {ip1}\n    ssh: {{ user: {u1} }}\n  - name: node2\n    id: 1002\n    internal_address: {ip2}\n    ssh: {{ user: {u2} }}\n",
        key = lab.key().display(),
        kh = lab.known_hosts().display(),
        ip1 = n1.ip,
        ip2 = n2.ip,
        u1 = n1.user,
        u2 = n2.user,
    );
    let p = dir.join("cluster.yml");
    std::fs::write(&p, text).unwrap();
    p
}

/// wkctl as a script runs it: no terminal, `--yes` given (WKCTL_YES).
fn wkctl(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wkctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .env("WKCTL_YES", "1")
        .output()
        .unwrap()
}

/// wkctl as a script runs it, without `--yes`: no terminal to ask on.
/// `wkctl ARGS` in `dir` started with the engine's test hook at `at` (`<step>:<point>`), its
/// output piped; returns once the run waits there (its pause file then exists: removing it lets
/// the run go on), or what it said if it never got there within 60 s.
fn paused(
    dir: &std::path::Path,
    args: &[&str],
    at: &str,
    pause: &std::path::Path,
) -> Result<std::process::Child, String> {
    let _ = std::fs::remove_file(pause);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wkctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .env("WKCTL_TEST_PAUSE", at)
        .env("WKCTL_TEST_PAUSE_FILE", pause)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !pause.exists() {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return Err(format!(
                "the run never reached {at}: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            return Err(format!("the run did not reach {at} within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}

fn without_yes(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wkctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("WKCTL_YES")
        .output()
        .unwrap()
}

/// wkctl as an operator runs it: on a terminal (a pseudo-terminal of util-linux's `script`),
/// without `--yes`, typing `answer` at its prompt. Its exit code and everything it showed.
fn on_terminal(dir: &std::path::Path, args: &[&str], answer: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_wkctl"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect();
    let mut child = Command::new("script")
        .args(["-qec", &line.join(" "), "/dev/null"])
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("WKCTL_YES")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn get(lab: &Lab, ip: &str, port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    lab.guard(ip).unwrap();
    let (code, body) =
        wk_lab::http::get(&format!("{ip}:{port}"), path, &[], Duration::from_secs(3))
            .await
            .ok()?;
    Some((code, serde_json::from_slice(&body).unwrap_or_default()))
}

#[test]
fn expand_adds_node2_for_real() {
    let Some(lab) = lab() else { return };
    reset(&lab, "node1");
    reset(&lab, "node2");
    lab.deploy_single("node1", &SingleNode::default()).unwrap();
    // Cluster-wide settings node2 must share (FACTS: without WK_TOKENAUTHON, clients the load
    // balancer sends to node2 would skip authentication).
    lab.sh(
        "node1",
        "sed -i 's|^    environment:$|    environment:\\n      - \"WK_TOKENAUTHON=true\"\\n      - \"WK_WEBHOOK_HTTPADDR=http://10.251.0.99:8080/hook\" # our webhook|' ~/wukongim/docker-compose.yml",
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("wkctl-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    inventory(&lab, &dir);
    let compose_before = lab
        .sh("node1", "cat ~/wukongim/docker-compose.yml")
        .unwrap();

    // A dry run changes nothing and starts nothing, on any host.
    let before: BTreeMap<&str, _> = ["node1", "node2"]
        .into_iter()
        .map(|h| (h, snapshot(&lab, h)))
        .collect();
    let dry = wkctl(&dir, &["expand", "--add", "node2", "--dry-run"]);
    let out = text(&dry.stdout);
    assert_eq!(dry.status.code(), Some(0), "{out}{}", text(&dry.stderr));
    assert!(
        out.contains("+      - \"WK_EXTERNAL_WSADDR=ws://"),
        "the dry run shows node1's env diff:\n{out}"
    );
    assert!(out.contains("+  nginx:"), "and the nginx service:\n{out}");
    assert!(
        out.contains("the new nodes get node1's cluster-wide settings: WK_TOKENAUTHON, WK_WEBHOOK_HTTPADDR, WK_MODE"),
        "the settings node2 gets from node1 are shown:\n{out}"
    );
    assert!(
        out.contains("$ cd ~/wukongim && flock . docker compose up -d wukongim"),
        "and the exact commands:\n{out}"
    );
    let after: BTreeMap<&str, _> = ["node1", "node2"]
        .into_iter()
        .map(|h| (h, snapshot(&lab, h)))
        .collect();
    assert_eq!(before, after, "the dry run changed something");
    assert!(!dir.join(".wkctl").exists(), "a dry run writes no journal");
    checks_listed_are_checks_run(&dir);
    asks_before_it_changes_anything(&lab, &dir);
    a_saved_plan_is_refused_once_anything_changed(&lab, &dir);

    // The real run; a second one started while it holds the lock is refused.
    // The real run applies the reviewed plan (saved above), nothing else.
    let first = Command::new(env!("CARGO_BIN_EXE_wkctl"))
        .args(["expand", "--plan", "node2.wkplan", "--yes"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !lab.exists("node1", "~/wukongim/.wkctl.lock").unwrap() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let second = wkctl(&dir, &["expand", "--add", "node2"]);
    let err = text(&second.stderr);
    assert_eq!(
        second.status.code(),
        Some(4),
        "{}{err}",
        text(&second.stdout)
    );
    assert!(
        err.contains("locked by another run") && err.contains("run="),
        "{err}"
    );
    let first = first.wait_with_output().unwrap();
    let out = text(&first.stdout);
    assert_eq!(first.status.code(), Some(0), "{out}{}", text(&first.stderr));
    for s in ["status 1 将加入", "status 2 加入中", "status 3 已加入"] {
        assert!(out.contains(s), "the run shows `{s}`:\n{out}");
    }
    // It ends with what clients and operators use now.
    let ip1 = lab.host("node1").ip.clone();
    for s in [
        "The cluster is node1 (1001), node2 (1002).".to_string(),
        format!("HTTP API   http://{ip1}:15001"),
        format!("TCP        {ip1}:15100"),
        format!("WebSocket  ws://{ip1}:15200"),
        format!("admin UI   http://{ip1}:15300/web"),
        format!("demo       http://{ip1}:15172"),
    ] {
        assert!(out.contains(&s), "the run ends without `{s}`:\n{out}");
    }
    // node2's WuKongIM runs with node1's cluster-wide settings.
    let env = lab
        .docker(
            "node2",
            &[
                "inspect",
                "--format",
                "{{range .Config.Env}}{{println .}}{{end}}",
                "wukongim-wukongim-1",
            ],
        )
        .unwrap();
    for want in [
        "WK_TOKENAUTHON=true",
        "WK_WEBHOOK_HTTPADDR=http://10.251.0.99:8080/hook",
        "WK_MODE=release",
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "node2 runs without {want}:\n{env}"
        );
    }

    let (ip1, ip2) = (lab.host("node1").ip.clone(), lab.host("node2").ip.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // node2 at status 3 in both nodes' APIs.
        for ip in [&ip1, &ip2] {
            let (code, list) = get(&lab, ip, 5001, "/cluster/simpleNodes").await.unwrap();
            assert_eq!(code, 200);
            let n2 = list["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["id"] == 1002)
                .expect("node2 is a member");
            assert_eq!(
                (n2["status"].as_u64(), n2["status_format"].as_str()),
                (Some(3), Some("已加入")),
                "{ip}: {list}"
            );
        }
        // The gateway's nginx balances /health and the TCP stream to both nodes.
        let mut ids = std::collections::BTreeSet::new();
        for _ in 0..40 {
            if let Some((200, v)) = get(&lab, &ip1, 15001, "/cluster/node").await {
                ids.insert(v["id"].as_u64().unwrap());
            }
            if ids.len() == 2 {
                break;
            }
        }
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), [1001, 1002]);
        assert_eq!(get(&lab, &ip1, 15001, "/health").await.unwrap().0, 200);
        // The admin UI at the address the run ended with.
        assert_eq!(get(&lab, &ip1, 15300, "/web").await.map(|r| r.0), Some(200));
        let mut greeted = std::collections::BTreeSet::new();
        for _ in 0..40 {
            let mut s = tokio::net::TcpStream::connect((ip1.as_str(), 15100))
                .await
                .unwrap();
            let mut buf = [0u8; 32];
            use tokio::io::AsyncReadExt;
            let n = s.read(&mut buf).await.unwrap();
            greeted.insert(text(&buf[..n]).trim().to_string());
            if greeted.len() == 2 {
                break;
            }
        }
        assert_eq!(greeted.len(), 2, "the TCP stream reached {greeted:?}");
    });

    // prometheus.yml passes promtool, with both jobs and their id labels.
    let prom = lab.sh("node1", "cat ~/wukongim/prometheus.yml").unwrap();
    std::fs::write(dir.join("prometheus.yml"), &prom).unwrap();
    let check = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(dir.join("prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    assert!(
        prom.contains("id: \"1001\"")
            && prom.contains(&format!("targets: ['{ip2}:5300']"))
            && prom.contains("id: \"1002\""),
        "{prom}"
    );

    // node1's compose file differs from before only in the expected lines.
    let compose_after = lab
        .sh("node1", "cat ~/wukongim/docker-compose.yml")
        .unwrap();
    let old: Vec<&str> = compose_before.lines().collect();
    let new: Vec<&str> = compose_after.lines().collect();
    let removed: Vec<&&str> = old.iter().filter(|l| !new.contains(l)).collect();
    let added: Vec<&&str> = new.iter().filter(|l| !old.contains(l)).collect();
    assert!(
        removed.is_empty(),
        "nothing of node1's file is lost (its env had the right intranet addresses): {removed:?}"
    );
    assert!(
        added
            .iter()
            .any(|l| l.contains("WK_EXTERNAL_WSADDR=ws://") && l.contains(":15200")),
        "{added:?}"
    );
    assert!(
        added
            .iter()
            .any(|l| l.contains("WK_EXTERNAL_TCPADDR=") && l.contains(":15100")),
        "{added:?}"
    );
    assert!(added.iter().any(|l| l.trim() == "nginx:"), "{added:?}");
    let unexpected: Vec<&&&str> = added
        .iter()
        .filter(|l| {
            !(l.contains("WK_EXTERNAL_") || l.starts_with("  nginx:") || l.starts_with("    "))
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    assert!(
        new.iter()
            .take(old.len() - 1)
            .any(|l| l.contains("# - \"WK_TOKENAUTHON=true\"")),
        "comments stay"
    );

    // The journal: the plan and one JSON object per line, before-images with local copies.
    let runs: Vec<_> = std::fs::read_dir(dir.join(".wkctl/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let journal = std::fs::read_to_string(runs[0].join("journal.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.first().unwrap()["type"], "run_started");
    assert_eq!(lines.last().unwrap()["type"], "run_finished");
    let images: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["type"] == "before_image" && l["existed"] == true)
        .collect();
    assert!(
        images
            .iter()
            .any(|l| l["path"] == "~/wukongim/docker-compose.yml"),
        "{journal}"
    );
    for img in &images {
        let copy = runs[0].join("before").join(img["copy"].as_str().unwrap());
        assert_eq!(
            wk_engine::journal::sha256_hex(&std::fs::read(copy).unwrap()),
            img["sha256"].as_str().unwrap()
        );
    }
    assert_eq!(
        wk_engine::journal::sha256_hex(compose_before.as_bytes()),
        images
            .iter()
            .find(|l| l["path"] == "~/wukongim/docker-compose.yml")
            .unwrap()["sha256"]
            .as_str()
            .unwrap(),
        "the first before-image of node1's compose file is the file as it was"
    );

    // A second run changes nothing and restarts nothing.
    let before: BTreeMap<&str, _> = ["node1", "node2"]
        .into_iter()
        .map(|h| (h, snapshot(&lab, h)))
        .collect();
    // A finished run leaves no copy of the files it changed on the hosts (they hold secrets;
    // the journal keeps what a rollback needs).
    for (h, (files, _)) in &before {
        assert!(!files.contains(".wkctl-"), "{h} keeps a backup:\n{files}");
    }
    let again = wkctl(&dir, &["expand", "--add", "node2", "--output", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let events = json_stream(&text(&again.stdout));
    assert!(
        !events.iter().any(|e| e["event"] == "summary"),
        "a run with nothing to change tells no summary (and asks nothing): {events:?}"
    );
    let done = events.iter().find(|e| e["event"] == "finished").unwrap();
    assert_eq!(done["changed"], 0, "{events:?}");
    let after: BTreeMap<&str, _> = ["node1", "node2"]
        .into_iter()
        .map(|h| (h, snapshot(&lab, h)))
        .collect();
    assert_eq!(before, after, "the second run changed a file or a process");

    // status: every node joined, healthy, known to nginx and Prometheus.
    let st = wkctl(&dir, &["status"]);
    let table = text(&st.stdout);
    assert_eq!(st.status.code(), Some(0), "{table}{}", text(&st.stderr));
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains("3 已加入") && l.contains(" ok ") && l.ends_with(" -"))
            .count(),
        2,
        "{table}"
    );
    // Its columns line up on a terminal: each column starts at the same display column in
    // every row (已加入 takes two columns a character).
    let at = |line: &str, word: &str| {
        use unicode_width::UnicodeWidthStr;
        line.find(word).map(|i| line[..i].width())
    };
    let head = table.lines().next().unwrap();
    for l in table.lines().skip(1) {
        assert_eq!(at(l, "3 已加入"), at(head, "STATUS"), "{table}");
        assert_eq!(at(l, " ok ").map(|c| c + 1), at(head, "HEALTH"), "{table}");
    }
    let js: serde_json::Value =
        serde_json::from_slice(&wkctl(&dir, &["status", "--output", "json"]).stdout).unwrap();
    assert_eq!(
        (
            js["problems"].as_u64(),
            js["nodes"].as_array().map(|a| a.len())
        ),
        (Some(0), Some(2)),
        "{js}"
    );
    // check: the preflight alone; node2 is already a member.
    let ck = wkctl(&dir, &["check", "--add", "node2"]);
    assert_eq!(
        ck.status.code(),
        Some(0),
        "{}{}",
        text(&ck.stdout),
        text(&ck.stderr)
    );
    assert!(text(&ck.stdout).contains("already a member at status 3"));
    // A node that stops: status says so and exits 1.
    lab.sh("node2", "cd ~/wukongim && docker compose stop")
        .unwrap();
    let t = Instant::now();
    loop {
        let st = wkctl(&dir, &["status"]);
        if st.status.code() == Some(1) {
            let table = text(&st.stdout);
            assert!(
                table.lines().any(|l| l.starts_with("node2")
                    && (l.contains("offline") || l.contains("unreachable"))),
                "{table}"
            );
            assert!(
                text(&st.stderr).contains("need attention"),
                "{}",
                text(&st.stderr)
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "status never noticed node2 stopped:\n{}",
            text(&st.stdout)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    lab.sh("node2", "cd ~/wukongim && docker compose start")
        .unwrap();
}

/// Checks every line of a JSON event stream against `docs/json.md`'s table: each line parses,
/// carries `v` 1 and an RFC 3339 `ts`, is an event the table lists, with every field the table
/// gives (of its type; `?` may be null or absent) and no other. Returns the events.
fn json_stream(out: &str) -> Vec<serde_json::Value> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/json.md"),
    )
    .unwrap();
    let mut schema: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for row in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let fields = cells[2]
            .split(", ")
            .map(|f| {
                let (n, t) = f.trim_matches('`').split_once(": ").unwrap();
                (n.to_string(), t.to_string())
            })
            .collect();
        schema.insert(cells[1].trim_matches('`').to_string(), fields);
    }
    assert!(schema.len() >= 16, "{schema:?}");
    let mut events = Vec::new();
    for line in out.lines() {
        let e: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
        let kind = e["event"].as_str().unwrap_or_default();
        let fields = schema
            .get(kind)
            .unwrap_or_else(|| panic!("event `{kind}` is not in docs/json.md: {line}"));
        assert_eq!(e["v"], 1, "{line}");
        let ts = e["ts"].as_str().unwrap_or_default();
        assert!(
            ts.len() == 24
                && &ts[10..11] == "T"
                && ts.ends_with('Z')
                && ts[..4].parse::<u32>().is_ok(),
            "ts: {line}"
        );
        for (name, ty) in fields {
            let v = &e[name.as_str()];
            let (ty, optional) = match ty.strip_suffix('?') {
                Some(t) => (t, true),
                None => (ty.as_str(), false),
            };
            let fits = match ty {
                "string" => v.is_string(),
                "int" => v.is_u64() || v.is_i64(),
                "bool" => v.is_boolean(),
                "array" => v.is_array(),
                "object" => v.is_object(),
                other => panic!("docs/json.md: type `{other}`"),
            };
            assert!(
                fits || (optional && v.is_null()),
                "{kind}.{name} is not {ty}: {line}"
            );
        }
        for key in e.as_object().unwrap().keys() {
            assert!(
                ["event", "v", "ts"].contains(&key.as_str())
                    || fields.iter().any(|(n, _)| n == key),
                "{kind}.{key} is not in docs/json.md: {line}"
            );
        }
        events.push(e);
    }
    events
}

/// node1's and node2's files and processes, to compare before and after.
fn node1_and_node2(lab: &Lab) -> Vec<(String, Vec<(u32, String)>)> {
    ["node1", "node2"]
        .iter()
        .map(|h| snapshot(lab, h))
        .collect()
}

/// `--dry-run --save` writes the plan with what the hosts look like (0600: it holds rendered
/// files); `--plan` refuses it, changing nothing, once node1's compose file or the inventory
/// changed since. The file stays for the real run, which applies it.
fn a_saved_plan_is_refused_once_anything_changed(lab: &Lab, dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let saved = wkctl(
        dir,
        &[
            "expand",
            "--add",
            "node2",
            "--dry-run",
            "--save",
            "node2.wkplan",
        ],
    );
    assert_eq!(saved.status.code(), Some(0), "{}", text(&saved.stderr));
    let file = dir.join("node2.wkplan");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        (doc["v"].as_u64(), doc["add"].clone()),
        (Some(1), serde_json::json!(["node2"]))
    );
    assert!(
        doc["files"]["node1: ~/wukongim/docker-compose.yml"].is_string(),
        "{doc}"
    );
    let before = node1_and_node2(lab);
    // A hand edit on node1 between the review and the apply.
    lab.sh("node1", "cp -p ~/wukongim/docker-compose.yml ~/compose.keep && echo '# by hand' >> ~/wukongim/docker-compose.yml").unwrap();
    let edited = node1_and_node2(lab);
    let stale = wkctl(dir, &["expand", "--plan", "node2.wkplan"]);
    let err = text(&stale.stderr);
    assert_eq!(stale.status.code(), Some(3), "{err}");
    assert!(
        err.contains("the saved plan does not hold any more")
            && err.contains("node1: ~/wukongim/docker-compose.yml changed")
            && err.contains("nothing was changed"),
        "{err}"
    );
    let now = node1_and_node2(lab);
    assert_eq!(now, edited, "a refused plan changed something");
    lab.sh("node1", "mv ~/compose.keep ~/wukongim/docker-compose.yml")
        .unwrap();
    // The inventory edited since.
    let inv = dir.join("cluster.yml");
    let good = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(&inv, format!("{good}# reviewed\n")).unwrap();
    let stale = wkctl(dir, &["expand", "--plan", "node2.wkplan"]);
    let err = text(&stale.stderr);
    assert_eq!(stale.status.code(), Some(3), "{err}");
    assert!(err.contains("the inventory changed"), "{err}");
    std::fs::write(&inv, good).unwrap();
    let now = node1_and_node2(lab);
    assert_eq!(now, before, "a refused plan changed something");
    assert!(
        !dir.join(".wkctl").exists(),
        "a refused plan started a journal"
    );
}

/// After preflight, a run says what it will change and asks: without a terminal it needs
/// --yes (exit 2); on one, anything but y stops it (exit 1). Either way nothing changes.
fn asks_before_it_changes_anything(lab: &Lab, dir: &std::path::Path) {
    let before = node1_and_node2(lab);
    let out = without_yes(dir, &["expand", "--add", "node2"]);
    let (said, err) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{said}{err}");
    assert!(
        err.contains("no terminal to ask on")
            && err.contains("--yes")
            && err.contains("nothing was changed"),
        "{err}"
    );
    let json = without_yes(dir, &["expand", "--add", "node2", "--output", "json"]);
    assert_eq!(json.status.code(), Some(2));
    let events = json_stream(&text(&json.stdout));
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    assert_eq!(
        summary["joins"],
        serde_json::json!(["node2 (1002)"]),
        "{summary}"
    );
    let last = events.last().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["code"].as_u64()),
        (Some("error"), Some(2)),
        "{last}"
    );
    for s in [
        "expand will change 2 host(s): node1, node2",
        "~/wukongim/docker-compose.yml",
        "~/wukongim/nginx.conf",
        "new, ",
        "join     node2 (1002)",
        "undo     wkctl rollback",
    ] {
        assert!(said.contains(s), "the summary lacks `{s}`:\n{said}");
    }
    let (code, shown) = on_terminal(dir, &["expand", "--add", "node2"], "n\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("Do you want to continue?") && shown.contains("not confirmed"),
        "{shown}"
    );
    let after = node1_and_node2(lab);
    assert_eq!(before, after, "a run not confirmed changed something");
    assert!(
        !dir.join(".wkctl").exists(),
        "a run not confirmed started a journal"
    );
}

/// Every check the plan lists for a host is run on that host, and nothing else is: the
/// offline plan's preflight steps against `check --output json`'s check events.
fn checks_listed_are_checks_run(dir: &std::path::Path) {
    use std::collections::BTreeSet;
    let plan = wkctl(
        dir,
        &[
            "expand",
            "--add",
            "node2",
            "--dry-run",
            "--offline",
            "--output",
            "json",
        ],
    );
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let mut listed = BTreeSet::new();
    for step in plan["plan"]["steps"].as_array().unwrap() {
        for c in step["action"]["checks"].as_array().into_iter().flatten() {
            listed.insert((
                step["host"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
            ));
        }
    }
    let check = wkctl(dir, &["check", "--add", "node2", "--output", "json"]);
    let out = text(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{out}{}", text(&check.stderr));
    let ran: BTreeSet<(String, String)> = json_stream(&out)
        .into_iter()
        .filter(|e| e["event"] == "check")
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_string(),
                e["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(listed.len() > 10, "{listed:?}");
    assert_eq!(
        listed.difference(&ran).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "listed, never run"
    );
    assert_eq!(
        ran.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "run, never listed"
    );
}

#[test]
fn init_writes_an_inventory_from_the_running_node() {
    let Some(lab) = lab() else { return };
    // init only reads a compose file; it reads one of the document's shape on the bastion
    // (which runs nothing), written for node1's address.
    let n1 = lab.host("node1").clone();
    let dir = std::env::temp_dir().join(format!("wkctl-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = lab.key().display().to_string();
    let kh = lab.known_hosts().display().to_string();
    lab.put(
        "bastion",
        "~/t-init/docker-compose.yml",
        &wk_lab::deploy::single_node_compose(&n1.ip, &SingleNode::default()),
    )
    .unwrap();
    let b = lab.host("bastion").clone();
    let from = format!("{}@{}", b.user, b.ip);
    let args = [
        "init",
        "--from",
        from.as_str(),
        "--dir",
        "~/t-init",
        "--identity",
        key.as_str(),
        "--known-hosts",
        kh.as_str(),
    ];
    let out = wkctl(&dir, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let inv = std::fs::read_to_string(dir.join("cluster.yml")).unwrap();
    let parsed = wk_plan::Inventory::parse("cluster.yml", &inv).unwrap();
    assert_eq!(parsed.nodes[0].id, 1001);
    assert_eq!(
        parsed.nodes[0].internal_address, n1.ip,
        "from WK_CLUSTER_SERVERADDR"
    );
    assert_eq!(
        parsed.nodes[0].ssh.host, b.ip,
        "reached the way init reached it"
    );
    assert!(inv.contains("TODO"), "it says what to fill in:\n{inv}");
    // Never overwritten without --force.
    let again = wkctl(&dir, &args);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("--force"));
    let mut forced = args.to_vec();
    forced.push("--force");
    assert_eq!(wkctl(&dir, &forced).status.code(), Some(0));
    // An unknown host key is refused (strict is the default).
    let out = wkctl(
        &dir,
        &[
            "init",
            "--from",
            from.as_str(),
            "--dir",
            "~/t-init",
            "--identity",
            key.as_str(),
            "--force",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("host key"),
        "{}",
        text(&out.stderr)
    );
}

/// `wk-lab inventory` (the demo's inventory) is one wkctl takes however many hosts the lab has:
/// WuKongIM's ids end at 1023, and the lab of the tests has 25 nodes.
#[test]
fn the_lab_inventory_is_valid() {
    let Some(lab) = lab() else { return };
    let text = lab.inventory();
    let inv = wk_plan::Inventory::parse("cluster.yml", &text).unwrap_or_else(|d| panic!("{d}"));
    let nodes = lab
        .hosts
        .iter()
        .filter(|h| h.name.starts_with("node"))
        .count();
    assert_eq!(inv.nodes.len(), nodes);
    assert_eq!(inv.nodes[0].id, 1001, "node1 as deploy-single runs it");
}

#[test]
fn a_nginx_conf_nginx_rejects_is_taken_back() {
    let Some(lab) = lab() else { return };
    reset(&lab, "node3");
    reset(&lab, "node4");
    lab.deploy_single("node3", &SingleNode::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("wkctl-lab-badnginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    inventory_of(&lab, &dir, "node3", "node4");
    // check: a data dir that is not empty fails the preflight with its fix; nothing changes.
    lab.put("node4", "~/wukongim/wukongim_data/leftover", "old data\n")
        .unwrap();
    let ck = wkctl(&dir, &["check", "--add", "node2"]);
    let out = text(&ck.stdout);
    assert_eq!(ck.status.code(), Some(3), "{out}{}", text(&ck.stderr));
    assert!(
        out.contains("install-dir   FAILED")
            && out.contains("fix: a data dir that holds a cluster config never joins again"),
        "{out}"
    );
    lab.sh("node4", "rm -rf ~/wukongim").unwrap();
    std::fs::write(
        dir.join("templates/nginx.conf.tera"),
        "events {}\nhttp {\n  upstream wukongimapi {\n{% for n in members %}    server {{ n.hostport.api }};\n{% endfor %}  }\n  server { listen 5001; no_such_directive on; }\n}\n",
    )
    .unwrap();
    let out = wkctl(
        &dir,
        &["expand", "--add", "node2", "--templates", "templates"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}{err}", text(&out.stdout));
    assert!(
        err.contains("member-up@node1")
            && err.contains("nginx did not start with the new nginx.conf"),
        "{err}"
    );
    assert!(err.contains("which this run created, is removed"), "{err}");
    assert!(
        !lab.exists("node3", "~/wukongim/nginx.conf").unwrap(),
        "the rejected file is gone"
    );
    let ps = lab
        .sh("node3", "cd ~/wukongim && docker compose ps")
        .unwrap();
    assert!(
        ps.contains("wukongim-wukongim-1")
            && !ps.lines().any(|l| l.contains("nginx") && l.contains("Up")),
        "{ps}"
    );

    // A new node on another WuKongIM build than the members (its image's tag moved): the join
    // step stops the run naming both builds, and a resume refuses the mix until told to allow it.
    let rb = wkctl(&dir, &["rollback"]);
    assert_eq!(rb.status.code(), Some(0), "{}", text(&rb.stderr));
    lab.put(
        "node4",
        "~/.config/wksim/env",
        "WKSIM_JOIN_DELAY_MS=700\nWKSIM_MIGRATE_MS=300\nWKSIM_APP_VERSION=v2.2.6-20260601\n",
    )
    .unwrap();
    let out = wkctl(&dir, &["expand", "--add", "node2"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}{err}", text(&out.stdout));
    assert!(
        err.contains("joined@node2")
            && err.contains("runs WuKongIM build v2.2.6-20260601, the members v2.2.5-20260422")
            && err.contains("--allow-version-mix"),
        "{err}"
    );
    // The resume's preflight sees node2's build once the cluster counts node2 online and its
    // slots have moved (the run stops as soon as node2's API answers, which can be before).
    let ip3 = lab.host("node3").ip.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = Instant::now();
    loop {
        let (online, settled) = rt.block_on(async {
            let nodes = get(&lab, &ip3, 5001, "/cluster/simpleNodes").await;
            let info = get(&lab, &ip3, 5001, "/cluster/info").await;
            let online = nodes.is_some_and(|(_, v)| {
                v["data"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|n| n["id"] == 1002 && n["online"] == 1 && n["status"] == 3)
                })
            });
            let settled = info.is_some_and(|(_, v)| {
                v["slots"].as_array().is_some_and(|s| {
                    !s.is_empty()
                        && s.iter().all(|x| {
                            x["leader"].as_u64().unwrap_or(0) != 0
                                && x["migrateFrom"].as_u64().unwrap_or(0) == 0
                                && x["migrateTo"].as_u64().unwrap_or(0) == 0
                        })
                })
            });
            (online, settled)
        });
        if online && settled {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "node2 never settled in node3's cluster"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = wkctl(&dir, &["resume"]);
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert_eq!(refused.status.code(), Some(3), "{said}");
    assert!(
        said.contains("versions      FAILED")
            && said.contains("node1 v2.2.5-20260422, node2 v2.2.6-20260601"),
        "{said}"
    );
    let allowed = wkctl(&dir, &["resume", "--allow-version-mix"]);
    let said = format!("{}{}", text(&allowed.stdout), text(&allowed.stderr));
    assert_eq!(allowed.status.code(), Some(0), "{said}");
    assert!(said.contains("as --allow-version-mix allows"), "{said}");
}

/// node5 runs the single node; node6 and node7 join in one run, one after the other.
#[test]
fn two_nodes_in_one_run_join_one_after_the_other() {
    let Some(lab) = lab_with(7) else { return };
    for h in ["node5", "node6", "node7"] {
        reset(&lab, h);
    }
    lab.deploy_single("node5", &SingleNode::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("wkctl-lab-multi-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, c) = (lab.host("node5"), lab.host("node6"), lab.host("node7"));
    let inv = format!(
        "cluster: multi\nssh:\n  identity_files: [{key}]\n  known_hosts: {kh}\ngateway:\n  node: node1\n  external_address: {ia}\nnodes:\n  - name: node1\n    id: 1001\n    internal_address: {ia}\n    ssh: {{ user: {ua} }}\n  - name: node2\n    id: 1002\n    internal_address: {ib}\n    ssh: {{ user: {ub} }}\n  - name: node3\n    id: 1003\n    internal_address: {ic}\n    ssh: {{ user: {uc} }}\n",
        key = lab.key().display(),
        kh = lab.known_hosts().display(),
        ia = a.ip,
        ib = b.ip,
        ic = c.ip,
        ua = a.user,
        ub = b.user,
        uc = c.user,
    );
    std::fs::write(dir.join("cluster.yml"), inv).unwrap();

    // Two new nodes become members of each other: node2's firewall dropping node3's packets to
    // its cluster port fails node3's preflight, naming both, before anything changes.
    let drop_rule = format!("INPUT -p tcp -s {} --dport 11110 -j DROP", c.ip);
    let ns6 = format!("/run/netns/{}", b.netns);
    let iptables = |op: &str| {
        let st = Command::new("nsenter")
            .arg(format!("--net={ns6}"))
            .arg("iptables")
            .arg(op)
            .args(drop_rule.split(' '))
            .status()
            .unwrap();
        assert!(st.success(), "iptables {op} in {ns6}");
    };
    iptables("-I");
    let ck = wkctl(&dir, &["check", "--add", "node2,node3"]);
    iptables("-D");
    let said = text(&ck.stdout);
    assert_eq!(ck.status.code(), Some(3), "{said}{}", text(&ck.stderr));
    assert!(
        said.lines().any(|l| l.contains("node3")
            && l.contains("reach-members FAILED")
            && l.contains(&format!("node2 {}:11110: timeout", b.ip))),
        "{said}"
    );

    // First, the leader refuses joins: node2's join fails, so node3's never starts.
    lab.put(
        "node5",
        "~/.config/wksim/env",
        "WKSIM_JOIN_DELAY_MS=700\nWKSIM_FAULT=refuse_joins\n",
    )
    .unwrap();
    lab.sh("node5", "cd ~/wukongim && docker compose restart wukongim")
        .unwrap();
    lab.wait_joined("node5", &a.ip, 1001, Duration::from_secs(30))
        .unwrap();
    quick_playbook(&dir);
    let failed = wkctl(
        &dir,
        &["expand", "--add", "node2,node3", "--playbook", "quick.yml"],
    );
    let err = text(&failed.stderr);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}{err}",
        text(&failed.stdout)
    );
    assert!(err.contains("@node2"), "node2's join fails: {err}");
    let ps = lab
        .sh(
            "node7",
            "cd ~/wukongim 2>/dev/null && docker compose ps -a --format json || true",
        )
        .unwrap();
    assert!(
        ps.trim().is_empty(),
        "node3 was prepared but never started: {ps}"
    );
    assert!(
        lab.exists("node7", "~/wukongim/docker-compose.yml")
            .unwrap(),
        "node3 was prepared"
    );
    // node2 and node3 are cleared first (node2 asks to join every 2 s: lifting the fault before
    // would let it in; picking up a failed run's half-started node is `wkctl resume`'s business),
    // then the fault goes, and a clean run adds both.
    reset(&lab, "node6");
    reset(&lab, "node7");
    lab.put("node5", "~/.config/wksim/env", "WKSIM_JOIN_DELAY_MS=700\n")
        .unwrap();
    lab.sh("node5", "cd ~/wukongim && docker compose restart wukongim")
        .unwrap();
    lab.wait_joined("node5", &a.ip, 1001, Duration::from_secs(30))
        .unwrap();
    let locked = wkctl(&dir, &["expand", "--add", "node2,node3"]);
    assert_eq!(
        locked.status.code(),
        Some(4),
        "the failed run's lock stays: {}",
        text(&locked.stderr)
    );
    let out = wkctl(
        &dir,
        &[
            "expand",
            "--add",
            "node2,node3",
            "--force-unlock",
            "--output",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Every line as docs/json.md says, every step with its duration.
    let events = json_stream(&text(&out.stdout));
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "step_changed" || e["event"] == "step_ok")
            .all(|e| e["ms"].is_u64()),
        "{events:?}"
    );
    let pos = |f: &dyn Fn(&serde_json::Value) -> bool| {
        events
            .iter()
            .position(f)
            .unwrap_or_else(|| panic!("event missing in {events:?}"))
    };
    let n2_joined = pos(&|e| e["event"] == "join_status" && e["id"] == 1002 && e["status"] == 3);
    let n3_first = pos(&|e| e["event"] == "join_status" && e["id"] == 1003);
    assert!(
        n2_joined < n3_first,
        "node3's join starts after node2 is 已加入"
    );
    let n3_compose = pos(&|e| e["event"] == "step_changed" && e["id"] == "node-compose@node3");
    let n2_up = pos(&|e| e["event"] == "step_changed" && e["id"] == "node-up@node2");
    assert!(
        n3_compose < n2_up,
        "both nodes are prepared before the first join"
    );
    let stats = events.iter().find(|e| e["event"] == "stats").unwrap();
    for h in stats["hosts"].as_array().unwrap() {
        assert_eq!(h[1], 1, "one SSH connection per host: {h}");
    }
    // nginx.conf and prometheus.yml were written once, with every node.
    let conf = lab.sh("node5", "cat ~/wukongim/nginx.conf").unwrap();
    for ip in [&a.ip, &b.ip, &c.ip] {
        assert!(conf.contains(&format!("server {ip}:5001;")), "{conf}");
    }
    // Written once, with both new nodes, by the first (failed) run; the clean run finds it so.
    assert_eq!(text(&failed.stdout).matches("nginx-conf@node1").count(), 1);
    assert!(events
        .iter()
        .any(|e| e["event"] == "step_ok" && e["id"] == "nginx-conf@node1"));
    let st = wkctl(&dir, &["status"]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st.stdout));
    assert_eq!(
        text(&st.stdout).matches("3 已加入").count(),
        3,
        "{}",
        text(&st.stdout)
    );
}

/// node8 runs the single node, node9 is added. A failed run is rolled back to the bytes; a run
/// killed half way (SIGKILL) is resumed to the end; a joined node refuses a rollback.
#[test]
fn rollback_to_the_bytes_and_resume_after_a_kill() {
    let Some(lab) = lab_with(9) else { return };
    // The leader refuses joins at first: runs fail at node2's join.
    let dir = single_and_new(
        &lab,
        "node8",
        "node9",
        "WKSIM_JOIN_DELAY_MS=700\nWKSIM_FAULT=refuse_joins\n",
        "undo",
    );
    quick_playbook(&dir);
    let files = |h: &str| {
        lab.sh(h, "cd ~/wukongim 2>/dev/null && sha256sum docker-compose.yml prometheus.yml nginx.conf 2>/dev/null; true").unwrap()
    };
    let before = files("node8");

    // A run that fails (the leader refuses joins) ...
    let failed = wkctl(
        &dir,
        &["expand", "--add", "node2", "--playbook", "quick.yml"],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    assert_ne!(files("node8"), before, "the run changed node8's files");
    let runs = text(&wkctl(&dir, &["runs"]).stdout);
    assert!(runs.contains("stopped (a step failed)"), "{runs}");
    // ... a rollback dry run changes nothing ...
    let dry = wkctl(&dir, &["rollback", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).contains("would have restored ~/wukongim/docker-compose.yml"),
        "{}",
        text(&dry.stdout)
    );
    assert!(lab.sh("node9", "test -d ~/wukongim").is_ok());
    rollback_refuses_another_lock_and_drift(&lab, &dir);
    // ... and the rollback puts every byte back and leaves node9 clean, holding the cluster's
    // lock while it works (paused once it holds it: the lock names the run, as a rollback).
    let pause = dir.join("rollback.pause");
    let paused = paused(&dir, &["rollback", "--yes"], "rollback:start", &pause)
        .unwrap_or_else(|e| panic!("{e}"));
    let lock = lab.sh("node8", "cat ~/wukongim/.wkctl.lock").unwrap();
    assert!(lock.contains(" op=rollback "), "{lock}");
    let beside = wkctl(
        &dir,
        &["expand", "--add", "node2", "--playbook", "quick.yml"],
    );
    assert_eq!(beside.status.code(), Some(4), "{}", text(&beside.stderr));
    std::fs::remove_file(&pause).unwrap();
    let rb = paused.wait_with_output().unwrap();
    assert_eq!(
        rb.status.code(),
        Some(0),
        "{}{}",
        text(&rb.stdout),
        text(&rb.stderr)
    );
    assert_eq!(
        files("node8"),
        before,
        "node8's files are byte for byte as before"
    );
    assert!(
        !lab.exists("node8", "~/wukongim/.wkctl.lock").unwrap(),
        "the lock is gone"
    );
    let ps = lab
        .sh("node8", "cd ~/wukongim && docker compose ps")
        .unwrap();
    assert!(
        !ps.contains("nginx") && ps.contains("wukongim-wukongim-1"),
        "{ps}"
    );
    assert!(
        !lab.exists("node9", "~/wukongim").unwrap(),
        "node9 is clean"
    );
    assert!(lab
        .pids(lab.host("node9"))
        .iter()
        .all(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline"))
            .map(|c| !c.contains("wk-sim"))
            .unwrap_or(true)));
    assert!(text(&wkctl(&dir, &["runs"]).stdout).contains("rolled back"));
    assert_eq!(
        wkctl(&dir, &["rollback"]).status.code(),
        Some(2),
        "nothing left to roll back"
    );

    // Ctrl-C (SIGINT, by pid): the run stops after the step under way, exit 130, and is undone.
    let run = start_until_prepared(
        &lab,
        &dir,
        &["expand", "--add", "node2", "--playbook", "quick.yml"],
        "node9",
    );
    let _ = Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status();
    let out = run.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("stopped after step"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&wkctl(&dir, &["runs"]).stdout).contains("stopped (Ctrl-C)"));
    // On a terminal, the rollback says what it undoes and goes on at `y`.
    let (code, shown) = on_terminal(&dir, &["rollback"], "y\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("rollback will change")
            && shown.contains("restore")
            && shown.contains("Do you want to continue?"),
        "{shown}"
    );
    assert_eq!(files("node8"), before, "undone again to the bytes");

    // A run killed half way (SIGKILL, by its pid), then resumed to the end.
    lab.put("node8", "~/.config/wksim/env", "WKSIM_JOIN_DELAY_MS=700\n")
        .unwrap();
    lab.sh("node8", "cd ~/wukongim && docker compose restart wukongim")
        .unwrap();
    lab.wait_joined(
        "node8",
        &lab.host("node8").ip.clone(),
        1001,
        Duration::from_secs(30),
    )
    .unwrap();
    let mut run = start_until_prepared(&lab, &dir, &["expand", "--add", "node2"], "node9");
    let _ = Command::new("kill")
        .args(["-KILL", &run.id().to_string()])
        .status();
    let _ = run.wait();
    let runs = text(&wkctl(&dir, &["runs"]).stdout);
    assert!(
        runs.lines().last().unwrap().contains("interrupted"),
        "{runs}"
    );
    let again = wkctl(&dir, &["expand", "--add", "node2"]);
    assert_eq!(
        again.status.code(),
        Some(4),
        "the killed run still holds the lock"
    );
    // On a terminal, the resume says what it will change and stops at `n`: exit 1, node8 and
    // node9 as the killed run left them, the run still interrupted and holding the lock.
    let left = (files("node8"), lab.exists("node9", "~/wukongim").unwrap());
    let (code, shown) = on_terminal(&dir, &["resume"], "n\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("resume will change") && shown.contains("Do you want to continue?"),
        "{shown}"
    );
    assert_eq!(
        (files("node8"), lab.exists("node9", "~/wukongim").unwrap()),
        left,
        "a declined resume changes nothing"
    );
    assert!(lab.exists("node8", "~/wukongim/.wkctl.lock").unwrap());
    let runs = text(&wkctl(&dir, &["runs"]).stdout);
    assert!(
        runs.lines().last().unwrap().contains("interrupted"),
        "{runs}"
    );
    let resumed = wkctl(&dir, &["resume"]);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}{}",
        text(&resumed.stdout),
        text(&resumed.stderr)
    );
    assert!(
        text(&resumed.stdout).contains("已加入"),
        "{}",
        text(&resumed.stdout)
    );
    let st = wkctl(&dir, &["status"]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st.stdout));
    assert_eq!(
        text(&st.stdout).matches("3 已加入").count(),
        2,
        "{}",
        text(&st.stdout)
    );
    let journal = std::fs::read_to_string(
        std::fs::read_dir(dir.join(".wkctl/runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap()
            .join("journal.jsonl"),
    )
    .unwrap();
    assert!(
        journal.contains("\"run_resumed\"") && journal.trim_end().ends_with('}'),
        "one journal, resumed"
    );
    // A joined node cannot be rolled back without --after-join.
    let refused = wkctl(&dir, &["rollback"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("no removal API")
            && text(&refused.stderr).contains("--after-join"),
        "{}",
        text(&refused.stderr)
    );
}

/// A failed run's rollback, refused while another run holds the cluster's lock (exit 4) and
/// while a file the run wrote has changed since (exit 2, naming it): nothing changes on node8,
/// and the refused rollback leaves no lock of its own behind.
fn rollback_refuses_another_lock_and_drift(lab: &Lab, dir: &std::path::Path) {
    let files = || {
        lab.sh("node8", "cd ~/wukongim && sha256sum docker-compose.yml prometheus.yml nginx.conf 2>/dev/null; cat .wkctl.lock 2>/dev/null; true").unwrap()
    };
    let as_left = files();
    lab.sh("node8", "cd ~/wukongim && { cp -p .wkctl.lock ~/lock.keep 2>/dev/null || rm -f ~/lock.keep; } && printf 'owner=ops@desk run=20260101T000000Z-beef op=expand time=0 nonce=ff\n' > .wkctl.lock").unwrap();
    let locked = wkctl(dir, &["rollback"]);
    let err = text(&locked.stderr);
    assert_eq!(locked.status.code(), Some(4), "{err}");
    assert!(
        err.contains("locked by another run") && err.contains("--force-unlock"),
        "{err}"
    );
    lab.sh("node8", "cd ~/wukongim && if [ -f ~/lock.keep ]; then mv ~/lock.keep .wkctl.lock; else rm -f .wkctl.lock; fi").unwrap();
    assert_eq!(files(), as_left, "the refused rollback changed node8");
    lab.sh("node8", "cd ~/wukongim && cp -p docker-compose.yml ~/compose.keep && echo '# by hand' >> docker-compose.yml").unwrap();
    let edited = files();
    let drift = wkctl(dir, &["rollback"]);
    let err = text(&drift.stderr);
    assert_eq!(drift.status.code(), Some(2), "{err}");
    assert!(
        err.contains("node1: ~/wukongim/docker-compose.yml") && err.contains("rollback --force"),
        "{err}"
    );
    assert_eq!(files(), edited, "the refused rollback changed node8");
    lab.sh("node8", "mv ~/compose.keep ~/wukongim/docker-compose.yml")
        .unwrap();
}

/// The bad-input matrix on the lab: node10 runs the single node, node11 is to be added. Each case:
/// its exit code, a message naming the host and what is wrong, and not one file or process
/// changed on either host.
#[test]
fn bad_input_changes_nothing_on_any_host() {
    let Some(lab) = lab_with(11) else { return };
    let dir = single_and_new(&lab, "node10", "node11", "", "bad");
    let good = std::fs::read_to_string(dir.join("cluster.yml")).unwrap();
    let (ip10, ip11) = (lab.host("node10").ip.clone(), lab.host("node11").ip.clone());
    let stranger = std::fs::read_to_string(lab.stranger_key().with_extension("pub")).unwrap();
    let stranger: Vec<&str> = stranger.split_whitespace().take(2).collect();
    std::fs::write(dir.join("empty_known_hosts"), "").unwrap();
    std::fs::write(
        dir.join("changed_known_hosts"),
        format!(
            "{ip10} {}\n{ip11} {} {}\n",
            lab.host("node10").host_key,
            stranger[0],
            stranger[1]
        ),
    )
    .unwrap();

    struct Case<'a> {
        name: &'a str,
        inventory: String,
        /// (host, command) run before, and after, the case.
        setup: Option<(&'a str, &'a str)>,
        cleanup: Option<(&'a str, &'a str)>,
        env: Option<(&'a str, &'a str)>,
        code: i32,
        says: Vec<&'a str>,
    }
    let inv = |from: &str, to: &str| good.replace(from, to);
    // Docker made the data dir as root: a throwaway container empties it (the user is in the
    // docker group, not root).
    let wipe = format!("docker run --rm --entrypoint /bin/sh -v \"$HOME/wukongim/wukongim_data\":/d {} -c 'rm -rf /d/*'", wk_lab::docker::WUKONGIM_IMAGE);
    let reboot = |addr: &str| {
        format!(
            "cd ~/wukongim && docker compose down >/dev/null 2>&1; {wipe}; sed -i 's/WK_CLUSTER_SERVERADDR=[0-9.]*:11110/WK_CLUSTER_SERVERADDR={addr}:11110/' docker-compose.yml && docker compose up -d >/dev/null 2>&1 && sleep 2"
        )
    };
    let wrong_boot = reboot(&lab.host("bastion").ip);
    let right_boot = reboot(&ip10);
    let kh = lab.known_hosts().display().to_string();
    let node2_ssh = format!("ssh: {{ user: {} }}", lab.host("node11").user);
    // node11 joined by hand as 1002, unknown to an inventory that has node2 (node11) as 1003.
    let stranger_compose = wk_lab::deploy::single_node_compose(
        &ip11,
        &SingleNode {
            node_id: 1002,
            with_prometheus: false,
            ..SingleNode::default()
        },
    )
    .replace(
        "    environment:\n",
        &format!("    environment:\n      - \"WK_CLUSTER_SEED=1001@{ip10}:11110\"\n"),
    );
    let join_by_hand = format!(
        "mkdir -p ~/wukongim && cat > ~/wukongim/docker-compose.yml <<'EOF'\n{stranger_compose}EOF\ncd ~/wukongim && docker compose up -d >/dev/null 2>&1 && for i in $(seq 100); do wget -q -O - http://{ip10}:5001/cluster/simpleNodes 2>/dev/null | grep -q '\"id\":1002' && exit 0; sleep 0.2; done; exit 1"
    );
    let unjoin =
        format!("cd ~/wukongim && docker compose down >/dev/null 2>&1; {wipe}; rm -rf ~/wukongim");
    let sock = lab.host("node11").docker_socket().display().to_string();
    let hide_socket = format!("mv {sock} {sock}.away");
    let show_socket = format!("mv {sock}.away {sock}");
    let img = wk_lab::docker::WUKONGIM_IMAGE;
    let hide_image = format!("docker tag {img} wk-lab/hidden:v2 && docker rmi -f {img} >/dev/null");
    let show_image =
        format!("docker tag wk-lab/hidden:v2 {img} && docker rmi wk-lab/hidden:v2 >/dev/null");
    let ns11 = lab.host("node11").netns.clone();
    let drop_rule = format!("INPUT -p tcp -s {ip10} --dport 11110 -j DROP");
    let block_cluster = format!("nsenter --net=/run/netns/{ns11} iptables -I {drop_rule}");
    let unblock_cluster = format!("nsenter --net=/run/netns/{ns11} iptables -D {drop_rule}");
    // node1's WuKongIM restarted as another build (the simulator's WKSIM_APP_VERSION), and
    // back; each waits until the cluster works again (/health, and /cluster/info, which answers
    // only through a leader).
    let with_build = |v: &str| {
        format!(
            "printf 'WKSIM_JOIN_DELAY_MS=700\\nWKSIM_MIGRATE_MS=300\\n{v}' > ~/.config/wksim/env && cd ~/wukongim && docker compose restart wukongim >/dev/null 2>&1 && for i in $(seq 150); do wget -q -O /dev/null http://{ip10}:5001/health 2>/dev/null && wget -q -O /dev/null http://{ip10}:5001/cluster/info 2>/dev/null && exit 0; sleep 0.2; done; exit 1"
        )
    };
    let old_build = with_build("WKSIM_APP_VERSION=v2.1.1\\n");
    let usual_build = with_build("");
    let from_ip10 = format!("from node1 ({ip10})");
    let to_ip11 = format!("{ip11}:11110: timeout");
    let cases = vec![
        Case { name: "wrong key", inventory: inv(&lab.key().display().to_string(), &lab.stranger_key().display().to_string()), setup: None, cleanup: None, env: None, code: 3, says: vec!["node1: authentication as", "id_stranger"] },
        Case { name: "unknown host key", inventory: inv(&kh, &dir.join("empty_known_hosts").display().to_string()), setup: None, cleanup: None, env: None, code: 3, says: vec!["is not known", "ssh-keyscan"] },
        Case { name: "changed host key", inventory: inv(&kh, &dir.join("changed_known_hosts").display().to_string()), setup: None, cleanup: None, env: None, code: 3, says: vec!["node2: HOST KEY CHANGED"] },
        Case { name: "unreachable host", inventory: inv(&node2_ssh, &format!("ssh: {{ user: {}, port: 2222 }}", lab.host("node11").user)), setup: None, cleanup: None, env: None, code: 3, says: vec!["node2: cannot connect"] },
        Case { name: "wrong sudo password", inventory: inv(&node2_ssh, &format!("ssh: {{ user: {}, sudo: password }}", lab.host("node11").user)), setup: None, cleanup: None, env: Some(("WKCTL_SUDO_PASSWORD", "not-the-password")), code: 3, says: vec!["sudo"] },
        Case { name: "port taken on the new node", inventory: good.clone(), setup: Some(("node11", "nohup python3 -c 'import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"0.0.0.0\", 5001)); s.listen(); time.sleep(120)' >/dev/null 2>&1 & echo $! > ~/.port-taker; sleep 0.5")), cleanup: Some(("node11", "kill $(cat ~/.port-taker); rm -f ~/.port-taker")), env: None, code: 3, says: vec!["ports-free", "5001"] },
        Case { name: "data dir not empty", inventory: good.clone(), setup: Some(("node11", "mkdir -p ~/wukongim/wukongim_data && echo x > ~/wukongim/wukongim_data/old")), cleanup: Some(("node11", "rm -rf ~/wukongim")), env: None, code: 3, says: vec!["install-dir", "holds data"] },
        Case { name: "node1's compose missing", inventory: good.clone(), setup: Some(("node10", "mv ~/wukongim/docker-compose.yml ~/compose.away")), cleanup: Some(("node10", "mv ~/compose.away ~/wukongim/docker-compose.yml")), env: None, code: 3, says: vec!["service", "docker-compose.yml"] },
        Case { name: "node1's compose malformed", inventory: good.clone(), setup: Some(("node10", "cp -p ~/wukongim/docker-compose.yml ~/compose.good && printf 'services: [\\n' > ~/wukongim/docker-compose.yml")), cleanup: Some(("node10", "mv ~/compose.good ~/wukongim/docker-compose.yml")), env: None, code: 3, says: vec!["service", "does not parse"] },
        Case { name: "node1's compose without WuKongIM", inventory: good.clone(), setup: Some(("node10", "cp -p ~/wukongim/docker-compose.yml ~/compose.good && printf 'services:\\n  web:\\n    image: nginx\\n' > ~/wukongim/docker-compose.yml")), cleanup: Some(("node10", "mv ~/compose.good ~/wukongim/docker-compose.yml")), env: None, code: 3, says: vec!["no service runs an image …/wukongim"] },
        Case { name: "lock held by another run", inventory: good.clone(), setup: Some(("node10", "printf 'owner=ops@other run=20260101T000000Z-beef time=0\\n' > ~/wukongim/.wkctl.lock")), cleanup: Some(("node10", "rm -f ~/wukongim/.wkctl.lock")), env: None, code: 4, says: vec!["locked by another run", "owner=ops@other", "--force-unlock"] },
        // `@host`: run as root on this machine, with the host's Docker environment.
        Case { name: "Docker daemon not running on the new node", inventory: good.clone(), setup: Some(("@node11", &hide_socket)), cleanup: Some(("@node11", &show_socket)), env: None, code: 3, says: vec!["node2", "docker", "the Docker daemon does not answer", "start Docker"] },
        Case { name: "WuKongIM image missing on the new node and not pullable", inventory: good.clone(), setup: Some(("@node11", &hide_image)), cleanup: Some(("@node11", &show_image)), env: None, code: 3, says: vec!["node2", "images", "cannot be pulled", "docker load"] },
        // An nginx.conf the operator made for something else: no WuKongIM upstream to add to.
        Case { name: "nginx.conf customised beyond editing", inventory: good.clone(), setup: Some(("node10", "printf 'events {}\\nhttp {\\n    server { listen 8080; location / { return 200; } }\\n}\\n' > ~/wukongim/nginx.conf")), cleanup: Some(("node10", "rm -f ~/wukongim/nginx.conf")), env: None, code: 3, says: vec!["edits", "nginx-conf@node1", "no `upstream wukongimapi` block"] },
        Case { name: "nginx.conf with an upstream that includes its servers", inventory: good.clone(), setup: Some(("node10", "printf 'events {}\\nhttp {\\n    upstream wukongimapi {\\n        include members.conf;\\n    }\\n}\\n' > ~/wukongim/nginx.conf")), cleanup: Some(("node10", "rm -f ~/wukongim/nginx.conf")), env: None, code: 3, says: vec!["edits", "includes members.conf"] },
        Case { name: "prometheus.yml with flow-style scrape_configs", inventory: good.clone(), setup: Some(("node10", "cp -p ~/wukongim/prometheus.yml ~/prom.good && printf 'scrape_configs: [{job_name: x, static_configs: [{targets: [\\\"a:1\\\"]}]}]\\n' > ~/wukongim/prometheus.yml")), cleanup: Some(("node10", "mv ~/prom.good ~/wukongim/prometheus.yml")), env: None, code: 3, says: vec!["edits", "prometheus-jobs@node1", "flow style"] },
        // node1 first booted with a wrong WK_CLUSTER_SERVERADDR: WuKongIM keeps it (FACTS, #274).
        Case {
            name: "node1's cluster address fixed wrong at first boot",
            inventory: good.clone(),
            setup: Some(("node10", &wrong_boot)),
            cleanup: Some(("node10", &right_boot)),
            env: None,
            code: 3,
            says: vec!["cluster-addr", "fixed the cluster address"],
        },
        // The members cannot dial the new node's 11110 (its firewall drops them), though it
        // reaches the seed: WuKongIM's raft answers over the sender's own connection.
        Case { name: "members cannot reach the new node's cluster port", inventory: good.clone(), setup: Some(("@node11", &block_cluster)), cleanup: Some(("@node11", &unblock_cluster)), env: None, code: 3, says: vec!["reach-to-new", &from_ip10, &to_ip11, "timeout"] },
        // node1's data in a named volume: recreating it (member-up) would lose it.
        Case { name: "node1 keeps its data in a named volume", inventory: good.clone(), setup: Some(("node10", "cp -p ~/wukongim/docker-compose.yml ~/compose.good && sed -i 's|- ./wukongim_data:/root/wukongim|- wkdata:/root/wukongim|' ~/wukongim/docker-compose.yml && printf 'volumes:\\n  wkdata: {}\\n' >> ~/wukongim/docker-compose.yml && grep -q wkdata: ~/wukongim/docker-compose.yml")), cleanup: Some(("node10", "mv ~/compose.good ~/wukongim/docker-compose.yml")), env: None, code: 3, says: vec!["data-mount", "named volume `wkdata`"] },
        // WuKongIM clusters need v2.1.2 or later: told by the build that runs, not the tag.
        Case { name: "node1 runs a WuKongIM build older than v2.1.2", inventory: good.clone(), setup: Some(("node10", &old_build)), cleanup: Some(("node10", &usual_build)), env: None, code: 3, says: vec!["versions", "node1 runs v2.1.1", "v2.1.2 or later"] },
        // Last: node10's cluster keeps 1002 for good (WuKongIM v2 cannot remove a member).
        Case {
            name: "an id taken in the cluster by a node the inventory does not know",
            inventory: inv("id: 1002", "id: 1003"),
            setup: Some(("node11", &join_by_hand)),
            cleanup: Some(("node11", &unjoin)),
            env: None,
            code: 3,
            says: vec!["members", "the cluster has node 1002 at", "does not list"],
        },
    ];
    // Before node2 is deployed, status never files a refused host key under "declared, not deployed", nor drops an
    // unreachable host: each row says what stopped it.
    for (known_hosts, says) in [
        ("changed_known_hosts", "HOST KEY CHANGED"),
        ("empty_known_hosts", "HOST KEY UNKNOWN"),
    ] {
        std::fs::write(
            dir.join("cluster.yml"),
            inv(&kh, &dir.join(known_hosts).display().to_string()),
        )
        .unwrap();
        let st = wkctl(&dir, &["status"]);
        let table = text(&st.stdout);
        assert_eq!(st.status.code(), Some(1), "{table}{}", text(&st.stderr));
        let row = table
            .lines()
            .find(|l| l.starts_with("node2"))
            .unwrap_or_default();
        assert!(
            row.contains(says) && !row.contains("declared, not deployed"),
            "{table}"
        );
        let js: serde_json::Value =
            serde_json::from_slice(&wkctl(&dir, &["status", "--output", "json"]).stdout).unwrap();
        let n2 = &js["nodes"][1];
        assert_eq!(n2["status_text"], says, "{js}");
        assert!(
            n2["problems"][0]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!(
                    "node2: {}",
                    if says == "HOST KEY CHANGED" {
                        says
                    } else {
                        "host key"
                    }
                )),
            "{js}"
        );
    }
    std::fs::write(
        dir.join("cluster.yml"),
        inv(
            &node2_ssh,
            &format!("ssh: {{ user: {}, port: 2222 }}", lab.host("node11").user),
        ),
    )
    .unwrap();
    let st = wkctl(&dir, &["status"]);
    let table = text(&st.stdout);
    assert_eq!(st.status.code(), Some(1), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("node2"))
        .unwrap_or_default();
    assert!(
        row.contains("not a member; unreachable") && row.contains("node2: cannot connect"),
        "{table}"
    );
    std::fs::write(dir.join("cluster.yml"), &good).unwrap();
    // Both hosts' files and processes, compared before and after each case.
    let both = || -> Vec<_> {
        ["node10", "node11"]
            .iter()
            .map(|h| snapshot(&lab, h))
            .collect()
    };
    let mut seen = 0;
    for c in cases {
        std::fs::write(dir.join("cluster.yml"), &c.inventory).unwrap();
        if let Some((h, cmd)) = c.setup {
            on(&lab, h, cmd);
        }
        let before = both();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wkctl"));
        cmd.args(["expand", "--add", "node2", "--yes"])
            .current_dir(&dir)
            .env_remove("SSH_AUTH_SOCK");
        if let Some((k, v)) = c.env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        let after = both();
        if let Some((h, cmd)) = c.cleanup {
            on(&lab, h, cmd);
        }
        assert_eq!(out.status.code(), Some(c.code), "{}: {all}", c.name);
        for s in &c.says {
            assert!(all.contains(s), "{}: expected `{s}` in:\n{all}", c.name);
        }
        assert!(
            all.contains("nothing was changed"),
            "{}: says nothing of what changed: {all}",
            c.name
        );
        assert!(
            all.contains("node1") || all.contains("node2"),
            "{}: names no host: {all}",
            c.name
        );
        assert_eq!(before, after, "{}: a host changed", c.name);
        assert!(
            !dir.join(".wkctl").exists(),
            "{}: a journal was started",
            c.name
        );
        seen += 1;
    }
    assert_eq!(seen, 21);

    // node2, now a member (the last case joined it by hand), behind a changed host key: the
    // row still says so first.
    std::fs::write(
        dir.join("cluster.yml"),
        inv(&kh, &dir.join("changed_known_hosts").display().to_string()),
    )
    .unwrap();
    let js: serde_json::Value =
        serde_json::from_slice(&wkctl(&dir, &["status", "--output", "json"]).stdout).unwrap();
    assert_eq!(
        (
            js["nodes"][1]["status"].as_u64(),
            js["nodes"][1]["health"].as_str()
        ),
        (Some(3), Some("HOST KEY CHANGED")),
        "{js}"
    );
    assert!(
        js["nodes"][1]["problems"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("node2: HOST KEY CHANGED"),
        "{js}"
    );

    // A journal cut in the middle: resume and rollback say where, and change nothing.
    std::fs::write(dir.join("cluster.yml"), &good).unwrap();
    let run = dir.join(".wkctl/runs/20260101T000000Z-dead");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("plan.json"),
        "{\"adding\": [{\"name\": \"node2\", \"id\": 1002}], \"fingerprint\": \"x\"}",
    )
    .unwrap();
    std::fs::write(run.join("journal.jsonl"), "{\"type\":\"run_started\",\"seq\":1}\n{\"type\":\"step_sta\n{\"type\":\"run_stopped\",\"seq\":3}\n").unwrap();
    let before = both();
    for sub in ["resume", "rollback"] {
        let out = wkctl(&dir, &[sub, "20260101T000000Z-dead"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{sub}: {err}");
        assert!(err.contains("journal.jsonl: line 2"), "{sub}: {err}");
    }
    assert!(text(&wkctl(&dir, &["runs"]).stdout).contains("unreadable journal"));
    let after = both();
    assert_eq!(before, after);
}
