//! The fleet as the live view shows it: where each host stands (preparing, prepared, switched,
//! failed) and what it runs, laid out to fit a terminal of any size: a fleet line with the count
//! of hosts per phase, a bar and the elapsed time, then as many host lines as fit (failed hosts
//! first, then the slowest), then "… and N more". Pure: the caller brings the clock and the size.

use std::time::{Duration, Instant};

use console::{measure_text_width, style, truncate_str};
use indexmap::IndexMap;

use super::Event;
use crate::transport::human_duration;

/// A host idle for less than this is between two steps, not waiting for the fleet.
const SETTLE: Duration = Duration::from_millis(300);

/// The lock: a host idle after it alone waits for the others' locks, it has prepared nothing.
const LOCK: &str = "deploy:lock";

/// The switch: a host that runs it was prepared (the common recipe's names, as SPEC gives them).
const SWITCH: &str = "deploy:symlink";

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Where a host stands, in the order its lines are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Failed,
    /// Running its steps, or not started yet.
    Preparing,
    /// Done with its steps so far, waiting for the rest of the fleet (at the switch; or at a
    /// `once` task, which the view cannot tell apart).
    Prepared,
    Switched,
    RolledBack,
}

#[derive(Debug, Default)]
struct HostView {
    /// The task it runs now, and since when.
    task: Option<(String, Instant)>,
    /// When its last task ended (None: it has run none but the lock).
    idle_since: Option<Instant>,
    switched: bool,
    rolled_back: bool,
    /// The task that failed.
    failed: Option<String>,
}

impl HostView {
    fn phase(&self, now: Instant) -> Phase {
        let settled = self
            .idle_since
            .is_some_and(|idle| now.saturating_duration_since(idle) >= SETTLE);
        if self.failed.is_some() {
            Phase::Failed
        } else if self.rolled_back {
            Phase::RolledBack
        } else if self.switched {
            Phase::Switched
        } else if (self.task.is_none() && settled)
            || self.task.as_ref().is_some_and(|(task, _)| task == SWITCH)
        {
            Phase::Prepared
        } else {
            Phase::Preparing
        }
    }
}

/// Every host of the run, in Deployfile order, as the events told.
#[derive(Debug)]
pub struct FleetView {
    started: Instant,
    /// A deploy announced its hosts: phases are named for a deploy.
    deploy: bool,
    hosts: IndexMap<String, HostView>,
}

impl FleetView {
    pub fn new(started: Instant) -> FleetView {
        FleetView {
            started,
            deploy: false,
            hosts: IndexMap::new(),
        }
    }

    /// Whether any host was seen yet (`dep watch` alone shows none).
    pub fn has_hosts(&self) -> bool {
        !self.hosts.is_empty()
    }

    pub fn record(&mut self, event: &Event<'_>, now: Instant) {
        match *event {
            Event::DeployStarted { hosts, .. } => {
                self.deploy = true;
                for host in hosts {
                    self.hosts.entry(host.clone()).or_default();
                }
            }
            Event::TaskStarted { host, task, .. } => {
                self.host(host).task = Some((task.to_string(), now));
            }
            Event::TaskFinished { host, result } => {
                let view = self.host(host);
                view.task = None;
                if result.task != LOCK {
                    view.idle_since = Some(now);
                }
                if result.failed() {
                    view.failed.get_or_insert_with(|| result.task.clone());
                }
            }
            Event::HostFailed { host, task, .. } => {
                let view = self.host(host);
                view.task = None;
                view.failed.get_or_insert_with(|| task.to_string());
            }
            Event::Switched { host, .. } => self.host(host).switched = true,
            Event::RolledBack { host, .. } => self.host(host).rolled_back = true,
            _ => {}
        }
    }

    fn host(&mut self, name: &str) -> &mut HostView {
        self.hosts.entry(name.to_string()).or_default()
    }

    /// The lines to draw at `now` on a terminal of `width` columns and `height` rows: narrower
    /// than `width` (a full row makes terminals wrap at the next character), never more than
    /// `height - 1` lines (the cursor keeps the last row).
    pub fn lines(&self, now: Instant, width: usize, height: usize) -> Vec<String> {
        let width = width.saturating_sub(1).max(1);
        let mut lines = vec![self.fleet_line(now, width)];
        let room = height.saturating_sub(2);
        let mut order: Vec<(&String, &HostView)> = self.hosts.iter().collect();
        // Failed hosts first, then those running longest, then the idle ones (stable: in
        // Deployfile order within each).
        order.sort_by_key(|(_, view)| {
            let started = view.task.as_ref().map(|(_, since)| *since);
            (view.phase(now), view.task.is_none(), started)
        });
        let shown = if order.len() <= room {
            order.len()
        } else {
            room.saturating_sub(1)
        };
        for (name, view) in &order[..shown] {
            lines.push(fit(&self.host_line(name, view, now), width));
        }
        if shown < order.len() && room > 0 {
            let more = format!("… and {} more", order.len() - shown);
            lines.push(fit(&style(more).dim().to_string(), width));
        }
        lines
    }

    /// `40 hosts [=====>      ] 12 preparing · 25 prepared · 2 switched · 1 failed  4.2s`
    fn fleet_line(&self, now: Instant, width: usize) -> String {
        let mut count = [0usize; 5];
        for view in self.hosts.values() {
            count[view.phase(now) as usize] += 1;
        }
        let [failed, preparing, prepared, switched, rolled_back] = count;
        let total = self.hosts.len();
        // Counts as wide as the total, so that the line keeps its layout as they change.
        let w = total.to_string().len();
        let mut phases = if self.deploy {
            vec![
                format!("{preparing:>w$} preparing"),
                format!("{prepared:>w$} prepared"),
                format!("{switched:>w$} switched"),
            ]
        } else {
            vec![
                format!("{preparing:>w$} running"),
                format!("{:>w$} done", prepared + switched),
            ]
        };
        if rolled_back > 0 {
            phases.push(format!("{rolled_back:>w$} rolled back"));
        }
        let failed = format!("{failed:>w$} failed");
        phases.push(if count[Phase::Failed as usize] > 0 {
            style(failed).red().bold().to_string()
        } else {
            failed
        });
        let hosts = style(format!("{total} host{}", if total == 1 { "" } else { "s" }))
            .bold()
            .to_string();
        let phases = phases.join(" · ");
        let elapsed = human_duration(now.saturating_duration_since(self.started));
        let elapsed = style(format!("{elapsed:>5}")).dim().to_string();
        // The bar takes what the words leave, up to 30 columns inside; below 8 it is left out.
        let words = measure_text_width(&hosts) + measure_text_width(&phases) + 2;
        let room = width.saturating_sub(words + measure_text_width(&elapsed) + 2);
        let line = if room >= 10 {
            let inner = (room - 2).min(30);
            // A host is halfway when prepared, done when switched (or failed, rolled back).
            let done = prepared + 2 * (switched + rolled_back + count[Phase::Failed as usize]);
            format!(
                "{hosts} {} {phases}  {elapsed}",
                bar(done, 2 * total.max(1), inner)
            )
        } else {
            format!("{hosts} {phases}  {elapsed}")
        };
        fit(&line, width)
    }

    fn host_line(&self, name: &str, view: &HostView, now: Instant) -> String {
        let prefix = style(format!("[{name}]")).bold();
        match (&view.failed, &view.task, view.phase(now)) {
            (Some(task), _, _) => {
                format!("{prefix} {}", style(format!("✗ {task} failed")).red())
            }
            (None, Some((task, since)), _) => {
                let spun = now.saturating_duration_since(self.started).as_millis() / 100;
                format!(
                    "{prefix} {} {task} {}",
                    SPINNER[spun as usize % SPINNER.len()],
                    style(human_duration(now.saturating_duration_since(*since))).dim()
                )
            }
            (None, None, phase) => {
                let what = match phase {
                    Phase::Prepared if self.deploy => "✓ prepared",
                    Phase::Prepared => "✓ done",
                    Phase::Switched => "⇒ switched",
                    Phase::RolledBack => "⇐ rolled back",
                    _ => "· waiting",
                };
                format!("{prefix} {}", style(what).dim())
            }
        }
    }
}

/// `[=====>      ]`, `inner` columns inside the brackets, filled `done / of`.
fn bar(done: usize, of: usize, inner: usize) -> String {
    let filled = done.min(of) * inner / of.max(1);
    let body = if filled >= inner {
        "=".repeat(inner)
    } else {
        format!("{}>", "=".repeat(filled))
    };
    let blank = inner - body.chars().count();
    format!("[{}{}]", style(body).green(), " ".repeat(blank))
}

/// `line` cut to `width` columns (styles kept, an ellipsis where it was cut).
pub(super) fn fit(line: &str, width: usize) -> String {
    if measure_text_width(line) <= width {
        line.to_string()
    } else {
        truncate_str(line, width, "…").into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::finished_step as finished;

    /// 40 hosts: one failed, one running for long, the others prepared or running.
    fn fleet(start: Instant) -> FleetView {
        let mut view = FleetView::new(start);
        let names: Vec<String> = (1..=40).map(|i| format!("h{i}")).collect();
        view.record(
            &Event::DeployStarted {
                release: "1",
                hosts: &names,
            },
            start,
        );
        let at = |ms| start + Duration::from_millis(ms);
        for (i, host) in names.iter().enumerate() {
            let task = "build";
            view.record(
                &Event::TaskStarted {
                    host,
                    task,
                    command: "",
                },
                at(if host == "h23" { 10 } else { 100 }),
            );
            if i % 2 == 1 || host == "h7" {
                view.record(
                    &Event::TaskFinished {
                        host,
                        result: &finished(task, host == "h7"),
                    },
                    at(200),
                );
            }
        }
        view
    }

    fn plain(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .map(|l| console::strip_ansi_codes(l).into_owned())
            .collect()
    }

    #[test]
    fn the_view_fits_the_terminal_and_shows_failed_and_slowest_hosts_first() {
        let start = Instant::now();
        let view = fleet(start);
        let lines = plain(&view.lines(start + Duration::from_secs(2), 80, 24));
        assert_eq!(lines.len(), 23, "{lines:#?}");
        assert!(
            lines.iter().all(|l| measure_text_width(l) <= 80),
            "{lines:#?}"
        );
        assert!(
            lines[0].starts_with("40 hosts [=")
                && lines[0]
                    .contains("] 19 preparing · 20 prepared ·  0 switched ·  1 failed     2s"),
            "{lines:#?}"
        );
        assert_eq!(lines[1], "[h7] ✗ build failed");
        assert!(lines[2].starts_with("[h23] ") && lines[2].ends_with(" build 2s"));
        assert_eq!(lines[22], "… and 19 more");
    }

    #[test]
    fn a_small_terminal_keeps_the_fleet_line_and_the_count_of_the_rest() {
        let start = Instant::now();
        let view = fleet(start);
        let lines = plain(&view.lines(start + Duration::from_secs(2), 30, 3));
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with("40 hosts 19 preparing"), "{lines:#?}");
        assert!(lines[0].ends_with('…') && measure_text_width(&lines[0]) == 29);
        assert_eq!(lines[1], "… and 40 more");
        // Every host fits: no "more".
        let lines = plain(&view.lines(start + Duration::from_secs(2), 80, 50));
        assert_eq!(lines.len(), 41);
    }

    #[test]
    fn the_bar_fills_as_hosts_prepare_then_switch() {
        assert_eq!(console::strip_ansi_codes(&bar(0, 4, 6)), "[>     ]");
        assert_eq!(console::strip_ansi_codes(&bar(2, 4, 6)), "[===>  ]");
        assert_eq!(console::strip_ansi_codes(&bar(4, 4, 6)), "[======]");
    }
}
