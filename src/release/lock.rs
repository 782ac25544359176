//! The deploy lock: `.dep/deploy.lock`, created atomically (O_EXCL via noclobber), holding who
//! took it, their pid, the release and since when.

use serde::Serialize;

use crate::quote::quote;

#[derive(Debug, Clone, Serialize)]
pub struct LockInfo {
    /// user@machine
    pub who: String,
    pub pid: u32,
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

    /// Remove the lock whoever holds it (`dep unlock`).
    pub fn force_release_command(deploy_path: &str) -> String {
        format!("rm -f {}", Self::path(deploy_path))
    }
}

/// "alice@laptop (pid 4242, release 20261126101500) since 2026-11-26T10:15:00Z" from a lock record.
pub fn describe_holder(record: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(record) {
        Ok(v) => format!(
            "locked by {} (pid {}, release {}) since {}",
            v["who"].as_str().unwrap_or("someone"),
            v["pid"].as_u64().map_or("?".to_string(), |p| p.to_string()),
            v["release"].as_str().unwrap_or("?"),
            v["since"].as_str().unwrap_or("an unknown time"),
        ),
        Err(_) => format!("locked ({})", record.trim()),
    }
}
