//! A loaded project: the Deployfile and its recipes merged into hosts, stages, tasks and the
//! configuration layers variables are resolved from.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::config::deployfile::{
    Color, RawConfig, RawHealth, RawNotify, RawTask, RawWatch, StrategyName,
};
use crate::config::host::Host;
use crate::config::recipe;
use crate::config::vars::Layer;
use crate::error::{Error, Result};

/// A stage: its variables, its own health checks, and its rolling batch size.
#[derive(Debug, Clone, Default)]
pub struct Stage {
    pub config: RawConfig,
    pub health: Vec<(RawHealth, PathBuf)>,
    pub rolling: Option<usize>,
    pub strategy: Option<StrategyName>,
    /// `[stages.NAME.watch]`, with the file that declared each.
    pub watch: Vec<(RawWatch, PathBuf)>,
}

/// A task as written, with the file that defined it (the last definition wins).
#[derive(Debug, Clone)]
pub struct TaskSource {
    pub raw: RawTask,
    pub file: PathBuf,
}

#[derive(Debug)]
pub struct Project {
    pub deployfile: PathBuf,
    /// The directory of the Deployfile: relative paths (uploads, templates) start here.
    pub root: PathBuf,
    pub hosts: Vec<Host>,
    pub stages: IndexMap<String, Stage>,
    /// Health checks of every stage, with the file that declared each.
    pub health: Vec<(RawHealth, PathBuf)>,
    /// Webhooks, with the file that declared each.
    pub notify: Vec<(RawNotify, PathBuf)>,
    /// `[watch]` of every stage, with the file that declared each (recipes first).
    pub watch: Vec<(RawWatch, PathBuf)>,
    pub tasks: IndexMap<String, TaskSource>,
    /// `[config]` of each loaded file, lowest precedence first.
    pub file_layers: Vec<Layer>,
    /// Names of environment variables whose values are masked in all output.
    pub secrets: Vec<String>,
}

impl Project {
    pub fn load(deployfile: &Path) -> Result<Project> {
        let deployfile = if deployfile.is_absolute() {
            deployfile.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|d| d.join(deployfile))
                .unwrap_or_else(|_| deployfile.to_path_buf())
        };
        let sources = recipe::load(&deployfile)?;
        let mut hosts: IndexMap<String, Host> = IndexMap::new();
        let mut stages: IndexMap<String, Stage> = IndexMap::new();
        let mut health = Vec::new();
        let mut notify = Vec::new();
        let mut watch = Vec::new();
        let mut tasks: IndexMap<String, TaskSource> = IndexMap::new();
        let mut file_layers = Vec::new();
        let mut secrets = Vec::new();
        for source in sources {
            let file = source.file;
            file_layers.push(Layer::new(source.label.clone(), file.config));
            for secret in file.secrets {
                if !secrets.contains(&secret) {
                    secrets.push(secret);
                }
            }
            for (name, raw) in file.hosts {
                let base = source.path.parent().unwrap_or(Path::new("."));
                let resolve = |p: String| {
                    let p = expand_home(&p);
                    if p.is_absolute() {
                        p
                    } else {
                        base.join(p)
                    }
                };
                let host = Host {
                    hostname: raw.hostname.unwrap_or_else(|| name.clone()),
                    user: raw.user,
                    port: raw.port,
                    identity_file: raw.identity_file.map(resolve),
                    known_hosts_file: raw.known_hosts_file.map(resolve),
                    host_key_check: raw.host_key_check.unwrap_or_default(),
                    stage: raw.stage,
                    roles: raw.roles,
                    local: raw.local,
                    color: raw.color,
                    config: raw.config,
                    name: name.clone(),
                };
                hosts.insert(name, host);
            }
            for (name, raw) in file.stages {
                let stage = stages.entry(name).or_default();
                stage.config.extend(raw.config);
                stage
                    .health
                    .extend(raw.health.into_iter().map(|h| (h, source.path.clone())));
                stage.rolling = raw.rolling.or(stage.rolling);
                stage.strategy = raw.strategy.or(stage.strategy);
                stage
                    .watch
                    .extend(raw.watch.map(|w| (w, source.path.clone())));
            }
            health.extend(file.health.into_iter().map(|h| (h, source.path.clone())));
            notify.extend(file.notify.into_iter().map(|n| (n, source.path.clone())));
            watch.extend(file.watch.map(|w| (w, source.path.clone())));
            for (name, raw) in file.tasks {
                // A task defined again replaces the earlier one, keeping its place in listings.
                tasks.insert(
                    name,
                    TaskSource {
                        raw,
                        file: source.path.clone(),
                    },
                );
            }
        }
        for host in hosts.values() {
            if let Some(stage) = &host.stage {
                stages.entry(stage.clone()).or_default();
            }
        }
        let hosts: Vec<Host> = hosts.into_values().collect();
        check_colors(&deployfile, &hosts, &stages)?;
        let root = deployfile.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(Project {
            deployfile,
            root,
            hosts,
            stages,
            health,
            notify,
            watch,
            tasks,
            file_layers,
            secrets,
        })
    }

    /// Locate and load the Deployfile: `-f FILE`, else the current directory or its parents.
    pub fn discover(file: Option<&Path>) -> Result<Project> {
        let path = match file {
            // `-f DIR`: the Deployfile.toml in it.
            Some(dir)
                if dir.is_dir() && dir.join(crate::config::deployfile::FILE_NAME).is_file() =>
            {
                dir.join(crate::config::deployfile::FILE_NAME)
            }
            Some(file) => {
                if !file.is_file() {
                    let why = if file.is_dir() {
                        format!(
                            "a directory without a {}",
                            crate::config::deployfile::FILE_NAME
                        )
                    } else {
                        "no such file".to_string()
                    };
                    return Err(Error::Read {
                        path: file.to_path_buf(),
                        source: std::io::Error::new(std::io::ErrorKind::NotFound, why),
                    });
                }
                file.to_path_buf()
            }
            None => {
                let cwd = std::env::current_dir()
                    .map_err(|e| Error::Local(format!("cannot read the current directory: {e}")))?;
                crate::config::deployfile::find(&cwd)?
            }
        };
        Project::load(&path)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// A blue-green stage has hosts of both colors and at least one router (a host without a color);
/// a color anywhere else is a mistake.
fn check_colors(deployfile: &Path, hosts: &[Host], stages: &IndexMap<String, Stage>) -> Result<()> {
    let invalid = |message: String| Error::Config {
        path: deployfile.to_path_buf(),
        message,
    };
    let blue_green = |stage: &Option<String>| {
        stage
            .as_ref()
            .and_then(|s| stages.get(s))
            .is_some_and(|s| s.strategy == Some(StrategyName::BlueGreen))
    };
    for host in hosts.iter().filter(|h| h.color.is_some()) {
        if !blue_green(&host.stage) {
            return Err(invalid(format!(
                "host `{}` has a color, but its stage is not `strategy = \"blue-green\"`",
                host.name
            )));
        }
    }
    for (name, stage) in stages {
        if stage.strategy != Some(StrategyName::BlueGreen) {
            continue;
        }
        let members: Vec<&Host> = hosts
            .iter()
            .filter(|h| h.stage.as_deref() == Some(name.as_str()))
            .collect();
        for color in [Color::Blue, Color::Green] {
            if !members.iter().any(|h| h.color == Some(color)) {
                return Err(invalid(format!(
                    "blue-green stage `{name}` has no {color} host: give its app hosts `color = \"blue\"` or `color = \"green\"`"
                )));
            }
        }
        if !members.iter().any(|h| h.color.is_none()) {
            return Err(invalid(format!(
                "blue-green stage `{name}` has no router: a host of the stage without a color (e.g. `roles = [\"lb\"]`) runs `traffic:switch`"
            )));
        }
    }
    Ok(())
}

/// `~/x` becomes `$HOME/x`.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Load a Deployfile of `text`: Ok, or the error's message.
    fn loaded(text: &str) -> std::result::Result<Project, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("Deployfile.toml");
        std::fs::write(&file, text).unwrap();
        Project::load(&file).map_err(|e| e.to_string())
    }

    #[test]
    fn a_blue_green_stage_has_both_colors_and_a_router() {
        let stage = "[stages.p]\nstrategy = \"blue-green\"\n";
        let host = |name: &str, color: &str| {
            let color = if color.is_empty() {
                String::new()
            } else {
                format!("color = \"{color}\"\n")
            };
            format!("[hosts.{name}]\nlocal = true\nstage = \"p\"\n{color}")
        };
        let whole = format!(
            "{stage}{}{}{}",
            host("b", "blue"),
            host("g", "green"),
            host("lb", "")
        );
        let project = loaded(&whole).unwrap();
        assert_eq!(project.host("b").unwrap().color, Some(Color::Blue));
        assert_eq!(project.host("lb").unwrap().color, None);
        let cases = [
            (
                format!("{stage}{}{}", host("b", "blue"), host("lb", "")),
                "has no green host",
            ),
            (
                format!("{stage}{}{}", host("b", "blue"), host("g", "green")),
                "has no router",
            ),
            (
                host("b", "blue"),
                "its stage is not `strategy = \"blue-green\"`",
            ),
            (
                format!("{stage}{}", host("b", "purple")),
                "unknown variant `purple`",
            ),
        ];
        for (text, expected) in cases {
            let error = loaded(&text).err().unwrap_or_default();
            assert!(error.contains(expected), "{text}\n=> {error}");
        }
    }

    #[test]
    fn only_a_leading_tilde_slash_is_home() {
        let Some(home) = std::env::var_os("HOME") else {
            return;
        };
        let home = PathBuf::from(home);
        let cases = [
            ("~/.ssh/id", home.join(".ssh/id")),
            ("keys/id", PathBuf::from("keys/id")),
            ("/etc/id", PathBuf::from("/etc/id")),
            ("~root/id", PathBuf::from("~root/id")),
        ];
        for (path, expected) in cases {
            assert_eq!(expand_home(path), expected, "{path}");
        }
    }
}
