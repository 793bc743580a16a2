//! The run journal: `.wkctl/runs/<run-id>/` beside the inventory. `plan.json` (the resolved plan),
//! `journal.jsonl` (one JSON object per line, each flushed and fsynced before the change it
//! describes), and `before/` (a local copy of every file as it was before the run changed it).
//! Format: docs/journal.md.

use std::fs::{File, OpenOptions};
use std::io::Write;
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

/// A run id: UTC time and a few random hex digits (`20261125T013000Z-3f9a`).
pub fn new_run_id() -> String {
    let t = now_secs();
    let (days, rem) = (t / 86_400, t % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    let mut r = [0u8; 2];
    let _ = File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut r));
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{:02x}{:02x}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        r[0],
        r[1]
    )
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
        std::fs::create_dir_all(dir.join("before"))?;
        let plan_json = serde_json::to_vec_pretty(plan).map_err(std::io::Error::other)?;
        let mut f = File::create(dir.join("plan.json"))?;
        f.write_all(&plan_json)?;
        f.sync_all()?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("journal.jsonl"))?;
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

    /// Opens an existing run's journal to go on appending (resume, rollback).
    pub fn open(dir: &Path) -> std::io::Result<Journal> {
        let run_id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let seq = std::fs::read_to_string(dir.join("journal.jsonl"))?
            .lines()
            .count();
        let file = OpenOptions::new()
            .append(true)
            .open(dir.join("journal.jsonl"))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            run_id,
            file,
            seq,
        })
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
        let mut f = File::create(&p)?;
        f.write_all(content)?;
        f.sync_all()?;
        Ok(name)
    }
}
