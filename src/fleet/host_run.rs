//! One selected host during a run: its variables, its transport, what it holds (the lock), where
//! its links pointed before this run switched it, and its first failure.

use std::sync::Arc;

use crate::config::host::Host;
use crate::config::project::Project;
use crate::config::vars::{environment_layer, override_layer, Layer, Vars};
use crate::error::{Error, Result, StepFailure};
use crate::health::HealthCheck;
use crate::release::HostState;
use crate::transport::ssh::Starts;
use crate::transport::{self, Backend};

use super::Options;

/// Where `current` and `previous` pointed (release names; None: the link did not exist).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    pub current: Option<String>,
    pub previous: Option<String>,
}

pub struct HostRun {
    pub host: Host,
    pub vars: Vars,
    pub backend: Backend,
    pub deploy_path: String,
    pub state: HostState,
    /// This run holds the host's deploy lock.
    pub locked: bool,
    /// The first failure on this host; later steps do not run on it.
    pub failure: Option<StepFailure>,
    /// Set once this run switched the host: where its links pointed before.
    pub switched_from: Option<Links>,
    /// The switch was sent to this host: its release may have gone live, so a failure keeps it.
    pub switch_sent: bool,
    /// The global health checks and those of the host's stage.
    pub checks: Vec<Arc<HealthCheck>>,
    /// Locked by the run, but no release goes here (a blue-green deploy's routers and standby).
    pub bystander: bool,
    /// A blue-green router whose last `traffic:switch` of this run failed: where it sends the
    /// traffic is unknown (`state.live_color` is what it last recorded).
    pub routing_unknown: bool,
}

impl HostRun {
    pub fn new(
        project: &Project,
        host: &Host,
        options: &Options,
        starts: &Starts,
    ) -> Result<HostRun> {
        let mut vars = host_vars(project, host, options)?;
        let deploy_path = deploy_path(host, &vars)?;
        if options.dry_run {
            vars.set_placeholders(true);
        }
        let real = if host.local {
            Backend::Local(transport::local::Local)
        } else {
            // Resolves the ssh config only: the connection is made on first use.
            Backend::Ssh(
                transport::ssh::Ssh::for_host(host, &vars, starts).map_err(|error| {
                    // A bad variable is named with where it was set, as `dep config` does.
                    let message = match &error {
                        transport::ssh::SetupError::ConnectTimeout { var, reason } => {
                            format!("`{var}` (from {}): {reason}", vars.origin(var))
                        }
                        _ => error.to_string(),
                    };
                    Error::InvalidHost {
                        host: host.name.clone(),
                        message,
                    }
                })?,
            )
        };
        let backend = if options.dry_run {
            Backend::DryRun(transport::dry_run::DryRun {
                reads: Some(Box::new(real)),
            })
        } else {
            real
        };
        Ok(HostRun {
            host: host.clone(),
            vars,
            backend,
            deploy_path,
            state: HostState::default(),
            locked: false,
            failure: None,
            switched_from: None,
            switch_sent: false,
            checks: health_checks(project, host)?,
            bystander: false,
            routing_unknown: false,
        })
    }

    /// This machine standing in for `first` (a `local` task): its variables, and a transport of
    /// its own, so its dynamic variables are evaluated here, where the task runs.
    pub fn controller(first: &HostRun, dry_run: bool) -> HostRun {
        HostRun {
            host: Host {
                name: "local".into(),
                ..first.host.clone()
            },
            vars: first.vars.clone(),
            backend: if dry_run {
                Backend::DryRun(transport::dry_run::DryRun::default())
            } else {
                Backend::Local(transport::local::Local)
            },
            deploy_path: first.deploy_path.clone(),
            state: first.state.clone(),
            locked: false,
            failure: None,
            switched_from: first.switched_from.clone(),
            switch_sent: first.switch_sent,
            checks: Vec::new(),
            bystander: false,
            routing_unknown: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.host.name
    }

    /// Healthy so far: later steps run here.
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }

    /// Keep the first failure: it is the cause, what follows is consequence. A failure for
    /// want of disk space says where the disk is full.
    pub fn record(&mut self, mut failure: StepFailure) {
        if self.failure.is_none() {
            if super::failure::ran_out_of_space(&failure) {
                failure.disk_full = Some(self.deploy_path.clone());
            }
            self.failure = Some(failure);
        }
    }

    /// The release and the previous one for templates: `release_name`, `previous_release`.
    pub fn set_release(&mut self, release: &str, previous: &str) {
        self.vars.set("release_name", release.to_string());
        self.vars.set("previous_release", previous.to_string());
    }
}

/// Build a host's variables: SPEC's layers, then the values dep provides.
pub fn host_vars(project: &Project, host: &Host, options: &Options) -> Result<Vars> {
    let mut layers: Vec<Layer> = project.file_layers.clone();
    if let Some(stage) = &host.stage {
        if let Some(config) = project.stages.get(stage) {
            layers.push(Layer::new(format!("stage {stage}"), config.config.clone()));
        }
    }
    layers.push(Layer::new(
        format!("host {}", host.name),
        host.config.clone(),
    ));
    layers.push(environment_layer(std::env::vars()));
    layers.push(override_layer(&options.overrides)?);
    let mut vars = Vars::layered(&layers).map_err(|error| Error::Config {
        path: project.deployfile.clone(),
        message: error.to_string(),
    })?;
    // Set by dep itself (SET_BY_DEP), above every layer.
    vars.set("host", host.name.clone());
    vars.set("hostname", host.hostname.clone());
    vars.set("user", host.login_user());
    vars.set("stage", host.stage.clone().unwrap_or_default());
    vars.set("roles", host.roles.clone());
    vars.set("local_user", crate::config::local::local_user());
    vars.set("deployfile_dir", project.root.display().to_string());
    vars.set("release_name", "");
    vars.set("previous_release", "");
    vars.set("revision", "");
    if let Some(branch) = &options.branch {
        vars.set("branch", branch.clone());
    }
    Ok(vars)
}

/// The variables dep sets for each host after layering (and `target_color`, `target_hosts` for
/// `traffic:switch`): no layer, `-o` included, changes them.
const SET_BY_DEP: &[&str] = &[
    "host",
    "hostname",
    "user",
    "stage",
    "roles",
    "local_user",
    "deployfile_dir",
    "release_name",
    "previous_release",
    "revision",
    "target_color",
    "target_hosts",
];

/// What is likely wrong with the `-o` overrides (a warning each; the run goes on): a variable
/// dep sets itself, or a name nothing defines that is close to one something does.
pub fn override_warnings(project: &Project, overrides: &[String]) -> Vec<String> {
    let Ok(layer) = crate::config::vars::override_layer(overrides) else {
        return Vec::new();
    };
    let defined: std::collections::BTreeSet<&str> = project
        .file_layers
        .iter()
        .flat_map(|l| l.values.keys())
        .chain(project.stages.values().flat_map(|s| s.config.keys()))
        .chain(project.hosts.iter().flat_map(|h| h.config.keys()))
        .map(String::as_str)
        .collect();
    let mut warnings = Vec::new();
    for name in layer.values.keys() {
        if SET_BY_DEP.contains(&name.as_str()) {
            warnings.push(format!(
                "`-o {name}=…` changes nothing: dep sets `{name}` itself for each host"
            ));
        } else if !defined.contains(name.as_str()) {
            let known = defined.iter().copied().chain(SET_BY_DEP.iter().copied());
            if let Some(close) = crate::suggestion::suggest(name, known) {
                warnings.push(format!(
                    "`-o {name}=…`: no recipe or Deployfile defines `{name}`; did you mean `{close}`?"
                ));
            }
        }
    }
    warnings
}

/// Render and check `deploy_path`: absolute, not `/`, no `..`.
fn deploy_path(host: &Host, vars: &Vars) -> Result<String> {
    let invalid = |message: String| Error::InvalidHost {
        host: host.name.clone(),
        message,
    };
    match vars.get("deploy_path") {
        None => {
            return Err(invalid(
                "`deploy_path` is not set: give it in `[config]` (e.g. `deploy_path = \"/var/www/{{ application }}\"`) \
                 or in the host's `config`"
                    .into(),
            ))
        }
        Some(crate::config::vars::Var::Dynamic(_)) => {
            return Err(invalid(
                "`deploy_path` cannot be dynamic (`{ run = … }`): dep needs it before it runs anything on the host"
                    .into(),
            ))
        }
        Some(_) => {}
    }
    let path = vars
        .value_string("deploy_path")
        .map_err(|e| invalid(format!("`deploy_path`: {e}")))?;
    normal_deploy_path(&path).map_err(invalid)
}

/// `path` without empty and `.` parts (`/var//www/./shop/` is `/var/www/shop`), refused when
/// relative, when it names `/` (`/.` too) or when it has a `..` part: a deploy path is where dep
/// creates, links and deletes.
fn normal_deploy_path(path: &str) -> std::result::Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "`deploy_path` must be an absolute path, not `{path}`"
        ));
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err(format!(
            "`deploy_path` must not be `/` or contain `..` (got `{path}`)"
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The global health checks, then those of the host's stage.
fn health_checks(project: &Project, host: &Host) -> Result<Vec<Arc<HealthCheck>>> {
    let stage_checks = host
        .stage
        .as_ref()
        .and_then(|stage| project.stages.get(stage))
        .map(|stage| stage.health.as_slice())
        .unwrap_or_default();
    project
        .health
        .iter()
        .chain(stage_checks)
        .enumerate()
        .map(|(index, (raw, file))| Ok(Arc::new(HealthCheck::from_raw(raw, file, index)?)))
        .collect()
}

/// The pacing of the run's SSH connection set-ups, from `max_concurrent_starts` as the first
/// host's variables say (a whole number, at least 1).
pub fn starts(project: &Project, first: Option<&Host>, options: &Options) -> Result<Starts> {
    let Some(host) = first else {
        return Ok(Starts::unlimited());
    };
    let vars = host_vars(project, host, options)?;
    if vars.get(Starts::VAR).is_none() {
        return Ok(Starts::unlimited());
    }
    let invalid = |message: String| Error::Config {
        path: project.deployfile.clone(),
        message,
    };
    let text = vars
        .value_string(Starts::VAR)
        .map_err(|e| invalid(e.to_string()))?;
    match text.trim().parse::<usize>() {
        Ok(limit) if limit >= 1 => Ok(Starts::new(limit)),
        _ => Err(invalid(format!(
            "`{}` must be a whole number of at least 1, not `{text}`",
            Starts::VAR
        ))),
    }
}

#[cfg(test)]
mod deploy_path_tests {
    use super::normal_deploy_path;

    #[test]
    fn a_deploy_path_is_absolute_normal_and_never_the_root() {
        assert_eq!(
            normal_deploy_path("/var/www/shop").unwrap(),
            "/var/www/shop"
        );
        assert_eq!(
            normal_deploy_path("/var//www/./shop/").unwrap(),
            "/var/www/shop"
        );
        for bad in [
            "/",
            "//",
            "/.",
            "/./",
            "/tmp/..",
            "/var/../etc",
            "var/www",
            "",
            "./x",
        ] {
            assert!(normal_deploy_path(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
