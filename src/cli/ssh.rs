//! `dep ssh HOST`: this process becomes an interactive shell in the host's current release.

use std::os::unix::process::CommandExt as _;

use crate::cli::Session;
use crate::config::deployfile::HostKeyCheck;
use crate::error::{Error, Result};
use crate::fleet::host_vars;
use crate::quote::quote;

/// `dep ssh HOST`: replace this process with an interactive shell in the host's current release.
pub fn ssh(session: &Session<'_>, name: Option<String>) -> Result<()> {
    let project = session.project;
    let host = match &name {
        Some(name) => project.host(name),
        None if project.hosts.len() == 1 => project.hosts.first(),
        None => None,
    };
    let Some(host) = host else {
        return Err(Error::NoHostMatches {
            selector: name.unwrap_or_else(|| "(no host given)".into()),
            hint: None,
            hosts: project.hosts.iter().map(|h| h.name.clone()).collect(),
            stages: project.stages.keys().cloned().collect(),
        });
    };
    let vars = host_vars(project, host, &session.options)?;
    let current = vars
        .value_string("current_path")
        .map_err(|error| Error::Config {
            path: project.deployfile.clone(),
            message: error.to_string(),
        })?;
    let shell = format!("cd {} && exec \"${{SHELL:-bash}}\" -l", quote(&current));
    let mut command = if host.local {
        let mut command = std::process::Command::new("bash");
        command.arg("-c").arg(&shell);
        command
    } else {
        let mut command = std::process::Command::new("ssh");
        command.arg("-t");
        if let Some(port) = host.port {
            command.arg("-p").arg(port.to_string());
        }
        if let Some(identity) = &host.identity_file {
            command.arg("-i").arg(identity);
        }
        if let Some(known_hosts) = &host.known_hosts_file {
            command
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known_hosts.display()));
        }
        if host.host_key_check == HostKeyCheck::AcceptNew {
            command.arg("-o").arg("StrictHostKeyChecking=accept-new");
        }
        let target = match &host.user {
            Some(user) => format!("{user}@{}", host.hostname),
            None => host.hostname.clone(),
        };
        command.arg(target).arg(&shell);
        command
    };
    let error = command.exec();
    Err(Error::Local(format!(
        "cannot start a shell for host `{}`: {error}",
        host.name
    )))
}
