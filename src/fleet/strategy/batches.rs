//! Deploying batch by batch (rolling and canary): every host is locked first; each batch then
//! runs `deploy:batch_start`, prepares, switches, is health-checked and watched, then `deploy:batch_end`,
//! before the next starts. When a batch fails, the batches already switched go back too (unless
//! `--keep-switched`), and the failed batch's hosts still run `deploy:batch_end` (back into the
//! load balancer, serving the previous release).

use crate::error::{Error, Result};
use crate::fleet::phases::Deploy;

pub async fn run(deploy: &mut Deploy<'_, '_>, batches: Vec<Vec<usize>>) -> Result<()> {
    deploy.lock().await?;
    let keep = deploy.fleet.ctx.options.keep_switched;
    let count = batches.len();
    for (number, batch) in batches.iter().enumerate() {
        let names: Vec<&str> = batch
            .iter()
            .map(|&i| deploy.fleet.hosts[i].name())
            .collect();
        deploy
            .fleet
            .ctx
            .reporter
            .emit(crate::report::Event::BatchStarted {
                number: number + 1,
                of: count,
                hosts: &names,
            });
        if let Err((error, end)) = one_batch(deploy, batch, keep).await {
            return Err(fail_batch(deploy, batch, keep, error, end).await);
        }
    }
    deploy.finish().await
}

/// One batch through its phases; on failure, whether `deploy:batch_end` already ran.
async fn one_batch(
    deploy: &mut Deploy<'_, '_>,
    batch: &[usize],
    keep: bool,
) -> std::result::Result<(), (Error, BatchEnd)> {
    let start = deploy.plan().batch_start.clone();
    // Until `deploy:batch_end` ran, an interrupt puts the batch back too (see `Fleet::deploy`).
    deploy.fleet.batch_out = Some((batch.to_vec(), deploy.plan().batch_end.clone()));
    let before_end = async {
        deploy.fleet.execute(&start, batch).await?;
        deploy.prepare(batch).await?;
        deploy.switch(batch, keep).await?;
        deploy.verify(batch, keep).await?;
        deploy.watch(batch, keep).await
    };
    before_end.await.map_err(|e| (e, BatchEnd::NotRun))?;
    let end = deploy.plan().batch_end.clone();
    let ended = deploy.fleet.execute(&end, batch).await;
    deploy.fleet.batch_out = None;
    ended.map_err(|e| (e, BatchEnd::Ran))
}

/// Whether a failed batch's hosts already ran `deploy:batch_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchEnd {
    NotRun,
    Ran,
}

/// After a batch failed: roll back what switched (unless kept), put the batch's hosts back.
async fn fail_batch(
    deploy: &mut Deploy<'_, '_>,
    batch: &[usize],
    keep: bool,
    error: Error,
    end: BatchEnd,
) -> Error {
    let fleet = &mut *deploy.fleet;
    let switched = fleet.hosts.iter().any(|h| h.switched_from.is_some());
    if switched && !keep {
        let reasons: Vec<(String, String)> = fleet
            .hosts
            .iter()
            .filter_map(|h| Some((h.host.name.clone(), h.failure.as_ref()?.after_host())))
            .collect();
        let everyone: Vec<usize> = (0..fleet.hosts.len()).collect();
        if let Err(inconsistent) = fleet.roll_back_switched(&reasons, &everyone).await {
            return inconsistent;
        }
    }
    if end == BatchEnd::NotRun {
        let hooks = deploy.plan().batch_end.clone();
        let _ = deploy.fleet.execute_regardless(&hooks, batch).await;
    }
    deploy.fleet.batch_out = None;
    error
}
