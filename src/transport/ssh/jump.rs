//! `ProxyJump`: each jump host of a chain, parsed from its spec and resolved against the ssh
//! configuration like a host of its own, taking what it does not say from the target.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::{
    configured_identities, default_global_known_hosts, default_user_known_hosts, expand_files,
    with_defaults, ConfigError, ConfigFiles, Settings, Tokens, DEFAULT_PORT,
};

/// What a jump host takes from the host it leads to when its own configuration is silent.
pub(super) struct JumpDefaults<'a> {
    pub(super) identity_file: Option<&'a Path>,
    pub(super) known_hosts: &'a [PathBuf],
    pub(super) accept_new: bool,
    pub(super) connect_timeout: Duration,
    pub(super) keepalive_interval: Duration,
    pub(super) keepalive_max: usize,
}

/// A `ProxyJump` entry: `[user@]host[:port]` or `ssh://[user@]host[:port]`, looked up in the
/// configuration like a host of its own (its own `ProxyJump` is not followed: the chain is the
/// one written for the target).
pub(super) fn resolve_jump(
    spec: &str,
    config: &ConfigFiles,
    home: &Path,
    local_user: &str,
    defaults: JumpDefaults<'_>,
) -> Result<Settings, ConfigError> {
    let (spec_user, alias, spec_port) = parse_jump(spec).ok_or_else(|| ConfigError::ProxyJump {
        spec: spec.to_string(),
    })?;
    let params = config.query(&alias);
    let hostname = params
        .host_name()
        .map(|h| h.replace("%h", &alias).replace("%%", "%"))
        .unwrap_or_else(|| alias.clone());
    let port = spec_port.or(params.port()).unwrap_or(DEFAULT_PORT);
    let user = spec_user
        .or_else(|| params.user().map(str::to_string))
        .unwrap_or_else(|| local_user.to_string());
    let tokens = Tokens {
        home,
        local_user,
        alias: &alias,
        hostname: &hostname,
        port,
        user: &user,
    };
    let mut identity_files = configured_identities(&params, &tokens);
    if identity_files.is_empty() {
        identity_files.extend(defaults.identity_file.map(Path::to_path_buf));
    }
    let (identity_files, default_identities) = with_defaults(identity_files, home);
    let known_hosts = match params.raw("userknownhostsfile") {
        Some(files) => expand_files(&files, &tokens),
        None if !defaults.known_hosts.is_empty() => defaults.known_hosts.to_vec(),
        None => default_user_known_hosts(home),
    };
    let global_known_hosts = match params.raw("globalknownhostsfile") {
        Some(files) => expand_files(&files, &tokens),
        None => default_global_known_hosts(),
    };
    Ok(Settings {
        name: format!("jump host `{spec}`"),
        hostname,
        port,
        user,
        identity_files,
        default_identities,
        identities_only: params.identities_only(),
        known_hosts,
        global_known_hosts,
        accept_new: params
            .strict_host_key_checking_accepts_new()
            .unwrap_or(defaults.accept_new),
        connect_timeout: defaults.connect_timeout,
        keepalive_interval: params
            .server_alive_interval()
            .unwrap_or(defaults.keepalive_interval),
        keepalive_max: params
            .server_alive_count_max()
            .unwrap_or(defaults.keepalive_max),
        jumps: Vec::new(),
    })
}

/// `[user@]host[:port]`, `[user@][v6addr]:port` or `ssh://[user@]host[:port]`.
pub(super) fn parse_jump(spec: &str) -> Option<(Option<String>, String, Option<u16>)> {
    let spec = spec.strip_prefix("ssh://").unwrap_or(spec);
    let (user, rest) = match spec.rsplit_once('@') {
        Some((user, rest)) if !user.is_empty() => (Some(user.to_string()), rest),
        Some(_) => return None,
        None => (None, spec),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) => (host.to_string(), Some(port.parse().ok()?)),
            None if after.is_empty() => (host.to_string(), None),
            None => return None,
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => {
                (host.to_string(), Some(port.parse().ok()?))
            }
            Some(_) => (rest.to_string(), None),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((user, host, port))
}
