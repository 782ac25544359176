//! Taking and releasing the deploy lock across the fleet. Two runs racing for the same hosts
//! must not both lose, so the lock is taken in two rounds: first on the fleet's leader (its
//! first host in one fixed order, the same for every run), then on every other host at once. A
//! run that does not get the leader holds nothing; the one that does gets the rest. On a held
//! lock everything taken is released again, then the run gives up (exit 3) or, with
//! `--lock-wait`, polls until the lock is free or the wait is over. Each host's state is read
//! under its lock in the same round trip; the release is named once the fleet is locked.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::config::local;
use crate::error::{Error, HeldLock, LockHeld, Result};
use crate::release::lock::{self, Here, Holder, LockInfo};
use crate::release::{self, HostState};
use crate::report::{Event, Reporter};
use crate::transport::{human_duration, Backend, Changed, Output};

use super::context::{now, Mode};
use super::failure;
use super::Fleet;

/// How often a waiting run tries the lock again (give or take a little, so that two waiting
/// runs do not keep meeting).
const POLL: Duration = Duration::from_secs(1);

/// How often a waiting run says it still waits.
const REMIND: Duration = Duration::from_secs(30);

/// What taking the lock said on one host.
enum Taken {
    /// Taken (or, in a dry run, read): the host's state under the lock.
    Yes(HostState),
    /// Held by someone else.
    Held(Holder),
    /// The command failed.
    Failed,
}

/// What one attempt at locking the fleet found.
enum Attempt {
    /// Every host is locked; what each lock command did, to report once the release is named.
    Locked(Vec<TakenReport>),
    /// Held on these hosts (by index); everything this attempt took was released again.
    Held(Vec<(usize, Holder)>),
}

/// One host's lock command that took the lock.
struct TakenReport {
    host: String,
    command: String,
    duration: Duration,
}

/// One host's answer to a lock command.
struct Answer {
    host: usize,
    output: Output,
    changed: Changed,
    command: String,
    duration: Duration,
}

impl Fleet<'_> {
    /// Lock every host (leader first, then the rest at once) and read each host's state under
    /// its lock; with `--lock-wait`, wait for a held lock. Exit 3 when it stays held.
    pub(crate) async fn lock_all(&mut self, task: &str) -> Result<()> {
        let started = Instant::now();
        let wait = self.ctx.options.lock_wait.filter(|w| !w.is_zero());
        let mut waiting = Waiting::default();
        let mut first = true;
        // Set once this run has waited: the error then says for how long it did.
        let mut waited_for = None;
        let taken = loop {
            let held = match self.try_lock(task, first).await? {
                Attempt::Locked(taken) => break taken,
                Attempt::Held(held) => held,
            };
            first = false;
            let waited = started.elapsed();
            let gone = held.iter().all(|(_, holder)| stale(holder).is_some());
            match wait {
                // A holder that is gone never lets go: waiting for it is pointless.
                Some(wait) if waited < wait && !gone && self.check().is_ok() => {
                    let left = wait - waited;
                    waiting.report(self.ctx.reporter, &self.names(&held), waited, wait);
                    waited_for = Some(wait);
                    tokio::time::sleep(poll(left)).await;
                }
                // How long it waited: the whole wait, or less when a holder was found gone.
                _ => {
                    let waited = waited_for.map(|w: Duration| w.min(started.elapsed()));
                    return Err(self.held_error(held, waited).await);
                }
            }
        };
        self.name_release();
        self.report_taken(task, taken);
        Ok(())
    }

    /// One attempt: the leader's lock, then (only when that was taken) the others' at once.
    /// The first attempt also opens the others' connections while the leader is locked.
    async fn try_lock(&mut self, task: &str, first: bool) -> Result<Attempt> {
        let order = self.lock_order();
        let Some((&leader, rest)) = order.split_first() else {
            return Ok(Attempt::Locked(Vec::new()));
        };
        let leaders = [leader];
        self.mark_locked(&leaders);
        let (answers, ()) = futures::join!(
            self.lock_commands(task, &leaders),
            self.warm_up(rest, first)
        );
        let (mut taken, mut held) = self.settle(task, answers);
        if held.is_empty() && self.hosts[leader].ok() && !rest.is_empty() {
            self.mark_locked(rest);
            let answers = self.lock_commands(task, rest).await;
            let (more, others) = self.settle(task, answers);
            taken.extend(more);
            held.extend(others);
        }
        if !held.is_empty() {
            self.unlock_remaining().await;
            return Ok(Attempt::Held(held));
        }
        self.check()?;
        Ok(Attempt::Locked(taken))
    }

    /// The hosts in the order every run locks them: by address, then deploy path, so two runs
    /// over the same hosts agree on the leader whatever their Deployfile calls them.
    fn lock_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.hosts.len()).collect();
        order.sort_by_key(|&i| {
            let h = &self.hosts[i];
            (
                h.host.hostname.clone(),
                h.host.port.unwrap_or(22),
                h.deploy_path.clone(),
                h.host.name.clone(),
            )
        });
        order
    }

    /// Hosts about to get the lock command count as locked until their answer says otherwise,
    /// so that a run stopped meanwhile (Ctrl-C) still releases what it took.
    fn mark_locked(&mut self, members: &[usize]) {
        for &i in members {
            self.hosts[i].locked = true;
        }
    }

    /// Send the lock command to `members` at once.
    async fn lock_commands(&self, task: &str, members: &[usize]) -> Vec<Answer> {
        let ctx = &self.ctx;
        let hosts = &self.hosts;
        join_all(members.iter().map(|&i| async move {
            let h = &hosts[i];
            let acquire = ctx.lock.acquire_command(&h.deploy_path);
            let read = release::state_command(&h.deploy_path);
            let started = Instant::now();
            // A dry run takes no lock, but reads the state to name the release truly.
            let (output, changed) = h
                .backend
                .change_then_read(h.name(), task, &acquire, &read, ctx.reporter)
                .await;
            Answer {
                host: i,
                output,
                changed,
                command: format!("{acquire}\n{read}"),
                duration: started.elapsed(),
            }
        }))
        .await
    }

    /// Connect to the SSH hosts of `members` (a command that does nothing), so that their lock
    /// commands do not wait for a connection after the leader's.
    async fn warm_up(&self, members: &[usize], first: bool) {
        if !first {
            return;
        }
        join_all(
            members
                .iter()
                .map(|&i| &self.hosts[i])
                .filter(|h| !matches!(h.backend, Backend::Local(_)))
                .map(|h| h.backend.read("true")),
        )
        .await;
    }

    /// Record what the lock commands found: the state under the lock where it was taken, the
    /// holder where it is held, the failure where the command failed.
    fn settle(
        &mut self,
        task: &str,
        answers: Vec<Answer>,
    ) -> (Vec<TakenReport>, Vec<(usize, Holder)>) {
        let mut taken = Vec::new();
        let mut held = Vec::new();
        let reporter = self.ctx.reporter;
        for answer in answers {
            let host = &mut self.hosts[answer.host];
            match taken_from(&answer.output, answer.changed) {
                Taken::Yes(state) => {
                    host.state = state;
                    if answer.changed == Changed::Yes {
                        taken.push(TakenReport {
                            host: host.host.name.clone(),
                            command: answer.command,
                            duration: answer.duration,
                        });
                    }
                }
                Taken::Held(holder) => {
                    host.locked = false;
                    held.push((answer.host, holder));
                }
                Taken::Failed => {
                    host.locked = false;
                    let failure =
                        failure::of_capture(host.name(), task, &answer.command, &answer.output);
                    reporter.emit(Event::TaskStarted {
                        host: host.name(),
                        task,
                        command: &answer.command,
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
        (taken, held)
    }

    fn names(&self, held: &[(usize, Holder)]) -> Vec<(String, String)> {
        held.iter()
            .map(|(i, holder)| (self.hosts[*i].host.name.clone(), holder.describe()))
            .collect()
    }

    /// Exit 3: every host's holder (the hosts not tried are read, so the message shows the
    /// whole picture), which of them are gone, and how to clear them.
    async fn held_error(&self, mut held: Vec<(usize, Holder)>, waited: Option<Duration>) -> Error {
        let unknown: Vec<usize> = (0..self.hosts.len())
            .filter(|i| held.iter().all(|(h, _)| h != i))
            .collect();
        let records = join_all(unknown.iter().map(|&i| {
            let h = &self.hosts[i];
            async move {
                (
                    i,
                    h.backend
                        .read(&LockInfo::read_command(&h.deploy_path))
                        .await,
                )
            }
        }))
        .await;
        for (i, output) in records {
            if output.success() && !output.stdout.trim().is_empty() {
                held.push((i, Holder::parse(&output.stdout)));
            }
        }
        held.sort_by_key(|(i, _)| *i);
        Error::LockHeld(LockHeld {
            held: held
                .into_iter()
                .map(|(i, holder)| HeldLock {
                    host: self.hosts[i].host.name.clone(),
                    holder: holder.describe(),
                    stale: stale(&holder),
                })
                .collect(),
            selector: self.ctx.options.selector.clone(),
            waited: waited.map(human_duration),
        })
    }

    /// One release name for every host, later than any release already there (or named in
    /// the log's last lines: a failed release's directory is gone, its name is not free); the
    /// deploy is announced once its release has a name.
    fn name_release(&mut self) {
        let existing: Vec<&str> = self
            .hosts
            .iter()
            .flat_map(|h| h.state.releases.iter().chain(&h.state.recent))
            .map(String::as_str)
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
    fn report_taken(&self, task: &str, taken: Vec<TakenReport>) {
        let reporter = self.ctx.reporter;
        for taken in taken {
            reporter.emit(Event::TaskStarted {
                host: &taken.host,
                task,
                command: &taken.command,
            });
            reporter.emit(Event::TaskFinished {
                host: &taken.host,
                result: &failure::ok_result(task, &taken.command, taken.duration),
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

/// What a waiting run has said: each host's holder as last shown, and when it last reminded.
#[derive(Default)]
struct Waiting {
    shown: HashMap<String, String>,
    reminded: Duration,
}

impl Waiting {
    /// Show each holder once (again when it changes), and all of them every `REMIND`, in a
    /// wait of `wait` so far `waited` long.
    fn report(
        &mut self,
        reporter: &Reporter,
        held: &[(String, String)],
        waited: Duration,
        wait: Duration,
    ) {
        let remind = waited >= self.reminded + REMIND;
        // The first lines say only what is waited for, and for how long at most.
        let (waited, left) = if self.shown.is_empty() {
            (Duration::ZERO, wait)
        } else {
            (waited, wait.saturating_sub(waited))
        };
        for (host, holder) in held {
            if remind || self.shown.get(host) != Some(holder) {
                reporter.emit(Event::LockWaiting {
                    host,
                    holder,
                    waited,
                    left,
                });
                self.shown.insert(host.clone(), holder.clone());
            }
        }
        if remind {
            self.reminded = waited;
        }
    }
}

/// The pause before the next try: about `POLL`, never past the end of the wait.
fn poll(left: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let jitter = Duration::from_millis(hasher.finish() % 200);
    (POLL - Duration::from_millis(100) + jitter).min(left)
}

/// Why `holder` is provably gone (taken on this machine by a process no longer running).
fn stale(holder: &Holder) -> Option<String> {
    let machine = local::local_machine();
    let pid_space = local::pid_space();
    holder.gone(&Here {
        machine: &machine,
        pid_space: &pid_space,
        running: &local::process_running,
    })
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
        return Taken::Held(Holder::parse(&record));
    }
    Taken::Failed
}
