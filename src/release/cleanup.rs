//! Cleanup: which old releases go so that `keep_releases` remain; never `current` or
//! `previous`, failed releases first. And a failed deploy's release, which never went live:
//! removed at once, so that what filled the disk does not fail the next deploy too.

use crate::quote::quote;

use super::log::{LogEntry, Status};
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

/// After a failed deploy, on a host where `release` never went live: remove its directory
/// (unless `current` or `previous` points at it after all), then append its `failed` line,
/// which then has room even on a disk the release filled. Nothing happens where the release
/// was never created.
pub fn discard_command(deploy_path: &str, release: &str, failed: &LogEntry) -> String {
    let dir = format!("releases/{}", quote(release));
    // `-ef`: the same directory, however the link spells it (relative, absolute).
    format!(
        "cd {dp} 2>/dev/null && if [ -d {dir} ]; then \
         if ! [ current -ef {dir} ] && ! [ previous -ef {dir} ]; then \
         rm -rf -- {dir} 2>/dev/null || {{ sleep 1; rm -rf -- {dir}; }}; fi; {append}; fi",
        dp = quote(deploy_path),
        append = failed.append_command(deploy_path),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str) {
        let status = std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    }

    #[test]
    fn a_discarded_release_goes_unless_a_link_points_at_it_and_its_log_line_stays() {
        let dir = tempfile::tempdir().unwrap();
        let dp = dir.path();
        let entry = |release: &str| LogEntry {
            release: release.into(),
            status: Status::Failed,
            revision: None,
            branch: None,
            user: "u@m".into(),
            started_at: String::new(),
            finished_at: None,
            sha256: None,
            promoted_from: None,
        };
        for release in ["20260101000000", "20260102000000", "20260103000000"] {
            std::fs::create_dir_all(dp.join("releases").join(release).join("app")).unwrap();
            std::fs::write(dp.join("releases").join(release).join("app/file"), "x").unwrap();
        }
        std::fs::create_dir_all(dp.join(".dep")).unwrap();
        std::os::unix::fs::symlink("releases/20260102000000", dp.join("current")).unwrap();
        // An absolute link protects its release as well as a relative one.
        std::os::unix::fs::symlink(dp.join("releases/20260101000000"), dp.join("previous"))
            .unwrap();
        let path = dp.display().to_string();
        for release in [
            "20260103000000",
            "20260102000000",
            "20260101000000",
            "20260104000000",
        ] {
            run(&discard_command(&path, release, &entry(release)));
        }
        let mut left: Vec<String> = std::fs::read_dir(dp.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["20260101000000", "20260102000000"]);
        let log = std::fs::read_to_string(dp.join(".dep/releases.log")).unwrap();
        let released: Vec<String> = log
            .lines()
            .map(|l| serde_json::from_str::<LogEntry>(l).unwrap().release)
            .collect();
        // No line for the release that was never there.
        assert_eq!(
            released,
            ["20260103000000", "20260102000000", "20260101000000"]
        );
        // A deploy path that does not exist is left alone.
        run(&format!(
            "{} || true",
            discard_command("/nonexistent/dp", "1", &entry("1"))
        ));
    }
}
