//! The plain format: host-prefixed lines, more of them with `-v` (commands) and `-vv` (their
//! output), fewer with `-q`. The live and CI styles fall back to it for what they do not change.

use super::{Event, Sink};
use crate::transport::{human_duration, Outcome};

/// Host-prefixed lines (logs, pipes).
#[derive(Debug, Clone, Copy)]
pub struct Plain {
    /// 0 default, 1 `-v` (commands), 2 `-vv` (their output); -1 `-q`.
    pub verbosity: i8,
    /// Show commands' output at the default verbosity (`dep TASK`, where it is the point).
    pub show_output: bool,
}

impl Sink for Plain {
    fn render(&self, event: &Event<'_>) -> Option<String> {
        self.line(event)
    }
}

impl Plain {
    /// The text of `event` at this verbosity, if it shows at all.
    pub fn line(&self, event: &Event<'_>) -> Option<String> {
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
            Event::TaskFinished { host, result } if v >= 0 => task_finished(host, result),
            Event::Migrations {
                host, migrations, ..
            } if v >= 0 => Some(migrations_pending(host, migrations)),
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
            Event::Switched {
                host,
                release,
                rollback: false,
            } if v >= 0 => Some(format!("[{host}] ⇒ current -> releases/{release}")),
            Event::RolledBack {
                host,
                from,
                to: None,
            } if v >= 0 => Some(format!(
                "[{host}] ⇐ current removed (was {from}; there was no release before)"
            )),
            Event::RolledBack {
                host,
                from,
                to: Some(to),
            } if v >= 0 => Some(format!("[{host}] ⇐ current -> releases/{to} (was {from})")),
            Event::HealthChecked {
                ok: true,
                host,
                check,
                detail,
                ..
            } if v >= 0 => Some(format!("[{host}] ♥ {check}: {detail}{}", tries(event))),
            Event::HealthChecked {
                host,
                check,
                detail,
                ..
            } if v >= 0 => Some(format!(
                "[{host}] ✗ health check {check}: {detail}{}",
                tries(event)
            )),
            Event::RollbackFinished {
                release,
                hosts,
                duration,
            } if v >= 0 => Some(format!(
                "rolled back to release {release} on {hosts} host{} ({})",
                if hosts == 1 { "" } else { "s" },
                human_duration(duration)
            )),
            Event::DeployFinished {
                release,
                ok,
                live,
                duration,
            } if v >= 0 => Some(match (ok, live) {
                (true, _) => format!("release {release} is live ({})", human_duration(duration)),
                // Where it stays live was said (`still_live`).
                (false, true) => format!(
                    "deploy failed after {}: release {release} stays live",
                    human_duration(duration)
                ),
                (false, false) => format!(
                    "deploy failed after {}: release {release} is not live",
                    human_duration(duration)
                ),
            }),
            _ if v >= 0 => decision(event),
            _ => None,
        }
    }
}

/// What dep decided on its own (batches, rollbacks, dry runs, warnings), in words.
fn decision(event: &Event<'_>) -> Option<String> {
    match *event {
        Event::WouldRollBack { host, from, to } => Some(format!(
            "[{host}] dry run: would go back to {to} (from {from})"
        )),
        Event::BatchStarted { number, of, hosts } => {
            Some(format!("batch {number}/{of}: {}", hosts.join(", ")))
        }
        Event::TrafficSwitched {
            from,
            to,
            hosts,
            dry_run,
        } => {
            let was = from.map_or("none was live".to_string(), |c| format!("{c} was live"));
            Some(if dry_run {
                format!("dry run: {to} would go live ({}; {was})", hosts.join(", "))
            } else {
                format!("traffic switched to {to} ({}; {was})", hosts.join(", "))
            })
        }
        Event::RollbackVerified { hosts } => Some(match hosts.len() {
            0 => "there was no release before this one: `current` was removed again".into(),
            1 => "rolled back 1 host to the release it had before; verified".into(),
            n => format!("rolled back {n} hosts to the release they had before; verified"),
        }),
        Event::RollbackUnverified {
            release,
            failures,
            after,
        } => {
            let mut text = format!("release {release} failed, and the rollback did not restore every host:");
            for (host, why) in failures {
                text.push_str(&format!("\n  host `{host}`: {why}"));
            }
            for (host, why) in after {
                text.push_str(&format!("\n  after the rollback, host `{host}`: {why}"));
            }
            Some(text)
        }
        Event::StillLive {
            release,
            hosts,
            everywhere,
        } => Some(format!(
            "release {release} is live on {}, but the deploy failed (`dep rollback` puts the previous release back)",
            if everywhere { "every host".to_string() } else { hosts.join(", ") }
        )),
        Event::LockWaiting {
            host,
            holder,
            waited,
            left,
        } => Some(if waited.is_zero() {
            format!(
                "[{host}] waiting for the deploy lock ({holder}), up to {}",
                human_duration(left)
            )
        } else {
            format!(
                "[{host}] still waiting for the deploy lock ({holder}): {} waited, {} left",
                human_duration(waited),
                human_duration(left)
            )
        }),
        Event::InterruptForced => Some(
            "interrupted again: stopping now, the switch under way perhaps half done (`dep releases` shows where each host points)"
                .to_string(),
        ),
        Event::InterruptDeferred => Some(
            "interrupted: stopping once the switch under way is over (a fleet is never left half switched)"
                .to_string(),
        ),
        Event::DryRunFinished { release } => Some(format!(
            "dry run: release {release} would be deployed; nothing was run on the hosts"
        )),
        Event::NotificationFailed { message } => Some(format!("warning: {message}")),
        Event::WatchStarted { .. } | Event::WatchSample { .. } | Event::WatchFinished { .. } => {
            super::watch::line(event)
        }
        _ => None,
    }
}

/// `[host] 2 migrations pending:` then each migration's statements, one a line.
fn migrations_pending(host: &str, migrations: &[crate::migration::pretend::Migration]) -> String {
    let count = migrations.len();
    let plural = if count == 1 { "" } else { "s" };
    let mut text = format!("[{host}] {count} migration{plural} pending:");
    for migration in migrations {
        text.push_str(&format!("\n[{host}]   {}", migration.file_name()));
        for statement in &migration.statements {
            text.push_str(&format!("\n[{host}]     {}", statement.replace('\n', " ")));
        }
    }
    text
}

fn task_finished(host: &str, result: &crate::transport::StepResult) -> Option<String> {
    Some(match &result.outcome {
        Outcome::Ok => format!(
            "[{host}] ✓ {} ({})",
            result.task,
            human_duration(result.duration)
        ),
        Outcome::Skipped => {
            format!("[{host}] - {} (skipped: condition not met)", result.task)
        }
        Outcome::Failed { status, reason } => {
            let tolerated = if result.tolerated {
                " (on_failure = continue)"
            } else {
                ""
            };
            format!(
                "[{host}] ✗ {}: {}{tolerated}",
                result.task,
                failure_reason(status, reason)
            )
        }
        Outcome::NotRun | Outcome::Shown => return None,
    })
}

/// " (attempt 2/5)" for a health check tried more than once.
fn tries(event: &Event<'_>) -> String {
    match *event {
        Event::HealthChecked {
            attempt, attempts, ..
        } if attempts > 1 => format!(" (attempt {attempt}/{attempts})"),
        _ => String::new(),
    }
}

/// Why a command failed, in words: its reason, else its exit status.
pub fn failure_reason(status: &Option<i32>, reason: &Option<String>) -> String {
    reason
        .clone()
        .unwrap_or_else(|| format!("exit status {}", status.unwrap_or(-1)))
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
