//! Releases on a host: their names, the releases log, reading a host's state, the lock, the
//! switch's links, and the pure decisions made from them (next release name, what cleanup
//! removes, where a rollback goes).

pub mod cleanup;
pub mod lock;
pub mod log;
pub mod name;
pub mod state;
pub mod switch;

pub use cleanup::to_remove;
pub use log::{LogEntry, PromotedFrom, Status};
pub use name::{next_name, now_rfc3339, NAME_FORMAT};
pub use state::{state_command, HostState, SECTION};

#[cfg(test)]
mod tests {
    use super::state::NoRollbackTarget;
    use super::*;
    use chrono::NaiveDateTime;

    fn entry(release: &str, status: Status) -> LogEntry {
        LogEntry {
            release: release.into(),
            status,
            revision: None,
            branch: None,
            user: "u@m".into(),
            started_at: String::new(),
            finished_at: None,
            sha256: None,
            promoted_from: None,
        }
    }

    fn state(
        releases: &[&str],
        current: &str,
        previous: &str,
        log: &[(&str, Status)],
    ) -> HostState {
        HostState {
            exists: true,
            current: (!current.is_empty()).then(|| current.to_string()),
            previous: (!previous.is_empty()).then(|| previous.to_string()),
            releases: releases.iter().map(|r| r.to_string()).collect(),
            log: log.iter().map(|(r, s)| entry(r, *s)).collect(),
            recent: Vec::new(),
            lock: None,
            live_color: None,
        }
    }

    #[test]
    fn release_names() {
        let t = |s: &str| NaiveDateTime::parse_from_str(s, NAME_FORMAT).unwrap();
        assert_eq!(next_name(t("20261126101500"), &[]), "20261126101500");
        assert_eq!(
            next_name(t("20261126101500"), &["20261126101459"]),
            "20261126101500"
        );
        assert_eq!(
            next_name(t("20261126101500"), &["20261126101500"]),
            "20261126101501"
        );
        assert_eq!(
            next_name(t("20261126101500"), &["20261126101505", "junk"]),
            "20261126101506"
        );
        assert_eq!(
            next_name(t("20261231235959"), &["20261231235959"]),
            "20270101000000"
        );
    }

    #[test]
    fn state_parses_links_releases_log_and_lock() {
        let output = format!(
            "{SECTION}exists\n{SECTION}current\nreleases/3\n{SECTION}previous\n/srv/app/releases/2\n{SECTION}releases\n3\n1\n2\n..\n{SECTION}log\n{}\nnot json\n{SECTION}lock\n{{\"who\":\"a@b\"}}\n{SECTION}end\n",
            serde_json::to_string(&entry("1", Status::Live)).unwrap()
        );
        let state = HostState::parse(&output);
        assert!(state.exists);
        assert_eq!(state.current.as_deref(), Some("3"));
        assert_eq!(state.previous.as_deref(), Some("2"));
        assert_eq!(state.releases, vec!["1", "2", "3"]);
        assert_eq!(state.log.len(), 1);
        assert_eq!(state.lock.as_deref(), Some("{\"who\":\"a@b\"}"));
        assert_eq!(HostState::parse(""), HostState::default());
    }

    #[test]
    fn rollback_targets() {
        use Status::*;
        let s = state(
            &["1", "2", "3", "4"],
            "4",
            "3",
            &[("1", Live), ("2", Live), ("3", Failed), ("4", Live)],
        );
        assert_eq!(s.rollback_target(None).unwrap(), "2");
        assert_eq!(s.rollback_target(Some("1")).unwrap(), "1");
        assert_eq!(
            s.rollback_target(Some("9")).unwrap_err().to_string(),
            "release `9` does not exist"
        );
        assert_eq!(
            s.rollback_target(Some("4")).unwrap_err(),
            NoRollbackTarget::AlreadyCurrent("4".into())
        );
        let s = state(
            &["1", "2", "3"],
            "2",
            "3",
            &[("1", Live), ("2", Live), ("3", RolledBack)],
        );
        assert_eq!(s.rollback_target(None).unwrap(), "1");
        let s = state(&["1", "2"], "2", "", &[("1", RolledBack), ("2", Live)]);
        assert_eq!(
            s.rollback_target(None).unwrap_err(),
            NoRollbackTarget::NoneOlder("2".into())
        );
        assert_eq!(
            state(&[], "", "", &[]).rollback_target(None).unwrap_err(),
            NoRollbackTarget::NoCurrent
        );
    }

    #[test]
    fn cleanup_keeps_current_previous_and_removes_failed_first() {
        use Status::*;
        let log = [
            ("1", Live),
            ("2", Failed),
            ("3", Live),
            ("4", Live),
            ("5", Live),
            ("6", Live),
            ("7", Live),
        ];
        let s = state(&["1", "2", "3", "4", "5", "6", "7"], "7", "6", &log);
        assert_eq!(to_remove(&s, 5, &[]), vec!["2", "1"]);
        assert_eq!(to_remove(&s, 3, &[]), vec!["2", "1", "3", "4"]);
        assert!(to_remove(&s, 10, &[]).is_empty());
        // current and previous survive even when keep is smaller than two.
        assert_eq!(
            to_remove(&s, 1, &[]),
            vec!["2", "1", "3", "4", "5", "6"]
                .into_iter()
                .filter(|r| *r != "6")
                .collect::<Vec<_>>()
        );
        // A rolled-back current in the middle is still protected.
        let s = state(
            &["1", "2", "3"],
            "1",
            "3",
            &[("1", Live), ("2", Live), ("3", RolledBack)],
        );
        assert_eq!(to_remove(&s, 1, &[]), vec!["2"]);
    }
}
