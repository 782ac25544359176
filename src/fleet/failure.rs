//! Turning what a transport reported into a `StepFailure`: the host, the task, the command, its
//! status and the tail of its output.

use std::time::Duration;

use crate::error::StepFailure;
use crate::transport::{Outcome, Output, StepResult};

/// How many trailing lines of a failed command's output its failure shows.
const TAIL: usize = 10;

/// A failure found before any command ran (a template, a dynamic variable, an upload).
pub fn before_running(host: &str, task: &str, reason: String) -> StepFailure {
    StepFailure {
        host: host.to_string(),
        task: task.to_string(),
        command: String::new(),
        status: None,
        reason: Some(reason),
        stderr_tail: String::new(),
        unreachable: false,
        disk_full: None,
    }
}

/// A task's command that failed.
pub fn of_step(host: &str, result: &StepResult) -> StepFailure {
    let (status, reason) = match &result.outcome {
        Outcome::Failed { status, reason } => (*status, reason.clone()),
        _ => (None, None),
    };
    let tail = if result.stderr.trim().is_empty() {
        &result.stdout
    } else {
        &result.stderr
    };
    StepFailure {
        host: host.to_string(),
        task: result.task.clone(),
        command: result.command.clone(),
        status,
        reason,
        stderr_tail: last_lines(tail, TAIL),
        unreachable: result.unreachable,
        disk_full: None,
    }
}

/// An internal command (lock, state read, dynamic variable) that failed.
pub fn of_capture(host: &str, task: &str, command: &str, output: &Output) -> StepFailure {
    StepFailure {
        host: host.to_string(),
        task: task.to_string(),
        command: command.to_string(),
        status: output.status,
        reason: output.reason.clone(),
        stderr_tail: last_lines(&output.stderr, TAIL),
        unreachable: output.unreachable,
        disk_full: None,
    }
}

/// What a command prints when the disk it writes to is full (ENOSPC's message).
const NO_SPACE: &str = "No space left on device";

/// Whether `failure` ran out of disk space, by what its command printed last.
pub fn ran_out_of_space(failure: &StepFailure) -> bool {
    failure.stderr_tail.contains(NO_SPACE)
        || failure
            .reason
            .as_deref()
            .is_some_and(|r| r.contains(NO_SPACE))
}

/// The result of an internal command that succeeded, reported like a task's.
pub fn ok_result(task: &str, command: &str, duration: Duration) -> StepResult {
    StepResult {
        task: task.to_string(),
        command: command.to_string(),
        outcome: Outcome::Ok,
        duration,
        stdout: String::new(),
        stderr: String::new(),
        tolerated: false,
        unreachable: false,
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_keeps_the_last_lines_of_stderr_else_stdout() {
        let result = |stdout: &str, stderr: &str| StepResult {
            task: "build".into(),
            command: "make".into(),
            outcome: Outcome::Failed {
                status: Some(2),
                reason: None,
            },
            duration: Duration::ZERO,
            stdout: stdout.into(),
            stderr: stderr.into(),
            tolerated: false,
            unreachable: false,
        };
        let many: String = (1..=12).map(|i| format!("line {i}\n")).collect();
        let failure = of_step("web1", &result("out", &many));
        assert_eq!(failure.status, Some(2));
        assert_eq!(failure.stderr_tail.lines().count(), 10);
        assert!(failure.stderr_tail.starts_with("line 3\n"));
        assert_eq!(
            of_step("web1", &result("only stdout", " ")).stderr_tail,
            "only stdout"
        );
    }
}
