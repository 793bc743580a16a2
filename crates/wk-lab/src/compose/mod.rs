//! The lab's `docker compose` / `docker-compose`: reads the real compose file and runs the
//! WuKongIM simulator for the wukongim image, real nginx for the nginx image, real Prometheus for
//! the prometheus image. State lives in `~/.wk-compose/<project>/<service>/`: the definition's
//! hash, the supervisor's and the process's pid files, exit codes, restarts and the log.
//! Processes are ended by their pid files, never by name.

pub mod model;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model::{Kind, Project, Restart, Service};

const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// Which compose the stand-in plays: `docker compose` (v2) or `docker-compose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    V2,
    Hyphen,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

fn state_root(project: &str) -> PathBuf {
    home().join(".wk-compose").join(project)
}

fn svc_dir(project: &str, svc: &str) -> PathBuf {
    state_root(project).join(svc)
}

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn read_pid(p: &Path) -> Option<u32> {
    read(p)?.parse().ok()
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive: look at the state letter in /proc/<pid>/stat.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Signals a supervisor's whole process group (it leads one: `start` makes it so), which
/// holds the service's process too, even one spawned but not yet in the pid file.
fn signal_group(leader: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, "--", &format!("-{leader}")])
        .stderr(Stdio::null())
        .status();
}

fn container(project: &str, svc: &str) -> String {
    format!("{project}-{svc}-1")
}

fn say(msg: &str) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{msg}");
    }
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Where a named volume lives.
fn volume_path(project: &str, v: &model::Volume) -> PathBuf {
    match v.source.to_str().and_then(|s| s.strip_prefix("@volume/")) {
        Some(name) => state_root(project).join("volumes").join(name),
        None => v.source.clone(),
    }
}

/// Extra environment for simulators on this host (`~/.config/wksim/env`, `K=V` lines): how
/// tests switch on faults and shorten delays.
fn sim_overrides() -> Vec<(String, String)> {
    fs::read_to_string(home().join(".config/wksim/env"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The process a service runs, ready to spawn; `Err` when the container would fail to start.
fn service_command(project: &Project, s: &Service, dir: &Path) -> Result<Command, String> {
    let ports: String = s
        .ports
        .iter()
        .map(|p| format!("{}:{}", p.container, p.host))
        .collect::<Vec<_>>()
        .join(",");
    match s.kind {
        Kind::WuKongIM => {
            let data = s
                .volume_for("/root/wukongim")
                .map(|v| volume_path(&project.name, v))
                .unwrap_or_else(|| dir.join("container-data"));
            fs::create_dir_all(&data).map_err(|e| format!("mkdir {}: {e}", data.display()))?;
            let mut c = Command::new(sibling("wk-sim"));
            c.env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("HOME", home());
            for (k, v) in &s.environment {
                c.env(k, v);
            }
            c.env("WKSIM_DATA", &data)
                .env("WKSIM_PORTS", &ports)
                .env("WKSIM_APP_VERSION", model::image_tag(&s.image));
            for (k, v) in sim_overrides() {
                c.env(k, v);
            }
            Ok(c)
        }
        Kind::Nginx => {
            let conf = nginx_conf(project, s, dir)?;
            let mut c = Command::new("/usr/sbin/nginx");
            c.arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf)
                .args(["-g", "daemon off;"]);
            Ok(c)
        }
        Kind::Prometheus => {
            let cfg = s
                .volume_for("/etc/prometheus/prometheus.yml")
                .map(|v| volume_path(&project.name, v))
                .ok_or("the prometheus service mounts no /etc/prometheus/prometheus.yml")?;
            let check = Command::new("promtool")
                .args(["check", "config"])
                .arg(&cfg)
                .output()
                .map_err(|e| format!("promtool: {e}"))?;
            if !check.status.success() {
                return Err(format!(
                    "prometheus refuses {}: {}{}",
                    cfg.display(),
                    String::from_utf8_lossy(&check.stdout).trim(),
                    String::from_utf8_lossy(&check.stderr).trim()
                ));
            }
            let port = s.host_port(9090).unwrap_or(9090);
            let mut c = Command::new("prometheus");
            c.arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=0.0.0.0:{port}"));
            Ok(c)
        }
    }
}

/// Writes the lab's version of the service's nginx.conf and checks it with `nginx -t`.
fn nginx_conf(project: &Project, s: &Service, dir: &Path) -> Result<PathBuf, String> {
    let src = s
        .volume_for("/etc/nginx/nginx.conf")
        .map(|v| volume_path(&project.name, v))
        .ok_or("the nginx service mounts no /etc/nginx/nginx.conf")?;
    let text =
        fs::read_to_string(&src).map_err(|e| format!("nginx: open {}: {e}", src.display()))?;
    let ports: BTreeMap<u16, u16> = s.ports.iter().map(|p| (p.container, p.host)).collect();
    let module = Path::new(STREAM_MODULE);
    let lab = model::lab_nginx_conf(&text, &ports, dir, module.exists().then_some(module));
    for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        let _ = fs::create_dir_all(dir.join("tmp").join(t));
    }
    let conf = dir.join("nginx.conf");
    fs::write(&conf, lab).map_err(|e| e.to_string())?;
    let test = Command::new("/usr/sbin/nginx")
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .output()
        .map_err(|e| format!("nginx: {e}"))?;
    if !test.status.success() {
        return Err(format!(
            "nginx: [emerg] {} rejected:\n{}",
            src.display(),
            String::from_utf8_lossy(&test.stderr).trim()
        ));
    }
    Ok(conf)
}

// ---------------------------------------------------------------------------------------------
// The supervisor: one per running service, detached; runs the process and restarts it as the
// restart policy says.

pub fn supervise(project_file: &Path, project_name: &str, svc: &str) -> i32 {
    let dir = svc_dir(project_name, svc);
    let _ = fs::write(dir.join("supervisor.pid"), std::process::id().to_string());
    let mut restarts: u32 = 0;
    loop {
        if dir.join("stopped").exists() {
            break;
        }
        let project = match model::load(project_file, Some(project_name)) {
            Ok(p) => p,
            Err(e) => {
                log(&dir, &e);
                let _ = fs::write(dir.join("exit"), format!("1 {}", now()));
                break;
            }
        };
        let Some(s) = project.service(svc).cloned() else {
            break;
        };
        let started = now();
        let code = match service_command(&project, &s, &dir) {
            Err(e) => {
                log(&dir, &e);
                1
            }
            Ok(mut cmd) => {
                let logf = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("log"));
                let (out, err) = match logf {
                    Ok(f) => (Stdio::from(f.try_clone().expect("dup")), Stdio::from(f)),
                    Err(_) => (Stdio::null(), Stdio::null()),
                };
                match cmd
                    .current_dir(&project.dir)
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    .spawn()
                {
                    Err(e) => {
                        log(&dir, &format!("cannot start: {e}"));
                        127
                    }
                    Ok(mut child) => {
                        let _ = fs::write(dir.join("pid"), child.id().to_string());
                        let _ = fs::write(dir.join("started"), started.to_string());
                        let status = child.wait().ok();
                        remove_if_mine(&dir.join("pid"), child.id());
                        status.and_then(|s| s.code()).unwrap_or(137)
                    }
                }
            }
        };
        let _ = fs::write(dir.join("exit"), format!("{code} {}", now()));
        if dir.join("stopped").exists() {
            break;
        }
        let again = match s.restart {
            Restart::No => false,
            Restart::Always | Restart::UnlessStopped => true,
            Restart::OnFailure => code != 0,
        };
        if !again {
            break;
        }
        restarts += 1;
        let _ = fs::write(dir.join("restarts"), restarts.to_string());
        // Docker backs off too; a second keeps a crash loop visible without spinning.
        std::thread::sleep(Duration::from_millis(if now() - started < 10 {
            1000
        } else {
            100
        }));
    }
    remove_if_mine(&dir.join("supervisor.pid"), std::process::id());
    0
}

/// Removes a pid file only while it still names `pid`: a supervisor that ends late must not
/// remove the file of the one that replaced it.
fn remove_if_mine(file: &Path, pid: u32) {
    if read_pid(file) == Some(pid) {
        let _ = fs::remove_file(file);
    }
}

fn log(dir: &Path, msg: &str) {
    use std::io::Write;
    if let Ok(mut f) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
    {
        let _ = writeln!(f, "{msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// Commands.

#[derive(Debug, PartialEq, Eq)]
enum State {
    Running,
    Restarting,
    Exited(i32),
    Absent,
}

fn state_of(project: &str, svc: &str) -> State {
    let dir = svc_dir(project, svc);
    let sup = read_pid(&dir.join("supervisor.pid")).filter(|p| alive(*p));
    let child = read_pid(&dir.join("pid")).filter(|p| alive(*p));
    let exit: Option<i32> = read(&dir.join("exit"))
        .and_then(|s| s.split_whitespace().next().and_then(|c| c.parse().ok()));
    match (sup, child) {
        (_, Some(_)) => State::Running,
        (Some(_), None) => State::Restarting,
        (None, None) if dir.exists() => State::Exited(exit.unwrap_or(0)),
        _ => State::Absent,
    }
}

fn start(project: &Project, s: &Service) -> Result<(), String> {
    let dir = svc_dir(&project.name, &s.name);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = fs::remove_file(dir.join("stopped"));
    let _ = fs::remove_file(dir.join("exit"));
    let _ = fs::write(dir.join("restarts"), "0");
    fs::write(dir.join("hash"), &s.hash).map_err(|e| e.to_string())?;
    fs::write(dir.join("image"), &s.image).map_err(|e| e.to_string())?;
    fs::write(dir.join("created"), now().to_string()).map_err(|e| e.to_string())?;
    fs::write(dir.join("project"), project.file.display().to_string())
        .map_err(|e| e.to_string())?;
    use std::os::unix::process::CommandExt;
    Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("__supervise")
        .arg(&project.file)
        .arg(&project.name)
        .arg(&s.name)
        .current_dir(&project.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the supervisor: {e}"))?;
    // Give the process a moment, so a config the program rejects shows at once.
    for _ in 0..50 {
        if read_pid(&dir.join("pid")).is_some() || read(&dir.join("exit")).is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Stops a service: SIGTERM, up to 10 s, then SIGKILL; by pid files only.
fn stop(project: &str, svc: &str) {
    let dir = svc_dir(project, svc);
    if !dir.exists() {
        return;
    }
    let _ = fs::write(dir.join("stopped"), "1");
    let sup = read_pid(&dir.join("supervisor.pid"));
    if let Some(pid) = read_pid(&dir.join("pid")) {
        signal(pid, "TERM");
        for _ in 0..100 {
            if !alive(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(pid) {
            signal(pid, "KILL");
        }
    }
    if let Some(pid) = sup {
        for _ in 0..50 {
            if !alive(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still there: it may have spawned the process after the pid file was read (a restart
        // under way); its group goes with it, so nothing it started outlives it.
        if alive(pid) {
            signal_group(pid, "KILL");
        }
    }
    let _ = fs::remove_file(dir.join("pid"));
    let _ = fs::remove_file(dir.join("supervisor.pid"));
}

fn selected<'a>(project: &'a Project, names: &[String]) -> Result<Vec<&'a Service>, String> {
    if names.is_empty() {
        return Ok(project.services.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            project
                .service(n)
                .ok_or_else(|| format!("no such service: {n}"))
        })
        .collect()
}

fn health(s: &Service) -> Option<&'static str> {
    let (port, path) = s.health.as_ref()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let r = rt.block_on(crate::http::get(
        &format!("127.0.0.1:{port}"),
        path,
        &[],
        Duration::from_secs(2),
    ));
    Some(match r {
        Ok((200, _)) => "healthy",
        _ => "unhealthy",
    })
}

fn ago(secs: u64) -> String {
    match secs {
        0..=1 => "About a second".into(),
        2..=59 => format!("{secs} seconds"),
        60..=3599 => format!("{} minutes", secs / 60),
        _ => format!("{} hours", secs / 3600),
    }
}

fn ps(project: &Project, json: bool, all: bool) -> String {
    let mut out = String::new();
    if !json {
        out.push_str(&format!(
            "{:<28} {:<44} {:<12} {:<36} {}\n",
            "NAME", "IMAGE", "SERVICE", "STATUS", "PORTS"
        ));
    }
    // Services of the file and any other this project still runs.
    let mut names: Vec<String> = project.services.iter().map(|s| s.name.clone()).collect();
    for e in fs::read_dir(state_root(&project.name))
        .into_iter()
        .flatten()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n != "volumes" && !names.contains(&n) && e.path().join("hash").exists() {
            names.push(n);
        }
    }
    for name in names {
        let st = state_of(&project.name, &name);
        if st == State::Absent || (!all && matches!(st, State::Exited(_))) {
            continue;
        }
        let dir = svc_dir(&project.name, &name);
        let image = read(&dir.join("image")).unwrap_or_default();
        let svc = project.service(&name);
        let started = read(&dir.join("started"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(now());
        let exit_at: u64 = read(&dir.join("exit"))
            .and_then(|s| s.split_whitespace().nth(1).and_then(|t| t.parse().ok()))
            .unwrap_or(now());
        let restarts = read(&dir.join("restarts")).unwrap_or_else(|| "0".into());
        let h = if st == State::Running {
            svc.and_then(health)
        } else {
            None
        };
        let (state, status) = match &st {
            State::Running => (
                "running",
                format!(
                    "Up {}{}",
                    ago(now().saturating_sub(started)),
                    h.map(|h| format!(" ({h})")).unwrap_or_default()
                ),
            ),
            State::Restarting => {
                let code = read(&dir.join("exit"))
                    .and_then(|s| s.split_whitespace().next().map(str::to_string))
                    .unwrap_or_default();
                (
                    "restarting",
                    format!(
                        "Restarting ({code}) {} ago",
                        ago(now().saturating_sub(exit_at))
                    ),
                )
            }
            State::Exited(c) => (
                "exited",
                format!("Exited ({c}) {} ago", ago(now().saturating_sub(exit_at))),
            ),
            State::Absent => unreachable!(),
        };
        let ports = svc
            .map(|s| {
                s.ports
                    .iter()
                    .map(|p| format!("0.0.0.0:{}->{}/tcp", p.host, p.container))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        if json {
            let v = serde_json::json!({
                "Name": container(&project.name, &name), "Service": name, "Image": image, "State": state,
                "Status": status, "Health": h.unwrap_or(""), "RestartCount": restarts.parse::<u32>().unwrap_or(0),
                "ExitCode": match st { State::Exited(c) => c, _ => 0 },
                "Pid": read_pid(&dir.join("pid")).unwrap_or(0),
            });
            out.push_str(&v.to_string());
            out.push('\n');
        } else {
            out.push_str(&format!(
                "{:<28} {:<44} {:<12} {:<36} {}\n",
                container(&project.name, &name),
                image,
                name,
                status,
                ports
            ));
        }
    }
    out
}

fn usage(flavor: Flavor) -> i32 {
    let me = match flavor {
        Flavor::V2 => "docker compose",
        Flavor::Hyphen => "docker-compose",
    };
    say(&format!("usage: {me} [-f FILE] [-p NAME] config [-q] | up -d [SERVICE…] | stop | start | restart | down | ps [-a] [--format json] | kill [-s SIGNAL] [SERVICE…] | logs [SERVICE…] | exec SERVICE nginx -t|-s reload | version"));
    1
}

/// Runs one compose command line (without the `docker compose` / `docker-compose` words).
pub fn main(flavor: Flavor, args: &[String]) -> i32 {
    let mut file: Option<PathBuf> = None;
    let mut name: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-f" | "--file" => {
                file = args.get(i + 1).map(PathBuf::from);
                i += 2;
            }
            "-p" | "--project-name" => {
                name = args.get(i + 1).cloned();
                i += 2;
            }
            "--ansi" | "--progress" => i += 2,
            _ => break,
        }
    }
    let rest = &args[i.min(args.len())..];
    let Some(cmd) = rest.first() else {
        return usage(flavor);
    };
    let opts: Vec<String> = rest[1..].to_vec();
    if cmd == "version" || cmd == "--version" || cmd == "-v" {
        #[allow(clippy::print_stdout)]
        match flavor {
            Flavor::V2 => println!("Docker Compose version v2.29.7 (wk-lab stand-in)"),
            Flavor::Hyphen => println!("docker-compose version 1.29.2, build wk-lab stand-in"),
        }
        return 0;
    }
    let file = file.unwrap_or_else(|| {
        [
            "compose.yaml",
            "compose.yml",
            "docker-compose.yml",
            "docker-compose.yaml",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("docker-compose.yml"))
    });
    let file = std::env::current_dir()
        .map(|d| d.join(&file))
        .unwrap_or(file);
    let project = match model::load(&file, name.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            say(&e);
            return if cmd == "config" { 15 } else { 1 };
        }
    };
    let flags: Vec<&str> = opts
        .iter()
        .filter(|o| o.starts_with('-'))
        .map(String::as_str)
        .collect();
    let mut services: Vec<String> = Vec::new();
    let mut skip = false;
    for (k, o) in opts.iter().enumerate() {
        if skip {
            skip = false;
            continue;
        }
        if o == "-s" || o == "--signal" || o == "--format" || o == "-t" || o == "--timeout" {
            skip = true;
            continue;
        }
        if !o.starts_with('-') && k < opts.len() {
            services.push(o.clone());
        }
    }
    let print = |s: &str| {
        #[allow(clippy::print_stdout)]
        {
            print!("{s}");
        }
    };
    match cmd.as_str() {
        "config" => {
            if !flags.contains(&"-q") && !flags.contains(&"--quiet") {
                print(&fs::read_to_string(&project.file).unwrap_or_default());
            }
            0
        }
        "up" => {
            if !flags.contains(&"-d") && !flags.contains(&"--detach") {
                say("the lab's compose runs services detached only: use `up -d`");
                return 1;
            }
            let list = match selected(&project, &services) {
                Ok(l) => l,
                Err(e) => {
                    say(&e);
                    return 1;
                }
            };
            let mut code = 0;
            for s in list {
                let c = container(&project.name, &s.name);
                let dir = svc_dir(&project.name, &s.name);
                let same = read(&dir.join("hash")).as_deref() == Some(s.hash.as_str());
                let st = state_of(&project.name, &s.name);
                let verb = match (&st, same) {
                    (State::Running | State::Restarting, true) => {
                        say(&format!(" Container {c}  Running"));
                        continue;
                    }
                    (State::Running | State::Restarting, false) => {
                        stop(&project.name, &s.name);
                        "Recreated"
                    }
                    (State::Exited(_), true) => "Started",
                    (State::Exited(_), false) => "Recreated",
                    (State::Absent, _) => "Created",
                };
                match start(&project, s) {
                    Ok(()) => say(&format!(" Container {c}  {verb}")),
                    Err(e) => {
                        say(&format!(" Container {c}  Error: {e}"));
                        code = 1;
                    }
                }
            }
            code
        }
        "start" | "restart" => {
            let list = match selected(&project, &services) {
                Ok(l) => l,
                Err(e) => {
                    say(&e);
                    return 1;
                }
            };
            for s in list {
                let st = state_of(&project.name, &s.name);
                if cmd == "start" && st == State::Absent {
                    continue;
                }
                if cmd == "restart" {
                    stop(&project.name, &s.name);
                }
                if let Err(e) = start(&project, s) {
                    say(&e);
                    return 1;
                }
                say(&format!(
                    " Container {}  Started",
                    container(&project.name, &s.name)
                ));
            }
            0
        }
        "stop" => {
            for s in selected(&project, &services).unwrap_or_default() {
                if state_of(&project.name, &s.name) != State::Absent {
                    stop(&project.name, &s.name);
                    say(&format!(
                        " Container {}  Stopped",
                        container(&project.name, &s.name)
                    ));
                }
            }
            0
        }
        "rm" => {
            // `rm -s -f SERVICE…`: stop and remove those services.
            for s in &services {
                stop(&project.name, s);
                let _ = fs::remove_dir_all(svc_dir(&project.name, s));
                say(&format!(
                    " Container {}  Removed",
                    container(&project.name, s)
                ));
            }
            0
        }
        "down" => {
            for e in fs::read_dir(state_root(&project.name))
                .into_iter()
                .flatten()
                .flatten()
            {
                let n = e.file_name().to_string_lossy().into_owned();
                if n == "volumes" {
                    continue;
                }
                stop(&project.name, &n);
                let _ = fs::remove_dir_all(e.path());
                say(&format!(
                    " Container {}  Removed",
                    container(&project.name, &n)
                ));
            }
            0
        }
        "ps" => {
            let json = opts
                .windows(2)
                .any(|w| w[0] == "--format" && w[1] == "json");
            let all = flags.contains(&"-a") || flags.contains(&"--all");
            print(&ps(&project, json, all));
            0
        }
        "kill" => {
            let sig = opts
                .windows(2)
                .find(|w| w[0] == "-s" || w[0] == "--signal")
                .map(|w| w[1].trim_start_matches("SIG").to_string())
                .unwrap_or_else(|| "KILL".into());
            for s in selected(&project, &services).unwrap_or_default() {
                let dir = svc_dir(&project.name, &s.name);
                let Some(pid) = read_pid(&dir.join("pid")).filter(|p| alive(*p)) else {
                    continue;
                };
                // nginx reloads the file given by -c: map the operator's file again first, and
                // refuse (as nginx would) a configuration that does not pass `nginx -t`.
                if s.kind == Kind::Nginx && sig == "HUP" {
                    if let Err(e) = nginx_conf(&project, s, &dir) {
                        say(&e);
                        return 1;
                    }
                }
                signal(pid, &sig);
                say(&format!(
                    " Container {}  Killed",
                    container(&project.name, &s.name)
                ));
            }
            0
        }
        "exec" => {
            let Some(svc) = project.service(services.first().map(String::as_str).unwrap_or(""))
            else {
                say("exec: name a service");
                return 1;
            };
            let dir = svc_dir(&project.name, &svc.name);
            let words: Vec<&str> = opts
                .iter()
                .map(String::as_str)
                .skip_while(|w| *w != svc.name)
                .skip(1)
                .collect();
            match (svc.kind, words.as_slice()) {
                (Kind::Nginx, ["nginx", "-t"]) => match nginx_conf(&project, svc, &dir) {
                    Ok(_) => {
                        say("nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\nnginx: configuration file /etc/nginx/nginx.conf test is successful");
                        0
                    }
                    Err(e) => {
                        say(&e);
                        1
                    }
                },
                (Kind::Nginx, ["nginx", "-s", "reload"]) => main(
                    flavor,
                    &[
                        args[..i].to_vec(),
                        vec!["kill".into(), "-s".into(), "HUP".into(), svc.name.clone()],
                    ]
                    .concat(),
                ),
                _ => {
                    say("the lab's compose can exec only `nginx -t` and `nginx -s reload` in an nginx service");
                    1
                }
            }
        }
        "logs" => {
            for s in selected(&project, &services).unwrap_or_default() {
                print(
                    &fs::read_to_string(svc_dir(&project.name, &s.name).join("log"))
                        .unwrap_or_default(),
                );
            }
            0
        }
        _ => usage(flavor),
    }
}
