//! The OpenSSH client configuration files: `$DEP_SSH_CONFIG` when set (only that file, like
//! `ssh -F`), else `~/.ssh/config` then `/etc/ssh/ssh_config`, read once per process and queried
//! per host (the first value found wins, as OpenSSH does).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ssh2_config::{HostParams, ParseRule, SshConfig};

/// The environment variable naming the one ssh config file dep reads instead of the defaults.
pub const CONFIG_ENV: &str = "DEP_SSH_CONFIG";

/// `$HOME`, or `/` when it is not set.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The parsed ssh client configuration files, first file first (the first value found wins).
#[derive(Debug, Clone, Default)]
pub struct ConfigFiles {
    files: Vec<SshConfig>,
}

/// Why the ssh client configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read ssh config `{}`: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
    #[error("cannot parse ssh config `{}`: {reason}", .path.display())]
    Parse { path: PathBuf, reason: String },
    /// A configuration given as text (no file to name).
    #[error("{reason}")]
    ParseText { reason: String },
    #[error("`ProxyJump {spec}` is not [user@]host[:port]")]
    ProxyJump { spec: String },
}

impl ConfigFiles {
    /// The configuration of this process, read once: `$DEP_SSH_CONFIG`, else the user's and the
    /// system's files.
    pub fn global() -> Result<Arc<ConfigFiles>, ConfigError> {
        static GLOBAL: OnceLock<Result<Arc<ConfigFiles>, ConfigError>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let home = home_dir();
                match std::env::var_os(CONFIG_ENV) {
                    Some(path) if !path.is_empty() => {
                        ConfigFiles::load(&[PathBuf::from(path)], true, &home)
                    }
                    _ => ConfigFiles::load(
                        &[
                            home.join(".ssh/config"),
                            PathBuf::from("/etc/ssh/ssh_config"),
                        ],
                        false,
                        &home,
                    ),
                }
                .map(Arc::new)
            })
            .clone()
    }

    /// Reads `paths` in order; a missing file is an error only when `required`.
    pub fn load(paths: &[PathBuf], required: bool, home: &Path) -> Result<Self, ConfigError> {
        let mut files = Vec::new();
        for path in paths {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(e) => {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        reason: e.to_string(),
                    })
                }
            };
            files.push(parse(&text, home).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                reason: e.to_string(),
            })?);
        }
        Ok(ConfigFiles { files })
    }

    /// One configuration file's text (for tests and tools).
    #[cfg(test)]
    pub fn parse(text: &str, home: &Path) -> Result<Self, ConfigError> {
        Ok(ConfigFiles {
            files: vec![parse(text, home).map_err(|e| ConfigError::ParseText {
                reason: e.to_string(),
            })?],
        })
    }

    /// Everything the files say about `name` (matched in lower case, as `ssh` does).
    pub fn query(&self, name: &str) -> Params {
        let name = name.to_ascii_lowercase();
        let mut merged: Option<HostParams> = None;
        for file in &self.files {
            let params = file.query(&name);
            match &mut merged {
                None => merged = Some(params),
                Some(merged) => merged.overwrite_if_none(&params),
            }
        }
        Params(merged)
    }
}

fn parse(text: &str, home: &Path) -> Result<SshConfig, ssh2_config::SshParserError> {
    // ssh2-config does not know `Match`: it would apply the block's options to the `Host` block
    // before it. Turn every `Match` into a block that matches no host.
    let mut cleaned = String::with_capacity(text.len());
    for line in text.lines() {
        let keyword = line
            .trim_start()
            .split(|c: char| c.is_whitespace() || c == '=')
            .next()
            .unwrap_or("");
        if keyword.eq_ignore_ascii_case("match") {
            tracing::debug!("ssh config: `Match` blocks are not supported; ignoring `{line}`");
            cleaned.push_str("Host !* __dep_unsupported_match_block__\n");
        } else {
            cleaned.push_str(line);
            cleaned.push('\n');
        }
    }
    SshConfig::default().home_dir(home).parse(
        &mut BufReader::new(cleaned.as_bytes()),
        ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
    )
}

/// What the configuration says about one host name.
#[derive(Debug, Clone, Default)]
pub struct Params(Option<HostParams>);

impl Params {
    fn get(&self) -> Option<&HostParams> {
        self.0.as_ref()
    }

    pub fn host_name(&self) -> Option<&str> {
        self.get()?.host_name.as_deref()
    }

    pub fn user(&self) -> Option<&str> {
        self.get()?.user.as_deref()
    }

    pub fn port(&self) -> Option<u16> {
        self.get()?.port
    }

    pub fn identity_files(&self) -> Vec<PathBuf> {
        self.get()
            .and_then(|p| p.identity_file.clone())
            .unwrap_or_default()
    }

    pub fn proxy_jump(&self) -> Vec<String> {
        self.get()
            .and_then(|p| p.proxy_jump.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn connect_timeout(&self) -> Option<Duration> {
        self.get()?.connect_timeout.filter(|d| !d.is_zero())
    }

    pub fn server_alive_interval(&self) -> Option<Duration> {
        self.get()?.server_alive_interval.filter(|d| !d.is_zero())
    }

    /// An option ssh2-config keeps as raw words (`identitiesonly`, `userknownhostsfile`, …).
    pub fn raw(&self, name: &str) -> Option<Vec<String>> {
        let params = self.get()?;
        params
            .unsupported_fields
            .get(name)
            .or_else(|| params.ignored_fields.get(name))
            .cloned()
    }

    fn raw_first(&self, name: &str) -> Option<String> {
        self.raw(name)?.into_iter().next()
    }

    pub fn identities_only(&self) -> bool {
        self.raw_first("identitiesonly").is_some_and(|v| is_yes(&v))
    }

    pub fn server_alive_count_max(&self) -> Option<usize> {
        self.raw_first("serveralivecountmax")?
            .parse()
            .ok()
            .filter(|n| *n > 0)
    }

    /// `StrictHostKeyChecking`: true for `accept-new`, `no` and `off` (dep learns unknown keys
    /// then, and still refuses changed ones); false for `yes` and `ask`.
    pub fn strict_host_key_checking_accepts_new(&self) -> Option<bool> {
        let value = self
            .raw_first("stricthostkeychecking")?
            .to_ascii_lowercase();
        Some(matches!(value.as_str(), "accept-new" | "no" | "off"))
    }
}

fn is_yes(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "yes" | "true")
}
