//! The summary table printed when a deploy ends: per host its result, where `current` points,
//! how long it took and its slowest task, tallied from the events as they pass.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use super::table;
use super::Event;
use crate::transport::human_duration;

/// What a host did.
#[derive(Debug, Default)]
struct HostTally {
    first_start: Option<Instant>,
    last_end: Option<Instant>,
    slowest: Option<(String, Duration)>,
    failed: Option<String>,
    /// The failure came after the host switched (a post-switch task).
    failed_after_switch: bool,
    switched: bool,
    rolled_back: bool,
    /// The release `current` points at after this run, when the run changed it.
    release: Option<String>,
}

impl HostTally {
    /// The host's first failure is the one it shows (a task re-run by a rollback may fail too).
    fn fail(&mut self, task: &str) {
        if self.failed.is_none() {
            self.failed = Some(task.to_string());
            self.failed_after_switch = self.switched && !self.rolled_back;
        }
    }
}

/// Every host's tally, in the order hosts first appeared.
#[derive(Debug, Default)]
pub struct Summary {
    hosts: Mutex<IndexMap<String, HostTally>>,
}

impl Summary {
    /// Keep what the table needs from `event`.
    pub fn record(&self, event: &Event<'_>) {
        let Ok(mut hosts) = self.hosts.lock() else {
            return;
        };
        let now = Instant::now();
        match *event {
            Event::TaskStarted { host, .. } => {
                hosts
                    .entry(host.to_string())
                    .or_default()
                    .first_start
                    .get_or_insert(now);
            }
            Event::TaskFinished { host, result } => {
                let tally = hosts.entry(host.to_string()).or_default();
                tally.first_start.get_or_insert(now);
                tally.last_end = Some(now);
                if tally
                    .slowest
                    .as_ref()
                    .is_none_or(|(_, d)| result.duration > *d)
                {
                    tally.slowest = Some((result.task.clone(), result.duration));
                }
                if result.failed() {
                    tally.fail(&result.task);
                }
            }
            Event::HostFailed { host, task, .. } => {
                hosts.entry(host.to_string()).or_default().fail(task);
            }
            Event::Switched { host, release } => {
                let tally = hosts.entry(host.to_string()).or_default();
                tally.switched = true;
                tally.release = Some(release.to_string());
            }
            Event::RolledBack { host, to, .. } => {
                let tally = hosts.entry(host.to_string()).or_default();
                tally.rolled_back = true;
                tally.release = Some(to.unwrap_or("(none)").to_string());
            }
            _ => {}
        }
    }

    /// The table: host, result, release, duration, slowest task (None before any host did anything).
    pub fn table(&self, ok: bool) -> Option<String> {
        let hosts = self.hosts.lock().ok()?;
        if hosts.is_empty() {
            return None;
        }
        let mut rows =
            vec![["HOST", "RESULT", "CURRENT", "DURATION", "SLOWEST TASK"].map(String::from)];
        for (host, tally) in hosts.iter() {
            let result = match (&tally.failed, tally.rolled_back, tally.switched, ok) {
                (Some(task), true, _, _) if tally.failed_after_switch => {
                    format!("rolled back: {task} failed")
                }
                (Some(task), false, true, _) if tally.failed_after_switch => {
                    format!("live, but {task} failed")
                }
                (Some(task), _, _, _) => format!("failed: {task}"),
                (None, true, _, _) => "rolled back".to_string(),
                (None, false, true, _) => "live".to_string(),
                (None, false, false, true) => "ok".to_string(),
                // The deploy failed elsewhere before this host switched: it is as it was.
                (None, false, false, false) => "unchanged".to_string(),
            };
            let duration = match (tally.first_start, tally.last_end) {
                (Some(start), Some(end)) => human_duration(end.saturating_duration_since(start)),
                _ => "-".to_string(),
            };
            let slowest = tally
                .slowest
                .as_ref()
                .map(|(task, d)| format!("{task} ({})", human_duration(*d)))
                .unwrap_or_default();
            let current = tally
                .release
                .clone()
                .unwrap_or_else(|| "(unchanged)".to_string());
            rows.push([host.clone(), result, current, duration, slowest]);
        }
        Some(table::render(&rows, ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Outcome, StepResult};

    fn finished(task: &str, failed: bool) -> StepResult {
        StepResult {
            task: task.into(),
            command: "true".into(),
            outcome: if failed {
                Outcome::Failed {
                    status: Some(1),
                    reason: None,
                }
            } else {
                Outcome::Ok
            },
            duration: Duration::from_millis(3),
            stdout: String::new(),
            stderr: String::new(),
            tolerated: false,
            unreachable: false,
        }
    }

    /// A host's RESULT says whether it failed before or after its switch, and where it is now.
    #[test]
    fn results_say_what_became_of_each_host() {
        let summary = Summary::default();
        let task = |host, name, failed| {
            summary.record(&Event::TaskFinished {
                host,
                result: &finished(name, failed),
            })
        };
        task("before", "build", true);
        task("unchanged", "build", false);
        for host in ["live", "post", "back", "post-back"] {
            task(host, "build", false);
            summary.record(&Event::Switched { host, release: "2" });
        }
        task("post", "reload", true);
        task("post-back", "reload", true);
        for host in ["back", "post-back"] {
            summary.record(&Event::RolledBack {
                host,
                from: "2",
                to: Some("1"),
            });
        }
        // The rollback re-runs the task; a failure then is not the one shown.
        task("post-back", "reload", true);
        let table = summary.table(false).unwrap();
        let results: Vec<String> = table
            .lines()
            .skip(1)
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        assert_eq!(
            results,
            [
                "before|failed: build|(unchanged)",
                "unchanged|unchanged|(unchanged)",
                "live|live|2",
                "post|live, but reload failed|2",
                "back|rolled back|1",
                "post-back|rolled back: reload failed|1",
            ]
        );
    }
}
