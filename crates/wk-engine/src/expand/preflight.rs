//! Phase 4, preflight: every check of every host, grouped by what it checks (the hosts, the
//! nodes to add, the load balancer's ports, the seed and its cluster, Prometheus's file), then
//! the plan, with every file edit and image it needs tried before anything changes. All are
//! reported; one that fails stops the run with nothing changed.

use wk_cluster::Health;
use wk_compose::{edit, Selector};
use wk_plan::inventory::{host_port, Node, SudoMode, NODE_PORTS, PORT_API, PORT_CLUSTER};
use wk_plan::Plan;
use wk_remote::Remote;

use super::{Known, Planned, Scope};
use crate::engine::{Engine, Options, Outcome};
use crate::error::EngineError;
use crate::events::Event;

impl<R: Remote + 'static> Engine<R> {
    pub(super) async fn preflight(
        &self,
        opts: &Options,
        scope: &Scope,
        mut k: Known,
    ) -> Result<Planned, EngineError> {
        host_checks(&mut k);
        new_node_checks(opts, scope, &mut k);
        reach_checks(opts, scope, &mut k);
        data_mount_checks(&mut k);
        settings_check(&mut k);
        self.lb_ports_check(scope, &mut k);
        self.seed_checks(&mut k);
        let (version, version_warnings) = self.versions_check(opts, &mut k);
        self.prometheus_check(scope, &mut k);
        // The plan, with what the hosts told (once every check so far passed: a plan needs the
        // members the cluster named).
        let plan = if k.checks.iter().all(|c| c.2) {
            Some(self.plan_and_trial(opts, scope, &mut k).await?)
        } else {
            None
        };
        let mut failed = 0;
        for (host, id, ok, detail, fix) in std::mem::take(&mut k.checks) {
            if !ok {
                failed += 1;
            }
            self.say(Event::Check {
                host,
                id,
                ok,
                detail,
                fix: if ok { None } else { fix },
            });
        }
        let seed = &k.seed.name;
        if k.seed_env("WK_JWT_SECRET").is_some() {
            self.say(Event::Warning { message: format!("{seed} sets WK_JWT_SECRET: the new nodes get the same value, or admin logins would fail across the load balancer") });
        }
        for message in version_warnings {
            self.say(Event::Warning { message });
        }
        let token = k.seed_env("WK_MANAGERTOKEN");
        if token.is_some() {
            self.say(Event::Warning { message: format!("{seed} sets WK_MANAGERTOKEN, which WuKongIM v2 clusters do not support (#159, #533); API calls send its `token` header") });
        }
        match plan {
            Some(plan) if failed == 0 => Ok(Planned {
                joins: plan
                    .adding
                    .iter()
                    .filter(|a| !k.already.contains(&a.name))
                    .map(|a| (a.name.clone(), a.id))
                    .collect(),
                changes: std::mem::take(&mut k.changes),
                looks: scope
                    .added
                    .iter()
                    .filter_map(|n| {
                        let st = k.states.get(&n.name)?;
                        Some(((n.name.clone(), n.install_dir.clone()), st.services.clone()))
                    })
                    .collect(),
                saved: opts.snapshots().then(|| self.saved_plan(opts, &k, &plan)),
                plan,
                token,
                version,
            }),
            _ => Err(EngineError::Preflight {
                failed: failed.max(1),
            }),
        }
    }

    /// The plan, with what the hosts and the cluster look like now.
    fn saved_plan(&self, opts: &Options, k: &Known, plan: &Plan) -> crate::saved::SavedPlan {
        let sha = |s: &str| crate::journal::sha256_hex(s.as_bytes());
        let mut sources = self.sources.playbook.clone();
        for (name, text) in &self.sources.templates {
            sources.push_str(&format!("\0{name}\0{text}"));
        }
        crate::saved::SavedPlan {
            v: crate::saved::SAVED_VERSION,
            add: opts.add.clone(),
            inventory_sha256: sha(&self.inv_text),
            sources_sha256: sha(&sources),
            members: k
                .cluster
                .iter()
                .map(|c| format!("{} {} {}", c.id, c.cluster_addr, c.status))
                .collect(),
            files: k.file_shas.clone(),
            services: k
                .states
                .iter()
                .map(|(h, st)| {
                    let mut v: Vec<String> = st
                        .services
                        .0
                        .iter()
                        .map(|c| format!("{} {}", c.service, c.status))
                        .collect();
                    v.sort();
                    (h.clone(), v)
                })
                .collect(),
            plan: serde_json::to_value(plan).unwrap_or_default(),
        }
    }

    /// `wkctl check`: the plan's warnings, and nothing run.
    pub(super) fn checked(&self, plan: Plan) -> Outcome {
        for w in &plan.warnings {
            self.say(Event::Warning { message: w.clone() });
        }
        Outcome {
            run_id: None,
            plan,
            changed: 0,
            ok: 0,
            saved: None,
        }
    }

    /// The load balancer's ports: free, or held by the nginx this gateway runs already.
    fn lb_ports_check(&self, scope: &Scope, k: &mut Known) {
        let gateway = &scope.gateway;
        let gst = &k.states[&gateway.name];
        let p = self.inv.gateway.ports;
        let nginx_runs = gst.services.running("nginx");
        let busy = gst.busy([p.api, p.tcp, p.ws, p.manager, p.demo]);
        k.check(
            &gateway.name,
            "lb-ports",
            busy.is_empty() || nginx_runs,
            if busy.is_empty() {
                format!("{}, {}, {}, {}, {} are free", p.api, p.tcp, p.ws, p.manager, p.demo)
            } else if nginx_runs {
                format!("{} are nginx's (it runs here already)", busy.join(", "))
            } else {
                format!("port(s) {} are in use, and no nginx of {} runs", busy.join(", "), gateway.install_dir)
            },
            Some("stop what listens there, or give the load balancer other ports (gateway.ports in the inventory)"),
        );
    }

    /// The seed: healthy, its WuKongIM service found by image and tagged as the inventory's
    /// image, and known to its cluster at the inventory's address.
    fn seed_checks(&self, k: &mut Known) {
        let seed = k.seed.clone();
        match k.probe.health.clone() {
            Ok(Health::Ok) if k.probe.not_ready.is_some() => k.check(
                &seed.name,
                "health",
                false,
                format!(
                    "/health answers 200 (it reads only the node's own copy of the config), but the cluster does not work: {}",
                    k.probe.not_ready.as_deref().unwrap_or("")
                ),
                Some("the cluster must work before it grows: bring its members back (or wait for its elections to end), then run again"),
            ),
            Ok(Health::Ok) => k.check(
                &seed.name,
                "health",
                true,
                "/health answers 200, a config leader is elected, every slot has a leader and none moves".into(),
                None,
            ),
            Ok(Health::Error(m)) => k.check(
                &seed.name,
                "health",
                false,
                format!("/health: {m}"),
                Some("the cluster must be healthy before it grows"),
            ),
            Err(e) => k.check(
                &seed.name,
                "health",
                false,
                e,
                Some("check that WuKongIM runs on the seed"),
            ),
        }
        let seed_compose = k.states[&seed.name]
            .compose_text
            .clone()
            .unwrap_or_default();
        let service = edit::find_service(&seed_compose, &Selector::ImageName("wukongim".into()));
        match &service {
            Ok(s) => k.check(
                &seed.name,
                "service",
                true,
                format!("service `{s}` runs the WuKongIM image"),
                None,
            ),
            Err(e) => k.check(
                &seed.name,
                "service",
                false,
                format!("{}/docker-compose.yml: {e}", seed.install_dir),
                Some("wkctl finds WuKongIM by its image in the compose file"),
            ),
        }
        if let (Ok(s), Ok(doc)) = (&service, wk_compose::value::parse(&seed_compose)) {
            let image = doc
                .get("services")
                .and_then(|x| x.get(s))
                .and_then(|x| x.get("image"))
                .and_then(|i| i.scalar())
                .unwrap_or_default();
            let tag = |i: &str| {
                i.rsplit_once(':')
                    .map(|(_, t)| t.to_string())
                    .unwrap_or_else(|| "latest".into())
            };
            k.check(
                &seed.name,
                "image-tag",
                tag(&image) == tag(&self.inv.image),
                format!("the seed runs {image}; new nodes get {}", self.inv.image),
                Some("give `image:` in the inventory the tag the cluster runs"),
            );
        }
        if let Some(me) = k.cluster.iter().find(|c| c.id == seed.id as u64) {
            let want = host_port(&seed.internal_address, PORT_CLUSTER);
            let have = me.cluster_addr.clone();
            k.check(
                &seed.name,
                "cluster-addr",
                have == want,
                format!("the cluster knows {} at {have} (inventory: {want})", seed.name),
                Some("WuKongIM fixed the cluster address at the seed's first boot; new nodes would dial it. Make the inventory's internal_address match, or fix the seed first"),
            );
        } else if k.probe.members.is_ok() {
            k.check(
                &seed.name,
                "cluster-addr",
                false,
                format!("node {} is not in the cluster's member list", seed.id),
                Some("check the seed's WK_CLUSTER_NODEID and the inventory's id"),
            );
        }
    }

    /// The members' builds, as the seed's `/cluster/nodes` has each online member tell its own:
    /// one build on every node (unless `--allow-version-mix`), v2.1.2 or later. The build new
    /// nodes must run, when there is one to hold them to; and warnings.
    fn versions_check(&self, opts: &Options, k: &mut Known) -> (Option<String>, Vec<String>) {
        let seed = k.seed.name.clone();
        let mut early = Vec::new();
        let list = match k.probe.versions.clone() {
            // Not asked: /health already failed, and says why.
            None => return (None, Vec::new()),
            // /cluster/nodes fails while any member it takes for online does not answer (one
            // stopped a moment ago, for seconds): the seed's own build is what new nodes must
            // run; the others are not compared.
            Some(Err(e)) => {
                early.push(format!("the members' builds could not all be read ({e}); only {seed}'s is compared with the new nodes'"));
                k.probe
                    .build
                    .clone()
                    .map(|v| vec![(k.seed.id as u64, v)])
                    .unwrap_or_default()
            }
            Some(Ok(list)) => list,
        };
        let named: Vec<(String, String)> = list
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(id, v)| {
                let name = self
                    .inv
                    .wukongim_nodes()
                    .find(|n| n.id as u64 == id)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| format!("node {id}"));
                (name, v)
            })
            .collect();
        let allow =
            opts.allow_version_mix || opts.resume.as_ref().is_some_and(|r| r.allow_version_mix);
        let v = version_rules(&named, allow);
        k.check(&seed, "versions", v.ok, v.detail, v.fix);
        early.extend(v.warnings);
        (v.expected, early)
    }

    /// The gateway's prometheus.yml is there and parses.
    fn prometheus_check(&self, scope: &Scope, k: &mut Known) {
        let gateway = &scope.gateway;
        if gateway.name != k.seed.name && !k.states.contains_key(&gateway.name) {
            return;
        }
        let ok = k.states[&gateway.name]
            .prometheus_text
            .as_deref()
            .is_some_and(|t| wk_compose::value::parse(t).is_ok());
        k.check(
            &gateway.name,
            "prometheus",
            ok,
            format!(
                "{} {}",
                self.inv.gateway.prometheus_file,
                if ok {
                    "parses"
                } else {
                    "is missing or does not parse"
                }
            ),
            Some("the single-node deployment's prometheus.yml must be there"),
        );
    }
}

/// What the members' builds allow (FACTS: WuKongIM wants one build on every node, v2.1.2 or
/// later for a cluster; before v2.1.4 `/health` reports no readiness at all).
#[derive(Debug, PartialEq)]
pub(crate) struct Versions {
    pub ok: bool,
    pub detail: String,
    pub fix: Option<&'static str>,
    /// The build new nodes must run (`None`: not held to one).
    pub expected: Option<String>,
    pub warnings: Vec<String>,
}

/// [`Versions`] of the members' (name, `app_version`), offline ones (no version) left out.
pub(crate) fn version_rules(members: &[(String, String)], allow_mix: bool) -> Versions {
    let mut warnings = Vec::new();
    let mut builds: Vec<&str> = members.iter().map(|(_, v)| v.as_str()).collect();
    builds.sort();
    builds.dedup();
    let list = || {
        members
            .iter()
            .map(|(n, v)| format!("{n} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let too_old: Vec<String> = members
        .iter()
        .filter(|(_, v)| wk_cluster::release(v).is_some_and(|r| r < (2, 1, 2)))
        .map(|(n, v)| format!("{n} runs {v}"))
        .collect();
    if !too_old.is_empty() {
        return Versions {
            ok: false,
            detail: format!(
                "{}: a WuKongIM cluster needs v2.1.2 or later (WuKongIM #291)",
                too_old.join(", ")
            ),
            fix: Some("upgrade the members (one at a time) to one release of v2.1.2 or later, then run again"),
            expected: None,
            warnings,
        };
    }
    for (n, v) in members {
        match wk_cluster::release(v) {
            Some(r) if r < (2, 1, 4) => warnings.push(format!("{n} runs {v}: before v2.1.4 WuKongIM's /health always answers 200, so only the live signals (a config leader, the node online, /cluster/info) tell wkctl that a node is ready")),
            Some(_) => {}
            None => warnings.push(format!("{n} runs build `{v}`, which names no release: whether it is v2.1.2 or later is not checked")),
        }
    }
    match builds.as_slice() {
        [] => Versions {
            ok: true,
            detail: "no member told its build (offline members tell none); new nodes are not compared".into(),
            fix: None,
            expected: None,
            warnings,
        },
        [one] => Versions {
            ok: true,
            detail: format!("every member runs {one}; new nodes must run it too"),
            fix: None,
            expected: (!allow_mix).then(|| one.to_string()),
            warnings,
        },
        _ if allow_mix => Versions {
            ok: true,
            detail: format!("the members run different builds ({}), as --allow-version-mix allows", list()),
            fix: None,
            expected: None,
            warnings,
        },
        _ => Versions {
            ok: false,
            detail: format!("the members run different builds: {}", list()),
            fix: Some("WuKongIM's nodes must run one build (an image tag like :v2 moves with every release): bring every member to the same one, or pass --allow-version-mix to go on"),
            expected: None,
            warnings,
        },
    }
}

/// Every host: logged in, sudo (when it uses it), compose, the Docker daemon.
fn host_checks(k: &mut Known) {
    for n in k.wanted.clone() {
        let st = k.states[&n.name].clone();
        k.check(
            &n.name,
            "ssh",
            true,
            format!("logged in to {}", host_port(&n.ssh.host, n.ssh.port)),
            None,
        );
        if let Some(sudo) = &st.sudo {
            k.check(
                &n.name,
                "sudo",
                sudo.is_ok(),
                match sudo {
                    Ok(()) => "sudo works".to_string(),
                    Err(e) => format!("sudo does not work: {e}"),
                },
                Some("check the sudo mode and password (ssh.sudo in the inventory, WKCTL_SUDO_PASSWORD or the prompt), or the host's sudoers"),
            );
        }
        k.check(
            &n.name,
            "compose",
            st.compose.is_some(),
            st.compose
                .clone()
                .map(|c| format!("`{c}` found"))
                .unwrap_or_else(|| "neither `docker compose` nor `docker-compose` runs".into()),
            Some("install Docker Compose on the host"),
        );
        if st.compose.is_none() {
            continue;
        }
        let (ok, detail) = match &st.docker {
            Some(Ok(v)) => (true, format!("the Docker daemon answers (Engine {v})")),
            Some(Err(e)) => (false, format!("the Docker daemon does not answer: {e}")),
            None => (false, "the Docker daemon was not asked (sudo fails)".into()),
        };
        k.check(
            &n.name,
            "docker",
            ok,
            detail,
            Some(if n.ssh.sudo == SudoMode::None {
                "start Docker on the host, and put the SSH user in the docker group (or set `ssh.sudo` for the node so wkctl calls compose through sudo)"
            } else {
                "start Docker on the host (`sudo systemctl start docker`), then run again"
            }),
        );
    }
}

/// The cluster-wide settings the new nodes get from the seed, and every member agreeing on
/// them (a node without `WK_TOKENAUTHON` lets clients the load balancer sends it skip
/// authentication; slot counts that differ never match).
fn settings_check(k: &mut Known) {
    let of = |name: &str| {
        let st = &k.states[name];
        crate::text::cluster_settings(
            st.compose_text.as_deref().unwrap_or_default(),
            st.wk_yaml.as_deref(),
        )
    };
    let seed = k.seed.name.clone();
    let theirs = of(&seed);
    let mut differ = Vec::new();
    for m in k
        .member_nodes
        .iter()
        .filter(|m| m.name != seed && k.states.contains_key(&m.name))
    {
        if k.states[&m.name].compose_text.is_none() {
            continue;
        }
        let mine = of(&m.name);
        let keys: std::collections::BTreeSet<&String> =
            theirs.iter().chain(mine.iter()).map(|(k, _)| k).collect();
        for key in keys {
            let a = theirs.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            let b = mine.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            if a != b {
                // Names only: values may be secrets.
                let set = |v: Option<&String>| if v.is_some() { "set" } else { "not set" };
                differ.push(format!(
                    "{key} differs between {seed} ({}) and {} ({})",
                    if a.is_some() && b.is_some() {
                        "one value"
                    } else {
                        set(a)
                    },
                    m.name,
                    if a.is_some() && b.is_some() {
                        "another"
                    } else {
                        set(b)
                    }
                ));
            }
        }
    }
    let keys: Vec<&str> = theirs.iter().map(|(k, _)| k.as_str()).collect();
    k.check(
        &seed,
        "settings",
        differ.is_empty(),
        if !differ.is_empty() {
            differ.join("; ")
        } else if keys.is_empty() {
            "no cluster-wide setting to carry to the new nodes".into()
        } else {
            format!("the new nodes get {seed}'s cluster-wide settings: {}", keys.join(", "))
        },
        Some("make the members' cluster-wide WuKongIM settings equal (docs/architecture.md lists the node-specific ones), then run again"),
    );
}

/// Every member's WuKongIM keeps its data in a host directory mounted at /root/wukongim (a
/// run recreates members' containers): else recreating it could lose or hide the data.
fn data_mount_checks(k: &mut Known) {
    let members: Vec<Node> = k
        .member_nodes
        .iter()
        .filter(|m| k.states.contains_key(&m.name))
        .cloned()
        .collect();
    for m in &members {
        let st = &k.states[&m.name];
        let Some(compose) = st.compose_text.as_deref() else {
            continue;
        };
        let found = crate::text::data_mount(compose).and_then(|src| {
            let root = st
                .wk_yaml
                .as_deref()
                .and_then(|y| wk_compose::value::parse(y).ok())
                .and_then(|doc| doc.get("rootDir").and_then(|r| r.scalar()));
            match root {
                Some(r) => crate::text::root_dir_inside(&r)
                    .map(|()| src.clone())
                    .map_err(|e| format!("{src}/wk.yaml sets rootDir {e}")),
                None => Ok(src),
            }
        });
        k.check(
            &m.name,
            "data-mount",
            found.is_ok(),
            match &found {
                Ok(src) => format!("WuKongIM's data is in {src} on the host (mounted at /root/wukongim)"),
                Err(e) => format!("{}/docker-compose.yml: {e}", m.install_dir),
            },
            Some("keep WuKongIM's data in a host directory mounted at /root/wukongim (the docs' `./wukongim_data:/root/wukongim`, no rootDir elsewhere): copy it out of the container with `docker cp` first, change the compose file, then run again"),
        );
    }
}

/// What `from` found for each of `to`'s `ports` that is not in `good`: `addr: result`.
fn unreachable(k: &Known, from: &str, to: &[&Node], ports: &[u16], good: &[&str]) -> Vec<String> {
    let Some(st) = k.states.get(from) else {
        return Vec::new();
    };
    let mut bad = Vec::new();
    for n in to {
        for p in ports {
            let key = host_port(&n.internal_address, *p);
            let Some(r) = st.reach.get(&key) else {
                continue;
            };
            if !good.contains(&r.as_str()) {
                bad.push(format!("{} {key}: {r}", n.name));
            }
        }
    }
    bad
}

/// 11110 both ways between every new node and every member, and every node's 5001 from every
/// other: WuKongIM's raft sends each message over the sender's own connection (a new node the
/// members cannot dial never gets the config), and the admin UI's node page asks every node's
/// API from the node the load balancer picked.
fn reach_checks(opts: &Options, scope: &Scope, k: &mut Known) {
    let joining: Vec<Node> = scope
        .added
        .iter()
        .filter(|a| {
            !k.already.contains(&a.name)
                && !opts
                    .resume
                    .as_ref()
                    .is_some_and(|r| r.started.contains(&a.name))
        })
        .cloned()
        .collect();
    // Members the cluster sees online: a stopped one (its host up, its WuKongIM not) is asked
    // for nothing, and nothing is asked to reach it.
    let members: Vec<Node> = k
        .member_nodes
        .iter()
        .filter(|m| k.states.contains_key(&m.name))
        .filter(|m| {
            k.cluster.is_empty()
                || k.cluster
                    .iter()
                    .any(|c| c.id == m.id as u64 && c.online == 1)
        })
        .filter(|m| {
            // Nor one whose WuKongIM does not run (the cluster may not have seen it go yet).
            let st = &k.states[&m.name];
            st.compose_text
                .as_deref()
                .and_then(|t| edit::find_service(t, &Selector::ImageName("wukongim".into())).ok())
                .is_none_or(|svc| st.services.running(&svc))
        })
        .cloned()
        .collect();
    for a in &joining {
        let others: Vec<&Node> = members.iter().filter(|m| m.name != k.seed.name).collect();
        let all: Vec<&Node> = members.iter().collect();
        let mut bad = unreachable(k, &a.name, &others, &[PORT_CLUSTER], &["open"]);
        bad.extend(unreachable(k, &a.name, &all, &[PORT_API], &["open"]));
        // The other nodes this run adds: members too once they join (nothing may listen there
        // yet: refused is reachable).
        let fellows: Vec<&Node> = scope.added.iter().filter(|o| o.name != a.name).collect();
        bad.extend(unreachable(
            k,
            &a.name,
            &fellows,
            &[PORT_CLUSTER, PORT_API],
            &["open", "refused"],
        ));
        let mut names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
        names.extend(fellows.iter().map(|f| f.name.as_str()));
        reach_row(
            k,
            a,
            "reach-members",
            &bad,
            format!("{} reaches 11110 and 5001 of {}", a.name, names.join(", ")),
            "open ports 11110 and 5001 from the new node to every member and every other new node",
        );
    }
    if joining.is_empty() {
        return;
    }
    let new: Vec<&Node> = joining.iter().collect();
    for m in &members {
        // Nothing listens on a new node yet: refused is reachable.
        let mut bad = unreachable(
            k,
            &m.name,
            &new,
            &[PORT_CLUSTER, PORT_API],
            &["open", "refused"],
        );
        let peers: Vec<&Node> = members.iter().filter(|o| o.name != m.name).collect();
        bad.extend(unreachable(k, &m.name, &peers, &[PORT_API], &["open"]));
        let names: Vec<&str> = new.iter().map(|n| n.name.as_str()).collect();
        reach_row(
            k,
            m,
            "reach-to-new",
            &bad,
            format!("{} reaches 11110 and 5001 of {} (and the other members' 5001)", m.name, names.join(", ")),
            "open 11110 (and 5001) from every member to the new node too: WuKongIM's members dial a new node on their own connections; one they cannot dial never gets the cluster's config, stays at 将加入 and restarts every minute",
        );
    }
}

/// A reachability check of host `from`: passed when nothing in `bad` (what failed, and how).
fn reach_row(k: &mut Known, from: &Node, id: &str, bad: &[String], ok: String, fix: &str) {
    let detail = if bad.is_empty() {
        ok
    } else {
        format!(
            "from {} ({}): {}",
            from.name,
            from.internal_address,
            bad.join("; ")
        )
    };
    k.check(&from.name, id, bad.is_empty(), detail, Some(fix));
}

/// Every node to add: a member already (a re-run), started by the run being resumed, or free
/// to join: no data, free ports, the seed's cluster port reachable, an id not taken, and its
/// API reachable from the gateway.
fn new_node_checks(opts: &Options, scope: &Scope, k: &mut Known) {
    let seed = k.seed.clone();
    let gateway = &scope.gateway;
    // The ids of the nodes that still have to join, and those of them the cluster has.
    let (mut free, mut taken) = (Vec::new(), Vec::new());
    for a in &scope.added {
        let st = k.states[&a.name].clone();
        if k.already.contains(&a.name) {
            k.check(
                &a.name,
                "joined",
                true,
                "already a member at status 3 (已加入)".into(),
                None,
            );
            continue;
        }
        if opts
            .resume
            .as_ref()
            .is_some_and(|r| r.started.contains(&a.name))
        {
            k.check(
                &a.name,
                "resumed",
                true,
                "its WuKongIM was started by the run being resumed".into(),
                None,
            );
            continue;
        }
        k.check(
            &a.name,
            "install-dir",
            st.data == "empty" || st.data == "first-boot",
            match st.data.as_str() {
                "empty" => format!("{} holds no WuKongIM data", a.install_dir),
                "first-boot" => format!("{}/wukongim_data holds only what a first boot writes before it joins (no cluster config): WuKongIM joins with it", a.install_dir),
                "config" => format!("{}/wukongim_data holds data: a cluster config (data/cluster/config/remote.json)", a.install_dir),
                _ => format!("{}/wukongim_data holds data: files WuKongIM's first boot does not write", a.install_dir),
            },
            Some("a data dir that holds a cluster config never joins again (and another cluster's joins with its old data): move it away (after checking it is not needed)"),
        );
        let busy = st.busy(NODE_PORTS);
        k.check(
            &a.name,
            "ports-free",
            busy.is_empty(),
            if busy.is_empty() {
                "5001, 5100, 5200, 5300, 5172, 11110 are free".into()
            } else {
                format!("port(s) {} are in use", busy.join(", "))
            },
            Some("stop what listens there, or add another host"),
        );
        let key = host_port(&seed.internal_address, PORT_CLUSTER);
        let r = st.reach.get(&key).cloned().unwrap_or_default();
        k.check(
            &a.name,
            "reach-seed",
            r == "open",
            format!("{key} from {}: {r}", a.name),
            Some(
                "open port 11110 between the nodes (the seed document's port table leaves it out)",
            ),
        );
        free.push(a.id.to_string());
        if let Some(c) = k.cluster.iter().find(|c| c.id == a.id as u64) {
            taken.push(format!("id {} is already taken by {} in the cluster; a join with it would silently replace that node", a.id, c.cluster_addr));
        }
        let key = host_port(&a.internal_address, PORT_API);
        let r = k.states[&gateway.name]
            .reach
            .get(&key)
            .cloned()
            .unwrap_or_default();
        k.check(
            &gateway.name,
            "reach-new",
            r == "open" || r == "refused",
            format!("{key} from {}: {r}", gateway.name),
            Some("open port 5001 from the gateway to the new node"),
        );
    }
    let members = k.cluster.len();
    k.check(
        &seed.name,
        "ids-free",
        taken.is_empty(),
        if !taken.is_empty() {
            taken.join("; ")
        } else if free.is_empty() {
            "no node of this run needs a free id now: each is a member already, or was started by the run being resumed".into()
        } else {
            format!(
                "no member of the cluster ({members}) has id {}",
                free.join(" or ")
            )
        },
        Some("give the new node an unused id in the inventory"),
    );
}

#[cfg(test)]
mod version_tests {
    use super::version_rules;

    fn m(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn one_build_is_what_new_nodes_must_run() {
        let v = version_rules(
            &m(&[("node1", "v2.2.5-20260422"), ("node2", "v2.2.5-20260422")]),
            false,
        );
        assert!(v.ok, "{v:?}");
        assert_eq!(v.expected.as_deref(), Some("v2.2.5-20260422"));
        assert!(v.warnings.is_empty());
        // Allowed to mix: new nodes are not held to it.
        let v = version_rules(&m(&[("node1", "v2.2.5-20260422")]), true);
        assert!(v.ok && v.expected.is_none(), "{v:?}");
    }

    #[test]
    fn a_mix_is_refused_unless_allowed() {
        let mix = m(&[("node1", "v2.2.5-20260422"), ("node3", "v2.2.4-20260301")]);
        let v = version_rules(&mix, false);
        assert!(!v.ok);
        assert!(
            v.detail
                .contains("node1 v2.2.5-20260422, node3 v2.2.4-20260301"),
            "{}",
            v.detail
        );
        assert!(v.fix.unwrap().contains("--allow-version-mix"));
        let v = version_rules(&mix, true);
        assert!(v.ok && v.expected.is_none(), "{v:?}");
    }

    #[test]
    fn old_releases_are_refused_or_warned_of() {
        let v = version_rules(&m(&[("node1", "v2.1.1")]), true);
        assert!(!v.ok);
        assert!(v.detail.contains("node1 runs v2.1.1") && v.detail.contains("v2.1.2 or later"));
        let v = version_rules(&m(&[("node1", "v2.1.3-20240101")]), false);
        assert!(v.ok);
        assert_eq!(v.warnings.len(), 1);
        assert!(v.warnings[0].contains("before v2.1.4"), "{:?}", v.warnings);
        let v = version_rules(&m(&[("node1", "v2.1.4")]), false);
        assert!(v.ok && v.warnings.is_empty(), "{v:?}");
        // A build that names no release: said, not refused.
        let v = version_rules(&m(&[("node1", "dev")]), false);
        assert!(v.ok && v.warnings[0].contains("names no release"), "{v:?}");
        // Offline members tell no build: nothing to hold new nodes to.
        let v = version_rules(&[], false);
        assert!(v.ok && v.expected.is_none());
    }
}
