//! Every error dep reports, worded in one place, and the exit code each one maps to.

use std::fmt::{self, Display, Formatter};
use std::path::PathBuf;

/// Exit codes of SPEC's CLI section.
pub mod exit {
    pub const OK: i32 = 0;
    pub const TASK_FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const LOCKED: i32 = 3;
    pub const ROLLED_BACK: i32 = 4;
    pub const INCONSISTENT: i32 = 5;
}

/// A task that failed on one host: the host, the task, the command, its status and stderr tail.
#[derive(Debug, Clone)]
pub struct StepFailure {
    pub host: String,
    pub task: String,
    pub command: String,
    /// The command's exit status; None when it never finished (timeout, lost connection).
    pub status: Option<i32>,
    /// Why it failed when there is no exit status to speak of.
    pub reason: Option<String>,
    pub stderr_tail: String,
    /// The command never reached the host (no connection): it is not worth showing.
    pub unreachable: bool,
    /// The host's disk is full ("No space left on device"): the deploy path it ran out under.
    pub disk_full: Option<String>,
}

impl Display for StepFailure {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "host `{}`, task `{}`: ", self.host, self.task)?;
        // Transport errors name the host themselves; it is named once already.
        let reason = self.reason.as_deref().map(|r| {
            r.strip_prefix(&format!("host `{}`: ", self.host))
                .unwrap_or(r)
        });
        match (self.status, reason) {
            (_, Some(reason)) => write!(f, "{reason}")?,
            (Some(code), None) => write!(f, "command exited with status {code}")?,
            (None, None) => write!(f, "command did not finish")?,
        }
        if let Some(path) = &self.disk_full {
            write!(
                f,
                "\n  the disk is full: host `{}` has no space left on device under `{path}`",
                self.host
            )?;
        }
        if !self.command.is_empty() && !self.unreachable {
            write!(f, "\n  command: {}", first_lines(&self.command, 6))?;
        }
        let tail = self.stderr_tail.trim_end();
        if !tail.is_empty() {
            write!(f, "\n  output:")?;
            for line in tail.lines() {
                write!(f, "\n  │ {line}")?;
            }
        }
        Ok(())
    }
}

impl StepFailure {
    /// The failure worded without its host, for a list that names the host already.
    pub fn after_host(&self) -> String {
        let text = self.to_string();
        match text.strip_prefix(&format!("host `{}`, ", self.host)) {
            Some(rest) => rest.to_string(),
            None => text,
        }
    }
}

fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    if lines.len() <= n {
        lines.join("\n           ")
    } else {
        format!(
            "{}\n           … ({} more lines)",
            lines[..n].join("\n           "),
            lines.len() - n
        )
    }
}

/// A host whose deploy lock another run holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    pub host: String,
    /// The holder, described ("locked by alice@laptop (pid 4242, …) since …").
    pub holder: String,
    /// Why the holder is provably gone ("process 4242 is not running on laptop"), if it is.
    pub stale: Option<String>,
}

/// The deploy lock was held: by whom on which hosts, and how to clear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHeld {
    pub held: Vec<HeldLock>,
    /// The selector the run was given, for the `dep unlock` command to suggest.
    pub selector: Option<String>,
    /// `--lock-wait`, as given, when the run waited for the lock first.
    pub waited: Option<String>,
}

/// A `-o` argument that is not `name=value`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverrideError {
    #[error("`-o {0}`: expected `name=value`")]
    NoEquals(String),
    #[error("`-o {0}`: the variable name is empty")]
    EmptyName(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no `Deployfile.toml` found in `{}` or any parent directory (use `-f FILE` or `dep init`)", .0.display())]
    DeployfileNotFound(PathBuf),

    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A TOML syntax or shape error, pointed at with file:line:col and carets.
    #[error("{}:{line}:{column}: {message}\n{snippet}", path.display())]
    Toml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        snippet: String,
    },

    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    #[error("{}: unknown recipe `{name}` in `import`{}", file.display(), did_you_mean(.suggestion))]
    UnknownImport {
        file: PathBuf,
        name: String,
        suggestion: Option<String>,
    },

    #[error("recipes import each other in a circle: {}", .0.join(" -> "))]
    ImportCycle(Vec<String>),

    #[error("unknown task `{name}`{}{}", referenced_by_text(.referenced_by), did_you_mean(.suggestion))]
    UnknownTask {
        name: String,
        referenced_by: Option<(String, PathBuf)>,
        suggestion: Option<String>,
    },

    #[error("tasks form a cycle: {}", .0.join(" -> "))]
    TaskCycle(Vec<String>),

    #[error("{}: task `{task}`: {message}", file.display())]
    InvalidTask {
        file: PathBuf,
        task: String,
        message: String,
    },

    #[error("{}", template_message(file, task, message, location))]
    Template {
        file: PathBuf,
        task: String,
        message: String,
        /// Line, column and the source line with carets, when the spot could be found.
        location: Option<(usize, usize, String)>,
    },

    #[error("host `{host}`: {message}")]
    InvalidHost { host: String, message: String },

    #[error(
        "no host matches `{selector}`{}\n  hosts: {}\n  stages: {}",
        hint.as_ref().map(|h| format!("\n  {h}")).unwrap_or_default(),
        list_or_none(hosts),
        list_or_none(stages)
    )]
    NoHostMatches {
        selector: String,
        /// One more line: a likely typo, the whole selector this part is of, an empty stage.
        hint: Option<String>,
        hosts: Vec<String>,
        stages: Vec<String>,
    },

    #[error("{0}")]
    Usage(String),

    /// A `-o` argument that is not `name=value`.
    #[error(transparent)]
    Override(#[from] OverrideError),

    #[error("{}", locked_message(.0))]
    LockHeld(LockHeld),

    #[error("{}", fleet_message(.0))]
    Fleet(Vec<StepFailure>),

    /// The deploy failed after these hosts switched: the release stays live there.
    #[error("{}", still_live_message(release, hosts, *everywhere, failures))]
    StillLive {
        release: String,
        hosts: Vec<String>,
        /// Every selected host.
        everywhere: bool,
        failures: Vec<StepFailure>,
    },

    /// Post-switch tasks failed, and the switched hosts were rolled back, verified
    /// (`on_post_switch_failure = "rollback"`).
    #[error("{}", post_switch_message(release, failures))]
    PostSwitchFailed {
        release: String,
        failures: Vec<StepFailure>,
    },

    #[error("{0}")]
    Refused(String),

    #[error("{}", inconsistent_message(problems, current))]
    Inconsistent {
        /// What went wrong, one line per host ("host `web2`: could not be switched back").
        problems: Vec<String>,
        /// Where each host's `current` points now (`current -> releases/…`), or where a
        /// blue-green router sends the traffic (`routes traffic to blue`).
        current: Vec<(String, String)>,
    },

    #[error("release {release} failed its health checks; the hosts checked were rolled back to the release they had, and the rollback was verified:\n  {}", failures.join("\n  "))]
    HealthFailed {
        release: String,
        failures: Vec<String>,
    },

    #[error("unhealthy:\n  {}", .0.join("\n  "))]
    Unhealthy(Vec<String>),

    /// The watch window decided to roll back; the switched hosts went back, verified.
    #[error("release {release} failed its watch window ({why}); the switched hosts were rolled back to the release they had, and the rollback was verified:\n  {}", reasons.join("\n  "))]
    WatchRolledBack {
        release: String,
        why: String,
        reasons: Vec<String>,
    },

    /// `dep watch`: thresholds were breached (nothing was changed).
    #[error("the watch window breached its thresholds ({why}):\n  {}", reasons.join("\n  "))]
    WatchBreached { why: String, reasons: Vec<String> },

    #[error("deploy interrupted before the switch: nothing was switched")]
    Interrupted,

    /// Interrupted once the switch reached hosts, none of which stays switched (a rollback
    /// after a failed check was under way, say).
    #[error("deploy interrupted after release {release} was switched and switched back; `dep releases` shows where each host points")]
    InterruptedSwitchedBack { release: String },

    /// Ctrl-C after the switch (during the health checks or the watch window): the release
    /// stays where it went live.
    #[error("deploy interrupted after the switch; release {release} stays live on {} (`dep rollback` puts the previous release back)", if *everywhere { "every host".to_string() } else { hosts.join(", ") })]
    InterruptedLive {
        release: String,
        hosts: Vec<String>,
        everywhere: bool,
    },

    #[error("{0}")]
    Local(String),
}

impl Error {
    /// SPEC's exit code for this error. Every variant names its code: a new kind of error
    /// cannot exit 2 by accident.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::DeployfileNotFound(_)
            | Error::Read { .. }
            | Error::Toml { .. }
            | Error::Config { .. }
            | Error::UnknownImport { .. }
            | Error::ImportCycle(_)
            | Error::UnknownTask { .. }
            | Error::TaskCycle(_)
            | Error::InvalidTask { .. }
            | Error::Template { .. }
            | Error::InvalidHost { .. }
            | Error::NoHostMatches { .. }
            | Error::Usage(_)
            | Error::Override(_) => exit::USAGE,
            Error::LockHeld(_) => exit::LOCKED,
            Error::Fleet(_)
            | Error::StillLive { .. }
            | Error::Refused(_)
            | Error::Unhealthy(_)
            | Error::WatchBreached { .. }
            | Error::Interrupted
            | Error::InterruptedSwitchedBack { .. }
            | Error::InterruptedLive { .. }
            | Error::Local(_) => exit::TASK_FAILED,
            Error::HealthFailed { .. }
            | Error::PostSwitchFailed { .. }
            | Error::WatchRolledBack { .. } => exit::ROLLED_BACK,
            Error::Inconsistent { .. } => exit::INCONSISTENT,
        }
    }
}

fn template_message(
    file: &std::path::Path,
    task: &str,
    message: &str,
    location: &Option<(usize, usize, String)>,
) -> String {
    match location {
        Some((line, column, snippet)) => {
            format!(
                "{}:{line}:{column}: task `{task}`: {message}\n{snippet}",
                file.display()
            )
        }
        None => format!("{}: task `{task}`: {message}", file.display()),
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("\n  did you mean `{s}`?"),
        None => String::new(),
    }
}

fn referenced_by_text(by: &Option<(String, PathBuf)>) -> String {
    match by {
        Some((task, file)) => format!(" (referenced by task `{task}` in {})", file.display()),
        None => String::new(),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

fn locked_message(locked: &LockHeld) -> String {
    let mut message = match &locked.waited {
        Some(wait) => format!("deploy is still locked after waiting {wait}; nothing was changed"),
        None => String::from("deploy is locked; nothing was changed"),
    };
    for held in &locked.held {
        message.push_str(&format!("\n  host `{}`: {}", held.host, held.holder));
        if let Some(why) = &held.stale {
            message.push_str(&format!("\n    stale: {why}"));
        }
    }
    let stale: Vec<&str> = locked
        .held
        .iter()
        .filter(|h| h.stale.is_some())
        .map(|h| h.host.as_str())
        .collect();
    let unlock = |selector: &str| format!("`dep unlock {}`", crate::quote::quote(selector));
    let everyone = locked.selector.as_deref().map_or_else(
        || {
            let hosts: Vec<&str> = locked.held.iter().map(|h| h.host.as_str()).collect();
            unlock(&hosts.join(","))
        },
        unlock,
    );
    if stale.is_empty() {
        message.push_str(&format!(
            "\n  if no deploy is running, clear it with {everyone}"
        ));
    } else if stale.len() == locked.held.len() {
        let (it, them) = if stale.len() == 1 {
            ("the process that took it is gone", "it")
        } else {
            ("the processes that took them are gone", "them")
        };
        message.push_str(&format!("\n  {it}: clear {them} with {everyone}"));
    } else {
        // Only the stale ones: the others' deploys may still be running.
        message.push_str(&format!(
            "\n  clear the stale locks with {}; the others may belong to a deploy still running",
            unlock(&stale.join(","))
        ));
    }
    message
}

fn inconsistent_message(problems: &[String], current: &[(String, String)]) -> String {
    let mut message = String::from("the fleet is inconsistent:");
    for problem in problems {
        message.push_str(&format!("\n  {problem}"));
    }
    message.push_str("\nwhere each host's `current` points now:");
    for (host, points) in current {
        message.push_str(&format!("\n  host `{host}`: {points}"));
    }
    message
}

fn fleet_message(failures: &[StepFailure]) -> String {
    with_failures(failed_on(failures), failures)
}

fn still_live_message(
    release: &str,
    hosts: &[String],
    everywhere: bool,
    failures: &[StepFailure],
) -> String {
    let live = if everywhere {
        "every host".to_string()
    } else {
        hosts.join(", ")
    };
    let head = format!(
        "{}; release {release} stays live on {live} (`dep rollback` puts the previous release back)",
        failed_on(failures)
    );
    with_failures(head, failures)
}

fn post_switch_message(release: &str, failures: &[StepFailure]) -> String {
    let head = format!(
        "release {release} failed after the switch; the hosts that had switched were rolled back \
         to the release they had, and the rollback was verified:"
    );
    with_failures(head, failures)
}

/// "failed on 2 hosts"
fn failed_on(failures: &[StepFailure]) -> String {
    let hosts = failures.len();
    format!(
        "failed on {hosts} host{}",
        if hosts == 1 { "" } else { "s" }
    )
}

/// `head`, then each failure in a paragraph of its own.
fn with_failures(mut message: String, failures: &[StepFailure]) -> String {
    for failure in failures {
        message.push_str("\n\n");
        message.push_str(&failure.to_string());
    }
    message
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_spec() {
        let failure = StepFailure {
            host: "web1".into(),
            task: "deploy:migrate".into(),
            command: "php artisan migrate".into(),
            status: Some(1),
            reason: None,
            stderr_tail: String::new(),
            unreachable: false,
            disk_full: None,
        };
        let cases = [
            (Error::Usage("x".into()), exit::USAGE),
            (Error::DeployfileNotFound(PathBuf::from("/")), exit::USAGE),
            (Error::TaskCycle(vec!["a".into(), "a".into()]), exit::USAGE),
            (
                Error::Override(OverrideError::NoEquals("x".into())),
                exit::USAGE,
            ),
            (
                Error::LockHeld(LockHeld {
                    held: Vec::new(),
                    selector: None,
                    waited: None,
                }),
                exit::LOCKED,
            ),
            (Error::Fleet(vec![failure.clone()]), exit::TASK_FAILED),
            (
                Error::StillLive {
                    release: "1".into(),
                    hosts: vec!["web1".into()],
                    everywhere: true,
                    failures: vec![failure.clone()],
                },
                exit::TASK_FAILED,
            ),
            (
                Error::PostSwitchFailed {
                    release: "1".into(),
                    failures: vec![failure],
                },
                exit::ROLLED_BACK,
            ),
            (Error::Interrupted, exit::TASK_FAILED),
            (Error::Unhealthy(Vec::new()), exit::TASK_FAILED),
            (
                Error::HealthFailed {
                    release: "1".into(),
                    failures: Vec::new(),
                },
                exit::ROLLED_BACK,
            ),
            (
                Error::Inconsistent {
                    problems: Vec::new(),
                    current: Vec::new(),
                },
                exit::INCONSISTENT,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
        }
    }

    #[test]
    fn messages_name_hosts_and_plurals() {
        let failure = |host: &str| StepFailure {
            host: host.into(),
            task: "deploy:migrate".into(),
            command: "php artisan migrate".into(),
            status: Some(1),
            reason: None,
            stderr_tail: "boom\n".into(),
            unreachable: false,
            disk_full: None,
        };
        let unreachable = StepFailure {
            status: None,
            reason: Some("host `web2`: cannot connect to 127.0.0.2:22: Connection refused".into()),
            stderr_tail: String::new(),
            unreachable: true,
            ..failure("web2")
        };
        let cases = [
            (
                Error::Fleet(vec![unreachable]),
                "failed on 1 host\n\nhost `web2`, task `deploy:migrate`: cannot connect to \
                 127.0.0.2:22: Connection refused",
            ),
            (
                Error::Fleet(vec![failure("web1")]),
                "failed on 1 host\n\nhost `web1`, task `deploy:migrate`: command exited with status 1\
                 \n  command: php artisan migrate\n  output:\n  │ boom",
            ),
            (
                Error::NoHostMatches {
                    selector: "prod".into(),
                    hint: None,
                    hosts: Vec::new(),
                    stages: vec!["production".into()],
                },
                "no host matches `prod`\n  hosts: (none)\n  stages: production",
            ),
            (
                Error::UnknownTask {
                    name: "deplyo".into(),
                    referenced_by: None,
                    suggestion: Some("deploy".into()),
                },
                "unknown task `deplyo`\n  did you mean `deploy`?",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
        let held = |host: &str, stale: bool| HeldLock {
            host: host.into(),
            holder: "locked by ci@vm (pid 7, release 1) since t".into(),
            stale: stale.then(|| "process 7 is not running on vm".to_string()),
        };
        let locked = |held: Vec<HeldLock>, waited: Option<&str>| {
            Error::LockHeld(LockHeld {
                held,
                selector: Some("stage=production&role=web".into()),
                waited: waited.map(str::to_string),
            })
            .to_string()
        };
        let lines = [
            "deploy is locked; nothing was changed",
            "deploy is still locked after waiting 5m00s; nothing was changed",
            "  host `web1`: locked by ci@vm (pid 7, release 1) since t",
            "  host `web2`: locked by ci@vm (pid 7, release 1) since t",
            "    stale: process 7 is not running on vm",
        ];
        assert_eq!(
            locked(vec![held("web1", false)], None),
            [
                lines[0],
                lines[2],
                "  if no deploy is running, clear it with `dep unlock 'stage=production&role=web'`"
            ]
            .join("\n")
        );
        assert_eq!(
            locked(vec![held("web1", true), held("web2", true)], Some("5m00s")),
            [lines[1], lines[2], lines[4], lines[3], lines[4],
             "  the processes that took them are gone: clear them with `dep unlock 'stage=production&role=web'`"].join("\n")
        );
        assert_eq!(
            locked(vec![held("web1", false), held("web2", true)], None),
            [lines[0], lines[2], lines[3], lines[4],
             "  clear the stale locks with `dep unlock web2`; the others may belong to a deploy still running"].join("\n")
        );
        let live = Error::StillLive {
            release: "20261126101500".into(),
            hosts: vec!["web1".into(), "web2".into()],
            everywhere: false,
            failures: vec![failure("web2")],
        };
        assert_eq!(
            live.to_string(),
            "failed on 1 host; release 20261126101500 stays live on web1, web2 (`dep rollback` puts \
             the previous release back)\n\nhost `web2`, task `deploy:migrate`: command exited with \
             status 1\n  command: php artisan migrate\n  output:\n  │ boom"
        );
        let back = Error::PostSwitchFailed {
            release: "20261126101500".into(),
            failures: vec![failure("web2")],
        };
        assert!(
            back.to_string().starts_with(
                "release 20261126101500 failed after the switch; the hosts that had switched were \
                 rolled back to the release they had, and the rollback was verified:\n\nhost `web2`"
            ),
            "{back}"
        );
        let two = Error::Fleet(vec![failure("web1"), failure("web2")]).to_string();
        assert!(two.starts_with("failed on 2 hosts\n\n"), "{two}");
    }
}
