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
    /// Blue-green: the host switched, then the routers sent the traffic to the other color
    /// (back, after a failure): its `current` serves no one.
    without_traffic: bool,
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
            Event::Switched { host, release, .. } => {
                let tally = hosts.entry(host.to_string()).or_default();
                tally.switched = true;
                tally.release = Some(release.to_string());
            }
            Event::TrafficSwitched {
                hosts: to,
                dry_run: false,
                ..
            } => {
                for (host, tally) in hosts.iter_mut() {
                    if tally.switched && !tally.rolled_back {
                        tally.without_traffic = !to.contains(host);
                    }
                }
            }
            Event::RolledBack { host, to, .. } => {
                let tally = hosts.entry(host.to_string()).or_default();
                tally.rolled_back = true;
                tally.release = Some(to.unwrap_or("(none)").to_string());
            }
            _ => {}
        }
    }

    /// The table: host, result, release, duration, slowest task (None before any host did
    /// anything). Unless `per_host`, more than [`ROWS_PER_RESULT`] hosts with the same result and
    /// release share one row (a range of durations, the slowest task of them all and its host);
    /// a host that failed always has its own row.
    pub fn table(&self, ok: bool, per_host: bool) -> Option<String> {
        let hosts = self.hosts.lock().ok()?;
        if hosts.is_empty() {
            return None;
        }
        let rows: Vec<Row> = hosts
            .iter()
            .map(|(host, tally)| Row::of(host, tally, ok))
            .collect();
        let mut table =
            vec![["HOST", "RESULT", "CURRENT", "DURATION", "SLOWEST TASK"].map(String::from)];
        let mut shown = vec![false; rows.len()];
        for (i, row) in rows.iter().enumerate() {
            if shown[i] {
                continue;
            }
            let same: Vec<usize> = (i..rows.len())
                .filter(|&j| !per_host && !row.failed && rows[j].same_result(row))
                .collect();
            if same.len() > ROWS_PER_RESULT {
                let group: Vec<&Row> = same.iter().map(|&j| &rows[j]).collect();
                table.push(group_row(&group));
                for j in same {
                    shown[j] = true;
                }
            } else {
                table.push(row.cells());
                shown[i] = true;
            }
        }
        Some(table::render(&table, ""))
    }
}

/// Hosts with the same result shown one by one, at most; more share a row.
const ROWS_PER_RESULT: usize = 3;

/// One host's line of the summary, before it is written out.
struct Row<'a> {
    host: &'a str,
    result: String,
    current: String,
    duration: Option<Duration>,
    slowest: Option<&'a (String, Duration)>,
    failed: bool,
}

impl<'a> Row<'a> {
    fn of(host: &'a str, tally: &'a HostTally, ok: bool) -> Row<'a> {
        let result = match (&tally.failed, tally.rolled_back, tally.switched, ok) {
            (Some(task), true, _, _) if tally.failed_after_switch => {
                format!("rolled back: {task} failed")
            }
            (Some(task), false, true, _) if tally.failed_after_switch => {
                format!("live, but {task} failed")
            }
            (Some(task), _, _, _) => format!("failed: {task}"),
            (None, true, _, _) => "rolled back".to_string(),
            (None, false, true, _) if tally.without_traffic => "switched, takes no traffic".into(),
            (None, false, true, _) => "live".to_string(),
            (None, false, false, true) => "ok".to_string(),
            // The deploy failed elsewhere before this host switched: it is as it was.
            (None, false, false, false) => "unchanged".to_string(),
        };
        Row {
            host,
            result,
            current: tally
                .release
                .clone()
                .unwrap_or_else(|| "(unchanged)".to_string()),
            duration: match (tally.first_start, tally.last_end) {
                (Some(start), Some(end)) => Some(end.saturating_duration_since(start)),
                _ => None,
            },
            slowest: tally.slowest.as_ref(),
            failed: tally.failed.is_some(),
        }
    }

    fn same_result(&self, other: &Row<'_>) -> bool {
        !self.failed && self.result == other.result && self.current == other.current
    }

    fn cells(&self) -> [String; 5] {
        [
            self.host.to_string(),
            self.result.clone(),
            self.current.clone(),
            self.duration.map_or("-".to_string(), human_duration),
            self.slowest
                .map(|(task, d)| format!("{task} ({})", human_duration(*d)))
                .unwrap_or_default(),
        ]
    }
}

/// The row of hosts with the same result: how many, the range of their durations, and the
/// slowest task of them all with its host (`38 hosts  live  …  1.8s–2.2s  h23 app:build (3s)`).
fn group_row(group: &[&Row<'_>]) -> [String; 5] {
    let durations = group.iter().filter_map(|r| r.duration);
    let duration = match (durations.clone().min(), durations.max()) {
        (Some(min), Some(max)) if human_duration(min) != human_duration(max) => {
            format!("{}–{}", human_duration(min), human_duration(max))
        }
        (Some(min), _) => human_duration(min),
        _ => "-".to_string(),
    };
    let slowest = group
        .iter()
        .filter_map(|r| r.slowest.map(|s| (r.host, s)))
        .max_by_key(|(_, (_, d))| *d)
        .map(|(host, (task, d))| format!("{host} {task} ({})", human_duration(*d)))
        .unwrap_or_default();
    [
        format!("{} hosts", group.len()),
        group[0].result.clone(),
        group[0].current.clone(),
        duration,
        slowest,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::finished_step as finished;

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
            summary.record(&Event::Switched {
                host,
                release: "2",
                rollback: false,
            });
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
        let table = summary.table(false, false).unwrap();
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

    /// Blue-green: the color that switched keeps its `current` when the traffic goes back to
    /// the other color after a failure, but it is not live.
    #[test]
    fn a_color_the_traffic_left_is_not_live() {
        let summary = Summary::default();
        for host in ["green1", "green2"] {
            summary.record(&Event::Switched {
                host,
                release: "2",
                rollback: false,
            });
        }
        let traffic = |to, hosts: [&str; 2]| {
            summary.record(&Event::TrafficSwitched {
                from: None,
                to,
                hosts: &hosts.map(String::from),
                dry_run: false,
            })
        };
        let row = |ok: bool| -> String {
            let table = summary.table(ok, false).unwrap();
            let line = table.lines().nth(1).unwrap_or_default().to_string();
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .take(3)
                .collect::<Vec<_>>()
                .join("|")
        };
        traffic("green", ["green1", "green2"]);
        traffic("blue", ["blue1", "blue2"]);
        assert_eq!(row(false), "green1|switched, takes no traffic|2");
        // Once the traffic is on it, a color is live.
        traffic("green", ["green1", "green2"]);
        assert_eq!(row(true), "green1|live|2");
    }

    /// Beyond three hosts with the same result, one row says how many and which was slowest; a
    /// failed host keeps its row, and `-v` (per host) a row for every host.
    #[test]
    fn many_hosts_alike_share_a_row_and_failed_hosts_keep_theirs() {
        let summary = Summary::default();
        for (i, host) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let mut result = finished("build", host == "c");
            result.duration = Duration::from_millis([5, 9, 40, 30, 7][i]);
            summary.record(&Event::TaskFinished {
                host,
                result: &result,
            });
        }
        let cells = |table: String| -> Vec<String> {
            table
                .lines()
                .skip(1)
                .map(|l| {
                    l.split("  ")
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect()
        };
        let grouped = cells(summary.table(false, false).unwrap());
        assert_eq!(grouped.len(), 2, "{grouped:?}");
        assert!(
            grouped[0].starts_with("4 hosts|unchanged|(unchanged)|")
                && grouped[0].ends_with("|d build (30ms)"),
            "{grouped:?}"
        );
        assert!(
            grouped[1].starts_with("c|failed: build|(unchanged)|"),
            "{grouped:?}"
        );
        let per_host = cells(summary.table(false, true).unwrap());
        let hosts: Vec<&str> = per_host.iter().map(|r| &r[..1]).collect();
        assert_eq!(hosts, ["a", "b", "c", "d", "e"]);
    }
}
