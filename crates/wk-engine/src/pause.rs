//! A test hook for the fault matrix: the run stops at one chosen point of one step, so a test
//! can do a real fault there (SIGKILL of wkctl, a cut link, a killed sshd, an unreachable seed)
//! before it lets the run go on.
//!
//! `WKCTL_TEST_PAUSE=<step id>:<start|middle|end>` (e.g. `node-compose@node2:middle`) and
//! `WKCTL_TEST_PAUSE_FILE=<path>`: when the run reaches that point it creates the file (holding
//! the point) and waits while the file exists. Unset (as for every operator), it does nothing.
//!
//! The points: `start` after the step is journaled as started, before it observes anything;
//! `end` after its work is done, before its result is journaled; `middle` inside its work:
//! a file step after the before-image and the host's backup, before the new content is
//! written; a compose step after the compose command ran, before its services are verified; a
//! wait after its first poll; the lock between its journal line and the lock file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use wk_plan::plan::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    Start,
    Middle,
    End,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::Start => "start",
            Point::Middle => "middle",
            Point::End => "end",
        }
    }
}

fn target() -> Option<&'static (String, PathBuf)> {
    static T: OnceLock<Option<(String, PathBuf)>> = OnceLock::new();
    T.get_or_init(|| {
        let at = std::env::var("WKCTL_TEST_PAUSE").ok()?;
        let file = std::env::var_os("WKCTL_TEST_PAUSE_FILE")?;
        Some((at, PathBuf::from(file)))
    })
    .as_ref()
}

/// Waits here while the pause file exists, if this is the chosen point (once per process).
pub(crate) async fn at(step: &Step, point: Point) {
    named(&step.id, point).await
}

/// As [`at`], for a point that is not a step's: `rollback:start`, once the rollback holds
/// the cluster's lock and before it undoes anything.
pub(crate) async fn named(name: &str, point: Point) {
    static DONE: AtomicBool = AtomicBool::new(false);
    let Some((at, file)) = target() else { return };
    if *at != format!("{name}:{}", point.name()) || DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    if std::fs::write(file, at).is_err() {
        return;
    }
    while file.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
