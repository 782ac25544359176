//! Following a running script: its two output streams merged back into one ordered account per
//! command (started, lines, retries, finished), reported to an [`Observer`] as it happens, with
//! per-command timeouts and the results at the end.
//!
//! The script marks every command's start and end on stdout AND stderr, and the two streams
//! travel separately (two pipes, or two kinds of SSH message), so one may run ahead of the other.
//! A command is finished only when both streams have passed its end marker (or the process ended
//! and the drain is over), so none of its stderr can arrive after its end; whatever a stream says
//! about a later command waits until then, so the account stays in script order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::command::Command;
use super::script::{self, Reader};
use super::{human_duration, sleep_until, Chunk, Observer, Outcome, Running, StepResult, Stream};

/// How long output may still arrive after the process exited (a daemon started in the
/// background can hold the pipes open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How many trailing lines of a command's output a result keeps.
const TAIL_LINES: usize = 40;

/// How much of one line the kept tail holds (the whole line is reported as it comes).
const TAIL_LINE_BYTES: usize = 2048;

/// How much standard output a command that keeps its output (`keep_output`) holds: enough for
/// the SQL of many migrations, bounded all the same. What comes past it is dropped, and the kept
/// output ends with [`OUTPUT_CUT`], so that a check of it knows it did not see it all.
pub const KEPT_BYTES: usize = 1024 * 1024;
pub const OUTPUT_CUT: &str = "\u{1e}dep: output cut";

/// How many events about later commands may wait for a lagging stream. A stream that ran this
/// far ahead has passed the current command's end marker long ago: the command is finished then,
/// and what the other stream still says about it is dropped, so memory stays bounded.
const HELD_LIMIT: usize = 4096;

/// Follow `running` (the script built for `batch` with `token`) to its end.
pub async fn drive(
    host: &str,
    batch: &[Command],
    token: &str,
    running: Running,
    observer: &dyn Observer,
) -> Vec<StepResult> {
    Follow::new(host, batch, token, observer).run(running).await
}

/// What one command has shown so far.
#[derive(Default)]
struct Progress {
    /// Its TaskFinished was already emitted.
    reported: bool,
    started: Option<Instant>,
    duration: Duration,
    outcome: Option<Outcome>,
    /// Which streams have passed its end marker: stdout, stderr.
    ended: [bool; 2],
    stdout: Vec<String>,
    stderr: Vec<String>,
    /// The bytes of stdout kept whole so far (`keep_output`).
    kept_bytes: usize,
}

/// The state of following one script.
struct Follow<'a> {
    host: &'a str,
    batch: &'a [Command],
    observer: &'a dyn Observer,
    readers: [Reader; 2],
    progress: Vec<Progress>,
    /// The command the merged account is at: every one before it is finished.
    next: usize,
    /// Events about later commands from a stream that ran ahead, in arrival order.
    held: VecDeque<(Stream, script::Event)>,
    /// Once the process ended and its output was drained, one stream's end marker suffices.
    draining: bool,
    exit: Option<(Option<i32>, Option<String>)>,
    exited_at: Option<Instant>,
    timed_out: Option<usize>,
    /// When the script reached the command the account is at, as far as this side can tell
    /// (the previous one's end, or the start of the script).
    reached: Instant,
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

fn index_of(event: &script::Event) -> usize {
    match *event {
        script::Event::Started(index)
        | script::Event::Line { index, .. }
        | script::Event::Retry { index, .. }
        | script::Event::Finished { index, .. } => index,
    }
}

impl<'a> Follow<'a> {
    fn new(
        host: &'a str,
        batch: &'a [Command],
        token: &str,
        observer: &'a dyn Observer,
    ) -> Follow<'a> {
        Follow {
            host,
            batch,
            observer,
            readers: [Reader::new(token), Reader::new(token)],
            progress: batch.iter().map(|_| Progress::default()).collect(),
            next: 0,
            held: VecDeque::new(),
            draining: false,
            exit: None,
            exited_at: None,
            timed_out: None,
            reached: Instant::now(),
        }
    }

    async fn run(mut self, mut running: Running) -> Vec<StepResult> {
        loop {
            let deadline = match self.exited_at {
                Some(at) => Some(at + DRAIN_GRACE),
                None => self.deadline(),
            };
            let chunk = tokio::select! {
                chunk = running.chunks.recv() => chunk,
                _ = sleep_until(deadline) => {
                    if self.exited_at.is_some() {
                        break;
                    }
                    self.timed_out = Some(self.next);
                    running.kill.kill();
                    continue;
                }
            };
            let Some(chunk) = chunk else { break };
            match chunk {
                Chunk::Stdout(data) => self.feed(Stream::Stdout, &data),
                Chunk::Stderr(data) => self.feed(Stream::Stderr, &data),
                Chunk::Exit(status, reason) => {
                    self.exit = Some((status, reason));
                    self.exited_at = Some(Instant::now());
                    running.kill.disarm();
                }
            }
        }
        self.drain();
        self.results()
    }

    /// When the command the account is at must be over: its timeout from its start, or, while
    /// its start marker is still on the way, from when the script reached it. A host that froze
    /// with output in flight never outlasts the command's timeout.
    fn deadline(&self) -> Option<Instant> {
        let p = self.progress.get(self.next).filter(|p| !p.reported)?;
        let timeout = self.batch[self.next].timeout?;
        Some(p.started.unwrap_or(self.reached) + timeout)
    }

    /// Bytes from one stream.
    fn feed(&mut self, stream: Stream, data: &[u8]) {
        let mut events = Vec::new();
        self.readers[slot(stream)].feed(data, &mut events);
        for event in events {
            self.accept(stream, event);
        }
    }

    /// One event from a stream: handled now if it is about the command the account is at,
    /// held if it is about a later one.
    fn accept(&mut self, stream: Stream, event: script::Event) {
        let index = index_of(&event);
        if index >= self.batch.len() || index < self.next {
            return;
        }
        if index > self.next {
            self.held.push_back((stream, event));
            if self.held.len() > HELD_LIMIT && self.progress[self.next].outcome.is_some() {
                self.finish(self.next);
                self.release();
            }
            return;
        }
        if self.handle(stream, event) {
            self.release();
        }
    }

    /// Handle the held events that are now due, oldest first, until none is.
    fn release(&mut self) {
        while let Some(at) = self.held.iter().position(|(_, e)| index_of(e) <= self.next) {
            // Those about a command already finished are dropped.
            if let Some((stream, event)) = self.held.remove(at) {
                if index_of(&event) == self.next {
                    self.handle(stream, event);
                }
            }
        }
    }

    /// An event about the current command; true when it finished that command.
    fn handle(&mut self, stream: Stream, event: script::Event) -> bool {
        let index = self.next;
        match event {
            script::Event::Started(_) => self.start(index),
            script::Event::Line { line, .. } => {
                // A line on a stream that ran ahead of the other starts the command.
                self.start(index);
                let p = &mut self.progress[index];
                if stream == Stream::Stdout && self.batch[index].keep_output {
                    if p.kept_bytes <= KEPT_BYTES {
                        p.kept_bytes += line.len() + 1;
                        p.stdout.push(if p.kept_bytes > KEPT_BYTES {
                            OUTPUT_CUT.to_string()
                        } else {
                            line.clone()
                        });
                    }
                } else {
                    push_tail(
                        match stream {
                            Stream::Stdout => &mut p.stdout,
                            Stream::Stderr => &mut p.stderr,
                        },
                        line.clone(),
                        (TAIL_LINES, TAIL_LINE_BYTES),
                    );
                }
                self.observer
                    .output(self.host, &self.batch[index].task, stream, &line);
            }
            // Both streams carry it: it is reported once, from stdout.
            script::Event::Retry {
                attempt, status, ..
            } if stream == Stream::Stdout => {
                self.start(index);
                self.observer
                    .retry(self.host, &self.batch[index].task, attempt, status);
            }
            script::Event::Retry { .. } => {}
            script::Event::Finished { status, .. } => {
                self.start(index);
                let p = &mut self.progress[index];
                p.ended[slot(stream)] = true;
                if p.outcome.is_none() {
                    p.duration = p.started.map(|s| s.elapsed()).unwrap_or_default();
                    p.outcome = Some(match status {
                        None => Outcome::Skipped,
                        Some(0) => Outcome::Ok,
                        Some(code) => Outcome::Failed {
                            status: Some(code),
                            reason: None,
                        },
                    });
                }
                if p.ended == [true, true] || self.draining {
                    self.finish(index);
                    return true;
                }
            }
        }
        false
    }

    fn start(&mut self, index: usize) {
        let p = &mut self.progress[index];
        if p.started.is_some() {
            return;
        }
        p.started = Some(Instant::now());
        let command = &self.batch[index];
        tracing::debug!(host = self.host, task = %command.task, "command started");
        self.observer
            .started(self.host, &command.task, &command.shell());
    }

    /// Report a finished command as soon as the script says so, not when the whole run ends.
    fn finish(&mut self, index: usize) {
        let result = result_of(&self.batch[index], &self.progress[index]);
        tracing::debug!(host = self.host, task = %result.task, outcome = ?result.outcome, "command finished");
        self.observer.finished(self.host, &result);
        self.progress[index].reported = true;
        self.next = index + 1;
        self.reached = Instant::now();
    }

    /// The process ended and its output is over: a command whose end one stream reported is
    /// finished, and what was held back follows in order.
    fn drain(&mut self) {
        self.draining = true;
        loop {
            let ended = self
                .progress
                .get(self.next)
                .is_some_and(|p| p.outcome.is_some() && !p.reported);
            if ended {
                self.finish(self.next);
            }
            let before = self.next;
            self.release();
            if !ended && self.next == before {
                break;
            }
        }
    }

    /// Every command's result, reporting those the process ended without finishing.
    fn results(self) -> Vec<StepResult> {
        let (exit_status, exit_reason) = self.exit.clone().unwrap_or((
            None,
            Some("the connection closed without an exit status".into()),
        ));
        // The script stopped (a lost connection, a kill) without a command failing: the first
        // command it never finished fails, so no host passes for done when it is not.
        let stopped_by_a_failure = self.progress.iter().zip(self.batch).any(|(p, c)| {
            matches!(p.outcome, Some(Outcome::Failed { .. })) && !c.continue_on_failure
        });
        let first_missing = self.progress.iter().position(|p| p.outcome.is_none());
        let mut results = Vec::with_capacity(self.batch.len());
        for (index, (command, p)) in self.batch.iter().zip(&self.progress).enumerate() {
            let outcome = match &p.outcome {
                Some(outcome) => outcome.clone(),
                None if p.started.is_some() || self.timed_out == Some(index) => Outcome::Failed {
                    status: None,
                    reason: Some(self.unfinished_reason(index, &exit_reason, exit_status)),
                },
                None if first_missing == Some(index)
                    && !stopped_by_a_failure
                    && exit_status != Some(0) =>
                {
                    Outcome::Failed {
                        status: exit_status,
                        reason: Some(
                            exit_reason
                                .clone()
                                .unwrap_or_else(|| "the script did not start".into()),
                        ),
                    }
                }
                None => Outcome::NotRun,
            };
            let duration = if p.duration.is_zero() {
                p.started.map(|s| s.elapsed()).unwrap_or_default()
            } else {
                p.duration
            };
            let failed = matches!(outcome, Outcome::Failed { .. });
            // Only a command that ran to its own exit status can be tolerated: a timeout or a
            // lost connection ends the whole script, so the commands after it never ran.
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
                unreachable: false,
                outcome,
                duration,
                stdout: p.stdout.join("\n"),
                stderr: p.stderr.join("\n"),
            };
            if result.outcome != Outcome::NotRun && !p.reported {
                self.observer.finished(self.host, &result);
            }
            results.push(result);
        }
        results
    }

    /// Why a command that started never finished.
    fn unfinished_reason(
        &self,
        index: usize,
        exit_reason: &Option<String>,
        exit_status: Option<i32>,
    ) -> String {
        if self.timed_out == Some(index) {
            return format!(
                "timed out after {}",
                human_duration(self.batch[index].timeout.unwrap_or_default())
            );
        }
        match (exit_reason, exit_status) {
            (Some(reason), _) => reason.clone(),
            (None, Some(code)) => {
                format!("the shell exited with status {code} before the command finished")
            }
            (None, None) => "the command did not finish".to_string(),
        }
    }
}

/// The result of a finished command from what its run has shown so far.
fn result_of(command: &Command, p: &Progress) -> StepResult {
    let outcome = p.outcome.clone().unwrap_or(Outcome::NotRun);
    let failed = matches!(outcome, Outcome::Failed { .. });
    StepResult {
        task: command.task.clone(),
        command: command.shell(),
        tolerated: failed && command.continue_on_failure,
        unreachable: false,
        outcome,
        duration: p.duration,
        stdout: p.stdout.join("\n"),
        stderr: p.stderr.join("\n"),
    }
}

/// Keep `line` among the last `max_lines` lines, cut to `max_bytes`.
fn push_tail(lines: &mut Vec<String>, mut line: String, (max_lines, max_bytes): (usize, usize)) {
    if lines.len() >= max_lines {
        lines.remove(0);
    }
    if line.len() > max_bytes {
        let mut end = max_bytes;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        // A new string: a truncated one would keep the whole line's allocation (40 pieces of
        // a 200 MB line held 2.5 MB per stream).
        line = format!("{}…", &line[..end]);
    }
    lines.push(line);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;
    use crate::transport::KillGuard;

    #[test]
    fn the_kept_tail_holds_only_the_start_of_a_long_line() {
        let mut tail = Vec::new();
        for _ in 0..TAIL_LINES + 5 {
            push_tail(
                &mut tail,
                "é".repeat(32 * 1024),
                (TAIL_LINES, TAIL_LINE_BYTES),
            );
        }
        assert_eq!(tail.len(), TAIL_LINES);
        for line in &tail {
            assert!(line.ends_with('…') && line.len() <= TAIL_LINE_BYTES + 3);
            // What the tail holds is what it keeps: not the whole line's allocation.
            assert!(
                line.capacity() <= 2 * TAIL_LINE_BYTES,
                "{}",
                line.capacity()
            );
        }
    }

    /// Records what it is told, as short lines.
    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);

    impl Record {
        fn push(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    impl Observer for Record {
        fn started(&self, _host: &str, task: &str, _command: &str) {
            self.push(format!("start {task}"));
        }
        fn output(&self, _host: &str, task: &str, stream: Stream, line: &str) {
            self.push(format!("{task} {stream:?}: {line}"));
        }
        fn retry(&self, _host: &str, task: &str, attempt: u32, status: i32) {
            self.push(format!("retry {task} {attempt} {status}"));
        }
        fn finished(&self, _host: &str, result: &StepResult) {
            self.push(format!("end {} {:?}", result.task, result.outcome));
        }
        fn dry_run(&self, _host: &str, task: &str, _command: &str) {
            self.push(format!("dry {task}"));
        }
    }

    fn mark(text: &str) -> Vec<u8> {
        format!("\n\u{1e}tok {text}\n").into_bytes()
    }

    /// What the script prints for commands that write `(stdout, stderr)` and exit with `status`:
    /// both streams, each with every command's markers.
    fn streams(commands: &[(&str, &str, i32)]) -> (Vec<u8>, Vec<u8>) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        for (index, (stdout, stderr, status)) in commands.iter().enumerate() {
            for (stream, text) in [(&mut out, stdout), (&mut err, stderr)] {
                stream.extend(mark(&format!("start {index}")));
                stream.extend(text.as_bytes());
                stream.extend(mark(&format!("end {index} {status}")));
            }
        }
        (out, err)
    }

    /// Feed `chunks` in this order to a follower of `batch`, and return what it reported.
    async fn follow(batch: &[Command], chunks: Vec<Chunk>) -> (Vec<String>, Vec<StepResult>) {
        let (sender, receiver) = mpsc::channel(chunks.len() + 1);
        for chunk in chunks {
            sender.send(chunk).await.unwrap();
        }
        drop(sender);
        let running = Running {
            chunks: receiver,
            kill: KillGuard::new(|| {}),
        };
        let record = Record::default();
        let results = drive("h1", batch, "tok", running, &record).await;
        (record.0.into_inner().unwrap(), results)
    }

    /// Feed `chunks` to a follower of `batch`, then nothing more, as from a host that froze:
    /// only a kill (which ends the process, as the SSH transport's does) lets it finish. Fails
    /// the test if the follower waits on anyway.
    async fn frozen(batch: &[Command], chunks: Vec<Chunk>) -> Vec<StepResult> {
        let (sender, receiver) = mpsc::channel(chunks.len() + 1);
        for chunk in chunks {
            sender.send(chunk).await.unwrap();
        }
        let running = Running {
            chunks: receiver,
            kill: KillGuard::new(move || {
                let _ = sender.try_send(Chunk::Exit(None, Some("stopped".into())));
            }),
        };
        let record = Record::default();
        tokio::time::timeout(
            Duration::from_secs(5),
            drive("h1", batch, "tok", running, &record),
        )
        .await
        .expect("the follower outlasted the command's timeout on a frozen host")
    }

    fn failed(code: i32) -> Outcome {
        Outcome::Failed {
            status: Some(code),
            reason: None,
        }
    }

    #[tokio::test]
    async fn stderr_that_arrives_after_the_stdout_end_marker_belongs_to_its_command() {
        let batch = [
            Command::new("say", "echo hello"),
            Command::new("boom", "echo nope >&2; exit 7"),
        ];
        let (out, err) = streams(&[("hello\n", "", 0), ("", "nope\n", 7)]);
        // The bad order: all of stdout (both end markers) before any of stderr.
        let (events, results) = follow(
            &batch,
            vec![
                Chunk::Stdout(out),
                Chunk::Stderr(err),
                Chunk::Exit(Some(7), None),
            ],
        )
        .await;
        assert_eq!(
            events,
            [
                "start say",
                "say Stdout: hello",
                "end say Ok",
                "start boom",
                "boom Stderr: nope",
                &format!("end boom {:?}", failed(7)),
            ]
        );
        assert_eq!(results[1].stderr, "nope");
        assert_eq!(results[1].outcome, failed(7));
    }

    #[tokio::test]
    async fn a_stream_that_runs_ahead_waits_for_the_other() {
        let batch = [
            Command::new("a", "echo one"),
            Command::new("b", "echo two >&2"),
        ];
        let (out, err) = streams(&[("one\n", "", 0), ("", "two\n", 0)]);
        let (events, _) = follow(
            &batch,
            vec![
                Chunk::Stderr(err),
                Chunk::Stdout(out),
                Chunk::Exit(Some(0), None),
            ],
        )
        .await;
        assert_eq!(
            events,
            [
                "start a",
                "a Stdout: one",
                "end a Ok",
                "start b",
                "b Stderr: two",
                "end b Ok"
            ]
        );
    }

    #[tokio::test]
    async fn one_end_marker_suffices_once_the_process_is_gone() {
        let batch = [Command::new("a", "true"), Command::new("b", "true")];
        let (out, _) = streams(&[("", "", 0), ("late\n", "", 0)]);
        let (events, results) =
            follow(&batch, vec![Chunk::Stdout(out), Chunk::Exit(Some(0), None)]).await;
        assert_eq!(
            events,
            [
                "start a",
                "end a Ok",
                "start b",
                "b Stdout: late",
                "end b Ok"
            ]
        );
        assert!(results.iter().all(|r| r.outcome == Outcome::Ok));
    }

    #[tokio::test]
    async fn a_host_that_froze_before_a_command_start_arrived_times_out_with_that_command() {
        let mut slow = Command::new("slow", "sleep 30");
        slow.timeout = Some(Duration::from_millis(200));
        let batch = [Command::new("a", "true"), slow];
        let (out, err) = streams(&[("", "", 0)]);
        // Then nothing: the host stopped before `slow`'s start marker left it.
        let results = frozen(&batch, vec![Chunk::Stdout(out), Chunk::Stderr(err)]).await;
        assert_eq!(results[0].outcome, Outcome::Ok);
        assert_eq!(
            results[1].outcome,
            Outcome::Failed {
                status: None,
                reason: Some("timed out after 200ms".into()),
            }
        );
    }

    #[tokio::test]
    async fn a_connection_lost_between_two_commands_fails_the_one_never_started() {
        let batch = [Command::new("a", "true"), Command::new("b", "true")];
        let (out, err) = streams(&[("", "", 0)]);
        let lost = "host `h1`: the connection to 127.0.0.2:22 was lost: reset";
        let (_, results) = follow(
            &batch,
            vec![
                Chunk::Stdout(out),
                Chunk::Stderr(err),
                Chunk::Exit(None, Some(lost.into())),
            ],
        )
        .await;
        assert_eq!(results[0].outcome, Outcome::Ok);
        assert_eq!(
            results[1].outcome,
            Outcome::Failed {
                status: None,
                reason: Some(lost.into()),
            }
        );
        assert!(
            results[1].failed(),
            "a host whose script was cut off passes for done"
        );
    }

    #[tokio::test]
    async fn a_host_frozen_after_one_stream_ended_a_command_still_times_out() {
        let mut first = Command::new("first", "echo hi");
        first.timeout = Some(Duration::from_millis(200));
        let batch = [first, Command::new("second", "true")];
        let (out, _) = streams(&[("hi\n", "", 0)]);
        // stdout passed `first`'s end marker; stderr never does: the host froze.
        let results = frozen(&batch, vec![Chunk::Stdout(out)]).await;
        assert_eq!(results[0].outcome, Outcome::Ok);
        assert!(results[1].failed(), "{:?}", results[1].outcome);
    }

    #[tokio::test]
    async fn a_process_that_ends_mid_command_fails_it() {
        let batch = [Command::new("a", "sleep 9"), Command::new("b", "true")];
        let (events, results) = follow(
            &batch,
            vec![
                Chunk::Stdout(mark("start 0")),
                Chunk::Exit(None, Some("killed".into())),
            ],
        )
        .await;
        let lost = Outcome::Failed {
            status: None,
            reason: Some("killed".into()),
        };
        assert_eq!(events, ["start a".to_string(), format!("end a {lost:?}")]);
        assert_eq!(results[0].outcome, lost);
        assert_eq!(results[1].outcome, Outcome::NotRun);
    }
}
