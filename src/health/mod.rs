//! Health checks: an HTTP request made with curl on the host, or any command; what is expected
//! (status, body, latency), how many attempts, and the verdict on what came back.

pub mod run;

use std::path::PathBuf;
use std::time::Duration;

pub use crate::config::deployfile::Phase;
use crate::config::deployfile::{RawDuration, RawHealth};
use crate::error::{Error, Result};
use crate::quote::quote;

#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// A URL requested with curl on the host (a template).
    Http(String),
    /// A shell command run on the host (a template); exit 0 is healthy.
    Command(String),
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub name: String,
    pub probe: Probe,
    pub expect_status: u16,
    pub expect_body: Option<String>,
    pub max_latency: Option<Duration>,
    pub attempts: u32,
    pub interval: Duration,
    pub timeout: Duration,
    pub phase: Phase,
    pub roles: Vec<String>,
}

/// A healthy attempt, in a few words ("status 200 in 12 ms").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Healthy(pub String);

/// Why a check failed on a host ("status 502, expected 200").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unhealthy(pub String);

/// The marker curl prints after the body: status code and total time.
const HTTP_MARK: &str = "__dep_http";

impl HealthCheck {
    pub fn from_raw(raw: &RawHealth, file: &std::path::Path, index: usize) -> Result<HealthCheck> {
        let name = raw
            .name
            .clone()
            .unwrap_or_else(|| match (&raw.http, &raw.command) {
                (Some(url), _) => url.clone(),
                (_, Some(command)) => command.clone(),
                _ => format!("health #{}", index + 1),
            });
        let invalid = |message: String| Error::Config {
            path: PathBuf::from(file),
            message: format!("health check `{name}`: {message}"),
        };
        let probe = match (&raw.http, &raw.command) {
            (Some(url), None) => Probe::Http(url.clone()),
            (None, Some(command)) => Probe::Command(command.clone()),
            _ => return Err(invalid("needs exactly one of `http` or `command`".into())),
        };
        let duration =
            |value: Option<RawDuration>, default: Duration| value.map_or(default, |d| d.0);
        Ok(HealthCheck {
            probe,
            expect_status: raw.expect_status.unwrap_or(200),
            expect_body: raw.expect_body.clone(),
            max_latency: raw.max_latency_ms.map(Duration::from_millis),
            attempts: raw.attempts.unwrap_or(1).max(1),
            interval: duration(raw.interval, Duration::from_secs(2)),
            timeout: duration(raw.timeout, Duration::from_secs(10)),
            phase: raw.phase.unwrap_or_default(),
            roles: raw.roles.clone(),
            name,
        })
    }

    pub fn applies_to(&self, roles: &[String]) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| roles.contains(r))
    }

    /// The shell command for one attempt, given the rendered URL or command and where to run it.
    pub fn command(&self, rendered: &str, cwd: &str) -> String {
        match &self.probe {
            Probe::Http(_) => curl_command(rendered, "GET", self.timeout),
            Probe::Command(_) => format!("cd {} && {{\n{}\n}}", quote(cwd), rendered),
        }
    }

    /// The template to render for this check (its URL or command).
    pub fn template(&self) -> &str {
        match &self.probe {
            Probe::Http(url) => url,
            Probe::Command(command) => command,
        }
    }

    /// The verdict on one attempt's output: what it showed when healthy, why not otherwise.
    pub fn judge(
        &self,
        status: Option<i32>,
        stdout: &str,
        stderr: &str,
        elapsed: Duration,
    ) -> Result<Healthy, Unhealthy> {
        let (body, code, latency) = match &self.probe {
            Probe::Http(_) => {
                let (body, code, seconds) = curl_answer(stdout);
                if status != Some(0) || code.is_none() || code == Some(0) {
                    let why = last_line(stderr).unwrap_or_else(|| {
                        format!("curl exited with status {}", status.unwrap_or(-1))
                    });
                    return Err(Unhealthy(format!("request failed: {why}")));
                }
                (
                    body,
                    code,
                    seconds.map(Duration::from_secs_f64).unwrap_or(elapsed),
                )
            }
            Probe::Command(_) => {
                if status.is_none() {
                    let why =
                        last_line(stderr).unwrap_or_else(|| "the command did not finish".into());
                    return Err(Unhealthy(why));
                }
                if status != Some(0) {
                    let why = last_line(stderr)
                        .or_else(|| last_line(stdout))
                        .unwrap_or_default();
                    return Err(Unhealthy(format!(
                        "command exited with status {}{}",
                        status.unwrap_or(-1),
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {why}")
                        }
                    )));
                }
                (stdout, None, elapsed)
            }
        };
        if let Some(code) = code {
            if code != self.expect_status {
                return Err(Unhealthy(format!(
                    "status {code}, expected {}",
                    self.expect_status
                )));
            }
        }
        if let Some(expected) = &self.expect_body {
            if !body.contains(expected.as_str()) {
                let shown: String = body.trim().chars().take(80).collect();
                return Err(Unhealthy(format!(
                    "body does not contain {expected:?} (got {shown:?})"
                )));
            }
        }
        if let Some(bound) = self.max_latency {
            if latency > bound {
                return Err(Unhealthy(format!(
                    "took {} ms, more than {} ms",
                    latency.as_millis(),
                    bound.as_millis()
                )));
            }
        }
        Ok(Healthy(match code {
            Some(code) => format!("status {code} in {} ms", latency.as_millis()),
            None => format!("ok in {} ms", latency.as_millis()),
        }))
    }
}

/// The curl command that requests `url` with `method` on a host, printing the body, then a
/// marker line with the status code and the total time (read back by [`curl_answer`]).
pub fn curl_command(url: &str, method: &str, timeout: Duration) -> String {
    let method = match method.to_ascii_uppercase().as_str() {
        "GET" => String::new(),
        "HEAD" => "--head ".to_string(),
        // An empty body, so servers that want a length for a POST get one.
        other => format!("-X {other} --data '' "),
    };
    format!(
        "curl -sS {method}--max-time {} -w '\\n{HTTP_MARK} %{{http_code}} %{{time_total}}' {}",
        timeout.as_secs().max(1),
        quote(url)
    )
}

/// What a [`curl_command`] printed: the body, the status code (0 or None: no answer) and the
/// total time in seconds.
pub fn curl_answer(stdout: &str) -> (&str, Option<u16>, Option<f64>) {
    let (body, mark) = stdout
        .rsplit_once(&format!("\n{HTTP_MARK} "))
        .unwrap_or(("", ""));
    let mut fields = mark.split_whitespace();
    let code: Option<u16> = fields.next().and_then(|c| c.parse().ok());
    let seconds: Option<f64> = fields.next().and_then(|t| t.parse().ok());
    (body, code, seconds)
}

pub fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(raw: RawHealth) -> HealthCheck {
        HealthCheck::from_raw(
            &RawHealth {
                http: Some("http://127.0.0.1/health".into()),
                ..raw
            },
            std::path::Path::new("D"),
            0,
        )
        .unwrap()
    }

    #[test]
    fn http_verdicts() {
        let check = http(RawHealth {
            expect_body: Some("ok".into()),
            max_latency_ms: Some(800),
            ..Default::default()
        });
        let ms = Duration::from_millis(5);
        assert_eq!(
            check.judge(Some(0), "ok\n__dep_http 200 0.012", "", ms),
            Ok(Healthy("status 200 in 12 ms".into()))
        );
        assert_eq!(
            check.judge(Some(0), "boom\n__dep_http 500 0.010", "", ms),
            Err(Unhealthy("status 500, expected 200".into()))
        );
        assert_eq!(
            check.judge(Some(0), "maintenance\n__dep_http 200 0.010", "", ms),
            Err(Unhealthy(
                "body does not contain \"ok\" (got \"maintenance\")".into()
            ))
        );
        assert_eq!(
            check.judge(Some(0), "ok\n__dep_http 200 1.5", "", ms),
            Err(Unhealthy("took 1500 ms, more than 800 ms".into()))
        );
        assert_eq!(
            check.judge(
                Some(7),
                "\n__dep_http 000 0.000",
                "curl: (7) Failed to connect to 127.0.0.1 port 80\n",
                ms
            ),
            Err(Unhealthy(
                "request failed: curl: (7) Failed to connect to 127.0.0.1 port 80".into()
            ))
        );
        assert!(check
            .command("http://h/x?a=1&b", "/")
            .contains("'http://h/x?a=1&b'"));
    }

    #[test]
    fn command_verdicts_and_validation() {
        let raw = RawHealth {
            command: Some("php artisan about".into()),
            expect_body: Some("Laravel".into()),
            ..Default::default()
        };
        let check = HealthCheck::from_raw(&raw, std::path::Path::new("D"), 0).unwrap();
        let ms = Duration::from_millis(3);
        assert_eq!(
            check.judge(Some(0), "Laravel 8.83\n", "", ms),
            Ok(Healthy("ok in 3 ms".into()))
        );
        assert_eq!(
            check.judge(Some(1), "", "fatal: no\n", ms),
            Err(Unhealthy("command exited with status 1: fatal: no".into()))
        );
        let both = RawHealth {
            command: Some("x".into()),
            http: Some("y".into()),
            ..Default::default()
        };
        let error = HealthCheck::from_raw(&both, std::path::Path::new("Deployfile.toml"), 0)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "Deployfile.toml: health check `y`: needs exactly one of `http` or `command`"
        );
    }
}
