//! One command's session channel, pumped: its messages become the `Running`'s chunks, the
//! remote process id is noted (so a kill reaches the whole process group), and the channel is
//! drained to its end whatever the reader does (an unread channel stalls the connection).

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::connection::Connection;
use super::{Ssh, SshError, CONTROL_TIMEOUT, DRAIN, LINGER};
use crate::quote::quote;
use crate::transport::{sleep_until, Chunk};

/// Moves one channel's messages to its `Running`, and drains the channel to its end whatever
/// the reader does (an unread channel would stall the whole connection).
pub(super) struct Pump {
    pub(super) ssh: Ssh,
    pub(super) connection: Arc<Connection>,
    pub(super) read: ChannelReadHalf,
    pub(super) write: Arc<ChannelWriteHalf<Msg>>,
    /// None once the command was killed: its reader learned the end already.
    pub(super) sender: Option<mpsc::Sender<Chunk>>,
    pub(super) kill: oneshot::Receiver<()>,
    pub(super) stdin_task: tokio::task::JoinHandle<()>,
    pub(super) pid: Pid,
    pub(super) _permit: OwnedSemaphorePermit,
}

/// The remote process id a tracked command announces on its first line of stdout.
pub(super) enum Pid {
    Untracked,
    /// Stdout held back until the announcement.
    Searching(Vec<u8>),
    Known(u32),
}

/// Marks the line that announces the remote process id: ASCII RS (never in normal output), as
/// printf writes it and as it arrives.
const PID_MARK: &str = "\\036dep-pid";
const PID_MARK_OUTPUT: &str = "\u{1e}dep-pid";

/// A command line that prints its process id (the session leader's: the login shell `exec`s
/// into bash) before running `body` with bash; `arg` becomes `$1`.
pub(super) fn tracked(body: &str, arg: Option<&str>) -> String {
    let inner = format!("printf '{PID_MARK} %s\\n' \"$$\"; {body}");
    match arg {
        Some(arg) => format!("exec bash -c {} dep {}", quote(&inner), quote(arg)),
        None => format!("exec bash -c {}", quote(&inner)),
    }
}

impl Pump {
    pub(super) async fn run(mut self) {
        let mut exit_sent = false;
        let mut kill_armed = true;
        let mut closed = false;
        // When to close the channel from this side, then when to stop draining it.
        let mut deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                message = self.read.wait() => {
                    let Some(message) = message else { break };
                    match message {
                        ChannelMsg::Data { data } => self.stdout(&data).await,
                        ChannelMsg::ExtendedData { data, ext: 1 } => {
                            self.send(Chunk::Stderr(data.to_vec())).await
                        }
                        ChannelMsg::ExitStatus { exit_status } => {
                            tracing::debug!(host = %self.ssh.inner.settings.name, exit_status, "exit status");
                            self.flush_held().await;
                            if !exit_sent {
                                exit_sent = true;
                                let status = i32::try_from(exit_status).unwrap_or(i32::MAX);
                                self.send(Chunk::Exit(Some(status), None)).await;
                            }
                            deadline.get_or_insert(Instant::now() + LINGER);
                        }
                        ChannelMsg::ExitSignal { signal_name, error_message, .. } => {
                            tracing::debug!(host = %self.ssh.inner.settings.name, signal = ?signal_name, "exit signal");
                            self.flush_held().await;
                            if !exit_sent {
                                exit_sent = true;
                                let detail = if error_message.trim().is_empty() {
                                    String::new()
                                } else {
                                    format!(": {}", error_message.trim())
                                };
                                let reason = SshError::Killed {
                                    host: self.ssh.host(),
                                    signal: signal_text(&signal_name),
                                    detail,
                                };
                                self.send(Chunk::Exit(None, Some(reason.to_string()))).await;
                            }
                            deadline.get_or_insert(Instant::now() + LINGER);
                        }
                        ChannelMsg::Failure if !exit_sent => {
                            exit_sent = true;
                            let reason = SshError::Refused { host: self.ssh.host() };
                            self.send(Chunk::Exit(None, Some(reason.to_string()))).await;
                            deadline = Some(Instant::now());
                        }
                        _ => {}
                    }
                }
                killed = &mut self.kill, if kill_armed => {
                    kill_armed = false;
                    if killed.is_ok() {
                        self.stop(!exit_sent).await;
                        exit_sent = true;
                        closed = true;
                        deadline = Some(Instant::now() + DRAIN);
                    }
                }
                _ = sleep_until(deadline) => {
                    if closed {
                        break;
                    }
                    self.close().await;
                    closed = true;
                    deadline = Some(Instant::now() + DRAIN);
                }
            }
        }
        self.stdin_task.abort();
        self.flush_held().await;
        if !exit_sent {
            let reason = match self.connection.lost_reason() {
                Some(reason) => Some(reason),
                None => {
                    // The session may end a moment after its channels do.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.connection.lost_reason()
                }
            };
            let reason = match reason {
                Some(reason) => self.ssh.lost(&reason).to_string(),
                None => self.ssh.no_status(),
            };
            self.send(Chunk::Exit(None, Some(reason))).await;
        }
    }

    /// The reader gave up on the command: tell it so (unless it has its exit already), kill the
    /// remote processes and close the channel.
    async fn stop(&mut self, tell: bool) {
        if tell {
            let reason = SshError::Stopped {
                host: self.ssh.host(),
            };
            self.send(Chunk::Exit(None, Some(reason.to_string()))).await;
        }
        // The reader has its answer; what still comes is only drained.
        self.sender = None;
        if let Pid::Known(pid) = self.pid {
            let ssh = self.ssh.clone();
            tokio::spawn(async move { ssh.kill_remote(pid).await });
        }
        // The connection may be dead: never wait long on it.
        let _ = tokio::time::timeout(CONTROL_TIMEOUT, self.write.signal(Sig::KILL)).await;
        self.close().await;
    }

    async fn send(&self, chunk: Chunk) {
        // The reader may be gone (it gave up or stopped): keep draining anyway.
        if let Some(sender) = &self.sender {
            let _ = sender.send(chunk).await;
        }
    }

    /// Stdout, less the process id announcement.
    async fn stdout(&mut self, data: &[u8]) {
        let Pid::Searching(held) = &mut self.pid else {
            return self.send(Chunk::Stdout(data.to_vec())).await;
        };
        held.extend_from_slice(data);
        let mark = PID_MARK_OUTPUT;
        let Some(start) = find(held, mark.as_bytes()) else {
            if held.len() > 64 * 1024 {
                self.flush_held().await;
            }
            return;
        };
        let Some(end) = held[start..].iter().position(|b| *b == b'\n') else {
            return;
        };
        let line = String::from_utf8_lossy(&held[start + mark.len()..start + end]).into_owned();
        let mut rest = held[..start].to_vec();
        rest.extend_from_slice(&held[start + end + 1..]);
        self.pid = match line.trim().parse() {
            Ok(pid) => Pid::Known(pid),
            Err(_) => Pid::Untracked,
        };
        if !rest.is_empty() {
            self.send(Chunk::Stdout(rest)).await;
        }
    }

    /// Give up waiting for the announcement: pass on what was held back.
    async fn flush_held(&mut self) {
        if let Pid::Searching(held) = &mut self.pid {
            let held = std::mem::take(held);
            self.pid = Pid::Untracked;
            if !held.is_empty() {
                self.send(Chunk::Stdout(held)).await;
            }
        }
    }

    async fn close(&self) {
        let _ = tokio::time::timeout(CONTROL_TIMEOUT, self.write.eof()).await;
        let _ = tokio::time::timeout(CONTROL_TIMEOUT, self.write.close()).await;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn signal_text(signal: &Sig) -> String {
    match signal {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}
