//! The watch window after the switch: which probes are sampled on each host, how often and for
//! how long (`Window`, `WatchProbe`), what one sample says (`Sample`), the figures they add up
//! to (`figures`), the thresholds breached and the decision tree (`verdict`), and the host
//! metrics read without an agent (`metric`).

pub mod figures;
pub mod metric;
pub mod verdict;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::deployfile::Metric;
use crate::config::deployfile::{RawProbe, RawWatch};
use crate::error::{Error, Result};
use crate::health::{curl_answer, curl_command, last_line};
use crate::quote::quote;

/// The window's length when `[watch]` names none.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(300);
/// The time between two samples when `[watch]` names none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The share of failed samples a probe tolerates when it names none.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;
/// How long one sample may take when the probe names none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What is watched, how often and for how long.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub duration: Duration,
    pub interval: Duration,
    pub probes: Vec<Arc<WatchProbe>>,
}

/// Where a probe's sample comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A URL (a template) requested with curl on the host.
    Http { url: String, method: String },
    /// A shell command (a template) run on the host; exit 0 is an answer, its last line the value.
    Command(String),
    /// A host figure read from /proc or df.
    Metric(Metric),
}

/// The limits a probe is held to; a `None` is not checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Share of samples that failed (status >= 500, no answer, a failed command).
    pub max_error_rate: f64,
    pub max_p95: Option<Duration>,
    pub max_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatchProbe {
    pub name: String,
    pub source: Source,
    /// A critical feature: any breach of its thresholds rolls back.
    pub critical: bool,
    pub thresholds: Thresholds,
    pub timeout: Duration,
    pub roles: Vec<String>,
}

/// One sample of one probe on one host.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// None: it failed (why).
    pub error: Option<String>,
    pub latency: Duration,
    /// The number the command printed (command and metric probes).
    pub value: Option<f64>,
}

impl Window {
    /// The global `[watch]`, then the stage's: its duration and interval win, its probes add.
    pub fn resolve(layers: &[(&RawWatch, &Path)]) -> Result<Window> {
        let mut window = Window {
            duration: DEFAULT_DURATION,
            interval: DEFAULT_INTERVAL,
            probes: Vec::new(),
        };
        for (raw, file) in layers {
            if let Some(duration) = raw.duration {
                window.duration = duration.0;
            }
            if let Some(interval) = raw.interval {
                window.interval = interval.0;
            }
            for probe in &raw.probe {
                let index = window.probes.len();
                window.probes.push(Arc::new(WatchProbe::from_raw(probe)));
                let name = &window.probes[index].name;
                if window.probes[..index].iter().any(|p| &p.name == name) {
                    return Err(Error::Config {
                        path: file.to_path_buf(),
                        message: format!(
                            "two watch probes are named `{name}`; give each its own `name`"
                        ),
                    });
                }
            }
            if window.interval.is_zero() {
                return Err(Error::Config {
                    path: file.to_path_buf(),
                    message: "`[watch]` `interval` must be longer than 0s".into(),
                });
            }
        }
        Ok(window)
    }

    /// Samples per probe and host in a whole window (at least one).
    pub fn planned(&self) -> u32 {
        let ratio = self.duration.as_secs_f64() / self.interval.as_secs_f64().max(1e-3);
        (ratio.round() as u32).max(1)
    }

    /// Whether there is anything to watch.
    pub fn is_active(&self) -> bool {
        !self.probes.is_empty() && !self.duration.is_zero()
    }
}

impl WatchProbe {
    pub fn from_raw(raw: &RawProbe) -> WatchProbe {
        let source = match (&raw.http, &raw.command, raw.metric) {
            (Some(url), _, _) => Source::Http {
                url: url.clone(),
                method: raw.method.as_deref().unwrap_or("GET").to_ascii_uppercase(),
            },
            (_, Some(command), _) => Source::Command(command.clone()),
            (_, _, Some(metric)) => Source::Metric(metric),
            // `RawProbe` is checked as it is read: one of the three is there.
            _ => Source::Command("false".into()),
        };
        let name = raw.name.clone().unwrap_or_else(|| match &source {
            Source::Http { url, .. } => url.clone(),
            Source::Command(command) => command.clone(),
            Source::Metric(metric) => metric.name().to_string(),
        });
        let default_max = match source {
            Source::Metric(metric) => metric.default_max(),
            _ => None,
        };
        WatchProbe {
            name,
            thresholds: Thresholds {
                max_error_rate: raw
                    .max_error_rate
                    .map_or(DEFAULT_MAX_ERROR_RATE, |rate| rate.0),
                max_p95: raw.max_p95_ms.map(Duration::from_millis),
                max_value: raw.max_value.or(default_max),
            },
            source,
            critical: raw.critical,
            timeout: raw.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            roles: raw.roles.clone(),
        }
    }

    pub fn applies_to(&self, roles: &[String]) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| roles.contains(r))
    }

    /// The template to render for this probe (a metric has none).
    pub fn template(&self) -> &str {
        match &self.source {
            Source::Http { url, .. } => url,
            Source::Command(command) => command,
            Source::Metric(_) => "",
        }
    }

    /// The shell command of one sample, given the rendered template, the directory commands
    /// run in, and the deploy path (for the disk metric).
    pub fn command(&self, rendered: &str, cwd: &str, deploy_path: &str) -> String {
        match &self.source {
            Source::Http { method, .. } => curl_command(rendered, method, self.timeout),
            Source::Command(_) => format!("cd {} && {{\n{}\n}}", quote(cwd), rendered),
            Source::Metric(metric) => metric.command(deploy_path),
        }
    }

    /// What one sample's output says. `elapsed` is the round trip, used when curl gave no time.
    pub fn judge(
        &self,
        status: Option<i32>,
        stdout: &str,
        stderr: &str,
        elapsed: Duration,
    ) -> Sample {
        let failed = |why: String| Sample {
            error: Some(why),
            latency: elapsed,
            value: None,
        };
        match &self.source {
            Source::Http { .. } => {
                let (_, code, seconds) = curl_answer(stdout);
                let latency = seconds.map_or(elapsed, Duration::from_secs_f64);
                match code {
                    Some(code) if status == Some(0) && code != 0 => Sample {
                        error: (code >= 500).then(|| format!("status {code}")),
                        latency,
                        value: None,
                    },
                    _ => failed(format!(
                        "no answer: {}",
                        last_line(stderr).unwrap_or_else(|| format!(
                            "curl exited with status {}",
                            status.unwrap_or(-1)
                        ))
                    )),
                }
            }
            Source::Command(_) | Source::Metric(_) => {
                if status != Some(0) {
                    let why = last_line(stderr)
                        .or_else(|| last_line(stdout))
                        .unwrap_or_default();
                    return failed(match status {
                        Some(code) => format!("exit status {code}{}", colon(&why)),
                        None if why.is_empty() => "the command did not finish".into(),
                        None => why,
                    });
                }
                let last = last_line(stdout).unwrap_or_default();
                let value = last.parse::<f64>().ok().filter(|v| v.is_finite());
                if value.is_none() && self.thresholds.max_value.is_some() {
                    return failed(format!("printed `{last}`, not a number"));
                }
                Sample {
                    error: None,
                    latency: elapsed,
                    value,
                }
            }
        }
    }
}

fn colon(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::deployfile::parse;

    fn window(text: &str) -> Window {
        let file = parse(Path::new("D.toml"), text).unwrap();
        let raw = file.watch.unwrap();
        Window::resolve(&[(&raw, Path::new("D.toml"))]).unwrap()
    }

    #[test]
    fn probes_resolve_with_their_defaults() {
        let w = window(
            "[watch]\nduration = \"2s\"\ninterval = \"200ms\"\n\
             [[watch.probe]]\nname = \"visits\"\nhttp = \"http://h/visits\"\nmethod = \"post\"\ncritical = true\nmax_error_rate = \"2%\"\nmax_p95_ms = 500\n\
             [[watch.probe]]\ncommand = \"echo 3\"\nmax_value = 1000\n\
             [[watch.probe]]\nmetric = \"cpu\"\n",
        );
        assert_eq!(w.planned(), 10);
        let [visits, queue, cpu] = &w.probes[..] else {
            panic!("three probes")
        };
        assert_eq!(
            visits.source,
            Source::Http {
                url: "http://h/visits".into(),
                method: "POST".into()
            }
        );
        assert!(visits.critical);
        assert_eq!(visits.thresholds.max_error_rate, 0.02);
        assert_eq!(visits.thresholds.max_p95, Some(Duration::from_millis(500)));
        assert_eq!(queue.name, "echo 3");
        assert_eq!(queue.thresholds.max_error_rate, DEFAULT_MAX_ERROR_RATE);
        assert_eq!(queue.thresholds.max_value, Some(1000.0));
        assert_eq!(cpu.name, "cpu");
        assert_eq!(cpu.thresholds.max_value, Some(80.0));
    }

    #[test]
    fn bad_probes_are_pointed_at() {
        let cases = [
            (
                "[[watch.probe]]\nname = \"x\"\nhttp = \"u\"\ncommand = \"c\"\n",
                "D.toml:1:1: watch probe `x` needs exactly one of `http`, `command` or `metric`",
            ),
            (
                "[[watch.probe]]\ncommand = \"c\"\nmax_error_rate = 0.01\n",
                "D.toml:3:18: invalid type: floating point `0.01`, expected a percentage such as \"1%\"",
            ),
            (
                "[[watch.probe]]\ncommand = \"c\"\nmax_error_rate = \"101%\"\n",
                "D.toml:3:18: `101%` is not between 0% and 100%",
            ),
            (
                "[[watch.probe]]\nmetric = \"gpu\"\n",
                "D.toml:2:10: unknown variant `gpu`",
            ),
            (
                "[[watch.probe]]\ncommand = \"c\"\nmethod = \"POST\"\n",
                "D.toml:1:1: watch probe: `method` goes with `http` only",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(Path::new("D.toml"), text).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{message}");
        }
        let twice = parse(
            Path::new("D.toml"),
            "[[watch.probe]]\ncommand = \"c\"\n[[watch.probe]]\ncommand = \"c\"\n",
        )
        .unwrap();
        let error = Window::resolve(&[(twice.watch.as_ref().unwrap(), Path::new("D.toml"))])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "D.toml: two watch probes are named `c`; give each its own `name`"
        );
    }

    #[test]
    fn samples_are_judged() {
        let w = window(
            "[[watch.probe]]\nname = \"h\"\nhttp = \"u\"\n[[watch.probe]]\nname = \"q\"\ncommand = \"c\"\nmax_value = 10\n",
        );
        let (http, queue) = (&w.probes[0], &w.probes[1]);
        let ms = Duration::from_millis(7);
        let ok = http.judge(Some(0), "fine\n__dep_http 404 0.012", "", ms);
        assert_eq!(ok.error, None, "a 404 is an answer");
        assert_eq!(ok.latency, Duration::from_millis(12));
        let bad = http.judge(Some(0), "boom\n__dep_http 503 0.020", "", ms);
        assert_eq!(bad.error.as_deref(), Some("status 503"));
        let gone = http.judge(Some(7), "\n__dep_http 000 0.000", "curl: (7) refused\n", ms);
        assert_eq!(gone.error.as_deref(), Some("no answer: curl: (7) refused"));
        assert_eq!(queue.judge(Some(0), "12\n", "", ms).value, Some(12.0));
        assert_eq!(
            queue.judge(Some(0), "lots\n", "", ms).error.as_deref(),
            Some("printed `lots`, not a number")
        );
        assert_eq!(
            queue
                .judge(Some(2), "", "no such queue\n", ms)
                .error
                .as_deref(),
            Some("exit status 2: no such queue")
        );
    }
}
