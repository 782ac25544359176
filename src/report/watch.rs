//! How the watch window shows: its JSON events, its plain lines (one per interval, for logs and
//! CI), the figures table at its end, and what the live view's progress bar says.

use std::time::Duration;

use serde_json::{json, Value};

use super::table;
use super::Event;
use crate::transport::human_duration;
use crate::watch::figures::Row;
use crate::watch::verdict::{number, percent};

/// The JSON object of a watch event.
pub fn json(event: &Event<'_>) -> Value {
    match *event {
        Event::WatchStarted {
            hosts,
            probes,
            duration,
            interval,
            samples,
        } => json!({
            "event": "watch_started", "hosts": hosts, "probes": probes,
            "duration_ms": millis(duration), "interval_ms": millis(interval), "samples": samples
        }),
        Event::WatchSample {
            number,
            of,
            elapsed,
            left,
            rows,
        } => json!({
            "event": "watch_sample", "sample": number, "samples": of,
            "elapsed_ms": millis(elapsed), "left_ms": millis(left), "figures": figures(rows)
        }),
        Event::WatchFinished {
            verdict,
            why,
            reasons,
            stopped_early,
            outcome,
            rows,
        } => json!({
            "event": "watch_finished", "verdict": verdict, "why": why, "reasons": reasons,
            "stopped_early": stopped_early, "outcome": outcome, "figures": figures(rows)
        }),
        _ => Value::Null,
    }
}

fn figures(rows: &[Row]) -> Value {
    rows.iter()
        .map(|row| {
            let f = &row.figures;
            json!({
                "probe": row.probe, "host": row.host, "samples": f.samples, "errors": f.failures,
                "error_rate": f.error_rate(), "p50_ms": f.p50().map(millis),
                "p95_ms": f.p95().map(millis), "max_ms": f.max_latency().map(millis),
                "last_value": f.last_value, "max_value": f.max_value, "last_error": f.last_error,
            })
        })
        .collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Breaches listed under the verdict; the rest are counted.
const REASONS_SHOWN: usize = 10;

/// The plain line of a watch event.
pub fn line(event: &Event<'_>) -> Option<String> {
    match *event {
        Event::WatchStarted {
            hosts,
            probes,
            duration,
            interval,
            ..
        } => Some(format!(
            "watching {} host{} for {} (every {}): {}",
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" },
            human_duration(duration),
            human_duration(interval),
            probes.join(", ")
        )),
        Event::WatchSample {
            number, of, left, ..
        } => Some(format!(
            "watch {number}/{of} ({} left): {}",
            human_duration(left),
            progress(event)
        )),
        Event::WatchFinished {
            verdict,
            why,
            reasons,
            stopped_early,
            outcome,
            ..
        } => {
            let early = if stopped_early {
                " (stopped early: the verdict was certain)"
            } else {
                ""
            };
            let mut text = format!("watch verdict: {verdict} ({why}){early}; {outcome}");
            for reason in reasons.iter().take(REASONS_SHOWN) {
                text.push_str(&format!("\n  {reason}"));
            }
            if reasons.len() > REASONS_SHOWN {
                text.push_str(&format!(
                    "\n  and {} more (the table below has every figure)",
                    reasons.len() - REASONS_SHOWN
                ));
            }
            Some(text)
        }
        _ => None,
    }
}

/// Per probe, the fleet's error rate and p95 so far, and the worst host: "visits 0% errors,
/// p95 12 ms; queue max 3".
pub fn progress(event: &Event<'_>) -> String {
    let Event::WatchSample { rows, .. } = *event else {
        return String::new();
    };
    let fleet = rows.iter().filter(|r| r.host.is_none());
    let hosts = rows.iter().filter(|r| r.host.is_some()).count();
    fleet
        .map(|total| {
            let f = &total.figures;
            let mut text = format!("{} {} errors", total.probe, percent(f.error_rate()));
            // A probe that prints values is watched for them, not for its time.
            match (f.max_value, f.p95()) {
                (Some(max), _) => text.push_str(&format!(", max {}", number(max))),
                (None, Some(p95)) => text.push_str(&format!(", p95 {} ms", p95.as_millis())),
                (None, None) => {}
            }
            let mine = rows
                .iter()
                .filter(|r| r.host.is_some() && r.probe == total.probe);
            let worst = mine.max_by(|a, b| {
                let key = |r: &Row| (r.figures.error_rate(), r.figures.p95().unwrap_or_default());
                key(a)
                    .partial_cmp(&key(b))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            if let Some(worst) = worst.filter(|_| hosts > 1 && f.max_value.is_none()) {
                text.push_str(&format!(
                    " (worst {}: {}",
                    worst.host.as_deref().unwrap_or_default(),
                    percent(worst.figures.error_rate())
                ));
                if let Some(p95) = worst.figures.p95() {
                    text.push_str(&format!(", p95 {} ms", p95.as_millis()));
                }
                text.push(')');
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The figures of the whole window, probe by host, then the verdict and why.
pub fn table(event: &Event<'_>) -> String {
    let Event::WatchFinished {
        verdict, why, rows, ..
    } = *event
    else {
        return String::new();
    };
    let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
    let value = |v: Option<f64>| v.map_or("-".to_string(), number);
    let mut lines = vec![[
        "PROBE",
        "HOST",
        "SAMPLES",
        "ERRORS",
        "RATE",
        "P50",
        "P95",
        "MAX",
        "LAST",
        "MAX VALUE",
    ]
    .map(String::from)];
    for row in rows {
        let f = &row.figures;
        lines.push([
            row.probe.clone(),
            row.host.clone().unwrap_or_else(|| "(fleet)".into()),
            f.samples.to_string(),
            f.failures.to_string(),
            percent(f.error_rate()),
            ms(f.p50()),
            ms(f.p95()),
            ms(f.max_latency()),
            value(f.last_value),
            value(f.max_value),
        ]);
    }
    format!(
        "\nwatch window:\n{}verdict: {verdict} ({why})",
        table::render(&lines, "  ")
    )
}
