//! The command line resolved: clap's raw arguments (`args`) become one `Config`, with the global
//! flags given after a task name merged in and `--release` turned into its variable.

use std::path::PathBuf;

use clap::Parser;

use crate::cli::args::{Cli, Commands, Deploy, Global, Promote, TaskArgs};
use crate::cli::init::Answers;
use crate::error::{Error, Result};

/// What dep was asked to do, and how.
#[derive(Debug)]
pub struct Config {
    /// `-f FILE`: the Deployfile, else the one found from the current directory.
    pub file: Option<PathBuf>,
    /// `-o NAME=VALUE`, in order (the top variable layer).
    pub overrides: Vec<String>,
    pub verbose: u8,
    pub quiet: bool,
    pub json: bool,
    pub parallel: usize,
    pub subcommand: Subcommand,
}

/// One subcommand and its own arguments.
#[derive(Debug)]
pub enum Subcommand {
    Deploy(Deploy),
    Promote(Promote),
    Rollback {
        selector: Option<String>,
        to: Option<String>,
        lock_wait: Option<std::time::Duration>,
        dry_run: bool,
    },
    Health {
        selector: Option<String>,
    },
    Watch {
        selector: Option<String>,
        duration: Option<std::time::Duration>,
    },
    Releases {
        selector: Option<String>,
    },
    Run {
        selector: Option<String>,
        command: Vec<String>,
    },
    Ssh {
        host: Option<String>,
    },
    List,
    Tree {
        task: String,
    },
    Hosts {
        selector: Option<String>,
    },
    Config {
        selector: Option<String>,
        host: Option<String>,
    },
    Completions(clap_complete::Shell),
    Man,
    Init(Answers),
    Unlock {
        selector: Option<String>,
    },
    /// Any task by name: `dep artisan:migrate staging`.
    Task {
        name: String,
        selector: Option<String>,
        dry_run: bool,
    },
}

impl Subcommand {
    /// Commands that print what they read and change nothing anywhere.
    pub fn only_reads(&self) -> bool {
        matches!(
            self,
            Subcommand::Releases { .. }
                | Subcommand::List
                | Subcommand::Tree { .. }
                | Subcommand::Hosts { .. }
                | Subcommand::Config { .. }
                | Subcommand::Completions(_)
                | Subcommand::Man
        )
    }
}

impl Config {
    /// Resolve the parsed command line. A task's own arguments are parsed here, so a mistake in
    /// them is a usage error before any file is read.
    pub fn from_args(cli: Cli) -> Result<Config> {
        let mut global = cli.global;
        let subcommand = match cli.command {
            Commands::Task(args) => task(args, &mut global)?,
            Commands::Deploy(args) => Subcommand::Deploy(args),
            Commands::Promote(args) => Subcommand::Promote(args),
            Commands::Rollback {
                selector,
                to,
                lock_wait,
                dry_run,
            } => Subcommand::Rollback {
                selector,
                to,
                lock_wait,
                dry_run,
            },
            Commands::Health { selector } => Subcommand::Health { selector },
            Commands::Watch { selector, duration } => Subcommand::Watch { selector, duration },
            Commands::Releases { selector } => Subcommand::Releases { selector },
            Commands::Run { selector, command } => Subcommand::Run { selector, command },
            Commands::Ssh { host } => Subcommand::Ssh { host },
            Commands::List => Subcommand::List,
            Commands::Tree { task } => Subcommand::Tree { task },
            Commands::Hosts { selector } => Subcommand::Hosts { selector },
            Commands::Config { selector, host } => Subcommand::Config { selector, host },
            Commands::Completions { shell } => Subcommand::Completions(shell),
            Commands::Man => Subcommand::Man,
            Commands::Init(answers) => Subcommand::Init(answers),
            Commands::Unlock { selector } => Subcommand::Unlock { selector },
        };
        Ok(Config {
            file: global.file,
            overrides: global.options,
            verbose: global.verbose,
            quiet: global.quiet,
            json: global.json,
            parallel: global.parallel,
            subcommand,
        })
    }
}

/// `dep TASK [SELECTOR] [--dry-run] [--release R]`: the global flags after the task name count
/// as if given before it.
fn task(args: Vec<String>, global: &mut Global) -> Result<Subcommand> {
    let (name, rest) = args
        .split_first()
        .ok_or_else(|| Error::Usage("no task given".into()))?;
    let parsed = TaskArgs::try_parse_from(rest)
        .map_err(|e| Error::Usage(e.to_string().trim().to_string()))?;
    global.file = parsed.global.file.or(global.file.take());
    global.options.extend(parsed.global.options);
    if let Some(release) = parsed.release {
        global.options.push(format!("backup_release={release}"));
    }
    global.verbose += parsed.global.verbose;
    global.quiet |= parsed.global.quiet;
    global.json |= parsed.global.json;
    Ok(Subcommand::Task {
        name: name.clone(),
        selector: parsed.selector,
        dry_run: parsed.dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config> {
        let cli = Cli::try_parse_from(std::iter::once("dep").chain(args.iter().copied()))
            .map_err(|e| Error::Usage(e.to_string()))?;
        Config::from_args(cli)
    }

    #[test]
    fn flags_after_a_task_name_count_as_global() {
        // (arguments, file, overrides, verbose, quiet, json, selector, dry run)
        type Case<'a> = (
            &'a [&'a str],
            Option<&'a str>,
            &'a [&'a str],
            u8,
            bool,
            bool,
            Option<&'a str>,
            bool,
        );
        let cases: &[Case] = &[
            (&["db:backup"], None, &[], 0, false, false, None, false),
            (
                &[
                    "-o",
                    "a=1",
                    "db:restore",
                    "staging",
                    "--release",
                    "R",
                    "-o",
                    "b=2",
                ],
                None,
                &["a=1", "b=2", "backup_release=R"],
                0,
                false,
                false,
                Some("staging"),
                false,
            ),
            (
                &[
                    "-v",
                    "artisan:migrate",
                    "production",
                    "-v",
                    "--dry-run",
                    "--json",
                ],
                None,
                &[],
                2,
                false,
                true,
                Some("production"),
                true,
            ),
            (
                &["-f", "a.toml", "cache:clear", "-f", "b.toml", "-q"],
                Some("b.toml"),
                &[],
                0,
                true,
                false,
                None,
                false,
            ),
            (
                &["-f", "a.toml", "cache:clear"],
                Some("a.toml"),
                &[],
                0,
                false,
                false,
                None,
                false,
            ),
        ];
        for (args, file, overrides, verbose, quiet, json, selector, dry_run) in cases {
            let config = config(args).unwrap();
            assert_eq!(config.file.as_deref(), file.map(std::path::Path::new));
            assert_eq!(config.overrides, *overrides, "{args:?}");
            assert_eq!(
                (config.verbose, config.quiet, config.json),
                (*verbose, *quiet, *json),
                "{args:?}"
            );
            let Subcommand::Task {
                selector: s,
                dry_run: d,
                ..
            } = config.subcommand
            else {
                panic!("{args:?} is not a task")
            };
            assert_eq!((s.as_deref(), d), (*selector, *dry_run), "{args:?}");
        }
    }

    #[test]
    fn a_bad_task_argument_is_a_usage_error() {
        let error = config(&["db:backup", "--bogus"]).unwrap_err();
        assert!(matches!(error, Error::Usage(_)), "{error}");
        assert_eq!(error.exit_code(), crate::error::exit::USAGE);
    }
}
