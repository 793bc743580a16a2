//! The compose file as the stand-in reads it: an order-keeping YAML value, then services checked
//! the way Compose checks them (unknown keys, bad ports, missing images are errors).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use wk_compose::value::Yaml;

/// What a service runs, by its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    WuKongIM,
    Nginx,
    Prometheus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    Always,
    OnFailure,
    UnlessStopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub host: u16,
    pub container: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The host path (relative sources resolved against the project directory).
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub kind: Kind,
    pub environment: Vec<(String, String)>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Volume>,
    pub restart: Restart,
    /// `(host port, path)` of an HTTP health check (`http://localhost:PORT/PATH` in the test).
    pub health: Option<(u16, String)>,
    /// A hash of the service's definition: a changed one is recreated by `up`.
    pub hash: String,
}

impl Service {
    pub fn host_port(&self, container: u16) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.container == container)
            .map(|p| p.host)
    }
    pub fn volume_for(&self, target: &str) -> Option<&Volume> {
        self.volumes
            .iter()
            .find(|v| v.target.trim_end_matches('/') == target)
    }
}

#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
    pub file: PathBuf,
    pub services: Vec<Service>,
}

impl Project {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

const TOP_KEYS: [&str; 7] = [
    "version", "services", "volumes", "networks", "configs", "secrets", "name",
];
const SERVICE_KEYS: [&str; 22] = [
    "image",
    "environment",
    "ports",
    "volumes",
    "restart",
    "healthcheck",
    "command",
    "container_name",
    "depends_on",
    "networks",
    "logging",
    "labels",
    "ulimits",
    "entrypoint",
    "working_dir",
    "user",
    "hostname",
    "extra_hosts",
    "deploy",
    "stop_grace_period",
    "privileged",
    "network_mode",
];

pub fn kind_of(image: &str) -> Option<Kind> {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    match repo.rsplit('/').next().unwrap_or(repo) {
        "wukongim" => Some(Kind::WuKongIM),
        "nginx" => Some(Kind::Nginx),
        "prometheus" => Some(Kind::Prometheus),
        _ => None,
    }
}

/// The tag of an image reference (`latest` when none).
pub fn image_tag(image: &str) -> String {
    match image.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag.to_string(),
        _ => "latest".into(),
    }
}

fn parse_port(s: &str) -> Result<Port, String> {
    let s = s.trim().trim_end_matches("/tcp");
    if s.ends_with("/udp") {
        return Err(format!("port {s}: udp is not supported by the lab"));
    }
    let parts: Vec<&str> = s.split(':').collect();
    let num = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("invalid port \"{s}\""))
    };
    match parts.as_slice() {
        [c] => Ok(Port {
            host: num(c)?,
            container: num(c)?,
        }),
        [h, c] => Ok(Port {
            host: num(h)?,
            container: num(c)?,
        }),
        [_ip, h, c] => Ok(Port {
            host: num(h)?,
            container: num(c)?,
        }),
        _ => Err(format!("invalid port \"{s}\"")),
    }
}

/// Reads and checks a compose file. Errors read like Compose's own.
pub fn load(file: &Path, project_name: Option<&str>) -> Result<Project, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("open {}: {e}", file.display()))?;
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = dir.canonicalize().unwrap_or(dir);
    let name = project_name
        .map(str::to_string)
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_else(|| "default".into())
        })
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect::<String>();
    parse(&text, &dir, &name, file)
}

pub fn parse(text: &str, dir: &Path, name: &str, file: &Path) -> Result<Project, String> {
    let at = file.display();
    let doc: Yaml = serde_saphyr::from_str(text)
        .map_err(|e| format!("parsing {at}: {}", e.without_snippet()))?;
    let Yaml::Map(top) = &doc else {
        return Err(format!(
            "validating {at}: top-level object must be a mapping"
        ));
    };
    for (k, _) in top {
        if !TOP_KEYS.contains(&k.as_str()) && !k.starts_with("x-") {
            return Err(format!(
                "validating {at}: (root) additional properties '{k}' not allowed"
            ));
        }
    }
    let Some(Yaml::Map(services)) = doc.get("services") else {
        return Err(format!("validating {at}: services must be a mapping"));
    };
    if services.is_empty() {
        return Err(format!("{at}: no service selected"));
    }
    let mut out = Vec::new();
    for (sname, def) in services {
        let here = |m: String| format!("validating {at}: services.{sname}{m}");
        let Yaml::Map(fields) = def else {
            return Err(here(" must be a mapping".into()));
        };
        for (k, _) in fields {
            if !SERVICE_KEYS.contains(&k.as_str()) && !k.starts_with("x-") {
                let why = if k == "build" || k == "env_file" {
                    " (the lab runs images, it does not build or read env files)"
                } else {
                    ""
                };
                return Err(here(format!(
                    " additional properties '{k}' not allowed{why}"
                )));
            }
        }
        let image = def
            .get("image")
            .and_then(Yaml::scalar)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("service \"{sname}\" has neither an image nor a build context specified: invalid compose project"))?;
        let kind = kind_of(&image).ok_or_else(|| format!("service \"{sname}\": image {image} is not one the lab can run (wukongim, nginx, prometheus)"))?;
        let mut environment = Vec::new();
        match def.get("environment") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Seq(items)) => {
                for it in items {
                    let s = it
                        .scalar()
                        .ok_or_else(|| here(".environment must be a list of strings".into()))?;
                    match s.split_once('=') {
                        Some((k, v)) => environment.push((k.to_string(), v.to_string())),
                        None => {
                            environment.push((s.clone(), std::env::var(&s).unwrap_or_default()))
                        }
                    }
                }
            }
            Some(Yaml::Map(m)) => {
                for (k, v) in m {
                    let v = v.scalar().ok_or_else(|| {
                        here(format!(
                            ".environment.{k} must be a string, number, boolean or null"
                        ))
                    })?;
                    environment.push((k.clone(), v));
                }
            }
            Some(_) => return Err(here(".environment must be a mapping or a list".into())),
        }
        let mut ports = Vec::new();
        match def.get("ports") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Seq(items)) => {
                for it in items {
                    let p = match it {
                        Yaml::Map(_) => {
                            let target =
                                it.get("target").and_then(Yaml::scalar).unwrap_or_default();
                            let published = it
                                .get("published")
                                .and_then(Yaml::scalar)
                                .unwrap_or_else(|| target.clone());
                            parse_port(&format!("{published}:{target}"))
                        }
                        other => parse_port(&other.scalar().unwrap_or_default()),
                    }
                    .map_err(|e| here(format!(".ports: {e}")))?;
                    if ports.iter().any(|q: &Port| q.host == p.host) {
                        return Err(here(format!(
                            ".ports: host port {} is published twice",
                            p.host
                        )));
                    }
                    ports.push(p);
                }
            }
            Some(_) => return Err(here(".ports must be a list".into())),
        }
        let mut volumes = Vec::new();
        match def.get("volumes") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Seq(items)) => {
                for it in items {
                    let s = it.scalar().ok_or_else(|| {
                        here(".volumes: only the short syntax is supported by the lab".into())
                    })?;
                    let parts: Vec<&str> = s.split(':').collect();
                    let (src, dst, mode) = match parts.as_slice() {
                        [src, dst] => (*src, *dst, ""),
                        [src, dst, mode] => (*src, *dst, *mode),
                        _ => return Err(here(format!(".volumes: invalid spec: {s}"))),
                    };
                    if !dst.starts_with('/') {
                        return Err(here(format!(
                            ".volumes: invalid mount path {dst}: it must be absolute"
                        )));
                    }
                    let source = if src.starts_with('/') {
                        PathBuf::from(src)
                    } else if let Some(rest) = src.strip_prefix("~/") {
                        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest)
                    } else if src.starts_with('.') {
                        dir.join(src)
                    } else {
                        // A named volume: kept under the project's state.
                        PathBuf::from(format!("@volume/{src}"))
                    };
                    volumes.push(Volume {
                        source,
                        target: dst.to_string(),
                        read_only: mode.split(',').any(|m| m == "ro"),
                    });
                }
            }
            Some(_) => return Err(here(".volumes must be a list".into())),
        }
        let restart = match def.get("restart").and_then(Yaml::scalar).as_deref() {
            None | Some("no") | Some("") => Restart::No,
            Some("always") => Restart::Always,
            Some("unless-stopped") => Restart::UnlessStopped,
            Some(r) if r == "on-failure" || r.starts_with("on-failure:") => Restart::OnFailure,
            Some(r) => return Err(here(format!(".restart: invalid restart policy \"{r}\""))),
        };
        let health = def
            .get("healthcheck")
            .and_then(|h| h.get("test"))
            .and_then(|t| {
                let text = match t {
                    Yaml::Seq(s) => s
                        .iter()
                        .filter_map(Yaml::scalar)
                        .collect::<Vec<_>>()
                        .join(" "),
                    other => other.scalar().unwrap_or_default(),
                };
                let url = text.split_whitespace().find(|w| {
                    w.starts_with("http://localhost:") || w.starts_with("http://127.0.0.1:")
                })?;
                let rest = url.split_once("://").map(|x| x.1).unwrap_or("");
                let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
                let port: u16 = hostport.rsplit(':').next()?.parse().ok()?;
                Some((port, format!("/{path}")))
            });
        let health = health.map(|(container, path)| {
            (
                ports
                    .iter()
                    .find(|p| p.container == container)
                    .map(|p| p.host)
                    .unwrap_or(container),
                path,
            )
        });
        let mut canon = String::new();
        def.canonical(&mut canon);
        let hash = {
            use sha1::Digest;
            let d = sha1::Sha1::digest(canon.as_bytes());
            d.iter().take(8).map(|b| format!("{b:02x}")).collect()
        };
        out.push(Service {
            name: sname.clone(),
            image,
            kind,
            environment,
            ports,
            volumes,
            restart,
            health,
            hash,
        });
    }
    Ok(Project {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        file: file.to_path_buf(),
        services: out,
    })
}

/// nginx's own configuration mapped into the lab: container paths to the service's state dir,
/// `listen` ports to the ports they are published on, the stream module loaded where Debian
/// builds it as a module, and no `user` (the lab runs nginx as the host's user).
pub fn lab_nginx_conf(
    src: &str,
    ports: &BTreeMap<u16, u16>,
    state: &Path,
    stream_module: Option<&Path>,
) -> String {
    let st = state.display();
    let mut out = String::new();
    let has = |directive: &str| {
        src.lines()
            .any(|l| l.split('#').next().unwrap_or("").split_whitespace().next() == Some(directive))
    };
    // nginx falls back to compiled-in paths the lab's user cannot write.
    if !has("pid") {
        out.push_str(&format!("pid {st}/nginx.pid;  # lab\n"));
    }
    let access_default = !has("access_log");
    if let Some(m) = stream_module {
        if src.contains("stream") {
            out.push_str(&format!(
                "load_module {};  # lab: nginx's stream module\n",
                m.display()
            ));
        }
    }
    for line in src.lines() {
        let (code, comment) = match line.find('#') {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, ""),
        };
        let trimmed = code.trim_start();
        let indent = &code[..code.len() - trimmed.len()];
        let words: Vec<&str> = trimmed
            .trim_end()
            .trim_end_matches(';')
            .split_whitespace()
            .collect();
        let mapped = match words.first().copied() {
            Some("user") if trimmed.trim_end().ends_with(';') => {
                Some(format!("# lab: {}", trimmed.trim_end()))
            }
            Some("pid") => Some(format!("pid {st}/nginx.pid;")),
            Some("error_log") => Some(format!(
                "error_log {st}/error.log{};",
                words.get(2).map(|l| format!(" {l}")).unwrap_or_default()
            )),
            Some("access_log") if words.get(1) != Some(&"off") => Some(format!(
                "access_log {st}/access.log{};",
                words[2..]
                    .iter()
                    .map(|w| format!(" {w}"))
                    .collect::<String>()
            )),
            Some("listen") if words.len() >= 2 => {
                let spec = words[1];
                let (ip, port) = match spec.rsplit_once(':') {
                    Some((ip, p)) => (Some(ip), p),
                    None => (None, spec),
                };
                port.parse::<u16>()
                    .ok()
                    .and_then(|p| ports.get(&p))
                    .map(|host| {
                        format!(
                            "listen {}{host}{};",
                            ip.map(|i| format!("{i}:")).unwrap_or_default(),
                            words[2..]
                                .iter()
                                .map(|w| format!(" {w}"))
                                .collect::<String>()
                        )
                    })
            }
            _ => None,
        };
        match mapped {
            Some(m) => out.push_str(&format!(
                "{indent}{m}{}{comment}\n",
                if comment.is_empty() { "" } else { " " }
            )),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
        if words.first() == Some(&"http") && trimmed.contains('{') {
            if access_default {
                out.push_str(&format!("{indent}    access_log {st}/access.log;  # lab\n"));
            }
            for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
                out.push_str(&format!("{indent}    {t}_temp_path {st}/tmp/{t};  # lab\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(text: &str) -> Result<Project, String> {
        parse(
            text,
            Path::new("/srv/wk"),
            "wk",
            Path::new("/srv/wk/docker-compose.yml"),
        )
    }

    #[test]
    fn reads_both_environment_forms_ports_and_volumes() {
        let p = project(
            "version: '3.7'\nservices:\n  wukongim1:\n    image: registry.cn-shanghai.aliyuncs.com/wukongim/wukongim:v2.2.5\n    environment:\n      - \"WK_CLUSTER_NODEID=1001\" # id\n      - WK_MODE=release\n    ports: [\"5001:5001\", 11110, {target: 5300, published: 15300}]\n    volumes: [./wukongim_data:/root/wukongim]\n    restart: always\n    healthcheck:\n      test: \"wget -q -Y off -O /dev/null http://localhost:5001/health > /dev/null 2>&1\"\n  nginx:\n    image: nginx:1.27\n    environment: {A: 1, B: null}\n",
        )
        .unwrap();
        let w = p.service("wukongim1").unwrap();
        assert_eq!(w.kind, Kind::WuKongIM);
        assert_eq!(
            w.environment,
            [
                ("WK_CLUSTER_NODEID".to_string(), "1001".to_string()),
                ("WK_MODE".into(), "release".into())
            ]
        );
        assert_eq!(
            w.ports,
            [
                Port {
                    host: 5001,
                    container: 5001
                },
                Port {
                    host: 11110,
                    container: 11110
                },
                Port {
                    host: 15300,
                    container: 5300
                }
            ]
        );
        assert_eq!(
            w.volumes[0].source,
            PathBuf::from("/srv/wk/./wukongim_data")
        );
        assert_eq!(w.restart, Restart::Always);
        assert_eq!(w.health, Some((5001, "/health".into())));
        let n = p.service("nginx").unwrap();
        assert_eq!(
            n.environment,
            [
                ("A".to_string(), "1".to_string()),
                ("B".into(), String::new())
            ]
        );
        assert_eq!(image_tag(&w.image), "v2.2.5");
    }

    #[test]
    fn rejects_what_compose_rejects() {
        for (text, want) in [
            (
                "services:\n  a:\n    image: nginx\n    imagee: x\n",
                "services.a additional properties 'imagee' not allowed",
            ),
            (
                "services:\n  a:\n    image: nginx\n    ports: [\"70000:80\"]\n",
                "invalid port",
            ),
            (
                "services:\n  a:\n    environment: [A=1]\n",
                "neither an image nor a build context",
            ),
            (
                "services:\n  a:\n    image: nginx\n    restart: sometimes\n",
                "invalid restart policy",
            ),
            (
                "services:\n  a:\n    image: redis\n",
                "not one the lab can run",
            ),
            (
                "servicez: {}\n",
                "(root) additional properties 'servicez' not allowed",
            ),
            (
                "services:\n  a:\n    image: nginx\n  a:\n    image: nginx\n",
                "duplicate",
            ),
            (
                "services:\n  a:\n    image: nginx\n    build: .\n",
                "does not build",
            ),
        ] {
            let err = project(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn a_changed_definition_changes_the_hash_and_only_that_service() {
        let a = project("services:\n  w:\n    image: wukongim/wukongim:v2\n    environment: [A=1]\n  n:\n    image: nginx\n").unwrap();
        let b = project("services:\n  w:\n    image: wukongim/wukongim:v2\n    environment: [A=2]\n  n:\n    image: nginx\n").unwrap();
        let c = project("# a comment\nservices:\n  n:\n    image: nginx\n  w:\n    environment: [A=1]\n    image: wukongim/wukongim:v2\n").unwrap();
        assert_ne!(a.service("w").unwrap().hash, b.service("w").unwrap().hash);
        assert_eq!(a.service("n").unwrap().hash, b.service("n").unwrap().hash);
        assert_eq!(
            a.service("w").unwrap().hash,
            c.service("w").unwrap().hash,
            "key order and comments do not count"
        );
    }

    #[test]
    fn nginx_conf_is_mapped_into_the_lab() {
        let src = "user  nginx;\npid        /var/run/nginx.pid;\nerror_log  /var/log/nginx/error.log notice;\nhttp {\n    access_log  /var/log/nginx/access.log  main;\n    server {\n        listen 5001; # api\n    }\n}\nstream {\n  server {\n    listen 5100;\n    listen 6000;\n  }\n}\n";
        let ports: BTreeMap<u16, u16> = [(5001, 15001), (5100, 15100)].into_iter().collect();
        let out = lab_nginx_conf(
            src,
            &ports,
            Path::new("/st"),
            Some(Path::new("/m/stream.so")),
        );
        assert!(out.starts_with("load_module /m/stream.so;"));
        assert!(out.contains("# lab: user  nginx;"));
        assert!(out.contains("pid /st/nginx.pid;"));
        assert!(out.contains("error_log /st/error.log notice;"));
        assert!(out.contains("access_log /st/access.log main;"));
        assert!(out.contains("        listen 15001; # api\n"));
        assert!(out.contains("    listen 15100;\n"));
        assert!(
            out.contains("    listen 6000;\n"),
            "an unpublished port stays"
        );
        assert!(out.contains("proxy_temp_path /st/tmp/proxy;"));
        let bare = lab_nginx_conf("events {}\nhttp {\n}\n", &ports, Path::new("/st"), None);
        assert!(bare.starts_with("pid /st/nginx.pid;"), "{bare}");
        assert!(bare.contains("access_log /st/access.log;"), "{bare}");
    }
}
