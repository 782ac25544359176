//! What a probe's samples add up to on one host, or across the fleet: samples, failures, the
//! error rate, latency percentiles, the last and the largest value.

use std::time::Duration;

use super::Sample;

/// The samples of one probe on one host (or every host), kept whole: a window holds a few
/// hundred at most.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub samples: u32,
    pub failures: u32,
    latencies: Vec<Duration>,
    pub last_value: Option<f64>,
    pub max_value: Option<f64>,
    /// Why the last failed sample failed.
    pub last_error: Option<String>,
}

impl Figures {
    pub fn record(&mut self, sample: &Sample) {
        self.samples += 1;
        match &sample.error {
            Some(why) => {
                self.failures += 1;
                self.last_error = Some(why.clone());
            }
            None => self.latencies.push(sample.latency),
        }
        if let Some(value) = sample.value {
            self.last_value = Some(value);
            self.max_value = Some(self.max_value.map_or(value, |max| max.max(value)));
        }
    }

    /// The fleet's figures: every host's samples together.
    pub fn merged<'a>(all: impl IntoIterator<Item = &'a Figures>) -> Figures {
        let mut merged = Figures::default();
        for figures in all {
            merged.samples += figures.samples;
            merged.failures += figures.failures;
            merged.latencies.extend(&figures.latencies);
            if figures.last_value.is_some() {
                merged.last_value = figures.last_value;
            }
            merged.max_value = match (merged.max_value, figures.max_value) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if figures.last_error.is_some() {
                merged.last_error.clone_from(&figures.last_error);
            }
        }
        merged
    }

    /// Failed samples as a share of all (0 before any).
    pub fn error_rate(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            f64::from(self.failures) / f64::from(self.samples)
        }
    }

    /// The `p`th percentile (nearest rank) of the answered samples' latencies.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    pub fn p50(&self) -> Option<Duration> {
        self.percentile(50.0)
    }

    pub fn p95(&self) -> Option<Duration> {
        self.percentile(95.0)
    }

    pub fn max_latency(&self) -> Option<Duration> {
        self.latencies.iter().max().copied()
    }

    /// How many answered samples took longer than `bound`.
    pub fn slower_than(&self, bound: Duration) -> usize {
        self.latencies.iter().filter(|l| **l > bound).count()
    }
}

/// The figures of one probe on one host (`host` None: the whole fleet).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub probe: String,
    pub host: Option<String>,
    pub figures: Figures,
}

impl Row {
    /// The figures in words: "`visits` across the fleet: 20 samples, 1 failed (5%), p95 12 ms".
    pub fn summary(&self) -> String {
        let f = &self.figures;
        let place = match &self.host {
            Some(host) => format!("on host `{host}`"),
            None => "across the fleet".to_string(),
        };
        let mut text = format!(
            "`{}` {place}: {} sample{}, {} failed ({})",
            self.probe,
            f.samples,
            if f.samples == 1 { "" } else { "s" },
            f.failures,
            super::verdict::percent(f.error_rate())
        );
        match (f.max_value, f.p95()) {
            (Some(max), _) => {
                text.push_str(&format!(", max value {}", super::verdict::number(max)))
            }
            (None, Some(p95)) => text.push_str(&format!(", p95 {} ms", p95.as_millis())),
            (None, None) => {}
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, error: bool, value: Option<f64>) -> Sample {
        Sample {
            error: error.then(|| "status 500".to_string()),
            latency: Duration::from_millis(ms),
            value,
        }
    }

    #[test]
    fn figures_add_up() {
        let mut figures = Figures::default();
        assert_eq!(figures.error_rate(), 0.0);
        assert_eq!(figures.p95(), None);
        for ms in 1..=20 {
            figures.record(&sample(ms * 10, false, Some(ms as f64)));
        }
        figures.record(&sample(5, true, None));
        assert_eq!(figures.samples, 21);
        assert_eq!(figures.failures, 1);
        assert!((figures.error_rate() - 1.0 / 21.0).abs() < 1e-9);
        assert_eq!(figures.p50(), Some(Duration::from_millis(100)));
        assert_eq!(figures.p95(), Some(Duration::from_millis(190)));
        assert_eq!(figures.max_latency(), Some(Duration::from_millis(200)));
        assert_eq!(figures.slower_than(Duration::from_millis(150)), 5);
        assert_eq!(figures.last_value, Some(20.0));
        assert_eq!(figures.max_value, Some(20.0));
        assert_eq!(figures.last_error.as_deref(), Some("status 500"));

        let mut other = Figures::default();
        other.record(&sample(1000, false, Some(50.0)));
        other.record(&sample(1, true, Some(3.0)));
        let row = Row {
            probe: "queue".into(),
            host: None,
            figures: figures.clone(),
        };
        assert_eq!(
            row.summary(),
            "`queue` across the fleet: 21 samples, 1 failed (4.8%), max value 20"
        );
        let fleet = Figures::merged([&figures, &other]);
        assert_eq!((fleet.samples, fleet.failures), (23, 2));
        assert_eq!(fleet.max_value, Some(50.0));
        assert_eq!(fleet.max_latency(), Some(Duration::from_millis(1000)));
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let mut figures = Figures::default();
        figures.record(&sample(42, false, None));
        for p in [1.0, 50.0, 95.0, 100.0] {
            assert_eq!(figures.percentile(p), Some(Duration::from_millis(42)));
        }
    }
}
