//! A host's consecutive commands as ONE shell script, and the reader that splits the script's
//! output back into per-command starts, lines, ends and exit statuses.
//!
//! One script per run of steps is what makes a fleet fast over SSH (one session and one shell per
//! host instead of one per command); markers on both streams keep reports per task.

use std::sync::Arc;

use crate::quote::quote;
use crate::transport::command::Command;

/// The marker byte that starts a control line (ASCII record separator: never in normal output).
const MARK: char = '\u{1e}';

/// The longest piece of a line a [`Reader`] holds: a longer line (200 MB without a newline) is
/// passed on in pieces of this size, so memory stays bounded whatever a command prints.
pub const MAX_LINE: usize = 16 * 1024;

/// Build the script for `commands`. `token` makes the control lines unguessable for the commands.
pub fn build(commands: &[Command], token: &str) -> String {
    build_with(commands, token, "</dev/null")
}

/// The script for one command that reads the standard input it is given (an upload).
pub fn build_single(command: &Command, token: &str) -> String {
    build_with(std::slice::from_ref(command), token, "")
}

/// The script of one batch and how it travels.
pub enum Script {
    /// The script itself is the shell's stdin (`bash -s`); commands read /dev/null.
    Piped(String),
    /// One command that reads the bytes given on stdin; the script is `bash -c`'s argument.
    WithStdin(String, Arc<Vec<u8>>),
}

impl Script {
    /// The script for `batch`: a lone command with stdin gets it, the rest travel as one script.
    pub fn for_batch(batch: &[Command], token: &str) -> Script {
        match batch {
            [command] => match &command.stdin {
                Some(stdin) => Script::WithStdin(build_single(command, token), Arc::clone(stdin)),
                None => Script::Piped(build(batch, token)),
            },
            _ => Script::Piped(build(batch, token)),
        }
    }
}

fn build_with(commands: &[Command], token: &str, stdin: &str) -> String {
    let mut script = String::new();
    script.push_str(&format!(
        "__dep_mark() {{ printf '\\n{MARK}%s %s\\n' {token} \"$*\"; printf '\\n{MARK}%s %s\\n' {token} \"$*\" >&2; }}\n"
    ));
    for (index, command) in commands.iter().enumerate() {
        script.push_str(&format!("__dep_mark start {index}\n"));
        let mut setup = String::new();
        if let Some(cwd) = &command.cwd {
            setup.push_str(&format!("cd -- {} || exit $?\n", quote(cwd)));
        }
        for (name, value) in &command.env {
            setup.push_str(&format!("export {}={}\n", name, quote(value)));
        }
        // Commands never read the script itself: their stdin is /dev/null unless given data.
        let body = format!("(\n{setup}{}\n) {stdin}", command.script.trim_end());
        let attempt = if command.retries == 0 {
            format!("{body}\n__dep_rc=$?\n")
        } else {
            format!(
                "__dep_n=0\nwhile :; do\n{body}\n__dep_rc=$?\n[ $__dep_rc -eq 0 ] && break\n\
                 __dep_n=$((__dep_n+1)); [ $__dep_n -gt {} ] && break\n__dep_mark retry {index} $__dep_n $__dep_rc\ndone\n",
                command.retries
            )
        };
        match &command.condition {
            Some(condition) => script.push_str(&format!(
                "if (\n{setup}{}\n) </dev/null >/dev/null 2>&1; then\n{attempt}else __dep_rc=skip; fi\n",
                condition.trim_end()
            )),
            None => script.push_str(&attempt),
        }
        script.push_str(&format!("__dep_mark end {index} $__dep_rc\n"));
        if !command.continue_on_failure {
            script.push_str("case $__dep_rc in 0|skip) ;; *) exit $__dep_rc ;; esac\n");
        }
    }
    script.push_str("exit 0\n");
    script
}

/// What the script reports about one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started(usize),
    Line {
        index: usize,
        line: String,
    },
    Retry {
        index: usize,
        attempt: u32,
        status: i32,
    },
    /// `status` None: skipped by its condition.
    Finished {
        index: usize,
        status: Option<i32>,
    },
}

/// Splits one output stream of a script into events. Feed it bytes as they arrive.
#[derive(Debug)]
pub struct Reader {
    prefix: String,
    buffer: Vec<u8>,
    current: Option<usize>,
    /// An empty line held back: the marker's own leading newline, unless more output follows.
    pending_blank: bool,
}

impl Reader {
    pub fn new(token: &str) -> Reader {
        Reader {
            prefix: format!("{MARK}{token} "),
            buffer: Vec::new(),
            current: None,
            pending_blank: false,
        }
    }

    pub fn feed(&mut self, mut data: &[u8], events: &mut Vec<Event>) {
        // In steps that fill the buffer to MAX_LINE at most, so that no line or piece passed on
        // is longer than that.
        while !data.is_empty() {
            let room = MAX_LINE.saturating_sub(self.buffer.len()).max(1);
            let (now, later) = data.split_at(data.len().min(room));
            data = later;
            // Only the new bytes can hold a newline: what was held has none.
            let mut search = self.buffer.len();
            self.buffer.extend_from_slice(now);
            let mut start = 0;
            while let Some(at) = self.buffer[search..].iter().position(|b| *b == b'\n') {
                let newline = search + at;
                let line = String::from_utf8_lossy(&self.buffer[start..newline]).into_owned();
                self.line(line, events);
                start = newline + 1;
                search = start;
            }
            self.buffer.drain(..start);
            while self.buffer.len() >= MAX_LINE {
                self.piece(events);
            }
        }
    }

    /// Pass on the start of a line too long to hold. Its end stays held when it may be the start
    /// of a marker (output without a final newline runs into the next marker): a marker line is
    /// short, so only the last few bytes can be one.
    fn piece(&mut self, events: &mut Vec<Event>) {
        let tail = self.prefix.len() + 32;
        let mut cut = self.buffer.len().saturating_sub(tail).min(MAX_LINE);
        match self.buffer[cut..]
            .iter()
            .take(tail)
            .position(|b| *b == MARK as u8)
        {
            Some(at) => cut += at,
            // Never split a UTF-8 character (at most 3 continuation bytes back: bytes that are
            // not UTF-8 at all are cut where they are, so a piece is never empty).
            None => {
                let floor = cut.saturating_sub(3).max(1);
                while cut > floor && (self.buffer[cut] & 0xC0) == 0x80 {
                    cut -= 1;
                }
            }
        }
        let piece: Vec<u8> = self.buffer.drain(..cut).collect();
        self.output(String::from_utf8_lossy(&piece).into_owned(), events);
    }

    /// The stream ended: a last partial line still counts.
    #[cfg(test)]
    pub fn finish(&mut self, events: &mut Vec<Event>) {
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            self.line(String::from_utf8_lossy(&rest).into_owned(), events);
        }
        self.flush_blank(events);
    }

    fn line(&mut self, line: String, events: &mut Vec<Event>) {
        if let Some(control) = line.strip_prefix(&self.prefix) {
            self.pending_blank = false;
            self.control(control, events);
            return;
        }
        // A line may end with a marker when the command's output lacked a final newline.
        if let Some(at) = line.find(&self.prefix) {
            let (output, control) = line.split_at(at);
            self.output(output.to_string(), events);
            self.pending_blank = false;
            self.control(&control[self.prefix.len()..], events);
            return;
        }
        self.output(line, events);
    }

    fn output(&mut self, line: String, events: &mut Vec<Event>) {
        self.flush_blank(events);
        if line.is_empty() {
            self.pending_blank = true;
        } else if let Some(index) = self.current {
            events.push(Event::Line { index, line });
        }
    }

    fn flush_blank(&mut self, events: &mut Vec<Event>) {
        if std::mem::take(&mut self.pending_blank) {
            if let Some(index) = self.current {
                events.push(Event::Line {
                    index,
                    line: String::new(),
                });
            }
        }
    }

    fn control(&mut self, control: &str, events: &mut Vec<Event>) {
        let parts: Vec<&str> = control.split_whitespace().collect();
        match parts.as_slice() {
            ["start", index] => {
                if let Ok(index) = index.parse() {
                    self.current = Some(index);
                    events.push(Event::Started(index));
                }
            }
            ["retry", index, attempt, status] => {
                if let (Ok(index), Ok(attempt), Ok(status)) =
                    (index.parse(), attempt.parse(), status.parse())
                {
                    events.push(Event::Retry {
                        index,
                        attempt,
                        status,
                    });
                }
            }
            ["end", index, status] => {
                if let Ok(index) = index.parse() {
                    self.current = None;
                    events.push(Event::Finished {
                        index,
                        status: status.parse().ok(),
                    });
                }
            }
            _ => {}
        }
    }
}

/// A fresh random token for one script (and a lock's id): 128 bits from the OS's generator, so
/// no command can forge a control line and no two locks share an id.
pub fn token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS refused randomness (it does not on the systems dep runs on): fall back to a
        // per-process random hash of the clock and the pid, unique if guessable.
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        bytes[..8].copy_from_slice(&hasher.finish().to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("dep{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(commands: &[Command]) -> (Vec<Event>, Vec<Event>, i32) {
        let token = "t0k";
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(build(commands, token))
            .output()
            .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut reader = Reader::new(token);
        reader.feed(&output.stdout, &mut out);
        reader.finish(&mut out);
        let mut reader = Reader::new(token);
        reader.feed(&output.stderr, &mut err);
        reader.finish(&mut err);
        (out, err, output.status.code().unwrap())
    }

    fn line(index: usize, line: &str) -> Event {
        Event::Line {
            index,
            line: line.into(),
        }
    }

    #[test]
    fn steps_report_their_own_output_and_status() {
        let mut second = Command::new("b", "printf 'no newline'; echo oops >&2; false");
        second.continue_on_failure = true;
        let commands = [
            Command::new("a", "echo one\necho\necho two"),
            second,
            Command::new("c", "exit 3"),
            Command::new("d", "echo never"),
        ];
        let (out, err, code) = run(&commands);
        assert_eq!(
            out,
            vec![
                Event::Started(0),
                line(0, "one"),
                line(0, ""),
                line(0, "two"),
                Event::Finished {
                    index: 0,
                    status: Some(0)
                },
                Event::Started(1),
                line(1, "no newline"),
                Event::Finished {
                    index: 1,
                    status: Some(1)
                },
                Event::Started(2),
                Event::Finished {
                    index: 2,
                    status: Some(3)
                },
            ]
        );
        assert!(err.contains(&line(1, "oops")));
        assert_eq!(code, 3);
    }

    #[test]
    fn binary_output_without_newlines_is_passed_on_in_pieces() {
        let token = "t0k";
        let mut reader = Reader::new(token);
        let mut events = Vec::new();
        reader.feed(format!("\n{MARK}{token} start 0\n").as_bytes(), &mut events);
        // UTF-8 continuation bytes only: no character boundary anywhere.
        reader.feed(&vec![0x80; 3 * MAX_LINE], &mut events);
        reader.feed(format!("\n{MARK}{token} end 0 0\n").as_bytes(), &mut events);
        let pieces = events
            .iter()
            .filter(|e| matches!(e, Event::Line { .. }))
            .count();
        assert!(pieces >= 3, "{pieces} pieces");
        assert!(matches!(events.last(), Some(Event::Finished { .. })));
    }

    #[test]
    fn no_line_passed_on_is_longer_than_max_line_wherever_the_chunks_end() {
        let token = "t0k";
        for chunk_size in [1000, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 3 * MAX_LINE + 7] {
            let mut reader = Reader::new(token);
            let mut events = Vec::new();
            reader.feed(format!("\n{MARK}{token} start 0\n").as_bytes(), &mut events);
            // Lines of every length around MAX_LINE and its multiples, cut into chunks.
            let mut text = Vec::new();
            for length in [MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 2 * MAX_LINE + 3, 5] {
                text.extend(std::iter::repeat_n(b'a', length));
                text.push(b'\n');
            }
            for chunk in text.chunks(chunk_size) {
                reader.feed(chunk, &mut events);
            }
            reader.feed(format!("{MARK}{token} end 0 0\n").as_bytes(), &mut events);
            let lines: Vec<usize> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Line { line, .. } => Some(line.len()),
                    _ => None,
                })
                .collect();
            assert!(
                lines.iter().all(|&n| n <= MAX_LINE),
                "{chunk_size}: {lines:?}"
            );
            assert_eq!(
                lines.iter().sum::<usize>(),
                text.len() - 5,
                "{chunk_size}: every byte but the newlines"
            );
        }
    }

    #[test]
    fn a_line_too_long_to_hold_comes_in_pieces_and_the_marker_after_it_still_counts() {
        let token = "t0k";
        let mut reader = Reader::new(token);
        let mut events = Vec::new();
        reader.feed(format!("\n{MARK}{token} start 0\n").as_bytes(), &mut events);
        let chunk = vec![b'a'; 10_000];
        for _ in 0..100 {
            reader.feed(&chunk, &mut events);
            assert!(reader.buffer.len() < MAX_LINE);
        }
        // The command's output ends without a newline, right into the end marker.
        reader.feed(format!("\n{MARK}{token} end 0 0\n").as_bytes(), &mut events);
        let printed: usize = events
            .iter()
            .map(|e| match e {
                Event::Line { line, .. } => {
                    assert!(line.len() <= MAX_LINE && line.bytes().all(|b| b == b'a'));
                    line.len()
                }
                _ => 0,
            })
            .sum();
        assert_eq!(printed, 1_000_000);
        assert!(events.len() > 10, "{} events", events.len());
        assert_eq!(
            events.last(),
            Some(&Event::Finished {
                index: 0,
                status: Some(0)
            })
        );
    }

    #[test]
    fn conditions_retries_cwd_env_and_stdin() {
        let mut skipped = Command::new("s", "echo ran");
        skipped.condition = Some("test -e /nonexistent".into());
        let mut retried = Command::new(
            "r",
            "n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; [ $n -ge 1 ]",
        );
        let dir = tempfile::tempdir().unwrap();
        retried.cwd = Some(dir.path().display().to_string());
        retried.retries = 2;
        let mut env = Command::new("e", "echo \"$GREETING\"; read x || echo no-stdin");
        env.env = vec![("GREETING".into(), "it's $HOME".into())];
        let (out, _, code) = run(&[skipped, retried, env]);
        assert_eq!(code, 0);
        assert!(out.contains(&Event::Finished {
            index: 0,
            status: None
        }));
        assert!(!out.contains(&line(0, "ran")));
        assert!(out.contains(&Event::Retry {
            index: 1,
            attempt: 1,
            status: 1
        }));
        assert!(out.contains(&Event::Finished {
            index: 1,
            status: Some(0)
        }));
        assert!(out.contains(&line(2, "it's $HOME")));
        assert!(out.contains(&line(2, "no-stdin")));
    }
}
