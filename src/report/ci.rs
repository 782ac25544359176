//! CI logs: GitHub Actions and GitLab CI. Each finished task is a collapsible group (section)
//! holding its output; on GitHub a failure also gets an `::error` annotation.

use std::collections::{HashMap, VecDeque};
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
    buffered: Mutex<HashMap<(String, String), Kept>>,
}

/// How many lines of a task's output its group shows at the start, and at the end.
const KEPT_LINES: usize = 1000;

/// A task's output as its group shows it: the first and the last lines, and how many between
/// them were left out (a task printing millions of lines must not fill the controller's memory).
#[derive(Default)]
struct Kept {
    head: Vec<String>,
    tail: VecDeque<String>,
    skipped: usize,
}

impl Kept {
    fn push(&mut self, line: &str) {
        if self.head.len() < KEPT_LINES {
            self.head.push(line.to_string());
            return;
        }
        if self.tail.len() == KEPT_LINES {
            self.tail.pop_front();
            self.skipped += 1;
        }
        self.tail.push_back(line.to_string());
    }

    fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    fn lines(&self) -> impl Iterator<Item = String> + '_ {
        let gap = (self.skipped > 0).then(|| format!("… {} lines not shown …", self.skipped));
        self.head
            .iter()
            .cloned()
            .chain(gap)
            .chain(self.tail.iter().cloned())
    }
}

impl Ci {
    pub fn new(plain: Plain, flavour: Flavour) -> Ci {
        Ci {
            plain,
            flavour,
            buffered: Mutex::default(),
        }
    }

    fn buffered(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Kept>> {
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
            for line in lines.lines() {
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
                    .insert((host.to_string(), task.to_string()), Kept::default());
                None
            }
            Event::Output {
                host, task, line, ..
            } => {
                if let Some(lines) = self
                    .buffered()
                    .get_mut(&(host.to_string(), task.to_string()))
                {
                    lines.push(line);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_output_keeps_its_first_and_last_lines() {
        let mut kept = Kept::default();
        for i in 0..5000 {
            kept.push(&i.to_string());
        }
        let lines: Vec<String> = kept.lines().collect();
        assert_eq!(lines.len(), 2 * KEPT_LINES + 1);
        assert_eq!(lines[999], "999");
        assert_eq!(lines[1000], "… 3000 lines not shown …");
        assert_eq!(lines[1001], "4000");
        assert_eq!(lines[2000], "4999");
        let mut few = Kept::default();
        few.push("only");
        assert_eq!(few.lines().collect::<Vec<_>>(), ["only"]);
    }
}
