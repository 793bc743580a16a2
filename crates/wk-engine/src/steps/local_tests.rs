//! Kinds of step on the local remote: the engine's own code on real files, without SSH or a
//! cluster (nothing here dials anything; the addresses are never used).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;
use wk_plan::plan::{Plan, Step};
use wk_plan::{Inventory, Sources};
use wk_remote::LocalRemote;

use super::{kind, Cx, RunCtx, Undo};
use crate::engine::Engine;
use crate::events::{Event, Reporter};

const INVENTORY: &str = "cluster: t\ninstall_dir: ~/wukongim\ngateway:\n  node: node1\n  external_address: 10.99.0.10\nnodes:\n  - name: node1\n    id: 1001\n    internal_address: 10.99.0.11\n  - name: node2\n    id: 1002\n    internal_address: 10.99.0.12\n";

#[derive(Default)]
struct Seen(Mutex<Vec<Event>>);

impl Reporter for Seen {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wk-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An engine whose two hosts are homes under `root`.
fn engine(root: &Path) -> Engine<LocalRemote> {
    engine_seen(root, Arc::new(Seen::default()))
}

/// [`engine`], its events kept in `seen`.
fn engine_seen(root: &Path, seen: Arc<Seen>) -> Engine<LocalRemote> {
    let inv = Inventory::parse("t.yml", INVENTORY).unwrap();
    let mut hosts = BTreeMap::new();
    for h in ["node1", "node2"] {
        hosts.insert(
            h.to_string(),
            Arc::new(LocalRemote::new(h, root.join(h)).unwrap()),
        );
    }
    Engine::new(inv, INVENTORY.into(), Sources::embedded(), hosts, seen)
}

fn step(id: &str, host: &str, action: serde_json::Value) -> Step {
    serde_json::from_value(
        json!({"id": id, "host": host, "phase": "prepare", "title": "t", "action": action}),
    )
    .unwrap()
}

fn plan(steps: Vec<Step>) -> Plan {
    let mut p: Plan = serde_json::from_value(json!({
        "cluster": "t", "playbook": "p", "fingerprint": "f",
        "adding": [{"name": "node2", "id": 1002, "internal_address": "10.99.0.12"}],
        "members_before": [], "members_after": [], "gateway": "node1", "seed": "node1",
        "assumptions": [], "warnings": [], "steps": [],
    }))
    .unwrap();
    p.steps = steps;
    p
}

fn run_ctx() -> RunCtx {
    RunCtx {
        dry: false,
        changed_paths: Mutex::new(Default::default()),
        before: Mutex::new(BTreeMap::new()),
        journal: None,
        owner: "t".into(),
        run_id: "r".into(),
        force_unlock: false,
        token: None,
        version: None,
        stale_backups: Vec::new(),
        looks: Default::default(),
    }
}

/// What a rollback of run `r` runs with (no journal to append to).
fn undo_of<'a>(
    e: &'a Engine<LocalRemote>,
    dir: &'a Path,
    plan: &'a Plan,
    lines: &'a [serde_json::Value],
    dry: bool,
) -> Undo<'a, LocalRemote> {
    Undo {
        e,
        dir,
        run_id: "r",
        plan,
        lines,
        dry,
        journal: Mutex::new(None),
    }
}

/// A file where the new node's install directory should be is the operator's: the step stops
/// before journaling anything (a rollback would remove it as the run's directory).
#[tokio::test]
async fn mkdir_refuses_a_file_in_its_place() {
    let root = scratch("mkdir-file");
    let e = engine(&root);
    std::fs::write(root.join("node2/wukongim"), b"the operator's notes\n").unwrap();
    let s = step(
        "install-dir@node2",
        "node2",
        json!({"kind": "mkdir", "path": "~/wukongim", "mode": 493, "command": {"run": "mkdir -p -m 755 ~/wukongim", "sudo": false}}),
    );
    let p = plan(vec![s.clone()]);
    let run = run_ctx();
    let cx = Cx {
        e: &e,
        step: &s,
        plan: &p,
        run: &run,
        r: e.remote("node2").unwrap().clone(),
    };
    let err = kind::<LocalRemote>(&s.action)
        .apply(&cx)
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("exists and is not a directory"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(root.join("node2/wukongim")).unwrap(),
        b"the operator's notes\n"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// A rollback cut after it removed a new node's install dir can be run again: the new node's
/// services are not stopped a second time (there is no compose file to stop them with).
#[tokio::test]
async fn stopping_a_new_node_again_finds_nothing_to_stop() {
    let root = scratch("down-again");
    let e = engine(&root);
    let up = step(
        "node-up@node2",
        "node2",
        json!({"kind": "compose_up", "dir": "~/wukongim", "services": [], "command": {"run": "cd ~/wukongim && docker compose up -d", "sudo": false}}),
    );
    let p = plan(vec![up.clone()]);
    let lines = vec![json!({"type": "step_started", "step": "node-up@node2", "host": "node2"})];
    let u = undo_of(&e, &root, &p, &lines, false);
    let undone = kind::<LocalRemote>(&up.action)
        .stop(&u, &up)
        .await
        .expect("nothing to stop is no error");
    assert_eq!(undone, 0);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A new node whose containers were created and then started is stopped once in a rollback,
/// by the first of the two steps (each would stop it alone when the run stopped after it);
/// only a node whose start began counts as one that may have joined.
#[tokio::test]
async fn a_created_and_started_new_node_is_stopped_once() {
    let root = scratch("down-once");
    let seen = Arc::new(Seen::default());
    let e = engine_seen(&root, seen.clone());
    std::fs::create_dir_all(root.join("node2/wukongim")).unwrap();
    let create = step(
        "node-create@node2",
        "node2",
        json!({"kind": "compose_create", "dir": "~/wukongim", "command": {"run": "cd ~/wukongim && docker compose up --no-start", "sudo": false}}),
    );
    let up = step(
        "node-up@node2",
        "node2",
        json!({"kind": "compose_up", "dir": "~/wukongim", "services": [], "command": {"run": "cd ~/wukongim && docker compose up -d", "sudo": false}}),
    );
    let p = plan(vec![create.clone(), up.clone()]);
    let started = |id: &str| json!({"type": "step_started", "step": id, "host": "node2"});
    let cases = [
        (vec![started("node-create@node2")], 1, "created only"),
        (
            vec![started("node-create@node2"), started("node-up@node2")],
            1,
            "created and started",
        ),
        (vec![], 0, "neither started"),
    ];
    for (lines, want, case) in cases {
        seen.0.lock().unwrap().clear();
        let u = undo_of(&e, &root, &p, &lines, true);
        for s in [&create, &up] {
            kind::<LocalRemote>(&s.action).stop(&u, s).await.unwrap();
        }
        let downs = seen
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(
                |ev| matches!(ev, Event::StepCommand { command, .. } if command.ends_with(" down")),
            )
            .count();
        assert_eq!(downs, want, "{case}");
    }
    // Only a started node can have joined: a rollback asks the cluster about no other.
    let created = [started("node-create@node2")];
    assert!(
        super::ran_new_nodes(&p, &created).is_empty(),
        "created only"
    );
    let both = [started("node-create@node2"), started("node-up@node2")];
    assert_eq!(
        super::ran_new_nodes(&p, &both)
            .into_iter()
            .collect::<Vec<_>>(),
        ["node2"]
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// A playbook `command:` step is undone by its own `undo:` command, once the journal says the
/// step started; a dry run shows the command and runs nothing.
#[tokio::test]
async fn a_command_step_is_undone_by_its_undo() {
    let root = scratch("command-undo");
    let e = engine(&root);
    let s = step(
        "mark@node1",
        "node1",
        json!({"kind": "command", "command": {"run": "touch ~/marker", "sudo": false}, "undo": {"run": "rm ~/marker", "sudo": false}}),
    );
    let p = plan(vec![s.clone()]);
    std::fs::write(root.join("node1/marker"), b"").unwrap();
    let undo = |lines: Vec<serde_json::Value>, dry: bool| {
        let (e, p, s, root) = (&e, &p, &s, &root);
        async move {
            let u = undo_of(e, root, p, &lines, dry);
            kind::<LocalRemote>(&s.action).revert(&u, s).await.unwrap()
        }
    };
    assert_eq!(
        undo(Vec::new(), false).await,
        0,
        "a step that never started is not undone"
    );
    assert!(root.join("node1/marker").exists());
    let started = vec![json!({"type": "step_started", "step": "mark@node1", "host": "node1"})];
    assert_eq!(
        undo(started.clone(), true).await,
        0,
        "a dry run runs nothing"
    );
    assert!(root.join("node1/marker").exists());
    assert_eq!(undo(started, false).await, 1);
    assert!(!root.join("node1/marker").exists(), "the undo ran");
    std::fs::remove_dir_all(&root).unwrap();
}

/// A resumed run knows every file's before-image from the journal and the local copies (the
/// first one of each file), so a step that takes a file back restores what the run began with.
#[test]
fn a_resumed_run_has_the_before_images_of_the_run() {
    let root = scratch("before-images");
    let mut j =
        crate::journal::Journal::create(&root, &json!({}), "wkctl expand", json!({})).unwrap();
    let copy = j.save_before("nginx-conf@node1", b"the first\n").unwrap();
    j.append(json!({"type": "before_image", "step": "nginx-conf@node1", "host": "node1", "path": "~/wukongim/nginx.conf", "existed": true, "mode": 0o640, "copy": copy})).unwrap();
    let later = j.save_before("nginx-conf@node1", b"the second\n").unwrap();
    j.append(json!({"type": "before_image", "step": "nginx-conf@node1", "host": "node1", "path": "~/wukongim/nginx.conf", "existed": true, "mode": 0o644, "copy": later})).unwrap();
    j.append(json!({"type": "before_image", "step": "node-compose@node2", "host": "node2", "path": "~/wukongim/docker-compose.yml", "existed": false})).unwrap();
    j.append(json!({"type": "before_image", "step": "install-dir@node2", "host": "node2", "path": "~/wukongim", "existed": false, "dir": true})).unwrap();
    let dir = root.join(&j.run_id);
    drop(j);
    let got = crate::runs::before_images(&dir).unwrap();
    let key = |h: &str, p: &str| (h.to_string(), p.to_string());
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[&key("node1", "~/wukongim/nginx.conf")],
        Some((b"the first\n".to_vec(), 0o640))
    );
    assert_eq!(got[&key("node2", "~/wukongim/docker-compose.yml")], None);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A rollback does not put a run's before-image over a file that changed since the run wrote
/// it; a file as the run left it (or as it was before) is fine.
#[tokio::test]
async fn a_file_changed_since_the_run_is_not_rolled_back() {
    let root = scratch("drift");
    let e = engine(&root);
    let sha = crate::journal::sha256_hex;
    std::fs::create_dir_all(root.join("node1/wukongim")).unwrap();
    let file = root.join("node1/wukongim/docker-compose.yml");
    let line = |t: &str| json!({"type": "before_image", "host": "node1", "path": "~/wukongim/docker-compose.yml", "existed": true, "sha256": sha(b"before\n"), "writes": sha(t.as_bytes())});
    let lines = vec![line("ours\n")];
    for (now, ok) in [("before\n", true), ("ours\n", true), ("by hand\n", false)] {
        std::fs::write(&file, now).unwrap();
        let got = e.no_drift(&lines, "r").await;
        assert_eq!(got.is_ok(), ok, "{now:?}: {got:?}");
        if let Err(err) = got {
            let err = err.to_string();
            assert!(
                err.contains("node1: ~/wukongim/docker-compose.yml") && err.contains("--force"),
                "{err}"
            );
        }
    }
    // An older journal without `writes`, and no `applied` line: not checked.
    let mut old = line("ours\n");
    old.as_object_mut().unwrap().remove("writes");
    assert!(e.no_drift(&[old], "r").await.is_ok());
    std::fs::remove_dir_all(&root).unwrap();
}
