//! A host's state as one command reads it: whether the deploy path exists, where `current` and
//! `previous` point, the release directories, the releases log and the lock record.

use std::collections::HashMap;

use crate::quote::quote;

use super::log::{LogEntry, Status};
use super::name::valid_name;

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
    /// Releases named in the log's last lines, on disk or not (a failed release's directory is
    /// removed, but its name is taken).
    pub recent: Vec<String>,
    pub lock: Option<String>,
    /// `.dep/live_color`: on a blue-green stage's routers, the color taking the traffic.
    pub live_color: Option<crate::config::deployfile::Color>,
}

pub const SECTION: &str = "--dep-section ";

/// How many of the log's last lines name the `recent` releases.
const RECENT_LINES: usize = 20;

/// One command printing everything `HostState::parse` needs. Of the releases log (which only
/// grows) it sends the lines about releases still on disk (the only ones a deploy, a rollback,
/// cleanup or `dep releases` look at) and its last lines, for the names recently used.
pub fn state_command(deploy_path: &str) -> String {
    format!(
        "cd {} 2>/dev/null || exit 0\necho '{SECTION}exists'\n\
         echo '{SECTION}current'; readlink current 2>/dev/null\n\
         echo '{SECTION}previous'; readlink previous 2>/dev/null\n\
         __dep_r=$(ls -1 releases 2>/dev/null)\n\
         echo '{SECTION}releases'; [ -z \"$__dep_r\" ] || printf '%s\\n' \"$__dep_r\"\n\
         echo '{SECTION}log'; [ -z \"$__dep_r\" ] || printf '%s\\n' \"$__dep_r\" | \
         sed 's/.*/\"release\":\"&\"/' | grep -F -f - .dep/releases.log 2>/dev/null\n\
         echo '{SECTION}recent'; tail -n {RECENT_LINES} .dep/releases.log 2>/dev/null\n\
         echo '{SECTION}lock'; cat .dep/deploy.lock 2>/dev/null\n\
         echo '{SECTION}live_color'; cat .dep/live_color 2>/dev/null\n\
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
                    "recent" => "recent",
                    "lock" => "lock",
                    "live_color" => "live_color",
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
                "recent" => {
                    if let Ok(entry) = serde_json::from_str::<LogEntry>(line) {
                        if valid_name(&entry.release) && !state.recent.contains(&entry.release) {
                            state.recent.push(entry.release);
                        }
                    }
                }
                "live_color" => {
                    state.live_color = state
                        .live_color
                        .or_else(|| crate::config::deployfile::Color::parse(line))
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
}

/// Why a host has no release to roll back to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRollbackTarget {
    #[error("no `current` release to roll back from")]
    NoCurrent,
    #[error("release `{0}` does not exist")]
    Missing(String),
    #[error("release `{0}` is already current")]
    AlreadyCurrent(String),
    #[error("no release older than current `{0}` went live and was not rolled back")]
    NoneOlder(String),
}

impl HostState {
    /// The release rollback goes to: `to` if given, else the newest release older than current
    /// that went live and was not rolled back. Err says why there is none.
    pub fn rollback_target(&self, to: Option<&str>) -> Result<String, NoRollbackTarget> {
        let current = self.current.as_deref().ok_or(NoRollbackTarget::NoCurrent)?;
        if let Some(to) = to {
            if !self.releases.iter().any(|r| r == to) {
                return Err(NoRollbackTarget::Missing(to.to_string()));
            }
            if to == current {
                return Err(NoRollbackTarget::AlreadyCurrent(to.to_string()));
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
            .ok_or_else(|| NoRollbackTarget::NoneOlder(current.to_string()))
    }
}

/// `releases/20261126101500` (or an absolute path ending so) -> `20261126101500`.
fn release_of_link(target: &str) -> Option<String> {
    let name = target.trim_end_matches('/').rsplit('/').next()?;
    valid_name(name).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_log_lines_of_releases_on_disk_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let dp = dir.path();
        for release in ["20250101100000", "20250101110000"] {
            std::fs::create_dir_all(dp.join("releases").join(release)).unwrap();
        }
        std::fs::create_dir_all(dp.join(".dep")).unwrap();
        let line = |release: &str, status: &str| {
            format!("{{\"release\":\"{release}\",\"status\":\"{status}\",\"user\":\"a@b\"}}\n")
        };
        let log = [
            line("20240101000000", "live"),
            line("20250101100000", "prepared"),
            line("20250101100000", "live"),
            line("20240101000000", "rolled_back"),
            "{\"release\":\"20250101110000\",\"sta".to_string() + "\n",
            line("20250101110000", "failed"),
        ];
        std::fs::write(dp.join(".dep/releases.log"), log.concat()).unwrap();
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(state_command(&dp.display().to_string()))
            .output()
            .unwrap();
        let state = HostState::parse(&String::from_utf8(output.stdout).unwrap());
        assert_eq!(state.releases, ["20250101100000", "20250101110000"]);
        let read: Vec<(&str, Status)> = state
            .log
            .iter()
            .map(|e| (e.release.as_str(), e.status))
            .collect();
        assert_eq!(
            read,
            [
                ("20250101100000", Status::Prepared),
                ("20250101100000", Status::Live),
                ("20250101110000", Status::Failed),
            ]
        );
    }
}
