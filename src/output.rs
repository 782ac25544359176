//! What the user sees while dep works: events from the engine, shown plain (host-prefixed
//! lines), as JSON lines, or not at all. Secrets are masked here, so no output path can forget.

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use crate::backend::{human_duration, Outcome, StepResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

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

pub struct Reporter {
    format: Format,
    /// 0 default, 1 `-v` (commands), 2 `-vv` (their output); -1 `-q`.
    verbosity: i8,
    secrets: Vec<String>,
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
            verbosity,
            secrets,
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
        let line = match self.format {
            Format::Json => Some(self.json(&event).to_string()),
            Format::Plain => self.plain(&event),
        };
        if let Some(line) = line {
            let line = self.mask(&line);
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
        }
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
            Event::Output { host, line, .. } if v >= 2 => Some(format!("[{host}] │ {line}")),
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
                format!("release {release} failed ({})", human_duration(duration))
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
