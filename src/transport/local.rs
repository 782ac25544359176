//! The local backend: commands run on this machine with bash (hosts marked `local = true`, and
//! tasks marked `local`).

use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::{Chunk, KillGuard, Output, Running};

#[derive(Debug, Default)]
pub struct Local;

/// Why a local command could not run.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot start bash: {0}")]
    Start(std::io::Error),
}

impl Local {
    /// Run `script` with `bash -s` (the script travels on stdin, as it will over SSH).
    pub fn spawn_script(&self, script: &str) -> Result<Running, LocalError> {
        self.spawn(&["-s"], Arc::new(script.as_bytes().to_vec()))
    }

    /// Run `script` with `bash -c`, feeding `stdin` to it.
    pub fn spawn_with_stdin(
        &self,
        script: &str,
        stdin: Arc<Vec<u8>>,
    ) -> Result<Running, LocalError> {
        self.spawn(&["-c", script], stdin)
    }

    fn spawn(&self, args: &[&str], stdin: Arc<Vec<u8>>) -> Result<Running, LocalError> {
        let mut command = std::process::Command::new("bash");
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group, so a timeout or Ctrl-C stops everything the script started.
        command.process_group(0);
        let mut child = Command::from(command).spawn().map_err(LocalError::Start)?;
        let pid = child.id().unwrap_or(0) as i32;
        let (sender, chunks) = mpsc::channel(64);
        let mut child_stdin = child.stdin.take().expect("piped stdin");
        tokio::spawn(async move {
            // A command that exits without reading all its input is not an error here.
            let _ = child_stdin.write_all(&stdin).await;
            let _ = child_stdin.shutdown().await;
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let out_sender = sender.clone();
        tokio::spawn(pump(stdout, out_sender, Chunk::Stdout));
        let err_sender = sender.clone();
        tokio::spawn(pump(stderr, err_sender, Chunk::Stderr));
        tokio::spawn(async move {
            let chunk = match child.wait().await {
                Ok(status) => match status.code() {
                    Some(code) => Chunk::Exit(Some(code), None),
                    None => Chunk::Exit(None, Some(format!("killed ({status})"))),
                },
                Err(e) => Chunk::Exit(None, Some(format!("lost the process: {e}"))),
            };
            let _ = sender.send(chunk).await;
        });
        let kill = KillGuard::new(move || {
            if pid > 0 {
                // SAFETY: killpg only sends a signal; pid is the group we created above.
                unsafe {
                    libc::killpg(pid, libc::SIGKILL);
                }
            }
        });
        Ok(Running { chunks, kill })
    }

    /// Run one command with `bash -c` and collect its output.
    pub async fn capture(&self, command: &str) -> Output {
        let mut std_command = std::process::Command::new("bash");
        std_command
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group: abandoning the capture (a health check's timeout) stops
        // everything it started, not only bash.
        std_command.process_group(0);
        let child = match Command::from(std_command).spawn() {
            Ok(child) => child,
            Err(e) => {
                return Output {
                    status: None,
                    reason: Some(LocalError::Start(e).to_string()),
                    ..Output::default()
                }
            }
        };
        let pid = child.id().unwrap_or(0) as i32;
        let mut guard = KillGuard::new(move || {
            if pid > 0 {
                // SAFETY: killpg only sends a signal to the group created above.
                unsafe {
                    libc::killpg(pid, libc::SIGKILL);
                }
            }
        });
        let output = child.wait_with_output().await;
        guard.disarm();
        match output {
            Ok(output) => Output {
                status: output.status.code(),
                reason: output
                    .status
                    .code()
                    .is_none()
                    .then(|| format!("killed ({})", output.status)),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                unreachable: false,
            },
            Err(e) => Output {
                status: None,
                reason: Some(LocalError::Start(e).to_string()),
                ..Output::default()
            },
        }
    }
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(
    mut reader: R,
    sender: mpsc::Sender<Chunk>,
    wrap: fn(Vec<u8>) -> Chunk,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if sender.send(wrap(buffer[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
}
