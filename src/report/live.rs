//! The live view on a terminal: the fleet line and the host lines of a [`FleetView`] at the
//! bottom of the screen, redrawn ten times a second at the terminal's size of the moment;
//! everything else prints above it, never tearing it. Cleared when the deploy ends, or the run.
//!
//! Drawn by hand (ANSI: back up to the view's first line, rewrite each line and erase the rest
//! of it) rather than by indicatif, whose lines are padded to the full width: a terminal made
//! narrower rewraps such lines, and the next redraw no longer knows where the view starts. Here
//! lines stay shorter than the terminal, and after a narrowing the redraw goes up by the rows
//! the old lines take at the new width.

use std::io::Write as _;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use console::measure_text_width;

use super::fleet_view::FleetView;
use super::plain::Plain;
use super::{Event, Sink};
use crate::transport::Outcome;

/// How often the view is redrawn (spinners, elapsed times, a resized terminal).
const TICK: Duration = Duration::from_millis(100);

pub struct Live {
    plain: Plain,
    screen: Arc<Mutex<Screen>>,
    /// Redraws the view every tick, from the first task until the deploy ends.
    ticker: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

/// The view and what of it is on the terminal now.
struct Screen {
    fleet: FleetView,
    /// The view is drawn (from the first task until the deploy ends).
    shown: bool,
    /// The view was cleared for good: a task after the deploy's end does not bring it back.
    over: bool,
    /// The deploy's announcement, while it is the last line printed above the view: the view
    /// leaves it room, so that it stays on the screen (until something else prints).
    header: Option<String>,
    /// The width of each line of the view on the terminal now, and the terminal's width then.
    drawn: Vec<usize>,
    drawn_columns: usize,
    /// The watch window's progress line, while a window runs: drawn above the fleet.
    watch: Option<String>,
}

impl Screen {
    /// Back to the view's first line (its rows are overwritten next); returns how many rows up.
    fn up(&mut self, out: &mut String, columns: usize) -> usize {
        let rows: usize = self
            .drawn
            .iter()
            .map(|&width| {
                if columns < self.drawn_columns {
                    // A narrower terminal rewraps a line that no longer fits.
                    width.div_ceil(columns.max(1)).max(1)
                } else {
                    1
                }
            })
            .sum();
        if rows > 0 {
            out.push_str(&format!("\r\x1b[{rows}A"));
        }
        self.drawn.clear();
        rows
    }

    /// Take the view off the terminal, the cursor where it started. Row by row: erasing the
    /// whole screen at once would push it into some terminals' scrollback (tmux).
    fn erase(&mut self, out: &mut String, columns: usize) {
        let rows = self.up(out, columns);
        if rows > 0 {
            out.push_str(&"\x1b[K\n".repeat(rows));
            out.push_str(&format!("\x1b[{rows}A"));
        }
    }

    /// Draw the view from the cursor on, for a terminal of this size, erasing what was below.
    fn draw(&mut self, out: &mut String, (rows, columns): (usize, usize)) {
        if self.shown {
            let header = self.header.as_deref().map_or(0, |header| {
                header
                    .split('\n')
                    .map(|line| measure_text_width(line).div_ceil(columns.max(1)).max(1))
                    .sum()
            });
            // The fleet line and "… and N more" at least, whatever the header takes.
            let mut rows = rows.saturating_sub(header).max(3);
            let mut lines = Vec::new();
            if let Some(watch) = &self.watch {
                // Less one column: a line as wide as the terminal wraps on some.
                lines.push(super::fleet_view::fit(watch, columns.saturating_sub(1)));
                rows -= 1;
            }
            // `dep watch` alone has no fleet to show, only its window.
            if self.fleet.has_hosts() {
                lines.extend(self.fleet.lines(Instant::now(), columns, rows));
            }
            for line in lines {
                self.drawn.push(measure_text_width(&line));
                out.push_str(&line);
                out.push_str("\x1b[K\n");
            }
            self.drawn_columns = columns;
        }
        out.push_str("\x1b[J");
    }
}

/// The watch window's line: a bar of the samples taken, the time left, per probe the fleet's
/// figures so far and the worst host.
fn watch_line(number: u32, of: u32, left: Duration, figures: &str) -> String {
    const WIDTH: usize = 20;
    let done = (WIDTH * number as usize)
        .checked_div(of as usize)
        .unwrap_or(0)
        .min(WIDTH);
    let bar = format!("{}{}", "=".repeat(done), " ".repeat(WIDTH - done));
    format!(
        "watch [{bar}] {number}/{of}, {} left: {figures}",
        crate::transport::human_duration(left)
    )
}

/// The terminal's rows and columns now.
fn size() -> (usize, usize) {
    let (rows, columns) = console::Term::stdout().size();
    (rows.into(), columns.into())
}

fn write(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

impl Live {
    pub fn new(plain: Plain, started: Instant) -> Live {
        Live {
            plain,
            screen: Arc::new(Mutex::new(Screen {
                fleet: FleetView::new(started),
                shown: false,
                over: false,
                header: None,
                drawn: Vec::new(),
                drawn_columns: 0,
                watch: None,
            })),
            ticker: Mutex::default(),
        }
    }

    /// Start drawing the view, unless it is drawn already or was cleared for good.
    fn show(&self) {
        let Ok(mut ticker) = self.ticker.lock() else {
            return;
        };
        match self.screen.lock() {
            Ok(mut screen) if ticker.is_none() && !screen.over => screen.shown = true,
            _ => return,
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let screen = Arc::clone(&self.screen);
        let thread = thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                let Ok(mut screen) = screen.lock() else {
                    return;
                };
                if !screen.shown {
                    return;
                }
                let size = size();
                let mut out = String::new();
                screen.up(&mut out, size.1);
                screen.draw(&mut out, size);
                write(&out);
            }
        });
        *ticker = Some((stop, thread));
    }

    /// Clear the view for good (the deploy is over, or the run).
    fn finish(&self) {
        if let Ok(mut screen) = self.screen.lock() {
            screen.over = true;
            if screen.shown {
                screen.shown = false;
                let mut out = String::new();
                screen.erase(&mut out, size().1);
                write(&out);
            }
        }
        let ticker = self.ticker.lock().ok().and_then(|mut t| t.take());
        if let Some((stop, thread)) = ticker {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

impl Sink for Live {
    fn render(&self, event: &Event<'_>) -> Option<String> {
        if let Ok(mut screen) = self.screen.lock() {
            screen.fleet.record(event, Instant::now());
        }
        match *event {
            // The view names every host: the announcement names a few.
            Event::DeployStarted { release, hosts } => {
                let header = format!(
                    "deploying release {release} to {}",
                    crate::notify::hosts_phrase(hosts)
                );
                if let Ok(mut screen) = self.screen.lock() {
                    screen.header = Some(header.clone());
                }
                self.show();
                Some(header)
            }
            // A task shows on the view; so do successes and switches (the summary says where
            // `current` points). Everything else prints above the view.
            Event::TaskStarted { .. } => {
                self.show();
                None
            }
            Event::TaskFinished { result, .. } if result.outcome == Outcome::Ok => None,
            // A dry run prints what it would run, and runs nothing to watch.
            Event::DryRun { .. } => {
                self.finish();
                self.plain.line(event)
            }
            Event::Switched { .. } => None,
            // The window's progress is a line of the view; its start and verdict print above.
            Event::WatchStarted { samples, .. } => {
                if let Ok(mut screen) = self.screen.lock() {
                    screen.watch = Some(watch_line(0, samples, Duration::ZERO, ""));
                }
                self.show();
                self.plain.line(event)
            }
            Event::WatchSample {
                number, of, left, ..
            } => {
                if let Ok(mut screen) = self.screen.lock() {
                    let figures = super::watch::progress(event);
                    screen.watch = Some(watch_line(number, of, left, &figures));
                }
                None
            }
            Event::WatchFinished { .. } => {
                if let Ok(mut screen) = self.screen.lock() {
                    screen.watch = None;
                }
                self.plain.line(event)
            }
            Event::DeployFinished { .. } => {
                self.finish();
                self.plain.line(event)
            }
            _ => self.plain.line(event),
        }
    }

    /// Above the view: the view is taken off, the text printed, the view drawn again below it.
    fn print(&self, text: &str) {
        let Ok(mut screen) = self.screen.lock() else {
            return;
        };
        if screen.header.as_deref() != Some(text) {
            screen.header = None;
        }
        let size = size();
        let mut out = String::new();
        screen.up(&mut out, size.1);
        // Each line erases what is left of the view's line under it.
        for line in text.split('\n') {
            out.push_str(line);
            out.push_str("\x1b[K\n");
        }
        screen.draw(&mut out, size);
        write(&out);
    }
}

impl Drop for Live {
    /// A run that ends without `deploy_finished` (a rollback, a failure before the deploy
    /// started) leaves no view behind.
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen(drawn: Vec<usize>, columns: usize) -> Screen {
        Screen {
            fleet: FleetView::new(Instant::now()),
            shown: true,
            over: false,
            header: None,
            drawn,
            drawn_columns: columns,
            watch: None,
        }
    }

    /// Back up over the view's rows: one a line, unless the terminal got narrower and rewrapped
    /// the lines that no longer fit.
    #[test]
    fn the_redraw_goes_up_by_the_rows_the_view_takes_now() {
        let up = |drawn: Vec<usize>, then: usize, now: usize| {
            let mut out = String::new();
            screen(drawn, then).up(&mut out, now);
            out
        };
        assert_eq!(up(vec![97, 20, 20], 100, 100), "\r\x1b[3A");
        assert_eq!(up(vec![97, 20, 20], 100, 120), "\r\x1b[3A");
        assert_eq!(up(vec![97, 20, 20], 100, 50), "\r\x1b[4A");
        assert_eq!(up(vec![97, 60, 0], 100, 30), "\r\x1b[7A");
        assert_eq!(up(Vec::new(), 100, 50), "");
    }

    /// The view leaves the announcement its rows, and erasing goes row by row (no erase of the
    /// whole screen, which tmux keeps in its scrollback).
    #[test]
    fn the_view_leaves_room_for_the_announcement_and_erases_row_by_row() {
        let mut view = screen(Vec::new(), 80);
        view.fleet.record(
            &Event::DeployStarted {
                release: "1",
                hosts: &(1..=40).map(|i| format!("h{i}")).collect::<Vec<_>>(),
            },
            Instant::now(),
        );
        view.header = Some("x".repeat(100));
        let mut out = String::new();
        view.draw(&mut out, (24, 80));
        // 24 rows, 2 for the announcement, 1 for the cursor.
        assert_eq!(view.drawn.len(), 21);
        assert_eq!(out.matches("\x1b[K\n").count(), 21);
        let mut out = String::new();
        view.erase(&mut out, 80);
        assert_eq!(out, format!("\r\x1b[21A{}\x1b[21A", "\x1b[K\n".repeat(21)));
        assert!(!out.contains("\x1b[J"));
    }
}
