//! A task after validation: what it does (`Action`) and how it runs (once, roles, local, …).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::deployfile::{OnFailure, OutputCheck};
use crate::config::project::TaskSource;
use crate::error::{Error, Result};

/// Steps of the release lifecycle that need native code for their atomicity or fleet semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Lock,
    Release,
    UpdateCode,
    Symlink,
    Unlock,
    Cleanup,
    Rollback,
    /// Write the layered `.env` (see `dotenv`).
    Dotenv,
}

impl Builtin {
    fn parse(name: &str) -> Option<Builtin> {
        Some(match name {
            "lock" => Builtin::Lock,
            "release" => Builtin::Release,
            "update_code" => Builtin::UpdateCode,
            "symlink" => Builtin::Symlink,
            "unlock" => Builtin::Unlock,
            "cleanup" => Builtin::Cleanup,
            "rollback" => Builtin::Rollback,
            "dotenv" => Builtin::Dotenv,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Shell commands, run in order; the task fails at the first that fails.
    Run(Vec<String>),
    /// A group: other tasks, in order.
    Steps(Vec<String>),
    /// A local path packed with tar+gzip and unpacked into `to` on the host.
    Upload {
        from: String,
        to: String,
    },
    /// A template under templates/ rendered and written to `dest` with `mode`.
    Template {
        src: String,
        dest: String,
        mode: Option<String>,
    },
    Builtin(Builtin),
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub desc: String,
    pub action: Action,
    /// Run on one host only (the first selected), as a fleet barrier.
    pub once: bool,
    pub roles: Vec<String>,
    /// Run on this machine, once, as a fleet barrier.
    pub local: bool,
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub condition: Option<String>,
    pub barrier: bool,
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub continue_on_failure: bool,
    /// What dep checks in the task's output once it ran.
    pub check_output: Option<OutputCheck>,
    /// The file that defined it, for errors.
    pub file: PathBuf,
}

impl Task {
    pub fn from_source(name: &str, source: &TaskSource) -> Result<Task> {
        let raw = source.raw.clone();
        let invalid = |message: String| Error::InvalidTask {
            file: source.file.clone(),
            task: name.to_string(),
            message,
        };
        let mut actions = Vec::new();
        if let Some(run) = raw.run {
            actions.push(Action::Run(run.into_vec()));
        }
        if let Some(steps) = raw.steps {
            actions.push(Action::Steps(steps));
        }
        if let Some(upload) = raw.upload {
            actions.push(Action::Upload {
                from: upload.from,
                to: upload.to,
            });
        }
        if let Some(template) = raw.template {
            actions.push(Action::Template {
                src: template.src,
                dest: template.dest,
                mode: template.mode,
            });
        }
        if let Some(builtin) = raw.builtin {
            let parsed = Builtin::parse(&builtin)
                .ok_or_else(|| invalid(format!("unknown builtin `{builtin}`")))?;
            actions.push(Action::Builtin(parsed));
        }
        if actions.len() != 1 {
            return Err(invalid(format!(
                "a task needs exactly one of `run`, `steps`, `upload`, `template` (found {})",
                actions.len()
            )));
        }
        let action = actions.remove(0);
        if let Action::Template {
            mode: Some(mode), ..
        } = &action
        {
            if u32::from_str_radix(mode, 8).is_err() {
                return Err(invalid(format!(
                    "`mode = \"{mode}\"` is not an octal file mode like \"0640\""
                )));
            }
        }
        if raw.check_output.is_some() && !matches!(action, Action::Run(_)) {
            return Err(invalid(
                "`check_output` checks what a `run` task prints: this task has no `run`".into(),
            ));
        }
        let timeout = raw.timeout.map(|t| t.0);
        if matches!(action, Action::Steps(_))
            && (raw.once || raw.local || raw.cwd.is_some() || raw.condition.is_some())
        {
            return Err(invalid("a group (`steps`) cannot have `once`, `local`, `cwd` or `if`: set them on its tasks".into()));
        }
        Ok(Task {
            name: name.to_string(),
            desc: raw.desc.unwrap_or_default(),
            action,
            once: raw.once,
            roles: raw.roles,
            local: raw.local,
            cwd: raw.cwd,
            env: raw.env.into_iter().collect(),
            timeout,
            retries: raw.retries,
            condition: raw.condition,
            barrier: raw.barrier,
            before: raw.before.map(|b| b.into_vec()).unwrap_or_default(),
            after: raw.after.map(|a| a.into_vec()).unwrap_or_default(),
            continue_on_failure: raw.on_failure == Some(OnFailure::Continue),
            check_output: raw.check_output,
            file: source.file.clone(),
        })
    }

    /// Whether every host must reach this task before it runs.
    pub fn is_barrier(&self) -> bool {
        self.once
            || self.local
            || self.barrier
            // Nothing after it may run before dep has read its output.
            || self.check_output.is_some()
            || matches!(
                self.action,
                Action::Builtin(
                    Builtin::Lock | Builtin::Symlink | Builtin::Rollback | Builtin::Unlock
                )
            )
    }

    pub fn applies_to(&self, roles: &[String]) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| roles.contains(r))
    }
}
