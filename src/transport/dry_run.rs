//! The dry-run backend: prints, for each host, the exact commands in order; runs nothing.

use std::time::Duration;

use super::command::Command;
use super::{Observer, Outcome, StepResult};

/// Prints instead of running; reads (the hosts' state) still go to the real backend, if any,
/// so a dry run shows what would really happen (the real next release, rollback's target).
#[derive(Default)]
pub struct DryRun {
    pub reads: Option<Box<super::Backend>>,
}

impl DryRun {
    pub fn run(&self, host: &str, batch: &[Command], observer: &dyn Observer) -> Vec<StepResult> {
        batch
            .iter()
            .map(|command| {
                let mut shown = command.shell();
                if let Some(condition) = &command.condition {
                    shown = format!("if {}; then {shown}; fi", condition.trim());
                }
                if let Some(stdin) = &command.stdin {
                    shown = format!("{shown}  # with {} bytes on stdin", stdin.len());
                }
                observer.dry_run(host, &command.task, &shown);
                StepResult {
                    task: command.task.clone(),
                    command: shown,
                    outcome: Outcome::Shown,
                    duration: Duration::ZERO,
                    stdout: String::new(),
                    stderr: String::new(),
                    tolerated: false,
                    unreachable: false,
                }
            })
            .collect()
    }
}
