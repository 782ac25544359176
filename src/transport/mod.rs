//! Where commands run. The engine hands a host's run of consecutive commands to its backend as
//! one unit; the backend sends it as one script (see `script`) and reports each command's start,
//! output, end and exit status. Implementations: `local` (this machine), `dry_run` (prints, runs
//! nothing), and `crate::transport::ssh` (a remote host over one SSH connection).

pub mod command;
pub mod dry_run;
pub mod local;
pub mod script;
pub mod ssh;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use self::script::Reader;
use crate::report::{Event, Reporter, Stream};
use crate::transport::command::Command;

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

/// How long output may still arrive after the process exited (a daemon started in the
/// background can hold the pipes open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The captured result of one internal command (state reads, dynamic variables).
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub status: Option<i32>,
    pub reason: Option<String>,
    pub stdout: String,
    pub stderr: String,
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
        reporter: &Reporter,
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
            let batch = &commands[start..end];
            let batch_results = match self {
                Backend::DryRun(dry) => dry.run(host, batch, reporter),
                Backend::Local(local) => {
                    let token = script::token();
                    let running = if let (1, Some(stdin)) = (batch.len(), &batch[0].stdin) {
                        local.spawn_with_stdin(
                            &script::build_single(&batch[0], &token),
                            stdin.clone(),
                        )
                    } else {
                        local.spawn_script(&script::build(batch, &token))
                    };
                    match running {
                        Ok(running) => drive(host, batch, &token, running, reporter).await,
                        Err(reason) => failed_to_start(batch, reason),
                    }
                }
                Backend::Ssh(ssh) => {
                    let token = script::token();
                    let running = if let (1, Some(stdin)) = (batch.len(), &batch[0].stdin) {
                        ssh.spawn_with_stdin(
                            &script::build_single(&batch[0], &token),
                            stdin.clone(),
                        )
                        .await
                    } else {
                        ssh.spawn_script(&script::build(batch, &token)).await
                    };
                    match running {
                        Ok(running) => drive(host, batch, &token, running, reporter).await,
                        Err(reason) => failed_to_start(batch, reason),
                    }
                }
            };
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

    pub fn is_dry_run(&self) -> bool {
        matches!(self, Backend::DryRun(_))
    }
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
    }
}

fn failed_to_start(batch: &[Command], reason: String) -> Vec<StepResult> {
    let mut results: Vec<StepResult> = batch.iter().map(not_run).collect();
    if let Some(first) = results.first_mut() {
        first.outcome = Outcome::Failed {
            status: None,
            reason: Some(reason),
        };
    }
    results
}

/// How many trailing lines of a command's output a result keeps.
const TAIL_LINES: usize = 40;

/// The result of a finished command from what its run has shown so far.
fn result_of(command: &Command, p: &Progress) -> StepResult {
    let outcome = p.outcome.clone().unwrap_or(Outcome::NotRun);
    let failed = matches!(outcome, Outcome::Failed { .. });
    StepResult {
        task: command.task.clone(),
        command: command.shell(),
        tolerated: failed && command.continue_on_failure,
        outcome,
        duration: p.duration,
        stdout: p.stdout.join("\n"),
        stderr: p.stderr.join("\n"),
    }
}

#[derive(Default)]
struct Progress {
    /// Its TaskFinished was already emitted.
    reported: bool,
    started: Option<Instant>,
    duration: Duration,
    outcome: Option<Outcome>,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

/// Follow a running script: turn its chunks into reports and results, enforce per-command
/// timeouts, and treat a process that ends without reporting a command's end as a failure.
pub async fn drive(
    host: &str,
    batch: &[Command],
    token: &str,
    mut running: Running,
    reporter: &Reporter,
) -> Vec<StepResult> {
    let mut out_reader = Reader::new(token);
    let mut err_reader = Reader::new(token);
    let mut progress: Vec<Progress> = batch.iter().map(|_| Progress::default()).collect();
    let mut current: Option<usize> = None;
    let mut exit: Option<(Option<i32>, Option<String>)> = None;
    let mut timed_out: Option<usize> = None;
    let mut exited_at: Option<Instant> = None;
    let mut events = Vec::new();
    let mut deadlines: HashMap<usize, Instant> = HashMap::new();
    loop {
        let deadline = match exited_at {
            Some(at) => Some(at + DRAIN_GRACE),
            None => current.and_then(|i| deadlines.get(&i).copied()),
        };
        let chunk = tokio::select! {
            chunk = running.chunks.recv() => chunk,
            _ = sleep_until(deadline) => {
                if exited_at.is_some() {
                    break;
                }
                timed_out = current;
                running.kill.kill();
                continue;
            }
        };
        let Some(chunk) = chunk else { break };
        events.clear();
        match chunk {
            Chunk::Stdout(data) => out_reader.feed(&data, &mut events),
            Chunk::Stderr(data) => {
                let mut err_events = Vec::new();
                err_reader.feed(&data, &mut err_events);
                for event in err_events {
                    if let script::Event::Line { index, line } = event {
                        if let Some(p) = progress.get_mut(index) {
                            push_tail(&mut p.stderr, line.clone());
                        }
                        reporter.emit(Event::Output {
                            host,
                            task: task_of(batch, index),
                            stream: Stream::Stderr,
                            line: &line,
                        });
                    }
                }
            }
            Chunk::Exit(status, reason) => {
                exit = Some((status, reason));
                exited_at = Some(Instant::now());
                running.kill.disarm();
            }
        }
        for event in events.drain(..) {
            match event {
                script::Event::Started(index) if index < batch.len() => {
                    current = Some(index);
                    progress[index].started = Some(Instant::now());
                    if let Some(timeout) = batch[index].timeout {
                        deadlines.insert(index, Instant::now() + timeout);
                    }
                    reporter.emit(Event::TaskStarted {
                        host,
                        task: &batch[index].task,
                        command: &batch[index].shell(),
                    });
                }
                script::Event::Line { index, line } if index < batch.len() => {
                    push_tail(&mut progress[index].stdout, line.clone());
                    reporter.emit(Event::Output {
                        host,
                        task: &batch[index].task,
                        stream: Stream::Stdout,
                        line: &line,
                    });
                }
                script::Event::Retry {
                    index,
                    attempt,
                    status,
                } if index < batch.len() => {
                    reporter.emit(Event::Retry {
                        host,
                        task: &batch[index].task,
                        attempt,
                        status,
                    });
                }
                script::Event::Finished { index, status } if index < batch.len() => {
                    current = None;
                    let p = &mut progress[index];
                    p.duration = p.started.map(|s| s.elapsed()).unwrap_or_default();
                    p.outcome = Some(match status {
                        None => Outcome::Skipped,
                        Some(0) => Outcome::Ok,
                        Some(code) => Outcome::Failed {
                            status: Some(code),
                            reason: None,
                        },
                    });
                    // Reported as soon as the script says so, not when the whole run ends.
                    let result = result_of(&batch[index], p);
                    reporter.emit(Event::TaskFinished {
                        host,
                        result: &result,
                    });
                    p.reported = true;
                }
                _ => {}
            }
        }
    }
    let mut events = Vec::new();
    out_reader.finish(&mut events);
    err_reader.finish(&mut Vec::new());
    let (exit_status, exit_reason) = exit.unwrap_or((
        None,
        Some("the connection closed without an exit status".into()),
    ));
    let mut results = Vec::with_capacity(batch.len());
    for (index, (command, p)) in batch.iter().zip(progress).enumerate() {
        let outcome = match p.outcome {
            Some(outcome) => outcome,
            None if p.started.is_some() => {
                let reason = if timed_out == Some(index) {
                    format!(
                        "timed out after {}",
                        human_duration(command.timeout.unwrap_or_default())
                    )
                } else {
                    match (&exit_reason, exit_status) {
                        (Some(reason), _) => reason.clone(),
                        (None, Some(code)) => format!(
                            "the shell exited with status {code} before the command finished"
                        ),
                        (None, None) => "the command did not finish".to_string(),
                    }
                };
                Outcome::Failed {
                    status: None,
                    reason: Some(reason),
                }
            }
            None if index == 0 && exit_status != Some(0) => Outcome::Failed {
                status: exit_status,
                reason: Some(
                    exit_reason
                        .clone()
                        .unwrap_or_else(|| "the script did not start".into()),
                ),
            },
            None => Outcome::NotRun,
        };
        let duration = if p.duration.is_zero() {
            p.started.map(|s| s.elapsed()).unwrap_or_default()
        } else {
            p.duration
        };
        let failed = matches!(outcome, Outcome::Failed { .. });
        // Only a command that ran to its own exit status can be tolerated: a timeout or a lost
        // connection ends the whole script, so the commands after it never ran.
        let exited = matches!(
            outcome,
            Outcome::Failed {
                status: Some(_),
                ..
            }
        );
        let result = StepResult {
            task: command.task.clone(),
            command: command.shell(),
            tolerated: failed && exited && command.continue_on_failure,
            outcome,
            duration,
            stdout: p.stdout.join("\n"),
            stderr: p.stderr.join("\n"),
        };
        if result.outcome != Outcome::NotRun && !p.reported {
            reporter.emit(Event::TaskFinished {
                host,
                result: &result,
            });
        }
        results.push(result);
    }
    results
}

fn task_of(batch: &[Command], index: usize) -> &str {
    batch.get(index).map(|c| c.task.as_str()).unwrap_or("")
}

fn push_tail(lines: &mut Vec<String>, line: String) {
    if lines.len() == TAIL_LINES {
        lines.remove(0);
    }
    lines.push(line);
}

async fn sleep_until(deadline: Option<Instant>) {
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
