//! CI logs: GitHub Actions and GitLab CI. Each finished task is a collapsible group (section)
//! holding its output; on GitHub a failure also gets an `::error` annotation.

use std::collections::HashMap;
use std::sync::Mutex;

use super::plain::{failure_reason, Plain};
use super::{Event, Sink};
use crate::transport::{Outcome, StepResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    GitHub,
    GitLab,
}

pub struct Ci {
    plain: Plain,
    flavour: Flavour,
    /// Output of each running (host, task), shown in its group when it finishes.
    buffered: Mutex<HashMap<(String, String), Vec<String>>>,
}

impl Ci {
    pub fn new(plain: Plain, flavour: Flavour) -> Ci {
        Ci {
            plain,
            flavour,
            buffered: Mutex::default(),
        }
    }

    fn buffered(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<String>>> {
        self.buffered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A finished task: its header, its output in a group, and an annotation if it failed.
    fn task_finished(&self, event: &Event<'_>, host: &str, result: &StepResult) -> Option<String> {
        let header = self.plain.line(event)?;
        let lines = self
            .buffered()
            .remove(&(host.to_string(), result.task.clone()))
            .unwrap_or_default();
        let mut out = String::new();
        if lines.is_empty() {
            out.push_str(&header);
        } else {
            let id = format!("{host}_{}", result.task)
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            out.push_str(&match self.flavour {
                Flavour::GitHub => format!("::group::{header}\n"),
                Flavour::GitLab => {
                    format!("\x1b[0Ksection_start:{stamp}:{id}[collapsed=true]\r\x1b[0K{header}\n")
                }
            });
            for line in &lines {
                out.push_str(&format!("[{host}] │ {line}\n"));
            }
            out.push_str(&match self.flavour {
                Flavour::GitHub => "::endgroup::".to_string(),
                Flavour::GitLab => format!("\x1b[0Ksection_end:{stamp}:{id}\r\x1b[0K"),
            });
        }
        if let (Flavour::GitHub, Outcome::Failed { status, reason }) =
            (self.flavour, &result.outcome)
        {
            out.push_str(&format!(
                "\n::error title=dep: {} failed on {host}::{}",
                result.task,
                failure_reason(status, reason)
            ));
        }
        Some(out)
    }
}

impl Sink for Ci {
    fn render(&self, event: &Event<'_>) -> Option<String> {
        match *event {
            Event::TaskFinished { host, result } if result.outcome != Outcome::NotRun => {
                self.task_finished(event, host, result)
            }
            // Inside groups only: output shows in its task's group.
            Event::TaskStarted { host, task, .. } => {
                self.buffered()
                    .insert((host.to_string(), task.to_string()), Vec::new());
                None
            }
            Event::Output {
                host, task, line, ..
            } => {
                if let Some(lines) = self
                    .buffered()
                    .get_mut(&(host.to_string(), task.to_string()))
                {
                    lines.push(line.to_string());
                }
                None
            }
            Event::HostFailed {
                host,
                task,
                message,
            } if self.flavour == Flavour::GitHub => Some(format!(
                "{}\n::error title=dep: {task} failed on {host}::{message}",
                self.plain.line(event)?
            )),
            _ => self.plain.line(event),
        }
    }
}
