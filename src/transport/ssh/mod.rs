//! The SSH backend: one connection per host, made on first use and reused for every command of
//! the run, and on it one kept shell (`shell`) that runs the host's scripts, internal commands
//! and uploads one after the other, so a deploy starts one session on each host. What cannot
//! wait for the shell (a second command while it is busy, a kill) gets a session channel of its
//! own (at most [`MAX_SESSIONS`] open at once, as OpenSSH's `MaxSessions` allows), read until
//! the server closes it.
//!
//! - `shell`: the kept shell;
//! - `config`: where and how to connect (Deployfile host entry > ~/.ssh/config > defaults);
//! - `connection`: TCP or ProxyJump, handshake, timeouts;
//! - `handler`: host key checking against known_hosts;
//! - `auth`: ssh-agent and key files.
//!
//! A channel that ends without an exit status is a transport failure naming the host, never a
//! success. A host that stops answering fails within the connect timeout (opening a channel) or
//! the keepalives (15 s × 3 by default), and a host whose connection was lost fails every later
//! command at once instead of reconnecting half-way through a deploy.

pub(crate) mod auth;
pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod handler;
pub(crate) mod known_hosts;
mod pump;
mod shell;
pub(crate) mod ssh_config;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, OnceCell, Semaphore};

use crate::config::host::Host;
use crate::config::vars::Vars;
use crate::quote::quote;
use crate::transport::{
    human_duration, Chunk, KillGuard, Output, Running, CHUNK_QUEUE, MAX_CAPTURE,
};

pub use config::Settings;
use connection::{ConnectError, Connection};
use pump::{tracked, Pid, Pump};
pub use shell::close_all;
use shell::{Shell, Submitted};

/// Why a command could not run on a host, or how it ended without an exit status. Every
/// message names the host.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error("host `{host}`: {source}")]
    Connect { host: String, source: ConnectError },
    #[error("host `{host}`: the connection to {address} was lost: {reason}")]
    Lost {
        host: String,
        address: String,
        reason: String,
    },
    #[error("host `{host}`: the connection is shut down")]
    ShutDown { host: String },
    #[error("host `{host}`: cannot open a session: {reason}")]
    OpenSession { host: String, reason: String },
    #[error(
        "host `{host}`: {address} stopped answering (no session within {})",
        human_duration(*.timeout)
    )]
    StoppedAnswering {
        host: String,
        address: String,
        timeout: Duration,
    },
    #[error("host `{host}`: cannot start the command: {reason}")]
    Exec { host: String, reason: String },
    #[error("host `{host}`: the command was killed by signal {signal}{detail}")]
    Killed {
        host: String,
        signal: String,
        /// ": message", or empty.
        detail: String,
    },
    #[error("host `{host}`: the server refused to run the command")]
    Refused { host: String },
    #[error("host `{host}`: the command was stopped")]
    Stopped { host: String },
    #[error("host `{host}`: the command ended without an exit status")]
    NoStatus { host: String },
    #[error("host `{host}`: the command printed more than {} MiB, more than dep keeps of an internal command", .limit / (1024 * 1024))]
    TooMuchOutput { host: String, limit: usize },
}

impl SshError {
    /// The command never reached the host: there was no connection to run it on.
    pub fn never_reached_host(&self) -> bool {
        matches!(self, SshError::Connect { .. })
    }
}

/// Why a host's SSH backend cannot be set up (before any connection).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The `connect_timeout` variable cannot be evaluated.
    #[error("{0}")]
    Variable(String),
    #[error("`{var}`: {reason}")]
    ConnectTimeout { var: &'static str, reason: String },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// Session channels open at once on one connection (OpenSSH's default `MaxSessions`).
pub const MAX_SESSIONS: usize = 10;

/// How long a channel may stay open after its command exited (a daemon started in the
/// background can hold its output open) before dep closes it.
const LINGER: Duration = Duration::from_secs(2);

/// How long a closed or killed channel is still drained before dep lets go of it.
const DRAIN: Duration = Duration::from_secs(5);

/// How long one control message (signal, EOF, close) may take to leave.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);

/// How many SSH connections of a run may be in set-up (TCP, key exchange, authentication) at
/// once: sshd drops connections beyond its `MaxStartups` (OpenSSH's default starts at 10), and a
/// bastion sees every host's. Shared by the run's hosts.
#[derive(Clone)]
pub struct Starts(Arc<Semaphore>);

impl Starts {
    /// The variable that sets it.
    pub const VAR: &'static str = "max_concurrent_starts";

    pub fn new(limit: usize) -> Starts {
        Starts(Arc::new(Semaphore::new(
            limit.clamp(1, Semaphore::MAX_PERMITS),
        )))
    }

    pub fn unlimited() -> Starts {
        Starts::new(Semaphore::MAX_PERMITS)
    }
}

/// How a host is reached over SSH. Cheap to share; the connection is made on first use.
#[derive(Clone)]
pub struct Ssh {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    connection: OnceCell<Result<Arc<Connection>, SshError>>,
    sessions: Arc<Semaphore>,
    /// Connection set-ups allowed at once, shared with the run's other hosts.
    starts: Starts,
    /// Set when the host stopped answering: every later command fails with it at once.
    broken: Mutex<Option<SshError>>,
    /// The host's kept shell (see `shell`), started on first use.
    shell: tokio::sync::Mutex<Option<Shell>>,
    /// Whether the host's `head -c N` reads no more than N bytes of a pipe (GNU's does), so
    /// that uploads can travel through the kept shell too.
    exact_head: OnceCell<bool>,
}

impl Ssh {
    pub fn new(settings: Settings) -> Ssh {
        Ssh::paced(settings, Starts::unlimited())
    }

    fn paced(settings: Settings, starts: Starts) -> Ssh {
        Ssh {
            inner: Arc::new(Inner {
                settings,
                connection: OnceCell::new(),
                sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
                starts,
                broken: Mutex::new(None),
                shell: tokio::sync::Mutex::new(None),
                exact_head: OnceCell::new(),
            }),
        }
    }

    /// The backend for `host`, resolved against the ssh config (no network yet). `vars` may set
    /// `connect_timeout`; `starts` paces the connection set-ups of the whole run.
    pub fn for_host(host: &Host, vars: &Vars, starts: &Starts) -> Result<Ssh, SetupError> {
        let connect_timeout = match vars.get(config::CONNECT_TIMEOUT_VAR) {
            None => None,
            Some(_) => {
                let text = vars
                    .value_string(config::CONNECT_TIMEOUT_VAR)
                    .map_err(|e| SetupError::Variable(e.to_string()))?;
                let timeout = crate::config::deployfile::parse_duration(&text).map_err(|e| {
                    SetupError::ConnectTimeout {
                        var: config::CONNECT_TIMEOUT_VAR,
                        reason: e.to_string(),
                    }
                })?;
                (!timeout.is_zero()).then_some(timeout)
            }
        };
        let files = read_config_files()?;
        let settings = config::resolve(
            host,
            &files,
            &config::home_dir(),
            &crate::config::local::local_user(),
            connect_timeout,
        )?;
        Ok(Ssh::paced(settings, starts.clone()))
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The host as dep names it, for errors.
    fn host(&self) -> String {
        self.inner.settings.name.clone()
    }

    /// The connection, made by the first caller (the others wait for it).
    async fn connection(&self) -> Result<Arc<Connection>, SshError> {
        if let Some(broken) = self.broken() {
            return Err(broken);
        }
        let settings = &self.inner.settings;
        let connection = self
            .inner
            .connection
            .get_or_init(|| async {
                // Paced, so a bastion or an sshd's MaxStartups is not overrun by the fleet.
                let _start = self.inner.starts.0.acquire().await;
                connection::connect(settings)
                    .await
                    .map(Arc::new)
                    .map_err(|source| SshError::Connect {
                        host: self.host(),
                        source,
                    })
            })
            .await
            .clone()?;
        if let Some(reason) = connection.lost_reason() {
            return Err(self.lost(&reason));
        }
        Ok(connection)
    }

    fn broken(&self) -> Option<SshError> {
        self.inner
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_broken(&self, reason: SshError) {
        self.inner
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
    }

    fn lost(&self, reason: &str) -> SshError {
        SshError::Lost {
            host: self.host(),
            address: self.inner.settings.address(),
            reason: reason.to_string(),
        }
    }

    /// Start `command` on a new session channel, feeding it `stdin` then EOF. A `tracked`
    /// command (made by [`tracked`]) announces its process id first, so that a kill can reach
    /// every process it started.
    ///
    /// Boxed: a kill runs a command of its own from inside a running one's pump.
    fn spawn<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<Arc<Vec<u8>>>,
        tracked: bool,
    ) -> futures::future::BoxFuture<'a, Result<Running, SshError>> {
        let (sender, input) = mpsc::channel(1);
        if let Some(stdin) = stdin {
            let _ = sender.try_send(stdin);
        }
        Box::pin(self.start(command, input, tracked))
    }

    /// Start a tracked `command` whose stdin is fed from `input` as long as it stays open.
    async fn spawn_streaming(
        &self,
        command: &str,
        input: mpsc::Receiver<Arc<Vec<u8>>>,
    ) -> Result<Running, SshError> {
        self.start(command, input, true).await
    }

    async fn start(
        &self,
        command: &str,
        mut input: mpsc::Receiver<Arc<Vec<u8>>>,
        tracked: bool,
    ) -> Result<Running, SshError> {
        let connection = self.connection().await?;
        let permit = Arc::clone(&self.inner.sessions)
            .acquire_owned()
            .await
            .map_err(|_| SshError::ShutDown { host: self.host() })?;
        let timeout = self.inner.settings.connect_timeout;
        tracing::trace!(host = %self.inner.settings.name, "opening a session channel");
        let channel =
            match tokio::time::timeout(timeout, connection.handle.channel_open_session()).await {
                Ok(Ok(channel)) => channel,
                Ok(Err(e)) => {
                    return Err(match connection.lost_reason() {
                        Some(reason) => self.lost(&reason),
                        None => SshError::OpenSession {
                            host: self.host(),
                            reason: e.to_string(),
                        },
                    })
                }
                Err(_) => {
                    let reason = SshError::StoppedAnswering {
                        host: self.host(),
                        address: self.inner.settings.address(),
                        timeout,
                    };
                    self.set_broken(reason.clone());
                    return Err(reason);
                }
            };
        if let Err(e) = channel.exec(true, command).await {
            return Err(match connection.lost_reason() {
                Some(reason) => self.lost(&reason),
                None => SshError::Exec {
                    host: self.host(),
                    reason: e.to_string(),
                },
            });
        }
        tracing::debug!(host = %self.inner.settings.name, tracked, "channel open, command started");
        let (read, write) = channel.split();
        let write = Arc::new(write);
        let stdin_task = {
            let write = Arc::clone(&write);
            tokio::spawn(async move {
                while let Some(stdin) = input.recv().await {
                    // A command that exits without reading all its input is not an error here.
                    if write.data(&stdin[..]).await.is_err() {
                        return;
                    }
                }
                let _ = write.eof().await;
            })
        };
        let (sender, chunks) = mpsc::channel(CHUNK_QUEUE);
        let (kill_sender, kill) = oneshot::channel::<()>();
        let pump = Pump {
            ssh: self.clone(),
            connection,
            read,
            write,
            sender: Some(sender),
            kill,
            stdin_task,
            pid: if tracked {
                Pid::Searching(Vec::new())
            } else {
                Pid::Untracked
            },
            _permit: permit,
        };
        tokio::spawn(pump.run());
        let kill = KillGuard::new(move || {
            let _ = kill_sender.send(());
        });
        Ok(Running { chunks, kill })
    }

    /// Run `script` in the host's kept shell (a channel of its own while that is busy).
    pub async fn spawn_script(&self, script: &str) -> Result<Running, SshError> {
        match self.in_shell(script, None).await {
            Some(started) => started,
            None => {
                self.spawn(
                    &tracked("exec bash -s", None),
                    Some(Arc::new(script.as_bytes().to_vec())),
                    true,
                )
                .await
            }
        }
    }

    /// Hand `script` (and its stdin `payload`) to the kept shell, starting one when there is
    /// none (or it ended); None while it runs another script.
    async fn in_shell(
        &self,
        script: &str,
        payload: Option<Arc<Vec<u8>>>,
    ) -> Option<Result<Running, SshError>> {
        let mut slot = self.inner.shell.lock().await;
        if let Some(shell) = slot.as_ref() {
            match shell.submit(script, payload.clone()) {
                Submitted::Running(running) => return Some(Ok(running)),
                Submitted::Busy => {
                    tracing::debug!(host = %self.inner.settings.name, "the kept shell is busy: a channel of its own");
                    return None;
                }
                Submitted::Gone => *slot = None,
            }
        }
        let shell = match Shell::open(self).await {
            Ok(shell) => shell,
            Err(e) => return Some(Err(e)),
        };
        let submitted = shell.submit(script, payload);
        *slot = Some(shell);
        match submitted {
            Submitted::Running(running) => Some(Ok(running)),
            Submitted::Busy | Submitted::Gone => None,
        }
    }

    /// Run `script` feeding `stdin` to it: in the kept shell where the host's `head` allows it,
    /// else with `bash -c` on a channel of its own.
    pub async fn spawn_with_stdin(
        &self,
        script: &str,
        stdin: Arc<Vec<u8>>,
    ) -> Result<Running, SshError> {
        if self.exact_head().await {
            if let Some(started) = self.in_shell(script, Some(Arc::clone(&stdin))).await {
                return started;
            }
        }
        self.spawn(
            &tracked("exec bash -c \"$1\"", Some(script)),
            Some(stdin),
            true,
        )
        .await
    }

    /// Whether `head -c` stops at its count on this host (asked once, in the kept shell).
    async fn exact_head(&self) -> bool {
        *self
            .inner
            .exact_head
            .get_or_init(|| async {
                let probe = self
                    .capture("printf abcdef | { head -c 2 >/dev/null; cat; }")
                    .await;
                probe.success() && probe.stdout == "cdef"
            })
            .await
    }

    /// Kill the process group `pid` leads (a tracked command: the session's leader), over a
    /// channel of its own: sshd honours the SSH `signal` request only in some setups.
    async fn kill_remote(&self, pid: u32) {
        let command =
            format!("kill -KILL -- -{pid} 2>/dev/null || kill -KILL {pid} 2>/dev/null; true");
        let timeout = self.inner.settings.connect_timeout;
        // Never in the kept shell: that may be what is being killed.
        if tokio::time::timeout(timeout, self.capture_in_channel(&command))
            .await
            .is_err()
        {
            tracing::debug!(host = %self.inner.settings.name, pid, "could not kill the process");
        }
    }

    /// Run one command in the host's kept shell (stdin empty) and collect its output.
    pub async fn capture(&self, command: &str) -> Output {
        match self.in_shell(command, None).await {
            Some(started) => self.collect(started).await,
            None => self.capture_in_channel(command).await,
        }
    }

    /// Run one command with `bash -c` on a channel of its own and collect its output.
    async fn capture_in_channel(&self, command: &str) -> Output {
        let started = self
            .spawn(&format!("bash -c {}", quote(command)), None, false)
            .await;
        self.collect(started).await
    }

    async fn collect(&self, started: Result<Running, SshError>) -> Output {
        let mut running = match started {
            Ok(running) => running,
            Err(reason) => {
                return Output {
                    status: None,
                    reason: Some(reason.to_string()),
                    unreachable: reason.never_reached_host(),
                    ..Output::default()
                }
            }
        };
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut overflow = false;
        let mut exit: Option<(Option<i32>, Option<String>)> = None;
        let mut exited_at: Option<Instant> = None;
        loop {
            let chunk = match exited_at {
                None => running.chunks.recv().await,
                Some(at) => {
                    match tokio::time::timeout_at((at + LINGER).into(), running.chunks.recv()).await
                    {
                        Ok(chunk) => chunk,
                        Err(_) => break,
                    }
                }
            };
            match chunk {
                None => break,
                Some(Chunk::Stdout(data)) => keep(&mut stdout, &data, &mut overflow),
                Some(Chunk::Stderr(data)) => keep(&mut stderr, &data, &mut overflow),
                Some(Chunk::Exit(status, reason)) => {
                    exit = Some((status, reason));
                    exited_at = Some(Instant::now());
                    running.kill.disarm();
                }
            }
        }
        let (status, reason) = if overflow {
            let reason = SshError::TooMuchOutput {
                host: self.host(),
                limit: MAX_CAPTURE,
            };
            (None, Some(reason.to_string()))
        } else {
            exit.unwrap_or_else(|| (None, Some(self.no_status())))
        };
        Output {
            status,
            reason,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            unreachable: false,
        }
    }

    fn no_status(&self) -> String {
        SshError::NoStatus { host: self.host() }.to_string()
    }
}

/// Keep `data` unless the stream would outgrow MAX_CAPTURE (then note the overflow, keep draining).
fn keep(stream: &mut Vec<u8>, data: &[u8], overflow: &mut bool) {
    if *overflow || stream.len() + data.len() > MAX_CAPTURE {
        *overflow = true;
        return;
    }
    stream.extend_from_slice(data);
}

/// The ssh client configuration, read from disk on the first call of the process. That read is
/// blocking I/O and `for_host` is called from async code: on a multi-thread runtime the worker
/// hands its other tasks over meanwhile.
fn read_config_files() -> Result<Arc<config::ConfigFiles>, config::ConfigError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(config::ConfigFiles::global)
        }
        _ => config::ConfigFiles::global(),
    }
}
