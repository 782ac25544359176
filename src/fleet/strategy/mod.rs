//! Deploy strategies: in which order the fleet's hosts go through the deploy's phases. Each is a
//! type of its own in its own file; a new strategy is a new file and a variant here.

mod all;
mod batches;
mod canary;
mod rolling;

pub use all::All;
pub use canary::Canary;
pub use rolling::Rolling;

use crate::error::Result;

use super::deploy::Deploy;
use super::Fleet;

pub enum Strategy {
    All(All),
    Rolling(Rolling),
    Canary(Canary),
}

impl Strategy {
    /// `--canary`, else `--rolling N` or the stage's `rolling`, else every host at once.
    pub fn choose(fleet: &Fleet<'_>) -> Strategy {
        let hosts = fleet.hosts.len();
        let options = fleet.ctx.options;
        if options.canary && hosts > 1 {
            return Strategy::Canary(Canary);
        }
        let stage_rolling = fleet
            .hosts
            .first()
            .and_then(|h| h.host.stage.as_ref())
            .and_then(|stage| fleet.ctx.project.stages.get(stage))
            .and_then(|stage| stage.rolling);
        match options.rolling.or(stage_rolling) {
            Some(size) if size.max(1) < hosts => Strategy::Rolling(Rolling { size: size.max(1) }),
            _ => Strategy::All(All),
        }
    }

    pub async fn run(&self, deploy: &mut Deploy<'_, '_>) -> Result<()> {
        match self {
            Strategy::All(all) => all.run(deploy).await,
            Strategy::Rolling(rolling) => rolling.run(deploy).await,
            Strategy::Canary(canary) => canary.run(deploy).await,
        }
    }
}
