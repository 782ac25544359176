//! What the user sees while dep works: events from the engine, shown plain (host-prefixed
//! lines), as JSON lines, or not at all. Secrets are masked here, so no output path can forget.

pub mod table;

use std::io::Write;
use std::time::Duration;

use serde_json::json;

pub use crate::transport::Stream;
use crate::transport::{human_duration, Observer, Outcome, StepResult};

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
    Switched {
        host: &'a str,
        release: &'a str,
    },
    RolledBack {
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
        duration: Duration,
    },
    /// A line of the engine's own narration ("switching 3 hosts").
    Note {
        message: &'a str,
    },
}

/// How plain output is laid out: where it goes decides what reads best there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Host-prefixed lines (not a terminal: logs, pipes).
    Lines,
    /// A live line per host on a terminal (current task, elapsed time); results above it.
    Live,
    /// GitHub Actions: a collapsible group per task with its output, `::error` annotations.
    GitHub,
    /// GitLab CI: a collapsible section per task with its output.
    GitLab,
}

impl Style {
    /// The style for this process: CI systems by their environment, a live view on a terminal.
    pub fn detect(is_terminal: bool, env: impl Fn(&str) -> Option<String>) -> Style {
        let set = |name: &str| env(name).is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
        if set("GITHUB_ACTIONS") {
            Style::GitHub
        } else if set("GITLAB_CI") {
            Style::GitLab
        } else if set("CI") || !is_terminal {
            Style::Lines
        } else {
            Style::Live
        }
    }
}

/// What a host did, for the summary table at the end of a deploy.
#[derive(Debug, Default)]
struct HostTally {
    first_start: Option<std::time::Instant>,
    last_end: Option<std::time::Instant>,
    slowest: Option<(String, Duration)>,
    failed: Option<String>,
    switched: bool,
    rolled_back: bool,
    /// The release `current` points at after this run, when the run changed it.
    release: Option<String>,
}

#[derive(Default)]
struct State {
    hosts: indexmap::IndexMap<String, HostTally>,
    /// Output of each running (host, task), shown in its CI group when it finishes.
    buffered: std::collections::HashMap<(String, String), Vec<String>>,
    bars: std::collections::HashMap<String, indicatif::ProgressBar>,
}

pub struct Reporter {
    format: Format,
    style: Style,
    /// 0 default, 1 `-v` (commands), 2 `-vv` (their output); -1 `-q`.
    verbosity: i8,
    secrets: Vec<String>,
    state: std::sync::Mutex<State>,
    live: Option<indicatif::MultiProgress>,
    /// Show commands' output at the default verbosity (`dep TASK`, where it is the point).
    show_output: bool,
}

impl Reporter {
    pub fn new(format: Format, verbosity: i8, secrets: Vec<String>) -> Reporter {
        // A secret reaches output as written, or escaped on its way into a shell command or a
        // .env file: mask every form it can take.
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= 3)
            .flat_map(|s| secret_forms(&s))
            .collect();
        secrets.sort();
        secrets.dedup();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Reporter {
            format,
            style: Style::Lines,
            verbosity,
            secrets,
            state: Default::default(),
            live: None,
            show_output: false,
        }
    }

    /// Show what commands print without `-vv` (running one task by hand).
    pub fn with_output(mut self) -> Reporter {
        self.show_output = true;
        if self.style == Style::Live {
            self.style = Style::Lines;
            self.live = None;
        }
        self
    }

    /// Lay plain output out in `style` (a live view only at the default verbosity).
    pub fn with_style(mut self, style: Style) -> Reporter {
        let style = if style == Style::Live && (self.verbosity != 0 || self.format == Format::Json)
        {
            Style::Lines
        } else {
            style
        };
        self.style = style;
        if style == Style::Live {
            self.live = Some(indicatif::MultiProgress::new());
        }
        self
    }

    fn mask_json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value as J;
        match value {
            J::String(s) => J::String(self.mask(&s)),
            J::Array(items) => J::Array(items.into_iter().map(|v| self.mask_json(v)).collect()),
            J::Object(map) => J::Object(
                map.into_iter()
                    .map(|(k, v)| (k, self.mask_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    pub fn mask(&self, text: &str) -> String {
        let mut masked = text.to_string();
        for secret in &self.secrets {
            if masked.contains(secret.as_str()) {
                masked = masked.replace(secret.as_str(), "****");
            }
        }
        masked
    }

    pub fn emit(&self, event: Event<'_>) {
        self.tally(&event);
        let line = match (self.format, self.style) {
            // Masked value by value, before JSON escaping could hide a secret from the mask.
            (Format::Json, _) => Some(self.mask_json(self.json(&event)).to_string()),
            (Format::Plain, Style::Lines) => self.plain(&event),
            (Format::Plain, Style::Live) => self.live(&event),
            (Format::Plain, Style::GitHub | Style::GitLab) => self.ci(&event),
        };
        if let Some(line) = line {
            self.print(&line);
        }
        if let (Event::DeployFinished { ok, .. }, Format::Plain) = (&event, self.format) {
            if self.verbosity >= 0 {
                if let Some(table) = self.summary(*ok) {
                    self.print(&table);
                }
            }
        }
    }

    fn print(&self, line: &str) {
        let line = self.mask(line);
        match &self.live {
            // Above the live lines, so they are never torn.
            Some(live) => {
                let _ = live.println(line.trim_end_matches('\n'));
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{}", line.trim_end_matches('\n'));
            }
        }
    }

    /// Keep what the summary table and the CI groups need.
    fn tally(&self, event: &Event<'_>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = std::time::Instant::now();
        match *event {
            Event::TaskStarted { host, task, .. } => {
                let tally = state.hosts.entry(host.to_string()).or_default();
                tally.first_start.get_or_insert(now);
                state
                    .buffered
                    .insert((host.to_string(), task.to_string()), Vec::new());
            }
            Event::Output {
                host, task, line, ..
            } => {
                if let Some(lines) = state
                    .buffered
                    .get_mut(&(host.to_string(), task.to_string()))
                {
                    lines.push(line.to_string());
                }
            }
            Event::TaskFinished { host, result } => {
                let tally = state.hosts.entry(host.to_string()).or_default();
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
                state.hosts.entry(host.to_string()).or_default().failed = Some(task.to_string());
            }
            Event::Switched { host, release } => {
                let tally = state.hosts.entry(host.to_string()).or_default();
                tally.switched = true;
                tally.release = Some(release.to_string());
            }
            Event::RolledBack { host, to, .. } => {
                let tally = state.hosts.entry(host.to_string()).or_default();
                tally.rolled_back = true;
                tally.release = Some(to.to_string());
            }
            _ => {}
        }
    }

    /// The live view: one line per host showing its current task; results print above.
    fn live(&self, event: &Event<'_>) -> Option<String> {
        let live = self.live.as_ref()?;
        match *event {
            Event::TaskStarted { host, task, .. } => {
                let mut state = self.state.lock().ok()?;
                let bar = state.bars.entry(host.to_string()).or_insert_with(|| {
                    let bar = live.add(indicatif::ProgressBar::new_spinner());
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{prefix:.bold} {spinner} {msg} {elapsed:.dim}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(format!("[{host}]"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_message(task.to_string());
                bar.reset_elapsed();
                None
            }
            // Successes show on the live line; everything else prints as usual.
            Event::TaskFinished { result, .. } if result.outcome == Outcome::Ok => None,
            Event::DeployFinished { .. } => {
                if let Ok(mut state) = self.state.lock() {
                    for (_, bar) in state.bars.drain() {
                        bar.finish_and_clear();
                    }
                }
                self.plain(event)
            }
            _ => self.plain(event),
        }
    }

    /// CI logs: each finished task as a collapsible group holding its output; failures annotated.
    fn ci(&self, event: &Event<'_>) -> Option<String> {
        match *event {
            Event::TaskFinished { host, result } if result.outcome != Outcome::NotRun => {
                let header = self.plain(event)?;
                let lines = self
                    .state
                    .lock()
                    .ok()
                    .and_then(|mut s| s.buffered.remove(&(host.to_string(), result.task.clone())))
                    .unwrap_or_default();
                let mut out = String::new();
                if lines.is_empty() {
                    out.push_str(&header);
                }
                let id = format!("{host}_{}", result.task)
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                match self.style {
                    _ if lines.is_empty() => {}
                    Style::GitHub => out.push_str(&format!("::group::{header}\n")),
                    _ => out.push_str(&format!(
                        "\x1b[0Ksection_start:{stamp}:{id}[collapsed=true]\r\x1b[0K{header}\n"
                    )),
                }
                for line in &lines {
                    out.push_str(&format!("[{host}] │ {line}\n"));
                }
                match self.style {
                    _ if lines.is_empty() => {}
                    Style::GitHub => out.push_str("::endgroup::"),
                    _ => out.push_str(&format!("\x1b[0Ksection_end:{stamp}:{id}\r\x1b[0K")),
                }
                if let (Style::GitHub, Outcome::Failed { status, reason }) =
                    (self.style, &result.outcome)
                {
                    let why = reason
                        .clone()
                        .unwrap_or_else(|| format!("exit status {}", status.unwrap_or(-1)));
                    out.push_str(&format!(
                        "\n::error title=dep: {} failed on {host}::{why}",
                        result.task
                    ));
                }
                Some(out)
            }
            // Inside groups only: output shows in its task's group.
            Event::Output { .. } | Event::TaskStarted { .. } => None,
            Event::HostFailed {
                host,
                task,
                message,
            } if self.style == Style::GitHub => Some(format!(
                "{}\n::error title=dep: {task} failed on {host}::{message}",
                self.plain(event)?
            )),
            _ => self.plain(event),
        }
    }

    /// The table printed when a deploy ends: host, result, release, duration, slowest task.
    fn summary(&self, ok: bool) -> Option<String> {
        let state = self.state.lock().ok()?;
        if state.hosts.is_empty() {
            return None;
        }
        let mut rows =
            vec![["HOST", "RESULT", "CURRENT", "DURATION", "SLOWEST TASK"].map(String::from)];
        for (host, tally) in &state.hosts {
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
        Some(crate::report::table::render(&rows, ""))
    }

    fn plain(&self, event: &Event<'_>) -> Option<String> {
        let v = self.verbosity;
        match *event {
            Event::DeployStarted { release, hosts } if v >= 0 => Some(format!(
                "deploying release {release} to {} host{}: {}",
                hosts.len(),
                plural(hosts.len()),
                hosts.join(", ")
            )),
            Event::TaskStarted {
                host,
                task,
                command,
            } if v >= 1 => Some(format!(
                "[{host}] ▶ {task}\n{}",
                indent(&format!("$ {command}"), &format!("[{host}]   "))
            )),
            Event::Output { host, line, .. } if v >= 2 || (v >= 0 && self.show_output) => {
                Some(format!("[{host}] │ {line}"))
            }
            Event::Retry {
                host,
                task,
                attempt,
                status,
            } if v >= 0 => Some(format!(
                "[{host}] ↻ {task}: exit status {status}, retry {attempt}"
            )),
            Event::TaskFinished { host, result } if v >= 0 => Some(match &result.outcome {
                Outcome::Ok => format!(
                    "[{host}] ✓ {} ({})",
                    result.task,
                    human_duration(result.duration)
                ),
                Outcome::Skipped => {
                    format!("[{host}] - {} (skipped: condition not met)", result.task)
                }
                Outcome::Failed { status, reason } => {
                    let why = reason
                        .clone()
                        .unwrap_or_else(|| format!("exit status {}", status.unwrap_or(-1)));
                    let tolerated = if result.tolerated {
                        " (on_failure = continue)"
                    } else {
                        ""
                    };
                    format!("[{host}] ✗ {}: {why}{tolerated}", result.task)
                }
                Outcome::NotRun => return None,
            }),
            Event::DryRun {
                host,
                task,
                command,
            } => Some(format!(
                "[{host}] {task}\n{}",
                indent(command, &format!("[{host}]   "))
            )),
            Event::HostFailed {
                host,
                task,
                message,
            } if v >= 0 => Some(format!("[{host}] ✗ {task}: {message}")),
            Event::Switched { host, release } if v >= 0 => {
                Some(format!("[{host}] ⇒ current -> releases/{release}"))
            }
            Event::RolledBack { host, from, .. } if v >= 0 && to_none(event) => Some(format!(
                "[{host}] ⇐ current removed (was {from}; there was no release before)"
            )),
            Event::RolledBack { host, from, to } if v >= 0 => {
                Some(format!("[{host}] ⇐ current -> releases/{to} (was {from})"))
            }
            Event::HealthChecked {
                host,
                check,
                attempt,
                attempts,
                ok,
                detail,
            } if v >= 0 => {
                let tries = if attempts > 1 {
                    format!(" (attempt {attempt}/{attempts})")
                } else {
                    String::new()
                };
                Some(if ok {
                    format!("[{host}] ♥ {check}: {detail}{tries}")
                } else {
                    format!("[{host}] ✗ health check {check}: {detail}{tries}")
                })
            }
            Event::DeployFinished {
                release,
                ok,
                duration,
            } if v >= 0 => Some(if ok {
                format!("release {release} is live ({})", human_duration(duration))
            } else {
                format!(
                    "deploy failed after {}: release {release} is not live",
                    human_duration(duration)
                )
            }),
            Event::Note { message } if v >= 0 => Some(message.to_string()),
            _ => None,
        }
    }

    fn json(&self, event: &Event<'_>) -> serde_json::Value {
        match *event {
            Event::DeployStarted { release, hosts } => {
                json!({"event": "deploy_started", "release": release, "hosts": hosts})
            }
            Event::TaskStarted {
                host,
                task,
                command,
            } => {
                json!({"event": "task_started", "host": host, "task": task, "command": command})
            }
            Event::Output {
                host,
                task,
                stream,
                line,
            } => json!({
                "event": "output", "host": host, "task": task,
                "stream": if stream == Stream::Stdout { "stdout" } else { "stderr" }, "line": line
            }),
            Event::Retry {
                host,
                task,
                attempt,
                status,
            } => {
                json!({"event": "task_retry", "host": host, "task": task, "attempt": attempt, "exit_code": status})
            }
            Event::TaskFinished { host, result } => {
                let (status, exit_code, reason) = match &result.outcome {
                    Outcome::Ok => ("ok", Some(0), None),
                    Outcome::Skipped => ("skipped", None, None),
                    Outcome::Failed { status, reason } => ("failed", *status, reason.clone()),
                    Outcome::NotRun => ("not_run", None, None),
                };
                json!({"event": "task_finished", "host": host, "task": result.task, "status": status,
                       "exit_code": exit_code, "reason": reason, "duration_ms": result.duration.as_millis() as u64})
            }
            Event::DryRun {
                host,
                task,
                command,
            } => json!({"event": "dry_run", "host": host, "task": task, "command": command}),
            Event::HostFailed {
                host,
                task,
                message,
            } => {
                json!({"event": "host_failed", "host": host, "task": task, "message": message})
            }
            Event::Switched { host, release } => {
                json!({"event": "switched", "host": host, "release": release})
            }
            Event::RolledBack { host, from, to } => {
                json!({"event": "rolled_back", "host": host, "from": from, "to": to})
            }
            Event::HealthChecked {
                host,
                check,
                attempt,
                attempts,
                ok,
                detail,
            } => json!({
                "event": "health_checked", "host": host, "check": check, "attempt": attempt,
                "attempts": attempts, "ok": ok, "detail": detail
            }),
            Event::DeployFinished {
                release,
                ok,
                duration,
            } => json!({
                "event": "deploy_finished", "release": release, "ok": ok, "duration_ms": duration.as_millis() as u64
            }),
            Event::Note { message } => json!({"event": "note", "message": message}),
        }
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

/// The forms a secret takes in output: raw, inside single shell quotes, escaped for a
/// double-quoted .env value, and that escaped form inside single shell quotes.
fn secret_forms(secret: &str) -> Vec<String> {
    let shell = |s: &str| s.replace('\'', "'\\''");
    let dotenv = secret
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('$', "\\$");
    vec![secret.to_string(), shell(secret), shell(&dotenv), dotenv]
}

fn to_none(event: &Event<'_>) -> bool {
    matches!(event, Event::RolledBack { to: "(none)", .. })
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.trim_end()
        .lines()
        .map(|line| format!("{prefix}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_longest_first() {
        let reporter = Reporter::new(
            Format::Plain,
            0,
            vec!["hunter2".into(), "hunter2-extended".into(), "x".into()],
        );
        assert_eq!(
            reporter.mask("pw=hunter2-extended and hunter2 x"),
            "pw=**** and **** x"
        );
        // Escaped on the way into a shell command or a .env file, it is still masked.
        let reporter = Reporter::new(Format::Plain, 0, vec!["it's $HOME".into()]);
        let shown = format!("printf %s {}", crate::quote::quote("P=\"it's \\$HOME\"\n"));
        assert_eq!(reporter.mask(&shown), "printf %s 'P=\"****\"\n'");
        assert_eq!(reporter.mask("X='it'\\''s $HOME'"), "X='****'");
    }
}
