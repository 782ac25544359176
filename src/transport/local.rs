//! The local backend: commands run on this machine with bash (hosts marked `local = true`, and
//! tasks marked `local`).

use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::{Chunk, KillGuard, Output, Running, CHUNK_QUEUE, MAX_CAPTURE};

#[derive(Debug, Default)]
pub struct Local;

/// Why a local command could not run.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot start bash: {0}")]
    Start(std::io::Error),
    #[error("the command printed more than {} MiB, more than dep keeps of an internal command", MAX_CAPTURE / (1024 * 1024))]
    TooMuchOutput,
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
        let (sender, chunks) = mpsc::channel(CHUNK_QUEUE);
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
        let mut child = match Command::from(std_command).spawn() {
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
        let stdout = bounded(child.stdout.take().expect("piped stdout"));
        let stderr = bounded(child.stderr.take().expect("piped stderr"));
        let (status, (stdout, stdout_overflow), (stderr, stderr_overflow)) =
            tokio::join!(child.wait(), stdout, stderr);
        guard.disarm();
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                return Output {
                    status: None,
                    reason: Some(LocalError::Start(e).to_string()),
                    ..Output::default()
                }
            }
        };
        let (status, reason) = if stdout_overflow || stderr_overflow {
            (None, Some(LocalError::TooMuchOutput.to_string()))
        } else {
            let reason = status
                .code()
                .is_none()
                .then(|| format!("killed ({status})"));
            (status.code(), reason)
        };
        Output {
            status,
            reason,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            unreachable: false,
        }
    }
}

/// All of `reader` up to MAX_CAPTURE bytes, and whether it printed more (the rest is read and
/// dropped, so the command is never blocked on a full pipe).
async fn bounded<R: tokio::io::AsyncRead + Unpin>(mut reader: R) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut overflow = false;
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return (kept, overflow),
            Ok(n) if overflow || kept.len() + n > MAX_CAPTURE => overflow = true,
            Ok(n) => kept.extend_from_slice(&buffer[..n]),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_capture_keeps_what_a_command_prints() {
        let output = Local.capture("echo out; echo err >&2; exit 3").await;
        assert_eq!(output.status, Some(3));
        assert_eq!(output.stdout, "out\n");
        assert_eq!(output.stderr, "err\n");
        assert_eq!(output.reason, None);
    }

    #[tokio::test]
    async fn a_capture_that_prints_too_much_fails_and_keeps_a_bounded_part() {
        let output = Local
            .capture("head -c 9000000 /dev/zero; echo done >&2")
            .await;
        assert_eq!(output.status, None, "too much output is a failure");
        let reason = output.reason.expect("a reason");
        assert!(reason.contains("more than 4 MiB"), "{reason}");
        assert!(output.stdout.len() <= MAX_CAPTURE);
        assert_eq!(output.stderr, "done\n", "the command ran to its end");
    }
}
