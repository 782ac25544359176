//! The switch, a fleet barrier: every host's `current` moves to its target at once, with its log
//! entries appended in the same command; if any host fails, the hosts that switched go back, so
//! the fleet is never left half-switched.

use futures::future::join_all;

use crate::error::{Error, Result};
use crate::release::switch::{revert_command, switch_command};
use crate::release::{LogEntry, Status};
use crate::report::Event;
use crate::transport::command::Command;
use crate::transport::Outcome;

use super::failure;
use super::host_run::Links;
use super::Fleet;

/// What switching back did: the hosts back where they were (with the release `current` points
/// at again, None: removed), and those that could not be switched back.
#[derive(Default)]
pub(crate) struct Reverted {
    pub back: Vec<(usize, Option<String>)>,
    pub stuck: Vec<usize>,
}

/// Where one host goes: the release, and the log entries that record it.
pub(crate) struct Target {
    pub host: usize,
    pub release: String,
    pub log: Vec<LogEntry>,
}

impl Fleet<'_> {
    /// Switch the hosts `members` to this run's release.
    pub(crate) async fn switch_release(&mut self, task: &str, members: &[usize]) -> Result<()> {
        let targets = members
            .iter()
            .map(|&host| Target {
                host,
                release: self.ctx.release.clone(),
                log: vec![self.ctx.log_entry(Status::Live, true)],
            })
            .collect();
        self.switch(task, targets).await
    }

    /// Switch each host to its target (and append its log entries); if any host fails, switch
    /// the others back. Exit 5 if even that fails.
    pub(crate) async fn switch(&mut self, task: &str, targets: Vec<Target>) -> Result<()> {
        let reporter = self.ctx.reporter;
        for target in &targets {
            self.hosts[target.host].switch_sent = true;
        }
        let hosts = &self.hosts;
        let results = join_all(targets.iter().map(|target| async move {
            let h = &hosts[target.host];
            let mut script =
                switch_command(&h.deploy_path, &target.release, h.state.current.as_deref());
            for entry in &target.log {
                script.push_str(&format!(" && {}", entry.append_command(&h.deploy_path)));
            }
            h.backend
                .run(&h.host.name, &[Command::new(task, script)], reporter)
                .await
        }))
        .await;
        let mut failed = false;
        for (target, results) in targets.iter().zip(results) {
            let host = &mut self.hosts[target.host];
            match results.iter().find(|r| r.failed()) {
                Some(result) => {
                    host.record(failure::of_step(host.name(), result));
                    failed = true;
                }
                // A dry run showed the switch: the host did not move.
                None if results.iter().all(|r| r.outcome == Outcome::Shown) => {}
                None => {
                    host.switched_from = Some(Links {
                        current: host.state.current.clone(),
                        previous: host.state.previous.clone(),
                    });
                    reporter.emit(Event::Switched {
                        host: host.name(),
                        release: &target.release,
                    });
                }
            }
        }
        if failed {
            self.switch_back_after_failed_switch().await?;
        }
        self.check()
    }

    /// Put the hosts that switched back where they were.
    async fn switch_back_after_failed_switch(&mut self) -> Result<()> {
        let everyone: Vec<usize> = (0..self.hosts.len()).collect();
        let reverted = self.switch_back(&everyone, None).await;
        if reverted.stuck.is_empty() {
            return Ok(());
        }
        let problems = reverted
            .stuck
            .iter()
            .map(|&i| {
                format!(
                    "host `{}`: could not be switched back after the failed switch",
                    self.hosts[i].name()
                )
            })
            .collect();
        Err(self.inconsistent(problems).await)
    }

    /// Switch the hosts of `scope` that this run switched back to where their links pointed,
    /// appending `mark` to their log in the same command.
    pub(crate) async fn switch_back(
        &mut self,
        scope: &[usize],
        mark: Option<&LogEntry>,
    ) -> Reverted {
        let reverts = join_all(
            self.hosts
                .iter()
                .enumerate()
                .filter(|(i, _)| scope.contains(i))
                .filter_map(|(i, h)| Some((i, h, h.switched_from.clone()?)))
                .map(|(i, h, before)| {
                    let mut command = revert_command(
                        &h.deploy_path,
                        before.current.as_deref(),
                        before.previous.as_deref(),
                    );
                    if let Some(entry) = mark {
                        command.push_str(&format!(" && {}", entry.append_command(&h.deploy_path)));
                    }
                    async move { (i, h.backend.capture(&command).await, before.current) }
                }),
        )
        .await;
        let mut reverted = Reverted::default();
        for (i, output, current) in reverts {
            let host = &mut self.hosts[i];
            if !output.success() {
                reverted.stuck.push(i);
                continue;
            }
            self.ctx.reporter.emit(Event::RolledBack {
                host: &host.host.name,
                from: &self.ctx.release,
                to: current.as_deref(),
            });
            host.switched_from = None;
            reverted.back.push((i, current));
        }
        reverted
    }

    /// Exit 5: say exactly where each host's `current` points.
    pub(crate) async fn inconsistent(&self, problems: Vec<String>) -> Error {
        let current = join_all(self.hosts.iter().map(|h| async move {
            let output = h
                .backend
                .capture(&format!(
                    "readlink {}/current",
                    crate::quote::quote(&h.deploy_path)
                ))
                .await;
            let points = if output.success() {
                output.stdout.trim().to_string()
            } else {
                "unknown (unreachable)".into()
            };
            (h.host.name.clone(), points)
        }))
        .await;
        Error::Inconsistent { problems, current }
    }
}
