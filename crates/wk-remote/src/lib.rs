//! How wkctl reaches its hosts: the [`Remote`] interface, its SSH implementation on russh
//! ([`ssh::SshRemote`]) and one on the local machine ([`local::LocalRemote`]) for engine tests.
//!
//! Every operation is a shell command on the host (file operations are small POSIX scripts from
//! [`shell`]), so both implementations share one mechanism and differ only in how the command
//! travels. Errors carry the host; callers add the step.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub mod local;
pub mod shell;
pub mod ssh;

pub use local::LocalRemote;
pub use ssh::SshRemote;

/// A secret (password, passphrase): never printed, zeroed when dropped.
#[derive(Clone, Default)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(zeroize::Zeroizing::new(s.into()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How commands that need root run on a host.
#[derive(Debug, Clone, Default)]
pub enum Sudo {
    /// The user runs everything itself.
    #[default]
    None,
    /// `sudo -n`: sudo must not ask.
    Passwordless,
    /// `sudo -k -S`: the password goes on stdin ahead of the command's input, never on a command line.
    Password(Secret),
}

/// How long a command may run when its request does not say: every file operation, `ps`,
/// `nginx -t`, a reload or a log read ends well inside it; compose calls and image pulls ask
/// for more. No command waits for ever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// A command to run on a host.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// A `sh` command line.
    pub command: String,
    /// Bytes for the command's stdin (closed after them).
    pub stdin: Vec<u8>,
    /// Run through the host's sudo.
    pub sudo: bool,
    /// The command calls `sudo -k -S` itself (as the plan shows it, e.g. `cd dir && sudo -k -S -p ''
    /// docker compose up -d`): sudo is checked first, and in password mode the password goes first
    /// on stdin. Nothing else changes in the command line.
    pub sudo_inside: bool,
    /// Give up (and end the command on the host) after this long, counted from the moment
    /// the channel is asked for; [`DEFAULT_TIMEOUT`] unless set.
    pub timeout: Duration,
}

impl Default for ExecRequest {
    fn default() -> Self {
        ExecRequest {
            command: String::new(),
            stdin: Vec::new(),
            sudo: false,
            sudo_inside: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl ExecRequest {
    pub fn new(command: impl Into<String>) -> Self {
        ExecRequest {
            command: command.into(),
            ..ExecRequest::default()
        }
    }
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = data.into();
        self
    }
    pub fn sudo(mut self, sudo: bool) -> Self {
        self.sudo = sudo;
        self
    }
    pub fn sudo_inside(mut self, yes: bool) -> Self {
        self.sudo_inside = yes;
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
}

/// What a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The exit status; `None` when the command was ended by a signal.
    pub status: Option<u32>,
    /// The signal that ended it, if one did.
    pub signal: Option<String>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A file as it is on the host: content and mode bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileImage {
    pub content: Vec<u8>,
    pub mode: u32,
}

/// What `stat` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub is_dir: bool,
    pub mode: u32,
    pub size: u64,
}

/// A local socket that reaches `target` on the far side of the host's connection. It is a Unix
/// socket in a directory of its own that only this user can enter (0700): no other local user
/// can use the host's connection through it, as any could through a port on 127.0.0.1. The
/// socket and its directory go when the tunnel is dropped.
#[derive(Debug)]
pub struct Tunnel {
    /// Where to connect (an HTTP client sends its requests here, `target` as their host).
    pub socket: PathBuf,
    /// `host:port` as seen from the far side (IPv6 in brackets), fit for a URL's authority.
    pub target: String,
    dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Tunnel {
    /// A listener in a fresh private directory, for a tunnel of host `name` to `host:port`;
    /// `serve` is given the listener and returns the task that forwards its connections.
    pub(crate) fn open(
        name: &str,
        host: &str,
        port: u16,
        serve: impl FnOnce(tokio::net::UnixListener) -> tokio::task::JoinHandle<()>,
    ) -> Result<Tunnel, RemoteError> {
        use std::os::unix::fs::DirBuilderExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let err = |what: &str, e: std::io::Error| RemoteError::Other {
            host: name.to_string(),
            message: format!(
                "cannot open a local socket for the tunnel to {host}:{port} ({what}): {e}"
            ),
        };
        let mut salt = [0u8; 6];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").map_err(|e| err("/dev/urandom", e))?,
            &mut salt,
        )
        .map_err(|e| err("/dev/urandom", e))?;
        let salt: String = salt.iter().map(|b| format!("{b:02x}")).collect();
        let leaf = format!(
            "wkctl-{}-{}-{salt}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        // A socket's path must fit in sun_path (108 bytes): a long TMPDIR falls back to /tmp.
        let base = std::env::temp_dir();
        let base = if base.as_os_str().len() + leaf.len() > 90 {
            PathBuf::from("/tmp")
        } else {
            base
        };
        let dir = base.join(leaf);
        // mkdir fails on anything already there (a planted link or directory): never reused.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| err(&dir.display().to_string(), e))?;
        let socket = dir.join("s");
        let listener = match tokio::net::UnixListener::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(err(&socket.display().to_string(), e));
            }
        };
        Ok(Tunnel {
            socket,
            target: authority(host, port),
            dir,
            task: serve(listener),
        })
    }
}

/// `host:port`, an IPv6 address in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Why an operation on a host failed. Every variant names the host.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{host}: cannot connect to {addr}: {message}")]
    Connect {
        host: String,
        addr: String,
        message: String,
    },
    #[error("{host}: host key {fingerprint} of {addr} (port {port}) is not known; wkctl refuses to connect until it is verified out of band:\n  on the host's console (or over a connection you already trust) run `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` and compare its SHA256 fingerprint with {fingerprint}\n  only if they are the same, record it: `ssh-keyscan -p {port} {addr} > key.tmp && ssh-keygen -lf key.tmp` (the same fingerprint again), then `cat key.tmp >> {known_hosts}`\n  or set `host_key_policy: accept-new` for this node to record it on first contact (trusting that first contact)")]
    UnknownHostKey {
        host: String,
        addr: String,
        port: u16,
        fingerprint: String,
        known_hosts: String,
    },
    #[error("{host}: HOST KEY CHANGED: {addr} now presents {fingerprint}, which differs from the key recorded in {file}:{line}. Someone may be intercepting the connection, or the host was reinstalled. wkctl refuses to connect. If the change is expected, remove line {line} of {file} (ssh-keygen -R) and accept the new key")]
    ChangedHostKey {
        host: String,
        addr: String,
        fingerprint: String,
        file: String,
        line: usize,
    },
    #[error("{host}: host key {fingerprint} of {addr} is marked @revoked in {file}:{line}; wkctl refuses to connect")]
    RevokedHostKey {
        host: String,
        addr: String,
        fingerprint: String,
        file: String,
        line: usize,
    },
    #[error("{host}: authentication as {user} failed (tried: {tried}); {hint}")]
    Auth {
        host: String,
        user: String,
        tried: String,
        hint: String,
    },
    #[error("{host}: sudo refused: {message}")]
    Sudo { host: String, message: String },
    #[error("{host}: the connection was lost{context}; the step was not finished: run it again (wkctl resume)")]
    Disconnected { host: String, context: String },
    #[error("{host}: `{command}` did not finish within {secs} s and was stopped")]
    Timeout {
        host: String,
        command: String,
        secs: u64,
    },
    #[error("{host}: {path}: {message}")]
    File {
        host: String,
        path: String,
        message: String,
    },
    #[error("{host}: {message}")]
    Other { host: String, message: String },
}

/// The operations wkctl performs on a host.
pub trait Remote: Send + Sync {
    /// The host's name (the inventory's), used in every error.
    fn name(&self) -> &str;

    /// Runs a command; a non-zero exit is not an error here: look at `status`.
    fn exec(
        &self,
        req: ExecRequest,
    ) -> impl Future<Output = Result<ExecOutput, RemoteError>> + Send;

    /// Opens a local socket that reaches `host:port` as seen from this host (see [`Tunnel`]).
    fn tunnel(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = Result<Tunnel, RemoteError>> + Send;

    /// Runs a command and fails unless it exits 0, with its stderr in the message.
    fn run(
        &self,
        req: ExecRequest,
    ) -> impl Future<Output = Result<ExecOutput, RemoteError>> + Send {
        async move {
            let command = req.command.clone();
            let out = self.exec(req).await?;
            if out.success() {
                Ok(out)
            } else {
                Err(RemoteError::Other {
                    host: self.name().to_string(),
                    message: format!(
                        "`{}` failed ({}): {}",
                        shell::first_line(&command),
                        match (&out.status, &out.signal) {
                            (Some(s), _) => format!("exit {s}"),
                            (None, Some(sig)) => format!("signal {sig}"),
                            _ => "no exit status".into(),
                        },
                        out.stderr_str().trim()
                    ),
                })
            }
        }
    }

    /// Reads a file: `None` when it does not exist.
    fn read_file(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<FileImage>, RemoteError>> + Send {
        async move {
            let out = self.exec(ExecRequest::new(shell::read_file(path))).await?;
            shell::parse_read_file(self.name(), path, out)
        }
    }

    /// Writes a file atomically: a temp file in the same directory, fsync, rename, fsync of the
    /// directory; an upload cut short leaves the file as it was. `mode` `None` keeps the mode of the file it replaces (0644 for a new one).
    fn write_file(
        &self,
        path: &str,
        content: &[u8],
        mode: Option<u32>,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send {
        self.write_file_as(path, content, mode, shell::Replace::Rename)
    }

    /// Writes a file as [`Remote::write_file`] does, an existing one replaced as `how` says
    /// ([`shell::Replace::KeepInode`] for a file a container bind-mounts on its own).
    fn write_file_as(
        &self,
        path: &str,
        content: &[u8],
        mode: Option<u32>,
        how: shell::Replace,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send {
        let req = ExecRequest::new(shell::write_file(path, mode, content.len(), how))
            .stdin(content.to_vec());
        async move {
            let out = self.exec(req).await?;
            shell::check_file_op(self.name(), path, out)
        }
    }

    fn stat(&self, path: &str) -> impl Future<Output = Result<Option<Stat>, RemoteError>> + Send {
        async move {
            let out = self.exec(ExecRequest::new(shell::stat(path))).await?;
            shell::parse_stat(self.name(), path, out)
        }
    }

    fn exists(&self, path: &str) -> impl Future<Output = Result<bool, RemoteError>> + Send {
        async move { Ok(self.stat(path).await?.is_some()) }
    }

    /// `mkdir -p`, with `mode` for the directories it creates.
    fn mkdir_p(
        &self,
        path: &str,
        mode: u32,
    ) -> impl Future<Output = Result<(), RemoteError>> + Send {
        async move {
            let out = self
                .exec(ExecRequest::new(shell::mkdir_p(path, mode)))
                .await?;
            shell::check_file_op(self.name(), path, out)
        }
    }

    /// Removes a file, or an empty directory; a missing path is not an error.
    fn remove(&self, path: &str) -> impl Future<Output = Result<(), RemoteError>> + Send {
        async move {
            let out = self.exec(ExecRequest::new(shell::remove(path))).await?;
            shell::check_file_op(self.name(), path, out)
        }
    }
}
