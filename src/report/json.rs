//! The `--json` format: one JSON object per event and line, each with an `event` field, the
//! `time` it was written and the `elapsed_ms` since the run started; every string masked value by
//! value.

use std::io::Write;
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use serde_json::json;

use super::mask::Mask;
use super::{Event, Sink, Stream};
use crate::transport::Outcome;

/// JSON lines.
pub struct Json {
    pub mask: Mask,
    /// When the run started (`elapsed_ms` counts from it).
    pub started: Instant,
}

impl Sink for Json {
    fn render(&self, event: &Event<'_>) -> Option<String> {
        // Masked value by value, before JSON escaping could hide a secret from the mask.
        Some(self.mask.json(value(event)).to_string())
    }

    /// Every event's line gets its time here, as it is written: with standard output held, so
    /// that lines written by hosts at once never go back in time.
    fn print(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "{}",
            stamp(text, Utc::now(), self.started.elapsed())
        );
    }
}

/// The JSON object `object` with `time` (RFC 3339, UTC, milliseconds) and `elapsed_ms` put first.
fn stamp(object: &str, now: chrono::DateTime<Utc>, elapsed: std::time::Duration) -> String {
    let Some(fields) = object.strip_prefix('{') else {
        return object.to_string();
    };
    let comma = if fields.starts_with('}') { "" } else { "," };
    format!(
        "{{\"time\":\"{}\",\"elapsed_ms\":{}{comma}{fields}",
        now.to_rfc3339_opts(SecondsFormat::Millis, true),
        elapsed.as_millis()
    )
}

/// The JSON object of one event.
pub fn value(event: &Event<'_>) -> serde_json::Value {
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
                Outcome::Shown => ("shown", None, None),
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
        Event::Migrations {
            host,
            task,
            migrations,
        } => {
            let migrations: Vec<_> = migrations
                .iter()
                .map(|m| json!({"migration": m.file_name(), "statements": m.statements}))
                .collect();
            json!({"event": "migrations", "host": host, "task": task, "migrations": migrations})
        }
        Event::Switched { host, release, .. } => {
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
            live,
            duration,
        } => json!({
            "event": "deploy_finished", "release": release, "ok": ok, "live": live,
            "duration_ms": duration.as_millis() as u64
        }),
        Event::RollbackFinished {
            release,
            hosts,
            duration,
        } => json!({
            "event": "rollback_finished", "release": release, "hosts": hosts,
            "duration_ms": duration.as_millis() as u64
        }),
        Event::WouldRollBack { .. }
        | Event::BatchStarted { .. }
        | Event::TrafficSwitched { .. }
        | Event::RollbackVerified { .. }
        | Event::RollbackUnverified { .. }
        | Event::StillLive { .. }
        | Event::LockWaiting { .. }
        | Event::DryRunFinished { .. }
        | Event::InterruptDeferred
        | Event::InterruptForced
        | Event::NotificationFailed { .. }
        | Event::Failed { .. } => decision(event),
        Event::WatchStarted { .. } | Event::WatchSample { .. } | Event::WatchFinished { .. } => {
            super::watch::json(event)
        }
    }
}

/// The JSON object of what dep decided on its own.
fn decision(event: &Event<'_>) -> serde_json::Value {
    match *event {
        Event::WouldRollBack { host, from, to } => {
            json!({"event": "would_roll_back", "host": host, "from": from, "to": to})
        }
        Event::BatchStarted { number, of, hosts } => {
            json!({"event": "batch_started", "batch": number, "batches": of, "hosts": hosts})
        }
        Event::TrafficSwitched {
            from,
            to,
            hosts,
            dry_run,
        } => json!({
            "event": "traffic_switched", "from": from, "to": to, "hosts": hosts,
            "dry_run": dry_run
        }),
        Event::RollbackVerified { hosts } => {
            json!({"event": "rollback_verified", "hosts": hosts})
        }
        Event::RollbackUnverified {
            release,
            failures,
            after,
        } => json!({
            "event": "rollback_unverified", "release": release,
            "failures": reasons(failures), "after_rollback": reasons(after)
        }),
        Event::StillLive { release, hosts, .. } => {
            json!({"event": "still_live", "release": release, "hosts": hosts})
        }
        Event::LockWaiting {
            host,
            holder,
            waited,
            left,
        } => json!({
            "event": "lock_waiting", "host": host, "holder": holder,
            "waited_ms": waited.as_millis() as u64, "left_ms": left.as_millis() as u64
        }),
        Event::DryRunFinished { release } => {
            json!({"event": "dry_run_finished", "release": release})
        }
        Event::InterruptDeferred => json!({"event": "interrupt_deferred"}),
        Event::InterruptForced => json!({"event": "interrupt_forced"}),
        Event::Failed { message, exit_code } => {
            json!({"event": "failed", "message": message, "exit_code": exit_code})
        }
        Event::NotificationFailed { message } => {
            json!({"event": "notification_failed", "message": message})
        }
        // `value` hands over only the events above.
        _ => serde_json::Value::Null,
    }
}

/// `[{"host": …, "reason": …}]`
fn reasons(list: &[(String, String)]) -> serde_json::Value {
    list.iter()
        .map(|(host, reason)| json!({"host": host, "reason": reason}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_and_the_elapsed_milliseconds_come_first() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T10:15:00.5+01:00")
            .unwrap()
            .with_timezone(&Utc);
        let elapsed = std::time::Duration::from_micros(1_234_567);
        assert_eq!(
            stamp(r#"{"event":"switched","host":"web1"}"#, now, elapsed),
            r#"{"time":"2026-11-26T09:15:00.500Z","elapsed_ms":1234,"event":"switched","host":"web1"}"#
        );
        assert_eq!(
            stamp("{}", now, elapsed),
            r#"{"time":"2026-11-26T09:15:00.500Z","elapsed_ms":1234}"#
        );
    }
}
