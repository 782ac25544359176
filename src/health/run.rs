//! One health check on one host: its attempts, each bounded by the check's timeout, reported as
//! they finish, until one passes or the attempts run out.

use std::time::{Duration, Instant};

use crate::report::{Event, Reporter};
use crate::transport::{human_duration, Backend, Output};

use super::{HealthCheck, Unhealthy};

/// The check as one host runs it: `label` names it in reports, `command` is what runs.
pub struct Attempts<'a> {
    pub backend: &'a Backend,
    pub host: &'a str,
    pub check: &'a HealthCheck,
    pub label: &'a str,
    pub command: &'a str,
}

impl Attempts<'_> {
    pub async fn run(&self, reporter: &Reporter) -> Result<(), Unhealthy> {
        let check = self.check;
        let mut verdict = Err(Unhealthy(String::new()));
        for attempt in 1..=check.attempts {
            let started = Instant::now();
            let Some(output) = self.attempt(reporter).await else {
                return Ok(()); // a dry run showed the check
            };
            verdict = check.judge(
                output.status,
                &output.stdout,
                &output.stderr,
                started.elapsed(),
            );
            let detail = match &verdict {
                Ok(healthy) => &healthy.0,
                Err(unhealthy) => &unhealthy.0,
            };
            reporter.emit(Event::HealthChecked {
                host: self.host,
                check: self.label,
                attempt,
                attempts: check.attempts,
                ok: verdict.is_ok(),
                detail,
            });
            if verdict.is_ok() {
                break;
            }
            if attempt < check.attempts {
                tokio::time::sleep(check.interval).await;
            }
        }
        verdict.map(drop)
    }

    /// One attempt (None: a dry run showed it); the check's own timeout bounds it, whatever the
    /// command does.
    async fn attempt(&self, reporter: &Reporter) -> Option<Output> {
        let limit = self.check.timeout + Duration::from_secs(2);
        let task = format!("health check {}", self.label);
        let probe = self
            .backend
            .change(self.host, &task, self.command, reporter);
        Some(match tokio::time::timeout(limit, probe).await {
            Ok(output) => output?,
            Err(_) => {
                let why = format!("timed out after {}", human_duration(self.check.timeout));
                Output {
                    status: None,
                    reason: Some(why.clone()),
                    stdout: String::new(),
                    stderr: why,
                    unreachable: false,
                }
            }
        })
    }
}
