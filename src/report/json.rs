//! The `--json` format: one JSON object per event and line, each with an `event` field; every
//! string masked value by value.

use serde_json::json;

use super::mask::Mask;
use super::{Event, Sink, Stream};
use crate::transport::Outcome;

/// JSON lines.
pub struct Json {
    pub mask: Mask,
}

impl Sink for Json {
    fn render(&self, event: &Event<'_>) -> Option<String> {
        // Masked value by value, before JSON escaping could hide a secret from the mask.
        Some(self.mask.json(value(event)).to_string())
    }
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
            live,
            duration,
        } => json!({
            "event": "deploy_finished", "release": release, "ok": ok, "live": live,
            "duration_ms": duration.as_millis() as u64
        }),
        Event::WouldRollBack { .. }
        | Event::BatchStarted { .. }
        | Event::RollbackVerified { .. }
        | Event::RollbackUnverified { .. }
        | Event::StillLive { .. }
        | Event::LockWaiting { .. }
        | Event::DryRunFinished { .. }
        | Event::NotificationFailed { .. } => decision(event),
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
