//! The command line as typed: clap's types, before anything is resolved. Doc comments here are
//! the `--help` text, which the README shows word for word (tests/readme.rs).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::deployfile::StrategyName;

#[derive(Debug, Parser)]
#[command(
    name = "dep",
    version = env!("DEP_VERSION"),
    about = "Deploy over SSH: every host prepared, then switched at once.",
    allow_external_subcommands = true,
    after_help = "Any task is a command too: `dep artisan:migrate staging`.\n\
                  Exit codes: 0 ok, 1 a task failed, 2 usage or configuration error, 3 lock held,\n\
                  4 a check failed after the switch and the fleet was rolled back,\n\
                  5 rollback incomplete (fleet inconsistent)."
)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Commands,
}

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct Global {
    /// The Deployfile or its directory (default: found here or in a parent)
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// Set a variable, above every other layer (repeatable)
    #[arg(short = 'o', long = "option", global = true, value_name = "NAME=VALUE")]
    pub(crate) options: Vec<String>,
    /// Show each command (-v) and its output (-vv)
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Print only errors
    #[arg(short = 'q', long = "quiet", global = true)]
    pub(crate) quiet: bool,
    /// Print one JSON event per line
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// How many hosts work at once
    #[arg(long, global = true, value_name = "N", default_value_t = 256)]
    pub(crate) parallel: usize,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Commands {
    /// Deploy a new release to the selected hosts
    Deploy(Deploy),
    /// Deploy to stage TO exactly what is live on stage FROM (its revision, or its bytes)
    Promote(Promote),
    /// Run the health checks now against each host's current release
    Health { selector: Option<String> },
    /// Run the watch window now against the live release (exit 1: a threshold breached)
    Watch {
        selector: Option<String>,
        /// Watch this long instead of the Deployfile's `[watch] duration` (e.g. 30s, 5m)
        #[arg(long, value_name = "DURATION", value_parser = lock_wait)]
        duration: Option<Duration>,
    },
    /// Point `current` back at the previous live release
    Rollback {
        selector: Option<String>,
        /// Go back to this release instead
        #[arg(long, value_name = "RELEASE")]
        to: Option<String>,
        /// Wait this long for a held deploy lock instead of exiting 3 (e.g. 30s, 5m)
        #[arg(long, value_name = "DURATION", value_parser = lock_wait)]
        lock_wait: Option<Duration>,
        #[arg(long)]
        dry_run: bool,
    },
    /// List each host's releases, marking current and previous
    Releases { selector: Option<String> },
    /// Run a command in `current` on each selected host
    Run {
        selector: Option<String>,
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Open an interactive shell in `current` on a host (with the system ssh client)
    Ssh {
        /// The host (default: the only host)
        host: Option<String>,
    },
    /// List the tasks
    List,
    /// Show a task's steps and hooks as a tree
    Tree { task: String },
    /// List the hosts a selector picks (all without one)
    Hosts { selector: Option<String> },
    /// Show each variable's value and the layer it came from
    Config {
        selector: Option<String>,
        /// Only this host
        #[arg(long)]
        host: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff): `dep man > dep.1`
    Man,
    /// Scaffold Deployfile.toml and a CI workflow for the project here
    Init(crate::cli::init::Answers),
    /// Remove the deploy lock (after a crashed deploy)
    Unlock { selector: Option<String> },
    #[command(external_subcommand)]
    Task(Vec<String>),
}

/// `dep TASK [SELECTOR] [--dry-run]`, parsed after the task name.
#[derive(Debug, Parser)]
#[command(name = "dep TASK", no_binary_name = true)]
pub(crate) struct TaskArgs {
    pub(crate) selector: Option<String>,
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// The release a task works on, for tasks that take one (`dep db:restore STAGE --release R`)
    #[arg(long, value_name = "RELEASE")]
    pub(crate) release: Option<String>,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// `dep deploy`'s own arguments.
#[derive(Debug, Default, Args)]
pub struct Deploy {
    /// A stage, a host, or terms like `role=web`, `stage=production&role=db`
    pub selector: Option<String>,
    /// Deploy this branch
    #[arg(long, conflicts_with_all = ["tag", "revision"])]
    pub branch: Option<String>,
    /// Deploy this tag
    #[arg(long, conflicts_with = "revision")]
    pub tag: Option<String>,
    /// Deploy this exact revision
    #[arg(long)]
    pub revision: Option<String>,
    /// Deploy in batches of N hosts, each switched and health-checked before the next
    #[arg(long, value_name = "N", conflicts_with = "canary")]
    pub rolling: Option<usize>,
    /// Deploy to one host first, then to the rest
    #[arg(long)]
    pub canary: bool,
    /// all, rolling, canary or blue-green, instead of the stage's `strategy`
    #[arg(long, value_name = "S", conflicts_with_all = ["canary", "rolling"], value_parser = strategy_name)]
    pub strategy: Option<StrategyName>,
    /// When a batch fails, leave the batches already switched on the new release
    #[arg(long)]
    pub keep_switched: bool,
    /// Wait this long for a held deploy lock instead of exiting 3 (e.g. 30s, 5m)
    #[arg(long, value_name = "DURATION", value_parser = lock_wait)]
    pub lock_wait: Option<Duration>,
    /// Print each host's commands in order; run nothing on the hosts
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub watching: Watching,
}

/// The watch window of a deploy (and of a promotion), as asked for.
#[derive(Debug, Default, Args)]
pub struct Watching {
    /// Skip the watch window after the switch
    #[arg(long, conflicts_with = "watch")]
    pub no_watch: bool,
    /// Watch this long after the switch instead of the Deployfile's `[watch] duration`
    #[arg(long, value_name = "DURATION", value_parser = lock_wait)]
    pub watch: Option<Duration>,
}

/// `dep promote`'s own arguments.
#[derive(Debug, Args)]
pub struct Promote {
    /// The stage whose live release is promoted (every host must serve the same one)
    pub from: String,
    /// The stage to deploy it to
    pub to: String,
    /// Wait this long for a held deploy lock on TO instead of exiting 3 (e.g. 30s, 5m)
    #[arg(long, value_name = "DURATION", value_parser = lock_wait)]
    pub lock_wait: Option<Duration>,
    /// Check FROM, then print TO's commands in order; change nothing anywhere
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub watching: Watching,
}

/// `--lock-wait`, `--watch`: a duration as the Deployfile writes them (`30s`, `5m`, `500ms`, `90`).
fn lock_wait(text: &str) -> Result<Duration, crate::config::deployfile::DurationError> {
    crate::config::deployfile::parse_duration(text)
}

/// `--strategy`: one of the strategies' names.
fn strategy_name(text: &str) -> Result<StrategyName, String> {
    StrategyName::from_name(text).ok_or_else(|| {
        format!(
            "`{text}` is not a strategy (one of: {})",
            StrategyName::NAMES.join(", ")
        )
    })
}
