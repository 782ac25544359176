//! The live view on a terminal (indicatif): one line per host showing its current task and how
//! long it has run; results and everything else print above those lines, never tearing them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::plain::Plain;
use super::{Event, Sink};
use crate::transport::Outcome;

pub struct Live {
    plain: Plain,
    progress: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    watch: super::watch_bar::WatchBar,
}

impl Live {
    pub fn new(plain: Plain) -> Live {
        Live {
            plain,
            progress: MultiProgress::new(),
            bars: Mutex::default(),
            watch: Default::default(),
        }
    }

    fn show_task(&self, host: &str, task: &str) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let bar = bars.entry(host.to_string()).or_insert_with(|| {
            let bar = self.progress.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{prefix:.bold} {spinner} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(format!("[{host}]"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_message(task.to_string());
        bar.reset_elapsed();
    }
}

impl Sink for Live {
    fn render(&self, event: &Event<'_>) -> Option<String> {
        match *event {
            Event::TaskStarted { host, task, .. } => {
                self.show_task(host, task);
                None
            }
            // Successes show on the live line; everything else prints as usual.
            Event::TaskFinished { result, .. } if result.outcome == Outcome::Ok => None,
            Event::DeployFinished { .. } => {
                if let Ok(mut bars) = self.bars.lock() {
                    for (_, bar) in bars.drain() {
                        bar.finish_and_clear();
                    }
                }
                self.plain.line(event)
            }
            Event::WatchStarted { .. }
            | Event::WatchSample { .. }
            | Event::WatchFinished { .. } => self.watch.render(&self.progress, &self.plain, event),
            _ => self.plain.line(event),
        }
    }

    fn print(&self, text: &str) {
        // Above the live lines, so they are never torn.
        let _ = self.progress.println(text);
    }
}
