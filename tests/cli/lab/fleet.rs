//! A fleet whose hosts differ as real fleets do (`wk_lab::docker::Profile::for_host`): the seed
//! on Compose v1 (the WuKongIM docs' own `docker-compose`), a node that reaches Docker only
//! through a sudo that asks its password, on Compose 2.18 (older than 2.21), one in the docker
//! group without any sudo, on Compose 2.40, and one through passwordless sudo, on v1. One cluster
//! grows over all four, and a run is rolled back on a host where Docker made the data dir as root
//! and the user has no sudo.

use std::path::Path;
use std::time::Duration;

use wk_lab::deploy::SingleNode;
use wk_lab::Lab;

use super::{playbook_with_waits, reset, text};

/// (inventory name, lab host, id, sudo mode)
const FLEET: [(&str, &str, u16, &str); 4] = [
    ("node1", "mix1", 1001, "none"),
    ("node2", "mix3", 1002, "none"),
    ("node3", "mix2", 1003, "password"),
    ("node4", "mix4", 1004, "passwordless"),
];

fn inventory(lab: &Lab, dir: &Path) {
    let gw = &lab.host("mix1").ip;
    let mut t = format!(
        "cluster: fleet\nssh:\n  identity_files: [{}]\n  known_hosts: {}\ngateway:\n  node: node1\n  external_address: {gw}\nnodes:\n",
        lab.key().display(),
        lab.known_hosts().display()
    );
    for (name, host, id, sudo) in FLEET {
        let h = lab.host(host);
        t.push_str(&format!(
            "  - name: {name}\n    id: {id}\n    internal_address: {}\n    ssh: {{ user: {}, sudo: {sudo} }}\n",
            h.ip, h.user
        ));
    }
    std::fs::write(dir.join("cluster.yml"), t).unwrap();
}

fn run(dir: &Path, args: &[&str], password: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wkctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("SSH_AUTH_SOCK")
        .env("WKCTL_YES", "1")
        .env("WKCTL_SUDO_PASSWORD", password)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn a_mixed_fleet_grows_and_rolls_back() {
    let Some(lab) = super::lab() else { return };
    if !lab.hosts.iter().any(|h| h.name == "mix4") {
        assert!(
            std::env::var_os("WKLAB_REQUIRED").is_none(),
            "the lab has no mix hosts: bring it up again with this build's wk-lab"
        );
        return;
    }
    for (_, h, _, _) in FLEET {
        reset(&lab, h);
    }
    let password = lab.host("mix2").password.clone();
    // The seed refuses joins at first (a run that fails at its join, to be rolled back).
    lab.put(
        "mix1",
        "~/.config/wksim/env",
        "WKSIM_JOIN_DELAY_MS=700\nWKSIM_FAULT=refuse_joins\n",
    )
    .unwrap();
    lab.deploy_single("mix1", &SingleNode::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("wkctl-lab-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    inventory(&lab, &dir);
    playbook_with_waits(&dir, "quick.yml", &[(180, 3), (600, 3)]);

    // Preflight finds each host's compose as its steps call it.
    let (code, out) = run(&dir, &["check", "--add", "node2,node3,node4"], &password);
    assert_eq!(code, Some(0), "{out}");
    for (host, compose) in [
        ("node1", "docker-compose"),
        ("node2", "docker compose"),
        ("node3", "docker compose"),
        ("node4", "docker-compose"),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!(" {host} ")) && l.contains(" compose "))
            .unwrap_or_else(|| panic!("no compose check of {host}:\n{out}"));
        assert!(line.contains(&format!("`{compose}` found")), "{line}");
    }
    assert_eq!(out.matches("the Docker daemon answers").count(), 4, "{out}");

    // node2 (docker group, no sudo): a run that fails at the join, rolled back. Docker made its
    // data dir as root; the rollback still removes all of it.
    let (code, out) = run(
        &dir,
        &["expand", "--add", "node2", "--playbook", "quick.yml"],
        &password,
    );
    assert_eq!(code, Some(1), "{out}");
    let home3 = lab.host("mix3").home.clone();
    let data = home3.join("wukongim/wukongim_data");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&data).map(|m| m.uid()).ok(),
        Some(0),
        "Docker made {} as root",
        data.display()
    );
    let (code, out) = run(&dir, &["rollback"], &password);
    assert_eq!(code, Some(0), "{out}");
    assert!(!home3.join("wukongim").exists(), "rollback left {out}");
    assert!(
        lab.docker("mix3", &["ps", "-aq"])
            .unwrap()
            .trim()
            .is_empty(),
        "containers left on mix3"
    );

    // The seed accepts joins again; the fleet grows one node per run.
    lab.put("mix1", "~/.config/wksim/env", "WKSIM_JOIN_DELAY_MS=700\n")
        .unwrap();
    lab.sh("mix1", "cd ~/wukongim && docker-compose restart wukongim")
        .unwrap();
    let ip1 = lab.host("mix1").ip.clone();
    lab.wait_joined("mix1", &ip1, 1001, Duration::from_secs(30))
        .unwrap();
    for add in ["node2", "node3", "node4"] {
        let (code, out) = run(&dir, &["expand", "--add", add], &password);
        assert_eq!(code, Some(0), "expand --add {add}:\n{out}");
        assert!(out.contains("已加入"), "{out}");
    }
    assert!(
        !out_of(&lab, "mix2").is_empty(),
        "mix2 runs WuKongIM through sudo"
    );
    let (code, out) = run(&dir, &["status"], &password);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.matches("3 已加入").count(), 4, "{out}");
    // What nginx and Prometheus run on the v1 gateway is what the runs wrote.
    let seen = lab
        .sh(
            "mix1",
            "cd ~/wukongim && docker-compose exec -T nginx sha256sum /etc/nginx/nginx.conf && sha256sum nginx.conf",
        )
        .unwrap();
    let sums: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(sums.len() == 2 && sums[0] == sums[1], "{seen}");
    let jobs = lab
        .sh(
            "mix1",
            "wget -q -Y off -O - http://127.0.0.1:9090/api/v1/status/config",
        )
        .unwrap();
    for id in [1002, 1003, 1004] {
        assert!(
            jobs.contains(&format!("wukongim-{id}-trace-metrics")),
            "{jobs}"
        );
    }

    // The last run undone on node4 (passwordless sudo, v1): its root-owned data dir goes too.
    let (code, out) = run(&dir, &["rollback", "--after-join"], &password);
    assert_eq!(code, Some(0), "{out}");
    assert!(!lab.host("mix4").home.join("wukongim").exists(), "{out}");
    assert!(lab
        .docker("mix4", &["ps", "-aq"])
        .unwrap()
        .trim()
        .is_empty());
}

/// The ids of the containers that run on a host.
fn out_of(lab: &Lab, host: &str) -> String {
    lab.docker(host, &["ps", "-q"]).unwrap()
}
