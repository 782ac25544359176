//! The decision at the end of a watch window, as our users' design notes draw it:
//!
//! 1. any probe's error rate above its `max_error_rate` → roll back;
//! 2. else a performance threshold breached (`max_p95_ms`, `max_value`): keep the release and
//!    alert when every critical probe is within all its thresholds, else roll back;
//! 3. else keep the release: all systems normal.
//!
//! Thresholds hold on each host and on the fleet as a whole (every host's samples together).

use std::fmt::{self, Display, Formatter};
use std::time::Duration;

use super::figures::Figures;
use super::WatchProbe;

/// Which figure breached its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    ErrorRate,
    P95,
    Value,
}

/// One threshold breached by one probe on one host (`host` None: the fleet).
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub probe: String,
    pub host: Option<String>,
    pub critical: bool,
    pub figure: Figure,
    /// The figure (a share for the error rate, milliseconds for p95).
    pub value: f64,
    pub limit: f64,
}

impl Breach {
    /// A performance breach (step 2), not an error rate (step 1).
    pub fn is_performance(&self) -> bool {
        self.figure != Figure::ErrorRate
    }
}

impl Display for Breach {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let place = match &self.host {
            Some(host) => format!("on host `{host}`"),
            None => "across the fleet".to_string(),
        };
        let (what, value, limit) = match self.figure {
            Figure::ErrorRate => ("error rate", percent(self.value), percent(self.limit)),
            Figure::P95 => (
                "p95",
                format!("{} ms", self.value.round()),
                format!("{} ms", self.limit.round()),
            ),
            Figure::Value => ("value", number(self.value), number(self.limit)),
        };
        write!(
            f,
            "probe `{}` {place}: {what} {value}, above {limit}",
            self.probe
        )
    }
}

/// "25%", "0.5%".
pub fn percent(share: f64) -> String {
    number(share * 100.0) + "%"
}

/// A number as people write it: "1000", "12.5".
pub fn number(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// What the window decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Step 3: every probe within its thresholds.
    Normal,
    /// Step 2, kept: performance slipped, every critical probe is fine.
    Alert(Vec<Breach>),
    /// Step 1, or step 2 with a critical probe breached: the breaches that decided first.
    RollBack(Vec<Breach>),
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Normal => "normal",
            Verdict::Alert(_) => "alert",
            Verdict::RollBack(_) => "rollback",
        }
    }

    pub fn breaches(&self) -> &[Breach] {
        match self {
            Verdict::Normal => &[],
            Verdict::Alert(breaches) | Verdict::RollBack(breaches) => breaches,
        }
    }

    /// Why, in words: the step of the tree that decided.
    pub fn why(&self) -> String {
        match self {
            Verdict::Normal => "every probe stayed within its thresholds".into(),
            Verdict::Alert(_) => {
                "performance thresholds were breached, but every critical probe is within its thresholds".into()
            }
            Verdict::RollBack(breaches) if breaches.iter().any(|b| !b.is_performance()) => {
                "an error rate is above its threshold".into()
            }
            Verdict::RollBack(_) => "a critical probe breached a performance threshold".into(),
        }
    }
}

/// The three steps.
pub fn decide(mut breaches: Vec<Breach>) -> Verdict {
    if breaches.is_empty() {
        return Verdict::Normal;
    }
    if breaches.iter().any(|b| !b.is_performance()) {
        breaches.sort_by_key(Breach::is_performance);
        return Verdict::RollBack(breaches);
    }
    if breaches.iter().any(|b| b.critical) {
        breaches.sort_by_key(|b| !b.critical);
        return Verdict::RollBack(breaches);
    }
    Verdict::Alert(breaches)
}

/// The thresholds `probe` breaches with `figures` on `host` (None: the fleet).
pub fn breaches(probe: &WatchProbe, host: Option<&str>, figures: &Figures) -> Vec<Breach> {
    let breach = |figure, value: f64, limit: f64| Breach {
        probe: probe.name.clone(),
        host: host.map(str::to_string),
        critical: probe.critical,
        figure,
        value,
        limit,
    };
    let limits = &probe.thresholds;
    let mut found = Vec::new();
    if figures.error_rate() > limits.max_error_rate {
        found.push(breach(
            Figure::ErrorRate,
            figures.error_rate(),
            limits.max_error_rate,
        ));
    }
    if let (Some(bound), Some(p95)) = (limits.max_p95, figures.p95()) {
        if p95 > bound {
            found.push(breach(Figure::P95, millis(p95), millis(bound)));
        }
    }
    if let (Some(limit), Some(max)) = (limits.max_value, figures.max_value) {
        if max > limit {
            found.push(breach(Figure::Value, max, limit));
        }
    }
    found
}

/// Whether `figures` of one host, `planned` samples into the window, already decide a rollback
/// whatever the samples still to come: the error rate cannot come back under its threshold,
/// or a critical probe's largest value or p95 is breached for good.
pub fn rollback_is_certain(probe: &WatchProbe, figures: &Figures, planned: u32) -> bool {
    let limits = &probe.thresholds;
    let planned = planned.max(figures.samples);
    let remaining = planned - figures.samples;
    if f64::from(figures.failures) / f64::from(planned) > limits.max_error_rate {
        return true;
    }
    if !probe.critical {
        return false;
    }
    if let (Some(limit), Some(max)) = (limits.max_value, figures.max_value) {
        if max > limit {
            return true;
        }
    }
    if let Some(bound) = limits.max_p95 {
        // Best case: every sample to come answers within the bound.
        let answered = (figures.samples - figures.failures + remaining) as usize;
        let fast = answered - figures.slower_than(bound);
        let rank = (0.95 * answered as f64).ceil() as usize;
        if answered > 0 && fast < rank {
            return true;
        }
    }
    false
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::{Sample, Source, Thresholds};

    fn probe(critical: bool) -> WatchProbe {
        WatchProbe {
            name: "visits".into(),
            source: Source::Command("true".into()),
            critical,
            thresholds: Thresholds {
                max_error_rate: 0.01,
                max_p95: Some(Duration::from_millis(500)),
                max_value: Some(1000.0),
            },
            timeout: Duration::from_secs(1),
            roles: Vec::new(),
        }
    }

    fn breach(figure: Figure, critical: bool) -> Breach {
        Breach {
            probe: "p".into(),
            host: Some("h1".into()),
            critical,
            figure,
            value: 2.0,
            limit: 1.0,
        }
    }

    #[test]
    fn the_decision_tree() {
        use Figure::*;
        let cases: &[(&[(Figure, bool)], &str)] = &[
            (&[], "normal"),
            (&[(ErrorRate, false)], "rollback"),
            (&[(ErrorRate, true)], "rollback"),
            (&[(P95, false)], "alert"),
            (&[(Value, false), (P95, false)], "alert"),
            (&[(P95, true)], "rollback"),
            (&[(Value, true)], "rollback"),
            (&[(P95, false), (ErrorRate, false)], "rollback"),
            (&[(P95, false), (Value, true)], "rollback"),
        ];
        for (found, expected) in cases {
            let breaches = found.iter().map(|(f, c)| breach(*f, *c)).collect();
            assert_eq!(decide(breaches).name(), *expected, "{found:?}");
        }
        let verdict = decide(vec![breach(P95, false), breach(ErrorRate, false)]);
        assert_eq!(
            verdict.breaches()[0].figure,
            ErrorRate,
            "what decided first"
        );
        assert_eq!(verdict.why(), "an error rate is above its threshold");
    }

    fn figures(samples: &[(u64, bool, Option<f64>)]) -> Figures {
        let mut figures = Figures::default();
        for (ms, error, value) in samples {
            figures.record(&Sample {
                error: error.then(|| "status 500".into()),
                latency: Duration::from_millis(*ms),
                value: *value,
            });
        }
        figures
    }

    #[test]
    fn thresholds_are_breached_and_worded() {
        let probe = probe(false);
        let fine = figures(&[(10, false, Some(3.0)); 10]);
        assert_eq!(breaches(&probe, Some("h1"), &fine), []);
        let mut samples = vec![(900, false, Some(1200.0)); 3];
        samples.push((10, true, None));
        let found = breaches(&probe, Some("h2"), &figures(&samples));
        let words: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            words,
            [
                "probe `visits` on host `h2`: error rate 25%, above 1%",
                "probe `visits` on host `h2`: p95 900 ms, above 500 ms",
                "probe `visits` on host `h2`: value 1200, above 1000",
            ]
        );
        assert_eq!(
            breaches(&probe, None, &figures(&samples))[0].to_string(),
            "probe `visits` across the fleet: error rate 25%, above 1%"
        );
    }

    #[test]
    fn a_rollback_is_certain_once_nothing_to_come_can_save_it() {
        let lenient = probe(false);
        // One failure in a window of 200 samples is 0.5%: it can still pass.
        let one = figures(&[(10, true, None)]);
        assert!(!rollback_is_certain(&lenient, &one, 200));
        // One failure in 10 is 10% whatever follows.
        assert!(rollback_is_certain(&lenient, &one, 10));
        // A slow non-critical probe only alerts: never a certain rollback.
        let slow = figures(&[(900, false, Some(5000.0)); 5]);
        assert!(!rollback_is_certain(&lenient, &slow, 10));
        let critical = probe(true);
        assert!(rollback_is_certain(&critical, &slow, 10), "value over");
        let slow_but_small = figures(&[(900, false, None); 1]);
        assert!(!rollback_is_certain(&critical, &slow_but_small, 40));
        assert!(rollback_is_certain(
            &critical,
            &figures(&[(900, false, None); 3]),
            40
        ));
    }
}
