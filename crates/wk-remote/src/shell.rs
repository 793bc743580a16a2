//! The small POSIX shell scripts behind file operations, and quoting. Shared by every
//! [`Remote`](crate::Remote) implementation, so the local one tests the same scripts SSH runs.

use crate::{ExecOutput, FileImage, RemoteError, Stat};

/// Single-quotes a word for `sh`.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '-' | '_' | '+' | ':' | ',' | '@' | '=')
        })
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes a path, keeping a leading `~` or `~/` meaning the user's home directory.
pub fn path(p: &str) -> String {
    if p == "~" {
        "\"$HOME\"".to_string()
    } else if let Some(rest) = p.strip_prefix("~/") {
        if rest.is_empty() {
            "\"$HOME\"/".to_string()
        } else {
            format!("\"$HOME\"/{}", quote(rest))
        }
    } else {
        quote(p)
    }
}

/// The first line of a command, for messages.
pub fn first_line(cmd: &str) -> &str {
    cmd.lines().next().unwrap_or("")
}

const MISSING: u32 = 3;

/// Reads a file with its mode; a symbolic link is followed, and the mode is its target's (the
/// link's own is always 777).
pub fn read_file(p: &str) -> String {
    format!(
        "p={}\n[ -e \"$p\" ] || exit {MISSING}\n[ -d \"$p\" ] && {{ echo 'is a directory' >&2; exit 4; }}\nstat -L -c '%a' -- \"$p\" && exec cat -- \"$p\"",
        path(p)
    )
}

/// A symbolic link at `$p` is followed to the file it names (its whole chain): the file is
/// written, the link stays a link.
const FOLLOW: &str = "if [ -L \"$p\" ]; then q=$(readlink -f -- \"$p\") && [ -n \"$q\" ] || { echo \"$p is a symbolic link whose target cannot be resolved\" >&2; exit 1; }; p=$q; fi\n";

pub fn parse_read_file(
    host: &str,
    p: &str,
    out: ExecOutput,
) -> Result<Option<FileImage>, RemoteError> {
    if out.status == Some(MISSING) {
        return Ok(None);
    }
    check(host, p, &out)?;
    let nl = out
        .stdout
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| file_err(host, p, "no mode in stat's answer"))?;
    let mode = parse_mode(host, p, &out.stdout[..nl])?;
    Ok(Some(FileImage {
        content: out.stdout[nl + 1..].to_vec(),
        mode,
    }))
}

/// How a write replaces a file that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Temp file, fsync, rename: a reader sees the old file or the new one, never a part.
    Rename,
    /// The new bytes are copied into the existing file (same inode), after the whole upload
    /// arrived in a temp file: a container that bind-mounts this one file sees them (after a
    /// rename it would go on seeing the old inode). A file that does not exist yet is created
    /// by rename.
    KeepInode,
}

/// Writes stdin to the file: the upload goes to a temp file in the same directory first. `len`
/// is the number of bytes the caller sends: when the connection drops mid-upload, `cat` sees an
/// early end of its input and exits 0, so the length is what tells a whole upload from a cut one
/// (a cut one is removed, and the file stays as it was). The temp file also goes when the shell
/// is ended by a signal. Then [`Replace`] says how the file takes the new bytes; with
/// `KeepInode` the copy ignores hang-ups (it is not cut half way by a dropped connection) and
/// is compared with the upload afterwards. A symbolic link is followed ([`FOLLOW`]): the file it
/// names takes the bytes, with its own mode (and owner, where the user may give it), and the link
/// stays.
pub fn write_file(p: &str, mode: Option<u32>, len: usize, how: Replace) -> String {
    let chmod = match mode {
        Some(m) => format!("chmod {m:o} \"$t\""),
        None => {
            "if [ -e \"$p\" ]; then chmod --reference=\"$p\" -- \"$t\"; else chmod 644 \"$t\"; fi"
                .to_string()
        }
    };
    let chown = "[ -e \"$p\" ] && chown --reference=\"$p\" -- \"$t\" 2>/dev/null || true\n";
    let in_place = match how {
        Replace::Rename => String::new(),
        Replace::KeepInode => format!(
            "if [ -f \"$p\" ] && [ ! -L \"$p\" ]; then\n  trap '' HUP INT TERM PIPE\n  {}cat -- \"$t\" > \"$p\"\n  sync -- \"$p\" 2>/dev/null || true\n  cmp -s -- \"$t\" \"$p\" || {{ echo 'the file does not hold what was written (changed by someone else meanwhile?)' >&2; exit 1; }}\n  exit 0\nfi\n",
            match mode {
                Some(m) => format!("chmod {m:o} -- \"$p\"\n  "),
                None => String::new(),
            }
        ),
    };
    format!(
        "set -e\np={}\n{FOLLOW}d=$(dirname -- \"$p\")\nt=$(mktemp \"$d/.wkctl-tmp.XXXXXX\")\ntrap 'rm -f -- \"$t\"' EXIT\ntrap 'exit 129' HUP INT TERM PIPE\ncat > \"$t\"\nn=$(wc -c < \"$t\")\n[ \"$n\" -eq {len} ] || {{ echo \"the upload was cut: $n of {len} bytes arrived; the file is unchanged\" >&2; exit 1; }}\n{in_place}{chmod}\n{chown}sync -- \"$t\"\nmv -f -- \"$t\" \"$p\"\ntrap - EXIT\nsync -- \"$d\" 2>/dev/null || true",
        path(p)
    )
}

pub fn stat(p: &str) -> String {
    format!(
        "p={}\n[ -e \"$p\" ] || exit {MISSING}\nstat -L -c '%F|%a|%s' -- \"$p\"",
        path(p)
    )
}

pub fn parse_stat(host: &str, p: &str, out: ExecOutput) -> Result<Option<Stat>, RemoteError> {
    if out.status == Some(MISSING) {
        return Ok(None);
    }
    check(host, p, &out)?;
    let text = out.stdout_str();
    let mut parts = text.trim().split('|');
    let (Some(kind), Some(mode), Some(size)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(file_err(
            host,
            p,
            &format!("unexpected stat answer `{}`", text.trim()),
        ));
    };
    Ok(Some(Stat {
        is_dir: kind == "directory",
        mode: parse_mode(host, p, mode.as_bytes())?,
        size: size
            .parse()
            .map_err(|_| file_err(host, p, "unexpected size from stat"))?,
    }))
}

pub fn mkdir_p(p: &str, mode: u32) -> String {
    format!("mkdir -p -m {mode:o} -- {}", path(p))
}

pub fn remove(p: &str) -> String {
    format!(
        "p={}\nif [ -d \"$p\" ] && [ ! -L \"$p\" ]; then rmdir -- \"$p\"; else rm -f -- \"$p\"; fi",
        path(p)
    )
}

pub fn check_file_op(host: &str, p: &str, out: ExecOutput) -> Result<(), RemoteError> {
    check(host, p, &out)
}

fn check(host: &str, p: &str, out: &ExecOutput) -> Result<(), RemoteError> {
    if out.success() {
        Ok(())
    } else {
        let err = out.stderr_str();
        let msg = if err.trim().is_empty() {
            format!("failed with {:?}", out.status)
        } else {
            err.trim().to_string()
        };
        Err(file_err(host, p, &msg))
    }
}

fn parse_mode(host: &str, p: &str, b: &[u8]) -> Result<u32, RemoteError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 8).ok())
        .ok_or_else(|| file_err(host, p, "unexpected mode from stat"))
}

fn file_err(host: &str, p: &str, message: &str) -> RemoteError {
    RemoteError::File {
        host: host.to_string(),
        path: p.to_string(),
        message: message.to_string(),
    }
}

/// The password a command that calls `sudo -S` itself must find first on its stdin.
pub fn sudo_password(sudo: &crate::Sudo) -> Option<crate::Secret> {
    match sudo {
        crate::Sudo::Password(p) => Some(p.clone()),
        _ => None,
    }
}

/// Wraps a command for the host's sudo mode. Returns the command line and what goes on stdin
/// ahead of the command's own input (the password, for `Sudo::Password`).
///
/// The root side runs under `timeout 0` (no time limit) where the host has it: a signal that
/// ends a timed-out command reaches sudo as the user, and sudo passes it to its child only;
/// `timeout` makes itself a process group and passes it on to the whole group, so nothing the
/// command started as root outlives it.
pub fn sudo_wrap(sudo: &crate::Sudo, command: &str) -> (String, Option<crate::Secret>) {
    let root = format!("sh -c {} wkctl {}", quote(ROOT_GROUP), quote(command));
    match sudo {
        crate::Sudo::None => (command.to_string(), None),
        crate::Sudo::Passwordless => (format!("sudo -n -- {root}"), None),
        // -k: always read the password, so a cached timestamp never lets the password line
        // fall through to the command's stdin.
        crate::Sudo::Password(p) => (format!("sudo -k -S -p '' -- {root}"), Some(p.clone())),
    }
}

/// Runs `$1` as a process group of its own that a TERM ends whole (see [`sudo_wrap`]).
const ROOT_GROUP: &str =
    "command -v timeout >/dev/null 2>&1 && exec timeout 0 sh -c \"$1\"; exec sh -c \"$1\"";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("abc/d.e"), "abc/d.e");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(path("~/wukongim"), "\"$HOME\"/wukongim");
        assert_eq!(path("~/my dir"), "\"$HOME\"/'my dir'");
        assert_eq!(path("~"), "\"$HOME\"");
        assert_eq!(path("/opt/$x"), "'/opt/$x'");
    }

    #[test]
    fn sudo_never_puts_the_password_on_the_command_line() {
        let (cmd, stdin) = sudo_wrap(
            &crate::Sudo::Password(crate::Secret::new("pa55 word")),
            "id -u",
        );
        assert_eq!(
            cmd,
            format!(
                "sudo -k -S -p '' -- sh -c {} wkctl 'id -u'",
                quote(ROOT_GROUP)
            )
        );
        assert!(!cmd.contains("pa55"));
        assert_eq!(stdin.unwrap().expose(), "pa55 word");
        assert_eq!(format!("{:?}", crate::Secret::new("x")), "Secret(***)");
    }
}
