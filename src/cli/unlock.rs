//! `dep unlock SELECTOR`: remove the deploy lock a crashed deploy left behind.

use futures::future::join_all;
use tracing::Instrument as _;

use crate::cli::Session;
use crate::error::{Error, Result, StepFailure};
use crate::release::lock::{describe_holder, LockInfo};

pub async fn unlock(session: Session<'_>, selector: Option<String>) -> Result<()> {
    let reporter = session.reporter;
    let mut engine = session.engine(selector.as_deref())?;
    engine.read_states().await?;
    let outputs = join_all(engine.hosts().iter().map(|h| {
        let span = tracing::info_span!("unlock", host = %h.host.name, task = "unlock");
        async move {
            let output = h
                .backend
                .capture(&LockInfo::force_release_command(&h.deploy_path))
                .await;
            (h, output)
        }
        .instrument(span)
    }))
    .await;
    let mut failures = Vec::new();
    for (h, output) in outputs {
        if !output.success() {
            failures.push(StepFailure {
                host: h.host.name.clone(),
                task: "unlock".into(),
                command: String::new(),
                status: output.status,
                reason: output.reason.clone(),
                stderr_tail: output.stderr.clone(),
                unreachable: output.unreachable,
                disk_full: None,
            });
            continue;
        }
        let message = match &h.state.lock {
            Some(record) => format!(
                "[{}] unlocked (was {})",
                h.host.name,
                describe_holder(record)
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
