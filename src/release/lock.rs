//! The deploy lock: `.dep/deploy.lock`, created atomically (O_EXCL via noclobber), holding who
//! took it, their pid (and where that pid means something), the release and since when; and
//! the judgment of a holder that is provably gone.

use serde::{Deserialize, Serialize};

use crate::quote::quote;

#[derive(Debug, Clone, Serialize)]
pub struct LockInfo {
    /// user@machine
    pub who: String,
    pub pid: u32,
    /// Where `pid` is a process: the machine's boot and pid namespace (see
    /// `config::local::pid_space`), so a pid is judged only where it was recorded.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pid_space: String,
    pub release: String,
    pub since: String,
    /// Unique per run: unlock removes only a lock this run took.
    pub id: String,
}

pub const TAKEN: &str = "dep-lock-taken";
pub const HELD: &str = "dep-lock-held";

impl LockInfo {
    fn path(deploy_path: &str) -> String {
        format!("{}/.dep/deploy.lock", quote(deploy_path))
    }

    /// Create the lock atomically; print TAKEN, or HELD and the holder's record.
    pub fn acquire_command(&self, deploy_path: &str) -> String {
        let record = serde_json::to_string(self).expect("lock info serializes");
        let path = Self::path(deploy_path);
        format!(
            "mkdir -p {dp}/.dep && if (set -C; printf '%s\\n' {record} > {path}) 2>/dev/null; then echo {TAKEN}; \
             else echo {HELD}; cat {path} 2>/dev/null; fi",
            dp = quote(deploy_path),
            record = quote(&record),
        )
    }

    /// Remove the lock if it is still the one this run took.
    pub fn release_command(&self, deploy_path: &str) -> String {
        let path = Self::path(deploy_path);
        format!(
            "if grep -qF {} {path} 2>/dev/null; then rm -f {path}; fi",
            quote(&format!("\"id\":\"{}\"", self.id))
        )
    }

    /// Print the lock's record, if there is one.
    pub fn read_command(deploy_path: &str) -> String {
        format!("cat {} 2>/dev/null; true", Self::path(deploy_path))
    }

    /// Remove the lock whoever holds it (`dep unlock`).
    pub fn force_release_command(deploy_path: &str) -> String {
        format!("rm -f {}", Self::path(deploy_path))
    }
}

/// A lock's holder, as its record says (every field may be missing from a hand-made record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Holder {
    #[serde(default)]
    pub who: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub pid_space: Option<String>,
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    /// The record as read, for one that is not a lock record at all.
    #[serde(skip)]
    pub raw: String,
}

/// This machine, as far as judging a holder goes: its name, its pid space, and whether a pid
/// runs here.
pub struct Here<'a> {
    pub machine: &'a str,
    pub pid_space: &'a str,
    pub running: &'a dyn Fn(u32) -> bool,
}

impl Holder {
    pub fn parse(record: &str) -> Holder {
        let raw = record.trim().to_string();
        match serde_json::from_str::<Holder>(&raw) {
            Ok(holder) => Holder { raw, ..holder },
            Err(_) => Holder {
                raw,
                ..Holder::default()
            },
        }
    }

    /// The machine of `who` (user@machine).
    pub fn machine(&self) -> Option<&str> {
        let who = self.who.as_deref()?;
        who.rsplit_once('@').map(|(_, machine)| machine)
    }

    /// Why the holder is provably gone, if it is: the lock was taken on this machine (same name
    /// and, when the record says, same pid space) by a process that no longer runs here.
    pub fn gone(&self, here: &Here<'_>) -> Option<String> {
        let machine = self.machine().filter(|m| *m == here.machine)?;
        let pid = self.pid.filter(|&p| p > 0)?;
        if let Some(space) = self.pid_space.as_deref() {
            if space != here.pid_space {
                return None;
            }
        }
        (!(here.running)(pid)).then(|| format!("process {pid} is not running on {machine}"))
    }

    /// "locked by alice@laptop (pid 4242, release 20261126101500) since 2026-11-26T10:15:00Z"
    pub fn describe(&self) -> String {
        if self.who.is_none() && self.pid.is_none() && self.release.is_none() {
            return format!("locked ({})", self.raw);
        }
        format!(
            "locked by {} (pid {}, release {}) since {}",
            self.who.as_deref().unwrap_or("someone"),
            self.pid.map_or("?".to_string(), |p| p.to_string()),
            self.release.as_deref().unwrap_or("?"),
            self.since.as_deref().unwrap_or("an unknown time"),
        )
    }
}

/// "alice@laptop (pid 4242, release 20261126101500) since 2026-11-26T10:15:00Z" from a lock record.
pub fn describe_holder(record: &str) -> String {
    Holder::parse(record).describe()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_gone_only_on_this_machine_with_its_process_dead() {
        let running = |pid: u32| pid == 100;
        let here = Here {
            machine: "ci-7",
            pid_space: "boot-1/pid:[1]",
            running: &running,
        };
        let record = |who: &str, pid: u32, space: Option<&str>| {
            let mut value =
                serde_json::json!({"who": who, "pid": pid, "release": "1", "since": "t"});
            if let Some(space) = space {
                value["pid_space"] = space.into();
            }
            Holder::parse(&value.to_string())
        };
        // (who, pid, pid space, stale)
        let cases = [
            ("deploy@ci-7", 200, None, true),
            ("deploy@ci-7", 200, Some("boot-1/pid:[1]"), true),
            ("deploy@ci-7", 100, None, false),
            ("deploy@ci-8", 200, None, false),
            // Another boot or another pid namespace (a container): that pid means nothing here.
            ("deploy@ci-7", 200, Some("boot-0/pid:[1]"), false),
            ("deploy@ci-7", 0, None, false),
            ("ci-7", 200, None, false),
        ];
        for (who, pid, space, stale) in cases {
            let gone = record(who, pid, space).gone(&here);
            assert_eq!(gone.is_some(), stale, "{who} {pid} {space:?}");
        }
        assert_eq!(
            record("deploy@ci-7", 200, None).gone(&here).unwrap(),
            "process 200 is not running on ci-7"
        );
        assert_eq!(Holder::parse("garbage").gone(&here), None);
    }

    #[test]
    fn holders_are_described_from_whatever_the_record_holds() {
        let full = r#"{"who":"alice@laptop","pid":4242,"release":"20261126101500","since":"2026-11-26T10:15:00Z","id":"x"}"#;
        assert_eq!(
            describe_holder(full),
            "locked by alice@laptop (pid 4242, release 20261126101500) since 2026-11-26T10:15:00Z"
        );
        assert_eq!(
            describe_holder(r#"{"who":"bob@ci"}"#),
            "locked by bob@ci (pid ?, release ?) since an unknown time"
        );
        assert_eq!(describe_holder("by hand\n"), "locked (by hand)");
    }
}
