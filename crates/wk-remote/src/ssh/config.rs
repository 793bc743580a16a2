//! What `~/.ssh/config` (or another file) says about a host, through the ssh2-config crate.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

/// The fields wkctl honours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    pub proxy_jump: Vec<String>,
    /// `UserKnownHostsFile` (`None`: not set; empty: `none`).
    pub user_known_hosts: Option<Vec<PathBuf>>,
    /// `GlobalKnownHostsFile` (`None`: not set; empty: `none`).
    pub global_known_hosts: Option<Vec<PathBuf>>,
    /// `HostKeyAlias`: the name the host's key is looked up and recorded under.
    pub host_key_alias: Option<String>,
}

/// Looks `host` up in `file`, or in `~/.ssh/config` when `file` is `None` (a missing default
/// file is an empty one; a missing named file is an error).
pub fn lookup(file: Option<&Path>, host: &str) -> Result<HostConfig, String> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = match file {
        Some(p) => p.to_path_buf(),
        None => {
            let p = home.join(".ssh/config");
            if !p.exists() {
                return Ok(HostConfig::default());
            }
            p
        }
    };
    let f = std::fs::File::open(&path)
        .map_err(|e| format!("cannot read ssh config {}: {e}", path.display()))?;
    let cfg = SshConfig::default()
        .home_dir(home.clone())
        .parse(
            &mut BufReader::new(f),
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map_err(|e| format!("cannot parse ssh config {}: {e}", path.display()))?;
    let p = cfg.query(host);
    let expand = |f: &PathBuf| -> PathBuf {
        match f.to_str().and_then(|s| s.strip_prefix("~/")) {
            Some(rest) => home.join(rest),
            None => f.clone(),
        }
    };
    // Fields the crate does not model come as their words (keys in lower case).
    let words = |k: &str| {
        p.unsupported_fields
            .get(k)
            .or_else(|| p.ignored_fields.get(k))
    };
    let files = |k: &str| {
        words(k).map(|w| {
            w.iter()
                .filter(|f| !f.eq_ignore_ascii_case("none"))
                .map(|f| expand(&PathBuf::from(f)))
                .collect::<Vec<_>>()
        })
    };
    Ok(HostConfig {
        host_name: p.host_name.clone(),
        user: p.user.clone(),
        port: p.port,
        identity_files: p
            .identity_file
            .as_ref()
            .map(|v| v.iter().map(expand).collect())
            .unwrap_or_default(),
        proxy_jump: p
            .proxy_jump
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|j| j != "none")
            .collect(),
        user_known_hosts: files("userknownhostsfile"),
        global_known_hosts: files("globalknownhostsfile"),
        host_key_alias: words("hostkeyalias").and_then(|w| w.first().cloned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_jumps() {
        let dir = std::env::temp_dir().join(format!("wk-sshcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config");
        std::fs::write(
            &p,
            "Host node2\n  HostName 10.9.0.12\n  User deploy\n  Port 2222\n  IdentityFile /keys/id_node2\n  ProxyJump ops@bastion:2200,inner\n\nHost *\n  User fallback\n  ServerAliveInterval 10\n",
        )
        .unwrap();
        let c = lookup(Some(&p), "node2").unwrap();
        assert_eq!(c.host_name.as_deref(), Some("10.9.0.12"));
        assert_eq!(c.user.as_deref(), Some("deploy"));
        assert_eq!(c.port, Some(2222));
        assert_eq!(c.identity_files, [PathBuf::from("/keys/id_node2")]);
        assert_eq!(c.proxy_jump, ["ops@bastion:2200", "inner"]);
        let other = lookup(Some(&p), "elsewhere").unwrap();
        assert_eq!(other.host_name, None);
        assert_eq!(other.user.as_deref(), Some("fallback"));
        assert!(lookup(Some(&dir.join("missing")), "x").is_err());
        assert_eq!(c.user_known_hosts, None);
    }

    #[test]
    fn known_hosts_files_and_alias() {
        let dir = std::env::temp_dir().join(format!("wk-sshcfg-kh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config");
        std::fs::write(
            &p,
            "Host node2\n  UserKnownHostsFile /ops/kh_a /ops/kh_b\n  GlobalKnownHostsFile none\n  HostKeyAlias node2-key\n\nHost node3\n  UserKnownHostsFile=none\n",
        )
        .unwrap();
        let c = lookup(Some(&p), "node2").unwrap();
        assert_eq!(
            c.user_known_hosts,
            Some(vec![PathBuf::from("/ops/kh_a"), PathBuf::from("/ops/kh_b")])
        );
        assert_eq!(c.global_known_hosts, Some(vec![]));
        assert_eq!(c.host_key_alias.as_deref(), Some("node2-key"));
        let c = lookup(Some(&p), "node3").unwrap();
        assert_eq!(c.user_known_hosts, Some(vec![]));
        assert_eq!(c.host_key_alias, None);
    }
}
