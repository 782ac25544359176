//! Health checks across the fleet: the `pre_switch` checks against the new release before the
//! switch (a failure is the host's: nothing switches), the `post_switch` checks after it (a
//! failure rolls the fleet back, verified).

use futures::future::join_all;

use crate::error::{Error, Result};
use crate::health::run::Attempts;
use crate::health::Phase;
use crate::report::Event;

use super::failure;
use super::Fleet;

/// A host's failed check: (host, why).
pub(crate) type CheckFailure = (String, String);

const PRE_SWITCH_TASK: &str = "health check (pre_switch)";

impl Fleet<'_> {
    /// Before the switch: the `pre_switch` checks on `members`; a failure fails its host.
    pub(crate) async fn pre_switch_checks(&mut self, members: &[usize]) {
        let failures = self.run_checks(Phase::PreSwitch, members).await;
        for (name, message) in &failures {
            self.ctx.reporter.emit(Event::HostFailed {
                host: name,
                task: PRE_SWITCH_TASK,
                message,
            });
        }
        // A host's last failure is the one it keeps: a dynamic variable that failed (the
        // cause) comes after the checks that could not use it.
        for (name, message) in failures.into_iter().rev() {
            if let Some(host) = self.hosts.iter_mut().find(|h| h.host.name == name) {
                host.record(failure::before_running(&name, PRE_SWITCH_TASK, message));
            }
        }
    }

    /// After the switch and the post-switch tasks: the `post_switch` checks on `members`. If
    /// any fails, the switched hosts (only `members`' with `only_members`) go back to their
    /// previous release, verified the same way: exit 4, or 5 if some host could not be restored.
    pub(crate) async fn verify_switch(
        &mut self,
        members: &[usize],
        only_members: bool,
    ) -> Result<()> {
        let failures = self.run_checks(Phase::PostSwitch, members).await;
        if failures.is_empty() {
            return Ok(());
        }
        let scope: Vec<usize> = if only_members {
            members.to_vec()
        } else {
            (0..self.hosts.len()).collect()
        };
        self.roll_back_switched(&failures, &scope).await?;
        Err(Error::HealthFailed {
            release: self.ctx.release.clone(),
            failures: failures
                .iter()
                .map(|(host, why)| format!("host `{host}`: {why}"))
                .collect(),
        })
    }

    /// Run the checks of `phase` on the healthy hosts of `members`, concurrently; one entry per
    /// failure. The dynamic variables the checks use are evaluated on each host first.
    pub(crate) async fn run_checks(
        &mut self,
        phase: Phase,
        members: &[usize],
    ) -> Vec<CheckFailure> {
        // Every host at once; only the checks that run on the host (its roles) count.
        let evaluations = self
            .hosts
            .iter_mut()
            .enumerate()
            .filter(|(i, h)| members.contains(i) && h.ok())
            .map(|(_, host)| async move {
                let mut needed = Vec::new();
                let checks = host
                    .checks
                    .iter()
                    .filter(|c| c.phase == phase && c.applies_to(&host.host.roles));
                for check in checks {
                    for name in host
                        .vars
                        .dynamic_needed(check.template())
                        .unwrap_or_default()
                    {
                        if !needed.contains(&name) {
                            needed.push(name);
                        }
                    }
                }
                let evaluated = host.evaluate_dynamic("health check", needed).await;
                evaluated
                    .err()
                    .map(|failure| (host.host.name.clone(), failure.reason.unwrap_or_default()))
            });
        let failed: Vec<CheckFailure> = join_all(evaluations).await.into_iter().flatten().collect();
        // A host whose variables could not be evaluated cannot run its checks: that is its one
        // failure, not a second one from checks that could not render.
        let checked: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| !failed.iter().any(|(host, _)| host == self.hosts[i].name()))
            .collect();
        let mut failures = self.run_checks_now(phase, &checked).await;
        failures.extend(failed);
        failures
    }

    async fn run_checks_now(&self, phase: Phase, members: &[usize]) -> Vec<CheckFailure> {
        let reporter = self.ctx.reporter;
        // Before the switch the new release is checked; after it, what `current` serves.
        let cwd_var = match phase {
            Phase::PreSwitch => "release_path",
            Phase::PostSwitch => "current_path",
        };
        let hosts = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| members.contains(i) && h.ok())
            .map(|(_, h)| h);
        let results = join_all(hosts.map(|h| async move {
            let mut failures = Vec::new();
            let checks = h
                .checks
                .iter()
                .filter(|c| c.phase == phase && c.applies_to(&h.host.roles));
            for check in checks {
                let rendered = match h.vars.render(&check.name, check.template()) {
                    Ok(rendered) => rendered,
                    Err(message) => {
                        failures.push(format!("health check `{}`: {message}", check.name));
                        continue;
                    }
                };
                // An unnamed check is called by its URL or command, as the host sees it.
                let label = if check.name == check.template() {
                    &rendered
                } else {
                    &check.name
                };
                let cwd = h.vars.value_string(cwd_var).unwrap_or_default();
                let command = check.command(&rendered, &cwd);
                let attempts = Attempts {
                    backend: &h.backend,
                    host: h.name(),
                    check,
                    label,
                    command: &command,
                };
                if let Err(why) = attempts.run(reporter).await {
                    failures.push(format!("health check `{label}` failed: {why}"));
                }
            }
            (h.host.name.clone(), failures)
        }))
        .await;
        results
            .into_iter()
            .flat_map(|(host, failures)| failures.into_iter().map(move |f| (host.clone(), f)))
            .collect()
    }
}
