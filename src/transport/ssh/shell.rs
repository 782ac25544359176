//! One remote shell per host, kept for the whole run: every script and internal command of the
//! host travels to the same `bash -s` over the same session channel, its stdin kept open, so a
//! deploy costs a host one sshd session and one shell however many fleet barriers it has (each
//! new session is a fork and a login shell on the host, and a round trip).
//!
//! Each script is sent as `( eval 'SCRIPT' ) </dev/null` followed by a line that prints a done
//! marker with the script's exit status on both streams: `eval` of a quoted string keeps a script
//! that does not parse (an unterminated quote) from swallowing the next ones, the subshell keeps
//! its `exit`, `cd` and variables from reaching the next, and `/dev/null` keeps its commands from
//! reading the shell's own input. The marker carries a fresh token, as the script's own markers
//! do, so no command can fake it.
//!
//! A script that is stopped (its timeout, Ctrl-C) takes the shell with it: the kill reaches the
//! shell's whole process group, and the host's next script starts a new shell. While the shell is
//! busy, another script on the same host gets a channel of its own (the caller's fallback).
//!
//! The shell is watched on the host (see [`WATCHED_SHELL`]): when the controller's end of the
//! session closes without the goodbye dep sends at the end of every run ([`close_all`]), the
//! controller is gone (killed, a cancelled CI job, a dropped connection), and everything the shell
//! started is killed within a second instead of running on unattended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::pump::tracked;
use super::{Ssh, SshError};
use crate::quote::quote;
use crate::transport::script::token;
use crate::transport::{Chunk, KillGuard, Running, CHUNK_QUEUE};

/// A host's kept shell. Dropping it ends the shell (EOF on its stdin) without killing what the
/// scripts started in the background.
pub(super) struct Shell {
    requests: mpsc::Sender<Request>,
    busy: Arc<AtomicBool>,
}

/// What handing a script to the shell gave.
pub(super) enum Submitted {
    Running(Running),
    /// Another script is running in it.
    Busy,
    /// It ended (stopped, or the connection was lost): start another.
    Gone,
}

struct Request {
    /// What the shell reads, in order: the script's line, its stdin bytes, the done line.
    input: Vec<Arc<Vec<u8>>>,
    token: String,
    chunks: mpsc::Sender<Chunk>,
    kill: oneshot::Receiver<()>,
}

/// The kept shell as the host runs it: `bash -s` reading a fifo, and in the background the
/// watchdog that feeds the fifo from the session's stdin. When that stdin ends, either the
/// goodbye (`exit`) has ended the shell already, or the controller is gone: then, after a grace of
/// three seconds, the watchdog kills the session's whole process group (the shell, what it runs, and
/// itself). Without mktemp or mkfifo, the shell runs unwatched.
const WATCHED_SHELL: &str = r#"if d=$(mktemp -d "${TMPDIR:-/tmp}/dep-shell.XXXXXX") && mkfifo "$d/in"; then
( exec 3>"$d/in"; rm -rf "$d"; cat <&4 >&3; exec 3>&- 4<&-
  n=0; while kill -0 $$ 2>/dev/null; do
    n=$((n+1)); if [ $n -gt 60 ]; then kill -KILL -- -$$ 2>/dev/null || kill -KILL $$; exit 0; fi
    sleep 0.05
  done ) 4<&0 </dev/null >/dev/null 2>&1 &
exec bash -s <"$d/in"
fi
rm -rf "$d"
exec bash -s"#;

/// How long the goodbye may take on one host before dep exits anyway.
const GOODBYE: Duration = Duration::from_secs(1);

/// Every kept shell of this process: told to say goodbye at the end of the run.
struct Registry {
    closing: watch::Sender<bool>,
    keepers: Mutex<Vec<JoinHandle<()>>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    closing: watch::Sender::new(false),
    keepers: Mutex::new(Vec::new()),
});

/// End every kept shell of this process cleanly (the goodbye), so that their watchdogs leave
/// alone what the run started on purpose (a daemon in the background). Call it once, when the
/// run is over; it waits at most a moment.
pub async fn close_all() {
    REGISTRY.closing.send_replace(true);
    let keepers = std::mem::take(&mut *REGISTRY.keepers.lock().unwrap_or_else(|e| e.into_inner()));
    let _ = tokio::time::timeout(GOODBYE * 2, futures::future::join_all(keepers)).await;
}

impl Shell {
    /// Start the shell on `ssh`'s connection.
    pub(super) async fn open(ssh: &Ssh) -> Result<Shell, SshError> {
        let (stdin, input) = mpsc::channel(4);
        let running = ssh
            .spawn_streaming(&tracked(WATCHED_SHELL, None), input)
            .await?;
        let (requests, receiver) = mpsc::channel(1);
        let busy = Arc::new(AtomicBool::new(false));
        let keeper = Keeper {
            host: ssh.host(),
            shell: running,
            stdin,
            requests: receiver,
            busy: Arc::clone(&busy),
            closing: REGISTRY.closing.subscribe(),
        };
        let handle = tokio::spawn(keeper.run());
        let mut keepers = REGISTRY.keepers.lock().unwrap_or_else(|e| e.into_inner());
        keepers.retain(|k| !k.is_finished());
        keepers.push(handle);
        Ok(Shell { requests, busy })
    }

    /// Run `script` in the shell, unless it is busy or gone. With `payload`, the script reads
    /// those bytes on its stdin (see [`wrap`]).
    pub(super) fn submit(&self, script: &str, payload: Option<Arc<Vec<u8>>>) -> Submitted {
        if self.requests.is_closed() {
            return Submitted::Gone;
        }
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Submitted::Busy;
        }
        let token = token();
        let (sender, chunks) = mpsc::channel(CHUNK_QUEUE);
        let (kill_sender, kill) = oneshot::channel();
        let (run, done) = wrap(script, &token, payload.as_ref().map(|p| p.len()));
        let mut input = vec![Arc::new(run.into_bytes())];
        input.extend(payload);
        input.push(Arc::new(done.into_bytes()));
        let request = Request {
            input,
            token,
            chunks: sender,
            kill,
        };
        match self.requests.try_send(request) {
            Ok(()) => Submitted::Running(Running {
                chunks,
                kill: KillGuard::new(move || {
                    let _ = kill_sender.send(());
                }),
            }),
            Err(_) => Submitted::Gone,
        }
    }
}

/// The text the shell reads for one script: the line that runs it, then (after the payload's
/// bytes, when it has one) the line that prints the done marker with its status.
///
/// A script given `payload` bytes reads them from `head -c`, which takes exactly that many from
/// the shell's input and no more (the shell reads its input a byte at a time, so the bytes
/// right after the line are still there): the shell reads on after them. What the script leaves
/// unread is drained, so that none of the bytes is ever read as commands.
fn wrap(script: &str, token: &str, payload: Option<usize>) -> (String, String) {
    let run = match payload {
        None => format!("( eval {} ) </dev/null\n", quote(script)),
        Some(bytes) => format!(
            "head -c {bytes} | {{ ( eval {} ); __dep_rc=$?; cat >/dev/null; exit $__dep_rc; }}\n",
            quote(script)
        ),
    };
    let done = format!(
        "__dep_rc=$?\n\
         printf '\\036%s done %s\\n' {token} \"$__dep_rc\"; printf '\\036%s done %s\\n' {token} \"$__dep_rc\" >&2\n"
    );
    (run, done)
}

/// Owns the shell's channel: hands each script's output to its caller until the done marker has
/// passed on both streams, and drains what background processes print between scripts (an unread
/// channel stalls the connection).
struct Keeper {
    host: String,
    shell: Running,
    stdin: mpsc::Sender<Arc<Vec<u8>>>,
    requests: mpsc::Receiver<Request>,
    busy: Arc<AtomicBool>,
    /// Becomes true when the run is over: say goodbye.
    closing: watch::Receiver<bool>,
}

impl Keeper {
    async fn run(mut self) {
        loop {
            let next = tokio::select! {
                request = self.requests.recv() => request,
                _ = self.closing.wait_for(|closing| *closing) => None,
                chunk = self.shell.chunks.recv() => match chunk {
                    Some(Chunk::Stdout(_) | Chunk::Stderr(_)) => continue,
                    Some(Chunk::Exit(..)) | None => break,
                },
            };
            // The run is over (or the host's backend gone): end the shell on purpose.
            let Some(mut request) = next else {
                self.goodbye().await;
                break;
            };
            let (exit, survived) = self.serve(&mut request).await;
            // The shell's state is settled before the caller hears the end: its next script
            // finds the shell free (or gone), never busy.
            if survived {
                self.busy.store(false, Ordering::Release);
            } else {
                self.requests.close();
            }
            let _ = request.chunks.send(exit).await;
            if !survived {
                break;
            }
        }
        self.requests.close();
        // A script handed over just as the shell ended while idle: it never ran.
        while let Ok(request) = self.requests.try_recv() {
            let _ = request.chunks.send(self.no_status()).await;
        }
        self.shell.kill.disarm();
    }

    /// The end of a script the shell never finished: no exit status, naming the host.
    fn no_status(&self) -> Chunk {
        let reason = SshError::NoStatus {
            host: self.host.clone(),
        };
        Chunk::Exit(None, Some(reason.to_string()))
    }

    /// End the idle shell on purpose: `exit`, then the end of its input, and wait (briefly) for
    /// it to go, so that the watchdog knows the controller did not just vanish.
    async fn goodbye(&mut self) {
        tracing::debug!(host = %self.host, "goodbye to the kept shell");
        self.busy.store(true, Ordering::Release);
        self.requests.close();
        let _ = self.stdin.send(Arc::new(b"exit 0\n".to_vec())).await;
        let (closed, _) = mpsc::channel(1);
        // Dropping the sender is the end of the shell's stdin.
        drop(std::mem::replace(&mut self.stdin, closed));
        let _ = tokio::time::timeout(GOODBYE, async {
            while let Some(chunk) = self.shell.chunks.recv().await {
                if let Chunk::Exit(..) = chunk {
                    break;
                }
            }
        })
        .await;
    }

    /// Run one script, passing its output on; its end, and whether the shell survived it.
    async fn serve(&mut self, request: &mut Request) -> (Chunk, bool) {
        for piece in std::mem::take(&mut request.input) {
            if self.stdin.send(piece).await.is_err() {
                return (self.no_status(), false);
            }
        }
        let mut streams = [Done::new(&request.token), Done::new(&request.token)];
        let mut kill_armed = true;
        loop {
            tokio::select! {
                chunk = self.shell.chunks.recv() => {
                    let (slot, data) = match chunk {
                        Some(Chunk::Stdout(data)) => (0, data),
                        Some(Chunk::Stderr(data)) => (1, data),
                        Some(exit @ Chunk::Exit(..)) => return (exit, false),
                        None => return (self.no_status(), false),
                    };
                    let output = streams[slot].feed(&data);
                    if !output.is_empty() {
                        let chunk = if slot == 0 { Chunk::Stdout(output) } else { Chunk::Stderr(output) };
                        let _ = request.chunks.send(chunk).await;
                    }
                    if let [Done { status: Some(status), .. }, Done { status: Some(_), .. }] = &streams {
                        return (Chunk::Exit(Some(*status), None), true);
                    }
                }
                killed = &mut request.kill, if kill_armed => {
                    kill_armed = false;
                    if killed.is_ok() {
                        // The script's processes are the shell's: the kill takes them all.
                        self.shell.kill.kill();
                        let reason = SshError::Stopped { host: self.host.clone() };
                        return (Chunk::Exit(None, Some(reason.to_string())), false);
                    }
                }
            }
        }
    }
}

/// Finds a script's done marker in one output stream, passing on the output before it.
struct Done {
    /// RS, the token, ` done `. RS is never in normal output, so the marker needs no line of its
    /// own: output without a final newline ends right before it, and a line's newline is never
    /// held back.
    needle: Vec<u8>,
    /// Bytes that may be the start of the marker, held until they are known not to be.
    held: Vec<u8>,
    status: Option<i32>,
}

impl Done {
    fn new(token: &str) -> Done {
        Done {
            needle: format!("\u{1e}{token} done ").into_bytes(),
            held: Vec::new(),
            status: None,
        }
    }

    /// The output in `data` that precedes the marker (none once it was seen).
    fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        if self.status.is_some() {
            // A background process printing after the script ended: not the script's.
            return Vec::new();
        }
        self.held.extend_from_slice(data);
        if let Some(at) = find(&self.held, &self.needle) {
            let rest = &self.held[at + self.needle.len()..];
            let Some(end) = rest.iter().position(|b| *b == b'\n') else {
                return self.held.drain(..at).collect();
            };
            let status = String::from_utf8_lossy(&rest[..end]).trim().parse().ok();
            // A status that does not parse cannot come from the shell: count it a failure.
            self.status = Some(status.unwrap_or(-1));
            let output = self.held[..at].to_vec();
            self.held = Vec::new();
            return output;
        }
        // Keep only a tail that could still grow into the marker.
        let keep = partial_match(&self.held, &self.needle);
        let cut = self.held.len() - keep;
        let output: Vec<u8> = self.held.drain(..cut).collect();
        output
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The length of the longest tail of `data` that is a proper start of `needle`.
fn partial_match(data: &[u8], needle: &[u8]) -> usize {
    let longest = data.len().min(needle.len() - 1);
    (1..=longest)
        .rev()
        .find(|&n| data[data.len() - n..] == needle[..n])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shell's text for `script`, run by a real `bash -s`, its output split by `Done`.
    fn through_bash(scripts: &[(&str, Option<&[u8]>)]) -> Vec<(String, String, i32)> {
        use std::io::Write;
        let tokens: Vec<String> = scripts.iter().map(|_| token()).collect();
        let mut child = std::process::Command::new("bash")
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for ((script, payload), token) in scripts.iter().zip(&tokens) {
            let (run, done) = wrap(script, token, payload.map(<[u8]>::len));
            stdin.write_all(run.as_bytes()).unwrap();
            stdin.write_all(payload.unwrap_or_default()).unwrap();
            stdin.write_all(done.as_bytes()).unwrap();
        }
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let mut results = Vec::new();
        let (mut out, mut err) = (&output.stdout[..], &output.stderr[..]);
        for token in &tokens {
            let split = |stream: &mut &[u8]| {
                let mut done = Done::new(token);
                let mut text = Vec::new();
                // Byte by byte: the marker split anywhere still is found.
                let mut used = 0;
                for byte in stream.iter() {
                    used += 1;
                    text.extend(done.feed(std::slice::from_ref(byte)));
                    if done.status.is_some() {
                        break;
                    }
                }
                *stream = &stream[used..];
                (String::from_utf8(text).unwrap(), done.status.unwrap())
            };
            let (stdout, status) = split(&mut out);
            let (stderr, status_err) = split(&mut err);
            assert_eq!(status, status_err);
            results.push((stdout, stderr, status));
        }
        results
    }

    #[test]
    fn scripts_in_one_shell_keep_to_themselves() {
        let results = through_bash(&[
            ("cd /tmp; x=1; echo \"out $x\"; echo err >&2; exit 3", None),
            (
                "echo \"$x\" \"$PWD\" | grep -c /tmp; read line || echo no-input",
                None,
            ),
            ("echo 'unterminated", None),
            ("printf 'no newline'; echo $$ > /dev/null", None),
            ("true", None),
        ]);
        assert_eq!(results[0], ("out 1\n".into(), "err\n".into(), 3));
        // No variable, directory or input from the shell leaked into the second script.
        assert_eq!(results[1].0, "0\nno-input\n");
        assert_eq!(results[1].2, 0);
        // A script that does not parse fails alone; the shell goes on.
        assert_ne!(results[2].2, 0);
        assert!(results[2].1.contains("unexpected EOF"), "{:?}", results[2]);
        assert_eq!(results[3].0, "no newline");
        assert_eq!(results[4], (String::new(), String::new(), 0));
    }

    #[test]
    fn a_payload_is_read_by_its_script_alone() {
        // Bytes that would be commands if the shell read them, and none of them a newline.
        let payload = b"echo LEAKED; exit 9;".repeat(5000);
        let results = through_bash(&[
            ("wc -c", Some(&payload[..])),
            // Reads a little, fails: the rest is drained, not run.
            ("head -c 4; exit 5", Some(&payload[..])),
            ("echo after", None),
        ]);
        assert_eq!(results[0].0.trim(), payload.len().to_string());
        assert_eq!(results[1], ("echo".into(), String::new(), 5));
        assert_eq!(results[2], ("after\n".into(), String::new(), 0));
    }

    #[test]
    fn a_marker_lookalike_without_the_token_is_output() {
        let mut done = Done::new("t0k");
        let mut output = done.feed(b"a\n\x1et0j done 0\nb\n");
        // A whole line is passed on at once.
        assert_eq!(output, b"a\n\x1et0j done 0\nb\n");
        output.extend(done.feed(b"c\x1et0"));
        assert_eq!(done.status, None);
        output.extend(done.feed(b"k done 7\n"));
        assert_eq!(done.status, Some(7));
        assert_eq!(output, b"a\n\x1et0j done 0\nb\nc");
    }
}
