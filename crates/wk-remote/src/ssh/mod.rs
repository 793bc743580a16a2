//! The SSH [`Remote`]: one russh connection per host for a whole run, every command and tunnel a
//! channel on it.
//!
//! - Host keys are checked against known_hosts files ([`known_hosts`]); an unknown key is refused
//!   under `strict` and recorded under `accept-new`; a changed or revoked key is always refused.
//! - Authentication tries, in OpenSSH's order: the agent's keys (`SSH_AUTH_SOCK`), identity files
//!   (a passphrase asked through the [`Prompter`]), keyboard-interactive, password.
//! - `~/.ssh/config` (or another file) supplies HostName, User, Port, IdentityFile and ProxyJump
//!   where the caller did not.
//! - Jump hosts: the target's connection runs inside a direct-tcpip channel of the previous hop's,
//!   and every hop's host key is checked under its own name.
//! - A dropped connection makes the running operation fail ([`RemoteError::Disconnected`]); it is
//!   opened again only when the caller asks, between steps ([`SshRemote::reconnect_if_dropped`]).

pub mod config;
pub mod known_hosts;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tokio::sync::OnceCell;

use crate::{shell, ExecOutput, ExecRequest, Remote, RemoteError, Secret, Sudo, Tunnel};
use known_hosts::Verdict;

/// What to do with a host key that no known_hosts file has. There is no policy that accepts
/// any key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    Strict,
    AcceptNew,
}

/// One hop of a jump chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Hop {
    /// `[user@]host[:port]`, `[user@][v6addr]:port`, or `ssh://[user@]host[:port]`, as
    /// OpenSSH takes them (`ProxyJump`, the command line); what is none of these is an error.
    pub fn parse(s: &str) -> Result<Hop, String> {
        let bad = |why: &str| format!("`{s}` is not [user@]host[:port]: {why}");
        let uri = s.strip_prefix("ssh://");
        let body = uri.map(|r| r.trim_end_matches('/')).unwrap_or(s);
        let (user, rest) = match body.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => return Err(bad("an empty user")),
            None => (None, body),
        };
        let port_of = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("`{p}` is no port")))
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, tail) = r.split_once(']').ok_or_else(|| bad("no `]`"))?;
            match tail {
                "" => (h, None),
                t => match t.strip_prefix(':') {
                    Some(p) => (h, Some(port_of(p)?)),
                    None => return Err(bad("text after `]`")),
                },
            }
        } else {
            match rest.rsplit_once(':') {
                // An IPv6 address without brackets has no port.
                Some((h, _)) if h.contains(':') => (rest, None),
                Some((h, p)) => (h, Some(port_of(p)?)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(['/', ' ', '@']) {
            return Err(bad("not a host name"));
        }
        Ok(Hop {
            user,
            host: host.to_string(),
            port,
        })
    }
}

/// Where and how to connect. Fields left `None` or empty are filled from the ssh config file.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// The inventory's name for the host, used in every message.
    pub name: String,
    /// Address, or an alias of the ssh config file.
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_files: Vec<PathBuf>,
    /// Jump hosts, outermost first.
    pub jump: Vec<Hop>,
    pub host_key_policy: HostKeyPolicy,
    /// known_hosts files to read; the first is where `accept-new` records keys.
    pub known_hosts: Vec<PathBuf>,
    /// The ssh config file; `None` reads `~/.ssh/config` if it exists.
    pub ssh_config: Option<PathBuf>,
    /// The ssh-agent socket whose keys are tried first (`SSH_AUTH_SOCK` by default).
    pub agent_socket: Option<PathBuf>,
    pub sudo: Sudo,
    pub connect_timeout: Duration,
    /// Interval of keepalives; a connection that leaves three unanswered is closed as dead (a
    /// cut link is noticed within about four intervals, not at TCP's timeout).
    pub keepalive: Duration,
}

impl SshOptions {
    pub fn new(name: impl Into<String>, host: impl Into<String>) -> Self {
        SshOptions {
            name: name.into(),
            host: host.into(),
            port: None,
            user: None,
            identity_files: Vec::new(),
            jump: Vec::new(),
            host_key_policy: HostKeyPolicy::Strict,
            known_hosts: vec![default_known_hosts()],
            ssh_config: None,
            agent_socket: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
            sudo: Sudo::None,
            connect_timeout: Duration::from_secs(15),
            keepalive: Duration::from_secs(15),
        }
    }
}

/// Asks the operator for secrets. Implementations must never log what they return.
pub trait Prompter: Send + Sync {
    /// The passphrase of an encrypted key file.
    fn passphrase(&self, key_file: &std::path::Path) -> Option<Secret>;
    /// The login password of `user@host`.
    fn password(&self, user: &str, host: &str) -> Option<Secret>;
    /// Answers to keyboard-interactive prompts (text, whether to echo).
    fn keyboard_interactive(
        &self,
        user: &str,
        host: &str,
        prompts: &[(String, bool)],
    ) -> Option<Vec<Secret>>;
}

/// A prompter that knows nothing: only agent and unencrypted keys can work.
pub struct NoPrompt;

impl Prompter for NoPrompt {
    fn passphrase(&self, _: &std::path::Path) -> Option<Secret> {
        None
    }
    fn password(&self, _: &str, _: &str) -> Option<Secret> {
        None
    }
    fn keyboard_interactive(&self, _: &str, _: &str, _: &[(String, bool)]) -> Option<Vec<Secret>> {
        None
    }
}

/// The russh handler of one hop: checks the host key and remembers why it refused one.
struct Checker {
    name: String,
    addr: String,
    port: u16,
    /// The name the key is recorded under (`HostKeyAlias`, or `[addr]:port`).
    key_name: String,
    policy: HostKeyPolicy,
    files: Vec<PathBuf>,
    /// Where accept-new records a key (`None`: no user file to write to).
    record: Option<PathBuf>,
    refusal: Arc<Mutex<Option<RemoteError>>>,
}

impl Checker {
    fn refuse(&self, e: RemoteError) -> Result<bool, russh::Error> {
        *self.refusal.lock().expect("not poisoned") = Some(e);
        Ok(false)
    }
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return self.refuse(RemoteError::Other {
                    host: self.name.clone(),
                    message: format!("{} presented a host certificate; wkctl verifies plain host keys from known_hosts only", self.addr),
                })
            }
        };
        let fingerprint = known_hosts::fingerprint(key);
        let verdict = match known_hosts::verify(&self.files, &self.key_name, key) {
            Ok(v) => v,
            Err(e) => {
                return self.refuse(RemoteError::Other {
                    host: self.name.clone(),
                    message: format!("cannot read known_hosts: {e}"),
                })
            }
        };
        match verdict {
            Verdict::Known => Ok(true),
            Verdict::Changed { file, line } => self.refuse(RemoteError::ChangedHostKey {
                host: self.name.clone(),
                addr: self.key_name.clone(),
                fingerprint,
                file: file.display().to_string(),
                line,
            }),
            Verdict::Revoked { file, line } => self.refuse(RemoteError::RevokedHostKey {
                host: self.name.clone(),
                addr: self.key_name.clone(),
                fingerprint,
                file: file.display().to_string(),
                line,
            }),
            Verdict::Unknown => {
                let Some(record) = self.record.clone() else {
                    return self.refuse(RemoteError::Other {
                        host: self.name.clone(),
                        message: format!("host key {fingerprint} of {} is not known, and no known_hosts file may record it (the ssh config's UserKnownHostsFile is `none`, and the inventory names none); give the node `known_hosts:` in the inventory", self.key_name),
                    });
                };
                match self.policy {
                    HostKeyPolicy::Strict => self.refuse(RemoteError::UnknownHostKey {
                        host: self.name.clone(),
                        addr: self.addr.clone(),
                        port: self.port,
                        fingerprint,
                        known_hosts: record.display().to_string(),
                    }),
                    HostKeyPolicy::AcceptNew => {
                        match known_hosts::learn(&record, &self.key_name, key) {
                            Ok(()) => Ok(true),
                            Err(e) => self.refuse(RemoteError::Other {
                                host: self.name.clone(),
                                message: format!(
                                    "cannot record the host key in {}: {e}",
                                    record.display()
                                ),
                            }),
                        }
                    }
                }
            }
        }
    }
}

/// A live connection: the target's handle and the hops it runs through (kept alive with it).
struct Conn {
    handle: Handle<Checker>,
    _hops: Vec<Handle<Checker>>,
}

/// The SSH remote of one host.
pub struct SshRemote {
    opts: SshOptions,
    prompter: Arc<dyn Prompter>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    connects: AtomicUsize,
    commands: AtomicUsize,
    sudo_checked: OnceCell<()>,
}

impl std::fmt::Debug for SshRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshRemote")
            .field("host", &self.opts.name)
            .finish()
    }
}

/// Where one hop connects, after the ssh config file has filled in what was left open.
#[derive(Debug, Clone)]
struct Resolved {
    addr: String,
    port: u16,
    user: String,
    identity_files: Vec<PathBuf>,
    jump: Vec<Hop>,
    /// The known_hosts files to read, the one accept-new writes, and the key's name in them.
    known_hosts: Vec<PathBuf>,
    record: Option<PathBuf>,
    key_name: String,
}

/// OpenSSH's default user known_hosts file, `~/.ssh/known_hosts`.
fn default_known_hosts() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".ssh/known_hosts")
}

/// The known_hosts files for a host, as OpenSSH takes them: the options' files (the inventory's
/// first), the ssh config's `UserKnownHostsFile` in place of the default `~/.ssh/known_hosts`,
/// then `GlobalKnownHostsFile` (default `/etc/ssh/ssh_known_hosts` and `…2`), which are read,
/// never written. Also where accept-new records: the first file that is not a global one.
fn known_hosts_files(
    opts: &[PathBuf],
    cfg: &config::HostConfig,
) -> (Vec<PathBuf>, Option<PathBuf>) {
    let default_user = default_known_hosts();
    let mut files: Vec<PathBuf> = opts.to_vec();
    if let Some(user) = &cfg.user_known_hosts {
        files.retain(|f| f != &default_user);
        files.extend(user.iter().cloned());
    }
    let record = files.first().cloned();
    let global = cfg.global_known_hosts.clone().unwrap_or_else(|| {
        vec![
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2"),
        ]
    });
    for g in global {
        if !files.contains(&g) {
            files.push(g);
        }
    }
    (files, record)
}

/// One authentication: who, where, the RSA signature hash the server takes, what was tried.
struct Auth<'a> {
    user: &'a str,
    addr: &'a str,
    name: &'a str,
    rsa_hash: Option<russh::keys::HashAlg>,
    tried: Vec<String>,
    /// How long one round trip of authentication may take (the connect timeout).
    limit: Duration,
}

impl Auth<'_> {
    /// One round trip of authentication, bounded: a server that takes the connection and then
    /// never answers (a stuck PAM or directory lookup) would otherwise hold the run for ever.
    /// Prompts for a passphrase or password happen between round trips, never inside one.
    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, RemoteError> {
        tokio::time::timeout(self.limit, fut)
            .await
            .map_err(|_| RemoteError::Connect {
                host: self.name.to_string(),
                addr: self.addr.to_string(),
                message: format!(
                    "the server did not answer during authentication within {} s; check that sshd on the host works (`ssh -v` shows where it stops), then run again",
                    self.limit.as_secs()
                ),
            })
    }

    /// A bounded round trip whose error is russh's.
    async fn ask<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, russh::Error>>,
    ) -> Result<T, RemoteError> {
        self.bounded(fut).await?.map_err(|e| self.err(e))
    }

    fn err(&self, e: russh::Error) -> RemoteError {
        RemoteError::Connect {
            host: self.name.to_string(),
            addr: self.addr.to_string(),
            message: format!("during authentication: {e}"),
        }
    }

    /// The hash to sign with for a key of `alg` (RSA keys only).
    fn hash_for(&self, alg: russh::keys::Algorithm) -> Option<russh::keys::HashAlg> {
        if matches!(alg, russh::keys::Algorithm::Rsa { .. }) {
            self.rsa_hash
        } else {
            None
        }
    }
}

impl SshRemote {
    /// Connects (through the jump hosts, if any) and authenticates.
    pub async fn connect(
        opts: SshOptions,
        prompter: Arc<dyn Prompter>,
    ) -> Result<SshRemote, RemoteError> {
        let r = SshRemote {
            opts,
            prompter,
            conn: tokio::sync::Mutex::new(None),
            connects: AtomicUsize::new(0),
            commands: AtomicUsize::new(0),
            sudo_checked: OnceCell::new(),
        };
        let c = r.open().await?;
        *r.conn.lock().await = Some(Arc::new(c));
        Ok(r)
    }

    /// How many times a connection to the target was opened (1 for a run without drops).
    pub fn connections_opened(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }

    /// How many commands ran on the host (each one channel), file operations included.
    pub fn commands_run(&self) -> usize {
        self.commands.load(Ordering::SeqCst)
    }

    /// Between steps: opens the connection again if it was lost. Never called mid-step.
    pub async fn reconnect_if_dropped(&self) -> Result<bool, RemoteError> {
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_some_and(|c| !c.handle.is_closed()) {
            return Ok(false);
        }
        let c = self.open().await?;
        *guard = Some(Arc::new(c));
        Ok(true)
    }

    /// Closes the connection politely.
    pub async fn close(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            let _ = c
                .handle
                .disconnect(russh::Disconnect::ByApplication, "wkctl is done", "en")
                .await;
        }
    }

    async fn current(&self) -> Result<Arc<Conn>, RemoteError> {
        match self.conn.lock().await.as_ref() {
            Some(c) if !c.handle.is_closed() => Ok(c.clone()),
            _ => Err(RemoteError::Disconnected {
                host: self.opts.name.clone(),
                context: String::new(),
            }),
        }
    }

    fn resolve(
        &self,
        host: &str,
        port: Option<u16>,
        user: Option<&str>,
        ids: &[PathBuf],
        jump: &[Hop],
    ) -> Result<Resolved, RemoteError> {
        let params = config::lookup(self.opts.ssh_config.as_deref(), host).map_err(|message| {
            RemoteError::Other {
                host: self.opts.name.clone(),
                message,
            }
        })?;
        let jump = if !jump.is_empty() {
            jump.to_vec()
        } else {
            params
                .proxy_jump
                .iter()
                .map(|j| Hop::parse(j))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RemoteError::Other {
                    host: self.opts.name.clone(),
                    message: format!("the ssh config's ProxyJump for {host}: {e}"),
                })?
        };
        let addr = params.host_name.clone().unwrap_or_else(|| host.to_string());
        let port = port.or(params.port).unwrap_or(22);
        let (known_hosts, record) = known_hosts_files(&self.opts.known_hosts, &params);
        Ok(Resolved {
            key_name: known_hosts::key_name(&addr, port, params.host_key_alias.as_deref()),
            known_hosts,
            record,
            addr,
            port,
            user: user
                .map(str::to_string)
                .or(params.user.clone())
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "root".into()),
            identity_files: if ids.is_empty() {
                params.identity_files.clone()
            } else {
                ids.to_vec()
            },
            jump,
        })
    }

    fn client_config(&self, r: &Resolved) -> Arc<client::Config> {
        let mut preferred = russh::Preferred::default();
        // Ask first for the key types known_hosts has for this host, as OpenSSH does, so a host
        // with several keys presents one we can verify.
        let known = known_hosts::known_algorithms(&r.known_hosts, &r.key_name);
        if !known.is_empty() {
            let mut order: Vec<russh::keys::Algorithm> = known;
            for a in preferred.key.iter() {
                if !order.contains(a) {
                    order.push(a.clone());
                }
            }
            preferred.key = order.into();
        }
        Arc::new(client::Config {
            preferred,
            inactivity_timeout: None,
            keepalive_interval: Some(self.opts.keepalive),
            keepalive_max: 3,
            nodelay: true,
            ..client::Config::default()
        })
    }

    async fn open(&self) -> Result<Conn, RemoteError> {
        let target = self.resolve(
            &self.opts.host,
            self.opts.port,
            self.opts.user.as_deref(),
            &self.opts.identity_files,
            &self.opts.jump,
        )?;
        let mut hops = Vec::new();
        let mut via: Option<&Handle<Checker>> = None;
        for hop in &target.jump {
            let mut r = self.resolve(&hop.host, hop.port, hop.user.as_deref(), &[], &[])?;
            // A hop the ssh config says nothing about uses the target's keys.
            if r.identity_files.is_empty() {
                r.identity_files = target.identity_files.clone();
            }
            let h = self
                .handshake(&r, via, &format!("jump host {}", hop.host))
                .await?;
            hops.push(h);
            via = hops.last();
        }
        let handle = self.handshake(&target, via, "").await?;
        self.connects.fetch_add(1, Ordering::SeqCst);
        Ok(Conn {
            handle,
            _hops: hops,
        })
    }

    /// TCP (or a channel of the previous hop), host key, authentication.
    async fn handshake(
        &self,
        r: &Resolved,
        via: Option<&Handle<Checker>>,
        what: &str,
    ) -> Result<Handle<Checker>, RemoteError> {
        let name = if what.is_empty() {
            self.opts.name.clone()
        } else {
            format!("{} ({what})", self.opts.name)
        };
        let refusal = Arc::new(Mutex::new(None));
        let checker = Checker {
            name: name.clone(),
            addr: r.addr.clone(),
            port: r.port,
            key_name: r.key_name.clone(),
            policy: self.opts.host_key_policy,
            files: r.known_hosts.clone(),
            record: r.record.clone(),
            refusal: refusal.clone(),
        };
        let config = self.client_config(r);
        let endpoint = known_hosts::host_entry_name(&r.addr, r.port);
        let connect_err = |message: String| RemoteError::Connect {
            host: name.clone(),
            addr: endpoint.clone(),
            message,
        };
        let fut = async {
            match via {
                None => client::connect(config, (r.addr.as_str(), r.port), checker).await,
                Some(prev) => {
                    let ch = prev
                        .channel_open_direct_tcpip(r.addr.clone(), r.port as u32, "127.0.0.1", 0)
                        .await?;
                    client::connect_stream(config, ch.into_stream(), checker).await
                }
            }
        };
        let mut handle = match tokio::time::timeout(self.opts.connect_timeout, fut).await {
            Err(_) => {
                return Err(connect_err(format!(
                    "no answer within {} s; check the address, the port and that sshd runs",
                    self.opts.connect_timeout.as_secs()
                )))
            }
            Ok(Err(e)) => {
                if let Some(refused) = refusal.lock().expect("not poisoned").take() {
                    return Err(refused);
                }
                return Err(connect_err(e.to_string()));
            }
            Ok(Ok(h)) => h,
        };
        self.authenticate(&mut handle, r, &name).await?;
        Ok(handle)
    }

    async fn authenticate(
        &self,
        h: &mut Handle<Checker>,
        r: &Resolved,
        name: &str,
    ) -> Result<(), RemoteError> {
        let mut a = Auth {
            user: r.user.as_str(),
            addr: &r.addr,
            name,
            rsa_hash: None,
            tried: Vec::new(),
            limit: self.opts.connect_timeout,
        };
        a.rsa_hash = a.ask(h.best_supported_rsa_hash()).await?.flatten();
        // The agent's keys, the identity files (asking for a passphrase when one is encrypted),
        // keyboard-interactive and the password (answered by the prompter), in that order.
        if self.by_agent(h, &mut a).await?
            || self.by_files(h, r, &mut a).await?
            || self.by_keyboard(h, &mut a).await?
            || self.by_password(h, &mut a).await?
        {
            return Ok(());
        }
        let tried = a.tried;
        Err(RemoteError::Auth {
            host: name.to_string(),
            user: a.user.to_string(),
            tried: if tried.is_empty() { "nothing: no agent, key or password".into() } else { tried.join(", ") },
            hint: "check the user, add the key to the agent or to `identity_files`, or check the password".into(),
        })
    }

    /// The agent's keys; an agent that does not work (or does not answer) is passed over.
    async fn by_agent(
        &self,
        h: &mut Handle<Checker>,
        a: &mut Auth<'_>,
    ) -> Result<bool, RemoteError> {
        let Some(sock) = &self.opts.agent_socket else {
            return Ok(false);
        };
        let Ok(Ok(mut agent)) = a.bounded(AgentClient::connect_uds(sock)).await else {
            return Ok(false);
        };
        let Ok(Ok(ids)) = a.bounded(agent.request_identities()).await else {
            return Ok(false);
        };
        for id in ids {
            let key = id.public_key().into_owned();
            a.tried.push("agent key".to_string());
            let hash = a.hash_for(key.algorithm());
            let answer = a
                .bounded(h.authenticate_publickey_with(a.user, key, hash, &mut agent))
                .await?;
            if let Ok(AuthResult::Success) = answer {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn by_files(
        &self,
        h: &mut Handle<Checker>,
        r: &Resolved,
        a: &mut Auth<'_>,
    ) -> Result<bool, RemoteError> {
        let files: Vec<PathBuf> = if r.identity_files.is_empty() {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|f| home.join(".ssh").join(f))
                .filter(|p| p.exists())
                .collect()
        } else {
            r.identity_files.clone()
        };
        for file in &files {
            let Some(key) = self.load_key(file, &mut a.tried) else {
                continue;
            };
            a.tried.push(file.display().to_string());
            let hash = a.hash_for(key.algorithm());
            let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
            if let AuthResult::Success = a.ask(h.authenticate_publickey(a.user, key)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A private key file, with the prompter's passphrase when it is encrypted; what went wrong
    /// is added to `tried`.
    fn load_key(&self, file: &Path, tried: &mut Vec<String>) -> Option<russh::keys::PrivateKey> {
        match russh::keys::load_secret_key(file, None) {
            Ok(k) => Some(k),
            Err(russh::keys::Error::KeyIsEncrypted) => {
                let Some(pass) = self.prompter.passphrase(file) else {
                    tried.push(format!(
                        "{} (encrypted; no passphrase given)",
                        file.display()
                    ));
                    return None;
                };
                match russh::keys::load_secret_key(file, Some(pass.expose())) {
                    Ok(k) => Some(k),
                    Err(_) => {
                        tried.push(format!("{} (wrong passphrase)", file.display()));
                        None
                    }
                }
            }
            Err(e) => {
                tried.push(format!("{} (unreadable: {e})", file.display()));
                None
            }
        }
    }

    async fn by_keyboard(
        &self,
        h: &mut Handle<Checker>,
        a: &mut Auth<'_>,
    ) -> Result<bool, RemoteError> {
        let mut resp = a
            .ask(h.authenticate_keyboard_interactive_start(a.user, None::<String>))
            .await?;
        let mut asked = false;
        loop {
            match resp {
                KeyboardInteractiveAuthResponse::Success => return Ok(true),
                KeyboardInteractiveAuthResponse::Failure { .. } => break,
                KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                    let ps: Vec<(String, bool)> =
                        prompts.iter().map(|p| (p.prompt.clone(), p.echo)).collect();
                    let answers = if ps.is_empty() {
                        Some(Vec::new())
                    } else {
                        asked = true;
                        self.prompter.keyboard_interactive(a.user, a.addr, &ps)
                    };
                    // Declined: answer empty so the server ends this exchange; leaving it
                    // open would leave the next method's request unanswered.
                    let declined = answers.is_none();
                    let answers =
                        answers.unwrap_or_else(|| ps.iter().map(|_| Secret::default()).collect());
                    resp = a
                        .ask(h.authenticate_keyboard_interactive_respond(
                            answers.iter().map(|a| a.expose().to_string()).collect(),
                        ))
                        .await?;
                    if declined {
                        if let KeyboardInteractiveAuthResponse::Success = resp {
                            return Ok(true);
                        }
                        break;
                    }
                }
            }
        }
        if asked {
            a.tried.push("keyboard-interactive".into());
        }
        Ok(false)
    }

    async fn by_password(
        &self,
        h: &mut Handle<Checker>,
        a: &mut Auth<'_>,
    ) -> Result<bool, RemoteError> {
        let Some(pw) = self.prompter.password(a.user, a.addr) else {
            return Ok(false);
        };
        a.tried.push("password".into());
        Ok(matches!(
            a.ask(h.authenticate_password(a.user, pw.expose())).await?,
            AuthResult::Success
        ))
    }

    /// Makes sure sudo works as configured, once per connection; a wrong password is an error
    /// here, before any command could read it as input.
    async fn check_sudo(&self, conn: &Conn) -> Result<(), RemoteError> {
        self.sudo_checked
            .get_or_try_init(|| async {
                // The password's copy on its way to stdin is zeroed when dropped.
                let (cmd, stdin) = match &self.opts.sudo {
                    Sudo::None => return Ok(()),
                    Sudo::Passwordless => ("sudo -n true".to_string(), zeroize::Zeroizing::new(Vec::new())),
                    Sudo::Password(p) => {
                        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(p.expose().len() + 1));
                        bytes.extend_from_slice(p.expose().as_bytes());
                        bytes.push(b'\n');
                        ("sudo -k -S -p '' -v".to_string(), bytes)
                    }
                };
                let out = self
                    .channel_exec(conn, &cmd, &stdin, Duration::from_secs(30))
                    .await?;
                if out.success() {
                    Ok(())
                } else {
                    let message = match &self.opts.sudo {
                        Sudo::Passwordless => "sudo asks for a password; set `sudo: password` for this node, or allow the user NOPASSWD".to_string(),
                        _ => "the sudo password was not accepted; check it and run again".to_string(),
                    };
                    Err(RemoteError::Sudo {
                        host: self.opts.name.clone(),
                        message,
                    })
                }
            })
            .await
            .map(|_| ())
    }

    async fn channel_exec(
        &self,
        conn: &Conn,
        command: &str,
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, RemoteError> {
        let host = self.opts.name.clone();
        let lost = |what: &str| RemoteError::Disconnected {
            host: host.clone(),
            context: format!(" while running `{}` ({what})", shell::first_line(command)),
        };
        let timed_out = || RemoteError::Timeout {
            host: host.clone(),
            command: shell::first_line(command).to_string(),
            secs: timeout.as_secs(),
        };
        self.commands.fetch_add(1, Ordering::SeqCst);
        // One deadline for all of it: a server that never opens the channel or never starts
        // the command fails the same way as a command that never ends.
        let deadline = tokio::time::Instant::now() + timeout;
        let channel = tokio::time::timeout_at(deadline, conn.handle.channel_open_session())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| lost("opening a channel"))?;
        match tokio::time::timeout_at(deadline, channel.exec(true, command)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(lost("starting it")),
            Err(_) => {
                let _ = channel.close().await;
                return Err(timed_out());
            }
        }
        let (mut read, write) = channel.split();
        let write = Arc::new(write);
        let input = stdin.to_vec();
        let w = write.clone();
        let writer = tokio::spawn(async move {
            if !input.is_empty() {
                w.data(&input[..]).await?;
            }
            w.eof().await?;
            Ok::<_, russh::Error>(())
        });
        let collect = async {
            let mut out = ExecOutput::default();
            // Drain to the end: the exit status may come after EOF, and only Close (or the
            // channel ending) means nothing more will come.
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.signal = Some(format!("{signal_name:?}"))
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            out
        };
        let out = match tokio::time::timeout_at(deadline, collect).await {
            Ok(o) => o,
            Err(_) => {
                writer.abort();
                // Closing the channel would leave the command running on the host (no
                // terminal, no hang-up). sshd passes a channel's signal to the command's
                // process group (sudo relays it to what it runs): TERM, then KILL, and the
                // channel's end is awaited so nothing of it outlives the error.
                for (sig, grace) in [(russh::Sig::TERM, 3), (russh::Sig::KILL, 2)] {
                    if write.signal(sig).await.is_err() {
                        break;
                    }
                    let ended = async { while read.wait().await.is_some() {} };
                    if tokio::time::timeout(Duration::from_secs(grace), ended)
                        .await
                        .is_ok()
                    {
                        break;
                    }
                }
                let _ = write.close().await;
                return Err(timed_out());
            }
        };
        // Keep the write half until the end, so the channel is not closed under the reader.
        let _write = writer.await;
        if out.status.is_none() && out.signal.is_none() {
            return Err(lost("no exit status came back"));
        }
        Ok(out)
    }
}

impl Remote for SshRemote {
    fn name(&self) -> &str {
        &self.opts.name
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, RemoteError> {
        let conn = self.current().await?;
        if !req.sudo && !req.sudo_inside {
            return self
                .channel_exec(&conn, &req.command, &req.stdin, req.timeout)
                .await;
        }
        self.check_sudo(&conn).await?;
        let (command, password) = if req.sudo {
            shell::sudo_wrap(&self.opts.sudo, &req.command)
        } else {
            (req.command.clone(), shell::sudo_password(&self.opts.sudo))
        };
        let mut stdin = Vec::with_capacity(req.stdin.len() + 64);
        if let Some(p) = password {
            stdin.extend_from_slice(p.expose().as_bytes());
            stdin.push(b'\n');
        }
        stdin.extend_from_slice(&req.stdin);
        let out = self
            .channel_exec(&conn, &command, &stdin, req.timeout)
            .await;
        zeroize::Zeroize::zeroize(&mut stdin);
        out
    }

    async fn tunnel(&self, host: &str, port: u16) -> Result<Tunnel, RemoteError> {
        let conn = self.current().await?;
        let target = host.to_string();
        Tunnel::open(&self.opts.name, host, port, move |listener| {
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let conn = conn.clone();
                    let t = target.clone();
                    tokio::spawn(async move {
                        // The originator is this machine's end of the connection: a Unix
                        // socket has no address, and sshd needs none to forward.
                        let Ok(ch) = conn
                            .handle
                            .channel_open_direct_tcpip(t, port as u32, "127.0.0.1", 0)
                            .await
                        else {
                            return;
                        };
                        let mut stream = ch.into_stream();
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut stream).await;
                    });
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(user: Option<&str>, host: &str, port: Option<u16>) -> Hop {
        Hop {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn hops_as_openssh_writes_them() {
        assert_eq!(Hop::parse("bastion"), Ok(hop(None, "bastion", None)));
        assert_eq!(
            Hop::parse("ops@bastion:2200"),
            Ok(hop(Some("ops"), "bastion", Some(2200)))
        );
        assert_eq!(
            Hop::parse("ssh://ops@bastion:2200"),
            Ok(hop(Some("ops"), "bastion", Some(2200)))
        );
        assert_eq!(Hop::parse("ssh://bastion/"), Ok(hop(None, "bastion", None)));
        assert_eq!(
            Hop::parse("[fd00::1]:2222"),
            Ok(hop(None, "fd00::1", Some(2222)))
        );
        assert_eq!(Hop::parse("fd00::1"), Ok(hop(None, "fd00::1", None)));
        // What is none of these is said, not dropped.
        for bad in [
            "",
            "ops@",
            "@bastion",
            "bastion:",
            "bastion:99999",
            "bastion:x",
            "[fd00::1",
            "[fd00::1]x",
            "ssh://",
        ] {
            let e = Hop::parse(bad).unwrap_err();
            assert!(e.contains("is not [user@]host[:port]"), "{bad}: {e}");
        }
    }

    #[test]
    fn known_hosts_files_follow_the_ssh_config() {
        let home = PathBuf::from(std::env::var("HOME").unwrap());
        let inv = PathBuf::from("/ops/inventory_known_hosts");
        let user_default = home.join(".ssh/known_hosts");
        let global = [
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2"),
        ];
        // Nothing in the config: the options' files, then the global ones (read only).
        let (files, record) = known_hosts_files(
            &[inv.clone(), user_default.clone()],
            &config::HostConfig::default(),
        );
        assert_eq!(
            files,
            [
                inv.clone(),
                user_default.clone(),
                global[0].clone(),
                global[1].clone()
            ]
        );
        assert_eq!(record.as_ref(), Some(&inv));
        // UserKnownHostsFile replaces the default user file and records; GlobalKnownHostsFile
        // replaces the global ones.
        let cfg = config::HostConfig {
            user_known_hosts: Some(vec![PathBuf::from("/ops/kh")]),
            global_known_hosts: Some(vec![PathBuf::from("/ops/global")]),
            ..Default::default()
        };
        let (files, record) = known_hosts_files(std::slice::from_ref(&user_default), &cfg);
        assert_eq!(
            files,
            [PathBuf::from("/ops/kh"), PathBuf::from("/ops/global")]
        );
        assert_eq!(record, Some(PathBuf::from("/ops/kh")));
        // `UserKnownHostsFile none`: nothing may record a new key.
        let cfg = config::HostConfig {
            user_known_hosts: Some(vec![]),
            ..Default::default()
        };
        let (files, record) = known_hosts_files(std::slice::from_ref(&user_default), &cfg);
        assert_eq!(files, global);
        assert_eq!(record, None);
    }
}
