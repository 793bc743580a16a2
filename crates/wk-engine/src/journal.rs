//! The run journal: `.wkctl/runs/<run-id>/` beside the inventory. `plan.json` (the resolved plan),
//! `journal.jsonl` (one JSON object per line, each flushed and fsynced before the change it
//! describes), and `before/` (a local copy of every file as it was before the run changed it).
//! Format: docs/journal.md.
//!
//! The files hold whole compose files, secrets included: the run's directory is made 0700 and
//! every file in it 0600, whatever the umask.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

pub struct Journal {
    pub dir: PathBuf,
    pub run_id: String,
    file: File,
    seq: usize,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A civil UTC date and time from seconds since 1970 (Howard Hinnant's algorithm):
/// (year, month, day, hour, minute, second).
fn civil(t: u64) -> (i64, i64, i64, u64, u64, u64) {
    let (days, rem) = (t / 86_400, t % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Now, as RFC 3339 in UTC with milliseconds (`2026-11-25T01:30:00.123Z`).
pub fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (y, m, d, hh, mm, ss) = civil(now.as_secs());
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
        now.subsec_millis()
    )
}

/// A run id: UTC time and a few random hex digits (`20261125T013000Z-3f9a`).
pub fn new_run_id() -> String {
    let (y, m, d, hh, mm, ss) = civil(now_secs());
    let mut r = [0u8; 2];
    let _ = File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut r));
    format!(
        "{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z-{:02x}{:02x}",
        r[0], r[1]
    )
}

/// Holds the journal for this process's life (an advisory lock the kernel lets go when the
/// process ends, however it ends): a second wkctl cannot resume or roll back a run that is still
/// going on.
fn hold(file: &File, dir: &Path) -> std::io::Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(std::io::Error::other(format!(
            "run {} is still going on: another wkctl holds its journal ({}). Wait for it to end, or stop it (Ctrl-C), then run this again",
            dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            dir.join("journal.jsonl").display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// A new file (or an old one emptied) only its owner can read: mode 0600.
fn private(path: PathBuf) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

impl Journal {
    /// Creates `<root>/<run-id>/` with the plan in it.
    /// `inputs` (an object) goes into the `run_started` line beside the command.
    pub fn create(
        root: &Path,
        plan: &impl Serialize,
        command: &str,
        inputs: serde_json::Value,
    ) -> std::io::Result<Journal> {
        let run_id = new_run_id();
        let dir = root.join(&run_id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("before"))?;
        let plan_json = serde_json::to_vec_pretty(plan).map_err(std::io::Error::other)?;
        let mut f = private(dir.join("plan.json"))?;
        f.write_all(&plan_json)?;
        f.sync_all()?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(dir.join("journal.jsonl"))?;
        hold(&file, &dir)?;
        let mut j = Journal {
            dir,
            run_id,
            file,
            seq: 0,
        };
        let mut first = json!({"type": "run_started", "command": command});
        if let (Some(f), Some(extra)) = (first.as_object_mut(), inputs.as_object()) {
            f.extend(extra.clone());
        }
        j.append(first)?;
        Ok(j)
    }

    /// Opens an existing run's journal to go on appending (resume, rollback). A last line cut
    /// short by a crash is taken off first, and a `tail_trimmed` line records what it held: a
    /// line appended after it would make the journal unreadable.
    pub fn open(dir: &Path) -> std::io::Result<Journal> {
        let run_id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = dir.join("journal.jsonl");
        let file = OpenOptions::new().append(true).open(&path)?;
        hold(&file, dir)?;
        let text = std::fs::read(&path)?;
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let cut = &text[whole..];
        if !cut.is_empty() {
            file.set_len(whole as u64)?;
            file.sync_data()?;
        }
        let mut j = Journal {
            dir: dir.to_path_buf(),
            run_id,
            file,
            seq: text[..whole].iter().filter(|b| **b == b'\n').count(),
        };
        if !cut.is_empty() {
            j.append(json!({
                "type": "tail_trimmed",
                "bytes": cut.len(),
                "text": String::from_utf8_lossy(cut),
            }))?;
        }
        Ok(j)
    }

    /// The lines of a journal; a line cut short by a crash is reported, not guessed at.
    pub fn read(dir: &Path) -> std::io::Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(dir.join("journal.jsonl"))?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            match serde_json::from_str(line) {
                Ok(v) => out.push(v),
                Err(_) if i + 1 == text.lines().count() && !text.ends_with('\n') => break,
                Err(e) => {
                    return Err(std::io::Error::other(format!(
                        "{}: line {}: {e}",
                        dir.join("journal.jsonl").display(),
                        i + 1
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Appends one line and fsyncs it.
    pub fn append(&mut self, mut entry: serde_json::Value) -> std::io::Result<()> {
        self.seq += 1;
        entry["seq"] = json!(self.seq);
        entry["time"] = json!(now_secs());
        entry["run"] = json!(self.run_id);
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }

    /// Keeps a local copy of a file's before-image; returns the copy's name under `before/`.
    pub fn save_before(&mut self, step: &str, content: &[u8]) -> std::io::Result<String> {
        let name = format!(
            "{:03}-{}",
            self.seq + 1,
            step.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                })
                .collect::<String>()
        );
        let p = self.dir.join("before").join(&name);
        let mut f = private(p)?;
        f.write_all(content)?;
        f.sync_all()?;
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::Journal;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("wk-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Known dates: the epoch, a leap day, the end of a century year that is no leap year.
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(super::civil(951_782_400 + 3_661), (2000, 2, 29, 1, 1, 1));
        assert_eq!(super::civil(4_107_542_399), (2100, 2, 28, 23, 59, 59));
        let ts = super::timestamp();
        assert_eq!((ts.len(), &ts[10..11], &ts[23..]), (24, "T", "Z"), "{ts}");
    }

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Before-images and the plan hold secrets: only the operator reads them (the umask of the
    /// test process is the usual 022, which would leave 0755 and 0644).
    #[test]
    fn a_run_directory_is_private() {
        let root = scratch("modes");
        let mut j = Journal::create(
            &root,
            &serde_json::json!({"a": 1}),
            "wkctl expand",
            serde_json::json!({}),
        )
        .unwrap();
        let copy = j
            .save_before("node-compose@node2", b"WK_JWT_SECRET=x\n")
            .unwrap();
        let dir = root.join(&j.run_id);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("before")), 0o700);
        for f in ["plan.json", "journal.jsonl"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&dir.join("before").join(copy)), 0o600);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// While a run goes on, its journal is its own: a resume or rollback from another wkctl is
    /// refused; once the run's process is gone, it is not.
    #[test]
    fn a_running_run_cannot_be_resumed_or_rolled_back() {
        let root = scratch("held");
        let j = Journal::create(
            &root,
            &serde_json::json!({}),
            "wkctl expand",
            serde_json::json!({}),
        )
        .unwrap();
        let dir = root.join(&j.run_id);
        let err = Journal::open(&dir)
            .err()
            .expect("refused while the run holds it");
        assert!(err.to_string().contains("is still going on"), "{err}");
        drop(j);
        // The lock goes with the last descriptor of its open file: a child another test thread
        // forks (the local remote runs `sh`) shares it until its exec closes it, so the lock
        // may outlive the drop by that moment.
        let t = std::time::Instant::now();
        while let Err(e) = Journal::open(&dir) {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(2),
                "the run is over, yet: {e}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A crash in the middle of a line leaves it cut; going on (resume, rollback) must not
    /// append after it, or the journal would not read again.
    #[test]
    fn a_cut_last_line_is_trimmed_before_anything_is_appended() {
        let root = scratch("tail");
        let mut j = Journal::create(
            &root,
            &serde_json::json!({}),
            "wkctl expand",
            serde_json::json!({}),
        )
        .unwrap();
        j.append(serde_json::json!({"type": "step_started", "step": "a"}))
            .unwrap();
        let dir = root.join(&j.run_id);
        drop(j);
        let path = dir.join("journal.jsonl");
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(br#"{"type":"before_image","ste"#);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            Journal::read(&dir).unwrap().len(),
            2,
            "a cut last line is left out"
        );
        let mut j = Journal::open(&dir).unwrap();
        j.append(serde_json::json!({"type": "run_resumed"}))
            .unwrap();
        let lines = Journal::read(&dir).unwrap();
        let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["run_started", "step_started", "tail_trimmed", "run_resumed"]
        );
        assert_eq!(lines[2]["text"], r#"{"type":"before_image","ste"#);
        let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
