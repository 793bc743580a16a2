//! What the hosts say before anything is planned, each host's parts asked at once: one script
//! (data dir, listening ports, peers it must reach, the run lock), compose and the Docker daemon
//! as the steps call them, the compose file and prometheus.yml; and a member's health and its
//! cluster's members.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use wk_cluster::{Api, Health};
use wk_plan::inventory::{Node, SudoMode, PORT_API};
use wk_remote::{shell, ExecRequest, Remote};

use crate::docker::{self, Services};
use crate::engine::Engine;
use crate::error::{host_err, EngineError};
use crate::text::{compose_path, wukongim_env};

/// What one host told us.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostState {
    /// `None` when the host uses no sudo; else whether `sudo true` worked, and why not.
    pub sudo: Option<Result<(), String>>,
    pub compose: Option<String>,
    /// Whether the Docker daemon answered (as the steps call it), and its version or error.
    pub docker: Option<Result<String, String>>,
    /// What the install dir's compose project runs.
    pub services: Services,
    /// What the install dir's `wukongim_data` holds: `empty` (or absent), `first-boot` (only
    /// what a first boot writes before it joins: data/, logs/, plugins/, an empty remote.json),
    /// `config` (a cluster config: it never joins again), `other` (files WuKongIM did not write).
    pub data: String,
    pub listening: BTreeSet<u16>,
    pub reach: BTreeMap<String, String>,
    pub lock: Option<String>,
    pub compose_text: Option<String>,
    pub prometheus_text: Option<String>,
    /// The `wk.yaml` in the WuKongIM service's mounted home, when there is one (it may move
    /// rootDir away from the mount).
    pub wk_yaml: Option<String>,
}

/// Which compose runs, whether the Docker daemon answers, and what the install dir's project
/// runs: run as the steps run compose (through the plan's sudo prefix).
fn docker_probe(dir: &str, prefix: &str) -> String {
    let inner = format!(
        "if docker compose version >/dev/null 2>&1; then c='docker compose'; elif docker-compose version >/dev/null 2>&1; then c=docker-compose; else c=; fi\necho \"compose=$c\"\nif v=$(docker version --format '{{{{.Server.Version}}}}' 2>&1); then echo \"docker=ok $v\"; else echo \"docker=fail $(printf '%s' \"$v\" | tr '\\n' ' ' | cut -c1-300)\"; exit 0; fi\n[ -n \"$c\" ] || exit 0\n{}",
        docker::state_part()
    );
    docker::in_dir(dir, prefix, &inner)
}

/// The data dir, listening ports, reachability of `reach` and (on the gateway) the run lock.
fn host_script(dir: &str, reach: &[(String, u16)], gateway: bool) -> String {
    let mut script = String::new();
    script.push_str(&format!(
        "w={d}/wukongim_data; if [ -z \"$(ls -A $w 2>/dev/null)\" ]; then echo data=empty; elif [ -s $w/data/cluster/config/remote.json ]; then echo data=config; elif [ -z \"$(ls -A $w | grep -vxE 'data|logs|plugins|wk.yaml')\" ]; then echo data=first-boot; else echo data=other; fi\n",
        d = shell::path(dir)
    ));
    script.push_str("printf 'listening='; for f in /proc/net/tcp /proc/net/tcp6; do [ -r $f ] && while read -r sl local rem st rest; do [ \"$st\" = 0A ] && printf '%d ' \"0x${local##*:}\"; done < $f; done; echo\n");
    for (h, p) in reach {
        script.push_str(&format!(
            "if command -v bash >/dev/null; then o=$(timeout 3 bash -c 'exec 3<>/dev/tcp/{h}/{p}' 2>&1); c=$?; if [ $c = 0 ]; then echo 'reach {h}:{p}=open'; elif [ $c = 124 ]; then echo 'reach {h}:{p}=timeout'; else case \"$o\" in *refused*) echo 'reach {h}:{p}=refused';; *) echo 'reach {h}:{p}=unreachable';; esac; fi; else echo 'reach {h}:{p}=unknown'; fi\n"
        ));
    }
    if gateway {
        let lock = crate::steps::lock_path(dir);
        script.push_str(&format!(
            "if [ -e {l} ]; then echo \"lock=$(tr '\\n' ' ' < {l})\"; fi\n",
            l = shell::path(&lock)
        ));
    }
    script
}

impl HostState {
    /// Which of `ports` something listens on.
    pub fn busy(&self, ports: impl IntoIterator<Item = u16>) -> Vec<String> {
        ports
            .into_iter()
            .filter(|p| self.listening.contains(p))
            .map(|p| p.to_string())
            .collect()
    }

    /// Takes in what [`host_script`] printed.
    fn read_host(&mut self, out: &str) {
        for line in out.lines() {
            if let Some(v) = line.strip_prefix("data=") {
                self.data = v.to_string();
            } else if let Some(v) = line.strip_prefix("listening=") {
                self.listening = v
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
            } else if let Some(v) = line.strip_prefix("reach ") {
                if let Some((k, v)) = v.split_once('=') {
                    self.reach.insert(k.to_string(), v.to_string());
                }
            } else if let Some(v) = line.strip_prefix("lock=") {
                self.lock = Some(v.trim().to_string());
            }
        }
    }

    /// Takes in what [`docker_probe`] printed.
    fn read_docker(&mut self, out: &str) {
        for line in out.lines() {
            if let Some(v) = line.strip_prefix("compose=") {
                self.compose = (!v.is_empty()).then(|| v.to_string());
            } else if let Some(v) = line.strip_prefix("docker=ok ") {
                self.docker = Some(Ok(v.trim().to_string()));
            } else if let Some(v) = line.strip_prefix("docker=fail ") {
                self.docker = Some(Err(v.trim().to_string()));
            }
        }
        self.services = Services::parse(out);
    }
}

impl<R: Remote + 'static> Engine<R> {
    /// One command per host: compose command, data dir, listening ports, reachability of the
    /// peers it must reach, the run lock, the compose file and prometheus.yml.
    pub(crate) async fn facts(
        &self,
        node: &Node,
        reach: Vec<(String, u16)>,
        gateway: bool,
        known_compose: Option<String>,
    ) -> Result<HostState, EngineError> {
        let r = self.remote(&node.name)?;
        let dir = &node.install_dir;
        let sudo = node.ssh.sudo != SudoMode::None;
        // Four independent parts, at once (each a round trip or two on the one connection).
        let host = r.run(ExecRequest::new(host_script(dir, &reach, gateway)));
        let docker = async {
            let sudo_ok = if sudo {
                Some(match r.exec(ExecRequest::new("true").sudo(true)).await {
                    Ok(o) if o.success() => Ok(()),
                    Ok(o) => Err(o.stderr_str().trim().to_string()),
                    Err(e) => Err(e.to_string()),
                })
            } else {
                None
            };
            // Compose and the daemon as the steps call them: with the host's sudo when it has
            // one (a plugin in the user's ~/.docker, or the docker group, may not be there
            // under sudo).
            let probe = if sudo_ok.as_ref().is_none_or(|s| s.is_ok()) {
                let req =
                    ExecRequest::new(docker_probe(dir, wk_plan::plan::sudo_prefix(node.ssh.sudo)))
                        .sudo_inside(sudo)
                        .timeout(Duration::from_secs(60));
                Some(r.exec(req).await.map_err(host_err)?.stdout_str())
            } else {
                None
            };
            Ok::<_, EngineError>((sudo_ok, probe))
        };
        let files = async {
            let compose_text = match known_compose {
                Some(t) => Some(t),
                None => read_text(&**r, &compose_path(node)).await?,
            };
            let mut wk_yaml = None;
            if let Some(Ok(src)) = compose_text.as_deref().map(crate::text::data_mount) {
                let p = wk_plan::plan::join_path(
                    dir,
                    &format!("{}/wk.yaml", src.trim_end_matches('/')),
                );
                // Docker made the dir; a file the user may not read is reported as absent.
                wk_yaml = read_text(&**r, &p).await.ok().flatten();
            }
            Ok::<_, EngineError>((compose_text, wk_yaml))
        };
        let prometheus = async {
            if !gateway {
                return Ok(None);
            }
            let p = wk_plan::plan::join_path(dir, &self.inv.gateway.prometheus_file);
            read_text(&**r, &p).await
        };
        let (host, docker, files, prometheus) = tokio::join!(host, docker, files, prometheus);
        let mut st = HostState::default();
        let (sudo_ok, probe) = docker?;
        st.sudo = sudo_ok;
        if let Some(out) = probe {
            st.read_docker(&out);
        }
        st.read_host(&host.map_err(host_err)?.stdout_str());
        (st.compose_text, st.wk_yaml) = files?;
        st.prometheus_text = prometheus?;
        Ok(st)
    }
}

/// A file's text (`None`: no such file).
pub(crate) async fn read_text<R: Remote>(r: &R, path: &str) -> Result<Option<String>, EngineError> {
    Ok(r.read_file(path)
        .await
        .map_err(host_err)?
        .map(|f| String::from_utf8_lossy(&f.content).into_owned()))
}

/// What a member answered: its compose file (read once: the API token is in it, and the facts
/// use it too), the token, its health and the cluster's members.
pub(crate) struct Probe {
    pub node: Node,
    pub compose_text: Option<String>,
    pub token: Option<String>,
    pub health: Result<Health, String>,
    pub members: Result<Vec<wk_cluster::NodeInfo>, String>,
    /// Why the cluster does not work as the member sees it, on live signals, though its
    /// `/health` answers 200 (`Api::not_ready`); `None`: it works, or /health said why not.
    pub not_ready: Option<String>,
    /// Every member's build, as `/cluster/nodes` gives it: (id, `app_version`, empty for an
    /// offline member). `None` when the member was not healthy enough to ask.
    pub versions: Option<Result<Vec<(u64, String)>, String>>,
    /// The member's own build (`/cluster/node`), when it was asked and told it.
    pub build: Option<String>,
}

/// Asks a member (through its SSH connection, `None` when there is none) for its health and the
/// cluster's members, with the `token` header when its compose file sets WK_MANAGERTOKEN; with
/// `builds`, also every member's build (a seed candidate whose cluster works: `/cluster/nodes`
/// asks every member's API, so `status` and `rollback` do not ask it).
pub(crate) async fn probe<R: Remote>(r: Option<&R>, node: &Node, builds: bool) -> Probe {
    let fail = |compose_text: Option<String>, token: Option<String>, e: String| Probe {
        node: node.clone(),
        compose_text,
        token,
        health: Err(e.clone()),
        members: Err(e),
        not_ready: None,
        versions: None,
        build: None,
    };
    let Some(r) = r else {
        return fail(None, None, format!("{}: not connected", node.name));
    };
    let compose_text = read_text(r, &compose_path(node)).await.ok().flatten();
    let token = compose_text.as_deref().and_then(|t| {
        wukongim_env(t)
            .into_iter()
            .find(|(k, _)| k == "WK_MANAGERTOKEN")
            .map(|(_, v)| v)
    });
    let tunnel = match r.tunnel(&node.internal_address, PORT_API).await {
        Ok(t) => t,
        Err(e) => return fail(compose_text, token, e.to_string()),
    };
    let api = Api::new(&node.name, &tunnel.socket, &tunnel.target, token.clone());
    let health = api.health().await.map_err(|e| e.to_string());
    let members = api.simple_nodes().await.map_err(|e| e.to_string());
    let not_ready = match (&health, &members) {
        (Ok(Health::Ok), Ok(list)) => match api.not_ready_with(node.id as u64, list).await {
            Ok(why) => why,
            Err(e) => Some(e.to_string()),
        },
        _ => None,
    };
    let (versions, build) = match &health {
        Ok(Health::Ok) if builds && not_ready.is_none() => (
            Some(api.versions().await.map_err(|e| e.to_string())),
            api.app_version().await.ok().filter(|v| !v.is_empty()),
        ),
        _ => (None, None),
    };
    Probe {
        node: node.clone(),
        compose_text,
        token,
        health,
        members,
        not_ready,
        versions,
        build,
    }
}
