//! Blue-green traffic: which color a stage's routers (its hosts without a color) send the
//! traffic to, recorded in `.dep/live_color` on each of them, and the `traffic:switch` task that
//! points them at a color, forth after a deploy and back after a failure or for `dep rollback`.

use futures::future::join_all;

use crate::config::deployfile::{Color, StrategyName};
use crate::error::{Error, Result};
use crate::health::Phase;
use crate::notify::Trigger;
use crate::quote::quote;
use crate::release::Status;
use crate::report::Event;

use super::checks::CheckFailure;
use super::context::Mode;
use super::{failure, Fleet};

/// The task that points the routers at `target_color` (`target_hosts`: its hosts' hostnames).
pub(crate) const TASK: &str = "traffic:switch";

/// The traffic switch a deploy made, so that a failure after it can switch back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrafficSwitched {
    pub from: Option<Color>,
    pub to: Color,
}

impl Fleet<'_> {
    /// A selected host's stage deploys blue-green (then [`Fleet::check_blue_green`] requires
    /// that the selection is that stage alone).
    pub(crate) fn blue_green(&self) -> bool {
        self.hosts.iter().any(|h| {
            h.host
                .stage
                .as_ref()
                .and_then(|stage| self.ctx.project.stages.get(stage))
                .is_some_and(|stage| stage.strategy == Some(StrategyName::BlueGreen))
        })
    }

    /// The routers: the hosts without a color.
    pub(crate) fn routers(&self) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].host.color.is_none())
            .collect()
    }

    /// The hosts of `color`.
    pub(crate) fn of_color(&self, color: Color) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].host.color == Some(color))
            .collect()
    }

    /// A blue-green stage is worked on alone: a selection with hosts of other stages is refused.
    fn one_stage(&self) -> Result<()> {
        let mut stages: Vec<&str> = self
            .hosts
            .iter()
            .map(|h| h.host.stage.as_deref().unwrap_or("(none)"))
            .collect();
        stages.sort_unstable();
        stages.dedup();
        if stages.len() > 1 {
            return Err(Error::Usage(format!(
                "a blue-green stage is worked on alone: the selection has hosts of the stages {}; select one stage",
                stages.join(", ")
            )));
        }
        Ok(())
    }

    /// A blue-green run needs the whole stage: both colors, the routers, and `traffic:switch`.
    pub(crate) fn check_blue_green(&self) -> Result<()> {
        self.one_stage()?;
        let mut missing: Vec<&str> = Vec::new();
        if self.of_color(Color::Blue).is_empty() {
            missing.push("blue hosts");
        }
        if self.of_color(Color::Green).is_empty() {
            missing.push("green hosts");
        }
        if self.routers().is_empty() {
            missing.push("routers (hosts without a color)");
        }
        if !missing.is_empty() {
            return Err(Error::Usage(format!(
                "a blue-green stage is deployed whole: the selection has no {}; select the stage",
                missing.join(", no ")
            )));
        }
        if self.ctx.tasks.get(TASK).is_err() {
            return Err(Error::Config {
                path: self.ctx.project.deployfile.clone(),
                message: format!(
                    "a blue-green stage needs the task `{TASK}`: it points the routers at \
                     `{{{{ target_color }}}}` (`{{{{ target_hosts }}}}`: its hostnames); see docs/zero-downtime.md"
                ),
            });
        }
        Ok(())
    }

    /// The live color as the routers recorded it (read with their state); None before the
    /// first deploy. Routers that disagree stop the run.
    pub(crate) fn live_color(&self) -> Result<Option<Color>> {
        let seen: Vec<(&str, Option<Color>)> = self
            .routers()
            .into_iter()
            .map(|i| (self.hosts[i].name(), self.hosts[i].state.live_color))
            .collect();
        let first = seen.first().and_then(|(_, color)| *color);
        if seen.iter().all(|(_, color)| *color == first) {
            return Ok(first);
        }
        let each: Vec<String> = seen
            .iter()
            .map(|(host, color)| {
                let color = color.map_or("none", Color::name);
                format!("host `{host}`: {color}")
            })
            .collect();
        Err(Error::Refused(format!(
            "the routers disagree on the live color (`.dep/live_color`), nothing was changed:\n  {}",
            each.join("\n  ")
        )))
    }

    /// The hosts that serve the live release, as last read: on a blue-green stage selected with
    /// its routers, the live color's hosts (the routers serve no release, the standby not the
    /// live one); otherwise every selected host. Refused when no color is live yet.
    pub(crate) fn serving(&self) -> Result<Vec<usize>> {
        if !self.blue_green() {
            return Ok((0..self.hosts.len()).collect());
        }
        // Colors and routers are a stage's own: one stage at a time.
        self.one_stage()?;
        if self.routers().is_empty() {
            return Ok((0..self.hosts.len()).collect());
        }
        let color = self.live_color()?.ok_or_else(|| {
            Error::Refused(
                "no color of this blue-green stage is live yet (no router records one in \
                 `.dep/live_color`): deploy it first"
                    .into(),
            )
        })?;
        let serving = self.of_color(color);
        if serving.is_empty() {
            return Err(Error::Usage(format!(
                "the selection has none of the live color's hosts ({}): select the stage, or its hosts",
                color.name()
            )));
        }
        Ok(serving)
    }

    /// Point every router at `to`: `traffic:switch` with `target_color` and `target_hosts`,
    /// then `.dep/live_color` records it on each router where it succeeded, even when it failed
    /// on another: a router's record never names a color it does not send the traffic to, and
    /// one left behind makes the routers disagree (the next run stops) instead of hiding.
    pub(crate) async fn point_traffic(&mut self, from: Option<Color>, to: Color) -> Result<()> {
        // Ctrl-C waits for this to end: dropped half way, it would leave the fleet half switched.
        let _shield = self.ctx.interrupts.shield();
        let plan = self.ctx.tasks.expand(TASK)?;
        let targets: Vec<String> = self
            .of_color(to)
            .into_iter()
            .map(|i| self.hosts[i].host.hostname.clone())
            .collect();
        let routers = self.routers();
        for &i in &routers {
            let vars = &mut self.hosts[i].vars;
            vars.set("target_color", to.name());
            vars.set("target_hosts", targets.clone());
        }
        let executed = self.execute(&plan, &routers).await;
        let switched: Vec<usize> = routers
            .iter()
            .copied()
            .filter(|&i| self.hosts[i].ok())
            .collect();
        for &i in &routers {
            let h = &mut self.hosts[i];
            h.routing_unknown = !switched.contains(&i);
            if !h.routing_unknown && !self.ctx.dry_run() {
                h.state.live_color = Some(to);
            }
        }
        let reporter = self.ctx.reporter;
        let records = join_all(switched.iter().map(|&i| {
            let h = &self.hosts[i];
            let command = record_command(&h.deploy_path, Some(to));
            async move {
                let output = h.backend.change(h.name(), TASK, &command, reporter).await;
                (h.name(), command, output)
            }
        }))
        .await;
        executed?;
        let failures: Vec<_> = records
            .into_iter()
            .filter_map(|(host, command, output)| {
                let output = output.filter(|o| !o.success())?;
                Some(failure::of_capture(host, TASK, &command, &output))
            })
            .collect();
        if !failures.is_empty() {
            return Err(Error::Fleet(failures));
        }
        let hosts: Vec<String> = self
            .of_color(to)
            .into_iter()
            .map(|i| self.hosts[i].host.name.clone())
            .collect();
        reporter.emit(Event::TrafficSwitched {
            from: from.map(Color::name),
            to: to.name(),
            hosts: &hosts,
            dry_run: self.ctx.dry_run(),
        });
        Ok(())
    }

    /// Where a blue-green router sends the traffic, as this run knows it, for the report of an
    /// inconsistent fleet (None: not a router, its `current` tells).
    pub(crate) fn routing(&self, i: usize) -> Option<String> {
        let h = &self.hosts[i];
        if h.host.color.is_some() || !self.blue_green() {
            return None;
        }
        let recorded = h.state.live_color.map_or("none", Color::name);
        Some(if h.routing_unknown {
            format!(
                "routes traffic to an unknown color (its `{TASK}` failed; `.dep/live_color` says {recorded})"
            )
        } else {
            match h.state.live_color {
                Some(color) => format!("routes traffic to {color}"),
                None => "routes traffic to no color (none is live)".to_string(),
            }
        })
    }

    /// After a failure once a deploy moved the traffic: the traffic back to the color that was
    /// live (the standby, never touched), verified with its post-switch checks; exit 5 when it
    /// could not be. The idle color keeps the failed release in `current` (marked failed): it
    /// takes no traffic, and putting an older release there would serve it to the requests a
    /// router still sends it while it reloads.
    pub(crate) async fn send_traffic_back(
        &mut self,
        reasons: &[CheckFailure],
        scope: &[usize],
    ) -> Result<()> {
        let problems = self.restore_traffic().await;
        for &i in scope {
            self.hosts[i].switched_from = None;
        }
        if problems.is_empty() {
            let to = self.hosts.iter().filter(|h| h.host.color.is_some());
            let standby: Vec<String> = to
                .filter(|h| h.bystander)
                .map(|h| h.host.name.clone())
                .collect();
            self.ctx
                .reporter
                .emit(Event::RollbackVerified { hosts: &standby });
            return Ok(());
        }
        self.ctx.reporter.emit(Event::RollbackUnverified {
            release: &self.ctx.release,
            failures: reasons,
            after: &problems,
        });
        Err(self.inconsistent(named(&problems)).await)
    }

    /// The routers back to the color that was live before this deploy's traffic switch (none:
    /// they forget the live color), verified. What went wrong, if anything, host by host: a
    /// router that could not go back, a standby host that is not healthy.
    pub(crate) async fn restore_traffic(&mut self) -> Vec<CheckFailure> {
        // Ctrl-C waits for this to end: dropped half way, it would leave the fleet half switched.
        let _shield = self.ctx.interrupts.shield();
        let Some(switched) = self.traffic.take() else {
            return Vec::new();
        };
        let routers = self.routers();
        // A failed `traffic:switch` must not keep the routers from going back.
        let earlier: Vec<_> = routers
            .iter()
            .map(|&i| (i, self.hosts[i].failure.take()))
            .collect();
        let mut problems = Vec::new();
        match switched.from {
            Some(from) => match self.point_traffic(Some(switched.to), from).await {
                Ok(()) => {
                    let standby = self.of_color(from);
                    for (host, why) in self.run_checks(Phase::PostSwitch, &standby).await {
                        let why =
                            format!("traffic is back on {from}, but it is not healthy: {why}");
                        problems.push((host, why));
                    }
                }
                Err(Error::Fleet(failures)) => problems.extend(failures.iter().map(|f| {
                    let why = format!("could not be switched back to {from}: {}", f.after_host());
                    (f.host.clone(), why)
                })),
                Err(error) => problems.extend(routers.iter().map(|&i| {
                    let why = format!("could not be switched back to {from}: {error}");
                    (self.hosts[i].host.name.clone(), why)
                })),
            },
            // The first deploy: no color served before, and the next deploy goes to blue again.
            None => {
                join_all(routers.iter().map(|&i| {
                    let h = &self.hosts[i];
                    let command = record_command(&h.deploy_path, None);
                    async move { h.backend.capture(&command).await }
                }))
                .await;
                for &i in &routers {
                    self.hosts[i].state.live_color = None;
                }
            }
        }
        for (i, failure) in earlier {
            if failure.is_some() {
                self.hosts[i].failure = failure;
            }
        }
        problems
    }

    /// `dep rollback` on a blue-green stage: under the lock, the traffic back to the standby
    /// color when it holds the release that was live before (no release changes), verified with
    /// its post-switch checks; refused otherwise, changing nothing.
    pub(crate) async fn roll_back_traffic(&mut self) -> Result<()> {
        self.ctx.mode = Mode::Rollback;
        self.check_blue_green()?;
        self.load_webhooks()?;
        let interrupts = std::sync::Arc::clone(&self.ctx.interrupts);
        let reporter = self.ctx.reporter;
        let work = async {
            self.lock_all("deploy:lock").await?;
            let live = self.live_color()?.ok_or_else(|| {
                Error::Refused("rollback refused, nothing was changed: no color is live yet".into())
            })?;
            let standby = live.other();
            let (abandoned, target) = self.standby_release(live, standby)?;
            self.ctx.interrupts.check()?;
            self.traffic = Some(TrafficSwitched {
                from: Some(live),
                to: standby,
            });
            if let Err(error) = self.point_traffic(Some(live), standby).await {
                // Some routers may have switched: every one goes back to the live color.
                let problems = self.restore_traffic().await;
                if problems.is_empty() {
                    return Err(error);
                }
                return Err(self.inconsistent(named(&problems)).await);
            }
            let failures = self
                .run_checks(Phase::PostSwitch, &self.of_color(standby))
                .await;
            if !failures.is_empty() {
                // The standby is not healthy: the traffic goes back where it was, verified.
                let problems = self.restore_traffic().await;
                if !problems.is_empty() {
                    return Err(self.inconsistent(named(&problems)).await);
                }
                return Err(Error::HealthFailed {
                    release: target,
                    failures: failures
                        .iter()
                        .map(|(host, why)| format!("host `{host}`: {why}"))
                        .collect(),
                });
            }
            self.mark_rolled_back(live).await;
            self.ctx.release = target;
            Ok(abandoned)
        };
        let result = tokio::select! {
            result = work => result,
            () = interrupts.requested(reporter) => Err(Error::Interrupted),
        };
        let result = match result {
            Err(Error::Interrupted) => {
                super::interrupt::Interrupts::exit_on_next_signal();
                Err(if self.ctx.interrupts.forced() {
                    self.stopped_mid_switch().await
                } else if let Some(switched) = self.traffic {
                    Error::Local(format!(
                        "rollback interrupted after the traffic switch: the routers send the traffic to {}; \
                         its checks may not all have run",
                        switched.to.name()
                    ))
                } else {
                    Error::Local(
                        "rollback interrupted before the traffic switch: nothing was changed"
                            .into(),
                    )
                })
            }
            other => other,
        };
        self.unlock_remaining().await;
        let abandoned = result?;
        let message = format!(
            "traffic switched back to release {} by {}",
            self.ctx.release, self.ctx.who
        );
        self.notify_about(Trigger::Rollback, &abandoned, Some(message))
            .await;
        Ok(())
    }

    /// The release the live color serves and the one the standby holds, when the standby's is
    /// the release that was live before (live on it, older, not rolled back); else refused.
    fn standby_release(&self, live: Color, standby: Color) -> Result<(String, String)> {
        let refuse = |why: String| {
            Error::Refused(format!(
                "rollback refused, nothing was changed: {why}\n  \
                 (a blue-green rollback switches the traffic back to the standby color; \
                 deploy the release you want instead)"
            ))
        };
        let agreed = |color: Color| -> Result<String> {
            let currents: Vec<Option<&String>> = self
                .of_color(color)
                .into_iter()
                .map(|i| self.hosts[i].state.current.as_ref())
                .collect();
            match currents.first() {
                Some(Some(first)) if currents.iter().all(|c| *c == Some(*first)) => {
                    Ok((*first).clone())
                }
                _ => Err(refuse(format!(
                    "the {color} hosts do not all serve one release"
                ))),
            }
        };
        let abandoned = agreed(live)?;
        let target = agreed(standby)?;
        if target >= abandoned {
            return Err(refuse(format!(
                "the standby color {standby} holds release {target}, not older than the live {abandoned}"
            )));
        }
        for i in self.of_color(standby) {
            let h = &self.hosts[i];
            let status = h.state.statuses().get(target.as_str()).map(|e| e.status);
            if status != Some(Status::Live) {
                let status = status.map_or("unknown", Status::as_str);
                return Err(refuse(format!(
                    "release {target} on host `{}` ({standby}) is {status}, not live",
                    h.name()
                )));
            }
        }
        if let Some(to) = self.ctx.options.rollback_to.as_deref() {
            if to != target {
                return Err(refuse(format!(
                    "the standby color {standby} holds release {target}, not {to}"
                )));
            }
        }
        Ok((abandoned, target))
    }

    /// The release the hosts of `color` serve (and no longer take traffic for) is rolled back.
    async fn mark_rolled_back(&self, color: Color) {
        let reporter = self.ctx.reporter;
        join_all(self.of_color(color).into_iter().map(|i| {
            let h = &self.hosts[i];
            let command = self.abandoned_entry(h).append_command(&h.deploy_path);
            async move {
                h.backend
                    .change(h.name(), "rollback", &command, reporter)
                    .await
            }
        }))
        .await;
    }
}

/// Problems as the lines of an inconsistent fleet's report: ``host `lb2`: why``.
pub(crate) fn named(problems: &[CheckFailure]) -> Vec<String> {
    problems
        .iter()
        .map(|(host, why)| format!("host `{host}`: {why}"))
        .collect()
}

/// Record `color` as live in `.dep/live_color` (None: none is), atomically.
fn record_command(deploy_path: &str, color: Option<Color>) -> String {
    let dir = quote(&format!("{deploy_path}/.dep"));
    match color {
        Some(color) => format!(
            "mkdir -p {dir} && printf '%s\\n' {color} > {dir}/live_color.tmp && mv -f {dir}/live_color.tmp {dir}/live_color"
        ),
        None => format!("rm -f {dir}/live_color"),
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::fleet::testing::setup;
    use crate::fleet::{Fleet, Options};

    /// Blue is live; going to green fails on r2, going back to blue fails on r1.
    const STAGE: &str = r#"
[stages.test]
strategy = "blue-green"

[tasks."traffic:switch"]
roles = ["lb"]
run = "[ {{ (host ~ ':' ~ target_color)|quote }} != r2:green ] && [ {{ (host ~ ':' ~ target_color)|quote }} != r1:blue ]"
"#;

    #[tokio::test]
    async fn each_router_records_the_color_it_was_pointed_at_and_an_unknown_one_is_said() {
        let mut extra = String::from(STAGE);
        for (host, line) in [
            ("b1", "color = \"blue\""),
            ("g1", "color = \"green\""),
            ("r1", "roles = [\"lb\"]"),
            ("r2", "roles = [\"lb\"]"),
        ] {
            extra.push_str(&format!(
                "\n[hosts.{host}]\nlocal = true\nstage = \"test\"\n{line}\n\
                 config = {{ deploy_path = \"{{{{ deployfile_dir }}}}/hosts/{host}\" }}\n"
            ));
        }
        let s = setup(0, &extra);
        for router in ["r1", "r2"] {
            std::fs::create_dir_all(s.path(&format!("hosts/{router}/.dep"))).unwrap();
            std::fs::write(s.path(&format!("hosts/{router}/.dep/live_color")), "blue\n").unwrap();
        }
        let options = Options {
            parallel: 4,
            ..Default::default()
        };
        let hosts: Vec<_> = s.project.hosts.iter().collect();
        let mut fleet = Fleet::new(&s.project, &s.tasks, &s.reporter, &options, hosts).unwrap();
        let error = fleet.deploy().await.err().unwrap();
        let Error::Inconsistent { current, .. } = &error else {
            panic!("not inconsistent: {error}");
        };
        let routing = |host: &str| {
            current
                .iter()
                .find(|(name, _)| name == host)
                .map(|(_, points)| points.as_str())
        };
        // r1 went to green, then could not go back; r2 never left blue.
        assert_eq!(
            routing("r1"),
            Some(
                "routes traffic to an unknown color (its `traffic:switch` failed; \
                 `.dep/live_color` says green)"
            ),
            "{error}"
        );
        assert_eq!(routing("r2"), Some("routes traffic to blue"), "{error}");
        let recorded = |router: &str| {
            std::fs::read_to_string(s.path(&format!("hosts/{router}/.dep/live_color"))).unwrap()
        };
        // The routers' records disagree, so the next run stops before changing anything.
        assert_eq!(recorded("r1"), "green\n");
        assert_eq!(recorded("r2"), "blue\n");
    }
}
