//! Before anything runs: every step and every health check rendered for every host, so a bad
//! template or an undefined variable is reported before the first command touches a host.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::plan::task::{Action, Builtin, Task};

use super::render::{self, Packing, RenderError};
use super::Fleet;

impl Fleet<'_> {
    pub(crate) async fn preflight(&mut self, plan: &[Arc<Task>]) -> Result<()> {
        let ctx = &self.ctx;
        for host in &mut self.hosts {
            let release = host
                .vars
                .value_string("release_name")
                .ok()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| ctx.release.clone());
            host.vars.set("release_name", release);
            // Dynamic variables are not evaluated yet: they render as placeholders here.
            host.vars.set_placeholders(true);
            // Used only by the cleanup at the end: a bad value is said now, not after the switch.
            if let Err(error @ RenderError::KeepReleases { .. }) = render::keep_releases(&host.vars)
            {
                return Err(Error::InvalidHost {
                    host: host.name().to_string(),
                    message: error.to_string(),
                });
            }
            // A `local` task may build what a later upload sends.
            let mut built_here = false;
            for task in plan.iter().filter(|t| t.applies_to(&host.host.roles)) {
                let rendered = match &task.action {
                    // Packed when first used; a missing source with no `local` task before it
                    // can only fail, so it fails now, before the lock.
                    Action::Upload { from, to } => [from, to]
                        .into_iter()
                        .try_for_each(|text| host.vars.render(&task.name, text).map(drop))
                        .map_err(RenderError::from)
                        .and_then(|()| {
                            // A dynamic variable in it renders as a placeholder here.
                            if !host.vars.dynamic_needed(from)?.is_empty() {
                                return Ok(());
                            }
                            let source = host.vars.render(&task.name, from)?;
                            let path = ctx.project.root.join(&source);
                            if built_here || path.exists() {
                                return Ok(());
                            }
                            Err(RenderError::UploadSource { from: source, path })
                        }),
                    Action::Builtin(Builtin::Lock | Builtin::Symlink | Builtin::Rollback) => Ok(()),
                    _ => match render::fetch(ctx, task, host, Packing::Skip).await {
                        Ok(fetched) => render::commands_for(ctx, task, host, &fetched).map(drop),
                        Err(error) => Err(error),
                    },
                };
                rendered.map_err(|e| template_error(task, host.name(), e))?;
                built_here |= task.local;
            }
            // Health checks render too: a typo must not surface only after the switch.
            for check in &host.checks {
                host.vars
                    .render(&check.name, check.template())
                    .map_err(|message| Error::Config {
                        path: ctx.project.deployfile.clone(),
                        message: format!(
                            "health check `{}`: host `{}`: {message}",
                            check.name, host.host.name
                        ),
                    })?;
            }
            host.vars.set_placeholders(ctx.dry_run());
        }
        Ok(())
    }
}

/// A task that does not render: pointed at the undefined variable (or the task) in its file.
fn template_error(task: &Task, host: &str, error: RenderError) -> Error {
    use crate::config::recipe;
    let location = recipe::source_text(&task.file)
        .and_then(|text| recipe::locate_in_task(&text, &task.name, error.undefined_variable()));
    Error::Template {
        file: task.file.clone(),
        task: task.name.clone(),
        message: format!("host `{host}`: {error}"),
        location,
    }
}
