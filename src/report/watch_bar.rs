//! The watch window on a terminal: a progress bar with the time left and, per probe, the
//! fleet's error rate and p95 so far and the worst host; the plain lines of its start and verdict
//! print above it.

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::plain::Plain;
use super::Event;
use crate::transport::human_duration;

#[derive(Default)]
pub struct WatchBar {
    bar: Mutex<Option<ProgressBar>>,
}

impl WatchBar {
    /// Show a watch event on the bar; the text to print above it, if any.
    pub fn render(
        &self,
        progress: &MultiProgress,
        plain: &Plain,
        event: &Event<'_>,
    ) -> Option<String> {
        let Ok(mut bar) = self.bar.lock() else {
            return plain.line(event);
        };
        match *event {
            Event::WatchStarted { samples, .. } => {
                let new = progress.add(ProgressBar::new(u64::from(samples)));
                new.set_style(
                    ProgressStyle::with_template("watch [{bar:24}] {pos}/{len} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                *bar = Some(new);
                plain.line(event)
            }
            Event::WatchSample { number, left, .. } => {
                if let Some(bar) = bar.as_ref() {
                    bar.set_position(u64::from(number));
                    bar.set_message(format!(
                        "{} left: {}",
                        human_duration(left),
                        super::watch::progress(event)
                    ));
                }
                None
            }
            Event::WatchFinished { .. } => {
                if let Some(bar) = bar.take() {
                    bar.finish_and_clear();
                }
                plain.line(event)
            }
            _ => plain.line(event),
        }
    }
}
