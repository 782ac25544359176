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
    switched: bool,
    rolled_back: bool,
    /// The release `current` points at after this run, when the run changed it.
    release: Option<String>,
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
                    tally.failed = Some(result.task.clone());
                }
            }
            Event::HostFailed { host, task, .. } => {
                hosts.entry(host.to_string()).or_default().failed = Some(task.to_string());
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
