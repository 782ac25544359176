//! Cleanup: which old releases go so that `keep_releases` remain; never `current` or
//! `previous`, failed releases first.

use super::log::Status;
use super::state::HostState;

/// The releases cleanup removes to leave `keep`: never current, previous or `protect`; failed
/// releases first, then the oldest.
pub fn to_remove(state: &HostState, keep: usize, protect: &[&str]) -> Vec<String> {
    let excess = state.releases.len().saturating_sub(keep.max(1));
    if excess == 0 {
        return Vec::new();
    }
    let statuses = state.statuses();
    let kept = |r: &String| {
        Some(r.as_str()) == state.current.as_deref()
            || Some(r.as_str()) == state.previous.as_deref()
            || protect.contains(&r.as_str())
    };
    let failed = |r: &String| {
        statuses
            .get(r.as_str())
            .is_some_and(|e| matches!(e.status, Status::Failed | Status::Prepared))
    };
    let mut candidates: Vec<&String> = state.releases.iter().filter(|r| !kept(r)).collect();
    // Stable sort: failed ones first, each group oldest first (names sort by time).
    candidates.sort_by_key(|r| !failed(r));
    candidates.into_iter().take(excess).cloned().collect()
}
