//! `--json` output as the tests read it: one event a line, each stamped with `time` (RFC 3339,
//! UTC, milliseconds) and `elapsed_ms` since the run started, never going back. `parse` checks
//! the stamps and takes them off, so that the rest of an event compares whole.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A run's events, in order, checked and without `time` and `elapsed_ms`.
#[track_caller]
pub fn parse(stdout: &str) -> Vec<Value> {
    stamped(stdout)
        .into_iter()
        .map(|(_, _, event)| event)
        .collect()
}

/// A run's events, in order, each with its `time` and `elapsed_ms` (taken off the event),
/// checked: the time is RFC 3339 in UTC with milliseconds, and `elapsed_ms` never goes down.
#[track_caller]
pub fn stamped(stdout: &str) -> Vec<(DateTime<Utc>, u64, Value)> {
    let mut last_elapsed = 0;
    stdout
        .lines()
        .map(|line| {
            let mut event: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let object = event
                .as_object_mut()
                .unwrap_or_else(|| panic!("not an object: {line}"));
            let time = object
                .remove("time")
                .and_then(|t| t.as_str().map(str::to_string))
                .unwrap_or_else(|| panic!("no `time`: {line}"));
            // `2026-11-26T10:15:00.123Z`: milliseconds, and Z for UTC.
            let shape = time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.';
            assert!(
                shape,
                "`time` is not RFC 3339 UTC with milliseconds: {line}"
            );
            let time = DateTime::parse_from_rfc3339(&time)
                .unwrap_or_else(|e| panic!("`time` is not RFC 3339 ({e}): {line}"))
                .with_timezone(&Utc);
            let elapsed = object
                .remove("elapsed_ms")
                .and_then(|e| e.as_u64())
                .unwrap_or_else(|| panic!("no `elapsed_ms`: {line}"));
            assert!(
                elapsed >= last_elapsed,
                "`elapsed_ms` went back from {last_elapsed}: {line}"
            );
            last_elapsed = elapsed;
            (time, elapsed, event)
        })
        .collect()
}
