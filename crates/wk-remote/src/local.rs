//! A [`Remote`] on this machine: commands run under `sh` with `HOME` set to a directory of the
//! caller's choosing, so `~/wukongim` lands inside it. The engine's tests use it to run every step
//! without SSH; the file operations are the same scripts the SSH remote runs.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{shell, ExecOutput, ExecRequest, Remote, RemoteError, Sudo, Tunnel};

#[derive(Debug, Clone)]
pub struct LocalRemote {
    name: String,
    home: PathBuf,
    sudo: Sudo,
}

impl LocalRemote {
    /// A host called `name` whose home directory is `home` (created if missing).
    pub fn new(name: impl Into<String>, home: impl Into<PathBuf>) -> std::io::Result<Self> {
        let home = home.into();
        std::fs::create_dir_all(&home)?;
        Ok(LocalRemote {
            name: name.into(),
            home: home.canonicalize()?,
            sudo: Sudo::None,
        })
    }

    pub fn with_sudo(mut self, sudo: Sudo) -> Self {
        self.sudo = sudo;
        self
    }

    pub fn home(&self) -> &std::path::Path {
        &self.home
    }
}

impl Remote for LocalRemote {
    fn name(&self) -> &str {
        &self.name
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, RemoteError> {
        let (command, password) = if req.sudo {
            shell::sudo_wrap(&self.sudo, &req.command)
        } else if req.sudo_inside {
            (req.command.clone(), shell::sudo_password(&self.sudo))
        } else {
            (req.command.clone(), None)
        };
        // Zeroed when dropped: it may hold the sudo password.
        let mut stdin = zeroize::Zeroizing::new(Vec::new());
        if let Some(p) = password {
            stdin.extend_from_slice(p.expose().as_bytes());
            stdin.push(b'\n');
        }
        stdin.extend_from_slice(&req.stdin);
        let other = |message: String| RemoteError::Other {
            host: self.name.clone(),
            message,
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("HOME", &self.home)
            .current_dir(&self.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| other(format!("cannot start sh: {e}")))?;
        // The command runs in its own process group (pgid = its pid): a timeout ends the group.
        let pgid = child.id();
        let mut pipe_in = child.stdin.take().expect("piped");
        let mut pipe_out = child.stdout.take().expect("piped");
        let mut pipe_err = child.stderr.take().expect("piped");
        let work = async {
            let feed = async move {
                // A command that does not read its stdin closes the pipe: that is not an error.
                let _ = pipe_in.write_all(&stdin).await;
                drop(pipe_in);
            };
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (_, o, e) = tokio::join!(
                feed,
                pipe_out.read_to_end(&mut out),
                pipe_err.read_to_end(&mut err)
            );
            o.and(e)
                .map_err(|e| other(format!("reading the command's output: {e}")))?;
            let status = child
                .wait()
                .await
                .map_err(|e| other(format!("waiting for the command: {e}")))?;
            use std::os::unix::process::ExitStatusExt;
            Ok(ExecOutput {
                stdout: out,
                stderr: err,
                status: status.code().map(|c| c as u32),
                signal: status.signal().map(|s| s.to_string()),
            })
        };
        let t = req.timeout;
        match tokio::time::timeout(t, work).await {
            Ok(r) => r,
            Err(_) => {
                if let Some(pgid) = pgid {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", "--", &format!("-{pgid}")])
                        .status();
                }
                Err(RemoteError::Timeout {
                    host: self.name.clone(),
                    command: shell::first_line(&req.command).to_string(),
                    secs: t.as_secs(),
                })
            }
        }
    }

    async fn tunnel(&self, host: &str, port: u16) -> Result<Tunnel, RemoteError> {
        let target = crate::authority(host, port);
        Tunnel::open(&self.name, host, port, move |listener| {
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let t = target.clone();
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&t).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            })
        })
    }
}
