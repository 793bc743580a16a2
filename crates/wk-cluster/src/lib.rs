//! WuKongIM's HTTP API (FACTS.md: HTTP API), reached through a local tunnel port: `/health`,
//! `/cluster/simpleNodes`, `/cluster/info`. Plain HTTP: the tunnel is the SSH connection.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// A member as `/cluster/simpleNodes` gives it (omitted fields are zero).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeInfo {
    pub id: u64,
    #[serde(default)]
    pub is_leader: u8,
    #[serde(default)]
    pub cluster_addr: String,
    #[serde(default)]
    pub api_server_addr: String,
    #[serde(default)]
    pub online: u8,
    #[serde(default)]
    pub slot_count: u64,
    #[serde(default)]
    pub status: u8,
    #[serde(default)]
    pub status_format: String,
}

/// `/health`: ok, or WuKongIM's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    Error(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{host}: {what}: {message}")]
    Http {
        host: String,
        what: String,
        message: String,
    },
}

/// The API of one node, through a tunnel's local socket.
#[derive(Debug, Clone)]
pub struct Api {
    host: String,
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Wrapped<T> {
    data: Vec<T>,
}

impl Api {
    /// `host` names the node in errors; `socket` is the tunnel's local socket and `target`
    /// the `host:port` it reaches (the requests' host); `token` is node1's `WK_MANAGERTOKEN`,
    /// when it has one (sent as the `token` header).
    pub fn new(host: impl Into<String>, socket: &Path, target: &str, token: Option<String>) -> Api {
        let client = reqwest::Client::builder()
            .unix_socket(socket)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client");
        Api {
            host: host.into(),
            base: format!("http://{target}"),
            token,
            client,
        }
    }

    fn err(&self, what: &str, message: impl std::fmt::Display) -> ClusterError {
        ClusterError::Http {
            host: self.host.clone(),
            what: what.to_string(),
            message: message.to_string(),
        }
    }

    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), ClusterError> {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("token", t);
        }
        let resp = req.send().await.map_err(|e| self.err(path, e))?;
        let code = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| self.err(path, e))?;
        Ok((code, body.to_vec()))
    }

    pub async fn health(&self) -> Result<Health, ClusterError> {
        let (code, body) = self.get("/health").await?;
        if code == 200 {
            return Ok(Health::Ok);
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        Ok(Health::Error(
            v["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {code}")),
        ))
    }

    pub async fn simple_nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let (code, body) = self.get("/cluster/simpleNodes").await?;
        if code != 200 {
            return Err(self.err(
                "/cluster/simpleNodes",
                format!("HTTP {code}: {}", String::from_utf8_lossy(&body)),
            ));
        }
        let w: Wrapped<NodeInfo> =
            serde_json::from_slice(&body).map_err(|e| self.err("/cluster/simpleNodes", e))?;
        Ok(w.data)
    }

    /// The build the node runs: `app_version` of its `/cluster/node` (the answering process's
    /// own version; image tags like `:v2` move with every release).
    pub async fn app_version(&self) -> Result<String, ClusterError> {
        let (code, body) = self.get("/cluster/node").await?;
        if code != 200 {
            return Err(self.err("/cluster/node", format!("HTTP {code}")));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| self.err("/cluster/node", e))?;
        Ok(v["app_version"].as_str().unwrap_or_default().to_string())
    }

    /// Every member's build as `/cluster/nodes` gives it (the node asks each online member's
    /// API; an offline member shows no version): (id, `app_version`, empty when not known).
    pub async fn versions(&self) -> Result<Vec<(u64, String)>, ClusterError> {
        let (code, body) = self.get("/cluster/nodes").await?;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if code != 200 {
            let msg = v["msg"].as_str().unwrap_or("no answer").to_string();
            return Err(self.err("/cluster/nodes", format!("HTTP {code}: {msg}")));
        }
        Ok(v["data"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|n| {
                        (
                            n["id"].as_u64().unwrap_or(0),
                            n["app_version"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// How many slots are still moving (`migrateFrom`/`migrateTo` non-zero) per `/cluster/info`.
    pub async fn slots_migrating(&self) -> Result<usize, ClusterError> {
        let (code, body) = self.get("/cluster/info").await?;
        if code != 200 {
            return Err(self.err("/cluster/info", format!("HTTP {code}")));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| self.err("/cluster/info", e))?;
        Ok(v["slots"]
            .as_array()
            .map(|s| s.iter().filter(|x| moving(x)).count())
            .unwrap_or(0))
    }
}

impl Api {
    /// Whether the cluster works as node `id` sees it, on live signals (`None`: it does, else
    /// why not). `/health` alone is not enough: it reads only the node's local copy of the
    /// config, so it answers 200 right after a restart and on a survivor of a cluster that lost
    /// its quorum. Also asked: a config leader exists (`is_leader` comes from the live raft,
    /// and `/cluster/info` is forwarded to it), the node is online in the leader's view, and no
    /// slot is leaderless or moving.
    pub async fn not_ready(&self, id: u64) -> Result<Option<String>, ClusterError> {
        if let Health::Error(m) = self.health().await? {
            return Ok(Some(format!("/health: {m}")));
        }
        let list = self.simple_nodes().await?;
        self.not_ready_with(id, &list).await
    }

    /// [`Api::not_ready`] for a node whose `/health` answered 200 and whose member list (`list`,
    /// its `/cluster/simpleNodes`) the caller has already.
    pub async fn not_ready_with(
        &self,
        id: u64,
        list: &[NodeInfo],
    ) -> Result<Option<String>, ClusterError> {
        if !list.iter().any(|n| n.is_leader == 1) {
            return Ok(Some(
                "no config leader: a quorum of the members is not online (none shows is_leader)"
                    .into(),
            ));
        }
        match list.iter().find(|n| n.id == id) {
            None => return Ok(Some(format!("node {id} is not in the member list"))),
            Some(n) if n.online != 1 => {
                return Ok(Some(format!("node {id} is offline in the leader's view")))
            }
            Some(_) => {}
        }
        let (code, body) = self.get("/cluster/info").await?;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if code != 200 {
            let msg = v["msg"].as_str().unwrap_or("no answer").to_string();
            return Ok(Some(format!("/cluster/info: HTTP {code}: {msg}")));
        }
        let slots = v["slots"].as_array().cloned().unwrap_or_default();
        let leaderless = slots
            .iter()
            .filter(|x| x["leader"].as_u64().unwrap_or(0) == 0)
            .count();
        if leaderless > 0 {
            return Ok(Some(format!("{leaderless} slot(s) have no leader")));
        }
        let moving = slots.iter().filter(|x| moving(x)).count();
        if moving > 0 {
            return Ok(Some(format!("{moving} slot(s) still migrating")));
        }
        Ok(None)
    }
}

fn moving(slot: &serde_json::Value) -> bool {
    slot["migrateTo"].as_u64().unwrap_or(0) != 0 || slot["migrateFrom"].as_u64().unwrap_or(0) != 0
}

/// A WuKongIM build's release as (major, minor, patch): `v2.2.5-20260422` is (2, 2, 5); `None`
/// when the text is no release number (a development build).
pub fn release(app_version: &str) -> Option<(u32, u32, u32)> {
    let v = app_version.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+', ' ']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// The status text WuKongIM's admin UI shows.
pub fn status_text(status: u8) -> &'static str {
    match status {
        1 => "将加入",
        2 => "加入中",
        3 => "已加入",
        _ => "(not a member)",
    }
}

/// Prometheus's running configuration: `data.yaml` of `/api/v1/status/config`, through a
/// tunnel's socket (`host` names the host in errors). What it scrapes now, whatever its file
/// says.
pub async fn prometheus_config(
    host: &str,
    socket: &Path,
    target: &str,
) -> Result<String, ClusterError> {
    let api = Api::new(host, socket, target, None);
    let (code, body) = api.get("/api/v1/status/config").await?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match v["data"]["yaml"].as_str() {
        Some(y) if code == 200 => Ok(y.to_string()),
        _ => Err(api.err(
            "/api/v1/status/config",
            format!("HTTP {code}: no configuration in the answer"),
        )),
    }
}

/// The `job_name`s of a Prometheus configuration, in order.
pub fn prometheus_job_names(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("- ").trim_start();
            let v = l.strip_prefix("job_name:")?;
            Some(v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        })
        .filter(|v| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod prometheus_tests {
    #[test]
    fn job_names_of_a_file_and_of_prometheus_own_dump() {
        let file = "scrape_configs:\n  - job_name: wukongim1-trace-metrics\n    static_configs:\n    - targets: ['wukongim:5300']\n  -   job_name: \"node2\"\n";
        assert_eq!(
            super::prometheus_job_names(file),
            ["wukongim1-trace-metrics", "node2"]
        );
        let dump = "global:\n  scrape_interval: 10s\nscrape_configs:\n- job_name: wukongim1-trace-metrics\n  honor_timestamps: true\n- job_name: wukongim2-trace-metrics\n";
        assert_eq!(
            super::prometheus_job_names(dump),
            ["wukongim1-trace-metrics", "wukongim2-trace-metrics"]
        );
    }
}

#[cfg(test)]
mod version_tests {
    use super::release;

    #[test]
    fn releases_of_real_build_versions() {
        assert_eq!(release("v2.2.5-20260422"), Some((2, 2, 5)));
        assert_eq!(release("v2.1.2"), Some((2, 1, 2)));
        assert_eq!(release("2.1.4+dirty"), Some((2, 1, 4)));
        assert_eq!(release("v2"), Some((2, 0, 0)));
        assert_eq!(release(""), None);
        assert_eq!(release("dev"), None);
        assert_eq!(release("v2.x.1"), None);
        assert_eq!(release("v1.2.3.4"), None);
        assert!(release("v2.1.1").unwrap() < (2, 1, 2));
    }
}
