//! `dep deploy`, `dep rollback`, `dep health` and `dep TASK`: runs of the engine over the
//! selected hosts.

use tracing::Instrument as _;

use crate::cli::config::Deploy;
use crate::cli::Session;
use crate::error::{Error, Result};
use crate::fleet::engine::{Engine, Options};

pub async fn deploy(session: Session<'_>, args: Deploy) -> Result<()> {
    if args.rolling == Some(0) {
        return Err(Error::Usage(
            "`--rolling` needs a batch size of at least 1".into(),
        ));
    }
    let hosts = session.select(args.selector.as_deref(), true)?;
    let options = Options {
        dry_run: args.dry_run,
        branch: args.branch,
        tag: args.tag,
        revision: args.revision,
        rolling: args.rolling,
        canary: args.canary,
        keep_switched: args.keep_switched,
        ..session.options
    };
    Engine::new(
        session.project,
        session.tasks,
        session.reporter,
        &options,
        hosts,
    )?
    .deploy()
    .instrument(tracing::info_span!("deploy", task = "deploy"))
    .await
}

pub async fn rollback(
    session: Session<'_>,
    selector: Option<String>,
    to: Option<String>,
    dry_run: bool,
) -> Result<()> {
    let hosts = session.select(selector.as_deref(), true)?;
    let options = Options {
        dry_run,
        rollback_to: to,
        ..session.options
    };
    Engine::new(
        session.project,
        session.tasks,
        session.reporter,
        &options,
        hosts,
    )?
    .rollback()
    .instrument(tracing::info_span!("rollback", task = "rollback"))
    .await
}

pub async fn health(session: Session<'_>, selector: Option<String>) -> Result<()> {
    let hosts = session.select(selector.as_deref(), true)?;
    Engine::new(
        session.project,
        session.tasks,
        session.reporter,
        &session.options,
        hosts,
    )?
    .health()
    .instrument(tracing::info_span!("health", task = "health"))
    .await
}

/// `dep TASK SELECTOR`: any task by name; `deploy` and `rollback` by that name are the real ones.
pub async fn task(
    session: Session<'_>,
    name: String,
    selector: Option<String>,
    dry_run: bool,
) -> Result<()> {
    session.tasks.get(&name)?;
    let hosts = session.select(selector.as_deref(), true)?;
    let options = Options {
        dry_run,
        ..session.options
    };
    let mut engine = Engine::new(
        session.project,
        session.tasks,
        session.reporter,
        &options,
        hosts,
    )?;
    let span = tracing::info_span!("task", task = %name);
    match name.as_str() {
        "deploy" => engine.deploy().instrument(span).await,
        "rollback" => engine.rollback().instrument(span).await,
        _ => engine.run_task(&name).instrument(span).await,
    }
}
