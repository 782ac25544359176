//! Processes, written once: finding the ones a test started (by a word of its own in their
//! command line), signalling a process or a whole group, waiting with a time limit, and the
//! `Watchdog` that aborts a hung test.
//!
//! All tests share one process, so a test only ever counts processes it marked with a word no
//! other test uses (a distinctive `sleep 28.8642`, a path inside its own temporary directory).

use std::io::Read;
use std::process::{Child, ExitStatus};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

/// One `/proc/PID` entry: its pid, its command line (NUL-separated) and whether it is a zombie.
fn processes() -> impl Iterator<Item = (u32, Vec<u8>, bool)> {
    std::fs::read_dir("/proc").unwrap().filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        Some((pid, cmdline, is_zombie(pid)?))
    })
}

/// Whether `pid` is a zombie; None when there is no such process.
fn is_zombie(pid: u32) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`; comm may hold spaces and parentheses.
    Some(stat[stat.rfind(')')? + 1..].trim_start().starts_with('Z'))
}

/// Whether `pid` has exited: gone, or a zombie waiting for its parent to reap it.
pub fn is_gone(pid: u32) -> bool {
    is_zombie(pid).unwrap_or(true)
}

/// How many live (not zombie) processes have `marker` anywhere in their command line.
pub fn running_with(marker: &str) -> usize {
    let marker = marker.as_bytes();
    processes()
        .filter(|(_, cmdline, zombie)| {
            !zombie && cmdline.windows(marker.len()).any(|w| w == marker)
        })
        .count()
}

/// How many processes have exactly `name` as argv[0] (set with `exec -a NAME`).
pub fn named(name: &str) -> usize {
    processes()
        .filter(|(_, cmdline, _)| cmdline.split(|b| *b == 0).next() == Some(name.as_bytes()))
        .count()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Sends `sig` to the process group `pgid` (a child the tests made a group leader with
/// `process_group(0)`, and have not reaped, so that the id cannot have been reused).
pub fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: as for `signal`.
    unsafe {
        libc::killpg(pgid as libc::pid_t, sig);
    }
}

/// Process groups of running servers, killed by `Watchdog` before it aborts the test process.
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Has `Watchdog` kill the group `pgid` before it aborts; `forget_group` when it is gone.
pub fn register_group(pgid: u32) {
    GROUPS.lock().unwrap().push(pgid);
}

pub fn forget_group(pgid: u32) {
    if let Ok(mut groups) = GROUPS.lock() {
        groups.retain(|&g| g != pgid);
    }
}

/// Aborts the whole test process (after killing every registered server group) if the test is
/// still running after `limit`: a hang anywhere (nginx, php-fpm, sshd, dep, a client) fails
/// instead of blocking the suite. Disarmed on drop. The limit must allow for the rest of the
/// suite running beside the test.
pub struct Watchdog {
    disarm: mpsc::Sender<()>,
}

impl Watchdog {
    pub fn arm(label: &str, limit: Duration) -> Watchdog {
        let (disarm, disarmed) = mpsc::channel::<()>();
        let label = label.to_string();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                eprintln!("{label}: still running after {limit:?}; killing the servers, aborting");
                let groups = GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
                for pgid in groups {
                    signal_group(pgid, libc::SIGKILL);
                }
                std::process::abort();
            }
        });
        Watchdog { disarm }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.disarm.send(());
    }
}

/// What a finished child printed, and how it ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Waits for `child`, reading its piped stdout and stderr, and SIGKILLs it (failing the test,
/// named by `label`) when it still runs after `limit`.
pub fn wait_within(mut child: Child, label: &str, limit: Duration) -> Finished {
    let pid = child.id();
    let readers = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .map(|pipe| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    });
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    let status = match receiver.recv_timeout(limit) {
        Ok(status) => status.unwrap_or_else(|e| panic!("cannot wait for {label}: {e}")),
        Err(_) => {
            // The waiting thread has not reaped the child, so the pid is still ours.
            signal(pid, libc::SIGKILL);
            panic!("{label} still running after {limit:?}");
        }
    };
    let [stdout, stderr] = readers.map(|reader| reader.join().expect("a pipe reader panicked"));
    Finished {
        status,
        stdout,
        stderr,
    }
}

/// Wait until `path` exists (a marker a host's task touches), at most `limit`.
#[track_caller]
pub fn wait_for_file(path: &std::path::Path, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} did not appear within {limit:?}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
