//! `wkctl` through its binary, as an operator runs it. One test binary for every CLI test.
//! `WKCTL_BLESS=1` rewrites the expected-output files under tests/fixtures/cli/ (review the diff).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn wkctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wkctl"))
        .args(args)
        .current_dir(repo())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("wkctl runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("utf-8 output")
}

/// Compares with an expected-output file, or rewrites it under WKCTL_BLESS.
fn expect_file(rel: &str, got: &str) {
    let p = repo().join(rel);
    if std::env::var_os("WKCTL_BLESS").is_some() {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, got).unwrap();
    }
    let want = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        got == want,
        "output differs from {rel}:\n--- got\n{got}\n--- want\n{want}"
    );
}

const DRY: [&str; 5] = ["expand", "--add", "node2", "--dry-run", "--offline"];

/// A value of node2's compose file in the scale-out document (tests/fixtures/seed/node2-env.txt):
/// the example's addresses are data, kept in that fixture.
fn seed(key: &str) -> String {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/seed/node2-env.txt")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} is not in the seed fixture"))
        .to_string()
}

#[test]
fn offline_dry_run_of_the_example_prints_the_whole_plan() {
    let mut args = vec!["-i", "examples/cluster.yml"];
    args.extend(DRY);
    let out = wkctl(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    expect_file("tests/fixtures/cli/expand-node2.txt", &stdout);
    // What the issue asks the preview to carry, whatever the fixture says.
    let node2_host = seed("WK_CLUSTER_SERVERADDR").replace(":11110", "");
    for must in [
        "[node2] create the install directory".to_string(),
        "$ mkdir -p -m 755 ~/wukongim".to_string(),
        "write ~/wukongim/docker-compose.yml".to_string(),
        format!("- \"WK_CLUSTER_SEED={}\"", seed("WK_CLUSTER_SEED")),
        "in ~/wukongim/docker-compose.yml, set on the service running image …/wukongim:"
            .to_string(),
        format!("WK_EXTERNAL_TCPADDR={}", seed("WK_EXTERNAL_TCPADDR")),
        "add service `nginx` (one already there stays as it is)".to_string(),
        format!("targets: ['{node2_host}:5300']"),
        "$ cd ~/wukongim && sudo -n flock . $COMPOSE up -d $WK_SERVICE".to_string(),
        "将加入 → 加入中 → 已加入".to_string(),
        "Nothing was changed.".to_string(),
    ] {
        assert!(stdout.contains(&must), "the plan lacks `{must}`");
    }
}

#[test]
fn json_output_is_the_same_plan() {
    let mut args = vec!["-i", "examples/cluster.yml", "--output", "json"];
    args.extend(DRY);
    let out = wkctl(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["offline"], true);
    let steps = doc["plan"]["steps"].as_array().unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "preflight@node1",
            "preflight@node2",
            "lock@node1",
            "install-dir@node2",
            "node-compose@node2",
            "member-env@node1",
            "nginx-conf@node1",
            "nginx-service@node1",
            "prometheus-jobs@node1",
            "member-up@node1",
            "prometheus-reload@node1",
            "node-up@node2",
            "node-health@node2",
            "joined@node2",
            "lb-health@node1",
            "unlock@node1",
        ]
    );
    // The text form numbers the same steps in the same order.
    let mut targs = vec!["-i", "examples/cluster.yml"];
    targs.extend(DRY);
    let t = text(&wkctl(&targs).stdout);
    for (i, id) in ids.iter().enumerate() {
        assert!(
            t.contains(&format!("{:>3}. ", i + 1)) && t.contains(&format!("({id})")),
            "{id}"
        );
    }
    let env = steps
        .iter()
        .find(|s| s["id"] == "member-env@node1")
        .unwrap();
    assert_eq!(env["action"]["kind"], "compose_env");
    assert_eq!(
        env["action"]["env"][3],
        serde_json::json!([
            "WK_CLUSTER_SERVERADDR",
            seed("WK_CLUSTER_SEED").split_once('@').unwrap().1
        ])
    );
    let jobs = &steps
        .iter()
        .find(|s| s["id"] == "prometheus-jobs@node1")
        .unwrap()["action"]["jobs"];
    // A job per member (node1's, found by its id label, stays as the operator has it).
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    assert_eq!(
        jobs[1]["targets"][0].as_str().unwrap(),
        seed("WK_CLUSTER_SERVERADDR").replace(":11110", ":5300")
    );
    assert_eq!(jobs[1]["id_label"], "1002");
    assert_eq!(jobs[0]["id_label"], "1001");
}

#[test]
fn the_plan_is_the_same_every_time() {
    let mut args = vec!["-i", "examples/cluster.yml", "--output", "json"];
    args.extend(DRY);
    assert_eq!(wkctl(&args).stdout, wkctl(&args).stdout);
}

#[test]
fn offline_dry_run_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("wkctl-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("cluster.yml");
    std::fs::copy(repo().join("examples/cluster.yml"), &inv).unwrap();
    let before = std::fs::read(&inv).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wkctl"))
        .args(DRY)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["cluster.yml"], "the dry run left files behind");
    assert_eq!(std::fs::read(&inv).unwrap(), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn offline_needs_dry_run() {
    // A usage error, decided before anything is read or contacted.
    let out = wkctl(&[
        "-i",
        "examples/cluster.yml",
        "expand",
        "--add",
        "node2",
        "--offline",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--dry-run"));
}

/// `--save` needs a dry run; `--plan` is not given nodes of its own; a file that is not a
/// saved plan is refused before any host is contacted (the example's hosts are not reachable
/// from here, and are never tried).
#[test]
fn saved_plan_usage_errors() {
    let save = wkctl(&[
        "-i",
        "examples/cluster.yml",
        "expand",
        "--add",
        "node2",
        "--save",
        "p.wkplan",
    ]);
    assert_eq!(save.status.code(), Some(2));
    assert!(
        text(&save.stderr).contains("--dry-run"),
        "{}",
        text(&save.stderr)
    );
    let both = wkctl(&[
        "-i",
        "examples/cluster.yml",
        "expand",
        "--add",
        "node2",
        "--plan",
        "p.wkplan",
    ]);
    assert_eq!(both.status.code(), Some(2));
    assert!(
        text(&both.stderr).contains("cannot be used with"),
        "{}",
        text(&both.stderr)
    );
    let dir = std::env::temp_dir().join(format!("wkctl-saved-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_a_plan = dir.join("p.wkplan");
    std::fs::write(&not_a_plan, "{\"steps\": []}").unwrap();
    let out = wkctl(&[
        "-i",
        "examples/cluster.yml",
        "expand",
        "--plan",
        not_a_plan.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is not a saved plan of wkctl") && err.contains("--save"),
        "{err}"
    );
    assert!(!err.contains("cannot connect"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_inventory_says_where_it_looked() {
    let out = wkctl(&[
        "-i",
        "no/such/cluster.yml",
        "expand",
        "--add",
        "node2",
        "--dry-run",
        "--offline",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: cannot read the inventory no/such/cluster.yml:"),
        "{err}"
    );
    assert!(err.contains("-i FILE"), "{err}");
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let out = wkctl(&["expand", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let h = text(&out.stdout);
    assert!(
        h.contains("Exit codes:") && h.contains("2  bad input"),
        "{h}"
    );
    assert!(
        h.contains("wkctl expand --add node2 --dry-run --offline"),
        "{h}"
    );
    let out = wkctl(&["--help"]);
    assert!(text(&out.stdout).contains("Exit codes:"));
}

#[test]
fn every_command_has_help_with_examples() {
    for cmd in ["expand", "check", "status", "init", "completions", "man"] {
        let out = wkctl(&[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{cmd}");
        assert!(
            text(&out.stdout).contains("Example"),
            "`wkctl {cmd} --help` has no example"
        );
    }
}

#[test]
fn completions_and_man_page() {
    let bash = text(&wkctl(&["completions", "bash"]).stdout);
    assert!(
        bash.contains("_wkctl()") && bash.contains("expand") && bash.contains("--dry-run"),
        "{bash}"
    );
    let zsh = text(&wkctl(&["completions", "zsh"]).stdout);
    assert!(zsh.starts_with("#compdef wkctl"), "{zsh}");
    let man = text(&wkctl(&["man"]).stdout);
    assert!(
        man.contains(".TH wkctl 1") && man.contains("expand"),
        "{man}"
    );
    assert_eq!(
        wkctl(&["completions", "tcsh"]).status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn custom_playbook_and_templates_are_used() {
    let dir = std::env::temp_dir().join(format!("wkctl-tpl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tpl = std::fs::read_to_string(repo().join("templates/nginx-service.yml.tera")).unwrap();
    std::fs::write(
        dir.join("nginx-service.yml.tera"),
        tpl.replace("restart: always", "restart: unless-stopped"),
    )
    .unwrap();
    let pb = dir.join("pb.yml");
    std::fs::write(
        &pb,
        "name: tiny\nsteps:\n  - id: only\n    on: new\n    mkdir: { path: /srv/x }\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let mut args = vec!["-i", "examples/cluster.yml", "--output", "json"];
    args.extend(DRY);
    args.extend(["--templates", d]);
    let doc: serde_json::Value = serde_json::from_slice(&wkctl(&args).stdout).unwrap();
    let svc = doc["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "nginx-service@node1")
        .unwrap();
    assert!(svc["action"]["content"]
        .as_str()
        .unwrap()
        .contains("restart: unless-stopped"));
    let p = pb.to_str().unwrap();
    let mut args = vec!["-i", "examples/cluster.yml", "--output", "json"];
    args.extend(DRY);
    args.extend(["--playbook", p]);
    let doc: serde_json::Value = serde_json::from_slice(&wkctl(&args).stdout).unwrap();
    assert_eq!(doc["plan"]["playbook"], "tiny");
    assert_eq!(doc["plan"]["steps"].as_array().unwrap().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A malformed inventory: exit 2, the file:line:col, and its own message.
fn bad(case: &str, at: &str, message: &str) {
    let file = format!("tests/fixtures/inventory/bad/{case}.yml");
    let mut args = vec!["-i", file.as_str()];
    args.extend(DRY);
    let out = wkctl(&args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{case}: {err}");
    assert!(out.stdout.is_empty(), "{case}: printed a plan");
    let place = if at.is_empty() {
        format!("error: {file}: ")
    } else {
        format!("error: {file}:{at}: ")
    };
    assert!(
        err.starts_with(&place),
        "{case}: expected `{place}` in:\n{err}"
    );
    assert!(
        err.contains(message),
        "{case}: expected `{message}` in:\n{err}"
    );
    assert!(err.contains("\n  fix: "), "{case}: no fix in:\n{err}");
}

macro_rules! bad_inventory {
    ($($name:ident: $at:literal, $msg:literal;)*) => {
        $(#[test]
        fn $name() {
            bad(&stringify!($name).replace('_', "-"), $at, $msg);
        })*
        /// Every fixture file has its test, and every test its file.
        #[test]
        fn every_bad_inventory_has_a_test() {
            let mut named: Vec<String> = vec![$(stringify!($name).replace('_', "-")),*];
            named.sort();
            let mut files: Vec<String> = std::fs::read_dir(repo().join("tests/fixtures/inventory/bad"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_str().unwrap().trim_end_matches(".yml").to_string())
                .collect();
            files.sort();
            assert_eq!(named, files);
        }
    };
}

bad_inventory! {
    yaml_syntax: "3:6", "did not find expected ',' or '}'";
    unknown_top_field: "2:1", "unknown field `replicas`";
    unknown_node_field: "11:5", "unknown field `password`";
    duplicate_key: "2:1", "key `cluster` appears twice in one mapping";
    duplicate_name: "9:11", "node name `node1` is used twice (first on line 6)";
    duplicate_id: "10:9", "id 1001 is already node `node1`'s (line 7)";
    id_zero: "10:9", "id 0 is out of range: WuKongIM accepts 1..=1023";
    id_too_large: "10:9", "id 1024 is out of range";
    id_not_a_number: "10:9", "expected a whole number here";
    bad_internal_address: "11:23", "internal_address `10.99.0.300` is not an address: it is not a valid IPv4 address";
    address_with_port: "11:23", "internal_address `10.99.0.12:11110` is not an address";
    address_with_scheme: "4:21", "gateway.external_address `http://10.99.0.10` is not an address: it has a scheme";
    duplicate_internal_address: "11:23", "internal_address 10.99.0.11 is already node `node1`'s";
    ssh_port_out_of_range: "3:9", "ssh.port 70000 is out of range";
    keepalive_zero: "3:19", "ssh.keepalive_secs 0 is out of range";
    lb_port_zero: "5:17", "gateway.ports.api 0 is out of range";
    lb_ports_collide: "5:10", "gateway.ports.tcp 15100 is also gateway.ports.api";
    gateway_unknown_node: "3:9", "gateway.node `node9` is not one of the nodes";
    seed_unknown_node: "2:7", "seed `node7` is not one of the nodes";
    sudo_mode_unknown: "3:9", "ssh.sudo `always` is not a sudo mode";
    host_key_policy_accept_any: "3:20", "wkctl never accepts a host key it cannot verify";
    install_dir_relative: "2:14", "install_dir `wukongim` is not usable";
    compose_command_unknown: "2:18", "compose_command `podman-compose` is not one wkctl knows";
    cluster_name_bad: "1:10", "cluster name `my cluster!` is not usable";
    jump_host_bad: "3:9", "ssh.jump `ops@bastion:99999` is not usable: port `99999` is out of range";
    top_level_ssh_host: "3:9", "`ssh.host` at the top level would send every node to one host";
    missing_internal_address: "10:5", "missing field `internal_address`";
    nodes_empty: "5:8", "`nodes` is empty";
    gateway_without_external_address: "3:3", "the gateway has no external address";
    node_name_bad: "9:11", "node name `2node` is not usable";
    prometheus_url_bad: "5:19", "gateway.prometheus_url `prometheus:9090` is not an http(s) URL";
    prometheus_url_quote: "5:19", "gateway.prometheus_url `http://10.99.0.11:9090/x\" privileged: true #` is not an http(s) URL";
    image_bad: "2:8", "image `wukongim v2` is not an image reference";
    gateway_host_with_id: "8:9", "node `gw` has `role: gateway` and an `id`";
    role_unknown: "7:11", "node `node1`: role `monitor` is not one wkctl knows";
    id_missing: "9:11", "node `node2` has no `id`";
    seed_is_gateway_host: "5:7", "seed `gw` is the gateway host, which runs no WuKongIM";
}

#[test]
fn shared_ssh_defaults_are_reported_once() {
    let mut args = vec!["-i", "tests/fixtures/inventory/bad/sudo-mode-unknown.yml"];
    args.extend(DRY);
    let err = text(&wkctl(&args).stderr);
    assert_eq!(err.matches("is not a sudo mode").count(), 1, "{err}");
}

/// `--add` is checked against the inventory: exit 2, one message per problem.
fn bad_add(add: &str, messages: &[&str]) {
    let out = wkctl(&[
        "-i",
        "tests/fixtures/inventory/good.yml",
        "expand",
        "--add",
        add,
        "--dry-run",
        "--offline",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{add}: {err}");
    for m in messages {
        assert!(err.contains(m), "{add}: expected `{m}` in:\n{err}");
    }
    assert_eq!(
        err.matches("error: --add: ").count(),
        messages.len(),
        "{err}"
    );
}

#[test]
fn add_a_node_not_in_the_inventory() {
    bad_add(
        "node3",
        &["node `node3` is not in tests/fixtures/inventory/good.yml (it has: node1, node2)"],
    );
}

#[test]
fn add_the_gateway_or_seed() {
    bad_add(
        "node1",
        &["node `node1` is the cluster's seed: it is already running and cannot be added"],
    );
}

#[test]
fn add_a_node_twice() {
    bad_add("node2,node2", &["node `node2` is named twice"]);
    let out = wkctl(&[
        "-i",
        "tests/fixtures/inventory/good.yml",
        "expand",
        "--add",
        "node2",
        "--add",
        "node2",
        "--dry-run",
        "--offline",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_add_problem_is_reported_at_once() {
    bad_add(
        "node1,node9,node2,node2",
        &[
            "`node1` is the cluster's seed",
            "`node9` is not in",
            "`node2` is named twice",
        ],
    );
}

#[test]
fn the_good_fixture_plans() {
    let out = wkctl(&[
        "-i",
        "tests/fixtures/inventory/good.yml",
        "expand",
        "--add",
        "node2",
        "--dry-run",
        "--offline",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

mod lab;
