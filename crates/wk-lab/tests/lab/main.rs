//! The lab itself: it comes up, stays up when asked again, refuses a subnet a route already
//! uses, and goes away completely, even with sshd sessions still running in its namespaces.
//! Builds its own small lab (prefix `wkltst`), apart from the one the other tests use.
#![allow(clippy::print_stderr)]

use std::path::Path;
use std::process::Command;

use wk_lab::{down, up, Lab, UpOptions};

fn root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id runs");
    let is_root = String::from_utf8_lossy(&out.stdout).trim() == "0";
    if !is_root {
        assert!(
            std::env::var_os("WKLAB_REQUIRED").is_none(),
            "the lab needs root"
        );
        eprintln!("skipped: the lab needs root");
    }
    is_root
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ssh(lab: &Lab, host: &str, command: &str) -> std::process::Output {
    lab.ssh(host, command).unwrap()
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one lab's whole life (up, up again, down) is one scenario, read top to bottom"
)]
fn up_again_down_leaves_nothing_behind() {
    if !root() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wk-lab-test-{}", std::process::id()));
    let opts = UpOptions {
        dir: dir.clone(),
        subnet: "10.251.250".into(),
        prefix: "wkltst".into(),
        hosts: vec!["a".into(), "b".into()],
    };
    let lab = up(&opts).expect("lab up");
    assert_eq!(lab.hosts.len(), 2);
    let out = ssh(&lab, "a", "id -un");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "wkltst-a");

    // Each host has its own Docker Engine, which the user reaches as the docs' commands do, and
    // the docs' images are in it.
    let out = ssh(&lab, "a", "docker version --format '{{.Server.Version}}' && docker images --format '{{.Repository}}:{{.Tag}}' | sort && docker compose version");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(wk_lab::docker::WUKONGIM_IMAGE)
            && said.contains(wk_lab::docker::NGINX_IMAGE)
            && said.contains(wk_lab::docker::PROMETHEUS_IMAGE),
        "{said}"
    );
    assert!(
        said.contains(&format!("v{}", wk_lab::docker::COMPOSE_V2_MAIN)),
        "{said}"
    );
    // A container with a published port, reached from the other host; its processes live in
    // the engine's cgroup.
    let out = ssh(
        &lab,
        "a",
        &format!(
            "docker run -d --name web -p 8080:80 {}",
            wk_lab::docker::NGINX_IMAGE
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ip_a = lab.host("a").ip.clone();
    let t = std::time::Instant::now();
    loop {
        let got = ssh(
            &lab,
            "b",
            &format!("wget -q -Y off -O - http://{ip_a}:8080/"),
        );
        if String::from_utf8_lossy(&got.stdout).contains("lab nginx") {
            break;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "{got:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let cgroup = lab.host("a").cgroup_parent();
    assert!(
        !sh(&format!("cat /sys/fs/cgroup/pids{cgroup}/*/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup{cgroup}/*/cgroup.procs")).trim().is_empty(),
        "the container's processes are in {cgroup}"
    );
    let engine_pid = std::fs::read_to_string(lab.host("a").docker_pid_file()).unwrap();

    // Up again: the same lab, not a new one (same host keys, same sshd).
    let pids_before = lab.pids(lab.host("b"));
    let again = up(&opts).expect("up again");
    assert_eq!(again.hosts[1].host_key, lab.hosts[1].host_key);
    assert_eq!(again.pids(again.host("b")), pids_before);

    // A session that outlives its listener: down must still take the namespace away.
    let mut session = lab.ssh_command("b", "sleep 300").unwrap().spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    lab.stop_sshd(lab.host("b")).unwrap();
    assert!(
        !lab.pids(lab.host("b")).is_empty(),
        "the session is still alive without its listener"
    );

    down(&dir).expect("down");
    // Our ssh client never hears from a server whose namespace is gone: end it by its pid.
    let _ = session.kill();
    let _ = session.wait();
    assert!(!sh("ip netns list").contains("wkltst-"), "namespaces left");
    assert!(!sh("ip -o link show").contains("wkltst"), "links left");
    assert!(!sh("getent passwd").contains("wkltst-"), "users left");
    assert!(
        !Path::new("/etc/sudoers.d/wkltst-a").exists(),
        "sudoers left"
    );
    assert!(!dir.exists(), "lab dir left");
    // Gone, or a zombie its new parent has not reaped yet: nothing runs.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{}/stat", engine_pid.trim()))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| !r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    };
    let t = std::time::Instant::now();
    while alive() && t.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !alive(),
        "dockerd left: {}",
        sh("ps -eo pid,ppid,stat,args | grep [d]ockerd")
    );
    assert!(
        !sh("cat /proc/self/mountinfo").contains(&dir.display().to_string()),
        "mounts left"
    );
    assert!(
        !sh("ls -d /sys/fs/cgroup/*/wkltst-* /sys/fs/cgroup/wkltst-* 2>/dev/null")
            .contains("wkltst"),
        "cgroups left"
    );
    down(&dir).expect("down twice is fine");
}

#[test]
fn refuses_a_subnet_a_route_already_uses() {
    if !root() {
        return;
    }
    // The main lab's subnet has a route (through its bridge): a second lab may not take it.
    let Ok(main) = Lab::from_env() else {
        assert!(
            std::env::var_os("WKLAB_REQUIRED").is_none(),
            "the main lab is not up"
        );
        eprintln!("skipped: no main lab to overlap with");
        return;
    };
    let dir = std::env::temp_dir().join(format!("wk-lab-overlap-{}", std::process::id()));
    let opts = UpOptions {
        dir: dir.clone(),
        subnet: main.subnet.clone(),
        prefix: "wklovr".into(),
        hosts: vec!["x".into()],
    };
    let err = up(&opts).unwrap_err().to_string();
    assert!(
        err.contains("overlaps a route") && err.contains("WKLAB_SUBNET"),
        "{err}"
    );
    assert!(
        !sh("ip -o link show").contains("wklovr"),
        "nothing may be made"
    );
    assert!(!dir.exists());
}

mod docker;
mod sim;

/// The lab the other tests share (`scripts/test` brings it up), if it is up.
fn main_lab() -> Option<Lab> {
    let lab = wk_lab::deploy::test_lab().unwrap_or_else(|e| panic!("{e}"));
    if lab.is_none() {
        eprintln!("skipped: no lab");
    }
    lab
}
