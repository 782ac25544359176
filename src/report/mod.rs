//! What the user sees while dep works: structured events from the engine and the transport,
//! shown by one [`Sink`] per run: plain (host-prefixed lines), live (a terminal), ci (GitHub,
//! GitLab), json; then the summary table. Every line passes the secret [`mask`] on its way out.

mod ci;
mod fleet_view;
mod json;
mod live;
pub mod mask;
mod plain;
mod summary;
pub mod table;
mod watch;

use std::io::Write;
use std::time::{Duration, Instant};

use self::mask::Mask;
use self::plain::Plain;
use self::summary::Summary;
pub use crate::transport::Stream;
use crate::transport::{Observer, StepResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Json,
}

/// Something that happened, for the formatter to show.
#[derive(Debug)]
pub enum Event<'a> {
    DeployStarted {
        release: &'a str,
        hosts: &'a [String],
    },
    TaskStarted {
        host: &'a str,
        task: &'a str,
        command: &'a str,
    },
    Output {
        host: &'a str,
        task: &'a str,
        stream: Stream,
        line: &'a str,
    },
    Retry {
        host: &'a str,
        task: &'a str,
        attempt: u32,
        status: i32,
    },
    TaskFinished {
        host: &'a str,
        result: &'a StepResult,
    },
    DryRun {
        host: &'a str,
        task: &'a str,
        command: &'a str,
    },
    HostFailed {
        host: &'a str,
        task: &'a str,
        message: &'a str,
    },
    /// The pending migrations a task's output showed (`check_output = "migrations"`), with
    /// their SQL, before they run.
    Migrations {
        host: &'a str,
        task: &'a str,
        migrations: &'a [crate::migration::pretend::Migration],
    },
    Switched {
        host: &'a str,
        release: &'a str,
        /// `dep rollback`'s switch (a `rolled_back` event follows, saying more).
        rollback: bool,
    },
    /// A host's `current` went back from `from` to `to` (None: removed, there was no release
    /// before).
    RolledBack {
        host: &'a str,
        from: &'a str,
        to: Option<&'a str>,
    },
    /// A dry run's rollback: where a host would go.
    WouldRollBack {
        host: &'a str,
        from: &'a str,
        to: &'a str,
    },
    HealthChecked {
        host: &'a str,
        check: &'a str,
        attempt: u32,
        attempts: u32,
        ok: bool,
        detail: &'a str,
    },
    DeployFinished {
        release: &'a str,
        ok: bool,
        /// The release is live on some host (every one when `ok`; after a failure, where a
        /// failed post-switch task or `--keep-switched` left it).
        live: bool,
        duration: Duration,
    },
    /// `dep rollback` is done: every one of `hosts` serves `release` again.
    RollbackFinished {
        release: &'a str,
        hosts: usize,
        duration: Duration,
    },
    /// A blue-green stage's routers now send the traffic to `to` (`from`: the color live before;
    /// `dry_run`: they would).
    TrafficSwitched {
        from: Option<&'a str>,
        to: &'a str,
        hosts: &'a [String],
        dry_run: bool,
    },
    /// A batch of a rolling or canary deploy starts (`number` counts from 1).
    BatchStarted {
        number: usize,
        of: usize,
        hosts: &'a [&'a str],
    },
    /// The hosts rolled back after a failed check or batch passed their checks again (none: the
    /// release was the first, and `current` was removed again).
    RollbackVerified { hosts: &'a [String] },
    /// The automatic rollback did not restore a healthy fleet: why the release failed, and what
    /// is still wrong after the rollback (host, reason).
    RollbackUnverified {
        release: &'a str,
        failures: &'a [(String, String)],
        after: &'a [(String, String)],
    },
    /// The deploy failed after these hosts switched: the release stays live there.
    StillLive {
        release: &'a str,
        hosts: &'a [&'a str],
        /// Every selected host.
        everywhere: bool,
    },
    /// `--lock-wait`: the deploy lock is held on `host`, and this run waits for it (shown when
    /// first seen, when its holder changes, and every 30 seconds).
    LockWaiting {
        host: &'a str,
        holder: &'a str,
        waited: Duration,
        left: Duration,
    },
    /// Ctrl-C came during a switch: the run stops once the switch is over.
    InterruptDeferred,
    /// A second Ctrl-C during a switch: the run stops now, the switch perhaps half done.
    InterruptForced,
    /// A dry run is over: nothing ran on the hosts.
    DryRunFinished { release: &'a str },
    /// A webhook could not be told (a warning: it never fails the deploy).
    NotificationFailed { message: &'a str },
    /// The run ends with this error and exit code (`--json` only: plain output prints
    /// `error: …` on standard error).
    Failed { message: &'a str, exit_code: i32 },
    /// The watch window starts: `samples` per probe and host, one every `interval`.
    WatchStarted {
        hosts: &'a [String],
        probes: &'a [String],
        duration: Duration,
        interval: Duration,
        samples: u32,
    },
    /// One interval of the watch window sampled (`number` counts from 1): the figures so far,
    /// per probe and host, then per probe for the fleet (`host` None).
    WatchSample {
        number: u32,
        of: u32,
        elapsed: Duration,
        left: Duration,
        rows: &'a [crate::watch::figures::Row],
    },
    /// The watch window decided: `verdict` is `normal`, `alert` or `rollback`; `reasons` the
    /// thresholds breached, what decided first; `rows` the figures over the whole window.
    WatchFinished {
        verdict: &'a str,
        why: &'a str,
        reasons: &'a [String],
        /// Stopped before its end: the verdict was certain.
        stopped_early: bool,
        /// What came of it: "kept", "rolled back", or for `dep watch`, "none".
        outcome: &'a str,
        rows: &'a [crate::watch::figures::Row],
    },
}

/// How plain output is laid out: where it goes decides what reads best there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Host-prefixed lines (not a terminal: logs, pipes).
    Lines,
    /// A live view on a terminal (a fleet line, then a line per host as fits); results above.
    Live,
    /// GitHub Actions: a collapsible group per task with its output, `::error` annotations.
    GitHub,
    /// GitLab CI: a collapsible section per task with its output.
    GitLab,
}

impl Style {
    /// The style for this process: CI systems by their environment, a live view on a terminal
    /// (but `TERM=dumb`).
    pub fn detect(is_terminal: bool, env: impl Fn(&str) -> Option<String>) -> Style {
        let set = |name: &str| env(name).is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
        if set("GITHUB_ACTIONS") {
            Style::GitHub
        } else if set("GITLAB_CI") {
            Style::GitLab
        } else if set("CI") || !is_terminal || env("TERM").as_deref() == Some("dumb") {
            // A dumb terminal cannot move its cursor up: no live view.
            Style::Lines
        } else {
            Style::Live
        }
    }
}

/// When this process started its run (the first time anyone asked): every reporter of the run,
/// the one that reports its final error too, counts `elapsed_ms` from it.
pub fn run_started() -> Instant {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// A way of showing events.
pub trait Sink: Send + Sync {
    /// The text `event` shows as, if any (not yet masked).
    fn render(&self, event: &Event<'_>) -> Option<String>;

    /// Print text that was masked already.
    fn print(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
    }
}

pub struct Reporter {
    format: Format,
    style: Style,
    /// 0 default, 1 `-v` (commands), 2 `-vv` (their output); -1 `-q`.
    verbosity: i8,
    mask: Mask,
    /// Show commands' output at the default verbosity (`dep TASK`, where it is the point).
    show_output: bool,
    summary: Summary,
    sink: Box<dyn Sink>,
    /// When this run started: `--json`'s `elapsed_ms` and the live view's clock count from it.
    started: Instant,
}

impl Reporter {
    pub fn new(format: Format, verbosity: i8, secrets: Vec<String>) -> Reporter {
        let mut reporter = Reporter {
            format,
            style: Style::Lines,
            verbosity,
            mask: Mask::new(secrets),
            show_output: false,
            summary: Summary::default(),
            sink: Box::new(Plain {
                verbosity,
                show_output: false,
            }),
            started: run_started(),
        };
        reporter.sink = reporter.sink();
        reporter
    }

    /// Show what commands print without `-vv` (running one task by hand).
    pub fn with_output(mut self) -> Reporter {
        self.show_output = true;
        if self.style == Style::Live {
            self.style = Style::Lines;
        }
        self.sink = self.sink();
        self
    }

    /// `-v` or more.
    pub fn verbose(&self) -> bool {
        self.verbosity > 0
    }

    /// Lay plain output out in `style` (a live view only at the default verbosity).
    pub fn with_style(mut self, style: Style) -> Reporter {
        self.style = if style == Style::Live && (self.verbosity != 0 || self.format == Format::Json)
        {
            Style::Lines
        } else {
            style
        };
        self.sink = self.sink();
        self
    }

    /// The sink for the format and style chosen.
    fn sink(&self) -> Box<dyn Sink> {
        let plain = Plain {
            verbosity: self.verbosity,
            show_output: self.show_output,
        };
        match (self.format, self.style) {
            (Format::Json, _) => Box::new(json::Json {
                mask: self.mask.clone(),
                started: self.started,
            }),
            (Format::Plain, Style::Lines) => Box::new(plain),
            (Format::Plain, Style::Live) => Box::new(live::Live::new(plain, self.started)),
            (Format::Plain, Style::GitHub) => Box::new(ci::Ci::new(plain, ci::Flavour::GitHub)),
            (Format::Plain, Style::GitLab) => Box::new(ci::Ci::new(plain, ci::Flavour::GitLab)),
        }
    }

    /// `text` with every secret masked.
    pub fn mask(&self, text: &str) -> String {
        self.mask.text(text)
    }

    pub fn emit(&self, event: Event<'_>) {
        self.summary.record(&event);
        if let Some(line) = self.sink.render(&event) {
            self.print(&line);
        }
        if let (Event::WatchFinished { .. }, Format::Plain) = (&event, self.format) {
            if self.verbosity >= 0 {
                self.print(&watch::table(&event));
            }
        }
        if let (Event::DeployFinished { ok, .. }, Format::Plain) = (&event, self.format) {
            if self.verbosity >= 0 {
                // `-v` keeps a row per host; otherwise many hosts alike share one.
                if let Some(table) = self.summary.table(*ok, self.verbosity >= 1) {
                    self.print(&table);
                }
            }
        }
    }

    fn print(&self, line: &str) {
        self.sink.print(self.mask(line).trim_end_matches('\n'));
    }
}

/// The transport's account of a host's commands, shown as events.
impl Observer for Reporter {
    fn started(&self, host: &str, task: &str, command: &str) {
        self.emit(Event::TaskStarted {
            host,
            task,
            command,
        });
    }

    fn output(&self, host: &str, task: &str, stream: Stream, line: &str) {
        self.emit(Event::Output {
            host,
            task,
            stream,
            line,
        });
    }

    fn retry(&self, host: &str, task: &str, attempt: u32, status: i32) {
        self.emit(Event::Retry {
            host,
            task,
            attempt,
            status,
        });
    }

    fn finished(&self, host: &str, result: &StepResult) {
        self.emit(Event::TaskFinished { host, result });
    }

    fn dry_run(&self, host: &str, task: &str, command: &str) {
        self.emit(Event::DryRun {
            host,
            task,
            command,
        });
    }
}

/// A finished step, for the views' tests: `task` ok, or failed with status 1.
#[cfg(test)]
pub(crate) fn finished_step(task: &str, failed: bool) -> crate::transport::StepResult {
    use crate::transport::{Outcome, StepResult};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporter_masks_every_line_it_prints() {
        let reporter = Reporter::new(Format::Plain, 0, vec!["hunter2".into()]);
        assert_eq!(reporter.mask("pw=hunter2"), "pw=****");
    }
}
