//! Where and how to reach an SSH host: the Deployfile's host entry, over the OpenSSH client
//! configuration, over defaults. The result ([`Settings`]) is plain data, resolved once per host
//! before anything touches the network.
//!
//! The configuration is `$DEP_SSH_CONFIG` when set (only that file, like `ssh -F`), else
//! `~/.ssh/config` then `/etc/ssh/ssh_config`. Understood: `Host` patterns (`*`, `?`, `!negation`),
//! `Include`, `HostName` (with `%h`), `User`, `Port`, `IdentityFile`, `IdentitiesOnly`,
//! `ProxyJump`, `UserKnownHostsFile`, `GlobalKnownHostsFile`, `StrictHostKeyChecking`,
//! `ConnectTimeout`, `ServerAliveInterval`, `ServerAliveCountMax`. `Match` blocks are not
//! supported: their options are ignored (never applied to the wrong hosts).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ssh_config::Params;
pub use super::ssh_config::{home_dir, ConfigError, ConfigFiles};
use crate::config::deployfile::HostKeyCheck;
use crate::config::host::Host;

/// The dep variable that bounds connecting (TCP, SSH handshake, each authentication step, and
/// opening a channel): a duration such as `5`, `"5s"` or `"500ms"`.
pub const CONNECT_TIMEOUT_VAR: &str = "connect_timeout";

pub const DEFAULT_PORT: u16 = 22;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
pub const DEFAULT_KEEPALIVE_MAX: usize = 3;

/// OpenSSH's default identities, tried when none is configured.
const DEFAULT_IDENTITIES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// How one hop (the host itself, or a jump host on the way) is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How dep names it in messages: the host's name under `[hosts]`, or the jump spec.
    pub name: String,
    /// The address to connect to (after `HostName`).
    pub hostname: String,
    pub port: u16,
    pub user: String,
    /// Key files to try after the agent, in order.
    pub identity_files: Vec<PathBuf>,
    /// True when `identity_files` are OpenSSH's defaults (a missing one is skipped quietly).
    pub default_identities: bool,
    /// Offer only agent keys that match `identity_files` (`IdentitiesOnly yes`).
    pub identities_only: bool,
    /// The user's known_hosts files; a key learned with accept-new goes to the first one.
    pub known_hosts: Vec<PathBuf>,
    /// Read after `known_hosts`, never written.
    pub global_known_hosts: Vec<PathBuf>,
    /// Learn the key of a host that has none recorded (never a changed one).
    pub accept_new: bool,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_max: usize,
    /// Jump hosts to go through, first hop first (`ProxyJump`).
    pub jumps: Vec<Settings>,
}

impl Settings {
    /// `127.0.0.2:2222`, or `[::1]:22`.
    pub fn address(&self) -> String {
        if self.hostname.contains(':') {
            format!("[{}]:{}", self.hostname, self.port)
        } else {
            format!("{}:{}", self.hostname, self.port)
        }
    }

    /// Every known_hosts file to check, in order.
    pub fn known_hosts_files(&self) -> Vec<PathBuf> {
        self.known_hosts
            .iter()
            .chain(&self.global_known_hosts)
            .cloned()
            .collect()
    }
}

/// The values `%` tokens expand to in paths.
struct Tokens<'a> {
    home: &'a Path,
    local_user: &'a str,
    alias: &'a str,
    hostname: &'a str,
    port: u16,
    user: &'a str,
}

impl Tokens<'_> {
    /// OpenSSH's `%d %u %n %h %p %r %%` and a leading `~`.
    fn expand(&self, text: &str) -> PathBuf {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('d') => out.push_str(&self.home.display().to_string()),
                Some('u') => out.push_str(self.local_user),
                Some('n') => out.push_str(self.alias),
                Some('h') => out.push_str(self.hostname),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('r') => out.push_str(self.user),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        if out == "~" {
            return self.home.to_path_buf();
        }
        match out.strip_prefix("~/") {
            Some(rest) => self.home.join(rest),
            None => PathBuf::from(out),
        }
    }
}

/// Resolve how to reach `host`. `connect_timeout` is dep's own setting (the `connect_timeout`
/// variable), which wins over `ConnectTimeout`.
pub fn resolve(
    host: &Host,
    config: &ConfigFiles,
    home: &Path,
    local_user: &str,
    connect_timeout: Option<Duration>,
) -> Result<Settings, ConfigError> {
    let alias = host.hostname.as_str();
    let params = config.query(alias);
    let hostname = params
        .host_name()
        .map(|h| h.replace("%h", alias).replace("%%", "%"))
        .unwrap_or_else(|| alias.to_string());
    let port = host.port.or(params.port()).unwrap_or(DEFAULT_PORT);
    let user = host
        .user
        .clone()
        .or_else(|| params.user().map(str::to_string))
        .unwrap_or_else(|| local_user.to_string());
    let tokens = Tokens {
        home,
        local_user,
        alias,
        hostname: &hostname,
        port,
        user: &user,
    };
    let mut identity_files: Vec<PathBuf> = host.identity_file.iter().cloned().collect();
    identity_files.extend(configured_identities(&params, &tokens));
    let (identity_files, default_identities) = with_defaults(identity_files, home);

    let user_known = params.raw("userknownhostsfile");
    let known_hosts = match &host.known_hosts_file {
        Some(file) => vec![file.clone()],
        None => match &user_known {
            Some(files) => expand_files(files, &tokens),
            None => default_user_known_hosts(home),
        },
    };
    let global_known_hosts = match params.raw("globalknownhostsfile") {
        Some(files) => expand_files(&files, &tokens),
        None => default_global_known_hosts(),
    };
    let accept_new = host.host_key_check == HostKeyCheck::AcceptNew
        || params
            .strict_host_key_checking_accepts_new()
            .unwrap_or(false);
    let connect_timeout = connect_timeout
        .or(params.connect_timeout())
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let keepalive_interval = params
        .server_alive_interval()
        .unwrap_or(DEFAULT_KEEPALIVE_INTERVAL);
    let keepalive_max = params
        .server_alive_count_max()
        .unwrap_or(DEFAULT_KEEPALIVE_MAX);

    let mut jumps = Vec::new();
    let specs = params.proxy_jump();
    if !(specs.len() == 1 && specs[0].eq_ignore_ascii_case("none")) {
        for spec in &specs {
            jumps.push(resolve_jump(
                spec,
                config,
                home,
                local_user,
                JumpDefaults {
                    identity_file: host.identity_file.as_deref(),
                    known_hosts: &known_hosts,
                    accept_new: host.host_key_check == HostKeyCheck::AcceptNew,
                    connect_timeout,
                    keepalive_interval,
                    keepalive_max,
                },
            )?);
        }
    }

    Ok(Settings {
        name: host.name.clone(),
        hostname,
        port,
        user,
        identity_files,
        default_identities,
        identities_only: params.identities_only(),
        known_hosts,
        global_known_hosts,
        accept_new,
        connect_timeout,
        keepalive_interval,
        keepalive_max,
        jumps,
    })
}

/// What a jump host takes from the host it leads to when its own configuration is silent.
struct JumpDefaults<'a> {
    identity_file: Option<&'a Path>,
    known_hosts: &'a [PathBuf],
    accept_new: bool,
    connect_timeout: Duration,
    keepalive_interval: Duration,
    keepalive_max: usize,
}

/// A `ProxyJump` entry: `[user@]host[:port]` or `ssh://[user@]host[:port]`, looked up in the
/// configuration like a host of its own (its own `ProxyJump` is not followed: the chain is the
/// one written for the target).
fn resolve_jump(
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
fn parse_jump(spec: &str) -> Option<(Option<String>, String, Option<u16>)> {
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

fn configured_identities(params: &Params, tokens: &Tokens<'_>) -> Vec<PathBuf> {
    params
        .identity_files()
        .into_iter()
        .filter(|p| p.as_os_str() != "none")
        .map(|p| tokens.expand(&p.to_string_lossy()))
        .collect()
}

/// The configured identities without duplicates, or OpenSSH's defaults when there are none.
fn with_defaults(files: Vec<PathBuf>, home: &Path) -> (Vec<PathBuf>, bool) {
    let mut unique: Vec<PathBuf> = Vec::new();
    for file in files {
        if !unique.contains(&file) {
            unique.push(file);
        }
    }
    if unique.is_empty() {
        let defaults = DEFAULT_IDENTITIES
            .iter()
            .map(|name| home.join(".ssh").join(name))
            .collect();
        (defaults, true)
    } else {
        (unique, false)
    }
}

fn expand_files(files: &[String], tokens: &Tokens<'_>) -> Vec<PathBuf> {
    files
        .iter()
        .flat_map(|f| f.split_whitespace())
        .filter(|f| !f.eq_ignore_ascii_case("none"))
        .map(|f| tokens.expand(f))
        .collect()
}

fn default_user_known_hosts(home: &Path) -> Vec<PathBuf> {
    vec![
        home.join(".ssh/known_hosts"),
        home.join(".ssh/known_hosts2"),
    ]
}

fn default_global_known_hosts() -> Vec<PathBuf> {
    vec![
        PathBuf::from("/etc/ssh/ssh_known_hosts"),
        PathBuf::from("/etc/ssh/ssh_known_hosts2"),
    ]
}

/// `path` with the home directory written as `~`, for messages.
pub fn display_path(path: &Path) -> String {
    let home = home_dir();
    match path.strip_prefix(&home) {
        Ok(rest) if home != Path::new("/") => format!("~/{}", rest.display()),
        _ => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::deployfile::RawConfig;

    fn host(name: &str) -> Host {
        Host {
            name: name.into(),
            hostname: name.into(),
            user: None,
            port: None,
            identity_file: None,
            known_hosts_file: None,
            host_key_check: HostKeyCheck::Strict,
            stage: None,
            roles: Vec::new(),
            local: false,
            color: None,
            config: RawConfig::default(),
        }
    }

    fn resolve_with(text: &str, host: &Host) -> Settings {
        let config = ConfigFiles::parse(text, Path::new("/home/me")).unwrap();
        resolve(host, &config, Path::new("/home/me"), "me", None).unwrap()
    }

    #[test]
    fn defaults_without_any_configuration() {
        let s = resolve_with("", &host("web1"));
        assert_eq!(s.hostname, "web1");
        assert_eq!(s.port, 22);
        assert_eq!(s.user, "me");
        assert!(s.default_identities);
        assert_eq!(
            s.identity_files,
            vec![
                PathBuf::from("/home/me/.ssh/id_ed25519"),
                PathBuf::from("/home/me/.ssh/id_ecdsa"),
                PathBuf::from("/home/me/.ssh/id_rsa"),
            ]
        );
        assert_eq!(
            s.known_hosts,
            vec![
                PathBuf::from("/home/me/.ssh/known_hosts"),
                PathBuf::from("/home/me/.ssh/known_hosts2")
            ]
        );
        assert!(!s.accept_new);
        assert_eq!(s.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(s.keepalive_interval, Duration::from_secs(15));
        assert_eq!(s.keepalive_max, 3);
        assert!(s.jumps.is_empty());
    }

    const CONFIG: &str = "\
Host web*  !web9
  HostName %h.example.com
  User deploy
  Port 2222
  IdentityFile ~/.ssh/deploy_key
  IdentitiesOnly yes
  UserKnownHostsFile ~/.ssh/fleet_known_hosts %d/other
  StrictHostKeyChecking accept-new
  ConnectTimeout 4
  ServerAliveInterval 5
  ServerAliveCountMax 2

Match host web1
  User wrong

Host web9
  ProxyJump admin@bastion:2200,jump2

Host bastion
  HostName 10.0.0.1
  IdentityFile /keys/bastion

Host *
  User fallback
  IdentityFile ~/.ssh/common
";

    #[test]
    fn host_patterns_and_options_apply_first_value_wins() {
        let s = resolve_with(CONFIG, &host("web1"));
        assert_eq!(s.hostname, "web1.example.com");
        assert_eq!(s.user, "deploy");
        assert_eq!(s.port, 2222);
        assert_eq!(
            s.identity_files,
            vec![
                PathBuf::from("/home/me/.ssh/deploy_key"),
                PathBuf::from("/home/me/.ssh/common")
            ]
        );
        assert!(!s.default_identities);
        assert!(s.identities_only);
        assert_eq!(
            s.known_hosts,
            vec![
                PathBuf::from("/home/me/.ssh/fleet_known_hosts"),
                PathBuf::from("/home/me/other")
            ]
        );
        assert!(s.accept_new);
        assert_eq!(s.connect_timeout, Duration::from_secs(4));
        assert_eq!(s.keepalive_interval, Duration::from_secs(5));
        assert_eq!(s.keepalive_max, 2);
    }

    #[test]
    fn negated_pattern_excludes_and_proxy_jump_resolves_each_hop() {
        let s = resolve_with(CONFIG, &host("web9"));
        assert_eq!(s.hostname, "web9");
        assert_eq!(s.user, "fallback");
        assert_eq!(s.port, 22);
        assert_eq!(s.jumps.len(), 2);
        let bastion = &s.jumps[0];
        assert_eq!(bastion.hostname, "10.0.0.1");
        assert_eq!(bastion.user, "admin");
        assert_eq!(bastion.port, 2200);
        assert_eq!(
            bastion.identity_files,
            vec![
                PathBuf::from("/keys/bastion"),
                PathBuf::from("/home/me/.ssh/common")
            ]
        );
        let jump2 = &s.jumps[1];
        assert_eq!(jump2.hostname, "jump2");
        assert_eq!(jump2.user, "fallback");
        assert_eq!(jump2.port, 22);
    }

    #[test]
    fn the_deployfile_wins_over_the_config() {
        let mut h = host("web1");
        h.user = Some("root".into());
        h.port = Some(2022);
        h.identity_file = Some(PathBuf::from("/keys/mine"));
        h.known_hosts_file = Some(PathBuf::from("/kh"));
        let config = ConfigFiles::parse(CONFIG, Path::new("/home/me")).unwrap();
        let s = resolve(
            &h,
            &config,
            Path::new("/home/me"),
            "me",
            Some(Duration::from_secs(1)),
        )
        .unwrap();
        assert_eq!(s.user, "root");
        assert_eq!(s.port, 2022);
        assert_eq!(s.identity_files[0], PathBuf::from("/keys/mine"));
        assert_eq!(s.known_hosts, vec![PathBuf::from("/kh")]);
        assert_eq!(s.connect_timeout, Duration::from_secs(1));
    }

    #[test]
    fn strict_checking_values() {
        for (value, accepts) in [
            ("yes", false),
            ("ask", false),
            ("accept-new", true),
            ("no", true),
        ] {
            let s = resolve_with(
                &format!("Host *\n  StrictHostKeyChecking {value}\n"),
                &host("h"),
            );
            assert_eq!(s.accept_new, accepts, "{value}");
        }
        let mut h = host("h");
        h.host_key_check = HostKeyCheck::AcceptNew;
        assert!(resolve_with("", &h).accept_new);
    }

    #[test]
    fn include_reads_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let included = dir.path().join("fleet.conf");
        std::fs::write(&included, "Host app\n  HostName 192.0.2.7\n  Port 2200\n").unwrap();
        let text = format!("Include {}\n\nHost other\n  Port 1\n", included.display());
        let s = resolve_with(&text, &host("app"));
        assert_eq!(s.hostname, "192.0.2.7");
        assert_eq!(s.port, 2200);
    }

    #[test]
    fn jump_specs() {
        assert_eq!(parse_jump("h"), Some((None, "h".into(), None)));
        assert_eq!(
            parse_jump("u@h:2"),
            Some((Some("u".into()), "h".into(), Some(2)))
        );
        assert_eq!(
            parse_jump("ssh://u@h:22"),
            Some((Some("u".into()), "h".into(), Some(22)))
        );
        assert_eq!(
            parse_jump("[::1]:2222"),
            Some((None, "::1".into(), Some(2222)))
        );
        assert_eq!(parse_jump("h:notaport"), None);
        assert_eq!(parse_jump("@h"), None);
    }

    #[test]
    fn proxy_jump_none_means_direct() {
        let s = resolve_with("Host *\n  ProxyJump none\n", &host("h"));
        assert!(s.jumps.is_empty());
    }
}
