//! Where commands run. The engine hands a host's run of consecutive commands to its backend as
//! one unit; the backend sends it as one script (see `script`) and reports each command's start,
//! output, end and exit status. Implementations: `local` (this machine), `dry_run` (prints, runs
//! nothing), and `crate::transport::ssh` (a remote host over one SSH connection).

pub(crate) mod command;
pub(crate) mod dry_run;
mod follow;
pub(crate) mod local;
pub(crate) mod script;
pub mod ssh;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use self::command::Command;
use self::script::Script;
pub(crate) use follow::{drive, KEPT_BYTES, OUTPUT_CUT};

/// Which output stream of a command a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Who hears what a backend does, as it happens (the report layer implements it; the transport
/// knows nothing of terminals or formats).
pub trait Observer: Sync {
    /// A command started on `host`.
    fn started(&self, host: &str, task: &str, command: &str);
    /// A line the command printed.
    fn output(&self, host: &str, task: &str, stream: Stream, line: &str);
    /// The command failed with `status` and runs again (`attempt` from 1).
    fn retry(&self, host: &str, task: &str, attempt: u32, status: i32);
    /// The command ended (or was found never to have ended).
    fn finished(&self, host: &str, result: &StepResult);
    /// A dry run shows the command it would run.
    fn dry_run(&self, host: &str, task: &str, command: &str);
}

/// How many output chunks of one command may wait for their reader. Chunks are at most an SSH
/// packet or a pipe read (16 KiB), so a host's output in flight stays about a hundred KiB: a
/// flood of output waits on the host (backpressure), never in dep's memory.
pub(crate) const CHUNK_QUEUE: usize = 2;

/// How much of each stream an internal command (a state read, a dynamic variable, a probe, a
/// health check) may print: its output is kept whole, so it is bounded.
pub(crate) const MAX_CAPTURE: usize = 4 * 1024 * 1024;

/// A piece of what a running remote or local process produced.
#[derive(Debug)]
pub enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The process ended: its exit status, or None with the reason (signal, lost connection).
    Exit(Option<i32>, Option<String>),
}

/// A started process: its output as chunks, and how to stop it.
pub struct Running {
    pub chunks: mpsc::Receiver<Chunk>,
    pub kill: KillGuard,
}

/// Stops a process when dropped (Ctrl-C, a timeout, an abandoned run) unless disarmed.
pub struct KillGuard(Option<Box<dyn FnOnce() + Send>>);

impl KillGuard {
    pub fn new(kill: impl FnOnce() + Send + 'static) -> KillGuard {
        KillGuard(Some(Box::new(kill)))
    }

    pub fn kill(&mut self) {
        if let Some(kill) = self.0.take() {
            kill();
        }
    }

    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The captured result of one internal command (state reads, dynamic variables).
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub status: Option<i32>,
    pub reason: Option<String>,
    pub stdout: String,
    pub stderr: String,
    /// The command never reached the host: no connection (refused, unknown or changed host
    /// key, authentication failed).
    pub unreachable: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Skipped,
    Failed {
        status: Option<i32>,
        reason: Option<String>,
    },
    /// An earlier command of the same run failed, so this one never started.
    NotRun,
    /// A dry run showed it; nothing ran.
    Shown,
}

/// What happened to one command of a run.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub task: String,
    pub command: String,
    pub outcome: Outcome,
    pub duration: Duration,
    pub stdout: String,
    pub stderr: String,
    /// A failure the task tolerates (`on_failure = "continue"`).
    pub tolerated: bool,
    /// The command never reached the host (see `Output::unreachable`).
    pub unreachable: bool,
}

impl StepResult {
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. }) && !self.tolerated
    }
}

/// How a host is reached.
pub enum Backend {
    Local(local::Local),
    DryRun(dry_run::DryRun),
    Ssh(crate::transport::ssh::Ssh),
}

impl Backend {
    /// Run `commands` on the host in order, stopping at the first failure, reporting as it goes.
    pub async fn run(
        &self,
        host: &str,
        commands: &[Command],
        observer: &dyn Observer,
    ) -> Vec<StepResult> {
        let mut results = Vec::with_capacity(commands.len());
        let mut start = 0;
        while start < commands.len() {
            // Commands that read stdin (uploads) run on their own; the rest travel as one script.
            let end = if commands[start].stdin.is_some() {
                start + 1
            } else {
                commands[start..]
                    .iter()
                    .position(|c| c.stdin.is_some())
                    .map_or(commands.len(), |p| start + p)
            };
            let batch_results = self.run_batch(host, &commands[start..end], observer).await;
            let stop = batch_results.iter().any(StepResult::failed);
            results.extend(batch_results);
            if stop {
                break;
            }
            start = end;
        }
        for command in &commands[results.len()..] {
            results.push(not_run(command));
        }
        results
    }

    /// Run one batch as one script (a dry run only shows it).
    async fn run_batch(
        &self,
        host: &str,
        batch: &[Command],
        observer: &dyn Observer,
    ) -> Vec<StepResult> {
        let token = script::token();
        let script = Script::for_batch(batch, &token);
        let local = |e: local::LocalError| (e.to_string(), false);
        let ssh = |e: ssh::SshError| (e.to_string(), e.never_reached_host());
        let running = match (self, script) {
            (Backend::DryRun(dry), _) => return dry.run(host, batch, observer),
            (Backend::Local(l), Script::Piped(text)) => l.spawn_script(&text).map_err(local),
            (Backend::Local(l), Script::WithStdin(text, stdin)) => {
                l.spawn_with_stdin(&text, stdin).map_err(local)
            }
            (Backend::Ssh(s), Script::Piped(text)) => s.spawn_script(&text).await.map_err(ssh),
            (Backend::Ssh(s), Script::WithStdin(text, stdin)) => {
                s.spawn_with_stdin(&text, stdin).await.map_err(ssh)
            }
        };
        match running {
            Ok(running) => drive(host, batch, &token, running, observer).await,
            Err((reason, unreachable)) => failed_to_start(batch, reason, unreachable),
        }
    }

    /// Run one internal command and capture its output (not reported as a task).
    pub async fn capture(&self, command: &str) -> Output {
        match self {
            Backend::DryRun(_) => Output {
                status: Some(0),
                ..Output::default()
            },
            Backend::Local(local) => local.capture(command).await,
            Backend::Ssh(ssh) => ssh.capture(command).await,
        }
    }

    /// Run a read-only command: like `capture`, but a dry run also reads the real host.
    pub async fn read(&self, command: &str) -> Output {
        match self {
            Backend::DryRun(dry) => match &dry.reads {
                Some(real) => Box::pin(real.capture(command)).await,
                None => Output {
                    status: Some(0),
                    ..Output::default()
                },
            },
            other => other.capture(command).await,
        }
    }

    /// Run an internal command that changes the host (unlock, a health check's probe, a
    /// mirror update): a dry run shows it as `task` instead and returns None.
    pub async fn change(
        &self,
        host: &str,
        task: &str,
        command: &str,
        observer: &dyn Observer,
    ) -> Option<Output> {
        if let Backend::DryRun(_) = self {
            observer.dry_run(host, task, command);
            return None;
        }
        Some(self.capture(command).await)
    }

    /// `change`, then a read of the host in the same round trip: a dry run shows the change,
    /// runs only the read (on the real host), and says the change was not made.
    pub async fn change_then_read(
        &self,
        host: &str,
        task: &str,
        change: &str,
        read: &str,
        observer: &dyn Observer,
    ) -> (Output, Changed) {
        if let Backend::DryRun(_) = self {
            observer.dry_run(host, task, change);
            return (self.read(read).await, Changed::No);
        }
        (
            self.capture(&format!("{change}\n{read}")).await,
            Changed::Yes,
        )
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self, Backend::DryRun(_))
    }
}

/// Whether `change_then_read` made its change (a dry run does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Yes,
    No,
}

fn not_run(command: &Command) -> StepResult {
    StepResult {
        task: command.task.clone(),
        command: command.shell(),
        outcome: Outcome::NotRun,
        duration: Duration::ZERO,
        stdout: String::new(),
        stderr: String::new(),
        tolerated: false,
        unreachable: false,
    }
}

fn failed_to_start(batch: &[Command], reason: String, unreachable: bool) -> Vec<StepResult> {
    let mut results: Vec<StepResult> = batch.iter().map(not_run).collect();
    if let Some(first) = results.first_mut() {
        first.outcome = Outcome::Failed {
            status: None,
            reason: Some(reason),
        };
        first.unreachable = unreachable;
    }
    results
}

/// Sleep until `deadline`, or forever without one.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

pub fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", duration.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.1}s").replace(".0s", "s")
    } else {
        format!(
            "{}m{:02}s",
            duration.as_secs() / 60,
            duration.as_secs() % 60
        )
    }
}

/// Bytes shared by every host of an upload, packed once.
pub type Payload = Arc<Vec<u8>>;
