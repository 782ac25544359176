//! `dep deploy`, `dep promote`, `dep rollback`, `dep health`, `dep watch` and `dep TASK`: runs of the engine over the
//! selected hosts.

use tracing::Instrument as _;

use crate::cli::args::{Deploy, Promote};
use crate::cli::Session;
use crate::error::{Error, Result};
use crate::fleet::Options;

pub async fn deploy(mut session: Session<'_>, args: Deploy) -> Result<()> {
    if args.rolling == Some(0) {
        return Err(Error::Usage(
            "`--rolling` needs a batch size of at least 1".into(),
        ));
    }
    session.options = Options {
        dry_run: args.dry_run,
        branch: args.branch,
        tag: args.tag,
        revision: args.revision,
        rolling: args.rolling,
        canary: args.canary,
        strategy: args.strategy,
        keep_switched: args.keep_switched,
        lock_wait: args.lock_wait,
        no_watch: args.watching.no_watch,
        watch_duration: args.watching.watch,
        selector: args.selector.clone(),
        ..session.options
    };
    let span = tracing::info_span!("deploy", task = "deploy");
    session
        .engine(args.selector.as_deref())?
        .deploy()
        .instrument(span)
        .await
}

/// `dep promote FROM TO`: read what is live on FROM (every host agreeing, healthy now), then
/// deploy TO pinned to it. A refusal happens before TO is touched: no lock, no release, no log.
/// With `--dry-run`, FROM is still read and health-checked (neither changes anything) and TO's
/// deploy is only printed.
pub async fn promote(mut session: Session<'_>, args: Promote) -> Result<()> {
    let Promote {
        from,
        to,
        lock_wait,
        dry_run,
        watching,
    } = args;
    if from == to {
        return Err(Error::Usage(format!(
            "`dep promote {from} {to}`: promote from one stage to another"
        )));
    }
    // Both must pick hosts, and no host may be in both: check before anything runs.
    let from_hosts = session.select(Some(&from), true)?;
    let to_hosts = session.select(Some(&to), true)?;
    if let Some(host) = from_hosts
        .iter()
        .find(|h| to_hosts.iter().any(|t| t.name == h.name))
    {
        return Err(Error::Usage(format!(
            "host `{}` is in both `{from}` and `{to}`: promotion needs two separate stages",
            host.name
        )));
    }
    let promotion = session
        .engine(Some(&from))?
        .promotable(&from)
        .instrument(tracing::info_span!("promote", task = "promote", stage = %from))
        .await?;
    session.options = Options {
        selector: Some(to.clone()),
        promotion: Some(promotion),
        lock_wait,
        dry_run,
        no_watch: watching.no_watch,
        watch_duration: watching.watch,
        ..session.options
    };
    let span = tracing::info_span!("deploy", task = "deploy");
    session.engine(Some(&to))?.deploy().instrument(span).await
}

/// `dep rollback`'s own arguments, beyond the selector.
pub struct RollbackArgs {
    pub to: Option<String>,
    pub lock_wait: Option<std::time::Duration>,
    pub dry_run: bool,
}

pub async fn rollback(
    mut session: Session<'_>,
    selector: Option<String>,
    args: RollbackArgs,
) -> Result<()> {
    session.options.dry_run = args.dry_run;
    session.options.rollback_to = args.to;
    session.options.lock_wait = args.lock_wait;
    session.options.selector = selector.clone();
    let span = tracing::info_span!("rollback", task = "rollback");
    session
        .engine(selector.as_deref())?
        .rollback()
        .instrument(span)
        .await
}

pub async fn health(session: Session<'_>, selector: Option<String>) -> Result<()> {
    let span = tracing::info_span!("health", task = "health");
    session
        .engine(selector.as_deref())?
        .health()
        .instrument(span)
        .await
}

/// `dep watch`: the watch window against the live release, changing nothing.
pub async fn watch(
    mut session: Session<'_>,
    selector: Option<String>,
    duration: Option<std::time::Duration>,
) -> Result<()> {
    session.options.watch_duration = duration;
    session.options.selector = selector.clone();
    let span = tracing::info_span!("watch", task = "watch");
    session
        .engine(selector.as_deref())?
        .watch()
        .instrument(span)
        .await
}

/// `dep TASK SELECTOR`: any task by name; `deploy` and `rollback` by that name are the real ones.
pub async fn task(
    mut session: Session<'_>,
    name: String,
    selector: Option<String>,
    dry_run: bool,
) -> Result<()> {
    session.tasks.get(&name)?;
    session.options.dry_run = dry_run;
    session.options.selector = selector.clone();
    let mut engine = session.engine(selector.as_deref())?;
    let span = tracing::info_span!("task", task = %name);
    match name.as_str() {
        "deploy" => engine.deploy().instrument(span).await,
        "rollback" => engine.rollback().instrument(span).await,
        _ => engine.run_task(&name).instrument(span).await,
    }
}
