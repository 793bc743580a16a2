//! WuKongIM's HTTP API (FACTS.md: HTTP API), reached through a local tunnel port: `/health`,
//! `/cluster/simpleNodes`, `/cluster/info`. Plain HTTP: the tunnel is the SSH connection.

use std::net::SocketAddr;
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

/// The API of one node, through a local port.
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
    /// `host` names the node in errors; `local` is the tunnel's port; `token` is node1's
    /// `WK_MANAGERTOKEN`, when it has one (sent as the `token` header).
    pub fn new(host: impl Into<String>, local: SocketAddr, token: Option<String>) -> Api {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client");
        Api {
            host: host.into(),
            base: format!("http://{local}"),
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
            .map(|s| {
                s.iter()
                    .filter(|x| {
                        x["migrateTo"].as_u64().unwrap_or(0) != 0
                            || x["migrateFrom"].as_u64().unwrap_or(0) != 0
                    })
                    .count()
            })
            .unwrap_or(0))
    }
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
