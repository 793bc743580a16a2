//! What Docker runs and sees, read the same way whatever compose a host has.
//!
//! `compose ps` prints differently in every version (v1: no SERVICE column, names like
//! `wukongim_nginx_1`, commands cut to 26 characters; v2 before 2.15: lowercase states; `--format
//! json` an array before about 2.21, JSON lines after), so wkctl never reads its table. Every
//! version labels its containers alike (`com.docker.compose.project.working_dir`, `.service`,
//! `.oneoff`): `docker ps` finds the compose containers, `docker inspect` with a format of ours
//! gives service, state, health, restart count and project directory of each, and the project
//! is the containers whose directory is the install dir. No compose program starts for it (each
//! start of Compose v2 costs a tenth of a second of CPU).
//!
//! A file a container bind-mounts on its own (the docs mount `./nginx.conf` and
//! `./prometheus.yml` so) must keep its inode when it is rewritten: after a rename the container
//! goes on seeing the old file, and a reload reloads the old configuration.

use wk_remote::shell::{self, Replace};
use wk_remote::{ExecRequest, Remote, RemoteError};

/// `docker inspect`'s format: one line per container, `|` between fields.
const INSPECT_FORMAT: &str = "{{.Id}}|{{index .Config.Labels \"com.docker.compose.service\"}}|{{.State.Status}}|{{if index .State \"Health\"}}{{.State.Health.Status}}{{end}}|{{.RestartCount}}|{{.Config.Image}}|{{index .Config.Labels \"com.docker.compose.project.working_dir\"}}|{{.Name}}";

/// One container of a compose project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub service: String,
    /// Docker's state: created, running, restarting, paused, exited, dead, removing.
    pub status: String,
    /// The healthcheck's verdict (`starting`, `healthy`, `unhealthy`), empty without one.
    pub health: String,
    pub restarts: u32,
    pub image: String,
    /// Docker's name for it, without the leading `/` (empty in a look that did not ask).
    pub name: String,
}

/// The containers of one compose project, as Docker reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services(pub Vec<Container>);

impl Services {
    /// Parses the output of [`state_script`]: the containers whose project directory is the
    /// one the script named (`dir=` as the shell has it, `pdir=` without symlinks). Lines that are
    /// not ours (warnings) are skipped.
    pub fn parse(text: &str) -> Services {
        let dirs: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("dir=").or_else(|| l.strip_prefix("pdir=")))
            .collect();
        let mut out = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.trim().split('|').collect();
            if !(7..=8).contains(&f.len())
                || f[0].len() < 12
                || !f[0].chars().all(|c| c.is_ascii_hexdigit())
            {
                continue;
            }
            if !dirs.contains(&f[6].trim_end_matches('/')) {
                continue;
            }
            out.push(Container {
                id: f[0].to_string(),
                service: f[1].to_string(),
                status: f[2].to_string(),
                health: f[3].to_string(),
                restarts: f[4].parse().unwrap_or(0),
                image: f[5].to_string(),
                name: f
                    .get(7)
                    .map_or("", |n| n.trim_start_matches('/'))
                    .to_string(),
            });
        }
        out.sort_by(|a, b| a.service.cmp(&b.service));
        Services(out)
    }

    fn of<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Container> + 'a {
        self.0.iter().filter(move |c| c.service == service)
    }

    /// A container of the service runs (and is not restarting).
    pub fn running(&self, service: &str) -> bool {
        self.of(service).any(|c| c.status == "running")
    }

    /// A container of the service restarts (its process keeps dying).
    pub fn restarting(&self, service: &str) -> bool {
        self.of(service).any(|c| c.status == "restarting")
    }

    /// The project has containers and every one runs.
    pub fn all_running(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|c| c.status == "running")
    }

    /// The project has containers and none restarts.
    pub fn none_restarting(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|c| c.status != "restarting")
    }

    /// The same containers, in the same states, with no restart between (health may differ).
    pub fn same_run(&self, other: &Services) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.id == b.id && a.status == b.status && a.restarts == b.restarts)
    }

    /// Whether every container of `now` runs the process it ran at this look (a container this
    /// look saw running, with the same restart count) or its first one (a container this look
    /// did not have, or saw created and never started, never restarted). A container this look
    /// saw stopped may have been started and restarted since with any count: not a first run.
    pub fn first_runs(&self, now: &Services) -> bool {
        now.0
            .iter()
            .all(|c| match self.0.iter().find(|b| b.id == c.id) {
                Some(b) if b.status == "created" => c.restarts == 0,
                Some(b) => b.status == "running" && b.restarts == c.restarts,
                None => c.restarts == 0,
            })
    }

    /// What a recreate that was cut left behind: a container not running under the name
    /// compose gives a container for the time of a recreate, `<first 12 hex of an id>_<its
    /// name>` (v2: the new container, created under it, renamed once the old one is gone; v1:
    /// the old one, renamed before the new one is created). The next `up -d` trips on it: v2
    /// removes it as a surplus while it creates the same name again ("already in use").
    pub fn leftovers(&self) -> Vec<&Container> {
        self.0
            .iter()
            .filter(|c| c.status != "running" && recreate_name(&c.name).is_some())
            .collect()
    }

    /// `service: state (health), …` for messages.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "no containers".into();
        }
        self.0
            .iter()
            .map(|c| {
                let mut s = format!("{}: {}", c.service, c.status);
                if !c.health.is_empty() {
                    s.push_str(&format!(" ({})", c.health));
                }
                if c.restarts > 0 {
                    s.push_str(&format!(", {} restarts", c.restarts));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The name a recreate's temporary name stands for (`3e98f86549f5_wukongim-wukongim-1` →
/// `wukongim-wukongim-1`).
fn recreate_name(name: &str) -> Option<&str> {
    let (id, rest) = name.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !rest.is_empty())
        .then_some(rest)
}

/// The part of a script (for [`in_dir`]) that ends a recreate compose left half done in the
/// project in `$1`, under the project's lock (`flock .`) as compose calls run: each container
/// of the project that does not run and bears a recreate's temporary name is removed when a
/// container has the name it stands for (a container that never ran, or the one it replaced),
/// else gets that name back (compose then starts or recreates it). It prints one line per
/// container it changed; nothing runs or stops.
pub fn finish_recreate_part() -> String {
    let fix = format!(
        r#"ids=$(docker ps -a -q --no-trunc --filter label=com.docker.compose.project.working_dir --filter label=com.docker.compose.oneoff=False) || exit 1
[ -n "$ids" ] || exit 0
here=$(pwd); real=$(pwd -P)
docker inspect --format {} $ids | while IFS='|' read -r id name status wd; do
  [ "$wd" = "$here" ] || [ "$wd" = "$real" ] || [ "$wd" = "$here/" ] || continue
  [ "$status" = running ] && continue
  name=${{name#/}}; want=${{name#*_}}
  case "${{name%%_*}}" in ????????????) ;; *) continue ;; esac
  case "${{name%%_*}}" in *[!0-9a-f]*) continue ;; esac
  [ -n "$want" ] && [ "$want" != "$name" ] || continue
  if [ -n "$(docker ps -a -q --filter "name=^/$want\$")" ]; then
    docker rm "$id" >/dev/null || exit 1; echo "removed $name ($status), left by a cut recreate of $want"
  else
    docker rename "$id" "$want" || exit 1; echo "renamed $name ($status) back to $want"
  fi
done"#,
        shell::quote("{{.Id}}|{{.Name}}|{{.State.Status}}|{{index .Config.Labels \"com.docker.compose.project.working_dir\"}}")
    );
    format!(
        "[ -n \"$1\" ] && cd \"$1\" || exit 0\nexec flock . sh -c {}",
        shell::quote(&fix)
    )
}

/// The script that ends a half-done recreate in `dir` ([`finish_recreate_part`]), run as the
/// plan's compose commands run.
pub fn finish_recreate_script(dir: &str, prefix: &str) -> String {
    in_dir(dir, prefix, &finish_recreate_part())
}

/// A script that runs `inner` through the plan's sudo prefix (`sudo -n `, `sudo -k -S -p '' `,
/// or nothing) as one `sh -c`, so a sudo that asks reads its password once, with `$1` the
/// directory `dir` as the SSH user sees it (empty when it does not exist): `~` is the user's home,
/// which sudo would make root's.
pub fn in_dir(dir: &str, prefix: &str, inner: &str) -> String {
    format!(
        "d=$(cd {} 2>/dev/null && pwd) || d=\n{}sh -c {} sh \"$d\"",
        shell::path(dir),
        prefix,
        shell::quote(inner)
    )
}

/// The part of a script (for [`in_dir`]) that lists the compose containers of the project in
/// `$1` (nothing when there is no such directory): the directory as the shell has it and
/// without symlinks, then every compose container (not one-off) of the engine.
pub fn state_part() -> String {
    format!(
        "[ -n \"$1\" ] && cd \"$1\" || exit 0\necho \"dir=$(pwd)\"\necho \"pdir=$(pwd -P)\"\nids=$(docker ps -a -q --no-trunc --filter label=com.docker.compose.project.working_dir --filter label=com.docker.compose.oneoff=False) || exit 1\n[ -z \"$ids\" ] || exec docker inspect --format {} $ids",
        shell::quote(INSPECT_FORMAT)
    )
}

/// The script that lists a project's containers, run as the compose command of the plan runs
/// (the same user, the same sudo).
pub fn state_script(dir: &str, prefix: &str) -> String {
    in_dir(dir, prefix, &state_part())
}

/// How `path` is to be replaced on its host: keeping its inode when the compose file beside it
/// bind-mounts it as a file of its own (a container then goes on seeing the new bytes), by
/// rename otherwise.
pub async fn replace_mode<R: Remote>(r: &R, path: &str) -> Result<Replace, RemoteError> {
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => (".", path),
    };
    if matches!(
        name,
        "docker-compose.yml" | "docker-compose.yaml" | "compose.yml" | "compose.yaml"
    ) {
        return Ok(Replace::Rename);
    }
    for file in [
        "docker-compose.yml",
        "docker-compose.yaml",
        "compose.yml",
        "compose.yaml",
    ] {
        let Some(f) = r.read_file(&format!("{dir}/{file}")).await? else {
            continue;
        };
        let text = String::from_utf8_lossy(&f.content);
        let sources = wk_compose::edit::bind_sources(&text).unwrap_or_default();
        let mounted = sources.iter().any(|s| {
            let s = s.trim_end_matches('/');
            let rel = s.strip_prefix("./").unwrap_or(s);
            rel == name || s == path
        });
        return Ok(if mounted {
            Replace::KeepInode
        } else {
            Replace::Rename
        });
    }
    Ok(Replace::Rename)
}

/// Writes a file as [`replace_mode`] says it must be replaced.
pub async fn write<R: Remote>(
    r: &R,
    path: &str,
    content: &[u8],
    mode: Option<u32>,
) -> Result<(), RemoteError> {
    let how = replace_mode(r, path).await?;
    r.write_file_as(path, content, mode, how).await
}

/// The host's compose program (`docker compose` or `docker-compose`), found as it is called:
/// through the host's sudo when `sudo`.
pub async fn compose_program<R: Remote>(r: &R, sudo: bool) -> String {
    let out = r
        .exec(
            ExecRequest::new("if docker compose version >/dev/null 2>&1; then echo 'docker compose'; else echo docker-compose; fi")
                .sudo(sudo),
        )
        .await;
    match out {
        Ok(o) if o.success() && !o.stdout_str().trim().is_empty() => {
            o.stdout_str().trim().to_string()
        }
        _ => "docker-compose".into(),
    }
}

/// What the running container of `service` (of the compose project in `dir`) sees at `inner`
/// (a file it mounts): its bytes, through `docker exec`, as the plan's compose command runs
/// (the same user, the same sudo). The container is found by its compose labels, as
/// [`Services::parse`] finds them; no compose program starts for it. `None`: no such container
/// runs, or it cannot read the file.
pub async fn container_file<R: Remote>(
    r: &R,
    prefix: &str,
    dir: &str,
    service: &str,
    inner: &str,
    sudo: bool,
) -> Result<Option<Vec<u8>>, RemoteError> {
    let part = format!(
        "[ -n \"$1\" ] && cd \"$1\" || exit 1\nd=$(pwd); p=$(pwd -P)\ndocker ps --no-trunc --filter {} --filter label=com.docker.compose.oneoff=False --format {} | {{ while read -r id w; do if [ \"$w\" = \"$d\" ] || [ \"$w\" = \"$p\" ]; then exec docker exec \"$id\" cat {}; fi; done; exit 1; }}",
        shell::quote(&format!("label=com.docker.compose.service={service}")),
        shell::quote("{{.ID}} {{.Label \"com.docker.compose.project.working_dir\"}}"),
        shell::quote(inner)
    );
    let out = r
        .exec(ExecRequest::new(in_dir(dir, prefix, &part)).sudo_inside(sudo))
        .await?;
    Ok(out.success().then_some(out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/compose-state")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn first_runs_are_new_containers_never_restarted_or_running_ones_unchanged() {
        let c = |id: &str, status: &str, restarts: u32| Container {
            id: id.repeat(12),
            service: id.into(),
            status: status.into(),
            health: String::new(),
            restarts,
            image: "i".into(),
            name: String::new(),
        };
        let before = Services(vec![c("a", "running", 2), c("b", "exited", 0)]);
        let first = |now: Vec<Container>| before.first_runs(&Services(now));
        assert!(first(vec![c("a", "running", 2), c("n", "running", 0)]));
        assert!(!first(vec![c("a", "running", 3)]), "a restarted");
        assert!(!first(vec![c("n", "running", 1)]), "a new one restarted");
        assert!(!first(vec![c("b", "running", 0)]), "started since: unknown");
        let created = Services(vec![c("k", "created", 0)]);
        assert!(created.first_runs(&Services(vec![c("k", "running", 0)])));
        assert!(
            !created.first_runs(&Services(vec![c("k", "running", 1)])),
            "created, then started and restarted"
        );
        assert!(Services::default().first_runs(&Services(vec![c("n", "running", 0)])));
    }

    /// Captured from the lab's real engines (Docker 20.10) with each compose version, in the
    /// project `cap`: a service that runs, one whose command exits (restart: always), one that
    /// ran once; beside it the project `other` and a one-off `compose run` container, which are
    /// not `cap`'s.
    #[test]
    fn every_compose_version_reads_the_same() {
        for v in ["v1.29.2.txt", "v2.18.1.txt", "v2.29.7.txt", "v2.40.3.txt"] {
            let s = Services::parse(&fixture(v));
            assert_eq!(s.0.len(), 3, "{v}: {s:?}");
            assert!(s.running("web"), "{v}");
            // Caught between two of its restarts, a dying container shows `running` (as in the
            // 2.18.1 capture): its restart count tells.
            let lp = s.0.iter().find(|c| c.service == "loop").unwrap();
            assert!(s.restarting("loop") || lp.status == "running", "{v}");
            assert!(!s.running("once") && !s.restarting("once"), "{v}");
            assert!(!s.all_running(), "{v}");
            assert!(s.0.iter().find(|c| c.service == "loop").unwrap().restarts > 0);
            assert_eq!(
                s.0[0].image, "registry.cn-shanghai.aliyuncs.com/wukongim/nginx:1.27.0",
                "{v}"
            );
            assert!(
                s.describe().starts_with("loop: r") && s.describe().contains(" restarts"),
                "{v}"
            );
            let again = Services::parse(&fixture(v));
            assert!(s.same_run(&again));
        }
    }

    #[test]
    fn another_directory_is_another_project() {
        let text = fixture("v2.29.7.txt").replace("|/tmp/wk-lab/home/node4/cap", "|/srv/elsewhere");
        assert!(Services::parse(&text).0.is_empty());
        // The directory as the shell has it, or without symlinks (compose v1 records the latter).
        let text = fixture("v2.29.7.txt").replacen("dir=", "dir=/via/a/link\nignored=", 1);
        assert_eq!(Services::parse(&text).0.len(), 3);
    }

    #[test]
    fn warnings_and_an_empty_project() {
        let s = Services::parse(
            "time=\"…\" level=warning msg=\"the attribute `version` is obsolete\"\n",
        );
        assert!(s.0.is_empty() && !s.all_running() && !s.running("x"));
        assert_eq!(s.describe(), "no containers");
    }

    #[test]
    fn the_script_quotes_the_format_and_runs_under_one_sudo() {
        let s = state_script("~/wukongim", "sudo -k -S -p '' ");
        // The directory is found as the user (sudo would make `~` root's), before sudo.
        assert!(
            s.starts_with(
                "d=$(cd \"$HOME\"/wukongim 2>/dev/null && pwd) || d=\nsudo -k -S -p '' sh -c '"
            ),
            "{s}"
        );
        assert!(s.ends_with("' sh \"$d\""), "{s}");
        assert!(s.contains("{{index .Config.Labels \"com.docker.compose.service\"}}"));
        assert_eq!(
            sh_words(&s).matches("sudo").count(),
            1,
            "one sudo, one password"
        );
        let plain = state_script("/opt/wk", "");
        assert!(
            plain.starts_with("d=$(cd /opt/wk 2>/dev/null && pwd) || d=\nsh -c '"),
            "{plain}"
        );
    }

    fn sh_words(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The script that ends a cut recreate runs for real under sh, against a `docker` of ours
    /// that keeps its containers in a file (`id|/name|state|project dir`): in the project, a
    /// temporary name that does not run goes when its name is taken, else gets its name back;
    /// a running one, another project's, and the usual names stay as they are.
    #[test]
    fn a_cut_recreate_is_ended_under_the_lock() {
        let root = std::env::temp_dir().join(format!("wk-finish-{}", std::process::id()));
        let (bin, proj) = (root.join("bin"), root.join("proj"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&proj).unwrap();
        let db = root.join("containers");
        let p = proj.display().to_string();
        std::fs::write(
            &db,
            format!(
                "aaaaaaaaaaaa01|/3e98f86549f5_wk-wukongim-1|created|{p}\n\
                 3e98f86549f502|/wk-wukongim-1|exited|{p}\n\
                 bbbbbbbbbbbb03|/0123456789ab_wk-nginx-1|created|{p}\n\
                 cccccccccccc04|/abcdefabcdef_wk-prometheus-1|running|{p}\n\
                 dddddddddddd05|/3e98f86549f5_other-wukongim-1|created|/elsewhere\n\
                 eeeeeeeeeeee06|/3e98f86549f5_wk-demo-1|created|/elsewhere\n"
            ),
        )
        .unwrap();
        let fake = format!(
            r#"#!/bin/sh
db={db}
echo "$*" >> {db}.calls
case "$1 $2" in
  "ps -a")
    case "$*" in
      *name=*) n=${{*##*name=^/}}; n=${{n%\$}}; grep "|/$n|" $db | cut -d'|' -f1 ;;
      *) cut -d'|' -f1 $db ;;
    esac ;;
  "inspect --format") shift 3; for i in "$@"; do grep "^$i|" $db; done ;;
  "rm "*) grep -v "^$2|" $db > $db.new; mv $db.new $db ;;
  "rename "*) sed -i "s#^$2|/[^|]*|#$2|/$3|#" $db ;;
esac
"#,
            db = db.display()
        );
        let docker = bin.join("docker");
        std::fs::write(&docker, fake).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(finish_recreate_script(&p, ""))
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            said.lines().collect::<Vec<_>>(),
            [
                "removed 3e98f86549f5_wk-wukongim-1 (created), left by a cut recreate of wk-wukongim-1",
                "renamed 0123456789ab_wk-nginx-1 (created) back to wk-nginx-1",
            ],
            "{said}"
        );
        let left = std::fs::read_to_string(&db).unwrap();
        assert_eq!(
            left,
            format!(
                "3e98f86549f502|/wk-wukongim-1|exited|{p}\n\
                 bbbbbbbbbbbb03|/wk-nginx-1|created|{p}\n\
                 cccccccccccc04|/abcdefabcdef_wk-prometheus-1|running|{p}\n\
                 dddddddddddd05|/3e98f86549f5_other-wukongim-1|created|/elsewhere\n\
                 eeeeeeeeeeee06|/3e98f86549f5_wk-demo-1|created|/elsewhere\n"
            )
        );
        // The look that triggers it sees the same: the two that do not run.
        let look = Services::parse(&format!(
            "dir={p}\npdir={p}\n{}",
            left.lines()
                .map(|l| {
                    let f: Vec<&str> = l.split('|').collect();
                    format!(
                        "{}{}|s|{}||0|i|{}|{}\n",
                        f[0],
                        "0".repeat(50),
                        f[2],
                        f[3],
                        f[1]
                    )
                })
                .collect::<String>()
        ));
        assert!(look.leftovers().is_empty(), "{look:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The scripts run for real under sh: a directory that is not there lists nothing.
    #[test]
    fn a_missing_directory_lists_nothing() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(state_script("/nonexistent/wkctl-test", ""))
            .output()
            .unwrap();
        assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    }
}
