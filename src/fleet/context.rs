//! What every host's work in one run shares, read-only while the hosts run concurrently: the
//! project, the compiled tasks, the reporter, and the run's identity (release name, revision,
//! who, when, the lock record), plus the code packed once for every host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{OnceCell, Semaphore};

use crate::config::local::{local_machine, local_user};
use crate::config::project::Project;
use crate::plan::TaskSet;
use crate::release::lock::LockInfo;
use crate::release::{self, LogEntry, Status};
use crate::report::Reporter;
use crate::transport::Payload;

use super::archive::ArchiveError;
use super::interrupt::Interrupts;
use super::Options;

/// What kind of run this is: a deploy announces its release and notifies; the others do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Deploy,
    Rollback,
    /// `dep TASK` by hand: `deploy:unlock` clears the lock whoever holds it, like `dep unlock`.
    Task,
    /// Reads only (`dep releases`, `dep health`, `dep run`).
    Inspect,
}

/// The revision every host deploys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Revision {
    /// Not known yet, or none (an upload outside git).
    #[default]
    None,
    /// `--revision R` as given: resolved to one commit on the first host, under the lock.
    Pending(String),
    Resolved(String),
}

impl Revision {
    /// The commit, once known ("" before).
    pub fn commit(&self) -> &str {
        match self {
            Revision::Resolved(commit) => commit,
            Revision::None | Revision::Pending(_) => "",
        }
    }
}

pub struct Context<'p> {
    pub project: &'p Project,
    pub tasks: &'p TaskSet,
    pub reporter: &'p Reporter,
    pub options: &'p Options,
    pub mode: Mode,
    pub release: String,
    pub revision: Revision,
    pub branch: String,
    pub started_at: String,
    pub who: String,
    pub lock: LockInfo,
    pub code: Code,
    /// The sha256 of the upload or artifact strategy's bytes, recorded in the releases log.
    pub sha256: Option<String>,
    /// At most `--parallel` hosts run a segment at once.
    pub parallel: Semaphore,
    /// Ctrl-C, held off while a switch is under way.
    pub interrupts: Arc<Interrupts>,
}

impl<'p> Context<'p> {
    pub fn new(
        project: &'p Project,
        tasks: &'p TaskSet,
        reporter: &'p Reporter,
        options: &'p Options,
    ) -> Context<'p> {
        let release = now().format(release::NAME_FORMAT).to_string();
        let who = format!("{}@{}", local_user(), local_machine());
        let lock = LockInfo {
            who: who.clone(),
            pid: std::process::id(),
            pid_space: crate::config::local::pid_space(),
            release: release.clone(),
            since: release::now_rfc3339(),
            id: crate::transport::script::token(),
        };
        Context {
            project,
            tasks,
            reporter,
            options,
            mode: Mode::Inspect,
            release,
            revision: Revision::None,
            branch: String::new(),
            started_at: release::now_rfc3339(),
            who,
            lock,
            code: Code::default(),
            sha256: None,
            parallel: Semaphore::new(options.parallel.max(1)),
            interrupts: Arc::default(),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.options.dry_run
    }

    /// This run's release as a log line.
    pub fn log_entry(&self, status: Status, finished: bool) -> LogEntry {
        LogEntry {
            release: self.release.clone(),
            status,
            revision: Some(self.revision.commit().to_string()).filter(|r| !r.is_empty()),
            branch: Some(self.branch.clone()).filter(|b| !b.is_empty()),
            user: self.who.clone(),
            started_at: self.started_at.clone(),
            finished_at: finished.then(release::now_rfc3339),
            sha256: self.sha256.clone(),
            promoted_from: self.options.promotion.as_ref().map(|p| p.from.clone()),
        }
    }
}

/// The bytes sent to every host, packed once per run whatever the number of hosts.
#[derive(Default)]
pub struct Code {
    /// The upload or artifact strategy's code.
    release: Mutex<Option<Payload>>,
    /// `upload` tasks' directories by local path: the first host to need one packs it, the
    /// others wait for that one packing.
    uploads: Mutex<HashMap<PathBuf, Arc<OnceCell<Payload>>>>,
}

impl Code {
    pub fn set_release(&self, bytes: Payload) {
        *self.release.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes);
    }

    pub fn release(&self) -> Option<Payload> {
        self.release
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `path` packed with tar+gzip, once per run; on a blocking thread, since a large directory
    /// takes a while and the runtime has few workers.
    pub async fn upload(&self, path: &Path) -> Result<Payload, ArchiveError> {
        let cell = self
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(path.to_path_buf())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let dir = path.to_path_buf();
            let bytes = tokio::task::spawn_blocking(move || super::archive::pack(&dir, &[]))
                .await
                .map_err(|e| ArchiveError::Stopped(e.to_string()))??;
            Ok(Arc::new(bytes))
        })
        .await
        .cloned()
    }
}

/// The variable that pins the clock.
pub const NOW_VAR: &str = "DEP_NOW";

/// The clock: DEP_NOW pins it, so release names are reproducible in tests (checked at start-up
/// by [`pinned_now`]).
pub fn now() -> chrono::NaiveDateTime {
    pinned_now()
        .ok()
        .flatten()
        .unwrap_or_else(|| Utc::now().naive_utc())
}

/// DEP_NOW's time (UTC), as a release name (YYYYMMDDHHMMSS) or RFC 3339; None when unset.
pub fn pinned_now() -> std::result::Result<Option<chrono::NaiveDateTime>, BadNow> {
    let Some(text) = std::env::var(NOW_VAR).ok().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    chrono::NaiveDateTime::parse_from_str(&text, release::NAME_FORMAT)
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(&text)
                .ok()
                .map(|t| t.naive_utc())
        })
        .map(Some)
        .ok_or(BadNow(text))
}

/// DEP_NOW is set to something that is not a time.
#[derive(Debug, thiserror::Error)]
#[error("DEP_NOW={0:?} is not a time: use YYYYMMDDHHMMSS (UTC) or RFC 3339, e.g. 20260101100000 or 2026-01-01T10:00:00Z")]
pub struct BadNow(String);

#[cfg(test)]
mod tests {
    use crate::transport::script::token;

    #[test]
    fn tokens_are_128_random_bits() {
        let (a, b) = (token(), token());
        assert_ne!(a, b);
        for t in [&a, &b] {
            let hex = t.strip_prefix("dep").unwrap();
            assert_eq!(hex.len(), 32, "{t}");
            assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{t}");
        }
    }
}
