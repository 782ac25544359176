//! dep on a terminal: the real binary run on a pseudo-terminal of a given size (libc's openpty),
//! its output read as a screen by a terminal emulator (the `vt100` crate), so that a test sees
//! what a user would, row by row, and can resize the terminal while dep runs.
//!
//! ```text
//! let mut term = Terminal::start(&project, &["deploy", "test"], &[("DEP_NOW", T1)], 24, 80);
//! term.wait_for("… and 19 more", LIMIT);       // the screen shows it (within LIMIT)
//! term.resize(12, 100);                         // TIOCSWINSZ; the emulator takes the new size
//! let status = term.wait(LIMIT);                // the exit code
//! ```

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::process;
use super::project::TestProject;

/// A run of dep on a pseudo-terminal.
pub struct Terminal {
    child: Child,
    master: OwnedFd,
    screen: Arc<Mutex<vt100::Parser>>,
    reader: Option<thread::JoinHandle<()>>,
    label: String,
}

impl Terminal {
    /// Start `dep args` in `project` on a terminal of `rows` x `columns`.
    pub fn start(
        project: &TestProject,
        args: &[&str],
        env: &[(&str, &str)],
        rows: u16,
        columns: u16,
    ) -> Terminal {
        let (master, slave) = open_pty(rows, columns);
        let output = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("cannot dup the pty"));
        let mut command = project.command(args, env);
        command
            .env("TERM", "xterm-256color")
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITLAB_CI")
            .stdin(Stdio::null())
            .stdout(output(&slave))
            .stderr(output(&slave));
        let child = command.spawn().expect("cannot run the dep binary");
        // Only the child holds the terminal's other end now: its exit ends the reader.
        drop(slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            non_zero(rows),
            non_zero(columns),
            0,
        )));
        let reader = {
            let screen = Arc::clone(&screen);
            let mut pty = File::from(master.try_clone().expect("cannot dup the pty"));
            thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                // Linux answers EIO once the last process holding the terminal is gone.
                while let Ok(n) = pty.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    screen.lock().unwrap().process(&buffer[..n]);
                }
            })
        };
        Terminal {
            child,
            master,
            screen,
            reader: Some(reader),
            label: format!("dep {}", args.join(" ")),
        }
    }

    /// What the screen shows now, row by row (trailing blanks trimmed), and whether each row
    /// ran over into the next (a line wider than the terminal).
    pub fn rows(&self) -> Vec<(String, bool)> {
        let parser = self.screen.lock().unwrap();
        let screen = parser.screen();
        let (_, columns) = screen.size();
        screen
            .rows(0, columns.get())
            .enumerate()
            .map(|(i, row)| (row.trim_end().to_string(), screen.row_wrapped(i as u16)))
            .collect()
    }

    /// The screen as text.
    pub fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Wait until the screen shows `text`, failing after `limit`; returns the rows then.
    #[track_caller]
    pub fn wait_for(&mut self, text: &str, limit: Duration) -> Vec<(String, bool)> {
        self.wait_until(limit, text, |rows| {
            rows.iter().any(|(r, _)| r.contains(text))
        })
    }

    /// Wait until `ready` holds for the screen's rows, failing (naming `what`) after `limit`.
    #[track_caller]
    pub fn wait_until(
        &mut self,
        limit: Duration,
        what: &str,
        ready: impl Fn(&[(String, bool)]) -> bool,
    ) -> Vec<(String, bool)> {
        let deadline = Instant::now() + limit;
        loop {
            let rows = self.rows();
            if ready(&rows) {
                return rows;
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "`{}`: the screen never showed {what:?} ({})\n{}",
                    self.label,
                    if exited.is_some() {
                        "dep exited"
                    } else {
                        "timed out"
                    },
                    self.contents()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resize the terminal to `rows` x `columns`, as a terminal window does.
    pub fn resize(&mut self, rows: u16, columns: u16) {
        // The emulator first, so that what dep draws for the new size lands on a screen of it.
        self.screen
            .lock()
            .unwrap()
            .screen_mut()
            .set_size(non_zero(rows), non_zero(columns));
        let size = winsize(rows, columns);
        // SAFETY: TIOCSWINSZ reads one `winsize` from a valid pointer; the fd is ours and open.
        let done = unsafe { libc::ioctl(raw(&self.master), libc::TIOCSWINSZ, &size) };
        assert_eq!(done, 0, "cannot resize the pty");
    }

    /// Wait for dep to exit (killing it after `limit`) and for the screen to take all it
    /// printed; returns its exit code.
    #[track_caller]
    pub fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("cannot wait for dep") {
                break status;
            }
            if Instant::now() > deadline {
                process::signal(self.child.id(), libc::SIGKILL);
                panic!(
                    "`{}` still running after {limit:?}\n{}",
                    self.label,
                    self.contents()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        // The reader ends when the last holder of the terminal is gone: dep's own processes,
        // or, rarely, one of another test's that was started while this pty was being opened.
        let drained = Instant::now() + Duration::from_secs(3);
        while self.reader.as_ref().is_some_and(|r| !r.is_finished()) && Instant::now() < drained {
            thread::sleep(Duration::from_millis(20));
        }
        if let Some(reader) = self.reader.take().filter(|r| r.is_finished()) {
            reader.join().expect("the pty reader panicked");
        }
        status.code().unwrap_or(-1)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn non_zero(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).expect("a terminal has at least one row and one column")
}

fn winsize(rows: u16, columns: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn raw(fd: &OwnedFd) -> RawFd {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

/// A new pseudo-terminal of `rows` x `columns`: its master and slave ends.
fn open_pty(rows: u16, columns: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = winsize(rows, columns);
    // SAFETY: openpty writes two fds through valid pointers; a null name and termios are allowed.
    let done = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(done, 0, "cannot open a pty");
    for fd in [master, slave] {
        // SAFETY: fcntl on fds openpty just gave us; close-on-exec keeps them out of other
        // tests' children (the child gets its own copies of the slave as stdout and stderr).
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    // SAFETY: both fds are open and owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}
