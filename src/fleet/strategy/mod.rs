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

use crate::config::deployfile::StrategyName;
use crate::error::{Error, Result};

use super::phases::Deploy;
use super::Fleet;

pub enum Strategy {
    All(All),
    Rolling(Rolling),
    Canary(Canary),
    BlueGreen(BlueGreen),
}

impl Strategy {
    /// `--strategy` or the stage's `strategy`; `--canary` and `--rolling N` (or the stage's
    /// `rolling`) as before; else every host at once. Blue-green is a stage's nature (its hosts
    /// have colors): `--strategy` neither makes a stage blue-green nor unmakes one.
    pub fn choose(fleet: &Fleet<'_>) -> Result<Strategy> {
        let options = fleet.ctx.options;
        let blue_green = fleet.blue_green();
        match options.strategy {
            Some(StrategyName::BlueGreen) if !blue_green => {
                return Err(Error::Usage(
                    "`--strategy blue-green` needs a blue-green stage: `strategy = \"blue-green\"` \
                     in its [stages.NAME] table and a `color` on each of its app hosts"
                        .into(),
                ))
            }
            Some(other) if blue_green && other != StrategyName::BlueGreen => {
                return Err(Error::Usage(format!(
                    "the stage is blue-green (its hosts have colors): `--strategy {}` cannot deploy it",
                    other.name()
                )))
            }
            _ => {}
        }
        if blue_green {
            return Ok(Strategy::BlueGreen(BlueGreen));
        }
        let hosts = fleet.hosts.len();
        let stage = fleet
            .hosts
            .first()
            .and_then(|h| h.host.stage.as_ref())
            .and_then(|stage| fleet.ctx.project.stages.get(stage));
        // The command line's choice, then the stage's.
        let named = options
            .strategy
            .or(options.canary.then_some(StrategyName::Canary))
            .or(options.rolling.map(|_| StrategyName::Rolling))
            .or(stage.and_then(|s| s.strategy))
            .or(stage.and_then(|s| s.rolling).map(|_| StrategyName::Rolling))
            .unwrap_or_default();
        let strategy = match named {
            StrategyName::Canary if hosts > 1 => Strategy::Canary(Canary),
            StrategyName::Rolling => {
                // `strategy = "rolling"` without a size: one host at a time.
                let size = options
                    .rolling
                    .or(stage.and_then(|s| s.rolling))
                    .unwrap_or(1)
                    .max(1);
                if size < hosts {
                    Strategy::Rolling(Rolling { size })
                } else {
                    Strategy::All(All)
                }
            }
            _ => Strategy::All(All),
        };
        Ok(strategy)
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
        match Strategy::choose(&fleet).unwrap() {
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
        let strategy = |name| Options {
            strategy: Some(name),
            ..Options::default()
        };
        assert_eq!(
            chosen(3, stage, strategy(StrategyName::All)),
            "all",
            "--strategy all wins over the stage's rolling"
        );
        assert_eq!(chosen(3, "", strategy(StrategyName::Rolling)), "rolling 1");
        assert_eq!(
            chosen(3, &named("rolling"), strategy(StrategyName::Canary)),
            "canary"
        );
    }
}
