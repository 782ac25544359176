//! A command is data: one task's shell work on one host, rendered once, with how it runs.

use std::sync::Arc;
use std::time::Duration;

use crate::quote::quote;

#[derive(Debug, Clone)]
pub struct Command {
    /// The task this command belongs to, for reports.
    pub task: String,
    /// The shell body, already rendered.
    pub script: String,
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    /// Skip the command unless this shell condition exits 0.
    pub condition: Option<String>,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub continue_on_failure: bool,
    /// Bytes fed to the command's standard input (uploads); such a command runs on its own.
    pub stdin: Option<Arc<Vec<u8>>>,
    /// Keep all of its standard output (up to `follow::KEPT_BYTES`), not only the tail: dep
    /// reads it afterwards (`check_output`).
    pub keep_output: bool,
}

impl Command {
    pub fn new(task: impl Into<String>, script: impl Into<String>) -> Command {
        Command {
            task: task.into(),
            script: script.into(),
            cwd: None,
            env: Vec::new(),
            condition: None,
            retries: 0,
            timeout: None,
            continue_on_failure: false,
            stdin: None,
            keep_output: false,
        }
    }

    /// The command as one shell snippet (cwd and env applied), as `-v` and `--dry-run` show it.
    pub fn shell(&self) -> String {
        let mut prefix = String::new();
        if let Some(cwd) = &self.cwd {
            prefix.push_str(&format!("cd {} && ", quote(cwd)));
        }
        for (name, value) in &self.env {
            prefix.push_str(&format!("export {}={}; ", name, quote(value)));
        }
        format!("{prefix}{}", self.script.trim())
    }
}
