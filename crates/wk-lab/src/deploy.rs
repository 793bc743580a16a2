//! Lays out what the single-node deployment document produces on a lab host, starts it, and
//! runs commands on lab hosts the way an operator would: over OpenSSH, as the host's user.

use std::io;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::Lab;

/// How the single node is laid out.
#[derive(Debug, Clone)]
pub struct SingleNode {
    pub node_id: u16,
    /// The WuKongIM service's name: `wukongim` in the single-node document, `wukongim1` in the
    /// scale-out one.
    pub service: String,
    pub with_prometheus: bool,
    pub image: String,
}

impl Default for SingleNode {
    fn default() -> Self {
        SingleNode {
            node_id: 1001,
            service: "wukongim".into(),
            with_prometheus: true,
            image: "registry.cn-shanghai.aliyuncs.com/wukongim/wukongim:v2".into(),
        }
    }
}

/// The single-node docker-compose.yml for a host at `ip` (our own text, the document's shape:
/// list-form environment with quotes and trailing comments, a commented-out entry, Prometheus).
pub fn single_node_compose(ip: &str, o: &SingleNode) -> String {
    const WUKONGIM: &str = r#"version: '3.7'
services:
  @SERVICE@: # the WuKongIM server
    image: @IMAGE@
    environment:
      - "WK_CLUSTER_NODEID=@NODEID@"
      # - "WK_TOKENAUTHON=true"  # token auth; turn it on in production
      - "WK_CLUSTER_SERVERADDR=@IP@:11110" # address other nodes dial
      - "WK_TRACE_PROMETHEUSAPIURL=http://prometheus:9090" # where Prometheus answers
      - "WK_MODE=release" # release mode
      - "WK_EXTERNAL_IP=@IP@" # the server's public address
      - "WK_CLUSTER_APIURL=http://@IP@:5001" # intranet address of the API
      - "WK_INTRANET_TCPADDR=@IP@:5100" # intranet TCP address, for load tests
    healthcheck:
      test: "wget -q -Y off -O /dev/null http://localhost:5001/health > /dev/null 2>&1"
      interval: 10s
      timeout: 10s
      retries: 3
    restart: always
    volumes:
      - ./wukongim_data:/root/wukongim # the node's data on the host
    ports:
      - 5001:5001 # HTTP API
      - 5100:5100 # client TCP
      - 5200:5200 # client WebSocket
      - 5300:5300 # admin UI
      - 5172:5172 # chat demo
      - 11110:11110 # node-to-node traffic
"#;
    const PROMETHEUS: &str = r#"  prometheus: # metrics
    image: registry.cn-shanghai.aliyuncs.com/wukongim/prometheus:v2.53.1
    volumes:
      - "./prometheus.yml:/etc/prometheus/prometheus.yml"
    ports:
      - "9090:9090"
"#;
    let mut s = WUKONGIM
        .replace("@SERVICE@", &o.service)
        .replace("@IMAGE@", &o.image)
        .replace("@NODEID@", &o.node_id.to_string())
        .replace("@IP@", ip);
    if o.with_prometheus {
        s.push_str(PROMETHEUS);
    }
    s
}

/// The single-node prometheus.yml: one job scraping the WuKongIM service by its compose name.
pub fn single_node_prometheus(o: &SingleNode) -> String {
    format!(
        "global:\n  scrape_interval:     10s\n  evaluation_interval: 10s\nscrape_configs:\n  - job_name: wukongim1-trace-metrics\n    static_configs:\n    - targets: ['{}:5300']\n      labels:\n        id: \"{}\"\n",
        o.service, o.node_id
    )
}

impl Lab {
    /// An OpenSSH command that runs `command` on a lab host as its user, with the lab's key and
    /// known_hosts (strict), after the host's address passed [`Lab::guard`].
    pub fn ssh_command(&self, host: &str, command: &str) -> io::Result<Command> {
        let h = self.host(host);
        self.guard(&h.ip)?;
        let mut c = Command::new("ssh");
        c.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            self.known_hosts().display()
        ))
        .arg("-i")
        .arg(self.key())
        .arg(format!("{}@{}", h.user, h.ip))
        .arg(command);
        Ok(c)
    }

    /// Runs `command` on a lab host as its user (see [`Lab::ssh_command`]).
    pub fn ssh(&self, host: &str, command: &str) -> io::Result<Output> {
        self.ssh_command(host, command)?.output()
    }

    /// The compose command as an operator types it on this host (through sudo where the user
    /// reaches Docker only that way; a sudo that asks gets the lab user's password, a fixture,
    /// from a shell builtin, so it is on no command line).
    pub fn compose_command(&self, host: &str) -> String {
        let h = self.host(host);
        let p = &h.profile;
        let compose = match p.compose {
            crate::docker::Compose::V2(_) => "docker compose",
            crate::docker::Compose::V1 => "docker-compose",
        };
        match p.access {
            crate::docker::Access::SudoNoPassword => format!("sudo -n {compose}"),
            crate::docker::Access::SudoPassword => {
                format!(
                    "printf '%s\\n' '{}' | sudo -k -S -p '' {compose}",
                    h.password
                )
            }
            _ => compose.to_string(),
        }
    }

    /// Removes every container, network and volume of the host's Docker Engine (as root on
    /// this machine, through the engine's socket).
    pub fn clear_docker(&self, host: &str) -> io::Result<()> {
        crate::docker::clear(self.host(host))
    }

    /// The host as new: its engine emptied ([`Lab::clear_docker`]) and its `~/wukongim` removed
    /// (with what Docker made there as root).
    pub fn clear_host(&self, host: &str) -> io::Result<()> {
        self.clear_docker(host)?;
        match std::fs::remove_dir_all(self.host(host).home.join("wukongim")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The host as a test wants it: [`Lab::clear_host`], and the simulator's test settings
    /// (`~/.config/wksim`) and the tests' scratch dirs (`~/t-*`) gone too.
    pub fn reset_host(&self, host: &str) -> io::Result<()> {
        self.clear_host(host)?;
        let home = &self.host(host).home;
        match std::fs::remove_dir_all(home.join(".config/wksim")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for e in std::fs::read_dir(home)?.flatten() {
            if e.file_name().to_string_lossy().starts_with("t-") {
                std::fs::remove_dir_all(e.path())?;
            }
        }
        Ok(())
    }

    /// The host's Docker CLI (as root on this machine, through the engine's socket).
    pub fn docker(&self, host: &str, args: &[&str]) -> io::Result<String> {
        crate::docker::docker(self.host(host), args)
    }

    /// Whether `path` exists on a lab host (as its user sees it; `~` is its home).
    pub fn exists(&self, host: &str, path: &str) -> io::Result<bool> {
        Ok(self.ssh(host, &format!("test -e {path}"))?.status.success())
    }

    /// Like [`Lab::ssh`], failing unless the command exits 0; returns its stdout.
    pub fn sh(&self, host: &str, command: &str) -> io::Result<String> {
        let out = self.ssh(host, command)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(io::Error::other(format!(
                "{host}: `{command}` failed ({:?}): {}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Writes a file on a host as its user (through ssh, so ownership is the user's).
    pub fn put(&self, host: &str, path: &str, content: &str) -> io::Result<()> {
        use std::io::Write;
        let mut child = self
            .ssh_command(
                host,
                &format!("mkdir -p \"$(dirname {path})\" && cat > {path}"),
            )?
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(content.as_bytes())?;
        let out = child.wait_with_output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{host}: writing {path}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// `wk-lab deploy-single HOST`: what the single-node document produces, started, and
    /// waited for: `/health` 200 and the node at status 3.
    pub fn deploy_single(&self, host: &str, o: &SingleNode) -> io::Result<()> {
        let ip = self.host(host).ip.clone();
        // A clean start: whatever ran there before is removed, its data too.
        self.clear_host(host)?;
        self.put(
            host,
            "~/wukongim/docker-compose.yml",
            &single_node_compose(&ip, o),
        )?;
        if o.with_prometheus {
            self.put(
                host,
                "~/wukongim/prometheus.yml",
                &single_node_prometheus(o),
            )?;
        }
        self.sh(
            host,
            &format!("cd ~/wukongim && {} up -d", self.compose_command(host)),
        )?;
        self.wait_joined(host, &ip, o.node_id, Duration::from_secs(60))
    }

    /// Waits until `ip`'s API answers /health 200 and lists `node_id` at status 3.
    pub fn wait_joined(
        &self,
        host: &str,
        ip: &str,
        node_id: u16,
        timeout: Duration,
    ) -> io::Result<()> {
        self.guard(ip)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let addr = format!("{ip}:5001");
            let health = rt.block_on(crate::http::get(
                &addr,
                "/health",
                &[],
                Duration::from_secs(2),
            ));
            let nodes = rt.block_on(crate::http::get(
                &addr,
                "/cluster/simpleNodes",
                &[],
                Duration::from_secs(2),
            ));
            if let (Ok((200, _)), Ok((200, body))) = (&health, &nodes) {
                let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let joined = v["data"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|n| n["id"] == node_id && n["status"] == 3));
                if joined {
                    return Ok(());
                }
                last = String::from_utf8_lossy(body).into_owned();
            } else {
                last = format!("{health:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(io::Error::other(format!(
            "{host}: node {node_id} did not reach status 3 within {} s; last: {last}",
            timeout.as_secs()
        )))
    }
}

impl Lab {
    /// A wkctl inventory for this lab: node1 is the gateway and seed, every `nodeN` a node.
    pub fn inventory(&self) -> String {
        let n1 = self.host("node1");
        let mut s = format!(
            "# The lab's cluster (made by `wk-lab inventory`): node1 runs the single-node deployment\n\
             # and becomes the gateway; the other nodes are there to be added.\n\
             cluster: lab\nssh:\n  identity_files: [{}]\n  known_hosts: {}\n  host_key_policy: strict\n\
             gateway:\n  node: node1\n  external_address: {}\nseed: node1\nnodes:\n",
            self.key().display(),
            self.known_hosts().display(),
            n1.ip
        );
        for (i, h) in self
            .hosts
            .iter()
            .filter(|h| h.name.starts_with("node"))
            .enumerate()
        {
            // 1001 on: WuKongIM's ids end at 1023, so the 24th node and after take 24 on.
            let id = if i < 23 { 1001 + i } else { i + 1 };
            s.push_str(&format!(
                "  - name: {}\n    id: {id}\n    internal_address: {}\n    ssh: {{ user: {} }}\n",
                h.name, h.ip, h.user
            ));
        }
        s
    }
}

/// The lab the tests share (`WKLAB_DIR`), with this build's simulator in its WuKongIM image and
/// `wk-lab` in its bin dir (checked once per test binary; rebuilt only when they changed). `Ok(None)` when no lab is up and `WKLAB_REQUIRED` is unset (the tests
/// then skip); an error when `WKLAB_REQUIRED` is set and there is none.
pub fn test_lab() -> Result<Option<Lab>, String> {
    static FRESH: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    match Lab::from_env() {
        Ok(l) => {
            FRESH
                .get_or_init(|| {
                    crate::install_bin(&l)
                        .and_then(|()| crate::docker::ensure_images(&l))
                        .map_err(|e| format!("cannot refresh the lab's binaries and images: {e}"))
                })
                .clone()?;
            Ok(Some(l))
        }
        Err(e) if std::env::var_os("WKLAB_REQUIRED").is_some() => Err(format!(
            "WKLAB_REQUIRED is set but no lab is up in {}: {e}",
            crate::lab_dir().display()
        )),
        Err(_) => Ok(None),
    }
}
