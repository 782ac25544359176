//! CI logs: GitHub Actions and GitLab CI. Each finished task is a collapsible group (section)
//! holding its output; on GitHub a failure also gets an `::error` annotation.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::plain::{failure_reason, Plain};
use super::{Event, Sink};
use crate::transport::{Outcome, StepResult};

/// How many trailing lines of a failed task's output its annotation shows (as its error does).
const ANNOTATION_TAIL: usize = 10;

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

    /// The last `n` lines kept (at most `n`), oldest first.
    fn last(&self, n: usize) -> Vec<&str> {
        let mut last: Vec<&str> = self.tail.iter().rev().take(n).map(String::as_str).collect();
        let more = n.saturating_sub(last.len());
        if more > 0 && self.tail.len() < n {
            last.extend(self.head.iter().rev().take(more).map(String::as_str));
        }
        last.reverse();
        last
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
                Flavour::GitHub => format!("::group::{}\n", escape_data(&header)),
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
            // The annotation is what the run's summary page shows: the reason and the output's tail.
            let mut message = failure_reason(status, reason);
            for line in lines.last(ANNOTATION_TAIL) {
                message.push('\n');
                message.push_str(line);
            }
            // A tolerated failure (`on_failure = "continue"`) did not fail the deploy.
            let level = if result.tolerated { "warning" } else { "error" };
            let title = format!("dep: {} failed on {host}", result.task);
            out.push('\n');
            out.push_str(&annotation(level, &title, &message));
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
                "{}\n{}",
                self.plain.line(event)?,
                annotation("error", &format!("dep: {task} failed on {host}"), message)
            )),
            _ => self.plain.line(event),
        }
    }
}

/// A GitHub workflow command `::LEVEL title=TITLE::MESSAGE`, encoded as the runner decodes it.
fn annotation(level: &str, title: &str, message: &str) -> String {
    format!(
        "::{level} title={}::{}",
        escape_property(title),
        escape_data(message)
    )
}

/// A workflow command's message (actions/toolkit's `escapeData`): a raw line break would end
/// the command there, and `%` starts an escape.
pub(super) fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value (`escapeProperty`): also `:` and `,`, which end it.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_commands_are_encoded() {
        assert_eq!(
            escape_data("100% done\r\nnext: a, b"),
            "100%25 done%0D%0Anext: a, b"
        );
        assert_eq!(escape_property("dep: a,b%"), "dep%3A a%2Cb%25");
        assert_eq!(
            annotation("error", "dep: t failed on h1", "exit status 7\nline 1\n50%"),
            "::error title=dep%3A t failed on h1::exit status 7%0Aline 1%0A50%25"
        );
    }

    fn failed(task: &str, tolerated: bool) -> StepResult {
        StepResult {
            task: task.into(),
            command: "make".into(),
            outcome: Outcome::Failed {
                status: Some(2),
                reason: None,
            },
            duration: std::time::Duration::from_millis(5),
            stdout: String::new(),
            stderr: String::new(),
            tolerated,
            unreachable: false,
        }
    }

    /// The annotation carries the reason and the output's last lines, each line encoded, so
    /// GitHub shows it whole; a tolerated failure is a warning.
    #[test]
    fn a_failed_task_is_annotated_with_its_output_tail() {
        let ci = Ci::new(
            Plain {
                verbosity: 0,
                show_output: false,
            },
            Flavour::GitHub,
        );
        let run = |result: &StepResult, lines: &[&str]| {
            let task = result.task.as_str();
            ci.render(&Event::TaskStarted {
                host: "h1",
                task,
                command: "make",
            });
            for line in lines {
                ci.render(&Event::Output {
                    host: "h1",
                    task,
                    stream: crate::report::Stream::Stderr,
                    line,
                });
            }
            let text = ci
                .render(&Event::TaskFinished { host: "h1", result })
                .unwrap();
            text.lines().last().unwrap().to_string()
        };
        let many: Vec<String> = (1..=12).map(|n| format!("line {n}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let tail: String = (3..=12).map(|n| format!("%0Aline {n}")).collect();
        assert_eq!(
            run(&failed("build", false), &many),
            format!("::error title=dep%3A build failed on h1::exit status 2{tail}")
        );
        assert_eq!(
            run(&failed("warm", true), &["100% cold"]),
            "::warning title=dep%3A warm failed on h1::exit status 2%0A100%25 cold"
        );
        let message = "template line 3:\n  unknown filter";
        let text = ci
            .render(&Event::HostFailed {
                host: "h2",
                task: "deploy:env",
                message,
            })
            .unwrap();
        assert!(
            text.ends_with("\n::error title=dep%3A deploy%3Aenv failed on h2::template line 3:%0A  unknown filter"),
            "{text}"
        );
    }

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
