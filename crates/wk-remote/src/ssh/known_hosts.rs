//! Host-key verification against OpenSSH `known_hosts` files.
//!
//! Reads what OpenSSH writes and reads: plain and hashed (`|1|salt|hash`) host names, `[host]:port`
//! for ports other than 22, wildcard (`*`, `?`) and negated (`!`) patterns, `@revoked` keys;
//! `@cert-authority` lines are not used (wkctl does not trust host certificates). Whitespace may be
//! any run of spaces or tabs.

use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use hmac::{KeyInit, Mac};
use russh::keys::{HashAlg, PublicKey};

/// What the known_hosts files say about a key a host presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host has exactly this key.
    Known,
    /// The host is known with another key; where the recorded one is.
    Changed { file: PathBuf, line: usize },
    /// The key is listed `@revoked`.
    Revoked { file: PathBuf, line: usize },
    /// No line names this host.
    Unknown,
}

/// The name a host is recorded under: `host`, or `[host]:port` for another port than 22, in
/// lower case as OpenSSH matches and writes it (a hashed entry is the HMAC of the lower-case
/// name: `NODE1.lab` must find `node1.lab`'s key, else accept-new would trust any key for it).
pub fn host_entry_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// The name a host's key is looked up and recorded under: the ssh config's `HostKeyAlias` when
/// it sets one (as OpenSSH: the alias alone, no port), else [`host_entry_name`].
pub fn key_name(host: &str, port: u16, alias: Option<&str>) -> String {
    match alias {
        Some(a) => a.to_ascii_lowercase(),
        None => host_entry_name(host, port),
    }
}

/// SHA-256 fingerprint as OpenSSH prints it (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

struct Line<'a> {
    marker: Option<&'a str>,
    hosts: &'a str,
    key: Option<PublicKey>,
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let mut marker = None;
    if first.starts_with('@') {
        marker = Some(first);
        first = fields.next()?;
    }
    let _algorithm = fields.next()?;
    let blob = fields.next()?;
    let key = BASE64
        .decode(blob.as_bytes())
        .ok()
        .and_then(|b| PublicKey::from_bytes(&b).ok());
    Some(Line {
        marker,
        hosts: first,
        key,
    })
}

/// `*` and `?` wildcards, as OpenSSH's match_pattern.
fn wildcard(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn hashed_match(entry: &str, name: &str) -> bool {
    let mut parts = entry.split('|').skip(2);
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// Whether a comma-separated host pattern list names `name`.
fn hosts_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for p in patterns.split(',') {
        if p.starts_with("|1|") {
            if hashed_match(p, name) {
                matched = true;
            }
        } else if let Some(neg) = p.strip_prefix('!') {
            if wildcard(neg, name) {
                return false;
            }
        } else if wildcard(p, name) {
            matched = true;
        }
    }
    matched
}

/// Checks `key`, presented by the host recorded as `name` ([`key_name`]), against the given
/// files (missing files are empty).
pub fn verify(files: &[PathBuf], name: &str, key: &PublicKey) -> std::io::Result<Verdict> {
    let mut changed = None;
    let mut known = false;
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for (i, raw) in text.lines().enumerate() {
            let Some(line) = parse_line(raw) else {
                continue;
            };
            let Some(recorded) = &line.key else { continue };
            match line.marker {
                Some("@revoked") => {
                    if recorded.key_data() == key.key_data() {
                        return Ok(Verdict::Revoked {
                            file: file.clone(),
                            line: i + 1,
                        });
                    }
                }
                Some(_) => {}
                None => {
                    if hosts_match(line.hosts, name) {
                        if recorded.key_data() == key.key_data() {
                            known = true;
                        } else if changed.is_none() {
                            changed = Some(Verdict::Changed {
                                file: file.clone(),
                                line: i + 1,
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(if known {
        Verdict::Known
    } else {
        changed.unwrap_or(Verdict::Unknown)
    })
}

/// The algorithms of the keys recorded for a host, so the client can ask the server for a key
/// type it can verify (as OpenSSH orders HostKeyAlgorithms).
pub fn known_algorithms(files: &[PathBuf], name: &str) -> Vec<russh::keys::Algorithm> {
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for raw in text.lines() {
            if let Some(Line {
                marker: None,
                hosts,
                key: Some(k),
            }) = parse_line(raw)
            {
                if hosts_match(hosts, name) && !out.contains(&k.algorithm()) {
                    out.push(k.algorithm());
                }
            }
        }
    }
    out
}

/// Records a key (accept-new). Creates the file (0600) and its directory (0700) if needed.
pub fn learn(file: &Path, name: &str, key: &PublicKey) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = file.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    let existing = std::fs::read(file).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)?;
    let mut line = String::new();
    if !existing.is_empty() && !existing.ends_with(b"\n") {
        line.push('\n');
    }
    let openssh = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    line.push_str(&format!("{name} {openssh}\n"));
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G1sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X";

    fn key(b64: &str) -> PublicKey {
        PublicKey::from_bytes(&BASE64.decode(b64.as_bytes()).unwrap()).unwrap()
    }

    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wk-kh-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("known_hosts");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn plain_port_and_tabs() {
        let f = file("plain", &format!("# comment\n\n[10.0.0.5]:2222\tssh-ed25519   {A} c\nhost1,10.0.0.6 ssh-ed25519 {A}\n"));
        let files = vec![f];
        assert_eq!(
            verify(&files, &host_entry_name("10.0.0.5", 2222), &key(A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            verify(&files, &host_entry_name("10.0.0.5", 22), &key(A)).unwrap(),
            Verdict::Unknown
        );
        assert_eq!(
            verify(&files, &host_entry_name("10.0.0.6", 22), &key(A)).unwrap(),
            Verdict::Known
        );
        assert!(matches!(
            verify(&files, &host_entry_name("host1", 22), &key(B)).unwrap(),
            Verdict::Changed { line: 4, .. }
        ));
    }

    #[test]
    fn hashed_entries() {
        // ssh-keygen -H style: |1|base64(salt)|base64(hmac_sha1(salt, name))
        let salt = [7u8; 20];
        let mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&salt)
            .unwrap()
            .chain_update(b"[node2.lab]:2200")
            .finalize()
            .into_bytes();
        let entry = format!("|1|{}|{}", BASE64.encode(&salt), BASE64.encode(&mac));
        let files = vec![file("hashed", &format!("{entry} ssh-ed25519 {A}\n"))];
        assert_eq!(
            verify(&files, &host_entry_name("node2.lab", 2200), &key(A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            verify(&files, &host_entry_name("node2.lab", 22), &key(A)).unwrap(),
            Verdict::Unknown
        );
        assert!(matches!(
            verify(&files, &host_entry_name("node2.lab", 2200), &key(B)).unwrap(),
            Verdict::Changed { .. }
        ));
        // OpenSSH hashes the lower-case name: the host written in another case is the same
        // host, and another key for it is a changed key, not an unknown host.
        assert_eq!(
            verify(&files, &host_entry_name("NODE2.Lab", 2200), &key(A)).unwrap(),
            Verdict::Known
        );
        assert!(matches!(
            verify(&files, &host_entry_name("Node2.LAB", 2200), &key(B)).unwrap(),
            Verdict::Changed { .. }
        ));
        assert_eq!(host_entry_name("Node2.LAB", 22), "node2.lab");
    }

    #[test]
    fn wildcards_negation_and_revoked() {
        let files = vec![file(
            "wild",
            &format!("*.lab,!bad.lab ssh-ed25519 {A}\n@revoked * ssh-ed25519 {B}\n@cert-authority *.lab ssh-ed25519 {B}\n"),
        )];
        assert_eq!(
            verify(&files, &host_entry_name("n1.lab", 22), &key(A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(
            verify(&files, &host_entry_name("bad.lab", 22), &key(A)).unwrap(),
            Verdict::Unknown
        );
        assert!(matches!(
            verify(&files, &host_entry_name("n1.lab", 22), &key(B)).unwrap(),
            Verdict::Revoked { line: 2, .. }
        ));
        assert!(wildcard("n?.l*", "n1.lab"));
        assert!(!wildcard("n?.l*", "n12.lab"));
    }

    #[test]
    fn learn_appends_and_then_knows() {
        let p = file("learn", "other ssh-ed25519 AAAA"); // no trailing newline, bad key: skipped
        let name = key_name("10.1.1.1", 2222, None);
        learn(&p, &name, &key(A)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.ends_with(&format!("\n[10.1.1.1]:2222 ssh-ed25519 {A}\n")),
            "{text}"
        );
        assert_eq!(
            verify(std::slice::from_ref(&p), &name, &key(A)).unwrap(),
            Verdict::Known
        );
        assert_eq!(known_algorithms(&[p], &name), vec![key(A).algorithm()]);
    }

    #[test]
    fn a_host_key_alias_is_the_name_alone() {
        // OpenSSH's HostKeyAlias: looked up and recorded under the alias, without the port.
        assert_eq!(key_name("10.1.1.1", 2222, Some("Node2-Key")), "node2-key");
        let files = vec![file("alias", &format!("node2-key ssh-ed25519 {A}\n"))];
        assert_eq!(
            verify(
                &files,
                &key_name("10.1.1.1", 2222, Some("node2-key")),
                &key(A)
            )
            .unwrap(),
            Verdict::Known
        );
        assert_eq!(
            verify(&files, &key_name("10.1.1.1", 2222, None), &key(A)).unwrap(),
            Verdict::Unknown
        );
    }
}
