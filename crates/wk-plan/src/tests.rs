//! Plan tests against fixture files: `tests/fixtures/plan/<case>/in/` holds the inventory
//! (`cluster.yml`, or the repository's `examples/cluster.yml` when absent), `add` (the nodes to
//! add) and optionally `extra_env` (the seed's cluster-wide settings the engine carries, one
//! `K=V` a line); `out/<host>/` holds every file the plan writes or merges.
//! `WKCTL_BLESS=1` rewrites `out/` from what the code produces (review the diff before committing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::plan::{Action, PlanRequest};
use crate::{build, Inventory, Sources};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What a plan writes, by `<host>/<file>`.
fn outputs(case: &str) -> (BTreeMap<String, String>, crate::Plan) {
    let dir = repo().join("tests/fixtures/plan").join(case).join("in");
    let inv_path = if dir.join("cluster.yml").exists() {
        dir.join("cluster.yml")
    } else {
        repo().join("examples/cluster.yml")
    };
    let text = read(&inv_path);
    let inv = Inventory::parse("cluster.yml", &text).unwrap_or_else(|d| panic!("{d}"));
    let add: Vec<String> = read(&dir.join("add"))
        .trim()
        .split(',')
        .map(str::to_string)
        .collect();
    let extra_env = match std::fs::read_to_string(dir.join("extra_env")) {
        Ok(t) => t.lines().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    };
    let req = PlanRequest {
        add,
        extra_env,
        ..PlanRequest::default()
    };
    let plan = build(&inv, &text, &Sources::embedded(), &req).unwrap_or_else(|e| panic!("{e}"));
    let mut files = BTreeMap::new();
    let base = |p: &str| p.rsplit('/').next().unwrap().to_string();
    for s in &plan.steps {
        let (name, content) = match &s.action {
            Action::Template { dest, content, .. } => (base(dest), content.clone()),
            Action::NginxConf { file, content, .. } => (base(file), content.clone()),
            Action::ComposeService {
                service, content, ..
            } => (format!("compose-service-{service}.yml"), content.clone()),
            Action::PrometheusJob { content, .. } => {
                ("prometheus-jobs.yml".to_string(), content.clone())
            }
            Action::ComposeEnv { file, env, .. } => (
                format!("compose-env-{}.txt", base(file)),
                env.iter().map(|(k, v)| format!("{k}={v}\n")).collect(),
            ),
            _ => continue,
        };
        let key = format!("{}/{}", s.host, name);
        assert!(
            files.insert(key.clone(), content).is_none(),
            "two steps write {key}"
        );
    }
    (files, plan)
}

fn check_case(case: &str) {
    let (files, _) = outputs(case);
    let out = repo().join("tests/fixtures/plan").join(case).join("out");
    if std::env::var_os("WKCTL_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&out);
        for (k, v) in &files {
            let p = out.join(k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, v).unwrap();
        }
    }
    let mut expected = BTreeMap::new();
    for host in std::fs::read_dir(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display())) {
        let host = host.unwrap().path();
        for f in std::fs::read_dir(&host).unwrap() {
            let f = f.unwrap().path();
            let key = format!(
                "{}/{}",
                host.file_name().unwrap().to_str().unwrap(),
                f.file_name().unwrap().to_str().unwrap()
            );
            expected.insert(key, read(&f));
        }
    }
    let got: Vec<&String> = files.keys().collect();
    let want: Vec<&String> = expected.keys().collect();
    assert_eq!(
        got, want,
        "{case}: the plan writes other files than out/ holds"
    );
    for (k, v) in &files {
        assert_eq!(
            v, &expected[k],
            "{case}: {k} differs from tests/fixtures/plan/{case}/out/{k}"
        );
    }
}

#[test]
fn fixture_seed_node2() {
    check_case("seed-node2");
}

#[test]
fn fixture_three_nodes() {
    check_case("three-nodes");
}

#[test]
fn fixture_custom_ports_ipv6() {
    check_case("custom-ports-ipv6");
}

/// The seed document's node2 file, value for value: every `WK_*` variable it sets.
#[test]
fn node2_compose_carries_every_seed_variable() {
    #[derive(serde::Deserialize)]
    struct Compose {
        services: BTreeMap<String, Service>,
    }
    #[derive(serde::Deserialize)]
    struct Service {
        environment: Vec<String>,
        ports: Vec<String>,
        volumes: Vec<String>,
        image: String,
    }
    let (files, _) = outputs("seed-node2");
    let compose: Compose = serde_saphyr::from_str(&files["node2/docker-compose.yml"]).unwrap();
    let svc = &compose.services["wukongim"];
    let got: BTreeMap<&str, &str> = svc
        .environment
        .iter()
        .map(|e| e.split_once('=').unwrap())
        .collect();
    // The seed's node2 file, as the docs give it (tests/fixtures/seed/node2-env.txt).
    let seed = read(&repo().join("tests/fixtures/seed/node2-env.txt"));
    let want: BTreeMap<&str, &str> = seed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split_once('=').unwrap())
        .collect();
    assert_eq!(want.len(), 9, "the seed sets nine WK_* variables");
    assert_eq!(got, want);
    assert_eq!(
        svc.image,
        "registry.cn-shanghai.aliyuncs.com/wukongim/wukongim:v2"
    );
    assert_eq!(svc.volumes, ["./wukongim_data:/root/wukongim"]);
    // The doc's ports, and 5172, which the doc forgot although nginx balances to it.
    for p in [
        "11110:11110",
        "5001:5001",
        "5100:5100",
        "5200:5200",
        "5300:5300",
        "5172:5172",
    ] {
        assert!(
            svc.ports.iter().any(|x| x == p),
            "port {p} is not published"
        );
    }
}

#[test]
fn nginx_conf_has_every_member_in_every_upstream() {
    let (files, _) = outputs("three-nodes");
    let conf = &files["n1/nginx.conf"];
    for (upstream, port) in [
        ("wukongimapi", 5001),
        ("wukongimdemo", 5172),
        ("wukongimanager", 5300),
        ("wukongimws", 5200),
        ("wukongimtcp", 5100),
    ] {
        let start = conf
            .find(&format!("upstream {upstream} {{"))
            .unwrap_or_else(|| panic!("no upstream {upstream}"));
        let body = &conf[start..start + conf[start..].find('}').unwrap()];
        let servers: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server "))
            .collect();
        assert_eq!(
            servers,
            [
                format!("10.20.0.1:{port};"),
                format!("10.20.0.2:{port};"),
                format!("10.20.0.3:{port};")
            ],
            "upstream {upstream}"
        );
    }
    assert!(conf.contains("rewrite ^ /chatdemo?apiurl=http://lb.example.net:15001;"));
}

#[test]
fn step_ids_are_stable_and_unique() {
    let (_, a) = outputs("three-nodes");
    let (_, b) = outputs("three-nodes");
    assert_eq!(
        a, b,
        "the same inputs give the same plan, fingerprint included"
    );
    let ids: Vec<&str> = a.steps.iter().map(|s| s.id.as_str()).collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "{ids:?}");
    // Joins are serial: n2 is up and joined before n3 starts.
    let pos = |id: &str| {
        ids.iter()
            .position(|x| *x == id)
            .unwrap_or_else(|| panic!("no step {id}"))
    };
    assert!(pos("joined@n2") < pos("node-up@n3"));
    assert!(
        pos("node-compose@n3") < pos("node-up@n2"),
        "preparation of every node comes before the joins"
    );
    assert_eq!(ids[0], "preflight@n1");
}

#[test]
fn a_plan_reads_back_as_it_was_written() {
    // Rollback and resume read plan.json back into a plan: every field survives the trip.
    for name in ["seed-node2", "three-nodes", "custom-ports-ipv6"] {
        let (_, plan) = outputs(name);
        let text = serde_json::to_string_pretty(&plan).unwrap();
        let back: crate::Plan = serde_json::from_str(&text).unwrap();
        assert_eq!(back, plan, "{name}");
    }
}

#[test]
fn fingerprint_follows_the_inputs() {
    let text = read(&repo().join("examples/cluster.yml"));
    let inv = Inventory::parse("cluster.yml", &text).unwrap();
    let req = PlanRequest {
        add: vec!["node2".into()],
        ..PlanRequest::default()
    };
    let a = build(&inv, &text, &Sources::embedded(), &req).unwrap();
    let mut sources = Sources::embedded();
    sources
        .templates
        .get_mut("nginx.conf.tera")
        .unwrap()
        .push_str("# changed\n");
    let b = build(&inv, &text, &sources, &req).unwrap();
    assert_ne!(
        a.fingerprint, b.fingerprint,
        "a changed template changes the fingerprint"
    );
    let ids = |p: &crate::Plan| p.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b), "ids do not depend on template text");
}

#[test]
fn sudo_modes_shape_commands() {
    let (_, plan) = outputs("three-nodes"); // sudo: password
    let up = plan.steps.iter().find(|s| s.id == "node-up@n2").unwrap();
    let cmd = up.action.commands()[0];
    assert_eq!(
        cmd.run,
        "cd /opt/wukongim && sudo -k -S -p '' flock . $COMPOSE up -d"
    );
    assert!(cmd.sudo);
    let (_, plan) = outputs("custom-ports-ipv6"); // no sudo, docker-compose
    let up = plan.steps.iter().find(|s| s.id == "member-up@a").unwrap();
    assert_eq!(
        up.action.commands()[0].run,
        "cd ~/wukongim && flock . docker-compose up -d $WK_SERVICE nginx"
    );
}

/// Adding node2 to node1, whose facts say `docker compose` runs its WuKongIM as `service`.
fn node2_with_node1_service(service: &str) -> PlanRequest {
    let mut req = PlanRequest {
        add: vec!["node2".into()],
        members: Some(vec!["node1".into()]),
        ..PlanRequest::default()
    };
    req.facts.insert(
        "node1".into(),
        crate::plan::HostFacts {
            compose: Some("docker compose".into()),
            wukongim_service: Some(service.into()),
        },
    );
    req
}

#[test]
fn a_service_name_that_is_not_compose_s_stays_out_of_commands() {
    // The WuKongIM service's name comes from the host's compose file: a crafted one must not
    // end in a shell command.
    let text = read(&repo().join("examples/cluster.yml"));
    let inv = Inventory::parse("cluster.yml", &text).unwrap();
    for bad in [
        "wk;touch /tmp/pwned",
        "wk$(id)",
        "-wk",
        "wk service",
        "wk`id`",
    ] {
        let req = node2_with_node1_service(bad);
        let err = build(&inv, &text, &Sources::embedded(), &req)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("member-up@node1") && err.contains("is not one compose accepts"),
            "{bad}: {err}"
        );
    }
    for good in ["wukongim", "wk_1.a-b", "1wk"] {
        assert!(crate::plan::is_service_name(good), "{good}");
    }
}

#[test]
fn host_facts_replace_placeholders() {
    let text = read(&repo().join("examples/cluster.yml"));
    let inv = Inventory::parse("cluster.yml", &text).unwrap();
    let req = node2_with_node1_service("wukongim1");
    let plan = build(&inv, &text, &Sources::embedded(), &req).unwrap();
    assert!(
        plan.assumptions.is_empty(),
        "membership was given: nothing assumed"
    );
    let up = plan
        .steps
        .iter()
        .find(|s| s.id == "member-up@node1")
        .unwrap();
    assert_eq!(
        up.action.commands()[0].run,
        "cd ~/wukongim && sudo -n flock . docker compose up -d wukongim1 nginx"
    );
}

#[test]
fn membership_from_the_cluster_decides_the_upstreams() {
    // node3 is declared but the cluster says it is not deployed: nginx must not balance to it.
    let text = read(&repo().join("tests/fixtures/plan/three-nodes/in/cluster.yml"));
    let inv = Inventory::parse("cluster.yml", &text).unwrap();
    let req = PlanRequest {
        add: vec!["n2".into()],
        members: Some(vec!["n1".into()]),
        ..PlanRequest::default()
    };
    let plan = build(&inv, &text, &Sources::embedded(), &req).unwrap();
    let after: Vec<&str> = plan.members_after.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(after, ["n1", "n2"]);
    let conf = plan.steps.iter().find_map(|s| match &s.action {
        Action::NginxConf { content, .. } => Some(content),
        _ => None,
    });
    assert!(!conf.unwrap().contains("10.20.0.3"));
    // Adding a node the cluster already has is refused.
    let req = PlanRequest {
        add: vec!["n2".into()],
        members: Some(vec!["n1".into(), "n2".into()]),
        ..PlanRequest::default()
    };
    let err = build(&inv, &text, &Sources::embedded(), &req)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already a member"), "{err}");
}

#[test]
fn a_broken_template_names_the_step_and_host() {
    let text = read(&repo().join("examples/cluster.yml"));
    let inv = Inventory::parse("cluster.yml", &text).unwrap();
    let mut sources = Sources::embedded();
    sources.templates.insert(
        "nginx-service.yml.tera".into(),
        "image: {{ gateway.no_such_field }}\n".into(),
    );
    let req = PlanRequest {
        add: vec!["node2".into()],
        ..PlanRequest::default()
    };
    let err = build(&inv, &text, &sources, &req).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "step `nginx-service@node1` on node1: cannot render template nginx-service.yml.tera"
        ),
        "{err}"
    );
    sources
        .templates
        .insert("nginx-service.yml.tera".into(), "- not a mapping\n".into());
    let err = build(&inv, &text, &sources, &req).unwrap_err().to_string();
    assert!(err.contains("must render one YAML mapping"), "{err}");
}

#[test]
fn playbook_mistakes_are_reported() {
    use crate::playbook::Playbook;
    let bad = "name: x\nsteps:\n  - id: a\n    on: new\n  - id: a\n    on: gateway\n    mkdir: {path: /x}\n    lock: {path: /y}\n  - id: b\n    on: joining\n    preflight: {}\n";
    let err = Playbook::parse("pb.yml", bad).unwrap_err().to_string();
    assert!(err.contains("step `a`: it has no action"), "{err}");
    assert!(err.contains("step `a`: the id is used twice"), "{err}");
    assert!(err.contains("it has several actions: lock, mkdir"), "{err}");
    assert!(
        err.contains("step `b`: `on: joining` belongs in the join section"),
        "{err}"
    );
    // `together_with` names an earlier compose_up step of its own section, or is refused.
    let up = |id: &str, with: &str| {
        format!("  - id: {id}\n    on: gateway\n    compose_up: {{dir: /d{with}}}\n")
    };
    let bad = format!(
        "name: x\nsteps:\n{}{}{}join:\n{}",
        up("early", ", together_with: later"),
        up("later", ""),
        up("other", ", together_with: nosuch"),
        up("j", ", together_with: later").replace("gateway", "joining"),
    );
    let err = Playbook::parse("pb.yml", &bad).unwrap_err().to_string();
    for id in ["early", "other", "j"] {
        assert!(
            err.contains(&format!("step `{id}`: `together_with:")),
            "{id}: {err}"
        );
    }
    assert!(!err.contains("step `later`"), "{err}");
    // `after` names earlier steps of the steps section, and only there.
    let step = |id: &str, on: &str, after: &str| {
        format!("  - id: {id}\n    on: {on}\n    after: [{after}]\n    lock: {{path: /l}}\n")
    };
    let bad = format!(
        "name: x\nsteps:\n{}{}{}join:\n{}",
        step("first", "gateway", "second"),
        step("second", "gateway", "first"),
        step("third", "new", "first, nosuch"),
        step("j", "joining", "first"),
    );
    let err = Playbook::parse("pb.yml", &bad).unwrap_err().to_string();
    assert!(
        err.contains("step `first`: `after: second` names no earlier step"),
        "{err}"
    );
    assert!(
        err.contains("step `third`: `after: nosuch` names no earlier step"),
        "{err}"
    );
    assert!(
        err.contains("step `j`: `after` belongs in the steps section"),
        "{err}"
    );
    assert!(
        !err.contains("step `second`") && !err.contains("after: first"),
        "{err}"
    );
    let err = Playbook::parse("pb.yml", "name: x\nsteps:\n  - id: a\n    on: nowhere\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("pb.yml:4:9:"), "{err}");
}

#[test]
fn yaml_quote_escapes() {
    assert_eq!(crate::sources::yaml_quote(r#"K=a"b\c"#), r#""K=a\"b\\c""#);
    let parsed: Vec<String> =
        serde_saphyr::from_str(&format!("- {}", crate::sources::yaml_quote("x=\"y\"\n\\z")))
            .unwrap();
    assert_eq!(parsed, ["x=\"y\"\n\\z"]);
}

#[test]
fn a_gateway_host_runs_no_wukongim() {
    let text = "cluster: gw\ngateway:\n  node: gw\n  external_address: 10.30.0.1\nnodes:\n  - name: gw\n    role: gateway\n    internal_address: 10.30.0.1\n  - name: n1\n    id: 1001\n    internal_address: 10.30.0.11\n  - name: n2\n    id: 1002\n    internal_address: 10.30.0.12\n";
    let inv = Inventory::parse("cluster.yml", text).unwrap();
    assert_eq!(
        inv.seed, "n1",
        "the first WuKongIM node is the default seed"
    );
    assert!(inv.check_additions(&["gw".into()]).is_err());
    let req = PlanRequest {
        add: vec!["n2".into()],
        members: Some(vec!["n1".into()]),
        ..PlanRequest::default()
    };
    let plan = build(&inv, text, &Sources::embedded(), &req).unwrap();
    let on = |id: &str| -> Vec<String> {
        plan.steps
            .iter()
            .filter(|s| s.id.starts_with(&format!("{id}@")))
            .map(|s| s.host.clone())
            .collect()
    };
    assert_eq!(
        on("member-env"),
        ["n1"],
        "only WuKongIM members get addresses"
    );
    assert_eq!(on("member-up"), ["n1"]);
    // A gateway that is no member starts nginx in a step of its own.
    assert_eq!(on("gateway-up"), ["gw"]);
    let cmd = |id: &str| {
        let st = plan.steps.iter().find(|s| s.id == id).unwrap();
        st.action.commands()[0].run.clone()
    };
    assert!(
        cmd("member-up@n1").ends_with(" up -d $WK_SERVICE"),
        "{}",
        cmd("member-up@n1")
    );
    assert!(
        cmd("gateway-up@gw").ends_with(" up -d nginx"),
        "{}",
        cmd("gateway-up@gw")
    );
    assert_eq!(on("nginx-conf"), ["gw"]);
    assert_eq!(on("prometheus-jobs"), ["gw"]);
    assert_eq!(on("preflight"), ["gw", "n1", "n2"]);
    let after: Vec<&str> = plan.members_after.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(after, ["n1", "n2"]);
    let (upstreams, jobs) = plan
        .steps
        .iter()
        .fold((None, None), |acc, s| match &s.action {
            Action::NginxConf { upstreams, .. } => (Some(upstreams.clone()), acc.1),
            Action::PrometheusJob { jobs, .. } => (acc.0, Some(jobs.clone())),
            _ => acc,
        });
    let upstreams = upstreams.unwrap();
    assert_eq!(upstreams.len(), 5);
    assert!(upstreams
        .iter()
        .all(|(_, s)| s.len() == 2 && !s.iter().any(|a| a.starts_with("10.30.0.1:"))));
    let ids: Vec<Option<String>> = jobs.unwrap().into_iter().map(|j| j.id_label).collect();
    assert_eq!(ids, [Some("1001".to_string()), Some("1002".to_string())]);
}

#[test]
fn template_values_cannot_end_their_scalar() {
    // A value with a quote and a newline stays one scalar of the list item (no injected key).
    let v = "x\"\n    privileged: true\n#";
    let line = format!("- \"K={}\"", crate::sources::yaml_escape(v));
    let parsed: Vec<String> = serde_saphyr::from_str(&line).unwrap();
    assert_eq!(parsed, [format!("K={v}")]);
    assert!(!line.contains('\n'));
}

#[test]
fn a_gateway_that_is_a_member_starts_nginx_in_its_member_up() {
    // examples/cluster.yml: node1 is the gateway and the one member.
    let (_, plan) = outputs("seed-node2");
    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    assert!(!ids.iter().any(|i| i.starts_with("gateway-up@")), "{ids:?}");
    let at = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    assert!(at("prometheus-jobs@node1") < at("member-up@node1"));
    assert_eq!(at("member-up@node1") + 1, at("prometheus-reload@node1"));
    let up = &plan.steps[at("member-up@node1")];
    let Action::ComposeUp {
        services, command, ..
    } = &up.action
    else {
        panic!("{:?}", up.action)
    };
    use crate::playbook::ServiceSelector;
    assert_eq!(
        services,
        &[
            ServiceSelector::ImageName("wukongim".into()),
            ServiceSelector::Name("nginx".into())
        ]
    );
    assert!(
        command.run.ends_with(" up -d $WK_SERVICE nginx"),
        "{}",
        command.run
    );
    assert_eq!(
        up.title,
        "recreate the member's WuKongIM with its new environment; start (or reload) nginx"
    );
}

#[test]
fn a_step_together_with_one_of_all_services_starts_them_all() {
    use crate::playbook::ServiceSelector;
    let text = read(&repo().join("examples/cluster.yml"));
    let inv = Inventory::parse("cluster.yml", &text).unwrap();
    let req = node2_with_node1_service("wukongim");
    let up = |a: &str, b: &str| {
        format!(
            "name: x\nsteps:\n  - id: a\n    on: gateway\n    compose_up: {{dir: /d, services: [{a}]}}\n  - id: b\n    on: gateway\n    compose_up: {{dir: /d, services: [{b}], together_with: a}}\n"
        )
    };
    let nginx = ServiceSelector::Name("nginx".into());
    let member = ServiceSelector::ImageName("wukongim".into());
    for (a, b, want_services, want_tail) in [
        ("", "{name: nginx}", vec![nginx.clone()], " up -d"),
        ("{image_name: wukongim}", "", vec![member.clone()], " up -d"),
        (
            "{image_name: wukongim}",
            "{name: nginx}, {image_name: wukongim}",
            vec![member.clone(), nginx.clone()],
            " up -d wukongim nginx",
        ),
    ] {
        let mut sources = Sources::embedded();
        sources.playbook = up(a, b);
        let plan = build(&inv, &text, &sources, &req).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a@node1"], "{a} / {b}");
        let Action::ComposeUp {
            services, command, ..
        } = &plan.steps[0].action
        else {
            panic!()
        };
        assert_eq!(services, &want_services, "{a} / {b}");
        assert!(
            command.run.ends_with(want_tail),
            "{a} / {b}: {}",
            command.run
        );
    }
    // Another dir: a step of its own.
    let mut sources = Sources::embedded();
    sources.playbook = up("", "{name: nginx}").replace(
        "compose_up: {dir: /d, services: [{name: nginx}]",
        "compose_up: {dir: /e, services: [{name: nginx}]",
    );
    let plan = build(&inv, &text, &sources, &req).unwrap();
    assert_eq!(plan.steps.len(), 2);
}
