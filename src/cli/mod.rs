//! The command line: arguments (clap), and each subcommand turned into engine calls. The only
//! place that decides what is printed at the end and which exit code dep returns.

pub mod init;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use futures::future::join_all;

use crate::config::project::Project;
use crate::config::selector::Selector;
use crate::config::vars::Var;
use crate::error::{exit, Error, Result};
use crate::fleet::engine::{Engine, Options};
use crate::plan::TaskSet;
use crate::release::HostState;
use crate::report::{Format, Reporter, Style};
use crate::transport::command::Command;

#[derive(Debug, Parser)]
#[command(
    name = "dep",
    version,
    about = "Deploy over SSH: every host prepared, then switched at once.",
    allow_external_subcommands = true,
    after_help = "Any task is a command too: `dep artisan:migrate staging`.\n\
                  Exit codes: 0 ok, 1 a task failed, 2 usage or configuration error, 3 lock held,\n\
                  4 health check failed and rolled back, 5 rollback incomplete (fleet inconsistent)."
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Clone, Default, Args)]
struct Global {
    /// The Deployfile (default: Deployfile.toml here or in a parent directory)
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Set a variable, above every other layer (repeatable)
    #[arg(short = 'o', long = "option", global = true, value_name = "NAME=VALUE")]
    options: Vec<String>,
    /// Show each command (-v) and its output (-vv)
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print only errors
    #[arg(short = 'q', long = "quiet", global = true)]
    quiet: bool,
    /// Print one JSON event per line
    #[arg(long, global = true)]
    json: bool,
    /// How many hosts work at once
    #[arg(long, global = true, value_name = "N", default_value_t = 64)]
    parallel: usize,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Deploy a new release to the selected hosts
    Deploy {
        /// A stage, a host, or terms like `role=web`, `stage=production&role=db`
        selector: Option<String>,
        /// Deploy this branch
        #[arg(long, conflicts_with_all = ["tag", "revision"])]
        branch: Option<String>,
        /// Deploy this tag
        #[arg(long, conflicts_with = "revision")]
        tag: Option<String>,
        /// Deploy this exact revision
        #[arg(long)]
        revision: Option<String>,
        /// Deploy in batches of N hosts, each switched and health-checked before the next
        #[arg(long, value_name = "N", conflicts_with = "canary")]
        rolling: Option<usize>,
        /// Deploy to one host first, then to the rest
        #[arg(long)]
        canary: bool,
        /// When a batch fails, leave the batches already switched on the new release
        #[arg(long)]
        keep_switched: bool,
        /// Print each host's commands in order; run nothing on the hosts
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the health checks now against each host's current release
    Health { selector: Option<String> },
    /// Point `current` back at the previous live release
    Rollback {
        selector: Option<String>,
        /// Go back to this release instead
        #[arg(long, value_name = "RELEASE")]
        to: Option<String>,
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
struct TaskArgs {
    selector: Option<String>,
    #[arg(long)]
    dry_run: bool,
    /// The release a task works on, for tasks that take one (`dep db:restore STAGE --release R`)
    #[arg(long, value_name = "RELEASE")]
    release: Option<String>,
    #[command(flatten)]
    global: Global,
}

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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return exit::TASK_FAILED;
        }
    };
    raise_open_file_limit();
    let mut secrets = Vec::new();
    let result = runtime.block_on(dispatch(cli, &mut secrets));
    match result {
        Ok(()) => exit::OK,
        Err(error) => {
            let reporter = Reporter::new(Format::Plain, 0, secrets);
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                reporter.mask(&error.to_string())
            );
            error.exit_code()
        }
    }
}

async fn dispatch(cli: Cli, secrets: &mut Vec<String>) -> Result<()> {
    let mut global = cli.global;
    let command = match cli.command {
        Commands::Task(args) => {
            let (task, rest) = args
                .split_first()
                .ok_or_else(|| Error::Usage("no task given".into()))?;
            let parsed = TaskArgs::try_parse_from(rest)
                .map_err(|e| Error::Usage(e.to_string().trim().to_string()))?;
            global.file = parsed.global.file.or(global.file);
            global.options.extend(parsed.global.options);
            if let Some(release) = parsed.release {
                global.options.push(format!("backup_release={release}"));
            }
            global.verbose += parsed.global.verbose;
            global.quiet |= parsed.global.quiet;
            global.json |= parsed.global.json;
            Invocation::Task {
                name: task.clone(),
                selector: parsed.selector,
                dry_run: parsed.dry_run,
            }
        }
        Commands::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "dep", &mut std::io::stdout());
            return Ok(());
        }
        Commands::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command)
                .render(&mut std::io::stdout())
                .map_err(|e| Error::Local(format!("cannot write the manual page: {e}")))?;
            return Ok(());
        }
        Commands::Init(answers) => {
            let dir = std::env::current_dir()
                .map_err(|e| Error::Local(format!("cannot read the current directory: {e}")))?;
            for path in crate::cli::init::init(&dir, &answers)? {
                println!(
                    "wrote {}",
                    path.strip_prefix(&dir).unwrap_or(&path).display()
                );
            }
            println!(
                "next: check the hosts in Deployfile.toml, then `dep deploy staging --dry-run`"
            );
            return Ok(());
        }
        other => Invocation::Builtin(other),
    };
    let project = Project::discover(global.file.as_deref())?;
    // The names in `secrets`, and the SSH key passphrase, are masked in every output.
    *secrets = project
        .secrets
        .iter()
        .map(String::as_str)
        .chain([crate::transport::ssh::auth::PASSPHRASE_ENV])
        .filter_map(|name| std::env::var(name).ok())
        .filter(|v| !v.is_empty())
        .collect();
    let reporter = Reporter::new(
        if global.json {
            Format::Json
        } else {
            Format::Plain
        },
        if global.quiet {
            -1
        } else {
            global.verbose as i8
        },
        secrets.clone(),
    )
    .with_style(Style::detect(std::io::stdout().is_terminal(), |name| {
        std::env::var(name).ok()
    }));
    // Running one task by hand (`dep artisan:migrate:status staging`): its output is the point.
    let reporter = match &command {
        Invocation::Task { name, .. } if name != "deploy" && name != "rollback" => {
            reporter.with_output()
        }
        _ => reporter,
    };
    let tasks = TaskSet::compile(&project)?;
    let mut options = Options {
        parallel: global.parallel,
        overrides: global.options.clone(),
        ..Options::default()
    };
    match command {
        Invocation::Task {
            name,
            selector,
            dry_run,
        } => {
            tasks.get(&name)?;
            options.dry_run = dry_run;
            let hosts = select(&project, selector.as_deref(), true)?;
            let mut engine = Engine::new(&project, &tasks, &reporter, &options, hosts)?;
            match name.as_str() {
                "deploy" => engine.deploy().await,
                "rollback" => engine.rollback().await,
                _ => engine.run_task(&name).await,
            }
        }
        Invocation::Builtin(command) => match command {
            Commands::Deploy {
                selector,
                branch,
                tag,
                revision,
                rolling,
                canary,
                keep_switched,
                dry_run,
            } => {
                if rolling == Some(0) {
                    return Err(Error::Usage(
                        "`--rolling` needs a batch size of at least 1".into(),
                    ));
                }
                options = Options {
                    dry_run,
                    branch,
                    tag,
                    revision,
                    rolling,
                    canary,
                    keep_switched,
                    ..options
                };
                let hosts = select(&project, selector.as_deref(), true)?;
                Engine::new(&project, &tasks, &reporter, &options, hosts)?
                    .deploy()
                    .await
            }
            Commands::Rollback {
                selector,
                to,
                dry_run,
            } => {
                options = Options {
                    dry_run,
                    rollback_to: to,
                    ..options
                };
                let hosts = select(&project, selector.as_deref(), true)?;
                Engine::new(&project, &tasks, &reporter, &options, hosts)?
                    .rollback()
                    .await
            }
            Commands::Health { selector } => {
                let hosts = select(&project, selector.as_deref(), true)?;
                Engine::new(&project, &tasks, &reporter, &options, hosts)?
                    .health()
                    .await
            }
            Commands::Releases { selector } => {
                releases(&project, &tasks, &reporter, &options, selector, global.json).await
            }
            Commands::Run { selector, command } => {
                run(&project, &tasks, &reporter, &options, selector, command).await
            }
            Commands::Ssh { host } => ssh(&project, &options, host),
            Commands::List => {
                list(&tasks);
                Ok(())
            }
            Commands::Tree { task } => {
                print!("{}", tasks.tree(&task)?);
                Ok(())
            }
            Commands::Hosts { selector } => {
                hosts(&project, selector)?;
                Ok(())
            }
            Commands::Config { selector, host } => {
                config(&project, &reporter, &options, selector, host)
            }
            Commands::Unlock { selector } => {
                unlock(&project, &tasks, &reporter, &options, selector).await
            }
            Commands::Task(_)
            | Commands::Init(_)
            | Commands::Completions { .. }
            | Commands::Man => {
                unreachable!("handled above")
            }
        },
    }
}

enum Invocation {
    Builtin(Commands),
    Task {
        name: String,
        selector: Option<String>,
        dry_run: bool,
    },
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

/// The hosts a selector picks. Commands that change hosts need one; the others default to all.
fn select<'a>(
    project: &'a Project,
    selector: Option<&str>,
    required: bool,
) -> Result<Vec<&'a crate::config::host::Host>> {
    match selector {
        Some(text) => Selector::parse(text)?.select(&project.hosts),
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

async fn releases(
    project: &Project,
    tasks: &TaskSet,
    reporter: &Reporter,
    options: &Options,
    selector: Option<String>,
    json: bool,
) -> Result<()> {
    let hosts = select(project, selector.as_deref(), true)?;
    let mut engine = Engine::new(project, tasks, reporter, options, hosts)?;
    engine.read_states().await?;
    let mut out = String::new();
    for host in engine.hosts() {
        if json {
            // One object per host and line: its links and its releases, newest first.
            let statuses = host.state.statuses();
            let releases: Vec<serde_json::Value> = host
                .state
                .releases
                .iter()
                .rev()
                .map(|release| {
                    let entry = statuses.get(release.as_str());
                    serde_json::json!({
                        "release": release,
                        "status": entry.map(|e| e.status.as_str()),
                        "revision": entry.and_then(|e| e.revision.clone()),
                        "user": entry.map(|e| e.user.clone()),
                        "finished_at": entry.and_then(|e| e.finished_at.clone()),
                    })
                })
                .collect();
            let line = serde_json::json!({
                "host": host.host.name,
                "deploy_path": host.deploy_path,
                "current": host.state.current,
                "previous": host.state.previous,
                "releases": releases,
            });
            out.push_str(&format!("{line}\n"));
            continue;
        }
        out.push_str(&format!("{} ({})\n", host.host.name, host.deploy_path));
        out.push_str(&releases_table(&host.state));
    }
    print!("{}", reporter.mask(&out));
    Ok(())
}

/// The releases of one host as an aligned table, newest first.
pub fn releases_table(state: &HostState) -> String {
    if state.releases.is_empty() {
        return "  (no releases)\n".to_string();
    }
    let statuses = state.statuses();
    let mut rows = vec![["RELEASE", "STATUS", "REVISION", "WHO", "WHEN", ""].map(String::from)];
    for release in state.releases.iter().rev() {
        let entry = statuses.get(release.as_str());
        let mark = if state.current.as_deref() == Some(release) {
            "current"
        } else if state.previous.as_deref() == Some(release) {
            "previous"
        } else {
            ""
        };
        rows.push([
            release.clone(),
            entry.map_or("unknown", |e| e.status.as_str()).to_string(),
            entry
                .and_then(|e| e.revision.clone())
                .map(|r| r.chars().take(10).collect())
                .unwrap_or_default(),
            entry.map(|e| e.user.clone()).unwrap_or_default(),
            entry
                .map(|e| {
                    e.finished_at
                        .clone()
                        .unwrap_or_else(|| e.started_at.clone())
                })
                .unwrap_or_default(),
            mark.to_string(),
        ]);
    }
    crate::report::table::render(&rows, "  ")
}

async fn run(
    project: &Project,
    tasks: &TaskSet,
    reporter: &Reporter,
    options: &Options,
    selector: Option<String>,
    command: Vec<String>,
) -> Result<()> {
    let hosts = select(project, selector.as_deref(), true)?;
    let engine = Engine::new(project, tasks, reporter, options, hosts)?;
    let script = command.join(" ");
    let quiet = Reporter::new(Format::Plain, -1, Vec::new());
    let results = join_all(engine.hosts().iter().map(|h| {
        let mut cmd = Command::new("run", script.clone());
        cmd.cwd = h.vars.value_string("current_path").ok();
        let quiet = &quiet;
        async move {
            (
                h.host.name.clone(),
                h.backend.run(&h.host.name, &[cmd], quiet).await,
            )
        }
    }))
    .await;
    let mut failures = Vec::new();
    let mut out = String::new();
    for (host, results) in results {
        let Some(result) = results.into_iter().next() else {
            continue;
        };
        for line in result.stdout.lines().chain(result.stderr.lines()) {
            out.push_str(&format!("[{host}] {line}\n"));
        }
        if result.failed() {
            failures.push(crate::error::StepFailure {
                host: host.clone(),
                task: "run".into(),
                command: result.command.clone(),
                status: match result.outcome {
                    crate::transport::Outcome::Failed { status, .. } => status,
                    _ => None,
                },
                reason: match &result.outcome {
                    crate::transport::Outcome::Failed { reason, .. } => reason.clone(),
                    _ => None,
                },
                stderr_tail: String::new(),
            });
        }
    }
    print!("{}", reporter.mask(&out));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Fleet(failures))
    }
}

/// `dep ssh HOST`: replace this process with an interactive shell in the host's current release.
fn ssh(project: &Project, options: &Options, name: Option<String>) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let host = match &name {
        Some(name) => project.host(name),
        None if project.hosts.len() == 1 => project.hosts.first(),
        None => None,
    };
    let Some(host) = host else {
        return Err(Error::NoHostMatches {
            selector: name.unwrap_or_else(|| "(no host given)".into()),
            hosts: project.hosts.iter().map(|h| h.name.clone()).collect(),
            stages: project.stages.keys().cloned().collect(),
        });
    };
    let vars = crate::fleet::engine::host_vars(project, host, options)?;
    let current = vars
        .value_string("current_path")
        .map_err(|error| Error::Config {
            path: project.deployfile.clone(),
            message: error.to_string(),
        })?;
    let shell = format!(
        "cd {} && exec \"${{SHELL:-bash}}\" -l",
        crate::quote::quote(&current)
    );
    let mut command = if host.local {
        let mut command = std::process::Command::new("bash");
        command.arg("-c").arg(&shell);
        command
    } else {
        let mut command = std::process::Command::new("ssh");
        command.arg("-t");
        if let Some(port) = host.port {
            command.arg("-p").arg(port.to_string());
        }
        if let Some(identity) = &host.identity_file {
            command.arg("-i").arg(identity);
        }
        if let Some(known_hosts) = &host.known_hosts_file {
            command
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known_hosts.display()));
        }
        if host.host_key_check == crate::config::deployfile::HostKeyCheck::AcceptNew {
            command.arg("-o").arg("StrictHostKeyChecking=accept-new");
        }
        let target = match &host.user {
            Some(user) => format!("{user}@{}", host.hostname),
            None => host.hostname.clone(),
        };
        command.arg(target).arg(&shell);
        command
    };
    let error = command.exec();
    Err(Error::Local(format!(
        "cannot start a shell for host `{}`: {error}",
        host.name
    )))
}

fn list(tasks: &TaskSet) {
    let mut rows = vec![];
    for task in tasks.all() {
        rows.push([task.name.clone(), task.desc.clone()]);
    }
    rows.sort();
    print!("{}", crate::report::table::render(&rows, ""));
}

fn hosts(project: &Project, selector: Option<String>) -> Result<()> {
    let hosts = select(project, selector.as_deref(), false)?;
    let mut rows = vec![["HOST", "ADDRESS", "USER", "STAGE", "ROLES"].map(String::from)];
    for host in hosts {
        let address = if host.local {
            "local".to_string()
        } else {
            match host.port {
                Some(port) => format!("{}:{port}", host.hostname),
                None => host.hostname.clone(),
            }
        };
        rows.push([
            host.name.clone(),
            address,
            host.login_user(),
            host.stage.clone().unwrap_or_default(),
            host.roles.join(","),
        ]);
    }
    print!("{}", crate::report::table::render(&rows, ""));
    Ok(())
}

fn config(
    project: &Project,
    reporter: &Reporter,
    options: &Options,
    selector: Option<String>,
    only: Option<String>,
) -> Result<()> {
    let mut hosts = select(project, selector.as_deref(), false)?;
    if let Some(only) = &only {
        hosts.retain(|h| &h.name == only);
        if hosts.is_empty() {
            return Err(Error::NoHostMatches {
                selector: only.clone(),
                hosts: project.hosts.iter().map(|h| h.name.clone()).collect(),
                stages: project.stages.keys().cloned().collect(),
            });
        }
    }
    let mut out = String::new();
    for host in hosts {
        let mut vars = crate::fleet::engine::host_vars(project, host, options)?;
        vars.set_placeholders(true);
        out.push_str(&format!("{}\n", host.name));
        let mut rows = vec![["NAME", "VALUE", "FROM"].map(String::from)];
        let names: Vec<String> = vars.names().cloned().collect();
        for name in names {
            let value = match vars.get(&name) {
                Some(Var::Dynamic(command)) => format!("{{ run = {command:?} }}"),
                _ => match vars.value_json(&name) {
                    Ok(serde_json::Value::String(s)) => s,
                    Ok(other) => other.to_string(),
                    Err(error) => format!("<error: {error}>"),
                },
            };
            rows.push([name.clone(), value, vars.origin(&name).to_string()]);
        }
        out.push_str(&crate::report::table::render(&rows, "  "));
    }
    print!("{}", reporter.mask(&out));
    Ok(())
}

async fn unlock(
    project: &Project,
    tasks: &TaskSet,
    reporter: &Reporter,
    options: &Options,
    selector: Option<String>,
) -> Result<()> {
    let hosts = select(project, selector.as_deref(), true)?;
    let mut engine = Engine::new(project, tasks, reporter, options, hosts)?;
    engine.read_states().await?;
    let outputs = join_all(engine.hosts().iter().map(|h| async move {
        let output = h
            .backend
            .capture(&crate::release::lock::LockInfo::force_release_command(
                &h.deploy_path,
            ))
            .await;
        (h, output)
    }))
    .await;
    let mut failures = Vec::new();
    for (h, output) in outputs {
        if !output.success() {
            failures.push(crate::error::StepFailure {
                host: h.host.name.clone(),
                task: "unlock".into(),
                command: String::new(),
                status: output.status,
                reason: output.reason.clone(),
                stderr_tail: output.stderr.clone(),
            });
            continue;
        }
        let message = match &h.state.lock {
            Some(record) => format!(
                "[{}] unlocked (was {})",
                h.host.name,
                crate::release::lock::describe_holder(record)
            ),
            None => format!("[{}] was not locked", h.host.name),
        };
        println!("{}", reporter.mask(&message));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Fleet(failures))
    }
}
