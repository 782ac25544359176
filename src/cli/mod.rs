//! The command line: raw arguments (`args`) resolved into a `Config` (`config`), then one file per
//! subcommand turning it into engine calls. The only place that decides what is printed at the
//! end and which exit code dep returns.
//!
//! Everything that reads files (the Deployfile, its recipes, `dep init`) happens here before the
//! async runtime starts; only the subcommands that talk to hosts run on it.

pub mod args;
pub mod config;
pub mod deploy;
pub mod init;
pub mod listing;
pub mod releases;
pub mod run;
pub mod ssh;
pub mod unlock;

use std::ffi::OsString;
use std::future::Future;
use std::io::{IsTerminal, Write};

use clap::{CommandFactory, Parser};

use crate::cli::args::Cli;
use crate::cli::config::{Config, Subcommand};
use crate::config::host::Host;
use crate::config::project::Project;
use crate::config::selector::Selector;
use crate::error::{exit, Error, Result};
use crate::fleet::{Fleet, Options};
use crate::plan::TaskSet;
use crate::report::{Event, Format, Reporter, Style};

pub fn main<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    crate::report::run_started();
    init_tracing();
    raise_open_file_limit();
    let json = cli.global.json;
    let mut secrets = Vec::new();
    let result = crate::fleet::check_clock()
        .and_then(|()| Config::from_args(cli))
        .and_then(|config| run(config, &mut secrets));
    match result {
        Ok(()) => exit::OK,
        Err(error) => {
            let message = error.to_string();
            if json {
                // A pipeline reading the events learns how the run ended, whatever ended it.
                Reporter::new(Format::Json, 0, secrets.clone()).emit(Event::Failed {
                    message: &message,
                    exit_code: error.exit_code(),
                });
            }
            let reporter = Reporter::new(Format::Plain, 0, secrets);
            let _ = writeln!(std::io::stderr(), "error: {}", reporter.mask(&message));
            error.exit_code()
        }
    }
}

/// `dep config | head`: a command that only prints ends, like any Unix tool, when its reader
/// stops reading, rather than panicking on the closed pipe. (Rust ignores SIGPIPE; commands
/// that change hosts keep ignoring it, so that a closed pipe never stops a deploy half way.)
fn end_quietly_when_the_reader_goes() {
    // SAFETY: setting a signal's disposition to its default has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The `secrets` a Deployfile that did not load names, read from its text as it is.
fn unparsed_secret_names(file: Option<&std::path::Path>) -> Vec<String> {
    use crate::config::deployfile::{find, secret_names_in, FILE_NAME};
    let path = match file {
        Some(path) if path.is_dir() => Some(path.join(FILE_NAME)),
        Some(path) => Some(path.to_path_buf()),
        None => std::env::current_dir().ok().and_then(|dir| find(&dir).ok()),
    };
    path.and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| secret_names_in(&text))
        .unwrap_or_default()
}

/// Print generated text; a reader that stops early (`| head`) is no error.
fn print_whole(bytes: &[u8], what: &str) -> Result<()> {
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::Local(format!("cannot write {what}: {e}")))
        }
        _ => Ok(()),
    }
}

/// Run one resolved command line. `secrets` receives the values to mask, once they are known.
fn run(config: Config, secrets: &mut Vec<String>) -> Result<()> {
    if config.subcommand.only_reads() {
        end_quietly_when_the_reader_goes();
    }
    match &config.subcommand {
        Subcommand::Completions(shell) => {
            let mut command = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "dep", &mut script);
            return print_whole(&script, "the completion script");
        }
        Subcommand::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| Error::Local(format!("cannot write the manual page: {e}")))?;
            return print_whole(&page, "the manual page");
        }
        Subcommand::Init(answers) => return init::run(answers),
        _ => {}
    }
    // The names in `secrets`, and the SSH key passphrase, are masked in every output: in the
    // error of a Deployfile that does not parse too, as well as its text allows.
    let values = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .map(String::as_str)
            .chain([crate::transport::ssh::auth::PASSPHRASE_ENV])
            .filter_map(|name| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let project = match Project::discover(config.file.as_deref()) {
        Ok(project) => project,
        Err(error) => {
            *secrets = values(&unparsed_secret_names(config.file.as_deref()));
            return Err(error);
        }
    };
    *secrets = values(&project.secrets);
    let reporter = reporter(&config, secrets.clone());
    for warning in crate::fleet::override_warnings(&project, &config.overrides) {
        eprintln!("{}", reporter.mask(&format!("warning: {warning}")));
    }
    let tasks = TaskSet::compile(&project)?;
    let session = Session {
        project: &project,
        tasks: &tasks,
        reporter: &reporter,
        options: Options {
            parallel: config.parallel,
            overrides: config.overrides.clone(),
            ..Options::default()
        },
    };
    dispatch(session, config.subcommand, config.json)
}

/// One subcommand, given the loaded project.
fn dispatch(session: Session<'_>, subcommand: Subcommand, json: bool) -> Result<()> {
    match subcommand {
        Subcommand::Deploy(args) => block_on(deploy::deploy(session, args)),
        Subcommand::Promote(args) => block_on(deploy::promote(session, args)),
        Subcommand::Rollback {
            selector,
            to,
            lock_wait,
            dry_run,
        } => block_on(deploy::rollback(
            session,
            selector,
            deploy::RollbackArgs {
                to,
                lock_wait,
                dry_run,
            },
        )),
        Subcommand::Health { selector } => block_on(deploy::health(session, selector)),
        Subcommand::Watch { selector, duration } => {
            block_on(deploy::watch(session, selector, duration))
        }
        Subcommand::Task {
            name,
            selector,
            dry_run,
        } => block_on(deploy::task(session, name, selector, dry_run)),
        Subcommand::Releases { selector } => block_on(releases::releases(session, selector, json)),
        Subcommand::Run { selector, command } => block_on(run::run(session, selector, command)),
        Subcommand::Unlock { selector } => block_on(unlock::unlock(session, selector)),
        Subcommand::Ssh { host } => ssh::ssh(&session, host),
        Subcommand::List => {
            listing::list(session.tasks);
            Ok(())
        }
        Subcommand::Tree { task } => {
            print!("{}", session.tasks.tree(&task)?);
            Ok(())
        }
        Subcommand::Hosts { selector } => listing::hosts(session.project, selector),
        Subcommand::Config { selector, host } => listing::config(&session, selector, host),
        Subcommand::Completions(_) | Subcommand::Man | Subcommand::Init(_) => {
            unreachable!("handled before the project is loaded")
        }
    }
}

/// What a subcommand that works on hosts is given: the project, its tasks, where output goes,
/// and the engine options the global flags set.
pub struct Session<'a> {
    pub project: &'a Project,
    pub tasks: &'a TaskSet,
    pub reporter: &'a Reporter,
    pub options: Options,
}

impl<'a> Session<'a> {
    /// The hosts a selector picks. Commands that change hosts need one; the others default to
    /// all.
    pub fn select(&self, selector: Option<&str>, required: bool) -> Result<Vec<&'a Host>> {
        select(self.project, selector, required)
    }

    /// The engine over the hosts `selector` picks (one is required), with these options.
    pub fn engine(&self, selector: Option<&str>) -> Result<Fleet<'_>> {
        let hosts = self.select(selector, true)?;
        Fleet::new(
            self.project,
            self.tasks,
            self.reporter,
            &self.options,
            hosts,
        )
    }
}

/// The hosts a selector picks. Commands that change hosts need one; the others default to all.
pub fn select<'a>(
    project: &'a Project,
    selector: Option<&str>,
    required: bool,
) -> Result<Vec<&'a Host>> {
    match selector {
        Some(text) => {
            let declared: Vec<&str> = project.stages.keys().map(String::as_str).collect();
            Selector::parse(text)?.select(&project.hosts, &declared)
        }
        None if !required => Ok(project.hosts.iter().collect()),
        None => {
            let mut stages: Vec<&str> = project.stages.keys().map(String::as_str).collect();
            stages.sort();
            Err(Error::Usage(format!(
                "name the hosts to work on: a stage ({}), a host, or `role=NAME`",
                if stages.is_empty() {
                    "none defined".to_string()
                } else {
                    stages.join(", ")
                }
            )))
        }
    }
}

/// The reporter the global flags ask for. Running one task by hand
/// (`dep artisan:migrate:status staging`) shows its output: that is the point of it.
fn reporter(config: &Config, secrets: Vec<String>) -> Reporter {
    let format = if config.json {
        Format::Json
    } else {
        Format::Plain
    };
    let verbosity = if config.quiet {
        -1
    } else {
        config.verbose as i8
    };
    let reporter = Reporter::new(format, verbosity, secrets)
        .with_style(Style::detect(std::io::stdout().is_terminal(), |name| {
            std::env::var(name).ok()
        }));
    match &config.subcommand {
        Subcommand::Task { name, .. } if name != "deploy" && name != "rollback" => {
            reporter.with_output()
        }
        _ => reporter,
    }
}

/// Run `future` on the runtime dep's network work uses: two workers, enough for thousands of
/// hosts since every wait is on the network.
fn block_on<F: Future<Output = Result<()>>>(future: F) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| Error::Local(format!("cannot start the async runtime: {error}")))?;
    let result = runtime.block_on(async {
        let result = future.await;
        // The kept shells' goodbye: a host whose shell ends without it kills what it runs.
        crate::transport::ssh::close_all().await;
        result
    });
    // Work left on a blocking thread (packing an upload when Ctrl-C came) must not keep dep
    // from exiting once the run is over.
    runtime.shutdown_background();
    result
}

/// `RUST_LOG=dep=debug` logs to stderr (docs/getting-started.md); without RUST_LOG nothing is logged,
/// so dep's output is exactly what it always is.
fn init_tracing() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// One SSH connection per host stays open for the whole run: lift the soft open-file limit to
/// the hard one so large fleets do not run out of descriptors.
fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
