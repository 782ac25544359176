//! The live view on a terminal: the fleet line and the host lines of a [`FleetView`], redrawn
//! ten times a second to the terminal's size of the moment (indicatif draws, and prints
//! everything else above the view, never tearing it). Cleared when the deploy ends, or when the
//! run does.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::fleet_view::FleetView;
use super::plain::Plain;
use super::{Event, Sink};
use crate::transport::Outcome;

pub struct Live {
    plain: Plain,
    fleet: Arc<Mutex<FleetView>>,
    /// The view on the terminal, from the first host's first task until the deploy ends.
    view: Mutex<Option<ProgressBar>>,
    /// The deploy ended: its summary prints as plain lines, with no view below.
    over: Mutex<bool>,
}

impl Live {
    pub fn new(plain: Plain, started: Instant) -> Live {
        Live {
            plain,
            fleet: Arc::new(Mutex::new(FleetView::new(started))),
            view: Mutex::default(),
            over: Mutex::default(),
        }
    }

    /// Start drawing, unless the view is drawn already or the deploy is over.
    fn show(&self) {
        let (Ok(mut view), Ok(over)) = (self.view.lock(), self.over.lock()) else {
            return;
        };
        if view.is_some() || *over {
            return;
        }
        let fleet = Arc::clone(&self.fleet);
        let frame = move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
            // The size now: a resized terminal gets a view of its new size at the next tick.
            let (rows, columns) = console::Term::stdout().size();
            if let Ok(fleet) = fleet.lock() {
                let lines = fleet.lines(Instant::now(), columns.into(), rows.into());
                let _ = out.write_str(&lines.join("\n"));
            }
        };
        let style = ProgressStyle::with_template("{frame}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key("frame", frame);
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        *view = Some(bar);
    }

    /// Clear the view for good (the deploy is over).
    fn finish(&self) {
        if let Ok(mut over) = self.over.lock() {
            *over = true;
        }
        if let Some(bar) = self.view.lock().ok().and_then(|mut view| view.take()) {
            bar.finish_and_clear();
        }
    }
}

impl Sink for Live {
    fn render(&self, event: &Event<'_>) -> Option<String> {
        if let Ok(mut fleet) = self.fleet.lock() {
            fleet.record(event, Instant::now());
        }
        match *event {
            Event::DeployStarted { .. } | Event::TaskStarted { .. } => {
                self.show();
                // The announcement prints above the view; a task only shows on it.
                match event {
                    Event::DeployStarted { .. } => self.plain.line(event),
                    _ => None,
                }
            }
            // Successes and switches show on the view (the summary says where `current` points);
            // everything else prints above it.
            Event::TaskFinished { result, .. } if result.outcome == Outcome::Ok => None,
            Event::Switched { .. } => None,
            Event::DeployFinished { .. } => {
                self.finish();
                self.plain.line(event)
            }
            _ => self.plain.line(event),
        }
    }

    fn print(&self, text: &str) {
        match self.view.lock().ok().and_then(|view| view.clone()) {
            // Above the view, so that it is never torn.
            Some(bar) => bar.println(text),
            None => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{text}");
            }
        }
    }
}

impl Drop for Live {
    /// A run that ends without `deploy_finished` (a rollback, a failure before the deploy
    /// started) leaves no view behind.
    fn drop(&mut self) {
        self.finish();
    }
}
