//! The deploy's phases, as a state machine: started → locked → prepared → switched → verified →
//! done, each transition one method of `Deploy`, run for the whole fleet or batch by batch as the
//! strategy decides (`fleet::deploy` starts it and ends it).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::plan::task::{Action, Builtin, Task};
use crate::plan::TaskSet;

use super::post_switch::OnPostSwitchFailure;
use super::Fleet;

/// Where a deploy stands (for the batch being deployed, in a rolling or canary deploy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Started,
    /// Every host is locked and the release has its name.
    Locked,
    /// The release is prepared on the batch's hosts.
    Prepared,
    /// The batch's hosts serve the new release and ran the post-switch tasks.
    Switched,
    /// The batch passed its post-switch health checks.
    Verified,
    /// Unlocked and cleaned up.
    Done,
}

/// The `deploy` task's steps, cut at the fleet-wide ones.
pub struct DeployPlan {
    /// Up to and including `deploy:lock`.
    lock: Vec<Arc<Task>>,
    /// After the lock, before the switch.
    prepare: Vec<Arc<Task>>,
    /// `deploy:symlink` and the post-switch tasks after it, up to the unlock.
    switch: Vec<Arc<Task>>,
    /// `deploy:unlock` and what follows (tag, cleanup).
    finish: Vec<Arc<Task>>,
    /// Around each batch of a rolling or canary deploy (empty when not defined).
    pub batch_start: Vec<Arc<Task>>,
    pub batch_end: Vec<Arc<Task>>,
}

impl DeployPlan {
    pub fn compile(tasks: &TaskSet) -> Result<DeployPlan> {
        let plan = tasks.expand("deploy")?;
        let at = |builtin: Builtin| {
            plan.iter()
                .position(|t| t.action == Action::Builtin(builtin))
        };
        let Some(lock) = at(Builtin::Lock) else {
            return Err(Error::Usage(
                "the `deploy` task must include `deploy:lock`".into(),
            ));
        };
        let unlock = at(Builtin::Unlock).unwrap_or(plan.len()).max(lock + 1);
        let switch = at(Builtin::Symlink)
            .filter(|&s| s > lock && s < unlock)
            .unwrap_or(unlock);
        let hook = |name: &str| -> Result<Vec<Arc<Task>>> {
            match tasks.get(name) {
                Ok(_) => tasks.expand(name),
                Err(_) => Ok(Vec::new()),
            }
        };
        Ok(DeployPlan {
            lock: plan[..=lock].to_vec(),
            prepare: plan[lock + 1..switch].to_vec(),
            switch: plan[switch..unlock].to_vec(),
            finish: plan[unlock..].to_vec(),
            batch_start: hook("deploy:batch_start")?,
            batch_end: hook("deploy:batch_end")?,
        })
    }

    /// Every step in order, as `plan.expand("deploy")` gave them.
    pub fn steps(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.lock
            .iter()
            .chain(&self.prepare)
            .chain(&self.switch)
            .chain(&self.finish)
    }
}

/// A deploy under way: the fleet, the plan, and where it stands.
pub struct Deploy<'f, 'p> {
    pub fleet: &'f mut Fleet<'p>,
    plan: DeployPlan,
    phase: Phase,
    on_post_switch_failure: OnPostSwitchFailure,
}

impl<'f, 'p> Deploy<'f, 'p> {
    pub fn new(
        fleet: &'f mut Fleet<'p>,
        plan: DeployPlan,
        on_post_switch_failure: OnPostSwitchFailure,
    ) -> Deploy<'f, 'p> {
        Deploy {
            fleet,
            plan,
            phase: Phase::Started,
            on_post_switch_failure,
        }
    }

    pub fn plan(&self) -> &DeployPlan {
        &self.plan
    }

    /// Every host of the fleet, by index.
    pub fn everyone(&self) -> Vec<usize> {
        (0..self.fleet.hosts.len()).collect()
    }

    /// started → locked: the steps up to the lock, then the lock on every host.
    pub async fn lock(&mut self) -> Result<()> {
        debug_assert_eq!(self.phase, Phase::Started);
        let everyone = self.everyone();
        self.fleet.execute(&self.plan.lock, &everyone).await?;
        self.phase = Phase::Locked;
        tracing::debug!(release = %self.fleet.ctx.release, "locked");
        Ok(())
    }

    /// locked (or the previous batch verified) → prepared: the release on `batch`'s hosts.
    pub async fn prepare(&mut self, batch: &[usize]) -> Result<()> {
        debug_assert!(matches!(self.phase, Phase::Locked | Phase::Verified));
        self.fleet.execute(&self.plan.prepare, batch).await?;
        self.phase = Phase::Prepared;
        tracing::debug!(hosts = batch.len(), "prepared");
        Ok(())
    }

    /// prepared → switched: `pre_switch` checks, the switch of `batch`, its post-switch tasks.
    /// A post-switch task that fails leaves the release live, or with `on_post_switch_failure =
    /// "rollback"` rolls back every switched host (only the batch's, `only_batch`): exit 4.
    pub async fn switch(&mut self, batch: &[usize], only_batch: bool) -> Result<()> {
        debug_assert_eq!(self.phase, Phase::Prepared);
        let result = self.fleet.execute(&self.plan.switch, batch).await;
        let switched = batch
            .iter()
            .any(|&i| self.fleet.hosts[i].switched_from.is_some());
        match result {
            // The switch itself went back if it failed: what failed came after it.
            Err(error) if switched => {
                let scope = if only_batch {
                    batch.to_vec()
                } else {
                    self.everyone()
                };
                let policy = self.on_post_switch_failure;
                Err(self.fleet.post_switch_failed(error, &scope, policy).await)
            }
            Err(error) => Err(error),
            Ok(()) => {
                if !self.plan.switch.is_empty() {
                    self.phase = Phase::Switched;
                    tracing::debug!(hosts = batch.len(), "switched");
                }
                Ok(())
            }
        }
    }

    /// switched → verified: the `post_switch` checks on `batch`; a failure rolls back every
    /// switched host (or only the batch's, `only_batch`) and ends the deploy with exit 4.
    pub async fn verify(&mut self, batch: &[usize], only_batch: bool) -> Result<()> {
        if self.phase == Phase::Switched {
            self.fleet.verify_switch(batch, only_batch).await?;
        }
        self.phase = Phase::Verified;
        tracing::debug!(hosts = batch.len(), "verified");
        Ok(())
    }

    /// verified → verified: the watch window on `batch`, under the lock the deploy still holds;
    /// a rollback verdict rolls back every switched host (or only the batch's, `only_batch`)
    /// and ends the deploy with exit 4.
    pub async fn watch(&mut self, batch: &[usize], only_batch: bool) -> Result<()> {
        debug_assert_eq!(self.phase, Phase::Verified);
        // A dry run switched nothing, and shows the probes it would sample.
        let switched = batch
            .iter()
            .any(|&i| self.fleet.hosts[i].switched_from.is_some());
        if switched || self.fleet.ctx.dry_run() {
            self.fleet.watch_switch(batch, only_batch).await?;
        }
        Ok(())
    }

    /// verified → done: every host unlocks and cleans up.
    pub async fn finish(&mut self) -> Result<()> {
        let everyone = self.everyone();
        self.finish_on(&everyone).await
    }

    /// verified → done: `members` unlock and clean up (the others are unlocked after the run).
    pub async fn finish_on(&mut self, members: &[usize]) -> Result<()> {
        self.fleet.check()?;
        self.fleet.execute(&self.plan.finish, members).await?;
        self.phase = Phase::Done;
        tracing::debug!("done");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::strategy::Strategy;
    use crate::fleet::testing::setup;

    fn names(tasks: &[Arc<Task>]) -> Vec<&str> {
        tasks.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn the_plan_is_cut_at_the_lock_the_switch_and_the_unlock() {
        let s = setup(
            1,
            "[tasks.\"app:down\"]\nrun = \"true\"\nbefore = \"deploy:symlink\"\n\
             [tasks.\"app:reload\"]\nrun = \"true\"\nafter = \"deploy:symlink\"\n",
        );
        let plan = DeployPlan::compile(&s.tasks).unwrap();
        assert_eq!(names(&plan.lock), ["deploy:lock"]);
        assert_eq!(
            names(&plan.prepare),
            [
                "deploy:setup",
                "deploy:release",
                "deploy:update_code",
                "deploy:shared",
                "deploy:writable",
                "app:down"
            ]
        );
        assert_eq!(names(&plan.switch), ["deploy:symlink", "app:reload"]);
        assert_eq!(
            names(&plan.finish),
            ["deploy:unlock", "deploy:tag", "deploy:cleanup"]
        );
        assert_eq!(names(&plan.batch_start), ["deploy:batch_start"]);
        let all: Vec<&str> = plan.steps().map(|t| t.name.as_str()).collect();
        let expanded = s.tasks.expand("deploy").unwrap();
        assert_eq!(all, names(&expanded));
    }

    #[test]
    fn a_deploy_without_the_lock_is_refused() {
        let s = setup(1, "[tasks.deploy]\nsteps = [\"deploy:setup\"]\n");
        let error = DeployPlan::compile(&s.tasks).err().unwrap();
        assert_eq!(
            error.to_string(),
            "the `deploy` task must include `deploy:lock`"
        );
    }

    fn options() -> crate::fleet::Options {
        crate::fleet::Options {
            parallel: 4,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_failure_before_the_switch_switches_no_host_and_marks_the_release_failed() {
        let s = setup(
            2,
            "[tasks.\"app:check\"]\nrun = \"[ {{ host|quote }} != h2 ]\"\nafter = \"deploy:update_code\"\n",
        );
        let options = options();
        let hosts: Vec<_> = s.project.hosts.iter().collect();
        let mut fleet = Fleet::new(&s.project, &s.tasks, &s.reporter, &options, hosts).unwrap();
        let error = fleet.deploy().await.err().unwrap();
        assert!(
            matches!(&error, Error::Fleet(f) if f.len() == 1 && f[0].host == "h2"),
            "{error}"
        );
        let release = fleet.ctx.release.clone();
        for host in ["h1", "h2"] {
            assert_eq!(s.link(host, "current"), None, "{host}");
            assert!(!s.path(&format!("hosts/{host}/.dep/deploy.lock")).exists());
            // It never went live: its directory is gone, its log line stays.
            assert!(!s.path(&format!("hosts/{host}/releases/{release}")).exists());
        }
        let log = std::fs::read_to_string(s.path("hosts/h1/.dep/releases.log")).unwrap();
        assert!(
            log.lines()
                .last()
                .unwrap()
                .contains("\"status\":\"failed\""),
            "{log}"
        );
    }

    #[tokio::test]
    async fn a_deploy_switches_every_host_to_one_release_and_runs_once_tasks_once() {
        let s = setup(
            3,
            "[tasks.\"app:migrate\"]\nonce = true\nrun = \"echo {{ host|quote }} >> {{ (deployfile_dir ~ '/once')|quote }}\"\nafter = \"deploy:update_code\"\n",
        );
        let options = crate::fleet::Options {
            rolling: Some(2),
            ..options()
        };
        let hosts: Vec<_> = s.project.hosts.iter().collect();
        let mut fleet = Fleet::new(&s.project, &s.tasks, &s.reporter, &options, hosts).unwrap();
        assert!(matches!(Strategy::choose(&fleet), Ok(Strategy::Rolling(_))));
        fleet.deploy().await.unwrap();
        let release = fleet.ctx.release.clone();
        for host in ["h1", "h2", "h3"] {
            assert_eq!(s.link(host, "current"), Some(format!("releases/{release}")));
        }
        assert_eq!(std::fs::read_to_string(s.path("once")).unwrap(), "h1\n");
    }
}
