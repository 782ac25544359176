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
