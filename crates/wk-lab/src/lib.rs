//! The lab: WuKongIM hosts on this machine, each a network namespace with its own address on a
//! bridge of ours, its own OpenSSH `sshd`, its own user and home.
//!
//! Everything the lab makes is recorded in `<dir>/lab.json` and removed by [`down`]: processes are
//! ended by pid (the pids `ip netns pids` lists for our namespaces, which only we started), then
//! the namespaces, veths, bridge, users and sudoers files go. `up` refuses a subnet that overlaps
//! a route of the machine, and [`Lab::guard`] tells whether an address is a lab address on the lab
//! bridge: tests call it before they connect anywhere.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod deploy;
pub mod docker;
pub mod http;
pub mod sim;

use serde::{Deserialize, Serialize};

/// Where the lab lives unless `WKLAB_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/tmp/wk-lab";
/// The first three octets of the lab's /24 unless `WKLAB_SUBNET` says otherwise.
pub const DEFAULT_SUBNET: &str = "10.251.0";
/// Names of the lab's bridge, namespaces, veths and users start with this unless told otherwise.
pub const DEFAULT_PREFIX: &str = "wklab";
/// The passphrase of the lab's encrypted client key (a test fixture, not a secret).
pub const KEY_PASSPHRASE: &str = "lab key passphrase";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabHost {
    pub name: String,
    pub netns: String,
    pub veth: String,
    pub ip: String,
    pub user: String,
    pub home: PathBuf,
    /// The user's login and sudo password (a generated lab fixture).
    pub password: String,
    pub dir: PathBuf,
    /// The host's ed25519 public key line (`ssh-ed25519 AAAA…`).
    pub host_key: String,
    /// Its compose and how its user reaches Docker.
    #[serde(default)]
    pub profile: docker::Profile,
}

impl LabHost {
    pub fn sshd_config(&self) -> PathBuf {
        self.dir.join("sshd_config")
    }
    pub fn sshd_pid_file(&self) -> PathBuf {
        self.dir.join("sshd.pid")
    }
    pub fn sshd_log(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lab {
    pub dir: PathBuf,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    pub bridge: String,
    pub subnet: String,
    /// The bridge's own address: where the "laptop" (this machine) is on the lab network.
    pub bridge_ip: String,
    pub hosts: Vec<LabHost>,
}

/// Client-side files of the lab, under `<dir>/client/`.
impl Lab {
    pub fn client_dir(&self) -> PathBuf {
        self.dir.join("client")
    }
    /// Authorized on every host, no passphrase.
    pub fn key(&self) -> PathBuf {
        self.client_dir().join("id_ed25519")
    }
    /// Authorized on every host, encrypted with [`KEY_PASSPHRASE`].
    pub fn key_with_passphrase(&self) -> PathBuf {
        self.client_dir().join("id_ed25519_pass")
    }
    /// Authorized on every host: RSA, for SHA-2 signatures.
    pub fn rsa_key(&self) -> PathBuf {
        self.client_dir().join("id_rsa")
    }
    /// Authorized on every host: ECDSA P-256.
    pub fn ecdsa_key(&self) -> PathBuf {
        self.client_dir().join("id_ecdsa")
    }
    /// Authorized nowhere.
    pub fn stranger_key(&self) -> PathBuf {
        self.client_dir().join("id_stranger")
    }
    /// Every host's ed25519 key, by address.
    pub fn known_hosts(&self) -> PathBuf {
        self.client_dir().join("known_hosts")
    }
    /// The simulator (built into the WuKongIM image) and `wk-lab` (the engines' OCI runtime
    /// wrapper calls it).
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }
    /// `Host <name>` entries with HostName and User for every host.
    pub fn ssh_config(&self) -> PathBuf {
        self.client_dir().join("ssh_config")
    }

    pub fn host(&self, name: &str) -> &LabHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("the lab has no host {name}"))
    }

    /// The lab described by `<dir>/lab.json`.
    pub fn load(dir: &Path) -> io::Result<Lab> {
        let text = fs::read_to_string(dir.join("lab.json"))?;
        serde_json::from_str(&text).map_err(io::Error::other)
    }

    /// The lab `WKLAB_DIR` (or the default dir) holds, if it is up.
    pub fn from_env() -> io::Result<Lab> {
        Lab::load(&lab_dir())
    }

    /// Refuses any address that is not a lab host's on the lab bridge. Call before connecting.
    pub fn guard(&self, ip: &str) -> io::Result<()> {
        if !self.hosts.iter().any(|h| h.ip == ip) {
            return Err(io::Error::other(format!(
                "{ip} is not a lab address: refusing to send anything there"
            )));
        }
        let route = output(Command::new("ip").args(["route", "get", ip]))?;
        if !route
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w == ["dev", self.bridge.as_str()])
        {
            return Err(io::Error::other(format!(
                "{ip} is not routed through the lab bridge {} ({}): refusing to send anything there",
                self.bridge,
                route.trim()
            )));
        }
        Ok(())
    }

    /// Pids living in a host's namespace (sshd and everything it started).
    pub fn pids(&self, host: &LabHost) -> Vec<u32> {
        netns_pids(&host.netns)
    }

    /// Starts the host's sshd (if its pid file does not name a live sshd).
    pub fn start_sshd(&self, host: &LabHost) -> io::Result<()> {
        if let Some(pid) = read_pid(&host.sshd_pid_file()) {
            if Path::new(&format!("/proc/{pid}")).exists() {
                return Ok(());
            }
        }
        fs::create_dir_all("/run/sshd")?;
        // sshd writes its pid file once it listens; on a loaded machine that takes seconds. One
        // that exits before (its log says why) is started once more.
        for _attempt in 0..2 {
            run(Command::new("ip")
                .args(["netns", "exec", &host.netns, "/usr/sbin/sshd", "-f"])
                .arg(host.sshd_config())
                .arg("-E")
                .arg(host.sshd_log()))?;
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_secs(15) {
                if read_pid(&host.sshd_pid_file()).is_some() {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Err(io::Error::other(format!(
            "sshd of {} did not start; see {}",
            host.name,
            host.sshd_log().display()
        )))
    }

    /// Kills every sshd process of the host (the listener and every session, by the pids its
    /// namespace lists): as when sshd crashes or is restarted without care, open connections
    /// drop. [`Lab::start_sshd`] brings the listener back.
    pub fn kill_sshd(&self, host: &LabHost) -> io::Result<()> {
        let mut killed = Vec::new();
        for pid in self.pids(host) {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim().starts_with("sshd") {
                kill(pid);
                killed.push(pid);
            }
        }
        // Gone (or a zombie, its sockets closed) before a new listener may bind the port.
        let alive = |pid: &u32| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
        };
        let t = std::time::Instant::now();
        while killed.iter().any(alive) && t.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = fs::remove_file(host.sshd_pid_file());
        Ok(())
    }

    /// Takes the host's link to the lab bridge down (or up again): packets to and from the host
    /// are dropped, as with a pulled cable; nothing is told to either end.
    pub fn set_link(&self, host: &LabHost, up: bool) -> io::Result<()> {
        run(Command::new("ip").args(["link", "set", &host.veth, if up { "up" } else { "down" }]))
    }

    /// Makes `ip` unreachable from inside the host (a `prohibit` route in its namespace), or
    /// reachable again: as a firewall between two nodes would.
    pub fn block_from(&self, host: &LabHost, ip: &str, blocked: bool) -> io::Result<()> {
        self.guard(ip)?;
        run(Command::new("ip").args([
            "-n",
            &host.netns,
            "route",
            if blocked { "add" } else { "del" },
            "prohibit",
            &format!("{ip}/32"),
        ]))
    }

    /// Ends the host's sshd listener by its pid file (its sessions go on, as with real sshd).
    pub fn stop_sshd(&self, host: &LabHost) -> io::Result<()> {
        if let Some(pid) = read_pid(&host.sshd_pid_file()) {
            kill(pid);
            let _ = fs::remove_file(host.sshd_pid_file());
        }
        Ok(())
    }
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.into()
}

/// The lab directory: `WKLAB_DIR`, or [`DEFAULT_DIR`].
pub fn lab_dir() -> PathBuf {
    std::env::var_os("WKLAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

pub(crate) fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::other(format!("{cmd:?}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn output(cmd: &mut Command) -> io::Result<String> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::other(format!("{cmd:?}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub(crate) fn read_pid(p: &Path) -> Option<u32> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn kill(pid: u32) {
    // Gone already (it ended between the listing and now) is fine.
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

fn netns_pids(ns: &str) -> Vec<u32> {
    output(Command::new("ip").args(["netns", "pids", ns]))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn random_password() -> io::Result<String> {
    let mut buf = [0u8; 12];
    use std::io::Read;
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Does `a.b.c.0/24` overlap a route of this machine (other than our own bridge's)?
fn overlapping_route(subnet: &str, bridge: &str) -> io::Result<Option<String>> {
    let ours: Vec<u8> = subnet.split('.').filter_map(|o| o.parse().ok()).collect();
    if ours.len() != 3 {
        return Err(io::Error::other(format!(
            "WKLAB_SUBNET `{subnet}` is not three octets like 10.251.0"
        )));
    }
    let net = u32::from_be_bytes([ours[0], ours[1], ours[2], 0]);
    for line in output(Command::new("ip").args(["-4", "route", "show"]))?.lines() {
        let mut f = line.split_whitespace();
        let Some(prefix) = f.next() else { continue };
        if prefix == "default"
            || line
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["dev", bridge])
        {
            continue;
        }
        let (addr, len) = prefix.split_once('/').unwrap_or((prefix, "32"));
        let (Ok(addr), Ok(len)) = (addr.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) else {
            continue;
        };
        let a = u32::from(addr);
        let len = len.min(32);
        let common = len.min(24);
        let mask = if common == 0 {
            0
        } else {
            u32::MAX << (32 - common)
        };
        if a & mask == net & mask {
            return Ok(Some(line.to_string()));
        }
    }
    Ok(None)
}

/// Options of [`up`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dir: PathBuf,
    pub subnet: String,
    /// Prefix of every name the lab gives (at most 6 characters: interface names are short).
    pub prefix: String,
    /// Host names; each gets the next address from `.11` on.
    pub hosts: Vec<String>,
}

impl UpOptions {
    /// `node1`…`nodeN`, a `bastion` and the fleet's odd hosts `mix1`…`mix4` (see
    /// [`docker::Profile::for_host`]), in `WKLAB_DIR` and `WKLAB_SUBNET` (or the defaults).
    pub fn nodes(n: usize) -> UpOptions {
        let mut hosts: Vec<String> = (1..=n).map(|i| format!("node{i}")).collect();
        hosts.push("bastion".into());
        hosts.extend((1..=4).map(|i| format!("mix{i}")));
        UpOptions {
            dir: lab_dir(),
            subnet: std::env::var("WKLAB_SUBNET").unwrap_or_else(|_| DEFAULT_SUBNET.into()),
            prefix: DEFAULT_PREFIX.into(),
            hosts,
        }
    }
}

/// Brings the lab up. Idempotent: the same lab already up is kept as it is (its sshds started
/// if one was stopped); a different or half-made one in the same dir is torn down and rebuilt.
#[allow(
    clippy::too_many_lines,
    reason = "the lab's bring-up, in the order it must happen"
)]
pub fn up(opts: &UpOptions) -> io::Result<Lab> {
    if let Ok(existing) = Lab::load(&opts.dir) {
        let names: Vec<&str> = existing.hosts.iter().map(|h| h.name.as_str()).collect();
        let wanted: Vec<&str> = opts.hosts.iter().map(String::as_str).collect();
        let complete = existing.known_hosts().exists()
            && existing.hosts.iter().all(|h| netns_exists(&h.netns));
        if complete
            && names == wanted
            && existing.subnet == opts.subnet
            && existing.prefix == opts.prefix
        {
            // A test that stopped half way may have left a fault behind: links up, routes that
            // block other hosts gone, sshd running.
            for h in &existing.hosts {
                existing.set_link(h, true)?;
                run(
                    Command::new("ip").args(["-n", &h.netns, "route", "flush", "type", "prohibit"])
                )?;
                existing.start_sshd(h)?;
                // A test's "daemon not running" fault: its socket moved aside.
                let away = h.docker_socket().with_extension("sock.away");
                if away.exists() {
                    fs::rename(&away, h.docker_socket())?;
                }
                docker::spawn(h)?;
            }
            for h in &existing.hosts {
                docker::wait_ready(h)?;
            }
            install_bin(&existing)?;
            docker::ensure_images(&existing)?;
            return Ok(existing);
        }
        down(&opts.dir)?;
    }
    if opts.prefix.is_empty()
        || opts.prefix.len() > 6
        || !opts.prefix.chars().all(|c| c.is_ascii_lowercase())
    {
        return Err(io::Error::other(format!(
            "lab prefix `{}` must be 1 to 6 lowercase letters",
            opts.prefix
        )));
    }
    let bridge = format!("{}0", opts.prefix);
    if let Some(route) = overlapping_route(&opts.subnet, &bridge)? {
        return Err(io::Error::other(format!(
            "the lab subnet {}.0/24 overlaps a route of this machine ({route}); set WKLAB_SUBNET to a free /24 like 10.251.7",
            opts.subnet
        )));
    }
    fs::create_dir_all(&opts.dir)?;
    fs::set_permissions(&opts.dir, fs::Permissions::from_mode(0o755))?;
    let bridge_ip = format!("{}.1", opts.subnet);
    let mut lab = Lab {
        dir: opts.dir.clone(),
        prefix: opts.prefix.clone(),
        bridge: bridge.clone(),
        subnet: opts.subnet.clone(),
        bridge_ip: bridge_ip.clone(),
        hosts: Vec::new(),
    };
    // Record the lab before making anything, so a failure half way can still be torn down.
    save(&lab)?;

    run(Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]))?;
    run(Command::new("ip").args(["addr", "add", &format!("{bridge_ip}/24"), "dev", &bridge]))?;
    run(Command::new("ip").args(["link", "set", &bridge, "up"]))?;

    install_bin(&lab)?;
    let client = lab.client_dir();
    fs::create_dir_all(&client)?;
    fs::set_permissions(&client, fs::Permissions::from_mode(0o700))?;
    keygen(&lab.key(), "ed25519", "")?;
    keygen(&lab.key_with_passphrase(), "ed25519", KEY_PASSPHRASE)?;
    keygen(&lab.rsa_key(), "rsa", "")?;
    keygen(&lab.ecdsa_key(), "ecdsa", "")?;
    keygen(&lab.stranger_key(), "ed25519", "")?;
    let mut authorized = String::new();
    for k in [
        lab.key(),
        lab.key_with_passphrase(),
        lab.rsa_key(),
        lab.ecdsa_key(),
    ] {
        authorized.push_str(&fs::read_to_string(k.with_extension("pub"))?);
    }

    let mut known_hosts = String::new();
    let mut ssh_config = String::new();
    for (i, name) in opts.hosts.iter().enumerate() {
        let h = make_host(&lab, name, i, &authorized)?;
        known_hosts.push_str(&format!("{} {}\n", h.ip, h.host_key));
        ssh_config.push_str(&format!(
            "Host {}\n  HostName {}\n  User {}\n\n",
            h.name, h.ip, h.user
        ));
        lab.hosts.push(h);
        save(&lab)?;
        let h = lab.hosts.last().expect("just pushed");
        lab.start_sshd(h)?;
        docker::prepare(&lab, h)?;
        docker::spawn(h)?;
    }
    fs::write(lab.known_hosts(), known_hosts)?;
    fs::write(lab.ssh_config(), ssh_config)?;
    save(&lab)?;
    for h in &lab.hosts {
        docker::wait_ready(h)?;
    }
    docker::ensure_images(&lab)?;
    Ok(lab)
}

/// Finds a binary of this workspace next to the running one (or one level up, for test
/// binaries in `target/<profile>/deps`).
pub fn workspace_binary(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dirs = Vec::new();
    if let Some(d) = exe.parent() {
        dirs.push(d.to_path_buf());
        if let Some(up) = d.parent() {
            dirs.push(up.to_path_buf());
        }
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            io::Error::other(format!(
                "{name} is not built next to {}: run `cargo build -p wk-lab`",
                exe.display()
            ))
        })
}

/// Copies the simulator and `wk-lab` (as built next to the running binary) into the lab.
pub fn install_bin(lab: &Lab) -> io::Result<()> {
    let bin = lab.bin_dir();
    fs::create_dir_all(&bin)?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
    for name in ["wk-sim", "wk-lab"] {
        let dst = bin.join(name);
        // Replace by rename: a running copy keeps its file.
        let tmp = bin.join(format!(".{name}.new"));
        fs::copy(workspace_binary(name)?, &tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, &dst)?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn keygen(path: &Path, kind: &str, passphrase: &str) -> io::Result<()> {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", "wk-lab", "-f"])
        .arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "3072"]);
    }
    run(&mut cmd)
}

fn make_host(lab: &Lab, name: &str, index: usize, authorized: &str) -> io::Result<LabHost> {
    let ip = format!("{}.{}", lab.subnet, 11 + index);
    let p = &lab.prefix;
    let netns = format!("{p}-{name}");
    let veth = format!("{p}v{index}");
    let user = format!("{p}-{name}");
    let dir = lab.dir.join("hosts").join(name);
    let home = lab.dir.join("home").join(name);
    let profile = docker::Profile::for_host(name);
    fs::create_dir_all(&dir)?;
    fs::create_dir_all(home.parent().expect("has parent"))?;

    // Network: a namespace whose eth0 is one end of a veth, the other end on our bridge.
    run(Command::new("ip").args(["netns", "add", &netns]))?;
    run(Command::new("ip").args([
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
    ]))?;
    run(Command::new("ip").args(["link", "set", &veth, "master", &lab.bridge]))?;
    run(Command::new("ip").args(["link", "set", &veth, "up"]))?;
    run(Command::new("ip").args([
        "-n",
        &netns,
        "addr",
        "add",
        &format!("{ip}/24"),
        "dev",
        "eth0",
    ]))?;
    run(Command::new("ip").args(["-n", &netns, "link", "set", "eth0", "up"]))?;
    run(Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]))?;

    // The user, with a home of its own and a password for password and sudo tests.
    let _ = Command::new("userdel").arg(&user).output();
    run(Command::new("useradd")
        .args(["-M", "-s", "/bin/sh", "-d"])
        .arg(&home)
        .arg(&user))?;
    let password = random_password()?;
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("echo '{user}:{password}' | chpasswd")))?;
    let ssh_dir = home.join(".ssh");
    fs::create_dir_all(&ssh_dir)?;
    fs::write(ssh_dir.join("authorized_keys"), authorized)?;
    fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700))?;
    fs::set_permissions(
        ssh_dir.join("authorized_keys"),
        fs::Permissions::from_mode(0o600),
    )?;
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755))?;
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:{user}"))
        .arg(&home))?;
    // sudo for the lab user as its profile says; sudo keeps the session's way to its engine.
    let sudoers = sudoers_file(&user);
    let _ = fs::remove_file(&sudoers);
    if let Some(rule) = profile.sudo_rule(&user) {
        fs::write(
            &sudoers,
            format!("Defaults:{user} env_keep += \"DOCKER_HOST DOCKER_CONFIG\"\n{rule}\n"),
        )?;
        fs::set_permissions(&sudoers, fs::Permissions::from_mode(0o440))?;
    }

    // sshd: its own host keys, config, pid file and log, listening on the host's address only.
    for kind in ["ed25519", "ecdsa", "rsa"] {
        keygen(&dir.join(format!("ssh_host_{kind}_key")), kind, "")?;
    }
    let host_key = fs::read_to_string(dir.join("ssh_host_ed25519_key.pub"))?;
    let host_key = host_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let d = dir.display();
    let host = LabHost {
        name: name.to_string(),
        netns,
        veth,
        ip: ip.clone(),
        user: user.clone(),
        home,
        password,
        dir: dir.clone(),
        host_key,
        profile,
    };
    let set_env: String = docker::session_env(&host)
        .iter()
        .map(|(k, v)| format!(" {k}={v}"))
        .collect();
    fs::write(
        dir.join("sshd_config"),
        format!(
            "ListenAddress {ip}:22\n\
             HostKey {d}/ssh_host_ed25519_key\nHostKey {d}/ssh_host_ecdsa_key\nHostKey {d}/ssh_host_rsa_key\n\
             PidFile {d}/sshd.pid\n\
             AllowUsers {user}\n\
             PermitRootLogin no\n\
             PubkeyAuthentication yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication yes\nUsePAM yes\n\
             AllowTcpForwarding yes\nX11Forwarding no\nPrintMotd no\n\
             MaxSessions 64\nMaxStartups 64\n\
             SetEnv{set_env}\n\
             LogLevel VERBOSE\n"
        ),
    )?;
    Ok(host)
}

fn sudoers_file(user: &str) -> PathBuf {
    PathBuf::from("/etc/sudoers.d").join(user.replace('.', "_"))
}

fn save(lab: &Lab) -> io::Result<()> {
    let p = lab.dir.join("lab.json");
    let tmp = lab.dir.join(".lab.json.tmp");
    fs::write(
        &tmp,
        serde_json::to_vec_pretty(lab).map_err(io::Error::other)?,
    )?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(tmp, p)
}

/// Tears the lab in `dir` down: every process in our namespaces (by pid), the namespaces, veths,
/// bridge, users, sudoers files and the directory. Safe to run twice, or on a half-made lab.
pub fn down(dir: &Path) -> io::Result<()> {
    let lab = match Lab::load(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // The engines and their containers first (their processes live in namespaces of their own).
    docker::stop(&lab.hosts);
    for h in &lab.hosts {
        // sshd's session processes outlive the listener and keep the namespace alive: end all.
        for _ in 0..50 {
            let pids = netns_pids(&h.netns);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                kill(pid);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = Command::new("ip").args(["netns", "del", &h.netns]).output();
        let _ = Command::new("ip").args(["link", "del", &h.veth]).output();
        let _ = Command::new("userdel").arg(&h.user).output();
        let _ = fs::remove_file(sudoers_file(&h.user));
    }
    let _ = Command::new("ip")
        .args(["link", "del", &lab.bridge])
        .output();
    // Whatever is left of a host whose entry was not saved yet.
    for entry in fs::read_dir(lab.dir.join("hosts"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ns = format!("{}-{name}", lab.prefix);
        for pid in netns_pids(&ns) {
            kill(pid);
        }
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("userdel").arg(&ns).output();
        let _ = fs::remove_file(sudoers_file(&ns));
    }
    docker::unmount_below(&lab.dir);
    fs::remove_dir_all(&lab.dir)?;
    // Check it is really gone.
    let left: Vec<String> = lab
        .hosts
        .iter()
        .filter(|h| netns_exists(&h.netns))
        .map(|h| h.netns.clone())
        .collect();
    if !left.is_empty() {
        return Err(io::Error::other(format!(
            "namespaces still present after teardown: {}",
            left.join(", ")
        )));
    }
    Ok(())
}

fn netns_exists(ns: &str) -> bool {
    output(Command::new("ip").args(["netns", "list"]))
        .map(|s| s.lines().any(|l| l.split_whitespace().next() == Some(ns)))
        .unwrap_or(false)
}
