//! The remote layer for real: the local remote on a temp directory, and the SSH remote against
//! the lab's OpenSSH servers in network namespaces (`scripts/test` brings the lab up; with
//! `WKLAB_REQUIRED=1` a missing lab is a failure, otherwise the lab tests say they were skipped).
//! Every lab test checks its target with `Lab::guard` before connecting.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wk_lab::Lab;
use wk_remote::shell::Replace;
use wk_remote::ssh::{Hop, HostKeyPolicy, Prompter, SshOptions};
use wk_remote::{ExecRequest, LocalRemote, Remote, RemoteError, Secret, SshRemote, Sudo};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wk-remote-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---------------------------------------------------------------------------------------------
// Local remote: the same file scripts, without SSH.

/// A compose file reached through a symbolic link (kept elsewhere, 0600 for its secrets): a
/// write goes to the file the link names, which keeps its mode; the link stays a link.
#[tokio::test]
async fn a_symlinked_file_is_written_through_its_link() {
    use std::os::unix::fs::PermissionsExt;
    let r = LocalRemote::new("local", scratch("local-symlink")).unwrap();
    let home = r.home().to_path_buf();
    std::fs::create_dir_all(home.join("secrets")).unwrap();
    std::fs::create_dir_all(home.join("wukongim")).unwrap();
    let real = home.join("secrets/compose.yml");
    let link = home.join("wukongim/docker-compose.yml");
    std::fs::write(&real, b"WK_JWT_SECRET=one\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("../secrets/compose.yml", &link).unwrap();
    let f = r
        .read_file("~/wukongim/docker-compose.yml")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (f.content.as_slice(), f.mode),
        (&b"WK_JWT_SECRET=one\n"[..], 0o600),
        "the target's mode, not the link's 777"
    );
    for how in [Replace::Rename, Replace::KeepInode] {
        r.write_file_as(
            "~/wukongim/docker-compose.yml",
            b"WK_JWT_SECRET=two\n",
            None,
            how,
        )
        .await
        .unwrap();
        let kind = std::fs::symlink_metadata(&link).unwrap().file_type();
        assert!(kind.is_symlink(), "{how:?}: the link stays");
        assert_eq!(
            std::fs::read(&real).unwrap(),
            b"WK_JWT_SECRET=two\n",
            "{how:?}"
        );
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{how:?}: the target keeps its mode");
        std::fs::write(&real, b"WK_JWT_SECRET=one\n").unwrap();
    }
}

#[tokio::test]
async fn local_files_round_trip_with_modes() {
    let r = LocalRemote::new("local", scratch("local-files")).unwrap();
    assert!(r
        .read_file("~/wukongim/docker-compose.yml")
        .await
        .unwrap()
        .is_none());
    r.mkdir_p("~/wukongim", 0o750).await.unwrap();
    let st = r.stat("~/wukongim").await.unwrap().unwrap();
    assert!(st.is_dir);
    assert_eq!(st.mode, 0o750);
    r.write_file("~/wukongim/a b.yml", b"one\n", None)
        .await
        .unwrap();
    let f = r.read_file("~/wukongim/a b.yml").await.unwrap().unwrap();
    assert_eq!((f.content.as_slice(), f.mode), (&b"one\n"[..], 0o644));
    r.write_file("~/wukongim/a b.yml", b"two\n", Some(0o600))
        .await
        .unwrap();
    r.write_file("~/wukongim/a b.yml", b"three\n", None)
        .await
        .unwrap();
    let f = r.read_file("~/wukongim/a b.yml").await.unwrap().unwrap();
    assert_eq!(
        (f.content.as_slice(), f.mode),
        (&b"three\n"[..], 0o600),
        "an overwrite keeps the mode"
    );
    assert!(
        r.home().join("wukongim/a b.yml").exists(),
        "~ is the remote's home"
    );
    let leftovers: Vec<_> = std::fs::read_dir(r.home().join("wukongim"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");
    r.remove("~/wukongim/a b.yml").await.unwrap();
    r.remove("~/wukongim/a b.yml").await.unwrap();
    r.remove("~/wukongim").await.unwrap();
    assert!(!r.exists("~/wukongim").await.unwrap());
    // Binary content survives.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    r.write_file("/tmp/../tmp/wk-remote-binary-test", &bytes, None)
        .await
        .unwrap();
    assert_eq!(
        r.read_file("/tmp/wk-remote-binary-test")
            .await
            .unwrap()
            .unwrap()
            .content,
        bytes
    );
    r.remove("/tmp/wk-remote-binary-test").await.unwrap();
    let err = r.read_file("~").await.unwrap_err().to_string();
    assert!(
        err.contains("is a directory") && err.starts_with("local: "),
        "{err}"
    );
}

/// A connection that drops mid-upload ends `cat`'s input early, as if the file were shorter:
/// the write must then fail and leave the file as it was, with no temp file behind, whichever
/// way the file is to be replaced.
#[tokio::test]
async fn an_upload_cut_short_changes_nothing() {
    use wk_remote::shell::Replace;
    for how in [Replace::Rename, Replace::KeepInode] {
        let r = LocalRemote::new("local", scratch(&format!("cut-upload-{how:?}"))).unwrap();
        r.mkdir_p("~/w", 0o755).await.unwrap();
        r.write_file("~/w/f", b"the old content\n", None)
            .await
            .unwrap();
        let whole = vec![b'n'; 100_000];
        // The script expects 100 000 bytes; 40 000 arrive before the input ends.
        let out = r
            .exec(
                ExecRequest::new(wk_remote::shell::write_file(
                    "~/w/f",
                    None,
                    whole.len(),
                    how,
                ))
                .stdin(whole[..40_000].to_vec()),
            )
            .await
            .unwrap();
        assert!(!out.success(), "a cut upload must fail");
        assert!(
            out.stderr_str()
                .contains("the upload was cut: 40000 of 100000 bytes arrived"),
            "{}",
            out.stderr_str()
        );
        let f = r.read_file("~/w/f").await.unwrap().unwrap();
        assert_eq!(f.content, b"the old content\n", "the file is as it was");
        let names: Vec<_> = std::fs::read_dir(r.home().join("w"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp file left: {names:?}");
        // The whole upload goes through.
        r.write_file_as("~/w/f", &whole, None, how).await.unwrap();
        assert_eq!(r.read_file("~/w/f").await.unwrap().unwrap().content, whole);
    }
}

/// A file a container bind-mounts on its own must keep its inode: the mount goes on showing
/// the inode it was made with, so a rename would leave the container on the old file.
#[tokio::test]
async fn keep_inode_writes_into_the_same_file() {
    use std::os::unix::fs::MetadataExt;
    use wk_remote::shell::Replace;
    let r = LocalRemote::new("local", scratch("keep-inode")).unwrap();
    r.mkdir_p("~/w", 0o755).await.unwrap();
    r.write_file("~/w/conf", b"old\n", Some(0o640))
        .await
        .unwrap();
    let path = r.home().join("w/conf");
    let ino = std::fs::metadata(&path).unwrap().ino();
    // An open handle stands for the container's mount: it sees what the write wrote.
    r.write_file_as("~/w/conf", b"new and longer\n", None, Replace::KeepInode)
        .await
        .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.ino(), ino, "the inode was kept");
    assert_eq!(meta.mode() & 0o777, 0o640, "and its mode");
    assert_eq!(std::fs::read(&path).unwrap(), b"new and longer\n");
    r.write_file_as("~/w/conf", b"x\n", Some(0o600), Replace::KeepInode)
        .await
        .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.ino(), meta.mode() & 0o777), (ino, 0o600));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"x\n",
        "shorter content truncates"
    );
    // Rename (the default) gives a new inode: what a single-file bind mount does not follow.
    r.write_file("~/w/conf", b"renamed\n", None).await.unwrap();
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), ino);
    // A file that is not there yet is made (by rename), with no temp file left.
    r.write_file_as("~/w/fresh", b"made\n", None, Replace::KeepInode)
        .await
        .unwrap();
    assert_eq!(std::fs::read(r.home().join("w/fresh")).unwrap(), b"made\n");
    let names: Vec<_> = std::fs::read_dir(r.home().join("w")).unwrap().collect();
    assert_eq!(names.len(), 2);
}

#[tokio::test]
async fn local_exec_status_stderr_stdin_and_timeout() {
    let r = LocalRemote::new("local", scratch("local-exec")).unwrap();
    let out = r
        .exec(ExecRequest::new("cat; echo oops >&2; exit 7").stdin("in"))
        .await
        .unwrap();
    assert_eq!(
        (
            out.stdout_str().as_str(),
            out.stderr_str().as_str(),
            out.status
        ),
        ("in", "oops\n", Some(7))
    );
    let started = std::time::Instant::now();
    let err = r
        .exec(ExecRequest::new("sleep 30 & sleep 30; wait").timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Through sudo (passwordless: the tests run as root), a command and its stdin reach root.
    let root = LocalRemote::new("local", scratch("local-sudo"))
        .unwrap()
        .with_sudo(Sudo::Passwordless);
    let out = root
        .run(ExecRequest::new("id -u; cat").stdin("in\n").sudo(true))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "0\nin\n");
    let err = r
        .run(ExecRequest::new("echo nope >&2; false"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`echo nope >&2; false` failed (exit 1): nope"),
        "{err}"
    );
}

/// No request waits for ever: one that names no timeout gets the default, and every remote
/// operation is an exec request.
#[test]
fn every_request_has_a_timeout() {
    assert_eq!(ExecRequest::new("true").timeout, wk_remote::DEFAULT_TIMEOUT);
    assert_eq!(ExecRequest::default().timeout, wk_remote::DEFAULT_TIMEOUT);
    assert_eq!(
        ExecRequest::new("true")
            .timeout(Duration::from_secs(600))
            .timeout,
        Duration::from_secs(600)
    );
}

/// A tunnel's local end is a Unix socket in a directory only its user can enter (no port on
/// 127.0.0.1 that any local user could use), and goes with the tunnel.
#[tokio::test]
async fn local_tunnel_reaches_a_local_port() {
    use std::os::unix::fs::MetadataExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"hello").await.unwrap();
    });
    let r = LocalRemote::new("local", scratch("local-tunnel")).unwrap();
    let t = r.tunnel("127.0.0.1", port).await.unwrap();
    assert_eq!(t.target, format!("127.0.0.1:{port}"));
    let dir = t.socket.parent().unwrap().to_path_buf();
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o700, "{}", dir.display());
    assert_eq!(meta.uid(), std::fs::metadata("/proc/self").unwrap().uid());
    let mut c = tokio::net::UnixStream::connect(&t.socket).await.unwrap();
    let mut buf = String::new();
    c.read_to_string(&mut buf).await.unwrap();
    assert_eq!(buf, "hello");
    drop(t);
    assert!(!dir.exists(), "{} outlived its tunnel", dir.display());
}

/// An SSH server on loopback that finishes the key exchange, then never answers a request to
/// authenticate (a stuck PAM or directory lookup): the connection is given up within its
/// timeout, saying so, instead of holding the run for ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_authentication_is_given_up_on() {
    struct Stall;
    impl russh::server::Handler for Stall {
        type Error = russh::Error;
        async fn auth_none(&mut self, _: &str) -> Result<russh::server::Auth, Self::Error> {
            std::future::pending().await
        }
        async fn auth_publickey_offered(
            &mut self,
            _: &str,
            _: russh::server::PublicKeyOffer<'_>,
        ) -> Result<russh::server::Auth, Self::Error> {
            std::future::pending().await
        }
        async fn auth_password(
            &mut self,
            _: &str,
            _: &str,
        ) -> Result<russh::server::Auth, Self::Error> {
            std::future::pending().await
        }
    }
    let dir = scratch("stalled-auth");
    for k in ["host", "user"] {
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(k))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let host_key = russh::keys::load_secret_key(dir.join("host"), None).unwrap();
    let config = Arc::new(russh::server::Config {
        keys: vec![host_key],
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let session = russh::server::run_stream(config, s, Stall).await.unwrap();
        let _ = session.await;
    });
    let public = std::fs::read_to_string(dir.join("host.pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    std::fs::write(
        dir.join("known_hosts"),
        format!("[127.0.0.1]:{port} {} {}\n", public[0], public[1]),
    )
    .unwrap();
    let mut o = SshOptions::new("stalled", "127.0.0.1");
    o.port = Some(port);
    o.user = Some("ops".into());
    o.identity_files = vec![dir.join("user")];
    o.known_hosts = vec![dir.join("known_hosts")];
    std::fs::write(dir.join("config"), "").unwrap();
    o.ssh_config = Some(dir.join("config"));
    o.agent_socket = None;
    o.connect_timeout = Duration::from_secs(2);
    let t = std::time::Instant::now();
    let err = connect(o).await.unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        err.starts_with("stalled: cannot connect to ")
            && err.contains("did not answer during authentication within 2 s"),
        "{err}"
    );
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// The lab.

fn lab() -> Option<Lab> {
    match Lab::from_env() {
        Ok(l) => Some(l),
        Err(e) => {
            if std::env::var_os("WKLAB_REQUIRED").is_some() {
                panic!(
                    "WKLAB_REQUIRED is set but no lab is up in {}: {e}",
                    wk_lab::lab_dir().display()
                );
            }
            eprintln!("skipped: no lab ({e}); run scripts/test, or `wk-lab up --hosts 4`");
            None
        }
    }
}

macro_rules! need_lab {
    () => {
        match lab() {
            Some(l) => l,
            None => return,
        }
    };
}

#[derive(Default)]
struct Answers {
    passphrase: Option<String>,
    password: Option<String>,
    kbd: Option<String>,
    asked_passphrase: AtomicUsize,
    asked_password: AtomicUsize,
    asked_kbd: AtomicUsize,
}

impl Prompter for Answers {
    fn passphrase(&self, _: &Path) -> Option<Secret> {
        self.asked_passphrase.fetch_add(1, Ordering::SeqCst);
        self.passphrase.clone().map(Secret::new)
    }
    fn password(&self, _: &str, _: &str) -> Option<Secret> {
        self.asked_password.fetch_add(1, Ordering::SeqCst);
        self.password.clone().map(Secret::new)
    }
    fn keyboard_interactive(
        &self,
        _: &str,
        _: &str,
        prompts: &[(String, bool)],
    ) -> Option<Vec<Secret>> {
        self.asked_kbd.fetch_add(1, Ordering::SeqCst);
        let a = self.kbd.clone()?;
        Some(prompts.iter().map(|_| Secret::new(a.clone())).collect())
    }
}

/// Options for a lab host: its address (guarded), user, the lab's key and known_hosts, an ssh
/// config of the lab's, no agent.
fn opts(lab: &Lab, host: &str) -> SshOptions {
    let h = lab.host(host);
    lab.guard(&h.ip).expect("a lab target");
    let mut o = SshOptions::new(host, h.ip.clone());
    o.user = Some(h.user.clone());
    o.identity_files = vec![lab.key()];
    o.known_hosts = vec![lab.known_hosts()];
    o.ssh_config = Some(lab.ssh_config());
    o.agent_socket = None;
    o.connect_timeout = Duration::from_secs(10);
    o
}

async fn connect(o: SshOptions) -> Result<SshRemote, RemoteError> {
    SshRemote::connect(o, Arc::new(Answers::default())).await
}

async fn sh(r: &SshRemote, cmd: &str) -> String {
    r.run(ExecRequest::new(cmd)).await.unwrap().stdout_str()
}

#[tokio::test(flavor = "multi_thread")]
async fn key_auth_and_exec() {
    let lab = need_lab!();
    for key in [lab.key(), lab.rsa_key(), lab.ecdsa_key()] {
        let mut o = opts(&lab, "node1");
        o.identity_files = vec![key.clone()];
        let r = connect(o)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        assert_eq!(sh(&r, "id -un").await.trim(), lab.host("node1").user);
        r.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_stderr() {
    let lab = need_lab!();
    let r = connect(opts(&lab, "node1")).await.unwrap();
    let out = r
        .exec(ExecRequest::new("echo out; echo err >&2; exit 7"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");
    assert_eq!(out.status, Some(7));
    let out = r.exec(ExecRequest::new("kill -TERM $$")).await.unwrap();
    assert_eq!((out.status, out.signal.as_deref()), (None, Some("TERM")));
    let out = r
        .exec(ExecRequest::new("wc -c").stdin(vec![b'z'; 300_000]))
        .await
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "300000");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_auth() {
    let lab = need_lab!();
    let dir = scratch("agent");
    let sock = dir.join("agent.sock");
    let started = std::process::Command::new("ssh-agent")
        .arg("-a")
        .arg(&sock)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&started.stdout).into_owned();
    let pid: u32 = text
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no agent pid in {text}"));
    let add = std::process::Command::new("ssh-add")
        .arg(lab.key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let mut o = opts(&lab, "node2");
    o.identity_files = vec![lab.stranger_key()];
    o.agent_socket = Some(sock.clone());
    let result = connect(o).await;
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let r = result.expect("the agent's key logs in");
    assert_eq!(sh(&r, "id -un").await.trim(), lab.host("node2").user);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_with_passphrase() {
    let lab = need_lab!();
    let mut o = opts(&lab, "node1");
    o.identity_files = vec![lab.key_with_passphrase()];
    let answers = Arc::new(Answers {
        passphrase: Some(wk_lab::KEY_PASSPHRASE.into()),
        ..Answers::default()
    });
    let r = SshRemote::connect(o.clone(), answers.clone())
        .await
        .unwrap();
    assert_eq!(answers.asked_passphrase.load(Ordering::SeqCst), 1);
    assert_eq!(sh(&r, "echo ok").await, "ok\n");
    let wrong = Arc::new(Answers {
        passphrase: Some("not it".into()),
        ..Answers::default()
    });
    let err = SshRemote::connect(o, wrong).await.unwrap_err().to_string();
    assert!(
        err.contains("id_ed25519_pass (wrong passphrase)") && err.contains("authentication as"),
        "{err}"
    );
    assert!(
        !err.contains("not it"),
        "the passphrase must not show: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn password_and_keyboard_interactive() {
    let lab = need_lab!();
    let pw = lab.host("node2").password.clone();
    // keyboard-interactive (PAM asks "Password:").
    let mut o = opts(&lab, "node2");
    o.identity_files = vec![lab.stranger_key()];
    let kbd = Arc::new(Answers {
        kbd: Some(pw.clone()),
        ..Answers::default()
    });
    let r = SshRemote::connect(o.clone(), kbd.clone()).await.unwrap();
    assert_eq!(sh(&r, "id -un").await.trim(), lab.host("node2").user);
    assert!(kbd.asked_kbd.load(Ordering::SeqCst) >= 1);
    assert_eq!(kbd.asked_password.load(Ordering::SeqCst), 0);
    // The password method, when keyboard-interactive is declined.
    let pwd = Arc::new(Answers {
        password: Some(pw.clone()),
        ..Answers::default()
    });
    let r = SshRemote::connect(o.clone(), pwd.clone()).await.unwrap();
    assert_eq!(sh(&r, "echo in").await, "in\n");
    assert_eq!(pwd.asked_password.load(Ordering::SeqCst), 1);
    // A wrong password: a clear refusal that names what was tried, not the password.
    let bad = Arc::new(Answers {
        password: Some("wrong-password".into()),
        ..Answers::default()
    });
    let err = SshRemote::connect(o, bad).await.unwrap_err().to_string();
    assert!(
        err.starts_with("node2: authentication as wklab-node2 failed (tried: "),
        "{err}"
    );
    assert!(
        err.contains("id_stranger") && err.contains("password") && !err.contains("wrong-password"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_key_is_refused_under_strict() {
    let lab = need_lab!();
    let dir = scratch("unknown");
    let mut o = opts(&lab, "node1");
    o.known_hosts = vec![dir.join("known_hosts")];
    let err = connect(o).await.unwrap_err();
    let RemoteError::UnknownHostKey { fingerprint, .. } = &err else {
        panic!("{err}")
    };
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    let msg = err.to_string();
    assert!(
        msg.contains("ssh-keyscan -p 22 10.") && msg.contains("accept-new"),
        "{msg}"
    );
    assert!(!dir.join("known_hosts").exists(), "strict records nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_new_records_the_key_then_strict_accepts_it() {
    let lab = need_lab!();
    let dir = scratch("accept-new");
    let kh = dir.join("ssh/known_hosts");
    let mut o = opts(&lab, "node2");
    o.known_hosts = vec![kh.clone()];
    o.host_key_policy = HostKeyPolicy::AcceptNew;
    connect(o.clone()).await.unwrap();
    let text = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(
        text,
        format!("{} {}\n", lab.host("node2").ip, lab.host("node2").host_key)
    );
    o.host_key_policy = HostKeyPolicy::Strict;
    connect(o).await.expect("the recorded key is now known");
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_host_key_is_always_refused() {
    let lab = need_lab!();
    let dir = scratch("changed");
    let kh = dir.join("known_hosts");
    let stranger = std::fs::read_to_string(lab.stranger_key().with_extension("pub")).unwrap();
    let stranger: Vec<&str> = stranger.split_whitespace().take(2).collect();
    std::fs::write(
        &kh,
        format!(
            "# ours\n{} {} {}\n",
            lab.host("node1").ip,
            stranger[0],
            stranger[1]
        ),
    )
    .unwrap();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let mut o = opts(&lab, "node1");
        o.known_hosts = vec![kh.clone()];
        o.host_key_policy = policy;
        let err = connect(o).await.unwrap_err();
        assert!(
            matches!(err, RemoteError::ChangedHostKey { line: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("HOST KEY CHANGED"), "{err}");
    }
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap().lines().count(),
        2,
        "nothing was recorded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hashed_known_hosts_written_by_openssh() {
    let lab = need_lab!();
    let dir = scratch("hashed");
    let kh = dir.join("known_hosts");
    std::fs::copy(lab.known_hosts(), &kh).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&kh).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains(&lab.host("node1").ip),
        "{text}"
    );
    let mut o = opts(&lab, "node1");
    o.known_hosts = vec![kh];
    connect(o).await.expect("hashed entries are matched");
}

#[tokio::test(flavor = "multi_thread")]
async fn jump_host_through_the_bastion() {
    let lab = need_lab!();
    let bastion = lab.host("bastion");
    lab.guard(&bastion.ip).unwrap();
    let mut o = opts(&lab, "node2");
    o.jump = vec![Hop {
        user: Some(bastion.user.clone()),
        host: bastion.ip.clone(),
        port: None,
    }];
    let r = connect(o.clone()).await.unwrap();
    // Seen from node2, the client is the bastion.
    let conn = sh(&r, "echo $SSH_CONNECTION").await;
    assert_eq!(
        conn.split_whitespace().next(),
        Some(bastion.ip.as_str()),
        "{conn}"
    );
    // The target's key is checked under the target's name: knowing only the bastion is not enough.
    let dir = scratch("jump-kh");
    let kh = dir.join("known_hosts");
    std::fs::write(&kh, format!("{} {}\n", bastion.ip, bastion.host_key)).unwrap();
    o.known_hosts = vec![kh];
    let err = connect(o.clone()).await.unwrap_err();
    let RemoteError::UnknownHostKey { addr, host, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (addr.as_str(), host.as_str()),
        (lab.host("node2").ip.as_str(), "node2")
    );
    // A chain: bastion, then node1, then node2, which sees node1 as its client.
    let n1 = lab.host("node1");
    lab.guard(&n1.ip).unwrap();
    let mut chain = opts(&lab, "node2");
    chain.jump = vec![
        Hop {
            user: Some(bastion.user.clone()),
            host: bastion.ip.clone(),
            port: None,
        },
        Hop {
            user: Some(n1.user.clone()),
            host: n1.ip.clone(),
            port: Some(22),
        },
    ];
    let r = connect(chain).await.unwrap();
    let conn = sh(&r, "echo $SSH_CONNECTION").await;
    assert_eq!(
        conn.split_whitespace().next(),
        Some(n1.ip.as_str()),
        "{conn}"
    );
    // ProxyJump from the ssh config file works the same way.
    let cfg = dir.join("config");
    std::fs::write(
        &cfg,
        format!(
            "Host via-bastion\n  HostName {}\n  ProxyJump {}@{}\n",
            lab.host("node2").ip,
            bastion.user,
            bastion.ip
        ),
    )
    .unwrap();
    let mut o = opts(&lab, "node2");
    o.host = "via-bastion".into();
    o.ssh_config = Some(cfg);
    let r = connect(o).await.unwrap();
    let conn = sh(&r, "echo $SSH_CONNECTION").await;
    assert_eq!(
        conn.split_whitespace().next(),
        Some(bastion.ip.as_str()),
        "{conn}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_config_alias_user_and_identity() {
    let lab = need_lab!();
    let dir = scratch("alias");
    let cfg = dir.join("config");
    let h = lab.host("node1");
    std::fs::write(
        &cfg,
        format!(
            "Host n1-alias\n  HostName {}\n  User {}\n  Port 22\n  IdentityFile {}\n",
            h.ip,
            h.user,
            lab.ecdsa_key().display()
        ),
    )
    .unwrap();
    let mut o = opts(&lab, "node1");
    o.host = "n1-alias".into();
    o.user = None;
    o.identity_files = Vec::new();
    o.ssh_config = Some(cfg);
    let r = connect(o).await.unwrap();
    assert_eq!(sh(&r, "id -un").await.trim(), h.user);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_megabytes_of_output() {
    let lab = need_lab!();
    let r = connect(opts(&lab, "node1")).await.unwrap();
    let n = 50 * 1024 * 1024;
    let out = r
        .exec(
            ExecRequest::new(format!("head -c {n} /dev/zero | tr '\\0' x; echo done >&2"))
                .timeout(Duration::from_secs(180)),
        )
        .await
        .unwrap();
    assert_eq!(out.status, Some(0));
    assert_eq!(out.stdout.len(), n);
    assert!(out.stdout.iter().all(|b| *b == b'x'));
    assert_eq!(out.stderr_str(), "done\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_silent_for_twenty_seconds_is_not_cut_off() {
    let lab = need_lab!();
    let r = connect(opts(&lab, "node2")).await.unwrap();
    let t = std::time::Instant::now();
    let out = r
        .exec(ExecRequest::new("sleep 20; echo finished"))
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_secs(20));
    assert_eq!(
        (out.stdout_str().as_str(), out.status),
        ("finished\n", Some(0))
    );
    // A timeout, when asked for, is honoured, and ends the command on the host: nothing of it
    // is left running there (as root through sudo either).
    let err = r
        .exec(ExecRequest::new("sleep 31; echo after").timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Timeout { secs: 1, .. }), "{err}");
    assert_eq!(
        left_running(&lab, "node2", &["sleep", "31"]),
        Vec::<u32>::new()
    );
    let mut o = opts(&lab, "node2");
    o.sudo = Sudo::Password(Secret::new(lab.host("node2").password.clone()));
    let root = connect(o).await.unwrap();
    let err = root
        .exec(
            ExecRequest::new("sleep 32; echo after")
                .sudo(true)
                .timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Timeout { secs: 1, .. }), "{err}");
    assert_eq!(
        left_running(&lab, "node2", &["sleep", "32"]),
        Vec::<u32>::new()
    );
}

/// Pids in a lab host's namespace whose command line is `argv`.
fn left_running(lab: &Lab, host: &str, argv: &[&str]) -> Vec<u32> {
    let want: String = argv.iter().map(|a| format!("{a}\0")).collect();
    lab.pids(lab.host(host))
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_over_ssh() {
    let lab = need_lab!();
    let r = connect(opts(&lab, "node1")).await.unwrap();
    r.mkdir_p("~/t-files/sub", 0o755).await.unwrap();
    r.write_file("~/t-files/sub/compose.yml", b"services: {}\n", None)
        .await
        .unwrap();
    let f = r
        .read_file("~/t-files/sub/compose.yml")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (f.content.as_slice(), f.mode),
        (&b"services: {}\n"[..], 0o644)
    );
    r.write_file("~/t-files/sub/compose.yml", b"x", Some(0o640))
        .await
        .unwrap();
    assert_eq!(
        r.stat("~/t-files/sub/compose.yml")
            .await
            .unwrap()
            .unwrap()
            .mode,
        0o640
    );
    let home = sh(&r, "echo $HOME").await;
    assert_eq!(home.trim(), lab.host("node1").home.display().to_string());
    assert!(r.read_file("~/t-files/none").await.unwrap().is_none());
    let err = r
        .write_file("/root/forbidden", b"x", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("node1: /root/forbidden: "), "{err}");
    r.remove("~/t-files/sub/compose.yml").await.unwrap();
    r.remove("~/t-files/sub").await.unwrap();
    r.remove("~/t-files").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn atomic_write_is_never_seen_half_written() {
    let lab = need_lab!();
    let writer = connect(opts(&lab, "node2")).await.unwrap();
    let size = 2 * 1024 * 1024;
    let a = vec![b'a'; size];
    let b = vec![b'b'; size];
    sh(&writer, "rm -rf ~/t-atomic").await;
    writer.mkdir_p("~/t-atomic", 0o755).await.unwrap();
    writer.write_file("~/t-atomic/f", &a, None).await.unwrap();
    // A reader on the host checks every read: all a's or all b's, full length. It records how
    // many reads it made, so the writer goes on until the reader has seen many of its writes.
    let reader = format!(
        "cd ~/t-atomic; bad=0; n=0; \
         ha=$(head -c {size} /dev/zero | tr '\\0' a | md5sum); hb=$(head -c {size} /dev/zero | tr '\\0' b | md5sum); \
         while [ ! -e stop ]; do \
           h=$(md5sum < f); \
           if [ \"$h\" != \"$ha\" ] && [ \"$h\" != \"$hb\" ]; then bad=$((bad+1)); fi; n=$((n+1)); \
           echo $n > reads; \
         done; echo \"$n $bad\""
    );
    let read_conn = connect(opts(&lab, "node2")).await.unwrap();
    let reads = tokio::spawn(async move {
        read_conn
            .run(ExecRequest::new(reader))
            .await
            .unwrap()
            .stdout_str()
    });
    let mut writes = 0;
    loop {
        writer
            .write_file("~/t-atomic/f", if writes % 2 == 0 { &b } else { &a }, None)
            .await
            .unwrap();
        writes += 1;
        let done = match writer.read_file("~/t-atomic/reads").await.unwrap() {
            Some(f) => {
                String::from_utf8_lossy(&f.content)
                    .trim()
                    .parse::<u32>()
                    .unwrap_or(0)
                    >= 40
            }
            None => false,
        };
        if (done && writes >= 20) || writes >= 2000 {
            break;
        }
    }
    writer
        .write_file("~/t-atomic/stop", b"", None)
        .await
        .unwrap();
    let result = reads.await.unwrap();
    let mut it = result.split_whitespace().map(|x| x.parse::<u32>().unwrap());
    let (n, bad) = (it.next().unwrap(), it.next().unwrap());
    assert!(
        n >= 40,
        "the reader read only {n} times during {writes} writes"
    );
    assert_eq!(bad, 0, "{bad} of {n} reads saw a partial file");
    sh(&writer, "rm -rf ~/t-atomic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sudo_with_password_on_stdin() {
    let lab = need_lab!();
    let h = lab.host("node1");
    let mut o = opts(&lab, "node1");
    o.sudo = Sudo::Password(Secret::new(h.password.clone()));
    let r = connect(o.clone()).await.unwrap();
    let out = r.run(ExecRequest::new("id -u").sudo(true)).await.unwrap();
    assert_eq!(out.stdout_str(), "0\n");
    // The command's own stdin arrives whole, without the password.
    let out = r
        .run(ExecRequest::new("cat").stdin("payload\n").sudo(true))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "payload\n");
    // A command that calls sudo itself, as plans show them (`cd dir && sudo -k -S -p '' …`):
    // with sudo_inside the password goes first on its stdin, and the rest reaches the command.
    let planned = "cd ~ && sudo -k -S -p '' sh -c 'id -u; cat'";
    let out = r
        .run(
            ExecRequest::new(planned)
                .stdin("after the password\n")
                .sudo_inside(true),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "0\nafter the password\n");
    let without = r.exec(ExecRequest::new(planned)).await.unwrap();
    assert!(
        !without.success(),
        "without the password sudo refuses: {without:?}"
    );
    // Nothing of the password is on a command line the host saw.
    let log = std::fs::read_to_string(h.sshd_log()).unwrap();
    assert!(!log.contains(&h.password));
    // A wrong password is refused before any command runs.
    o.sudo = Sudo::Password(Secret::new("not-the-password"));
    let r = connect(o.clone()).await.unwrap();
    let err = r
        .exec(ExecRequest::new("touch ~/should-not-exist").sudo(true))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Sudo { .. }), "{err}");
    assert!(
        err.to_string().contains("password was not accepted"),
        "{err}"
    );
    assert!(!std::path::Path::new(&h.home)
        .join("should-not-exist")
        .exists());
    // Passwordless mode on a host whose sudo asks: a clear error.
    o.sudo = Sudo::Passwordless;
    let r = connect(o).await.unwrap();
    let err = r
        .exec(ExecRequest::new("true").sudo(true))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("sudo asks for a password"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnel_reaches_a_port_on_the_far_side() {
    let lab = need_lab!();
    let r = connect(opts(&lab, "node1")).await.unwrap();
    // node2's sshd, as seen from node1: the laptop needs no route of its own.
    let t = r.tunnel(&lab.host("node2").ip, 22).await.unwrap();
    let mut c = tokio::net::UnixStream::connect(&t.socket).await.unwrap();
    let mut banner = [0u8; 8];
    c.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    // Another local user cannot use this connection through the tunnel (the tests run as
    // root, whom the directory's mode does not stop: `nobody` tries).
    let as_nobody = |path: &Path| {
        std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "python3", "-c"])
            .arg("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print(s.recv(8))")
            .arg(path)
            .output()
            .unwrap()
    };
    let tried = as_nobody(&t.socket);
    let said = String::from_utf8_lossy(&tried.stderr);
    assert!(
        !tried.status.success() && said.contains("PermissionError"),
        "nobody reached the tunnel: {said}"
    );
}

/// node3 is this test's alone: its sshd log counts only our connections.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_one_tcp_connection_per_host_per_run() {
    let lab = need_lab!();
    let h = lab.host("node3");
    let before = std::fs::read_to_string(h.sshd_log())
        .unwrap_or_default()
        .len();
    let r = connect(opts(&lab, "node3")).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        seen.insert(sh(&r, "echo $SSH_CONNECTION").await);
        r.write_file(&format!("~/t-count-{i}"), b"x", None)
            .await
            .unwrap();
        assert!(r
            .read_file(&format!("~/t-count-{i}"))
            .await
            .unwrap()
            .is_some());
        r.remove(&format!("~/t-count-{i}")).await.unwrap();
    }
    let t = r.tunnel(&h.ip, 22).await.unwrap();
    for _ in 0..3 {
        let mut c = tokio::net::UnixStream::connect(&t.socket).await.unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
    }
    drop(t);
    // Many channels at once on the same connection.
    let r = Arc::new(r);
    let jobs: Vec<_> = (0..8)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move {
                r.run(ExecRequest::new("echo $SSH_CONNECTION"))
                    .await
                    .unwrap()
                    .stdout_str()
            })
        })
        .collect();
    for j in jobs {
        seen.insert(j.await.unwrap());
    }
    assert_eq!(
        seen.len(),
        1,
        "every command ran on one connection: {seen:?}"
    );
    assert_eq!(r.connections_opened(), 1);
    r.close().await;
    let log = std::fs::read_to_string(h.sshd_log()).unwrap();
    let ours = &log[before..];
    // The tunnel's connections to node3:22 come from node3 itself; ours come from the bridge.
    let from_laptop = ours
        .matches(&format!("Connection from {} port", lab.bridge_ip))
        .count();
    assert_eq!(
        from_laptop, 1,
        "sshd saw {from_laptop} connections from the laptop:\n{ours}"
    );
}

/// node4 is this test's alone: ending its sshd sessions hurts no other test.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_fails_the_step_and_reopens_only_when_asked() {
    let lab = need_lab!();
    let h = lab.host("node4");
    let r = connect(opts(&lab, "node4")).await.unwrap();
    assert_eq!(sh(&r, "echo up").await, "up\n");
    // End sshd's session processes (not the listener, nor the host's Docker Engine) by their
    // pids in node4's namespace.
    let listener: u32 = std::fs::read_to_string(h.sshd_pid_file())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for pid in lab.pids(h) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if pid != listener && comm.trim().starts_with("sshd") {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = r.exec(ExecRequest::new("echo again")).await.unwrap_err();
    assert!(matches!(err, RemoteError::Disconnected { .. }), "{err}");
    assert!(err.to_string().contains("wkctl resume"), "{err}");
    assert!(
        r.reconnect_if_dropped().await.unwrap(),
        "reopened between steps"
    );
    assert_eq!(sh(&r, "echo again").await, "again\n");
    assert!(
        !r.reconnect_if_dropped().await.unwrap(),
        "a live connection is kept"
    );
    assert_eq!(r.connections_opened(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_what_is_not_a_lab_address() {
    let lab = need_lab!();
    // Documentation-range and loopback addresses: `ip route get` asks the kernel, nothing is sent.
    for ip in ["198.51.100.7", "127.0.0.1", "203.0.113.9"] {
        assert!(lab.guard(ip).is_err(), "{ip} passed the guard");
    }
    for h in &lab.hosts {
        lab.guard(&h.ip).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_host_fails_fast_and_names_it() {
    let lab = need_lab!();
    // A lab host on a port where nothing listens.
    let mut o = opts(&lab, "node1");
    o.port = Some(2222);
    o.name = "ghost".into();
    o.connect_timeout = Duration::from_secs(2);
    let err = connect(o).await.unwrap_err().to_string();
    assert!(err.starts_with("ghost: cannot connect to "), "{err}");
}

/// The ssh config's own host-key settings, as OpenSSH honours them: `UserKnownHostsFile` in place
/// of the default file, and `HostKeyAlias` as the name the key is recorded under.
#[tokio::test(flavor = "multi_thread")]
async fn the_ssh_configs_known_hosts_file_and_alias_are_honoured() {
    let lab = need_lab!();
    let dir = scratch("kh-config");
    let h = lab.host("node1");
    let kh = dir.join("aliased_known_hosts");
    std::fs::write(&kh, format!("node1-key {}\n", h.host_key)).unwrap();
    let cfg = dir.join("config");
    std::fs::write(
        &cfg,
        format!(
            "Host {ip}\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile none\n  HostKeyAlias Node1-Key\n",
            ip = h.ip,
            kh = kh.display()
        ),
    )
    .unwrap();
    let home_kh = std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".ssh/known_hosts");
    let mut o = opts(&lab, "node1");
    o.known_hosts = vec![home_kh.clone()];
    o.ssh_config = Some(cfg.clone());
    let r = connect(o.clone())
        .await
        .expect("the key is found under its alias");
    assert_eq!(sh(&r, "echo ok").await.trim(), "ok");
    r.close().await;
    // The same file under the host's own name does not count: the alias is the key's name.
    std::fs::write(&kh, format!("{} {}\n", h.ip, h.host_key)).unwrap();
    let err = connect(o).await.unwrap_err();
    assert!(matches!(err, RemoteError::UnknownHostKey { .. }), "{err}");
    assert!(err.to_string().contains("verified out of band"), "{err}");
}
