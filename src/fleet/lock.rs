//! Taking and releasing the deploy lock across the fleet: every host at once, each host's state
//! read under its lock in the same round trip; the release is named once the fleet is locked.

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::error::{Error, Result};
use crate::release::lock::{self, LockInfo};
use crate::release::{self, HostState};
use crate::report::Event;
use crate::transport::{Changed, Output};

use super::context::{now, Mode};
use super::failure;
use super::Fleet;

/// What taking the lock said on one host.
enum Taken {
    /// Taken (or, in a dry run, read): the host's state under the lock.
    Yes(HostState),
    /// Held by someone else: who.
    Held(String),
    /// The command failed.
    Failed,
}

impl Fleet<'_> {
    /// Take the lock on every host at once; read each host's state under it. If any host is
    /// locked already, release what was taken and report the holders.
    pub(crate) async fn lock_all(&mut self, task: &str) -> Result<()> {
        let ctx = &self.ctx;
        let outputs = join_all(self.hosts.iter().map(|h| async move {
            let acquire = ctx.lock.acquire_command(&h.deploy_path);
            let read = release::state_command(&h.deploy_path);
            let started = Instant::now();
            // A dry run takes no lock, but reads the state to name the release truly.
            let (output, changed) = h
                .backend
                .change_then_read(h.name(), task, &acquire, &read, ctx.reporter)
                .await;
            (
                output,
                changed,
                format!("{acquire}\n{read}"),
                started.elapsed(),
            )
        }))
        .await;
        let mut held = Vec::new();
        let mut taken: Vec<(String, String, Duration)> = Vec::new();
        for (host, (output, changed, command, duration)) in self.hosts.iter_mut().zip(outputs) {
            match taken_from(&output, changed) {
                Taken::Yes(state) => {
                    host.locked = true;
                    host.state = state;
                    if changed == Changed::Yes {
                        taken.push((host.host.name.clone(), command, duration));
                    }
                }
                Taken::Held(holder) => held.push((host.host.name.clone(), holder)),
                Taken::Failed => {
                    let failure = failure::of_capture(host.name(), task, &command, &output);
                    let reporter = self.ctx.reporter;
                    reporter.emit(Event::TaskStarted {
                        host: host.name(),
                        task,
                        command: &command,
                    });
                    reporter.emit(Event::HostFailed {
                        host: host.name(),
                        task,
                        message: &failure.reason.clone().unwrap_or_default(),
                    });
                    host.record(failure);
                }
            }
        }
        if !held.is_empty() {
            self.unlock_remaining().await;
            return Err(Error::LockHeld(held));
        }
        self.check()?;
        self.name_release();
        self.report_taken(task, taken);
        Ok(())
    }

    /// One release name for every host, later than any release already there; the deploy is
    /// announced once its release has a name.
    fn name_release(&mut self) {
        let existing: Vec<&str> = self
            .hosts
            .iter()
            .flat_map(|h| h.state.releases.iter().map(String::as_str))
            .collect();
        self.ctx.release = release::next_name(now(), &existing);
        for host in &mut self.hosts {
            let previous = host.state.current.clone().unwrap_or_default();
            host.set_release(&self.ctx.release, &previous);
        }
        if self.ctx.mode == Mode::Deploy {
            let names: Vec<String> = self.hosts.iter().map(|h| h.host.name.clone()).collect();
            self.ctx.reporter.emit(Event::DeployStarted {
                release: &self.ctx.release,
                hosts: &names,
            });
        }
    }

    /// The lock's own reports, after the deploy's announcement.
    fn report_taken(&self, task: &str, taken: Vec<(String, String, Duration)>) {
        let reporter = self.ctx.reporter;
        for (host, command, duration) in taken {
            reporter.emit(Event::TaskStarted {
                host: &host,
                task,
                command: &command,
            });
            reporter.emit(Event::TaskFinished {
                host: &host,
                result: &failure::ok_result(task, &command, duration),
            });
        }
    }

    /// Release every lock this run still holds (after success, failure or Ctrl-C).
    pub(crate) async fn unlock_remaining(&mut self) {
        let lock: &LockInfo = &self.ctx.lock;
        let reporter = self.ctx.reporter;
        let outputs = join_all(self.hosts.iter().filter(|h| h.locked).map(|h| async move {
            let command = lock.release_command(&h.deploy_path);
            let output = h
                .backend
                .change(h.name(), "deploy:unlock", &command, reporter)
                .await;
            (h.host.name.clone(), output)
        }))
        .await;
        for (name, output) in outputs {
            // Released, or shown by a dry run: only a failure is left to report.
            let Some(output) = output.filter(|o| !o.success()) else {
                if let Some(h) = self.hosts.iter_mut().find(|h| h.host.name == name) {
                    h.locked = false;
                }
                continue;
            };
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

fn taken_from(output: &Output, changed: Changed) -> Taken {
    if !output.success() {
        return Taken::Failed;
    }
    let first = output.stdout.lines().next().unwrap_or_default();
    if changed == Changed::No || first == lock::TAKEN {
        return Taken::Yes(HostState::parse(&output.stdout));
    }
    if first == lock::HELD {
        // The holder's record: the lines after HELD, before the state sections.
        let record: String = output
            .stdout
            .lines()
            .skip(1)
            .take_while(|line| !line.starts_with(release::SECTION))
            .collect::<Vec<_>>()
            .join("\n");
        return Taken::Held(lock::describe_holder(&record));
    }
    Taken::Failed
}
