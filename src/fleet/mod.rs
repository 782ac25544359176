//! The fleet: a compiled plan run on the selected hosts, each host running its steps back to
//! back and meeting the others only at barriers (the lock, `once`, `local` and `barrier` tasks,
//! the switch). Nothing switches unless every host is ready; on any failure before the switch
//! the release is marked failed and every lock released.
//!
//! `Fleet` holds the run (its `Context` and one `HostRun` per host); the commands are `deploy`
//! (a state machine in `deploy`, ordered by a `strategy`), `rollback`, `run_task`, `health` and
//! `read_states`. Each concept has its file: `scheduler` (segments and barriers), `render`
//! (a task into commands for one host), `preflight`, `lock`, `switch`, `checks`, `rollback`,
//! `post_switch` (when a post-switch task fails), `notify`, `code` (which code every host gets),
//! `git_mirror` (the git strategy's mirror on this machine, for `git_archive_on = "controller"`),
//! `promote` (what `dep promote` takes from its FROM stage).

pub mod archive;
mod checks;
mod code;
mod context;
mod deploy;
mod dynamic;
mod failure;
mod git_mirror;
mod host_run;
mod interrupt;
mod lock;
mod notify;
mod options;
mod output_check;
mod phases;
mod post_switch;
mod preflight;
pub mod promote;
mod render;
mod rollback;
mod scheduler;
mod strategy;
mod switch;
mod traffic;
mod watch;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures::future::join_all;

use crate::config::host::Host;
use crate::config::project::Project;
use crate::error::{Error, Result, StepFailure};
use crate::health::Phase;
use crate::notify::{Trigger, Webhook};
use crate::plan::task::{Action, Builtin};
use crate::plan::TaskSet;
use crate::release::{self, HostState};
use crate::report::Reporter;

pub use context::Mode;

/// A clock pinned by DEP_NOW must be a time: checked before anything runs (exit 2).
pub fn check_clock() -> Result<()> {
    context::pinned_now()
        .map(|_| ())
        .map_err(|e| crate::error::Error::Usage(e.to_string()))
}
pub use host_run::{host_vars, override_warnings, HostRun};
pub use options::Options;

use context::Context;

pub struct Fleet<'p> {
    ctx: Context<'p>,
    hosts: Vec<HostRun>,
    /// A `local` task's failure on this machine.
    controller_failure: Option<StepFailure>,
    /// `once` and `local` tasks already run (a rolling deploy runs them in its first batch only).
    once_done: HashSet<String>,
    webhooks: Vec<Webhook>,
    started: Instant,
    /// The watch window after the switch (and for `dep watch`).
    window: crate::watch::Window,
    /// Blue-green: the traffic switch this deploy made, undone by a rollback of its hosts.
    traffic: Option<traffic::TrafficSwitched>,
    /// Rolling and canary: the batch `deploy:batch_start` took out (of a load balancer, say),
    /// and the `deploy:batch_end` hooks that put it back, until they ran.
    batch_out: Option<(Vec<usize>, Vec<std::sync::Arc<crate::plan::task::Task>>)>,
}

/// Two selected hosts deploying to one directory of one machine would take one lock twice (the
/// second run of it finds the first holding it) and switch one `current` twice: a deploy or a
/// rollback refuses them (reading, `dep run` and `dep unlock` do not).
pub(crate) fn one_place_each(hosts: &[HostRun]) -> Result<()> {
    /// A machine (None: this one, for local hosts) and a directory on it.
    type Place<'a> = (Option<(&'a str, u16)>, &'a str);
    let mut seen: HashMap<Place<'_>, &str> = HashMap::new();
    for h in hosts {
        let machine =
            (!h.host.local).then(|| (h.host.hostname.as_str(), h.host.port.unwrap_or(22)));
        if let Some(first) = seen.insert((machine, h.deploy_path.as_str()), h.name()) {
            return Err(Error::Usage(format!(
                "hosts `{first}` and `{}` both deploy to `{}` on {}: give each its own `deploy_path`, \
                 or select one of them",
                h.name(),
                h.deploy_path,
                match machine {
                    Some((address, port)) => format!("{address}:{port}"),
                    None => "this machine".to_string(),
                }
            )));
        }
    }
    Ok(())
}

impl<'p> Fleet<'p> {
    pub fn new(
        project: &'p Project,
        tasks: &'p TaskSet,
        reporter: &'p Reporter,
        options: &'p Options,
        hosts: Vec<&Host>,
    ) -> Result<Fleet<'p>> {
        let starts = host_run::starts(project, hosts.first().copied(), options)?;
        let window = watch::window(project, hosts.first().copied(), options)?;
        let hosts = hosts
            .into_iter()
            .map(|host| HostRun::new(project, host, options, &starts))
            .collect::<Result<Vec<_>>>()?;
        Ok(Fleet {
            ctx: Context::new(project, tasks, reporter, options),
            hosts,
            controller_failure: None,
            once_done: HashSet::new(),
            webhooks: Vec::new(),
            started: Instant::now(),
            window,
            traffic: None,
            batch_out: None,
        })
    }

    pub fn hosts(&self) -> &[HostRun] {
        &self.hosts
    }

    fn everyone(&self) -> Vec<usize> {
        (0..self.hosts.len()).collect()
    }

    /// `dep rollback`: under the lock, every host back to the same older live release.
    pub async fn rollback(&mut self) -> Result<()> {
        one_place_each(&self.hosts)?;
        if self.blue_green() {
            return self.roll_back_traffic().await;
        }
        self.ctx.mode = Mode::Rollback;
        let mut plan = Vec::new();
        let post_switch = self.ctx.tasks.post_switch()?;
        for task in self.ctx.tasks.expand("rollback")? {
            let is_rollback = task.action == Action::Builtin(Builtin::Rollback);
            plan.push(task);
            if is_rollback {
                plan.extend(post_switch.iter().cloned());
            }
        }
        self.preflight(&plan).await?;
        self.load_webhooks()?;
        let started = Instant::now();
        let abandoned = self.hosts.first().and_then(|h| h.state.current.clone());
        let everyone = self.everyone();
        let interrupts = std::sync::Arc::clone(&self.ctx.interrupts);
        let reporter = self.ctx.reporter;
        let work = async {
            self.lock_all("deploy:lock").await?;
            self.execute(&plan, &everyone).await
        };
        let result = tokio::select! {
            result = work => result,
            () = interrupts.requested(reporter) => Err(Error::Interrupted),
        };
        let result = match result {
            Err(Error::Interrupted) => {
                interrupt::Interrupts::exit_on_next_signal();
                Err(self.interrupted_rollback().await)
            }
            other => other,
        };
        self.unlock_remaining().await;
        if result.is_ok() && !self.ctx.dry_run() {
            self.ctx
                .reporter
                .emit(crate::report::Event::RollbackFinished {
                    release: &self.ctx.release,
                    hosts: self.hosts.len(),
                    duration: started.elapsed(),
                });
        }
        if result.is_ok() {
            // Tell who rolled back from what to what: the notice names the abandoned release.
            let from = self
                .hosts
                .first()
                .and_then(|h| h.switched_from.clone())
                .and_then(|before| before.current)
                .or(abandoned);
            if let Some(from) = from {
                let message = format!(
                    "rolled back to release {} by {}",
                    self.ctx.release, self.ctx.who
                );
                self.notify_about(Trigger::Rollback, &from, Some(message))
                    .await;
            }
        }
        result
    }

    /// `dep TASK`: run any task, with `release_path` at the current release.
    pub async fn run_task(&mut self, name: &str) -> Result<()> {
        self.ctx.mode = Mode::Task;
        let plan = self.ctx.tasks.expand(name)?;
        for task in &plan {
            if let Action::Builtin(builtin) = task.action {
                if !matches!(builtin, Builtin::Cleanup | Builtin::Unlock) {
                    return Err(Error::Usage(format!(
                        "task `{}` is a step of the deploy; run `dep deploy` (or `dep rollback`)",
                        task.name
                    )));
                }
            }
        }
        self.read_states().await?;
        for host in &mut self.hosts {
            let current = host.state.current.clone().unwrap_or_default();
            let previous = host.state.previous.clone().unwrap_or_default();
            host.set_release(&current, &previous);
        }
        self.preflight(&plan).await?;
        let everyone = self.everyone();
        self.execute(&plan, &everyone).await
    }

    /// `dep health`: every health check (both phases) against what `current` serves now.
    pub async fn health(&mut self) -> Result<()> {
        self.read_states().await?;
        let serving = self.serving()?;
        let failures = self.health_now(&serving).await;
        if self.hosts.iter().all(|h| h.checks.is_empty()) {
            return Err(Error::Usage(
                "no health checks are configured (`[[health]]`)".into(),
            ));
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(Error::Unhealthy(failures))
    }

    /// What an interrupted `dep rollback` did: nothing, the switch (and perhaps not its
    /// post-switch tasks), or, stopped mid-switch, what the hosts' links say.
    async fn interrupted_rollback(&self) -> Error {
        if self.ctx.interrupts.forced() {
            return self.stopped_mid_switch().await;
        }
        let switched: Vec<&str> = self
            .hosts
            .iter()
            .filter(|h| h.switched_from.is_some())
            .map(|h| h.name())
            .collect();
        if switched.is_empty() {
            return Error::Local(
                "rollback interrupted before the switch: nothing was changed".into(),
            );
        }
        Error::Local(format!(
            "rollback interrupted after the switch: {} went back; their post-switch tasks may not all have run \
             (`dep releases` shows where each host points)",
            switched.join(", ")
        ))
    }

    /// Every health check (both phases) against the `current` of each of `members` as last
    /// read: the failures, one line per host (none when no check is configured).
    async fn health_now(&mut self, members: &[usize]) -> Vec<String> {
        for &i in members {
            let host = &mut self.hosts[i];
            let current = host.state.current.clone().unwrap_or_default();
            host.vars.set("release_name", current);
        }
        let mut failures = self.run_checks(Phase::PreSwitch, members).await;
        failures.extend(self.run_checks(Phase::PostSwitch, members).await);
        failures
            .into_iter()
            .map(|(host, why)| format!("host `{host}`: {why}"))
            .collect()
    }

    /// Read every host's state (releases, links, log, lock) concurrently.
    pub async fn read_states(&mut self) -> Result<()> {
        let outputs = join_all(self.hosts.iter().map(|h| async {
            let command = release::state_command(&h.deploy_path);
            (h.backend.read(&command).await, command)
        }))
        .await;
        let mut failures = Vec::new();
        for (host, (output, command)) in self.hosts.iter_mut().zip(outputs) {
            if output.success() {
                host.state = HostState::parse(&output.stdout);
            } else {
                failures.push(failure::of_capture(
                    host.name(),
                    "read state",
                    &command,
                    &output,
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Fleet(failures))
        }
    }
}

/// A throwaway project of local hosts for the fleet's unit tests: no network, real bash.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    use crate::config::project::Project;
    use crate::plan::TaskSet;
    use crate::report::{Format, Reporter};

    pub struct Setup {
        pub dir: tempfile::TempDir,
        pub project: Project,
        pub tasks: TaskSet,
        pub reporter: Reporter,
    }

    /// `hosts` local hosts h1..hN of stage `test`, with `extra` appended to the Deployfile.
    pub fn setup(hosts: usize, extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/index.html"), "hello\n").unwrap();
        let mut text = String::from(
            "[config]\nstrategy = \"upload\"\nupload_from = \"app\"\nkeep_releases = 3\n",
        );
        for n in 1..=hosts {
            text.push_str(&format!(
                "\n[hosts.h{n}]\nlocal = true\nstage = \"test\"\nconfig = {{ deploy_path = {:?} }}\n",
                dir.path().join(format!("hosts/h{n}")).display().to_string()
            ));
        }
        text.push_str(extra);
        let file = dir.path().join("Deployfile.toml");
        std::fs::write(&file, text).unwrap();
        let project = Project::load(&file).unwrap();
        let tasks = TaskSet::compile(&project).unwrap();
        Setup {
            dir,
            project,
            tasks,
            reporter: Reporter::new(Format::Plain, -1, Vec::new()),
        }
    }

    impl Setup {
        pub fn path(&self, relative: &str) -> PathBuf {
            self.dir.path().join(relative)
        }

        /// Where `link` (current, previous) of host `host` points, as `releases/NAME`.
        pub fn link(&self, host: &str, link: &str) -> Option<String> {
            std::fs::read_link(self.path(&format!("hosts/{host}/{link}")))
                .ok()
                .map(|t| t.display().to_string())
        }
    }
}
