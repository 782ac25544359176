//! `dep deploy`: resolve the code, render every step, then take the fleet through the deploy's
//! phases as the strategy orders them. A failed phase ends the deploy: hosts the switch never
//! reached remove the release (it never went live) and mark it `failed`, every lock is
//! released, the team is told, and the error says why.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::notify::Trigger;
use crate::plan::task::Task;
use crate::release::{self, Status};
use crate::report::Event;

use super::context::Mode;
use super::phases::{Deploy, DeployPlan};
use super::strategy::Strategy;
use super::Fleet;

impl Fleet<'_> {
    /// `dep deploy`: resolve the code, check every step renders, then deploy as the strategy says.
    pub async fn deploy(&mut self) -> Result<()> {
        super::one_place_each(&self.hosts)?;
        let plan = DeployPlan::compile(self.ctx.tasks)?;
        self.ctx.mode = Mode::Deploy;
        let started = Instant::now();
        self.started = started;
        self.load_webhooks()?;
        let on_post_switch_failure = self.on_post_switch_failure()?;
        let strategy = Strategy::choose(self)?;
        self.check_switch_guard()?;
        super::code::resolve(&mut self.ctx, &mut self.hosts).await?;
        let steps: Vec<Arc<Task>> = plan.steps().cloned().collect();
        self.preflight(&steps).await?;
        let interrupts = Arc::clone(&self.ctx.interrupts);
        let reporter = self.ctx.reporter;
        let result = {
            let mut deploy = Deploy::new(self, plan, on_post_switch_failure);
            tokio::select! {
                result = strategy.run(&mut deploy) => result,
                () = interrupts.requested(reporter) => Err(Error::Interrupted),
            }
        };
        if matches!(result, Err(Error::Interrupted)) {
            super::interrupt::Interrupts::exit_on_next_signal();
        }
        if result.is_err() {
            self.abandon().await;
        }
        // Interrupted inside a batch: its hosts go back into rotation all the same.
        if let Some((batch, hooks)) = self.batch_out.take() {
            let _ = self.execute_regardless(&hooks, &batch).await;
        }
        let result = if self.ctx.interrupts.forced() {
            Err(self.stopped_mid_switch().await)
        } else {
            self.still_live(result)
        };
        self.unlock_remaining().await;
        self.tell(&result).await;
        let release = self.ctx.release.clone();
        if self.ctx.dry_run() {
            self.ctx
                .reporter
                .emit(Event::DryRunFinished { release: &release });
        } else if !matches!(result, Err(Error::LockHeld(_))) {
            self.ctx.reporter.emit(Event::DeployFinished {
                release: &release,
                ok: result.is_ok(),
                live: self.hosts.iter().any(|h| h.switched_from.is_some()),
                duration: started.elapsed(),
            });
        }
        result
    }

    /// A second interrupt stopped the run during a switch: only the hosts' links say where they
    /// are (exit 5, each host's `current` named).
    pub(crate) async fn stopped_mid_switch(&self) -> Error {
        self.inconsistent(vec![
            "the run was stopped during a switch (a second interrupt): each host is where the switch left it; \
             one that switched without the fleet's confirmation goes back by itself within `switch_confirm_timeout`"
                .to_string(),
        ])
        .await
    }

    /// Failures after some hosts switched (a post-switch task, Ctrl-C during the checks or the
    /// watch window) leave the release live there: the error says where.
    fn still_live(&self, result: Result<()>) -> Result<()> {
        let live: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| h.switched_from.is_some())
            .map(|h| h.host.name.clone())
            .collect();
        match result {
            // Blue-green, stopped before the traffic moved: the switched color takes none.
            Err(Error::Interrupted)
                if !live.is_empty() && self.blue_green() && self.traffic.is_none() =>
            {
                Err(Error::Local(format!(
                    "deploy interrupted before the traffic switch: the traffic goes where it went; \
                     {} hold release {} and take none (the next deploy goes to them again)",
                    live.join(", "),
                    self.ctx.release
                )))
            }
            Err(Error::Fleet(failures)) if !live.is_empty() => Err(Error::StillLive {
                release: self.ctx.release.clone(),
                everywhere: live.len() == self.hosts.len(),
                hosts: live,
                failures,
            }),
            Err(Error::Interrupted) if !live.is_empty() => Err(Error::InterruptedLive {
                release: self.ctx.release.clone(),
                everywhere: live.len() == self.hosts.len(),
                hosts: live,
            }),
            Err(Error::Interrupted)
                if !self.ctx.dry_run() && self.hosts.iter().any(|h| h.switch_sent) =>
            {
                Err(Error::InterruptedSwitchedBack {
                    release: self.ctx.release.clone(),
                })
            }
            other => other,
        }
    }

    /// After a failed deploy: where the release was created and never switched, it is removed
    /// and marked failed; where the switch reached it (it is or was live), it stays and was
    /// marked already; where it stays live, say so.
    async fn abandon(&mut self) {
        let failed = self.ctx.log_entry(Status::Failed, true);
        let release = self.ctx.release.clone();
        futures::future::join_all(
            self.hosts
                .iter()
                // Stopped mid-switch: a host the switch reached may be on the release, whatever
                // the run recorded; it is left as it is.
                .filter(|h| !(self.ctx.interrupts.forced() && h.switch_sent))
                .filter(|h| h.locked && h.switched_from.is_none() && !h.bystander)
                .map(|h| {
                    let command = if h.switch_sent {
                        format!(
                            "if [ -d {dp}/releases/{r} ]; then {append}; fi",
                            dp = crate::quote::quote(&h.deploy_path),
                            r = crate::quote::quote(&release),
                            append = failed.append_command(&h.deploy_path)
                        )
                    } else {
                        release::cleanup::discard_command(&h.deploy_path, &release, &failed)
                    };
                    async move { h.backend.capture(&command).await }
                }),
        )
        .await;
        let live: Vec<&str> = self
            .hosts
            .iter()
            .filter(|h| h.switched_from.is_some())
            .map(|h| h.name())
            .collect();
        if live.is_empty() {
            return;
        }
        self.ctx.reporter.emit(Event::StillLive {
            release: &release,
            hosts: &live,
            everywhere: live.len() == self.hosts.len(),
        });
    }

    /// Notify the team of how the deploy ended (nothing when it never took the lock).
    async fn tell(&self, result: &Result<()>) {
        match result {
            Ok(()) => self.notify(Trigger::Success, None).await,
            Err(Error::LockHeld(_)) => {}
            Err(
                error @ (Error::HealthFailed { .. }
                | Error::PostSwitchFailed { .. }
                | Error::WatchRolledBack { .. }),
            ) => {
                self.notify(Trigger::Rollback, Some(error.to_string()))
                    .await
            }
            Err(error) => self.notify(Trigger::Failure, Some(error.to_string())).await,
        }
    }
}
