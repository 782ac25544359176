//! The scheduler: runs a list of steps on a set of hosts. Consecutive host-side steps form a
//! segment that every host runs back to back, as one script, without waiting for the others;
//! hosts meet only at barriers (`once`, `local` and `barrier` tasks, the lock, the switch, the
//! rollback), where the fleet's failures are checked first.

use std::sync::Arc;

use futures::future::join_all;
use tracing::Instrument as _;

use crate::config::deployfile::OutputCheck;
use crate::error::{Error, Result, StepFailure};
use crate::migration::Policy;
use crate::plan::task::{Action, Builtin, Task};
use crate::transport::command::Command;
use crate::transport::Outcome;

use super::context::{Context, Mode};
use super::host_run::HostRun;
use super::render::{self, Packing};
use super::{failure, Fleet};

impl Fleet<'_> {
    /// Run `plan` on the hosts `members` (indices into the fleet), meeting at its barriers.
    pub(crate) async fn execute(&mut self, plan: &[Arc<Task>], members: &[usize]) -> Result<()> {
        let mut index = 0;
        while index < plan.len() {
            let task = &plan[index];
            if task.is_barrier() && task.action != Action::Builtin(Builtin::Unlock) {
                self.check()?;
                self.barrier(task, members).await?;
                index += 1;
                continue;
            }
            if task.action == Action::Builtin(Builtin::Unlock) {
                self.check()?;
            }
            // The unlock starts a segment: each host unlocks and goes on with what follows
            // (cleanup) in the same script.
            let end = plan[index + 1..]
                .iter()
                .position(|t| t.is_barrier())
                .map_or(plan.len(), |p| index + 1 + p);
            self.segment(&plan[index..end], members).await;
            index = end;
        }
        self.check()
    }

    /// Run `plan` on every host of `members`, failed or not (a failed batch still goes back
    /// into the load balancer); each host keeps its first failure, the cause.
    pub(crate) async fn execute_regardless(
        &mut self,
        plan: &[Arc<Task>],
        members: &[usize],
    ) -> Result<()> {
        let earlier: Vec<Option<StepFailure>> =
            self.hosts.iter_mut().map(|h| h.failure.take()).collect();
        let result = self.execute(plan, members).await;
        for (host, earlier) in self.hosts.iter_mut().zip(earlier) {
            if earlier.is_some() {
                host.failure = earlier;
            }
        }
        result
    }

    /// Every healthy host of `members` runs `tasks` back to back, concurrently with the others.
    pub(crate) async fn segment(&mut self, tasks: &[Arc<Task>], members: &[usize]) {
        let ctx = &self.ctx;
        join_all(
            self.hosts
                .iter_mut()
                .enumerate()
                .filter(|(i, h)| members.contains(i) && h.ok())
                .map(|(_, host)| {
                    let span = tracing::debug_span!("segment", host = %host.host.name);
                    async move {
                        let _permit = ctx.parallel.acquire().await;
                        if let Err(failure) = run_on_host(ctx, host, tasks).await {
                            host.record(failure);
                        }
                    }
                    .instrument(span)
                }),
        )
        .await;
    }

    async fn barrier(&mut self, task: &Arc<Task>, members: &[usize]) -> Result<()> {
        tracing::debug!(task = %task.name, hosts = members.len(), "barrier");
        match task.action {
            Action::Builtin(Builtin::Lock) => {
                self.lock_all(&task.name).await?;
                super::code::resolve_pending(&mut self.ctx, &mut self.hosts).await?;
                if self.ctx.mode == Mode::Deploy {
                    self.notify(crate::notify::Trigger::Start, None).await;
                }
                Ok(())
            }
            Action::Builtin(Builtin::Symlink) => {
                self.pre_switch_checks(members).await;
                self.check()?;
                self.switch_release(&task.name, members).await
            }
            Action::Builtin(Builtin::Rollback) => self.rollback_all(task).await,
            _ if (task.local || task.once) && self.once_done.contains(&task.name) => Ok(()),
            _ if task.local => {
                let Some(&first) = members.first() else {
                    return Ok(());
                };
                self.once_done.insert(task.name.clone());
                let mut controller = HostRun::controller(&self.hosts[first], self.ctx.dry_run());
                self.controller_failure =
                    run_on_host(&self.ctx, &mut controller, std::slice::from_ref(task))
                        .await
                        .err();
                Ok(())
            }
            _ if task.once => {
                let ctx = &self.ctx;
                let first = self
                    .hosts
                    .iter_mut()
                    .enumerate()
                    .find(|(i, h)| members.contains(i) && task.applies_to(&h.host.roles));
                // Done once it ran: its role may be on a later batch's hosts only.
                if let Some((_, host)) = first {
                    self.once_done.insert(task.name.clone());
                    if let Err(failure) = run_on_host(ctx, host, std::slice::from_ref(task)).await {
                        host.record(failure);
                    }
                }
                Ok(())
            }
            _ => {
                self.segment(std::slice::from_ref(task), members).await;
                Ok(())
            }
        }
    }

    /// All failures so far, as one error, or Ok if every host is fine.
    pub(crate) fn check(&self) -> Result<()> {
        let mut failures: Vec<StepFailure> = self
            .hosts
            .iter()
            .filter_map(|h| h.failure.clone())
            .collect();
        failures.extend(self.controller_failure.clone());
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Fleet(failures))
        }
    }
}

/// Run `tasks` on one host: commands travel in as few scripts as possible, split only where a
/// dynamic variable must be evaluated first (it may depend on what earlier steps did).
async fn run_on_host(
    ctx: &Context<'_>,
    host: &mut HostRun,
    tasks: &[Arc<Task>],
) -> std::result::Result<(), StepFailure> {
    let mut pending = Pending::default();
    let roles = host.host.roles.clone();
    for task in tasks.iter().filter(|t| t.applies_to(&roles)) {
        tracing::trace!(host = %host.host.name, task = %task.name, "rendering");
        let needed =
            render::dynamic_needed(task, &host.vars).map_err(|e| reported(ctx, host, task, e))?;
        if !needed.is_empty() {
            pending.flush(ctx, host).await?;
            host.evaluate_dynamic(&task.name, needed)
                .await
                .map_err(|f| report(ctx, f))?;
        }
        let fetched = render::fetch(ctx, task, host, Packing::Pack)
            .await
            .map_err(|e| reported(ctx, host, task, e))?;
        let commands = render::commands_for(ctx, task, host, &fetched)
            .map_err(|e| reported(ctx, host, task, e))?;
        pending.commands.extend(commands);
        pending.unlocks |= task.action == Action::Builtin(Builtin::Unlock);
        if let Some(check) = task.check_output {
            let policy = super::output_check::policy(&host.vars).map_err(|message| {
                report(
                    ctx,
                    failure::before_running(host.name(), &task.name, message),
                )
            })?;
            pending.checks.push((task.name.clone(), check, policy));
        }
    }
    pending.flush(ctx, host).await
}

/// Commands rendered but not sent yet.
#[derive(Default)]
struct Pending {
    commands: Vec<Command>,
    /// They release the lock.
    unlocks: bool,
    /// Tasks whose output dep checks once they ran (`check_output`).
    checks: Vec<(String, OutputCheck, Policy)>,
}

impl Pending {
    /// Send the pending commands as one run; the first failed command is the host's failure.
    async fn flush(
        &mut self,
        ctx: &Context<'_>,
        host: &mut HostRun,
    ) -> std::result::Result<(), StepFailure> {
        if self.commands.is_empty() {
            return Ok(());
        }
        let commands = std::mem::take(&mut self.commands);
        let results = host
            .backend
            .run(&host.host.name, &commands, ctx.reporter)
            .await;
        if let Some(failed) = results.iter().find(|r| r.failed()) {
            return Err(failure::of_step(host.name(), failed));
        }
        for (task, check, policy) in std::mem::take(&mut self.checks) {
            let ran = results
                .iter()
                .filter(|r| r.task == task && r.outcome == Outcome::Ok);
            for result in ran {
                let shown = super::output_check::shown(check, &result.stdout);
                if !shown.is_empty() {
                    ctx.reporter.emit(crate::report::Event::Migrations {
                        host: host.name(),
                        task: &task,
                        migrations: &shown,
                    });
                }
                if let Err(message) = super::output_check::check(check, &result.stdout, &policy) {
                    return Err(report(
                        ctx,
                        failure::before_running(host.name(), &task, message),
                    ));
                }
            }
        }
        if std::mem::take(&mut self.unlocks) {
            host.locked = false;
        }
        Ok(())
    }
}

/// A failure found before a command ran: reported now, since no task result will show it.
fn reported(
    ctx: &Context<'_>,
    host: &HostRun,
    task: &Task,
    error: render::RenderError,
) -> StepFailure {
    report(
        ctx,
        failure::before_running(host.name(), &task.name, error.to_string()),
    )
}

fn report(ctx: &Context<'_>, failure: StepFailure) -> StepFailure {
    let message = failure.reason.clone().unwrap_or_default();
    ctx.reporter.emit(crate::report::Event::HostFailed {
        host: &failure.host,
        task: &failure.task,
        message: &message,
    });
    failure
}
