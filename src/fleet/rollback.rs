//! Going back: the automatic rollback of switched hosts after a failed check or batch (verified
//! with the same checks), and `dep rollback`'s barrier (every host to one older live release,
//! or nothing changes).

use crate::error::{Error, Result, StepFailure};
use crate::plan::task::Task;
use crate::release::{self, LogEntry, Status};
use crate::report::Event;

use super::checks::CheckFailure;
use super::switch::Target;
use super::Fleet;

impl Fleet<'_> {
    /// Put every switched host of `scope` back on the release it had, re-run the post-switch
    /// tasks there, verify with the same checks; mark the new release failed. Exit 5
    /// (`Inconsistent`) when some host could not be restored or does not pass its checks.
    pub(crate) async fn roll_back_switched(
        &mut self,
        reasons: &[CheckFailure],
        scope: &[usize],
    ) -> Result<()> {
        // Ctrl-C waits for this to end: dropped half way, it would leave the fleet half switched.
        let _shield = self.ctx.interrupts.shield();
        if self.traffic.is_some_and(|t| t.from.is_some()) {
            return self.send_traffic_back(reasons, scope).await;
        }
        // A host that failed after its switch (a post-switch task) goes back too, and runs the
        // post-switch tasks again: that failure is why, not a sign the old release is unhealthy.
        let mut after_switch: Vec<(usize, StepFailure)> = Vec::new();
        for &i in scope {
            let host = &mut self.hosts[i];
            if host.switched_from.is_some() {
                if let Some(failure) = host.failure.take() {
                    after_switch.push((i, failure));
                }
            }
        }
        // Blue-green, the first deploy: no color was live; the routers forget this one.
        let traffic_problems = self.restore_traffic().await;
        let (restored, stuck) = self.revert(scope).await;
        // The restored hosts run their post-switch tasks again and must pass the same checks.
        if let Ok(post_switch) = self.ctx.tasks.post_switch() {
            self.segment(&post_switch, &restored).await;
        }
        let mut unhealthy: Vec<CheckFailure> = restored
            .iter()
            .filter_map(|&i| {
                let h = &self.hosts[i];
                Some((h.host.name.clone(), h.failure.as_ref()?.after_host()))
            })
            .collect();
        unhealthy.extend(
            self.run_checks(crate::health::Phase::PostSwitch, &restored)
                .await,
        );
        for (i, failure) in after_switch {
            self.hosts[i].record(failure);
        }
        if stuck.is_empty() && unhealthy.is_empty() && traffic_problems.is_empty() {
            let hosts: Vec<String> = restored
                .iter()
                .map(|&i| self.hosts[i].host.name.clone())
                .collect();
            self.ctx
                .reporter
                .emit(Event::RollbackVerified { hosts: &hosts });
            return Ok(());
        }
        let mut after = unhealthy.clone();
        after.extend(traffic_problems.iter().cloned());
        self.ctx.reporter.emit(Event::RollbackUnverified {
            release: &self.ctx.release,
            failures: reasons,
            after: &after,
        });
        let mut problems: Vec<String> = stuck
            .iter()
            .map(|host| {
                format!("host `{host}`: could not be switched back to its previous release")
            })
            .collect();
        problems.extend(super::traffic::named(&traffic_problems));
        problems.extend(unhealthy.iter().map(|(host, why)| {
            format!("host `{host}`: switched back, but the previous release is not healthy either: {why}")
        }));
        Err(self.inconsistent(problems).await)
    }

    /// Switch the hosts of `scope` that this run switched back, marking the release failed
    /// there: the indices of the hosts restored to a release, and the names of those stuck.
    async fn revert(&mut self, scope: &[usize]) -> (Vec<usize>, Vec<String>) {
        let failed = self.ctx.log_entry(Status::Failed, true);
        let reverted = self.switch_back(scope, Some(&failed)).await;
        let mut restored = Vec::new();
        for (i, current) in reverted.back {
            if let Some(current) = current {
                self.hosts[i].vars.set("release_name", current);
                restored.push(i);
            }
        }
        let stuck = reverted
            .stuck
            .iter()
            .map(|&i| self.hosts[i].host.name.clone())
            .collect();
        (restored, stuck)
    }

    /// The rollback barrier: all hosts to one older live release (or `--to`), or nothing changes.
    pub(crate) async fn rollback_all(&mut self, task: &Task) -> Result<()> {
        let target = self.rollback_target()?;
        let targets: Vec<Target> =
            self.hosts
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let abandoned = self.abandoned_entry(h);
                    let restored = restored_entry(h, &target);
                    // Should the guard fire, the abandoned release is live again, and the target
                    // has the status it had.
                    // (its line as it was, times included)
                    let was =
                        h.state.current.as_deref().and_then(|current| {
                            h.state.statuses().get(current).map(|e| (*e).clone())
                        });
                    let mut undo = vec![LogEntry {
                        status: Status::Live,
                        ..was.unwrap_or_else(|| abandoned.clone())
                    }];
                    undo.extend(restored.as_ref().and_then(|_| {
                        h.state
                            .statuses()
                            .get(target.as_str())
                            .map(|e| (*e).clone())
                    }));
                    Target {
                        host: i,
                        release: target.clone(),
                        log: std::iter::once(abandoned).chain(restored).collect(),
                        undo,
                    }
                })
                .collect();
        self.switch(&task.name, targets).await?;
        for h in &mut self.hosts {
            let from = h.state.current.clone().unwrap_or_default();
            if h.switched_from.is_none() {
                // A dry run: the switch was shown, not made.
                self.ctx.reporter.emit(Event::WouldRollBack {
                    host: &h.host.name,
                    from: &from,
                    to: &target,
                });
            } else {
                self.ctx.reporter.emit(Event::RolledBack {
                    host: &h.host.name,
                    from: &from,
                    to: Some(&target),
                });
            }
            h.set_release(&target, &from);
        }
        self.ctx.release = target;
        Ok(())
    }

    /// The one release every host goes back to, or why the rollback is refused.
    fn rollback_target(&self) -> Result<String> {
        let to = self.ctx.options.rollback_to.as_deref();
        let mut problems = Vec::new();
        let mut chosen: Vec<String> = Vec::new();
        for h in &self.hosts {
            match h.state.rollback_target(to) {
                Ok(target) => chosen.push(target),
                Err(reason) => problems.push(format!("host `{}`: {reason}", h.host.name)),
            }
        }
        if problems.is_empty() {
            let mut distinct = chosen.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() > 1 {
                for (h, target) in self.hosts.iter().zip(&chosen) {
                    problems.push(format!("host `{}` would go to {target}", h.host.name));
                }
                problems.push(
                    "hosts disagree on the release to go back to; choose one with `--to RELEASE`"
                        .into(),
                );
            }
        }
        if !problems.is_empty() {
            return Err(Error::Refused(format!(
                "rollback refused, nothing was changed:\n  {}",
                problems.join("\n  ")
            )));
        }
        chosen
            .into_iter()
            .next()
            .ok_or_else(|| Error::Refused("rollback refused: no host selected".into()))
    }

    /// The log entry that marks the release a host leaves `rolled_back`.
    pub(crate) fn abandoned_entry(&self, host: &super::host_run::HostRun) -> LogEntry {
        let abandoned = host.state.current.clone().unwrap_or_default();
        let statuses = host.state.statuses();
        let mut entry = statuses
            .get(abandoned.as_str())
            .map(|e| (*e).clone())
            .unwrap_or_else(|| LogEntry {
                release: abandoned.clone(),
                status: Status::RolledBack,
                revision: None,
                branch: None,
                user: self.ctx.who.clone(),
                started_at: String::new(),
                finished_at: None,
                sha256: None,
                promoted_from: None,
            });
        entry.status = Status::RolledBack;
        entry.finished_at = Some(release::now_rfc3339());
        entry
    }
}

/// A release `dep rollback --to` brings back whose last line is not `live` (it was rolled back
/// or failed before) goes live again: its log says so, or the next rollback would not count it.
fn restored_entry(host: &super::host_run::HostRun, target: &str) -> Option<LogEntry> {
    let statuses = host.state.statuses();
    let last = statuses.get(target)?;
    if last.status == Status::Live {
        return None;
    }
    let mut entry = (*last).clone();
    entry.status = Status::Live;
    entry.finished_at = Some(release::now_rfc3339());
    Some(entry)
}
