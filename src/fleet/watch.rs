//! The watch window across the fleet: every interval, one sample of each probe on each host,
//! all hosts at once over the transports already open; the figures so far reported; stopped
//! early once a rollback is certain; then the verdict, and for a deploy the verified rollback
//! (exit 4) or the `alert` or `normal` notice.

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::error::{Error, Result};
use crate::notify::Trigger;
use crate::report::Event;
use crate::watch::figures::{Figures, Row};
use crate::watch::verdict::{self, Verdict};
use crate::watch::{Sample, WatchProbe, Window};

use super::Fleet;

/// Extra time a sample's command gets beyond its probe's timeout (curl's own bound comes first).
const TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// What a window found: the verdict, the figures, and whether it stopped early.
pub(crate) struct Watched {
    pub verdict: Verdict,
    pub rows: Vec<Row>,
    pub stopped_early: bool,
}

/// One probe on one host, ready to sample: its command, or why it cannot run.
struct Planned<'a> {
    probe: usize,
    spec: &'a WatchProbe,
    command: std::result::Result<String, String>,
}

/// The window as this run's hosts see it: the Deployfile's `[watch]` with the first host's
/// stage's, as the command line shortens, lengthens or skips it.
pub(crate) fn window(
    project: &crate::config::project::Project,
    first: Option<&crate::config::host::Host>,
    options: &super::Options,
) -> Result<Window> {
    let stage = first
        .and_then(|h| h.stage.as_ref())
        .and_then(|stage| project.stages.get(stage));
    let layers: Vec<_> = project
        .watch
        .iter()
        .chain(stage.map(|s| s.watch.as_slice()).unwrap_or_default())
        .map(|(raw, file)| (raw, file.as_path()))
        .collect();
    let mut window = Window::resolve(&layers)?;
    if let Some(duration) = options.watch_duration {
        window.duration = duration;
    }
    if options.no_watch {
        window.duration = Duration::ZERO;
    }
    Ok(window)
}

impl Fleet<'_> {
    /// After a deploy's (or a batch's) post-switch checks: the watch window on `members`. A
    /// rollback verdict rolls back every switched host (only `members`' with `only_members`),
    /// verified as for a failed health check: exit 4. An alert or a normal window is notified.
    pub(crate) async fn watch_switch(
        &mut self,
        members: &[usize],
        only_members: bool,
    ) -> Result<()> {
        if !self.window.is_active() {
            return Ok(());
        }
        if self.ctx.dry_run() {
            self.show_probes(members);
            return Ok(());
        }
        let Some(watched) = self.watch_window(members).await else {
            return Ok(());
        };
        let breaches = worded(watched.verdict.breaches());
        let outcome = match watched.verdict {
            Verdict::RollBack(_) => "the switched hosts go back to the release they had",
            _ => "the release stays live",
        };
        self.report_verdict(&watched, outcome);
        match &watched.verdict {
            Verdict::Normal => {
                let message = notice_message(NORMAL, &watched);
                self.notify(Trigger::Normal, Some(message)).await;
                Ok(())
            }
            Verdict::Alert(_) => {
                let message = notice_message("issues detected; the release stays live", &watched);
                self.notify(Trigger::Alert, Some(message)).await;
                Ok(())
            }
            Verdict::RollBack(found) => {
                let reasons: Vec<(String, String)> = found
                    .iter()
                    .map(|b| {
                        let host = b.host.clone().unwrap_or_else(|| "(fleet)".into());
                        (host, b.to_string())
                    })
                    .collect();
                let scope: Vec<usize> = if only_members {
                    members.to_vec()
                } else {
                    (0..self.hosts.len()).collect()
                };
                self.roll_back_switched(&reasons, &scope).await?;
                Err(Error::WatchRolledBack {
                    release: self.ctx.release.clone(),
                    why: watched.verdict.why(),
                    reasons: breaches,
                })
            }
        }
    }

    /// `dep watch`: the window against what `current` serves now, changing nothing: exit 0
    /// within thresholds, 1 breached (notified `normal` or `alert`).
    pub async fn watch(&mut self) -> Result<()> {
        self.read_states().await?;
        self.load_webhooks()?;
        for host in &mut self.hosts {
            let current = host.state.current.clone().unwrap_or_default();
            host.vars.set("release_name", current);
        }
        if self.window.probes.is_empty() {
            return Err(Error::Usage(
                "no watch probes are configured (`[[watch.probe]]`)".into(),
            ));
        }
        if self.window.duration.is_zero() {
            return Err(Error::Usage(
                "the watch window is 0s long: give `--duration`".into(),
            ));
        }
        let serving = self.serving()?;
        let Some(watched) = self.watch_window(&serving).await else {
            return Ok(());
        };
        self.report_verdict(&watched, "nothing was changed");
        let live = serving
            .first()
            .and_then(|&i| self.hosts[i].state.current.clone())
            .unwrap_or_default();
        let breaches = worded(watched.verdict.breaches());
        if breaches.is_empty() {
            let message = notice_message(NORMAL, &watched);
            self.notify_about(Trigger::Normal, &live, Some(message))
                .await;
            return Ok(());
        }
        let message = notice_message("issues detected", &watched);
        self.notify_about(Trigger::Alert, &live, Some(message))
            .await;
        Err(Error::WatchBreached {
            why: watched.verdict.why(),
            reasons: breaches,
        })
    }

    fn report_verdict(&self, watched: &Watched, outcome: &str) {
        let reasons: Vec<String> = watched
            .verdict
            .breaches()
            .iter()
            .map(ToString::to_string)
            .collect();
        self.ctx.reporter.emit(Event::WatchFinished {
            verdict: watched.verdict.name(),
            why: &watched.verdict.why(),
            reasons: &reasons,
            stopped_early: watched.stopped_early,
            outcome,
            rows: &watched.rows,
        });
    }

    /// Sample every probe on the healthy hosts of `members` for the window; None when no probe
    /// applies to any of them.
    async fn watch_window(&mut self, members: &[usize]) -> Option<Watched> {
        let watched: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| self.hosts[i].ok())
            .collect();
        self.evaluate_probe_variables(&watched).await;
        let plans: Vec<(usize, Vec<Planned<'_>>)> = watched
            .iter()
            .map(|&i| (i, self.plan_probes(i)))
            .filter(|(_, plans)| !plans.is_empty())
            .collect();
        if plans.is_empty() {
            return None;
        }
        let window = &self.window;
        let reporter = self.ctx.reporter;
        let planned = window.planned();
        let host_names: Vec<String> = plans
            .iter()
            .map(|(i, _)| self.hosts[*i].host.name.clone())
            .collect();
        let probe_names: Vec<String> = window.probes.iter().map(|p| p.name.clone()).collect();
        reporter.emit(Event::WatchStarted {
            hosts: &host_names,
            probes: &probe_names,
            duration: window.duration,
            interval: window.interval,
            samples: planned,
        });
        // figures[host position][probe index]: None where the probe does not run on the host.
        let mut figures: Vec<Vec<Option<Figures>>> = plans
            .iter()
            .map(|(_, plans)| {
                (0..window.probes.len())
                    .map(|p| plans.iter().any(|x| x.probe == p).then(Figures::default))
                    .collect()
            })
            .collect();
        let started = Instant::now();
        let mut stopped_early = false;
        for number in 1..=planned {
            let samples = join_all(plans.iter().map(|(i, plans)| {
                let host = &self.hosts[*i];
                // The host's probes at once: the transport runs them side by side or in turn.
                join_all(
                    plans
                        .iter()
                        .map(|plan| async move { (plan.probe, sample(host, plan).await) }),
                )
            }))
            .await;
            for (position, taken) in samples.into_iter().enumerate() {
                for (probe, sample) in taken {
                    if let Some(f) = figures[position][probe].as_mut() {
                        f.record(&sample);
                    }
                }
            }
            let rows = rows(&window.probes, &host_names, &figures);
            let elapsed = started.elapsed();
            reporter.emit(Event::WatchSample {
                number,
                of: planned,
                elapsed,
                left: window.duration.saturating_sub(elapsed),
                rows: &rows,
            });
            let certain = figures.iter().any(|host| {
                host.iter().enumerate().any(|(p, f)| {
                    f.as_ref().is_some_and(|f| {
                        verdict::rollback_is_certain(&window.probes[p], f, planned)
                    })
                })
            });
            if certain && number < planned {
                stopped_early = true;
                break;
            }
            if number < planned {
                tokio::time::sleep_until((started + window.interval * number).into()).await;
            }
        }
        let rows = rows(&window.probes, &host_names, &figures);
        let mut breaches = Vec::new();
        for row in &rows {
            if let Some(probe) = window.probes.iter().find(|p| p.name == row.probe) {
                breaches.extend(verdict::breaches(probe, row.host.as_deref(), &row.figures));
            }
        }
        Some(Watched {
            verdict: verdict::decide(breaches),
            rows,
            stopped_early,
        })
    }

    /// The dynamic variables the probes' templates use, evaluated on each host first (a host
    /// where one fails samples nothing that needs it: those samples fail with the reason).
    async fn evaluate_probe_variables(&mut self, members: &[usize]) {
        let probes = &self.window.probes;
        let evaluations = self
            .hosts
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| members.contains(i))
            .map(|(_, host)| async move {
                let mut needed = Vec::new();
                for probe in probes.iter().filter(|p| p.applies_to(&host.host.roles)) {
                    for name in host
                        .vars
                        .dynamic_needed(probe.template())
                        .unwrap_or_default()
                    {
                        if !needed.contains(&name) {
                            needed.push(name);
                        }
                    }
                }
                let _ = host.evaluate_dynamic("watch probe", needed).await;
            });
        join_all(evaluations).await;
    }

    /// A dry run shows each host's probe commands, as it shows the health checks'.
    fn show_probes(&self, members: &[usize]) {
        let reporter = self.ctx.reporter;
        for &i in members {
            let host = self.hosts[i].name();
            for plan in self.plan_probes(i) {
                let task = format!("watch probe {}", plan.spec.name);
                let command = plan.command.unwrap_or_else(|why| why);
                reporter.emit(Event::DryRun {
                    host,
                    task: &task,
                    command: &command,
                });
            }
        }
    }

    /// The probes that run on host `i`, rendered.
    fn plan_probes(&self, i: usize) -> Vec<Planned<'_>> {
        let host = &self.hosts[i];
        let cwd = host.vars.value_string("current_path").unwrap_or_default();
        self.window
            .probes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.applies_to(&host.host.roles))
            .map(|(index, spec)| Planned {
                probe: index,
                spec,
                command: host
                    .vars
                    .render(&spec.name, spec.template())
                    .map(|rendered| spec.command(&rendered, &cwd, &host.deploy_path))
                    .map_err(|e| format!("watch probe `{}`: {e}", spec.name)),
            })
            .collect()
    }
}

/// Breaches named one by one in an error or a notice; the rest are counted (every one is in
/// `watch_finished`).
const BREACHES_NAMED: usize = 10;

/// The breaches in words, what decided first, at most `BREACHES_NAMED` of them.
fn worded(breaches: &[crate::watch::verdict::Breach]) -> Vec<String> {
    let mut words: Vec<String> = breaches
        .iter()
        .take(BREACHES_NAMED)
        .map(ToString::to_string)
        .collect();
    if breaches.len() > BREACHES_NAMED {
        words.push(format!(
            "and {} more breaches",
            breaches.len() - BREACHES_NAMED
        ));
    }
    words
}

/// The first line of a `normal` notice.
const NORMAL: &str = "all systems normal: every watch probe stayed within its thresholds";

/// What a notification of the window says: `head`, the breaches that decided, then the fleet's
/// figures per probe.
fn notice_message(head: &str, watched: &Watched) -> String {
    let mut lines = vec![head.to_string()];
    lines.extend(worded(watched.verdict.breaches()));
    lines.extend(
        watched
            .rows
            .iter()
            .filter(|row| row.host.is_none())
            .map(|row| row.summary()),
    );
    lines.join("\n")
}

/// One sample of `plan` on `host`, bounded by the probe's timeout whatever the command does.
async fn sample(host: &super::HostRun, plan: &Planned<'_>) -> Sample {
    let started = Instant::now();
    let command = match &plan.command {
        Ok(command) => command,
        Err(why) => {
            return Sample {
                error: Some(why.clone()),
                latency: Duration::ZERO,
                value: None,
            }
        }
    };
    let limit = plan.spec.timeout + TIMEOUT_GRACE;
    match tokio::time::timeout(limit, host.backend.capture(command)).await {
        Ok(output) => plan.spec.judge(
            output.status,
            &output.stdout,
            &output.stderr,
            started.elapsed(),
        ),
        Err(_) => Sample {
            error: Some(format!(
                "timed out after {}",
                crate::transport::human_duration(plan.spec.timeout)
            )),
            latency: started.elapsed(),
            value: None,
        },
    }
}

/// Per probe: a row per host where it runs, then the fleet's row.
fn rows(
    probes: &[std::sync::Arc<WatchProbe>],
    hosts: &[String],
    figures: &[Vec<Option<Figures>>],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (p, probe) in probes.iter().enumerate() {
        let mine: Vec<(&String, &Figures)> = hosts
            .iter()
            .zip(figures)
            .filter_map(|(host, f)| Some((host, f[p].as_ref()?)))
            .collect();
        if mine.is_empty() {
            continue;
        }
        for (host, f) in &mine {
            rows.push(Row {
                probe: probe.name.clone(),
                host: Some((*host).clone()),
                figures: (*f).clone(),
            });
        }
        rows.push(Row {
            probe: probe.name.clone(),
            host: None,
            figures: Figures::merged(mine.iter().map(|(_, f)| *f)),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::fleet::testing::setup;
    use crate::fleet::Options;

    const TWO_LAYERS: &str = "[watch]\nduration = \"5m\"\n[[watch.probe]]\nname = \"a\"\ncommand = \"true\"\n\
         [stages.test.watch]\nduration = \"2s\"\n[[stages.test.watch.probe]]\nname = \"b\"\ncommand = \"true\"\n";

    #[test]
    fn the_stage_sets_its_own_window_and_adds_its_probes() {
        let s = setup(1, TWO_LAYERS);
        let first = s.project.hosts.first();
        let window = super::window(&s.project, first, &Options::default()).unwrap();
        assert_eq!(window.duration, Duration::from_secs(2));
        assert_eq!(window.interval, crate::watch::DEFAULT_INTERVAL);
        let names: Vec<&str> = window.probes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let longer = Options {
            watch_duration: Some(Duration::from_secs(60)),
            ..Options::default()
        };
        let window = super::window(&s.project, first, &longer).unwrap();
        assert_eq!(window.duration, Duration::from_secs(60));
        let none = Options {
            no_watch: true,
            ..Options::default()
        };
        assert!(!super::window(&s.project, first, &none).unwrap().is_active());
    }
}
