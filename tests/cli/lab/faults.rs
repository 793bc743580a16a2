//! The fault matrix (issue 6): every step of `wkctl expand --add node2`, at its start, in its
//! middle and at its end, under four real faults: wkctl killed (SIGKILL), the step's host's link
//! cut, the step's host's sshd killed (listener and sessions), the new node unable to reach the
//! seed. The run is stopped at the point by the engine's test hook (`WKCTL_TEST_PAUSE`), the
//! fault is done from outside by pid, link or route, and the run let go on. One point no pause
//! reaches is in it too: wkctl killed inside a member's `up -d`, once compose created the new
//! container under its temporary name (`member-up:exec:sigkill`). Then, for each case:
//!
//! - `wkctl rollback` (with `--after-join` when the cluster counts node2 already, which it
//!   must then refuse without): node1's files byte for byte as before, node2 without a file or
//!   process of ours; when node2 never joined, both hosts exactly as before the run (every file's
//!   hash, every process), so the next attempt starts clean;
//! - the same fault again, then `wkctl resume`: the same end state as an uninterrupted run
//!   (every file's hash on both hosts, the same processes, node2 at 已加入 on every member,
//!   Prometheus running with node2's job, nginx balancing to both nodes).
//!
//! Lanes of two lab hosts each (node16 and up) take cases from one queue. `WKCTL_FAULTS=a,b`
//! runs only the cases whose name (`step:point:fault`) contains one of the words.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wk_lab::deploy::SingleNode;
use wk_lab::Lab;

use super::{inventory_of, lab_with, paused, playbook_with_waits, reset, snapshot, text, wkctl};

const LANES: usize = 5;
const FIRST_HOST: usize = 16;
const POINTS: [&str; 3] = ["start", "middle", "end"];
const FAULTS: [&str; 4] = ["sigkill", "link", "sshd", "seed"];

/// The run every case interrupts.
const EXPAND: &[&str] = &[
    "expand",
    "--add",
    "node2",
    "--playbook",
    "faults.yml",
    "--yes",
];

#[derive(Clone, Debug)]

struct Case {
    step: String,
    host: String,
    point: &'static str,
    fault: &'static str,
}

impl Case {
    fn name(&self) -> String {
        format!("{}:{}:{}", self.step, self.point, self.fault)
    }
}

/// What a host holds: every file's hash under its home (run ids made `RUN`; the simulator's
/// data changes by itself and is left out), its containers and the command lines of its
/// processes (sshd's come and go with every connection).
#[derive(PartialEq, Eq, Debug, Clone)]
struct HostState {
    files: Vec<String>,
    procs: Vec<String>,
}

struct Lane<'a> {
    lab: &'a Lab,
    a: String,
    b: String,
    dir: PathBuf,
    start: (HostState, HostState),
    end: (HostState, HostState),
}

fn state(lab: &Lab, host: &str) -> HostState {
    let (files, procs) = snapshot(lab, host);
    let mut files: Vec<String> = files
        .lines()
        .map(|l| {
            // `.wkctl-<run id>.bak`: the id differs from run to run.
            match l.find(".wkctl-2") {
                Some(i) => format!("{}.wkctl-RUN.bak", &l[..i]),
                None => l.to_string(),
            }
        })
        .collect();
    files.sort();
    // Pids change with every restart; command lines say what runs.
    let mut procs: Vec<String> = procs.into_iter().map(|(_, cmd)| cmd).collect();
    procs.sort();
    HostState { files, procs }
}

fn diff(what: &str, want: &HostState, got: &HostState) -> Option<String> {
    if want == got {
        return None;
    }
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|x| !b.contains(x)).cloned().collect()
    };
    Some(format!(
        "{what}: files missing or different {:?}, unexpected {:?}; processes missing {:?}, unexpected {:?}",
        only(&want.files, &got.files),
        only(&got.files, &want.files),
        only(&want.procs, &got.procs),
        only(&got.procs, &want.procs)
    ))
}

/// Polls `f` until it holds (or `secs` pass); the last value.
fn until<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t.elapsed() > Duration::from_secs(secs) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl<'a> Lane<'a> {
    fn new(lab: &'a Lab, n: usize) -> Lane<'a> {
        let a = format!("node{}", FIRST_HOST + 2 * n);
        let b = format!("node{}", FIRST_HOST + 2 * n + 1);
        let dir = std::env::temp_dir().join(format!("wkctl-faults-{n}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The lab inventory, with keepalives every second: a cut link is noticed in about four
        // seconds.
        let inv = inventory_of(lab, &dir, &a, &b);
        let text = std::fs::read_to_string(&inv).unwrap().replacen(
            "\ngateway:",
            "\n  keepalive_secs: 1\n  connect_timeout_secs: 3\ngateway:",
            1,
        );
        std::fs::write(&inv, text).unwrap();
        // Waits that fail in seconds, long enough for a good run. A new node whose join
        // attempt was under way when the fault came asks again only after that attempt's 5 s
        // timeout and a 2 s pause, so its /health may take some 10 s after the fault is healed.
        playbook_with_waits(&dir, "faults.yml", &[(180, 15), (600, 30), (60, 6)]);
        let mut lane = Lane {
            lab,
            a,
            b,
            dir,
            start: (empty(), empty()),
            end: (empty(), empty()),
        };
        lane.reset();
        lane.start = lane.states();
        let out = lane.wkctl(&["expand", "--add", "node2", "--playbook", "faults.yml"]);
        assert_eq!(
            out.0,
            Some(0),
            "{}: an uninterrupted run: {}",
            lane.a,
            out.1
        );
        lane.wait_for_lb();
        lane.end = lane.states();
        lane.reset();
        assert_eq!(
            lane.states(),
            lane.start,
            "{}: a reset gives the same start",
            lane.a
        );
        lane
    }

    fn wkctl(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = wkctl(&self.dir, args);
        (
            out.status.code(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    }

    fn states(&self) -> (HostState, HostState) {
        (state(self.lab, &self.a), state(self.lab, &self.b))
    }

    /// node1 runs the single-node deployment again; node2 holds nothing of ours.
    fn reset(&self) {
        self.heal();
        reset(self.lab, &self.a);
        reset(self.lab, &self.b);
        self.lab
            .deploy_single(&self.a, &SingleNode::default())
            .unwrap();
        let _ = std::fs::remove_dir_all(self.dir.join(".wkctl"));
    }

    /// Every fault undone: links up, no blocking route, sshd listening.
    fn heal(&self) {
        for h in [&self.a, &self.b] {
            let host = self.lab.host(h);
            self.lab.set_link(host, true).unwrap();
            let _ = self.lab.block_from(host, &self.lab.host(&self.a).ip, false);
            self.lab.start_sshd(host).unwrap();
        }
    }

    /// What node1 answers to a GET on one of its ports (from this machine, to its lab address).
    fn node1_get(&self, port: u16, path: &str) -> String {
        let ip = &self.lab.host(&self.a).ip;
        self.lab.guard(ip).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match rt.block_on(wk_lab::http::get(
            &format!("{ip}:{port}"),
            path,
            &[],
            Duration::from_secs(3),
        )) {
            Ok((_, body)) => String::from_utf8_lossy(&body).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// Whether node1's cluster works, on live signals as an operator would check them: /health
    /// alone answers 200 from the node's own copy of the config (right after a restart, or on
    /// a survivor of a lost quorum), so also a config leader (`/cluster/info` answers only
    /// through one) and every slot with a leader, none electing or moving.
    fn node1_works(&self) -> bool {
        if !self.node1_get(5001, "/health").contains("\"ok\"") {
            return false;
        }
        let info: serde_json::Value =
            serde_json::from_str(&self.node1_get(5001, "/cluster/info")).unwrap_or_default();
        let Some(slots) = info["slots"].as_array().filter(|s| !s.is_empty()) else {
            return false;
        };
        slots.iter().all(|s| {
            s["leader"].as_u64().unwrap_or(0) != 0
                && s["status"].as_u64().unwrap_or(0) == 0
                && s["migrateFrom"].as_u64().unwrap_or(0) == 0
                && s["migrateTo"].as_u64().unwrap_or(0) == 0
        })
    }

    /// Whether node1's cluster lists node 1002 (at any status).
    fn node2_is_member(&self) -> bool {
        self.node1_get(5001, "/cluster/simpleNodes")
            .contains("\"id\":1002")
    }

    /// Waits (up to 30 s) until node1's WuKongIM answers through the load balancer.
    fn wait_for_lb(&self) {
        until(30, || {
            self.node1_get(15001, "/health")
                .contains("ok")
                .then_some(())
        });
    }

    /// The end state of an uninterrupted run: once node1 answers through the load balancer,
    /// every file and process on both hosts as `self.end` has them.
    fn expect_end(&self, what: &str) -> Result<(), String> {
        self.wait_for_lb();
        if until(10, || (self.states() == self.end).then_some(())).is_some() {
            return Ok(());
        }
        let (s1, s2) = self.states();
        Err([
            diff(&format!("node1 {what}"), &self.end.0, &s1),
            diff(&format!("node2 {what}"), &self.end.1, &s2),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n"))
    }

    /// `wkctl expand --add node2` started with the test hook at `at`; returns once the run
    /// waits there (its child and the pause file), or what it said if it never got there.
    fn paused_run(&self, at: &str) -> Result<(std::process::Child, PathBuf), String> {
        let pause = self.dir.join("pause");
        let child = paused(&self.dir, EXPAND, at, &pause)?;
        Ok((child, pause))
    }

    /// A run stopped at the case's point, the fault done, the run let go on; its exit code and
    /// output. Links and sshd are back when this returns; a blocked seed stays blocked.
    fn faulty_run(&self, c: &Case) -> Result<(Option<i32>, String), String> {
        if c.point == "exec" {
            return self.killed_in_recreate(c);
        }
        let (mut child, pause) = self.paused_run(&format!("{}:{}", c.step, c.point))?;
        let host = self
            .lab
            .host(if c.host == "node1" { &self.a } else { &self.b });
        let node2 = self.lab.host(&self.b);
        let seed_ip = self.lab.host(&self.a).ip.clone();
        match c.fault {
            "sigkill" => {
                let _ = Command::new("kill")
                    .args(["-KILL", &child.id().to_string()])
                    .status();
            }
            "link" => self.lab.set_link(host, false).unwrap(),
            "sshd" => self.lab.kill_sshd(host).unwrap(),
            "seed" => self.lab.block_from(node2, &seed_ip, true).unwrap(),
            other => unreachable!("{other}"),
        }
        let _ = std::fs::remove_file(&pause);
        // Every fault ends the run within its waits (15 s, 30 s) and the keepalives.
        let t = Instant::now();
        let mut hung = false;
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                hung = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = t.elapsed();
        let out = child.wait_with_output().unwrap();
        // Links and sshd come back; a blocked seed stays blocked until the caller heals it
        // (an operator rolls back while the new node still cannot reach the seed).
        let t = Instant::now();
        self.lab.set_link(host, true).unwrap();
        self.lab.start_sshd(host).unwrap();
        if c.fault == "link" {
            self.drain(host);
        }
        eprintln!(
            "  {}: the run ended {:.1} s after the fault; healed in {:.1} s",
            c.name(),
            took.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        if hung {
            return Err(format!(
                "wkctl did not end within 120 s of the fault: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
        Ok((
            out.status.code(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        ))
    }

    /// wkctl killed (SIGKILL) inside a member's `up -d`, at the moment compose created the
    /// new container under its temporary name (Docker's event stream tells), before it removed
    /// the old one and gave the new one its name. The SSH session's compose ends with it (its
    /// output has nowhere to go) or finishes; which one, it says.
    fn killed_in_recreate(&self, c: &Case) -> Result<(Option<i32>, String), String> {
        let host = self
            .lab
            .host(if c.host == "node1" { &self.a } else { &self.b });
        let mut events = Command::new("/usr/bin/docker");
        events
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                "event=create",
                "--format",
                "{{.Actor.Attributes.name}}",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (k, v) in wk_lab::docker::session_env(host) {
            events.env(k, v);
        }
        let mut events = events.spawn().unwrap();
        let lines = std::io::BufReader::new(events.stdout.take().unwrap());
        let run = Command::new(env!("CARGO_BIN_EXE_wkctl"))
            .args(EXPAND)
            .current_dir(&self.dir)
            .env_remove("SSH_AUTH_SOCK")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = run.id().to_string();
        let seen = std::thread::scope(|s| {
            let watch = s.spawn(move || {
                use std::io::BufRead;
                for line in lines.lines().map_while(Result::ok) {
                    let tmp = line.split_once('_').is_some_and(|(id, _)| {
                        id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit())
                    });
                    if tmp {
                        let _ = Command::new("kill").args(["-KILL", &pid]).status();
                        return Some(line);
                    }
                }
                None
            });
            let out = run.wait_with_output().unwrap();
            // The run is over (killed or not): the watcher goes (our child, by its pid).
            let _ = Command::new("kill")
                .args(["-TERM", &events.id().to_string()])
                .status();
            let _ = events.wait();
            (watch.join().unwrap(), out)
        });
        let (name, out) = seen;
        let Some(name) = name else {
            return Err(format!(
                "the run ended without a recreate of {} on {}: {}{}",
                c.step,
                host.name,
                text(&out.stdout),
                text(&out.stderr)
            ));
        };
        std::thread::sleep(Duration::from_millis(500));
        let left = wk_lab::docker::docker(host, &["ps", "-a", "--format", "{{.Names}} {{.State}}"])
            .unwrap_or_default();
        eprintln!(
            "  {}: killed once {name} was created; {} left: {}",
            c.name(),
            host.name,
            left.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        Ok((
            out.status.code(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        ))
    }

    /// After a cut link: the dead run's connections to the host are gone (TCP keeps trying to
    /// deliver what a dead process had sent; the test waits until nothing of it is left).
    fn drain(&self, host: &wk_lab::LabHost) {
        let dst = format!("dst {}:22", host.ip);
        until(60, || {
            let mut args = vec!["-Htn"];
            for st in [
                "established",
                "syn-sent",
                "fin-wait-1",
                "fin-wait-2",
                "close-wait",
                "last-ack",
                "closing",
            ] {
                args.extend(["state", st]);
            }
            args.push(&dst);
            let out = Command::new("ss").args(&args).output().ok()?;
            out.stdout
                .iter()
                .all(|b| b.is_ascii_whitespace())
                .then_some(())
        });
    }

    /// One case: the rollback branch, then the resume branch. `Err` says what differs.
    fn run_case(&self, c: &Case) -> Result<String, String> {
        let t = Instant::now();
        // Rollback.
        let (code, out) = self.faulty_run(c)?;
        // Whether node2 joined is the rollback's to find out (a join under way may finish at
        // any moment): it refuses, or stops when the join finished while it stopped node2.
        let (rc, rout) = self.wkctl(&["rollback"]);
        let after_join = match rc {
            Some(0) => false,
            Some(2) if rout.contains("no removal API") => true,
            Some(3) if rout.contains("joined the cluster while the rollback stopped it") => true,
            _ => {
                self.heal();
                return Err(format!(
                    "rollback: exit {rc:?}: {rout}\n(the faulty run: exit {code:?}: {out})"
                ));
            }
        };
        if after_join {
            if !self.node2_is_member() {
                return Err(format!(
                    "the rollback said node2 joined; the cluster does not list it: {rout}"
                ));
            }
            let (rc, rout) = self.wkctl(&["rollback", "--after-join"]);
            if rc != Some(0) {
                self.heal();
                return Err(format!("rollback --after-join: exit {rc:?}: {rout}"));
            }
        }
        self.heal();
        if after_join {
            // node1's files as before; node2 holds nothing of ours; the cluster keeps node2.
            let (s1, s2) = self.states();
            if s1.files != self.start.0.files {
                return Err(
                    diff("node1 after rollback --after-join", &self.start.0, &s1)
                        .unwrap_or_default(),
                );
            }
            if let Some(d) = diff("node2 after rollback --after-join", &self.start.1, &s2) {
                return Err(d);
            }
            self.reset();
        } else {
            // Both hosts exactly as before the run, node1 healthy: the next attempt starts clean.
            if until(30, || self.node1_works().then_some(())).is_none() {
                return Err("node1 is not healthy after the rollback".into());
            }
            let got = until(10, || {
                let s = self.states();
                (s == self.start).then_some(())
            });
            if got.is_none() {
                let (s1, s2) = self.states();
                return Err([
                    diff("node1 after rollback", &self.start.0, &s1),
                    diff("node2 after rollback", &self.start.1, &s2),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("\n"));
            }
        }
        let _ = std::fs::remove_dir_all(self.dir.join(".wkctl"));

        // Resume, once the fault is gone and the cluster over it: a healed partition leaves the
        // slots electing for a while (`/health`: slot leader not found), and the resume's
        // preflight refuses an unhealthy cluster, as it should; an operator waits for it.
        let (code, out) = self.faulty_run(c)?;
        self.heal();
        // A member killed inside its recreate stays down until the resume brings it back.
        if c.point != "exec" && until(30, || self.node1_works().then_some(())).is_none() {
            return Err("node1's cluster does not work 30 s after the fault was healed".into());
        }
        let how = if code == Some(0) {
            // The fault came too late to stop the run (after its last use of the host).
            let (rc, rout) = self.wkctl(&["resume"]);
            if rc != Some(2) {
                return Err(format!("resume after a finished run: exit {rc:?}: {rout}"));
            }
            "finished"
        } else {
            let (rc, rout) = self.wkctl(&["resume"]);
            if rc != Some(0) {
                return Err(format!(
                    "resume: exit {rc:?}: {rout}\n(the faulty run: exit {code:?}: {out})"
                ));
            }
            // The kill left the member down: the resume said it started it again.
            if c.point == "exec" && !rout.contains("its services run again") {
                return Err(format!(
                    "resume did not tell it started node1 again: {rout}"
                ));
            }
            "resumed"
        };
        self.expect_end("after resume")?;
        let st = self.wkctl(&["status"]);
        if st.0 != Some(0) || st.1.matches("3 已加入").count() != 2 {
            return Err(format!("status after {how}: {st:?}"));
        }
        // Prometheus runs with node2's job; nginx balances to both nodes.
        let ip2 = &self.lab.host(&self.b).ip;
        let prom = self.node1_get(9090, "/api/v1/status/config");
        if !prom.contains(&format!("{ip2}:5300")) {
            return Err(format!("Prometheus does not run with node2's job: {prom}"));
        }
        let ids: String = (0..4)
            .map(|_| self.node1_get(15001, "/cluster/node"))
            .collect();
        if !(ids.contains("\"id\":1001") && ids.contains("\"id\":1002")) {
            return Err(format!("nginx does not balance to both nodes: {ids}"));
        }
        self.reset();
        Ok(format!(
            "{:.1} s, rollback{}, {how}",
            t.elapsed().as_secs_f64(),
            if after_join { " --after-join" } else { "" }
        ))
    }
}

/// The end of a long message (wkctl's output ends with what went wrong).
fn tail(s: &str) -> &str {
    let mut i = s.len().saturating_sub(1500);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn empty() -> HostState {
    HostState {
        files: Vec::new(),
        procs: Vec::new(),
    }
}

#[test]
fn fault_matrix_resume_and_rollback() {
    let Some(lab) = lab_with(FIRST_HOST - 1 + 2 * LANES) else {
        return;
    };
    let started = Instant::now();
    let lanes: Vec<Lane> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..LANES)
            .map(|n| {
                let lab = &lab;
                s.spawn(move || Lane::new(lab, n))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    // The steps, as the plan has them (a dry run on the first lane).
    let out = wkctl(
        &lanes[0].dir,
        &[
            "--output",
            "json",
            "expand",
            "--add",
            "node2",
            "--playbook",
            "faults.yml",
            "--dry-run",
        ],
    );
    let steps: Vec<(String, String)> = text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_started")
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["host"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(steps.len() >= 15, "{}", text(&out.stdout));
    let only: Vec<String> = std::env::var("WKCTL_FAULTS")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let mut queue = VecDeque::new();
    for (step, host) in &steps {
        for point in POINTS {
            for fault in FAULTS {
                let c = Case {
                    step: step.clone(),
                    host: host.clone(),
                    point,
                    fault,
                };
                if only.is_empty() || only.iter().any(|w| c.name().contains(w.as_str())) {
                    queue.push_back(c);
                }
            }
        }
        // Inside the exec of a member's recreate: the one point a pause cannot reach.
        let c = Case {
            step: step.clone(),
            host: host.clone(),
            point: "exec",
            fault: "sigkill",
        };
        if step.starts_with("member-up")
            && (only.is_empty() || only.iter().any(|w| c.name().contains(w.as_str())))
        {
            queue.push_back(c);
        }
    }
    let total = queue.len();
    let queue = Mutex::new(queue);
    let results: Mutex<BTreeMap<String, Result<String, String>>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for lane in &lanes {
            let (queue, results) = (&queue, &results);
            s.spawn(move || loop {
                let Some(c) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let r = lane.run_case(&c);
                if r.is_err() {
                    // A failed case may leave anything behind: the next starts from scratch.
                    lane.reset();
                }
                match &r {
                    Ok(how) => eprintln!("fault case {} on {}: ok ({how})", c.name(), lane.a),
                    Err(e) => {
                        eprintln!("fault case {} on {}: FAILED: {}", c.name(), lane.a, tail(e))
                    }
                }
                results.lock().unwrap().insert(c.name(), r);
            });
        }
    });
    let results = results.into_inner().unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(k, r)| r.as_ref().err().map(|e| format!("{k}: {e}")))
        .collect();
    let secs = started.elapsed().as_secs();
    eprintln!(
        "fault matrix: {} steps x {} points x {} faults (and a kill inside each member's recreate) = {total} cases, {} passed, {} failed, {} s on {LANES} lanes",
        steps.len(),
        POINTS.len(),
        FAULTS.len(),
        total - failed.len(),
        failed.len(),
        secs
    );
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
    a_fresh_run_after_a_killed_one(&lanes[0]);
    a_second_ctrl_c_cuts_the_step(&lanes[0]);
}

/// Ctrl-C while a step is half done (paused in its middle: node1's compose file backed up, not
/// yet written) waits for the step; a second Ctrl-C cuts it (exit 130); `resume` then finishes,
/// with the end state of an uninterrupted run.
fn a_second_ctrl_c_cuts_the_step(lane: &Lane) {
    let (child, pause) = lane.paused_run("member-env@node1:middle").unwrap();
    let int = || {
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
    };
    int();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        pause.exists(),
        "the first Ctrl-C waits for the step under way"
    );
    int();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("Ctrl-C again: the step under way is cut"),
        "{err}"
    );
    let _ = std::fs::remove_file(&pause);
    let runs = lane.wkctl(&["runs"]).1;
    assert!(
        runs.lines().last().unwrap().contains("interrupted"),
        "{runs}"
    );
    let (rc, out) = lane.wkctl(&["resume"]);
    assert_eq!(rc, Some(0), "{out}");
    lane.expect_end("after two Ctrl-C and resume").unwrap();
    lane.reset();
}

/// A run killed before node1's WuKongIM was recreated and Prometheus reloaded, then not resumed
/// but started afresh (`--force-unlock`): the files the dead run changed still count as changed,
/// so the fresh run recreates node1's WuKongIM and reloads Prometheus, and ends as an
/// uninterrupted run does.
fn a_fresh_run_after_a_killed_one(lane: &Lane) {
    let c = Case {
        step: "member-up@node1".into(),
        host: "node1".into(),
        point: "start",
        fault: "sigkill",
    };
    let (code, _) = lane.faulty_run(&c).unwrap();
    assert_eq!(code, None, "killed");
    let (rc, out) = lane.wkctl(&[
        "expand",
        "--add",
        "node2",
        "--playbook",
        "faults.yml",
        "--force-unlock",
    ]);
    assert_eq!(rc, Some(0), "{out}");
    assert!(out.contains("stopped half way"), "{out}");
    for step in ["member-up@node1", "prometheus-reload@node1"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("changed") && l.contains(step)),
            "{step} did nothing:\n{out}"
        );
    }
    lane.expect_end("after a fresh run").unwrap();
    let prom = lane.node1_get(9090, "/api/v1/status/config");
    assert!(
        prom.contains(&format!("{}:5300", lane.lab.host(&lane.b).ip)),
        "Prometheus was not reloaded: {prom}"
    );
    lane.reset();
}
