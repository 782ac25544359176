//! A host as the rest of dep sees it: where it is, how to reach it, its stage, roles and config.

use std::path::PathBuf;

use crate::config::deployfile::{Color, HostKeyCheck, RawConfig};

#[derive(Debug, Clone)]
pub struct Host {
    /// The key under `[hosts]`: how the user names it.
    pub name: String,
    /// The address to connect to (default: the name; ~/.ssh/config aliases resolve later).
    pub hostname: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub host_key_check: HostKeyCheck,
    pub stage: Option<String>,
    pub roles: Vec<String>,
    /// Commands run on this machine, without SSH.
    pub local: bool,
    /// Its color in a blue-green stage; None: it routes traffic (or the stage is not blue-green).
    pub color: Option<Color>,
    pub config: RawConfig,
}

impl Host {
    /// A host called `name`, reached at that name, with nothing else configured.
    pub fn named(name: &str) -> Host {
        Host {
            name: name.to_string(),
            hostname: name.to_string(),
            user: None,
            port: None,
            identity_file: None,
            known_hosts_file: None,
            host_key_check: HostKeyCheck::default(),
            stage: None,
            roles: Vec::new(),
            local: false,
            color: None,
            config: RawConfig::new(),
        }
    }

    /// The login user: the configured one, else the local user name (as ssh does).
    pub fn login_user(&self) -> String {
        self.user
            .clone()
            .unwrap_or_else(crate::config::local::local_user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_user_is_the_configured_one_else_ours() {
        let host = |user: Option<&str>| Host {
            user: user.map(str::to_string),
            ..Host::named("web1")
        };
        assert_eq!(host(Some("deploy")).login_user(), "deploy");
        assert_eq!(host(None).login_user(), crate::config::local::local_user());
    }
}
