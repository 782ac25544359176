//! A post-switch task that failed (a php-fpm reload, a queue restart…): by default the release
//! stays live and the deploy fails naming the hosts; with `on_post_switch_failure = "rollback"`
//! the switched hosts go back as after a failed health check (verified, exit 4).

use crate::error::{Error, Result};

use super::Fleet;

/// The variable that chooses.
const VAR: &str = "on_post_switch_failure";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnPostSwitchFailure {
    /// The release stays live; exit 1.
    #[default]
    Keep,
    /// Every switched host goes back, verified; exit 4.
    Rollback,
}

impl Fleet<'_> {
    /// The fleet's choice (the first host's setting, as for the strategy), or why it is refused.
    pub(crate) fn on_post_switch_failure(&self) -> Result<OnPostSwitchFailure> {
        let Some(host) = self.hosts.first() else {
            return Ok(OnPostSwitchFailure::Keep);
        };
        if host.vars.get(VAR).is_none() {
            return Ok(OnPostSwitchFailure::Keep);
        }
        let invalid = |message: String| Error::Config {
            path: self.ctx.project.deployfile.clone(),
            message,
        };
        let value = host
            .vars
            .value_string(VAR)
            .map_err(|e| invalid(e.to_string()))?;
        match value.trim() {
            "keep" => Ok(OnPostSwitchFailure::Keep),
            "rollback" => Ok(OnPostSwitchFailure::Rollback),
            other => Err(invalid(format!(
                "unknown `{VAR} = \"{other}\"` (use \"keep\" or \"rollback\")"
            ))),
        }
    }

    /// After the switch of some hosts, `error` ended the post-switch tasks. With `Rollback`, the
    /// switched hosts of `scope` go back, their post-switch tasks re-run and their checks verify
    /// it: the deploy then fails with exit 4 (5 if some host could not be restored). Otherwise
    /// the error stands and the release stays live.
    pub(crate) async fn post_switch_failed(
        &mut self,
        error: Error,
        scope: &[usize],
        policy: OnPostSwitchFailure,
    ) -> Error {
        let Error::Fleet(failures) = error else {
            return error;
        };
        if policy == OnPostSwitchFailure::Keep {
            return Error::Fleet(failures);
        }
        let reasons: Vec<(String, String)> = failures
            .iter()
            .map(|f| (f.host.clone(), f.after_host()))
            .collect();
        if let Err(inconsistent) = self.roll_back_switched(&reasons, scope).await {
            return inconsistent;
        }
        Error::PostSwitchFailed {
            release: self.ctx.release.clone(),
            failures,
        }
    }
}
