//! The runner: executes a compiled plan on the selected hosts. Each host runs its consecutive
//! steps back to back as one unit on its backend; every host meets the others only at barriers
//! (lock, `once`, `local` and `barrier` tasks, the switch). Nothing switches unless every host is
//! ready; on any failure before the switch the release is marked failed and every lock released.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::config::host::Host;
use crate::config::project::{local_machine, local_user, Project};
use crate::config::vars::{environment_layer, override_layer, Layer, Vars};
use crate::error::{Error, Result, StepFailure};
use crate::health::{HealthCheck, Phase};
use crate::plan::task::{Action, Builtin, Task};
use crate::plan::TaskSet;
use crate::quote::quote;
use crate::release::lock::{self, LockInfo};
use crate::release::{self, HostState, LogEntry, Status};
use crate::report::{Event, Reporter};
use crate::transport::command::Command;
use crate::transport::{self, Backend, Outcome, Payload, StepResult};

/// What the command line asked for, beyond the selector.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    pub parallel: usize,
    pub overrides: Vec<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub revision: Option<String>,
    pub rollback_to: Option<String>,
    /// Deploy in batches of this many hosts (`--rolling N`; else the stage's `rolling`).
    pub rolling: Option<usize>,
    /// One host first, then the rest (`--canary`).
    pub canary: bool,
    /// When a later batch fails, leave the batches already switched on the new release.
    pub keep_switched: bool,
}

/// One selected host during a run.
pub struct HostRun {
    pub host: Host,
    pub vars: Vars,
    pub backend: Backend,
    pub deploy_path: String,
    pub state: HostState,
    pub locked: bool,
    pub failure: Option<StepFailure>,
    /// Where `current` and `previous` pointed before this run switched the host.
    pub switched_from: Option<(Option<String>, Option<String>)>,
    /// In the batch being deployed (always, unless rolling or canary).
    pub active: bool,
    /// The global health checks and those of the host's stage.
    pub checks: Vec<Arc<HealthCheck>>,
}

/// What every host's work shares: read-only while hosts run concurrently.
struct Shared<'p> {
    project: &'p Project,
    tasks: &'p TaskSet,
    reporter: &'p Reporter,
    options: &'p Options,
    release: String,
    revision: String,
    branch: String,
    started_at: String,
    who: String,
    lock: LockInfo,
    /// Packed uploads by local path, packed once for all hosts.
    payloads: std::sync::Mutex<HashMap<PathBuf, Payload>>,
    /// `dep deploy:unlock` by hand clears the lock whoever holds it, like `dep unlock`.
    force_unlock: bool,
    parallel: Semaphore,
}

pub struct Engine<'p> {
    shared: Shared<'p>,
    hosts: Vec<HostRun>,
    controller_failure: Option<StepFailure>,
    switched: bool,
    /// A deploy (not a rollback or a task): announce the release once its name is chosen.
    deploying: bool,
    /// `--revision` as given: resolved to one commit on the first host, under the lock.
    pending_revision: Option<String>,
    /// `once` and `local` tasks already run (a rolling deploy runs them in its first batch only).
    once_done: std::collections::HashSet<String>,
    /// Deploying in batches: health checks run per batch instead of before the unlock.
    rolling: bool,
    webhooks: Vec<crate::notify::Webhook>,
    started: Instant,
}

/// Build each selected host's variables: SPEC's layers, then the values dep provides.
pub fn host_vars(project: &Project, host: &Host, options: &Options) -> Result<Vars> {
    let mut layers: Vec<Layer> = project.file_layers.clone();
    if let Some(stage) = &host.stage {
        if let Some(config) = project.stages.get(stage) {
            layers.push(Layer::new(format!("stage {stage}"), config.config.clone()));
        }
    }
    layers.push(Layer::new(
        format!("host {}", host.name),
        host.config.clone(),
    ));
    layers.push(environment_layer(std::env::vars()));
    layers.push(override_layer(&options.overrides).map_err(Error::Usage)?);
    let mut vars = Vars::layered(&layers).map_err(|message| Error::Config {
        path: project.deployfile.clone(),
        message,
    })?;
    vars.set("host", host.name.clone());
    vars.set("hostname", host.hostname.clone());
    vars.set("user", host.login_user());
    vars.set("stage", host.stage.clone().unwrap_or_default());
    vars.set("roles", host.roles.clone());
    vars.set("local_user", local_user());
    vars.set("deployfile_dir", project.root.display().to_string());
    vars.set("release_name", "");
    vars.set("previous_release", "");
    vars.set("revision", "");
    if let Some(branch) = &options.branch {
        vars.set("branch", branch.clone());
    }
    Ok(vars)
}

/// Render and check `deploy_path`: absolute, not `/`, no `..`.
fn deploy_path(host: &Host, vars: &Vars) -> Result<String> {
    let invalid = |message: String| Error::InvalidHost {
        host: host.name.clone(),
        message,
    };
    let path = vars
        .value_string("deploy_path")
        .map_err(|e| invalid(format!("`deploy_path`: {e}")))?;
    let trimmed = path.trim_end_matches('/');
    if !path.starts_with('/') {
        return Err(invalid(format!(
            "`deploy_path` must be an absolute path, not `{path}`"
        )));
    }
    if trimmed.is_empty() || trimmed.split('/').any(|p| p == "..") {
        return Err(invalid(format!(
            "`deploy_path` must not be `/` or contain `..` (got `{path}`)"
        )));
    }
    Ok(trimmed.to_string())
}

impl<'p> Engine<'p> {
    pub fn new(
        project: &'p Project,
        tasks: &'p TaskSet,
        reporter: &'p Reporter,
        options: &'p Options,
        hosts: Vec<&Host>,
    ) -> Result<Engine<'p>> {
        let mut runs = Vec::new();
        for host in hosts {
            let mut vars = host_vars(project, host, options)?;
            let deploy_path = deploy_path(host, &vars)?;
            if options.dry_run {
                vars.set_placeholders(true);
            }
            let real = if host.local {
                Backend::Local(transport::local::Local)
            } else {
                // Resolves the ssh config only: the connection is made on first use.
                Backend::Ssh(crate::transport::ssh::Ssh::for_host(host, &vars).map_err(
                    |message| Error::InvalidHost {
                        host: host.name.clone(),
                        message: message.to_string(),
                    },
                )?)
            };
            let backend = if options.dry_run {
                Backend::DryRun(transport::dry_run::DryRun {
                    reads: Some(Box::new(real)),
                })
            } else {
                real
            };
            let mut checks = Vec::new();
            let stage_checks = host
                .stage
                .as_ref()
                .and_then(|stage| project.stages.get(stage))
                .map(|stage| stage.health.as_slice())
                .unwrap_or_default();
            for (index, (raw, file)) in project.health.iter().chain(stage_checks).enumerate() {
                checks.push(Arc::new(HealthCheck::from_raw(raw, file, index)?));
            }
            runs.push(HostRun {
                host: host.clone(),
                vars,
                backend,
                deploy_path,
                state: HostState::default(),
                locked: false,
                failure: None,
                switched_from: None,
                active: true,
                checks,
            });
        }
        let now = now();
        let release = now.format(release::NAME_FORMAT).to_string();
        let who = format!("{}@{}", local_user(), local_machine());
        let lock = LockInfo {
            who: who.clone(),
            pid: std::process::id(),
            release: release.clone(),
            since: release::now_rfc3339(),
            id: crate::transport::script::token(),
        };
        Ok(Engine {
            shared: Shared {
                project,
                tasks,
                reporter,
                options,
                release,
                revision: String::new(),
                branch: String::new(),
                started_at: release::now_rfc3339(),
                who,
                lock,
                payloads: Default::default(),
                force_unlock: false,
                parallel: Semaphore::new(options.parallel.max(1)),
            },
            hosts: runs,
            controller_failure: None,
            switched: false,
            deploying: false,
            pending_revision: None,
            once_done: Default::default(),
            rolling: false,
            webhooks: Vec::new(),
            started: Instant::now(),
        })
    }

    pub fn hosts(&self) -> &[HostRun] {
        &self.hosts
    }

    /// `dep deploy`: resolve the code, check every step renders, then run the deploy plan.
    pub async fn deploy(&mut self) -> Result<()> {
        let plan = self.shared.tasks.expand("deploy")?;
        if !plan
            .iter()
            .any(|t| t.action == Action::Builtin(Builtin::Lock))
        {
            return Err(Error::Usage(
                "the `deploy` task must include `deploy:lock`".into(),
            ));
        }
        let started = Instant::now();
        self.started = started;
        self.load_webhooks()?;
        self.resolve_code().await?;
        self.prepare(&plan)?;
        self.deploying = true;
        let batches = self.batches();
        self.rolling = batches.len() > 1;
        let result = tokio::select! {
            result = self.execute_in_batches(&plan, &batches) => result,
            _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
        };
        let result = match result {
            Ok(()) => Ok(()),
            Err(error) => {
                // Hosts that never switched: the release is failed there. Switched ones keep it.
                self.abort().await;
                let live: Vec<&str> = self
                    .hosts
                    .iter()
                    .filter(|h| h.switched_from.is_some())
                    .map(|h| h.host.name.as_str())
                    .collect();
                if !live.is_empty() {
                    let on = if live.len() == self.hosts.len() {
                        "every host".to_string()
                    } else {
                        live.join(", ")
                    };
                    let message = format!(
                        "release {} is live on {on}, but the deploy failed (`dep rollback` puts the previous release back)",
                        self.shared.release
                    );
                    self.shared.reporter.emit(Event::Note { message: &message });
                }
                Err(error)
            }
        };
        self.unlock_remaining().await;
        match &result {
            Ok(()) => self.notify(crate::notify::Trigger::Success, None).await,
            Err(Error::LockHeld(_)) => {}
            Err(error @ Error::HealthFailed { .. }) => {
                let message = error.to_string();
                self.notify(crate::notify::Trigger::Rollback, Some(message))
                    .await
            }
            Err(error) => {
                let message = error.to_string();
                self.notify(crate::notify::Trigger::Failure, Some(message))
                    .await
            }
        }
        let release = self.shared.release.clone();
        if self.shared.options.dry_run {
            let message = format!(
                "dry run: release {release} would be deployed; nothing was run on the hosts"
            );
            self.shared.reporter.emit(Event::Note { message: &message });
        } else if !matches!(result, Err(Error::LockHeld(_))) {
            self.shared.reporter.emit(Event::DeployFinished {
                release: &release,
                ok: result.is_ok(),
                duration: started.elapsed(),
            });
        }
        result
    }

    /// The hosts of each batch, by index: all at once, `--rolling N`, the stage's `rolling`, or
    /// `--canary` (one host, then the rest).
    fn batches(&self) -> Vec<Vec<usize>> {
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        let options = self.shared.options;
        if options.canary && all.len() > 1 {
            return vec![vec![0], all[1..].to_vec()];
        }
        let stage_rolling = self
            .hosts
            .first()
            .and_then(|h| h.host.stage.as_ref())
            .and_then(|stage| self.shared.project.stages.get(stage))
            .and_then(|stage| stage.rolling);
        let size = options
            .rolling
            .or(stage_rolling)
            .unwrap_or(all.len())
            .max(1);
        all.chunks(size).map(<[usize]>::to_vec).collect()
    }

    /// Run the deploy plan: at once, or batch by batch. In batches, every host is locked first;
    /// each batch then prepares, switches and is health-checked before the next starts; when a
    /// batch fails, the batches already switched go back too (unless `--keep-switched`).
    async fn execute_in_batches(
        &mut self,
        plan: &[Arc<Task>],
        batches: &[Vec<usize>],
    ) -> Result<()> {
        if batches.len() <= 1 {
            return self.execute(plan).await;
        }
        let lock = plan
            .iter()
            .position(|t| t.action == Action::Builtin(Builtin::Lock))
            .unwrap_or(0);
        let unlock = plan
            .iter()
            .position(|t| t.action == Action::Builtin(Builtin::Unlock))
            .unwrap_or(plan.len())
            .max(lock + 1);
        let (head, body, tail) = (&plan[..=lock], &plan[lock + 1..unlock], &plan[unlock..]);
        self.execute(head).await?;
        let hook = |name: &str| -> Result<Vec<Arc<Task>>> {
            match self.shared.tasks.get(name) {
                Ok(_) => self.shared.tasks.expand(name),
                Err(_) => Ok(Vec::new()),
            }
        };
        let (batch_start, batch_end) = (hook("deploy:batch_start")?, hook("deploy:batch_end")?);
        let keep = self.shared.options.keep_switched;
        for (number, batch) in batches.iter().enumerate() {
            for (index, host) in self.hosts.iter_mut().enumerate() {
                host.active = batch.contains(&index);
            }
            let names: Vec<&str> = batch
                .iter()
                .map(|&i| self.hosts[i].host.name.as_str())
                .collect();
            let message = format!(
                "batch {}/{}: {}",
                number + 1,
                batches.len(),
                names.join(", ")
            );
            self.shared.reporter.emit(Event::Note { message: &message });
            let result = async {
                self.execute(&batch_start).await?;
                self.execute(body).await?;
                self.verify_switch(keep).await?;
                self.execute(&batch_end).await
            }
            .await;
            if let Err(error) = result {
                if self.switched && !keep {
                    let reasons: Vec<(String, String)> = self
                        .hosts
                        .iter()
                        .filter_map(|h| {
                            h.failure
                                .as_ref()
                                .map(|f| (h.host.name.clone(), f.to_string()))
                        })
                        .collect();
                    self.roll_back_switched(reasons, false).await?;
                }
                // The batch's hosts serve the previous release again: put them back (batch_end).
                let failures: Vec<Option<StepFailure>> =
                    self.hosts.iter_mut().map(|h| h.failure.take()).collect();
                let _ = self.execute(&batch_end).await;
                for (host, failure) in self.hosts.iter_mut().zip(failures) {
                    if failure.is_some() {
                        host.failure = failure;
                    }
                }
                for host in &mut self.hosts {
                    host.active = true;
                }
                return Err(error);
            }
        }
        for host in &mut self.hosts {
            host.active = true;
        }
        self.execute(tail).await
    }

    /// `dep rollback`: under the lock, every host back to the same older live release.
    pub async fn rollback(&mut self) -> Result<()> {
        let mut plan = Vec::new();
        let post_switch = self.shared.tasks.post_switch()?;
        for task in self.shared.tasks.expand("rollback")? {
            let is_rollback = task.action == Action::Builtin(Builtin::Rollback);
            plan.push(task);
            if is_rollback {
                plan.extend(post_switch.iter().cloned());
            }
        }
        self.prepare(&plan)?;
        self.load_webhooks()?;
        let abandoned = self.hosts.first().and_then(|h| h.state.current.clone());
        let work = async {
            self.lock_all("deploy:lock").await?;
            self.execute(&plan).await
        };
        let result = tokio::select! {
            result = work => result,
            _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
        };
        self.unlock_remaining().await;
        if result.is_ok() {
            // Tell who rolled back from what to what: the notice names the abandoned release.
            let target = self.shared.release.clone();
            let from = self
                .hosts
                .first()
                .and_then(|h| h.switched_from.clone())
                .and_then(|(c, _)| c)
                .or(abandoned);
            if let Some(from) = from {
                self.shared.release = from;
                let message = format!("rolled back to release {target} by {}", self.shared.who);
                self.notify(crate::notify::Trigger::Rollback, Some(message))
                    .await;
                self.shared.release = target;
            }
        }
        result
    }

    /// `dep TASK`: run any task, with `release_path` at the current release.
    pub async fn run_task(&mut self, name: &str) -> Result<()> {
        let plan = self.shared.tasks.expand(name)?;
        self.shared.force_unlock = true;
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
            host.vars.set("release_name", current);
            host.vars.set(
                "previous_release",
                host.state.previous.clone().unwrap_or_default(),
            );
        }
        self.prepare(&plan)?;
        self.execute(&plan).await
    }

    /// The Deployfile's `[[notify]]` webhooks, their URLs rendered with the first host's variables.
    fn load_webhooks(&mut self) -> Result<()> {
        let Some(first) = self.hosts.first() else {
            return Ok(());
        };
        for (raw, file) in &self.shared.project.notify {
            let webhook =
                crate::notify::Webhook::from_raw(raw, |text| first.vars.render("notify", text))
                    .map_err(|message| Error::Config {
                        path: file.clone(),
                        message,
                    })?;
            self.webhooks.push(webhook);
        }
        Ok(())
    }

    /// Tell the webhooks; a webhook that fails is reported and never fails the deploy.
    async fn notify(&self, trigger: crate::notify::Trigger, message: Option<String>) {
        if self.webhooks.is_empty() || self.shared.options.dry_run {
            return;
        }
        let first = self.hosts.first();
        let var = |name: &str| {
            first
                .and_then(|h| h.vars.value_string(name).ok())
                .unwrap_or_default()
        };
        let reporter = self.shared.reporter;
        let notice = crate::notify::Notice {
            trigger,
            application: reporter.mask(&var("application")),
            stage: var("stage"),
            release: self.shared.release.clone(),
            revision: self.shared.revision.clone(),
            branch: self.shared.branch.clone(),
            hosts: self.hosts.iter().map(|h| h.host.name.clone()).collect(),
            duration: (trigger != crate::notify::Trigger::Start).then(|| self.started.elapsed()),
            who: self.shared.who.clone(),
            message: message.map(|m| reporter.mask(&m)),
        };
        for warning in crate::notify::send(&self.webhooks, &notice).await {
            reporter.emit(Event::Note {
                message: &format!("warning: {warning}"),
            });
        }
    }

    /// `dep health`: every health check (both phases) against what `current` serves now.
    pub async fn health(&mut self) -> Result<()> {
        self.read_states().await?;
        for host in &mut self.hosts {
            let current = host.state.current.clone().unwrap_or_default();
            host.vars.set("release_name", current);
        }
        let mut failures = self.run_checks(Phase::PreSwitch).await;
        failures.extend(self.run_checks(Phase::PostSwitch).await);
        if self.hosts.iter().all(|h| h.checks.is_empty()) {
            return Err(Error::Usage(
                "no health checks are configured (`[[health]]`)".into(),
            ));
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(Error::Unhealthy(
            failures
                .into_iter()
                .map(|(host, why)| format!("host `{host}`: {why}"))
                .collect(),
        ))
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
                failures.push(capture_failure(
                    &host.host.name,
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

    /// Resolve the one revision every host deploys, and pack the upload strategy's code once.
    async fn resolve_code(&mut self) -> Result<()> {
        let Some(first) = self.hosts.first() else {
            return Ok(());
        };
        let vars = &first.vars;
        let config_error = |message: String| Error::Config {
            path: self.shared.project.deployfile.clone(),
            message,
        };
        let strategy = vars.value_string("strategy").map_err(config_error)?;
        self.shared.branch = vars.value_string("branch").unwrap_or_default();
        match strategy.as_str() {
            "git" => {
                let repository = vars.value_string("repository").map_err(config_error)?;
                if repository.is_empty() {
                    return Err(config_error(
                        "`repository` is empty: set it, or use `strategy = \"upload\"`".into(),
                    ));
                }
                let options = self.shared.options;
                if let Some(revision) = &options.revision {
                    if revision.is_empty()
                        || revision.starts_with('-')
                        || !revision
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
                    {
                        return Err(Error::Usage(format!(
                            "`--revision {revision}` is not a revision name"
                        )));
                    }
                    // Resolved to one commit on the first host, once the fleet is locked.
                    self.pending_revision = Some(revision.clone());
                } else {
                    let (reference, label) = if let Some(tag) = &options.tag {
                        self.shared.branch = String::new();
                        (format!("refs/tags/{tag}"), format!("tag `{tag}`"))
                    } else if self.shared.branch.is_empty() {
                        ("HEAD".to_string(), "HEAD".to_string())
                    } else {
                        let branch = &self.shared.branch;
                        (format!("refs/heads/{branch}"), format!("branch `{branch}`"))
                    };
                    self.shared.revision = ls_remote(&repository, &reference, &label).await?;
                }
            }
            "artifact" => {
                // A build made elsewhere (CI): a directory packed once, or a .tar.gz sent as is.
                let artifact = vars.value_string("artifact_path").map_err(config_error)?;
                let path = self.shared.project.root.join(&artifact);
                let bytes = if path.is_file() {
                    std::fs::read(&path).map_err(|e| {
                        config_error(format!(
                            "`artifact_path`: cannot read `{}`: {e}",
                            path.display()
                        ))
                    })?
                } else {
                    crate::fleet::archive::pack(&path, &[])
                        .map_err(|e| config_error(format!("`artifact_path`: {e}")))?
                };
                self.shared.code(Arc::new(bytes));
                self.shared.revision = vars.value_string("artifact_revision").unwrap_or_default();
            }
            "upload" => {
                let from = vars.value_string("upload_from").map_err(config_error)?;
                let exclude: Vec<String> =
                    match vars.value_json("upload_exclude").map_err(config_error)? {
                        serde_json::Value::Array(items) => items
                            .iter()
                            .filter_map(|i| i.as_str().map(str::to_string))
                            .collect(),
                        _ => Vec::new(),
                    };
                let dir = self.shared.project.root.join(&from);
                let packed = crate::fleet::archive::pack(&dir, &exclude)
                    .map_err(|e| config_error(format!("`upload_from`: {e}")))?;
                self.shared.code(Arc::new(packed));
                let head = transport::local::Local
                    .capture(&format!(
                        "git -C {} rev-parse HEAD 2>/dev/null",
                        quote(&dir.display().to_string())
                    ))
                    .await;
                self.shared.revision = if head.success() {
                    head.stdout.trim().to_string()
                } else {
                    String::new()
                };
            }
            other => {
                return Err(config_error(format!(
                    "unknown `strategy = \"{other}\"` (use \"git\", \"upload\" or \"artifact\")"
                )));
            }
        }
        let revision = self.shared.revision.clone();
        let branch = self.shared.branch.clone();
        for host in &mut self.hosts {
            host.vars.set("revision", revision.clone());
            host.vars.set("branch", branch.clone());
        }
        Ok(())
    }

    /// Before anything runs: pack uploads and render every step for every host, so a bad
    /// template or an undefined variable is reported before the first command.
    fn prepare(&mut self, plan: &[Arc<Task>]) -> Result<()> {
        for host in &mut self.hosts {
            host.vars.set(
                "release_name",
                host.vars
                    .value_string("release_name")
                    .ok()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| self.shared.release.clone()),
            );
            let was = self.shared.options.dry_run;
            host.vars.set_placeholders(true);
            for task in plan.iter().filter(|t| t.applies_to(&host.host.roles)) {
                if let Action::Upload { from, to } = &task.action {
                    // Packed when first used: a `local` task before it may build what it sends.
                    for text in [from, to] {
                        host.vars
                            .render(&task.name, text)
                            .map_err(|m| template_error(task, &host.host, m))?;
                    }
                    continue;
                }
                if matches!(
                    task.action,
                    Action::Builtin(Builtin::Lock | Builtin::Symlink | Builtin::Rollback)
                ) {
                    continue;
                }
                commands_for(&self.shared, task, host)
                    .map_err(|m| template_error(task, &host.host, m))?;
            }
            // Health checks render too: a typo must not surface only after the switch.
            for check in &host.checks {
                host.vars
                    .render(&check.name, check.template())
                    .map_err(|message| Error::Config {
                        path: self.shared.project.deployfile.clone(),
                        message: format!(
                            "health check `{}`: host `{}`: {message}",
                            check.name, host.host.name
                        ),
                    })?;
            }
            host.vars.set_placeholders(was);
        }
        Ok(())
    }

    async fn execute(&mut self, plan: &[Arc<Task>]) -> Result<()> {
        let mut index = 0;
        while index < plan.len() {
            let task = &plan[index];
            if task.action == Action::Builtin(Builtin::Unlock) {
                // The whole fleet waits here for the health checks; then each host unlocks and
                // goes on with what follows (cleanup) in the same script.
                self.check()?;
                if self.deploying && self.switched && !self.rolling {
                    self.verify_switch(false).await?;
                }
                let end = plan[index + 1..]
                    .iter()
                    .position(|t| t.is_barrier())
                    .map_or(plan.len(), |p| index + 1 + p);
                self.segment(&plan[index..end]).await;
                index = end;
            } else if task.is_barrier() {
                self.check()?;
                self.barrier(task).await?;
                index += 1;
            } else {
                let end = plan[index..]
                    .iter()
                    .position(|t| t.is_barrier())
                    .map_or(plan.len(), |p| index + p);
                self.segment(&plan[index..end]).await;
                index = end;
            }
        }
        self.check()
    }

    /// Every host runs `tasks` back to back, concurrently with the others.
    async fn segment(&mut self, tasks: &[Arc<Task>]) {
        let shared = &self.shared;
        join_all(
            self.hosts
                .iter_mut()
                .filter(|h| h.active && h.failure.is_none())
                .map(|host| async move {
                    let _permit = shared.parallel.acquire().await;
                    run_on_host(shared, host, tasks).await;
                }),
        )
        .await;
    }

    async fn barrier(&mut self, task: &Arc<Task>) -> Result<()> {
        match task.action {
            Action::Builtin(Builtin::Lock) => {
                self.lock_all(&task.name).await?;
                self.resolve_pending_revision().await?;
                if self.deploying {
                    self.notify(crate::notify::Trigger::Start, None).await;
                }
                Ok(())
            }
            Action::Builtin(Builtin::Symlink) => {
                self.pre_switch_checks().await;
                self.check()?;
                self.switch_all(task).await
            }

            Action::Builtin(Builtin::Rollback) => self.rollback_all(task).await,
            _ if (task.local || task.once) && !self.once_done.insert(task.name.clone()) => Ok(()),
            _ if task.local => {
                let Some(first) = self.hosts.iter().find(|h| h.active) else {
                    return Ok(());
                };
                // This machine as a host with the first host's variables: its dynamic variables
                // are evaluated here, where the task runs.
                let mut controller = HostRun {
                    host: Host {
                        name: "local".into(),
                        ..first.host.clone()
                    },
                    vars: first.vars.clone(),
                    backend: if self.shared.options.dry_run {
                        Backend::DryRun(transport::dry_run::DryRun::default())
                    } else {
                        Backend::Local(transport::local::Local)
                    },
                    deploy_path: first.deploy_path.clone(),
                    state: first.state.clone(),
                    locked: false,
                    failure: None,
                    switched_from: first.switched_from.clone(),
                    active: true,
                    checks: Vec::new(),
                };
                run_on_host(&self.shared, &mut controller, std::slice::from_ref(task)).await;
                self.controller_failure = controller.failure;
                Ok(())
            }
            _ if task.once => {
                let shared = &self.shared;
                if let Some(host) = self
                    .hosts
                    .iter_mut()
                    .find(|h| h.active && task.applies_to(&h.host.roles))
                {
                    run_on_host(shared, host, std::slice::from_ref(task)).await;
                }
                Ok(())
            }
            _ => {
                self.segment(std::slice::from_ref(task)).await;
                Ok(())
            }
        }
    }

    /// All failures so far, as one error, or Ok if every host is fine.
    fn check(&self) -> Result<()> {
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

    /// Take the lock on every host at once; read each host's state under it. If any host is
    /// locked already, release what was taken and report the holders.
    async fn lock_all(&mut self, task: &str) -> Result<()> {
        let shared = &self.shared;
        let outputs = join_all(self.hosts.iter().map(|h| async move {
            let command = format!(
                "{}\n{}",
                shared.lock.acquire_command(&h.deploy_path),
                release::state_command(&h.deploy_path)
            );
            let started = Instant::now();
            if h.backend.is_dry_run() {
                shared.reporter.emit(Event::DryRun {
                    host: &h.host.name,
                    task,
                    command: &shared.lock.acquire_command(&h.deploy_path),
                });
                // A dry run takes no lock, but reads the state to name the release truly.
                let state = h
                    .backend
                    .read(&release::state_command(&h.deploy_path))
                    .await;
                return (state, command, started.elapsed());
            }
            (
                h.backend.capture(&command).await,
                command,
                started.elapsed(),
            )
        }))
        .await;
        let mut held = Vec::new();
        let mut taken = Vec::new();
        for (host, (output, command, duration)) in self.hosts.iter_mut().zip(outputs) {
            let first = output.stdout.lines().next().unwrap_or_default();
            // A dry run takes no lock, but must still have read the host.
            let dry_read = host.backend.is_dry_run() && output.success();
            if dry_read || (output.success() && first == lock::TAKEN) {
                host.locked = true;
                host.state = HostState::parse(&output.stdout);
                if !host.backend.is_dry_run() {
                    taken.push((host.host.name.clone(), command, duration));
                }
            } else if output.success() && first == lock::HELD {
                // The holder's record: the lines after HELD, before the state sections.
                let record: String = output
                    .stdout
                    .lines()
                    .skip(1)
                    .take_while(|line| !line.starts_with(release::SECTION))
                    .collect::<Vec<_>>()
                    .join("\n");
                held.push((host.host.name.clone(), lock::describe_holder(&record)));
            } else {
                let failure = capture_failure(&host.host.name, task, &command, &output);
                self.shared.reporter.emit(Event::TaskStarted {
                    host: &host.host.name,
                    task,
                    command: &command,
                });
                self.shared.reporter.emit(Event::HostFailed {
                    host: &host.host.name,
                    task,
                    message: &failure.reason.clone().unwrap_or_default(),
                });
                host.failure = Some(failure);
            }
        }
        if !held.is_empty() {
            self.unlock_remaining().await;
            return Err(Error::LockHeld(held));
        }
        self.check()?;
        // One release name for every host, later than any release already there.
        let existing: Vec<&str> = self
            .hosts
            .iter()
            .flat_map(|h| h.state.releases.iter().map(String::as_str))
            .collect();
        self.shared.release = release::next_name(now(), &existing);
        for host in &mut self.hosts {
            host.vars.set("release_name", self.shared.release.clone());
            host.vars.set(
                "previous_release",
                host.state.current.clone().unwrap_or_default(),
            );
        }
        // The deploy is announced once its release has a name: before the lock's own reports.
        if self.deploying {
            let names: Vec<String> = self.hosts.iter().map(|h| h.host.name.clone()).collect();
            self.shared.reporter.emit(Event::DeployStarted {
                release: &self.shared.release,
                hosts: &names,
            });
        }
        for (host, command, duration) in taken {
            let reporter = self.shared.reporter;
            reporter.emit(Event::TaskStarted {
                host: &host,
                task,
                command: &command,
            });
            reporter.emit(Event::TaskFinished {
                host: &host,
                result: &ok_result(task, &command, duration),
            });
        }
        Ok(())
    }

    /// The fleet barrier: switch every host to the new release at once.
    async fn switch_all(&mut self, task: &Task) -> Result<()> {
        let targets: Vec<Option<(String, Vec<LogEntry>)>> = self
            .hosts
            .iter()
            .map(|h| {
                h.active.then(|| {
                    (
                        self.shared.release.clone(),
                        vec![self.log_entry(Status::Live, true)],
                    )
                })
            })
            .collect();
        self.switch_fleet(&task.name, targets).await
    }

    /// Switch each host to its target (and append its log entries); if any host fails, switch
    /// the others back. Exit 5 if even that fails.
    async fn switch_fleet(
        &mut self,
        task: &str,
        targets: Vec<Option<(String, Vec<LogEntry>)>>,
    ) -> Result<()> {
        let reporter = self.shared.reporter;
        let chosen: Vec<(usize, &(String, Vec<LogEntry>))> = targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (i, t)))
            .collect();
        let hosts = &self.hosts;
        let results = join_all(chosen.iter().map(|(i, (target, log))| async move {
            let h = &hosts[*i];
            let mut script = switch_command(&h.deploy_path, target, h.state.current.as_deref());
            for entry in log {
                script.push_str(&format!(" && {}", entry.append_command(&h.deploy_path)));
            }
            h.backend
                .run(&h.host.name, &[Command::new(task, script)], reporter)
                .await
        }))
        .await;
        let mut failed = false;
        for ((i, (target, _)), results) in chosen.iter().zip(results) {
            let host = &mut self.hosts[*i];
            match results.iter().find(|r| r.failed()) {
                Some(result) => {
                    host.failure = Some(step_failure(&host.host.name, result));
                    failed = true;
                }
                None if host.backend.is_dry_run() => {}
                None => {
                    host.switched_from =
                        Some((host.state.current.clone(), host.state.previous.clone()));
                    reporter.emit(Event::Switched {
                        host: &host.host.name,
                        release: target,
                    });
                }
            }
        }
        if !failed {
            self.switched = true;
            return Ok(());
        }
        // Put the hosts that switched back where they were: the fleet must not stay half-switched.
        let reverts = join_all(self.hosts.iter().filter(|h| h.switched_from.is_some()).map(
            |h| async move {
                let (current, previous) = h.switched_from.clone().unwrap_or_default();
                let command =
                    revert_command(&h.deploy_path, current.as_deref(), previous.as_deref());
                (
                    h.host.name.clone(),
                    h.backend.capture(&command).await,
                    current,
                )
            },
        ))
        .await;
        let mut stuck = Vec::new();
        for (name, output, current) in reverts {
            if output.success() {
                let to = current.unwrap_or_else(|| "(none)".into());
                reporter.emit(Event::RolledBack {
                    host: &name,
                    from: &self.shared.release,
                    to: &to,
                });
                if let Some(h) = self.hosts.iter_mut().find(|h| h.host.name == name) {
                    h.switched_from = None;
                }
            } else {
                stuck.push(name);
            }
        }
        if !stuck.is_empty() {
            let problems: Vec<String> = stuck
                .iter()
                .map(|host| {
                    format!("host `{host}`: could not be switched back after the failed switch")
                })
                .collect();
            return Err(self.inconsistent(problems).await);
        }
        self.check()
    }

    /// Before the switch: the `pre_switch` checks against the new release on every active host.
    /// A failure is the host's failure: nothing switches.
    async fn pre_switch_checks(&mut self) {
        let failures = self.run_checks(Phase::PreSwitch).await;
        for (name, message) in failures {
            self.shared.reporter.emit(Event::HostFailed {
                host: &name,
                task: "health check (pre_switch)",
                message: &message,
            });
            if let Some(host) = self.hosts.iter_mut().find(|h| h.host.name == name) {
                host.failure = Some(StepFailure {
                    host: name.clone(),
                    task: "health check (pre_switch)".into(),
                    command: String::new(),
                    status: None,
                    reason: Some(message),
                    stderr_tail: String::new(),
                });
            }
        }
    }

    /// After the switch and the post-switch tasks: the `post_switch` checks on the active hosts.
    /// If any fails, every switched host goes back to its previous release (verified the same
    /// way) and the deploy ends with exit 4, or 5 if some host could not be restored.
    async fn verify_switch(&mut self, only_active: bool) -> Result<()> {
        let failures = self.run_checks(Phase::PostSwitch).await;
        if failures.is_empty() {
            return Ok(());
        }
        self.roll_back_switched(failures.clone(), only_active)
            .await?;
        Err(Error::HealthFailed {
            release: self.shared.release.clone(),
            failures: failures
                .iter()
                .map(|(host, why)| format!("host `{host}`: {why}"))
                .collect(),
        })
    }

    /// Run the health checks of `phase` on the active hosts, concurrently; (host, why) per failure.
    async fn run_checks(&mut self, phase: Phase) -> Vec<(String, String)> {
        // Dynamic variables the checks use are evaluated on each host first.
        let mut failed = Vec::new();
        for host in self
            .hosts
            .iter_mut()
            .filter(|h| h.active && h.failure.is_none())
        {
            let mut needed = Vec::new();
            for check in host.checks.iter().filter(|c| c.phase == phase) {
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
            if host.backend.is_dry_run() {
                continue;
            }
            if let Err(failure) = evaluate_dynamic(host, "health check", needed).await {
                failed.push((host.host.name.clone(), failure.reason.unwrap_or_default()));
            }
        }
        let mut failures = self.run_checks_now(phase).await;
        failures.extend(failed);
        failures
    }

    async fn run_checks_now(&self, phase: Phase) -> Vec<(String, String)> {
        let reporter = self.shared.reporter;
        // Before the switch the new release is checked; after it, what `current` serves.
        let cwd_var = if phase == Phase::PreSwitch {
            "release_path"
        } else {
            "current_path"
        };
        let results = join_all(
            self.hosts
                .iter()
                .filter(|h| h.active && h.failure.is_none())
                .map(|h| async move {
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
                        if h.backend.is_dry_run() {
                            reporter.emit(Event::DryRun {
                                host: &h.host.name,
                                task: &format!("health check {}", label),
                                command: &command,
                            });
                            continue;
                        }
                        let mut verdict = Err(String::new());
                        for attempt in 1..=check.attempts {
                            let started = Instant::now();
                            // The check's own timeout bounds it, whatever the command does.
                            let limit = check.timeout + Duration::from_secs(2);
                            let output = match tokio::time::timeout(
                                limit,
                                h.backend.capture(&command),
                            )
                            .await
                            {
                                Ok(output) => output,
                                Err(_) => transport::Output {
                                    status: None,
                                    reason: Some(format!(
                                        "timed out after {}",
                                        transport::human_duration(check.timeout)
                                    )),
                                    stdout: String::new(),
                                    stderr: format!(
                                        "timed out after {}",
                                        transport::human_duration(check.timeout)
                                    ),
                                },
                            };
                            verdict = check.judge(
                                output.status,
                                &output.stdout,
                                &output.stderr,
                                started.elapsed(),
                            );
                            let detail = match &verdict {
                                Ok(summary) => summary.clone(),
                                Err(why) => why.clone(),
                            };
                            reporter.emit(Event::HealthChecked {
                                host: &h.host.name,
                                check: label,
                                attempt,
                                attempts: check.attempts,
                                ok: verdict.is_ok(),
                                detail: &detail,
                            });
                            if verdict.is_ok() {
                                break;
                            }
                            if attempt < check.attempts {
                                tokio::time::sleep(check.interval).await;
                            }
                        }
                        if let Err(why) = verdict {
                            failures.push(format!("health check `{}` failed: {why}", label));
                        }
                    }
                    (h.host.name.clone(), failures)
                }),
        )
        .await;
        results
            .into_iter()
            .flat_map(|(host, failures)| failures.into_iter().map(move |f| (host.clone(), f)))
            .collect()
    }

    /// Put every switched host (or only the active ones) back on the release it had, re-run the
    /// post-switch tasks there, verify with the same checks; mark the new release failed. Exit 5
    /// (`Inconsistent`) when some host could not be restored or does not pass its checks.
    async fn roll_back_switched(
        &mut self,
        reasons: Vec<(String, String)>,
        only_active: bool,
    ) -> Result<()> {
        let failed = self.log_entry(Status::Failed, true);
        let release = self.shared.release.clone();
        let reverts = join_all(
            self.hosts
                .iter()
                .filter(|h| h.switched_from.is_some() && (h.active || !only_active))
                .map(|h| {
                    let (current, previous) = h.switched_from.clone().unwrap_or_default();
                    let command = format!(
                        "{} && {}",
                        revert_command(&h.deploy_path, current.as_deref(), previous.as_deref()),
                        failed.append_command(&h.deploy_path)
                    );
                    async move {
                        (
                            h.host.name.clone(),
                            h.backend.capture(&command).await,
                            current,
                        )
                    }
                }),
        )
        .await;
        let mut stuck = Vec::new();
        let mut restored = Vec::new();
        for (name, output, current) in reverts {
            if !output.success() {
                stuck.push(name);
                continue;
            }
            let to = current.clone().unwrap_or_else(|| "(none)".into());
            self.shared.reporter.emit(Event::RolledBack {
                host: &name,
                from: &release,
                to: &to,
            });
            if let Some(h) = self.hosts.iter_mut().find(|h| h.host.name == name) {
                h.switched_from = None;
                if let Some(current) = current {
                    h.vars.set("release_name", current);
                    restored.push(name);
                }
            }
        }
        self.switched = self.hosts.iter().any(|h| h.switched_from.is_some());
        // The restored hosts run their post-switch tasks again and must pass the same checks.
        let was_active: Vec<bool> = self.hosts.iter().map(|h| h.active).collect();
        for h in &mut self.hosts {
            h.active = restored.contains(&h.host.name);
        }
        let mut unhealthy = Vec::new();
        if let Ok(post_switch) = self.shared.tasks.post_switch() {
            self.segment(&post_switch).await;
        }
        for h in &self.hosts {
            if let Some(failure) = h.failure.as_ref().filter(|_| h.active) {
                unhealthy.push((h.host.name.clone(), failure.to_string()));
            }
        }
        unhealthy.extend(self.run_checks(Phase::PostSwitch).await);
        for (h, active) in self.hosts.iter_mut().zip(was_active) {
            h.active = active;
        }
        let summary: Vec<String> = reasons
            .iter()
            .map(|(host, why)| format!("host `{host}`: {why}"))
            .collect();
        if !stuck.is_empty() || !unhealthy.is_empty() {
            let mut message = format!(
                "release {release} failed its health checks:\n  {}",
                summary.join("\n  ")
            );
            for (host, why) in &unhealthy {
                message.push_str(&format!("\n  after the rollback, host `{host}`: {why}"));
            }
            self.shared.reporter.emit(Event::Note { message: &message });
            let mut problems: Vec<String> = stuck
                .iter()
                .map(|host| {
                    format!("host `{host}`: could not be switched back to its previous release")
                })
                .collect();
            problems.extend(unhealthy.iter().map(|(host, why)| {
                format!("host `{host}`: switched back, but the previous release is not healthy either: {why}")
            }));
            return Err(self.inconsistent(problems).await);
        }
        let message = if restored.is_empty() {
            "there was no release before this one: `current` was removed again".to_string()
        } else {
            format!(
                "rolled back {} host{} to the release {} had before; verified",
                restored.len(),
                if restored.len() == 1 { "" } else { "s" },
                if restored.len() == 1 { "it" } else { "they" }
            )
        };
        self.shared.reporter.emit(Event::Note { message: &message });
        Ok(())
    }

    /// Exit 5: say exactly where each host's `current` points.
    async fn inconsistent(&self, problems: Vec<String>) -> Error {
        let mut lines = Vec::new();
        for h in &self.hosts {
            let output = h
                .backend
                .capture(&format!("readlink {}/current", quote(&h.deploy_path)))
                .await;
            let points = if output.success() {
                output.stdout.trim().to_string()
            } else {
                "unknown (unreachable)".into()
            };
            lines.push((h.host.name.clone(), points));
        }
        Error::Inconsistent {
            problems,
            current: lines,
        }
    }

    /// The rollback barrier: all hosts to one older live release (or `--to`), or nothing changes.
    async fn rollback_all(&mut self, task: &Task) -> Result<()> {
        let to = self.shared.options.rollback_to.as_deref();
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
        let target = chosen[0].clone();
        let targets: Vec<(String, Vec<LogEntry>)> = self
            .hosts
            .iter()
            .map(|h| {
                let abandoned = h.state.current.clone().unwrap_or_default();
                let statuses = h.state.statuses();
                let mut entry = statuses
                    .get(abandoned.as_str())
                    .map(|e| (*e).clone())
                    .unwrap_or_else(|| LogEntry {
                        release: abandoned.clone(),
                        status: Status::RolledBack,
                        revision: None,
                        branch: None,
                        user: self.shared.who.clone(),
                        started_at: String::new(),
                        finished_at: None,
                    });
                entry.status = Status::RolledBack;
                entry.finished_at = Some(release::now_rfc3339());
                (target.clone(), vec![entry])
            })
            .collect();
        self.switch_fleet(&task.name, targets.into_iter().map(Some).collect())
            .await?;
        for h in &mut self.hosts {
            let from = h.state.current.clone().unwrap_or_default();
            if h.backend.is_dry_run() {
                let message = format!(
                    "[{}] dry run: would go back to {target} (from {from})",
                    h.host.name
                );
                self.shared.reporter.emit(Event::Note { message: &message });
            } else {
                self.shared.reporter.emit(Event::RolledBack {
                    host: &h.host.name,
                    from: &from,
                    to: &target,
                });
            }
            h.vars.set("release_name", target.clone());
            h.vars.set("previous_release", from);
        }
        self.shared.release = target;
        Ok(())
    }

    /// `--revision R`: under the lock, update the first host's mirror and resolve R to the one
    /// commit every host will archive; an unknown revision stops the deploy before any release.
    async fn resolve_pending_revision(&mut self) -> Result<()> {
        let Some(revision) = self.pending_revision.take() else {
            return Ok(());
        };
        let Some(host) = self.hosts.first() else {
            return Ok(());
        };
        if host.backend.is_dry_run() {
            self.set_revision(revision);
            return Ok(());
        }
        let repository = host
            .vars
            .value_string("repository")
            .map_err(|message| Error::Config {
                path: self.shared.project.deployfile.clone(),
                message,
            })?;
        let command = format!(
            "set -e\ncd {}/.dep\n{}\ngit -C repo rev-parse --verify --quiet {}",
            quote(&host.deploy_path),
            mirror_command(&repository),
            quote(&format!("{revision}^{{commit}}"))
        );
        let output = host.backend.capture(&command).await;
        let commit = output.stdout.trim().to_string();
        if !output.success() || commit.is_empty() {
            let detail = output.stderr.trim();
            return Err(Error::Local(format!(
                "revision `{revision}` not found in `{repository}` (looked up on host `{}`){}",
                host.host.name,
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(":\n{detail}")
                }
            )));
        }
        self.set_revision(commit);
        Ok(())
    }

    fn set_revision(&mut self, revision: String) {
        for host in &mut self.hosts {
            host.vars.set("revision", revision.clone());
        }
        self.shared.revision = revision;
    }

    /// After a failure before the switch: mark the release failed where it was created, unlock.
    async fn abort(&mut self) {
        let failed = self.log_entry(Status::Failed, true);
        let release = self.shared.release.clone();
        join_all(
            self.hosts
                .iter()
                .filter(|h| h.locked && h.switched_from.is_none())
                .map(|h| {
                    let mark = format!(
                        "if [ -d {dp}/releases/{r} ]; then {append}; fi",
                        dp = quote(&h.deploy_path),
                        r = quote(&release),
                        append = failed.append_command(&h.deploy_path)
                    );
                    async move { h.backend.capture(&mark).await }
                }),
        )
        .await;
    }

    /// Release every lock this run still holds (after success, failure or Ctrl-C).
    async fn unlock_remaining(&mut self) {
        let lock = &self.shared.lock;
        let reporter = self.shared.reporter;
        let outputs = join_all(self.hosts.iter().filter(|h| h.locked).map(|h| async move {
            let command = lock.release_command(&h.deploy_path);
            if h.backend.is_dry_run() {
                reporter.emit(Event::DryRun {
                    host: &h.host.name,
                    task: "deploy:unlock",
                    command: &command,
                });
            }
            (h.host.name.clone(), h.backend.capture(&command).await)
        }))
        .await;
        for (name, output) in outputs {
            if output.success() {
                if let Some(h) = self.hosts.iter_mut().find(|h| h.host.name == name) {
                    h.locked = false;
                }
            } else {
                let message = format!(
                    "could not release the lock: {}",
                    output.reason.unwrap_or(output.stderr)
                );
                reporter.emit(Event::HostFailed {
                    host: &name,
                    task: "deploy:unlock",
                    message: &message,
                });
            }
        }
    }

    fn log_entry(&self, status: Status, finished: bool) -> LogEntry {
        LogEntry {
            release: self.shared.release.clone(),
            status,
            revision: Some(self.shared.revision.clone()).filter(|r| !r.is_empty()),
            branch: Some(self.shared.branch.clone()).filter(|b| !b.is_empty()),
            user: self.shared.who.clone(),
            started_at: self.shared.started_at.clone(),
            finished_at: finished.then(release::now_rfc3339),
        }
    }
}

/// Run `tasks` on one host: commands travel in as few scripts as possible, split only where a
/// dynamic variable must be evaluated first (it may depend on what earlier steps did).
async fn run_on_host(shared: &Shared<'_>, host: &mut HostRun, tasks: &[Arc<Task>]) {
    let mut pending: Vec<Command> = Vec::new();
    let mut pending_unlock = false;
    let tasks: Vec<Arc<Task>> = tasks
        .iter()
        .filter(|t| t.applies_to(&host.host.roles))
        .cloned()
        .collect();
    for task in &tasks {
        let needed = match dynamic_needed(task, &host.vars) {
            Ok(needed) => needed,
            Err(message) => {
                let failure = render_failure(host, task, message);
                fail(shared, host, failure);
                break;
            }
        };
        if !needed.is_empty() && !host.backend.is_dry_run() {
            if !flush(shared, host, &mut pending, &mut pending_unlock).await {
                return;
            }
            if let Err(failure) = evaluate_dynamic(host, &task.name, needed).await {
                fail(shared, host, failure);
                return;
            }
        }
        match commands_for(shared, task, host) {
            Ok(commands) => pending.extend(commands),
            Err(message) => {
                let failure = render_failure(host, task, message);
                fail(shared, host, failure);
                break;
            }
        }
        pending_unlock |= task.action == Action::Builtin(Builtin::Unlock);
    }
    flush(shared, host, &mut pending, &mut pending_unlock).await;
}

/// Send the pending commands; false if one failed (the failure is recorded on the host).
async fn flush(
    shared: &Shared<'_>,
    host: &mut HostRun,
    pending: &mut Vec<Command>,
    unlock: &mut bool,
) -> bool {
    if pending.is_empty() || host.failure.is_some() {
        return host.failure.is_none();
    }
    let results = host
        .backend
        .run(&host.host.name, pending, shared.reporter)
        .await;
    pending.clear();
    if let Some(failed) = results.iter().find(|r| r.failed()) {
        host.failure = Some(step_failure(&host.host.name, failed));
        return false;
    }
    if std::mem::take(unlock) {
        host.locked = false;
    }
    true
}

fn dynamic_needed(task: &Task, vars: &Vars) -> Result<Vec<String>, String> {
    let mut sources: Vec<&str> = Vec::new();
    match &task.action {
        Action::Run(commands) => sources.extend(commands.iter().map(String::as_str)),
        Action::Upload { from, to } => sources.extend([from.as_str(), to.as_str()]),
        Action::Template { dest, .. } => sources.push(dest),
        Action::Steps(_) => {}
        // Builtins use the layout variables, which may themselves be dynamic.
        Action::Builtin(_) => sources.extend(["{{ deploy_path }}", "{{ release_path }}"]),
    }
    sources.extend(task.cwd.as_deref());
    sources.extend(task.condition.as_deref());
    sources.extend(task.env.iter().map(|(_, v)| v.as_str()));
    let mut needed = Vec::new();
    for source in sources {
        for name in vars.dynamic_needed(source)? {
            if !needed.contains(&name) {
                needed.push(name);
            }
        }
    }
    Ok(needed)
}

/// The commands `task` runs on `host`, rendered.
fn commands_for(shared: &Shared<'_>, task: &Task, host: &HostRun) -> Result<Vec<Command>, String> {
    let vars = &host.vars;
    let render = |text: &str| vars.render(&task.name, text);
    let dp = &host.deploy_path;
    let release = vars.value_string("release_name")?;
    let release_path = vars.value_string("release_path")?;
    let script = match &task.action {
        Action::Run(commands) => {
            let rendered: Vec<String> = commands
                .iter()
                .map(|c| render(c))
                .filter(|c| c.as_ref().map_or(true, |c| !c.trim().is_empty()))
                .collect::<Result<_, _>>()?;
            // A command that renders to nothing (a disabled `{% if %}`) is no work at all.
            if rendered.is_empty() {
                return Ok(Vec::new());
            }
            if rendered.len() == 1 {
                rendered.into_iter().next().unwrap_or_default()
            } else {
                rendered
                    .iter()
                    .map(|c| format!("{{\n{}\n}}", c.trim_end()))
                    .collect::<Vec<_>>()
                    .join(" &&\n")
            }
        }
        Action::Upload { from, to } => {
            let path = shared.project.root.join(render(from)?);
            // Packed when first needed (a `local` build task may have just made it), once.
            let payload = if host.backend.is_dry_run() && !path.exists() {
                Arc::default()
            } else {
                shared.packed(&path)?
            };
            let to = render(to)?;
            let mut command = Command::new(
                &task.name,
                format!("mkdir -p {to} && tar -xzf - -C {to}", to = quote(&to)),
            );
            command.stdin = Some(payload);
            return Ok(vec![finish(command, task, vars)?]);
        }
        Action::Template { src, dest, mode } => {
            let path = shared.project.root.join("templates").join(render(src)?);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read template `{}`: {e}", path.display()))?;
            let content = vars.render(&path.display().to_string(), &text)?;
            write_file_command(&render(dest)?, &content, mode.as_deref().unwrap_or("0644"))
        }
        Action::Steps(_) => return Ok(Vec::new()),
        Action::Builtin(Builtin::Release) => {
            let entry = LogEntry {
                release: release.clone(),
                status: Status::Prepared,
                revision: Some(shared.revision.clone()).filter(|r| !r.is_empty()),
                branch: Some(shared.branch.clone()).filter(|b| !b.is_empty()),
                user: shared.who.clone(),
                started_at: shared.started_at.clone(),
                finished_at: None,
            };
            format!(
                "mkdir {} && {}",
                quote(&release_path),
                entry.append_command(dp)
            )
        }
        Action::Builtin(Builtin::UpdateCode) => match vars.value_string("strategy")?.as_str() {
            "upload" | "artifact" => {
                let mut command = Command::new(
                    &task.name,
                    format!("tar -xzf - -C {}", quote(&release_path)),
                );
                command.stdin = shared
                    .payloads
                    .lock()
                    .ok()
                    .and_then(|p| p.get(&PathBuf::from("<code>")).cloned());
                return Ok(vec![finish(command, task, vars)?]);
            }
            _ => {
                let repository = vars.value_string("repository")?;
                format!(
                    "set -e\ncd {dp}/.dep\n{mirror}\n\
                     git -C repo archive {rev} | tar -x -f - -C {rp}\n\
                     printf '%s\\n' {rev} > {rp}/REVISION",
                    dp = quote(dp),
                    mirror = mirror_command(&repository),
                    rev = quote(&shared.revision),
                    rp = quote(&release_path),
                )
            }
        },
        Action::Builtin(Builtin::Cleanup) => {
            let keep: usize = vars
                .value_string("keep_releases")?
                .parse()
                .map_err(|_| "`keep_releases` must be a number".to_string())?;
            let mut state = host.state.clone();
            if !release.is_empty() && !state.releases.contains(&release) {
                state.releases.push(release.clone());
                state.releases.sort();
            }
            if let Some((old_current, _)) = &host.switched_from {
                state.previous = old_current.clone();
                state.current = Some(release.clone());
            }
            let remove = release::to_remove(&state, keep, &[release.as_str()]);
            if remove.is_empty() {
                "true".to_string()
            } else {
                let names: Vec<String> = remove.iter().map(|r| quote(r)).collect();
                format!("cd {}/releases && rm -rf -- {}", quote(dp), names.join(" "))
            }
        }
        Action::Builtin(Builtin::Unlock) if shared.force_unlock => {
            LockInfo::force_release_command(dp)
        }
        Action::Builtin(Builtin::Unlock) => shared.lock.release_command(dp),
        Action::Builtin(Builtin::Dotenv) => {
            if !truthy(&vars.value_json("dotenv_render")?) {
                return Ok(Vec::new());
            }
            let content = dotenv_content(shared, vars)?;
            let dest = vars.value_string("dotenv_path")?;
            write_file_command(&dest, &content, "0640")
        }
        Action::Builtin(other) => return Err(format!("`{other:?}` runs only as a fleet barrier")),
    };
    Ok(vec![finish(Command::new(&task.name, script), task, vars)?])
}

/// Write `content` to `dest` with `mode`, atomically (a temporary file renamed over it).
fn write_file_command(dest: &str, content: &str, mode: &str) -> String {
    let tmp = format!("{dest}.dep-tmp");
    format!(
        "mkdir -p \"$(dirname {d})\" && (umask 077 && printf '%s' {c} > {t}) && chmod {m} {t} && mv -f {t} {d}",
        d = quote(dest),
        t = quote(&tmp),
        c = quote(content),
        m = quote(mode),
    )
}

/// The layered `.env`: `.env.example` < `.env.<stage>` (files beside the Deployfile, both
/// optional) < `DEP_ENV_NAME` variables < the environment variables named in `secrets`.
fn dotenv_content(shared: &Shared<'_>, vars: &Vars) -> Result<String, String> {
    let mut entries = Vec::new();
    for variable in ["dotenv_example", "dotenv_stage_file"] {
        let name = vars.value_string(variable)?;
        if name.is_empty() {
            continue;
        }
        let path = shared.project.root.join(&name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                crate::config::dotenv::layer(&mut entries, crate::config::dotenv::parse(&text))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
        }
    }
    let mut from_env: Vec<(String, String)> = std::env::vars()
        .filter_map(|(key, value)| Some((key.strip_prefix("DEP_ENV_")?.to_string(), value)))
        .filter(|(key, _)| !key.is_empty())
        .collect();
    from_env.sort();
    crate::config::dotenv::layer(&mut entries, from_env);
    let secrets = shared
        .project
        .secrets
        .iter()
        .filter_map(|name| Some((name.clone(), std::env::var(name).ok()?)));
    crate::config::dotenv::layer(&mut entries, secrets);
    Ok(crate::config::dotenv::render(&entries))
}

fn truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => matches!(s.as_str(), "1" | "true" | "yes" | "on"),
        serde_json::Value::Number(n) => n.as_f64() != Some(0.0),
        _ => false,
    }
}

impl Shared<'_> {
    /// The code the upload and artifact strategies send, packed once for every host.
    fn code(&self, bytes: Payload) {
        if let Ok(mut payloads) = self.payloads.lock() {
            payloads.insert(PathBuf::from("<code>"), bytes);
        }
    }

    /// `path` packed with tar+gzip, once per run whatever the number of hosts.
    fn packed(&self, path: &std::path::Path) -> Result<Payload, String> {
        let mut payloads = self
            .payloads
            .lock()
            .map_err(|_| "the upload cache is unusable".to_string())?;
        if let Some(payload) = payloads.get(path) {
            return Ok(payload.clone());
        }
        let payload: Payload = Arc::new(crate::fleet::archive::pack(path, &[])?);
        payloads.insert(path.to_path_buf(), payload.clone());
        Ok(payload)
    }
}

/// Clone the repository as a mirror in `.dep/repo`, or bring the mirror up to date.
fn mirror_command(repository: &str) -> String {
    format!(
        "if [ -d repo ]; then git -C repo remote set-url origin {repo} && git -C repo remote update --prune >/dev/null; \
         else git clone --mirror --quiet {repo} repo; fi",
        repo = quote(repository)
    )
}

/// Resolve a reference of `repository` to a commit on this machine, once for all hosts.
/// Annotated tags resolve to the commit they point at.
async fn ls_remote(repository: &str, reference: &str, label: &str) -> Result<String> {
    let command = format!(
        "git ls-remote -- {} {} {}",
        quote(repository),
        quote(reference),
        quote(&format!("{reference}^{{}}"))
    );
    let output = transport::local::Local.capture(&command).await;
    if !output.success() {
        return Err(Error::Local(format!(
            "cannot read `{repository}` with `{command}`:\n{}",
            output.stderr.trim()
        )));
    }
    let refs: Vec<(&str, &str)> = output
        .stdout
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    let peeled = format!("{reference}^{{}}");
    refs.iter()
        .find(|(_, name)| *name == peeled)
        .or_else(|| refs.iter().find(|(_, name)| *name == reference))
        .map(|(commit, _)| commit.to_string())
        .ok_or_else(|| Error::Local(format!("{label} not found in `{repository}`")))
}

/// Apply a task's cwd, env, condition, retries and timeout to its command.
fn finish(mut command: Command, task: &Task, vars: &Vars) -> Result<Command, String> {
    let render = |text: &str| vars.render(&task.name, text);
    command.cwd = task.cwd.as_deref().map(render).transpose()?;
    command.env = task
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), render(v)?)))
        .collect::<Result<_, String>>()?;
    command.condition = task.condition.as_deref().map(render).transpose()?;
    command.retries = task.retries;
    command.timeout = task.timeout;
    command.continue_on_failure = task.continue_on_failure;
    Ok(command)
}

/// Point `current` at `releases/NEW` by renaming a temporary symlink over it; `previous` at the
/// release that was current. Both links are relative, so the deploy path can move.
fn switch_command(deploy_path: &str, new: &str, old: Option<&str>) -> String {
    let mut script = format!(
        "cd {dp} && [ -d releases/{new} ] && ",
        dp = quote(deploy_path),
        new = quote(new)
    );
    if let Some(old) = old.filter(|o| *o != new) {
        script.push_str(&format!(
            "ln -sfn releases/{o} previous.dep-tmp && mv -fT previous.dep-tmp previous && ",
            o = quote(old)
        ));
    }
    script.push_str(&format!(
        "ln -sfn releases/{n} current.dep-tmp && mv -fT current.dep-tmp current",
        n = quote(new)
    ));
    script
}

fn revert_command(deploy_path: &str, current: Option<&str>, previous: Option<&str>) -> String {
    let link = |name: &str, target: Option<&str>| match target {
        Some(t) => format!(
            "ln -sfn releases/{t} {name}.dep-tmp && mv -fT {name}.dep-tmp {name}",
            t = quote(t)
        ),
        None => format!("rm -f {name}"),
    };
    format!(
        "cd {} && {} && {}",
        quote(deploy_path),
        link("current", current),
        link("previous", previous)
    )
}

fn now() -> chrono::NaiveDateTime {
    // DEP_NOW (YYYYMMDDHHMMSS) pins the clock for reproducible release names in tests.
    std::env::var("DEP_NOW")
        .ok()
        .and_then(|n| chrono::NaiveDateTime::parse_from_str(&n, release::NAME_FORMAT).ok())
        .unwrap_or_else(|| Utc::now().naive_utc())
}

fn template_error(task: &Task, host: &Host, message: String) -> Error {
    // Point at the undefined variable (or the task) in the file that defines the task.
    let needle = message
        .strip_prefix("undefined variable `")
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string);
    let location = crate::config::recipe::source_text(&task.file).and_then(|text| {
        crate::config::recipe::locate_in_task(&text, &task.name, needle.as_deref())
    });
    Error::Template {
        file: task.file.clone(),
        task: task.name.clone(),
        message: format!("host `{}`: {message}", host.name),
        location,
    }
}

/// Evaluate dynamic variables `names` on the host, in order, caching each value there; the
/// first that fails is the failure of `task`.
async fn evaluate_dynamic(
    host: &mut HostRun,
    task: &str,
    names: Vec<String>,
) -> Result<(), StepFailure> {
    for name in names {
        let command = host
            .vars
            .dynamic_command(&name)
            .map_err(|message| StepFailure {
                host: host.host.name.clone(),
                task: task.to_string(),
                command: String::new(),
                status: None,
                reason: Some(message),
                stderr_tail: String::new(),
            })?;
        let output = host.backend.capture(&command).await;
        if !output.success() {
            let mut failure = capture_failure(&host.host.name, task, &command, &output);
            let why = failure
                .reason
                .take()
                .unwrap_or_else(|| format!("exit status {}", output.status.unwrap_or(-1)));
            failure.reason = Some(format!("dynamic variable `{name}` failed: {why}"));
            return Err(failure);
        }
        host.vars.set_dynamic(
            &name,
            output.stdout.trim_end_matches(['\n', '\r']).to_string(),
        );
    }
    Ok(())
}

fn fail(shared: &Shared<'_>, host: &mut HostRun, failure: StepFailure) {
    report_failure(shared.reporter, &failure);
    host.failure = Some(failure);
}

/// A failure found before a command ran (a template, a dynamic variable, an upload): reported
/// now, since no task result will show it.
fn report_failure(reporter: &Reporter, failure: &StepFailure) {
    let message = failure.reason.clone().unwrap_or_default();
    reporter.emit(Event::HostFailed {
        host: &failure.host,
        task: &failure.task,
        message: &message,
    });
}

fn render_failure(host: &HostRun, task: &Task, message: String) -> StepFailure {
    StepFailure {
        host: host.host.name.clone(),
        task: task.name.clone(),
        command: String::new(),
        status: None,
        reason: Some(message),
        stderr_tail: String::new(),
    }
}

fn step_failure(host: &str, result: &StepResult) -> StepFailure {
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
        stderr_tail: last_lines(tail, 10),
    }
}

fn capture_failure(
    host: &str,
    task: &str,
    command: &str,
    output: &transport::Output,
) -> StepFailure {
    StepFailure {
        host: host.to_string(),
        task: task.to_string(),
        command: command.to_string(),
        status: output.status,
        reason: output.reason.clone(),
        stderr_tail: last_lines(&output.stderr, 10),
    }
}

fn ok_result(task: &str, command: &str, duration: std::time::Duration) -> StepResult {
    StepResult {
        task: task.to_string(),
        command: command.to_string(),
        outcome: Outcome::Ok,
        duration,
        stdout: String::new(),
        stderr: String::new(),
        tolerated: false,
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
