//! Public key authentication, in OpenSSH's order: the keys of the ssh-agent (`SSH_AUTH_SOCK`),
//! then key files (the host's `identity_file`, `IdentityFile` from the ssh config, else
//! `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`). `IdentitiesOnly yes` limits the agent's keys to
//! those files.
//!
//! An encrypted key file is decrypted with the passphrase in `DEP_SSH_PASSPHRASE`, else one asked
//! on the terminal (once per key and run: keys are cached for every host), else it is skipped and
//! the failure says so. RSA keys sign with rsa-sha2-512/256 when the server announces them.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use tokio::sync::Mutex;

use super::config::{display_path, Settings};
use super::handler::Handler;

/// The environment variable holding the passphrase of encrypted key files.
pub const PASSPHRASE_ENV: &str = "DEP_SSH_PASSPHRASE";

/// A key file as loaded once for the whole run.
#[derive(Clone)]
enum Loaded {
    Key(Arc<PrivateKey>),
    /// Why the file cannot be used (shown in the failure message).
    Unusable(String),
    Missing,
}

/// Key files already read (and decrypted) in this run, by path. The lock is held while a key is
/// read, so that many hosts connecting at once read and prompt for each key only once.
static KEYS: LazyLock<Mutex<HashMap<PathBuf, Loaded>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

async fn load(path: &Path) -> Loaded {
    let mut keys = KEYS.lock().await;
    if let Some(loaded) = keys.get(path) {
        return loaded.clone();
    }
    let owned = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || load_blocking(&owned))
        .await
        .unwrap_or_else(|e| Loaded::Unusable(format!("cannot read: {e}")));
    keys.insert(path.to_path_buf(), loaded.clone());
    loaded
}

fn load_blocking(path: &Path) -> Loaded {
    if !path.exists() {
        return Loaded::Missing;
    }
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => return Loaded::Key(Arc::new(key)),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(e) => return Loaded::Unusable(format!("cannot read: {e}")),
    }
    if let Some(passphrase) = std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()) {
        return match russh::keys::load_secret_key(path, Some(&passphrase)) {
            Ok(key) => Loaded::Key(Arc::new(key)),
            Err(_) => Loaded::Unusable(format!(
                "encrypted; the passphrase in {PASSPHRASE_ENV} does not open it"
            )),
        };
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Loaded::Unusable(format!(
            "encrypted; set {PASSPHRASE_ENV}, add it to ssh-agent, or run dep on a terminal"
        ));
    }
    for _ in 0..3 {
        let prompt = format!("Enter passphrase for key '{}': ", display_path(path));
        let passphrase = match rpassword::prompt_password(prompt) {
            Ok(passphrase) => passphrase,
            Err(e) => {
                return Loaded::Unusable(format!("encrypted; cannot ask for the passphrase: {e}"))
            }
        };
        if passphrase.is_empty() {
            break;
        }
        match russh::keys::load_secret_key(path, Some(&passphrase)) {
            Ok(key) => return Loaded::Key(Arc::new(key)),
            Err(_) => eprintln!("Bad passphrase, try again."),
        }
    }
    Loaded::Unusable("encrypted; no valid passphrase was given".into())
}

/// The public half of a key file: `FILE.pub`, else the private key if it is not encrypted.
fn public_key_of(path: &Path) -> Option<PublicKey> {
    let mut public = path.as_os_str().to_os_string();
    public.push(".pub");
    if let Ok(key) = russh::keys::load_public_key(PathBuf::from(public)) {
        return Some(key);
    }
    russh::keys::load_secret_key(path, None)
        .ok()
        .map(|key| key.public_key().clone())
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// Authenticate `handle` as `settings.user`; on failure, say what was tried.
pub async fn authenticate(handle: &mut Handle<Handler>, settings: &Settings) -> Result<(), String> {
    let user = settings.user.as_str();
    let timeout = settings.connect_timeout;
    let mut tried: Vec<String> = Vec::new();
    let mut rsa_hash: Option<Option<HashAlg>> = None;
    let mut offered: Vec<PublicKey> = Vec::new();

    // The public halves of the configured files, for IdentitiesOnly and to skip files whose key
    // the agent already offered.
    let files = settings.identity_files.clone();
    let file_keys: Vec<Option<PublicKey>> =
        tokio::task::spawn_blocking(move || files.iter().map(|f| public_key_of(f)).collect())
            .await
            .unwrap_or_default();

    if let Some(sock) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
        match agent_identities(&sock, timeout).await {
            Ok((mut agent, identities)) => {
                let keys: Vec<PublicKey> = identities
                    .into_iter()
                    .filter_map(|identity| match identity {
                        AgentIdentity::PublicKey { key, .. } => Some(key),
                        AgentIdentity::Certificate { .. } => None,
                    })
                    .filter(|key| {
                        !settings.identities_only
                            || file_keys.iter().flatten().any(|f| same_key(f, key))
                    })
                    .collect();
                if !keys.is_empty() {
                    tried.push(if keys.len() == 1 {
                        "agent".to_string()
                    } else {
                        format!("agent ({} keys)", keys.len())
                    });
                }
                for key in keys {
                    let hash = if key.algorithm().is_rsa() {
                        rsa_hash_of(handle, &mut rsa_hash).await?
                    } else {
                        None
                    };
                    offered.push(key.clone());
                    let attempt = tokio::time::timeout(
                        timeout,
                        handle.authenticate_publickey_with(user, key, hash, &mut agent),
                    )
                    .await
                    .map_err(|_| timed_out(timeout))?;
                    match attempt {
                        Ok(AuthResult::Success) => return Ok(()),
                        Ok(AuthResult::Failure { .. }) => {}
                        Err(e) => {
                            tracing::debug!("{}: the agent could not sign: {e}", settings.name);
                        }
                    }
                    ensure_open(handle)?;
                }
            }
            Err(reason) => tried.push(format!("agent ({reason})")),
        }
    }

    for (path, public) in settings.identity_files.iter().zip(&file_keys) {
        if public
            .as_ref()
            .is_some_and(|p| offered.iter().any(|o| same_key(o, p)))
        {
            continue;
        }
        let shown = display_path(path);
        let key = match load(path).await {
            Loaded::Key(key) => key,
            Loaded::Missing if settings.default_identities => continue,
            Loaded::Missing => {
                tried.push(format!("{shown} (not found)"));
                continue;
            }
            Loaded::Unusable(reason) => {
                tried.push(format!("{shown} ({reason})"));
                continue;
            }
        };
        tried.push(shown);
        let hash = if key.algorithm().is_rsa() {
            rsa_hash_of(handle, &mut rsa_hash).await?
        } else {
            None
        };
        let attempt = tokio::time::timeout(
            timeout,
            handle.authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash)),
        )
        .await
        .map_err(|_| timed_out(timeout))?;
        match attempt {
            Ok(result) if result.success() => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("authentication failed for user `{user}`: {e}")),
        }
        ensure_open(handle)?;
    }

    let tried = if tried.is_empty() {
        "no agent and no key file found".to_string()
    } else {
        tried.join(", ")
    };
    Err(format!(
        "authentication failed for user `{user}` (tried: {tried})"
    ))
}

async fn agent_identities(
    sock: &std::ffi::OsStr,
    timeout: Duration,
) -> Result<(AgentClient<tokio::net::UnixStream>, Vec<AgentIdentity>), String> {
    let work = async {
        let mut agent = AgentClient::connect_uds(sock)
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        let identities = agent
            .request_identities()
            .await
            .map_err(|e| format!("cannot list keys: {e}"))?;
        Ok((agent, identities))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| "did not answer".to_string())?
}

async fn rsa_hash_of(
    handle: &Handle<Handler>,
    cached: &mut Option<Option<HashAlg>>,
) -> Result<Option<HashAlg>, String> {
    if let Some(hash) = cached {
        return Ok(*hash);
    }
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| format!("cannot negotiate the RSA signature algorithm: {e}"))?
        .flatten();
    *cached = Some(hash);
    Ok(hash)
}

fn ensure_open(handle: &Handle<Handler>) -> Result<(), String> {
    if handle.is_closed() {
        Err("the server closed the connection during authentication".into())
    } else {
        Ok(())
    }
}

fn timed_out(timeout: Duration) -> String {
    format!(
        "authentication timed out after {}",
        crate::transport::human_duration(timeout)
    )
}
