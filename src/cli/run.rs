//! `dep run SELECTOR -- CMD`: one command in `current` on each selected host, its output
//! prefixed with the host.

use futures::future::join_all;
use tracing::Instrument as _;

use crate::cli::Session;
use crate::error::{Error, Result, StepFailure};
use crate::report::{Format, Reporter};
use crate::transport::command::Command;
use crate::transport::Outcome;

pub async fn run(
    session: Session<'_>,
    selector: Option<String>,
    command: Vec<String>,
) -> Result<()> {
    let reporter = session.reporter;
    let mut engine = session.engine(selector.as_deref())?;
    // A host with nothing deployed (a blue-green router, a new host) has no `current` to run
    // in: the command runs on the others, and dep says where it did not; with none, nowhere.
    engine.read_states().await?;
    let (live, bare): (Vec<&crate::fleet::HostRun>, Vec<_>) = engine
        .hosts()
        .iter()
        .partition(|h| h.state.current.is_some());
    let bare: Vec<String> = bare
        .iter()
        .map(|h| {
            format!(
                "host `{}`: no release is live in `{}`",
                h.name(),
                h.deploy_path
            )
        })
        .collect();
    if live.is_empty() {
        return Err(Error::Refused(format!(
            "`dep run` needs a live release, and no selected host has one; nothing was run:\n  {}",
            bare.join("\n  ")
        )));
    }
    let script = command.join(" ");
    let quiet = Reporter::new(Format::Plain, -1, Vec::new());
    let results = join_all(live.iter().map(|h| {
        let mut cmd = Command::new("run", script.clone());
        cmd.cwd = h.vars.value_string("current_path").ok();
        let quiet = &quiet;
        let span = tracing::info_span!("run", host = %h.host.name, task = "run");
        async move {
            (
                h.host.name.clone(),
                h.backend.run(&h.host.name, &[cmd], quiet).await,
            )
        }
        .instrument(span)
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
            failures.push(StepFailure {
                host: host.clone(),
                task: "run".into(),
                command: result.command.clone(),
                status: match result.outcome {
                    Outcome::Failed { status, .. } => status,
                    _ => None,
                },
                reason: match &result.outcome {
                    Outcome::Failed { reason, .. } => reason.clone(),
                    _ => None,
                },
                stderr_tail: String::new(),
                unreachable: result.unreachable,
                disk_full: None,
            });
        }
    }
    for line in &bare {
        out.push_str(&format!("not run: {line}\n"));
    }
    print!("{}", reporter.mask(&out));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Fleet(failures))
    }
}
