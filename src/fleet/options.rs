//! What the command line asked of a run, beyond the selector.

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    pub parallel: usize,
    pub overrides: Vec<String>,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub revision: Option<String>,
    pub rollback_to: Option<String>,
    /// Deploy in batches of this many hosts (`--rolling N`; else the stage's `rolling`).
    pub rolling: Option<usize>,
    /// One host first, then the rest (`--canary`).
    pub canary: bool,
    /// When a later batch fails, leave the batches already switched on the new release.
    pub keep_switched: bool,
}
