//! The releases log, `.dep/releases.log`: one JSON object per line, append-only; a release's
//! latest line is its state.

use serde::{Deserialize, Serialize};

use crate::quote::quote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Prepared,
    Live,
    Failed,
    RolledBack,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Prepared => "prepared",
            Status::Live => "live",
            Status::Failed => "failed",
            Status::RolledBack => "rolled_back",
        }
    }
}

/// One line of `.dep/releases.log`. The log is append-only: a release's latest line is its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub release: String,
    pub status: Status,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The sha256 of the bytes sent (upload and artifact strategies), so `dep promote` can tell
    /// whether another stage would get the same code. Absent in logs written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The release was `dep promote`d from this stage's live release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<PromotedFrom>,
}

/// Where a promoted release came from: the stage and its live release then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedFrom {
    pub stage: String,
    pub release: String,
}

impl LogEntry {
    /// The shell command that appends this entry to the log.
    pub fn append_command(&self, deploy_path: &str) -> String {
        let line = serde_json::to_string(self).expect("a log entry serializes");
        format!(
            "printf '%s\\n' {} >> {}/.dep/releases.log",
            quote(&line),
            quote(deploy_path)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_lines_without_sha256_or_promoted_from_still_read() {
        let old = r#"{"release":"20260101000000","status":"live","revision":"abc","branch":"main","user":"u@m","started_at":"t","finished_at":"t"}"#;
        let entry: LogEntry = serde_json::from_str(old).unwrap();
        assert_eq!(entry.sha256, None);
        assert_eq!(entry.promoted_from, None);
        // Written back, an entry without them has no such keys.
        assert_eq!(serde_json::to_string(&entry).unwrap(), old);
        let promoted = LogEntry {
            sha256: Some("ff".into()),
            promoted_from: Some(PromotedFrom {
                stage: "staging".into(),
                release: "20260101000000".into(),
            }),
            ..entry
        };
        let line = serde_json::to_string(&promoted).unwrap();
        assert!(
            line.ends_with(
                r#""sha256":"ff","promoted_from":{"stage":"staging","release":"20260101000000"}}"#
            ),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<LogEntry>(&line).unwrap(), promoted);
    }
}
