//! The switch, a fleet barrier: every host's `current` moves to its target at once, with its log
//! entries appended in the same command; if any host fails, the hosts that switched go back, so
//! the fleet is never left half-switched.

use std::time::Duration;

use futures::future::join_all;

use crate::config::vars::Vars;
use crate::error::{Error, Result};
use crate::release::switch::{arm_command, disarm_command, revert_command, switch_command};
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

/// Where one host goes: the release, the log entries that record it, and those that undo them
/// (written by the host's dead man's switch if it fires).
pub(crate) struct Target {
    pub host: usize,
    pub release: String,
    pub log: Vec<LogEntry>,
    pub undo: Vec<LogEntry>,
}

impl Fleet<'_> {
    /// Switch the hosts `members` to this run's release.
    pub(crate) async fn switch_release(&mut self, task: &str, members: &[usize]) -> Result<()> {
        let targets = members
            .iter()
            .map(|&host| {
                // Should the guard fire, the release it switched to is recorded as rolled back.
                let mut undone = self.ctx.log_entry(Status::RolledBack, false);
                undone.finished_at = None;
                Target {
                    host,
                    release: self.ctx.release.clone(),
                    log: vec![self.ctx.log_entry(Status::Live, true)],
                    undo: vec![undone],
                }
            })
            .collect();
        self.switch(task, targets).await
    }

    /// Switch each host to its target (and append its log entries); if any host fails, switch
    /// the others back. Exit 5 if even that fails. Each host arms a dead man's switch first,
    /// which the fleet disarms once every host switched: a host the confirmation never reaches
    /// (the controller died half-way) puts its links back by itself.
    pub(crate) async fn switch(&mut self, task: &str, targets: Vec<Target>) -> Result<()> {
        // Ctrl-C waits for this to end: dropped half way, it would leave the fleet half switched.
        let _shield = self.ctx.interrupts.shield();
        // An interrupt that came before this switch began: it does not begin.
        self.ctx.interrupts.check()?;
        let reporter = self.ctx.reporter;
        let rolling_back = self.ctx.mode == super::context::Mode::Rollback;
        let guard = self.switch_guard(task)?;
        for target in &targets {
            self.hosts[target.host].switch_sent = true;
        }
        let hosts = &self.hosts;
        let guard_ref = &guard;
        let results = join_all(targets.iter().map(|target| async move {
            let h = &hosts[target.host];
            let mut script = String::new();
            if let Some((id, seconds)) = guard_ref {
                let revert = revert_command(
                    &h.deploy_path,
                    h.state.current.as_deref(),
                    h.state.previous.as_deref(),
                );
                let log = if target.undo.is_empty() {
                    "true".to_string()
                } else {
                    target
                        .undo
                        .iter()
                        .map(|entry| entry.append_command(&h.deploy_path))
                        .collect::<Vec<_>>()
                        .join(" && ")
                };
                script = arm_command(&h.deploy_path, id, *seconds, &target.release, &revert, &log);
                script.push_str(" && ");
            }
            script.push_str(&switch_command(
                &h.deploy_path,
                &target.release,
                h.state.current.as_deref(),
            ));
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
                        rollback: rolling_back,
                    });
                }
            }
        }
        if !failed {
            if let Some((id, _)) = &guard {
                // A host that missed the confirmation would go back by itself: the whole fleet
                // goes back now instead.
                failed = !self.confirm_switch(task, &targets, id).await;
            }
        }
        if failed {
            // Hosts switched back need no guard; one that could not be keeps it, and goes back
            // by itself.
            self.switch_back_after_failed_switch().await?;
        }
        self.check()
    }

    /// The id and the delay of this switch's dead man's switch (`switch_confirm_timeout`, from
    /// the first host's variables; "0" turns it off, and a dry run arms nothing).
    fn switch_guard(&self, task: &str) -> Result<Option<(String, u64)>> {
        let Some(first) = self.hosts.first() else {
            return Ok(None);
        };
        if first.backend.is_dry_run() {
            return Ok(None);
        }
        let delay = confirm_delay(&first.vars).map_err(|reason| {
            Error::Fleet(vec![failure::before_running(first.name(), task, reason)])
        })?;
        Ok(delay.map(|delay| {
            let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
            (crate::transport::script::token(), seconds)
        }))
    }

    /// `switch_confirm_timeout` is read at the switch: a bad value is refused before anything
    /// runs, not after every host prepared.
    pub(crate) fn check_switch_guard(&self) -> Result<()> {
        let Some(first) = self.hosts.first() else {
            return Ok(());
        };
        confirm_delay(&first.vars)
            .map(|_| ())
            .map_err(|message| Error::InvalidHost {
                host: first.name().to_string(),
                message,
            })
    }

    /// Tell every switched host that the whole fleet switched: its guard stands down. False
    /// when a host did not take the confirmation (it is recorded as that host's failure).
    async fn confirm_switch(&mut self, task: &str, targets: &[Target], id: &str) -> bool {
        let reporter = self.ctx.reporter;
        let hosts = &self.hosts;
        let confirmations = targets.iter().map(|target| {
            let h = &hosts[target.host];
            let command = disarm_command(&h.deploy_path, id);
            async move {
                let output = h.backend.change(h.name(), task, &command, reporter).await;
                (target.host, command, output)
            }
        });
        let mut confirmed = true;
        for (host, command, output) in join_all(confirmations).await {
            if let Some(output) = output.filter(|o| !o.success()) {
                let h = &mut self.hosts[host];
                let mut failure = failure::of_capture(h.name(), task, &command, &output);
                failure.reason = Some(format!(
                    "the switch confirmation failed: {}",
                    failure.reason.take().unwrap_or_else(|| "no answer".into())
                ));
                h.record(failure);
                confirmed = false;
            }
        }
        confirmed
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
        // Ctrl-C waits for this to end: dropped half way, it would leave the fleet half switched.
        let _shield = self.ctx.interrupts.shield();
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

    /// Exit 5: say exactly where each host's `current` points (and where each blue-green
    /// router sends the traffic).
    pub(crate) async fn inconsistent(&self, problems: Vec<String>) -> Error {
        let current = join_all(self.hosts.iter().enumerate().map(|(i, h)| async move {
            if let Some(routing) = self.routing(i) {
                return (h.host.name.clone(), routing);
            }
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
            (h.host.name.clone(), format!("current -> {points}"))
        }))
        .await;
        Error::Inconsistent { problems, current }
    }
}

/// The dead man's switch delay `switch_confirm_timeout` asks for (None: off, or not set).
fn confirm_delay(vars: &Vars) -> std::result::Result<Option<Duration>, String> {
    const VAR: &str = "switch_confirm_timeout";
    if vars.get(VAR).is_none() {
        return Ok(None);
    }
    let bad = |reason: String| format!("`{VAR}`: {reason}");
    let text = vars.value_string(VAR).map_err(|e| bad(e.to_string()))?;
    let delay = crate::config::deployfile::parse_duration(&text).map_err(|e| bad(e.to_string()))?;
    Ok(Some(delay).filter(|d| !d.is_zero()))
}
