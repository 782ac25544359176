//! What the command line asked of a run: the selector as typed (for the commands dep suggests)
//! and the flags.

use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    pub parallel: usize,
    pub overrides: Vec<String>,
    /// The selector as typed, for a command dep suggests (`dep unlock SELECTOR`).
    pub selector: Option<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub revision: Option<String>,
    pub rollback_to: Option<String>,
    /// Deploy in batches of this many hosts (`--rolling N`; else the stage's `rolling`).
    pub rolling: Option<usize>,
    /// One host first, then the rest (`--canary`).
    pub canary: bool,
    /// `--strategy S`: instead of the stage's.
    pub strategy: Option<crate::config::deployfile::StrategyName>,
    /// When a later batch fails, leave the batches already switched on the new release.
    pub keep_switched: bool,
    /// How long to wait for a held deploy lock before giving up (`--lock-wait`; None: not at all).
    pub lock_wait: Option<Duration>,
    /// Skip the watch window (`--no-watch`).
    pub no_watch: bool,
    /// The watch window's length instead of the Deployfile's (`--watch D`, `dep watch --duration D`).
    pub watch_duration: Option<Duration>,
    /// `dep promote FROM TO`: what is live on FROM, which this deploy must ship exactly.
    pub promotion: Option<super::promote::Promotion>,
}
