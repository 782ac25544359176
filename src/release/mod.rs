//! Releases on a host: their names, the JSON-lines releases log, reading a host's state, and the
//! pure decisions made from it (next release name, what cleanup removes, where rollback goes).

pub mod lock;
pub mod switch;

use std::collections::HashMap;

use chrono::{NaiveDateTime, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::quote::quote;

pub const NAME_FORMAT: &str = "%Y%m%d%H%M%S";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Prepared,
    Live,
    Failed,
    RolledBack,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Prepared => "prepared",
            Status::Live => "live",
            Status::Failed => "failed",
            Status::RolledBack => "rolled_back",
        }
    }
}

/// One line of `.dep/releases.log`. The log is append-only: a release's latest line is its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub release: String,
    pub status: Status,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
}

impl LogEntry {
    /// The shell command that appends this entry to the log.
    pub fn append_command(&self, deploy_path: &str) -> String {
        let line = serde_json::to_string(self).expect("a log entry serializes");
        format!(
            "printf '%s\\n' {} >> {}/.dep/releases.log",
            quote(&line),
            quote(deploy_path)
        )
    }
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What a host looks like now: read with one command (`state_command`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// `deploy_path` exists.
    pub exists: bool,
    pub current: Option<String>,
    pub previous: Option<String>,
    /// Release directory names, oldest first.
    pub releases: Vec<String>,
    pub log: Vec<LogEntry>,
    pub lock: Option<String>,
}

pub const SECTION: &str = "--dep-section ";

/// One command printing everything `HostState::parse` needs.
pub fn state_command(deploy_path: &str) -> String {
    format!(
        "cd {} 2>/dev/null || exit 0\necho '{SECTION}exists'\n\
         echo '{SECTION}current'; readlink current 2>/dev/null\n\
         echo '{SECTION}previous'; readlink previous 2>/dev/null\n\
         echo '{SECTION}releases'; ls -1 releases 2>/dev/null\n\
         echo '{SECTION}log'; cat .dep/releases.log 2>/dev/null\n\
         echo '{SECTION}lock'; cat .dep/deploy.lock 2>/dev/null\n\
         echo '{SECTION}end'; true",
        quote(deploy_path)
    )
}

impl HostState {
    pub fn parse(output: &str) -> HostState {
        let mut state = HostState::default();
        let mut section = "";
        let mut lock = String::new();
        for line in output.lines() {
            if let Some(name) = line.strip_prefix(SECTION) {
                section = match name {
                    "exists" => {
                        state.exists = true;
                        ""
                    }
                    "current" => "current",
                    "previous" => "previous",
                    "releases" => "releases",
                    "log" => "log",
                    "lock" => "lock",
                    _ => "",
                };
                continue;
            }
            match section {
                "current" => state.current = release_of_link(line),
                "previous" => state.previous = release_of_link(line),
                "releases" if valid_name(line) => state.releases.push(line.to_string()),
                // A line that does not parse (a torn write, a hand edit) is skipped, not fatal.
                "log" => {
                    if let Ok(entry) = serde_json::from_str::<LogEntry>(line) {
                        state.log.push(entry);
                    }
                }
                "lock" => {
                    lock.push_str(line);
                    lock.push('\n');
                }
                _ => {}
            }
        }
        state.releases.sort();
        if !lock.trim().is_empty() {
            state.lock = Some(lock.trim().to_string());
        }
        state
    }

    /// The latest log status of each release.
    pub fn statuses(&self) -> HashMap<&str, &LogEntry> {
        let mut statuses = HashMap::new();
        for entry in &self.log {
            statuses.insert(entry.release.as_str(), entry);
        }
        statuses
    }

    /// The release rollback goes to: `to` if given, else the newest release older than current
    /// that went live and was not rolled back. Err says why there is none.
    pub fn rollback_target(&self, to: Option<&str>) -> Result<String, String> {
        let current = self
            .current
            .as_deref()
            .ok_or("no `current` release to roll back from")?;
        if let Some(to) = to {
            if !self.releases.iter().any(|r| r == to) {
                return Err(format!("release `{to}` does not exist"));
            }
            if to == current {
                return Err(format!("release `{to}` is already current"));
            }
            return Ok(to.to_string());
        }
        let statuses = self.statuses();
        self.releases
            .iter()
            .rev()
            .filter(|r| r.as_str() < current)
            .find(|r| {
                statuses
                    .get(r.as_str())
                    .is_some_and(|e| e.status == Status::Live)
            })
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no release older than current `{current}` went live and was not rolled back"
                )
            })
    }
}

/// `releases/20261126101500` (or an absolute path ending so) -> `20261126101500`.
fn release_of_link(target: &str) -> Option<String> {
    let name = target.trim_end_matches('/').rsplit('/').next()?;
    valid_name(name).then(|| name.to_string())
}

/// A release directory name dep may touch: no path separators, no dot names, plain characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The name of a new release: the current UTC time, or one second after the newest existing
/// release on any host if that is not later (two deploys in the same second, clock skew).
pub fn next_name(now: NaiveDateTime, existing: &[&str]) -> String {
    // Names have whole seconds: compare at that precision.
    let mut name = now.with_nanosecond(0).unwrap_or(now);
    if let Some(newest) = existing
        .iter()
        .filter_map(|r| NaiveDateTime::parse_from_str(r, NAME_FORMAT).ok())
        .max()
    {
        if newest >= name {
            name = newest + TimeDelta::seconds(1);
        }
    }
    name.format(NAME_FORMAT).to_string()
}

/// The releases cleanup removes to leave `keep`: never current, previous or `protect`; failed
/// releases first, then the oldest.
pub fn to_remove(state: &HostState, keep: usize, protect: &[&str]) -> Vec<String> {
    let excess = state.releases.len().saturating_sub(keep.max(1));
    if excess == 0 {
        return Vec::new();
    }
    let statuses = state.statuses();
    let kept = |r: &String| {
        Some(r.as_str()) == state.current.as_deref()
            || Some(r.as_str()) == state.previous.as_deref()
            || protect.contains(&r.as_str())
    };
    let failed = |r: &String| {
        statuses
            .get(r.as_str())
            .is_some_and(|e| matches!(e.status, Status::Failed | Status::Prepared))
    };
    let mut candidates: Vec<&String> = state.releases.iter().filter(|r| !kept(r)).collect();
    // Stable sort: failed ones first, each group oldest first (names sort by time).
    candidates.sort_by_key(|r| !failed(r));
    candidates.into_iter().take(excess).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(release: &str, status: Status) -> LogEntry {
        LogEntry {
            release: release.into(),
            status,
            revision: None,
            branch: None,
            user: "u@m".into(),
            started_at: String::new(),
            finished_at: None,
        }
    }

    fn state(
        releases: &[&str],
        current: &str,
        previous: &str,
        log: &[(&str, Status)],
    ) -> HostState {
        HostState {
            exists: true,
            current: (!current.is_empty()).then(|| current.to_string()),
            previous: (!previous.is_empty()).then(|| previous.to_string()),
            releases: releases.iter().map(|r| r.to_string()).collect(),
            log: log.iter().map(|(r, s)| entry(r, *s)).collect(),
            lock: None,
        }
    }

    #[test]
    fn release_names() {
        let t = |s: &str| NaiveDateTime::parse_from_str(s, NAME_FORMAT).unwrap();
        assert_eq!(next_name(t("20261126101500"), &[]), "20261126101500");
        assert_eq!(
            next_name(t("20261126101500"), &["20261126101459"]),
            "20261126101500"
        );
        assert_eq!(
            next_name(t("20261126101500"), &["20261126101500"]),
            "20261126101501"
        );
        assert_eq!(
            next_name(t("20261126101500"), &["20261126101505", "junk"]),
            "20261126101506"
        );
        assert_eq!(
            next_name(t("20261231235959"), &["20261231235959"]),
            "20270101000000"
        );
    }

    #[test]
    fn state_parses_links_releases_log_and_lock() {
        let output = format!(
            "{SECTION}exists\n{SECTION}current\nreleases/3\n{SECTION}previous\n/srv/app/releases/2\n{SECTION}releases\n3\n1\n2\n..\n{SECTION}log\n{}\nnot json\n{SECTION}lock\n{{\"who\":\"a@b\"}}\n{SECTION}end\n",
            serde_json::to_string(&entry("1", Status::Live)).unwrap()
        );
        let state = HostState::parse(&output);
        assert!(state.exists);
        assert_eq!(state.current.as_deref(), Some("3"));
        assert_eq!(state.previous.as_deref(), Some("2"));
        assert_eq!(state.releases, vec!["1", "2", "3"]);
        assert_eq!(state.log.len(), 1);
        assert_eq!(state.lock.as_deref(), Some("{\"who\":\"a@b\"}"));
        assert_eq!(HostState::parse(""), HostState::default());
    }

    #[test]
    fn rollback_targets() {
        use Status::*;
        let s = state(
            &["1", "2", "3", "4"],
            "4",
            "3",
            &[("1", Live), ("2", Live), ("3", Failed), ("4", Live)],
        );
        assert_eq!(s.rollback_target(None).unwrap(), "2");
        assert_eq!(s.rollback_target(Some("1")).unwrap(), "1");
        assert!(s
            .rollback_target(Some("9"))
            .unwrap_err()
            .contains("does not exist"));
        assert!(s
            .rollback_target(Some("4"))
            .unwrap_err()
            .contains("already current"));
        let s = state(
            &["1", "2", "3"],
            "2",
            "3",
            &[("1", Live), ("2", Live), ("3", RolledBack)],
        );
        assert_eq!(s.rollback_target(None).unwrap(), "1");
        let s = state(&["1", "2"], "2", "", &[("1", RolledBack), ("2", Live)]);
        assert!(s.rollback_target(None).is_err());
        assert!(state(&[], "", "", &[]).rollback_target(None).is_err());
    }

    #[test]
    fn cleanup_keeps_current_previous_and_removes_failed_first() {
        use Status::*;
        let log = [
            ("1", Live),
            ("2", Failed),
            ("3", Live),
            ("4", Live),
            ("5", Live),
            ("6", Live),
            ("7", Live),
        ];
        let s = state(&["1", "2", "3", "4", "5", "6", "7"], "7", "6", &log);
        assert_eq!(to_remove(&s, 5, &[]), vec!["2", "1"]);
        assert_eq!(to_remove(&s, 3, &[]), vec!["2", "1", "3", "4"]);
        assert!(to_remove(&s, 10, &[]).is_empty());
        // current and previous survive even when keep is smaller than two.
        assert_eq!(
            to_remove(&s, 1, &[]),
            vec!["2", "1", "3", "4", "5", "6"]
                .into_iter()
                .filter(|r| *r != "6")
                .collect::<Vec<_>>()
        );
        // A rolled-back current in the middle is still protected.
        let s = state(
            &["1", "2", "3"],
            "1",
            "3",
            &[("1", Live), ("2", Live), ("3", RolledBack)],
        );
        assert_eq!(to_remove(&s, 1, &[]), vec!["2"]);
    }
}
