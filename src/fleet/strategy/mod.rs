//! Deploy strategies: in which order the fleet's hosts go through the deploy's phases. Each is a
//! type of its own in its own file; a new strategy is a new file and a variant here.

mod all;
mod batches;
mod blue_green;
mod canary;
mod rolling;

pub use all::All;
pub use blue_green::BlueGreen;
pub use canary::Canary;
pub use rolling::Rolling;

use crate::error::Result;

use super::phases::Deploy;
use super::Fleet;

pub enum Strategy {
    All(All),
    Rolling(Rolling),
    Canary(Canary),
    BlueGreen(BlueGreen),
}

impl Strategy {
    /// A blue-green stage deploys blue-green; else `--canary` (or the stage's `strategy =
    /// "canary"`), else `--rolling N` or the stage's `rolling`, else every host at once.
    pub fn choose(fleet: &Fleet<'_>) -> Strategy {
        if fleet.blue_green() {
            return Strategy::BlueGreen(BlueGreen);
        }
        let hosts = fleet.hosts.len();
        let options = fleet.ctx.options;
        let stage = fleet
            .hosts
            .first()
            .and_then(|h| h.host.stage.as_ref())
            .and_then(|stage| fleet.ctx.project.stages.get(stage));
        let stage_canary = stage
            .is_some_and(|s| s.strategy == Some(crate::config::deployfile::StrategyName::Canary));
        if (options.canary || stage_canary) && hosts > 1 {
            return Strategy::Canary(Canary);
        }
        // `strategy = "rolling"` without `rolling = N`: one host at a time.
        let stage_rolling = stage.and_then(|stage| {
            let named = stage.strategy == Some(crate::config::deployfile::StrategyName::Rolling);
            stage.rolling.or(named.then_some(1))
        });
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
            Strategy::BlueGreen(blue_green) => blue_green.run(deploy).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::testing::setup;
    use crate::fleet::Options;

    fn chosen(hosts: usize, stage: &str, options: Options) -> &'static str {
        let s = setup(hosts, stage);
        let selected: Vec<_> = s.project.hosts.iter().collect();
        let fleet = Fleet::new(&s.project, &s.tasks, &s.reporter, &options, selected).unwrap();
        match Strategy::choose(&fleet) {
            Strategy::All(_) => "all",
            Strategy::Rolling(Rolling { size }) => ["rolling 1", "rolling 2"][size - 1],
            Strategy::Canary(_) => "canary",
            Strategy::BlueGreen(_) => "blue-green",
        }
    }

    #[test]
    fn the_strategy_follows_the_options_then_the_stage() {
        let canary = Options {
            canary: true,
            ..Options::default()
        };
        let rolling = |n| Options {
            rolling: Some(n),
            ..Options::default()
        };
        assert_eq!(chosen(3, "", Options::default()), "all");
        assert_eq!(chosen(3, "", canary.clone()), "canary");
        assert_eq!(chosen(1, "", canary), "all", "one host has no canary");
        assert_eq!(chosen(3, "", rolling(2)), "rolling 2");
        assert_eq!(
            chosen(3, "", rolling(0)),
            "rolling 1",
            "at least one host a batch"
        );
        assert_eq!(chosen(2, "", rolling(2)), "all", "one batch is all at once");
        let stage = "[stages.test]\nrolling = 1\n";
        assert_eq!(chosen(3, stage, Options::default()), "rolling 1");
        assert_eq!(chosen(3, stage, rolling(2)), "rolling 2", "the option wins");
        let named = |strategy: &str| format!("[stages.test]\nstrategy = \"{strategy}\"\n");
        assert_eq!(
            chosen(3, &named("rolling"), Options::default()),
            "rolling 1"
        );
        assert_eq!(chosen(3, &named("canary"), Options::default()), "canary");
        assert_eq!(chosen(3, &named("all"), Options::default()), "all");
    }
}
