//! Telling the team: the Deployfile's `[[notify]]` webhooks, told about this run. A webhook
//! that fails is reported as a warning and never fails the deploy.

use crate::error::{Error, Result};
use crate::notify::{self, Notice, Trigger, Webhook};
use crate::report::Event;

use super::Fleet;

impl Fleet<'_> {
    /// The webhooks, their URLs rendered with the first host's variables.
    pub(crate) fn load_webhooks(&mut self) -> Result<()> {
        let Some(first) = self.hosts.first() else {
            return Ok(());
        };
        for (raw, file) in &self.ctx.project.notify {
            let webhook = Webhook::from_raw(raw, |text| first.vars.render("notify", text))
                .map_err(|error| Error::Config {
                    path: file.clone(),
                    message: error.to_string(),
                })?;
            self.webhooks.push(webhook);
        }
        Ok(())
    }

    /// Tell the webhooks about this run's release.
    pub(crate) async fn notify(&self, trigger: Trigger, message: Option<String>) {
        self.notify_about(trigger, &self.ctx.release, message).await
    }

    /// Tell the webhooks about `release` (a rollback names the release it left).
    pub(crate) async fn notify_about(
        &self,
        trigger: Trigger,
        release: &str,
        message: Option<String>,
    ) {
        if self.webhooks.is_empty() || self.ctx.dry_run() {
            return;
        }
        let first = self.hosts.first();
        let var = |name: &str| {
            first
                .and_then(|h| h.vars.value_string(name).ok())
                .unwrap_or_default()
        };
        let reporter = self.ctx.reporter;
        let notice = Notice {
            trigger,
            application: reporter.mask(&var("application")),
            stage: var("stage"),
            release: release.to_string(),
            revision: self.ctx.revision.commit().to_string(),
            branch: self.ctx.branch.clone(),
            hosts: self.hosts.iter().map(|h| h.host.name.clone()).collect(),
            duration: (trigger != Trigger::Start).then(|| self.started.elapsed()),
            who: self.ctx.who.clone(),
            message: message.map(|m| reporter.mask(&m)),
        };
        for warning in notify::send(&self.webhooks, &notice).await {
            reporter.emit(Event::NotificationFailed { message: &warning });
        }
    }
}
