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
use crate::transport::human_duration;

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

/// Why authentication failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("authentication failed for user `{user}` (tried: {tried})")]
    Failed { user: String, tried: String },
    #[error("authentication failed for user `{user}`: {reason}")]
    Rejected { user: String, reason: String },
    #[error("authentication timed out after {}", human_duration(*.timeout))]
    TimedOut { timeout: Duration },
    #[error("the server closed the connection during authentication")]
    Closed,
    #[error("cannot negotiate the RSA signature algorithm: {reason}")]
    RsaHash { reason: String },
}

/// Why the ssh-agent's keys could not be used (shown in the list of what was tried).
#[derive(Debug, Clone, thiserror::Error)]
enum AgentError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("cannot list keys: {0}")]
    ListKeys(String),
    #[error("did not answer")]
    NoAnswer,
}

/// Authenticate `handle` as `settings.user`; on failure, say what was tried.
pub async fn authenticate(
    handle: &mut Handle<Handler>,
    settings: &Settings,
) -> Result<(), AuthError> {
    // The public halves of the configured files, for IdentitiesOnly and to skip files whose key
    // the agent already offered.
    let files = settings.identity_files.clone();
    let file_keys: Vec<Option<PublicKey>> =
        tokio::task::spawn_blocking(move || files.iter().map(|f| public_key_of(f)).collect())
            .await
            .unwrap_or_default();
    let mut attempt = Attempt {
        handle,
        settings,
        tried: Vec::new(),
        rsa_hash: None,
        offered: Vec::new(),
    };
    if attempt.agent(&file_keys).await? || attempt.files(&file_keys).await? {
        return Ok(());
    }
    let tried = if attempt.tried.is_empty() {
        "no agent and no key file found".to_string()
    } else {
        attempt.tried.join(", ")
    };
    Err(AuthError::Failed {
        user: settings.user.clone(),
        tried,
    })
}

/// One authentication in progress: what was tried so far.
struct Attempt<'a> {
    handle: &'a mut Handle<Handler>,
    settings: &'a Settings,
    tried: Vec<String>,
    rsa_hash: Option<Option<HashAlg>>,
    /// The agent's keys offered already.
    offered: Vec<PublicKey>,
}

impl Attempt<'_> {
    /// Offer the agent's keys; true once one is accepted.
    async fn agent(&mut self, file_keys: &[Option<PublicKey>]) -> Result<bool, AuthError> {
        let Some(sock) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) else {
            return Ok(false);
        };
        let settings = self.settings;
        let timeout = settings.connect_timeout;
        let (mut agent, identities) = match agent_identities(&sock, timeout).await {
            Ok(found) => found,
            Err(reason) => {
                self.tried.push(format!("agent ({reason})"));
                return Ok(false);
            }
        };
        let keys: Vec<PublicKey> = identities
            .into_iter()
            .filter_map(|identity| match identity {
                AgentIdentity::PublicKey { key, .. } => Some(key),
                AgentIdentity::Certificate { .. } => None,
            })
            .filter(|key| {
                !settings.identities_only || file_keys.iter().flatten().any(|f| same_key(f, key))
            })
            .collect();
        if !keys.is_empty() {
            self.tried.push(if keys.len() == 1 {
                "agent".to_string()
            } else {
                format!("agent ({} keys)", keys.len())
            });
        }
        for key in keys {
            let hash = self.hash_for(key.algorithm().is_rsa()).await?;
            self.offered.push(key.clone());
            let attempt = tokio::time::timeout(
                timeout,
                self.handle
                    .authenticate_publickey_with(&settings.user, key, hash, &mut agent),
            )
            .await
            .map_err(|_| AuthError::TimedOut { timeout })?;
            match attempt {
                Ok(AuthResult::Success) => return Ok(true),
                Ok(AuthResult::Failure { .. }) => {}
                Err(e) => {
                    tracing::debug!(host = %settings.name, "the agent could not sign: {e}");
                }
            }
            ensure_open(self.handle)?;
        }
        Ok(false)
    }

    /// Offer the key files the agent did not offer already; true once one is accepted.
    async fn files(&mut self, file_keys: &[Option<PublicKey>]) -> Result<bool, AuthError> {
        let settings = self.settings;
        let timeout = settings.connect_timeout;
        for (path, public) in settings.identity_files.iter().zip(file_keys) {
            if public
                .as_ref()
                .is_some_and(|p| self.offered.iter().any(|o| same_key(o, p)))
            {
                continue;
            }
            let shown = display_path(path);
            let key = match load(path).await {
                Loaded::Key(key) => key,
                Loaded::Missing if settings.default_identities => continue,
                Loaded::Missing => {
                    self.tried.push(format!("{shown} (not found)"));
                    continue;
                }
                Loaded::Unusable(reason) => {
                    self.tried.push(format!("{shown} ({reason})"));
                    continue;
                }
            };
            self.tried.push(shown);
            let hash = self.hash_for(key.algorithm().is_rsa()).await?;
            let attempt = tokio::time::timeout(
                timeout,
                self.handle
                    .authenticate_publickey(&settings.user, PrivateKeyWithHashAlg::new(key, hash)),
            )
            .await
            .map_err(|_| AuthError::TimedOut { timeout })?;
            match attempt {
                Ok(result) if result.success() => return Ok(true),
                Ok(_) => {}
                Err(e) => {
                    return Err(AuthError::Rejected {
                        user: settings.user.clone(),
                        reason: e.to_string(),
                    })
                }
            }
            ensure_open(self.handle)?;
        }
        Ok(false)
    }

    /// The RSA signature hash for an RSA key (asked of the server once), None for other keys.
    async fn hash_for(&mut self, rsa: bool) -> Result<Option<HashAlg>, AuthError> {
        if !rsa {
            return Ok(None);
        }
        if let Some(hash) = self.rsa_hash {
            return Ok(hash);
        }
        let hash = self
            .handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| AuthError::RsaHash {
                reason: e.to_string(),
            })?
            .flatten();
        self.rsa_hash = Some(hash);
        Ok(hash)
    }
}

async fn agent_identities(
    sock: &std::ffi::OsStr,
    timeout: Duration,
) -> Result<(AgentClient<tokio::net::UnixStream>, Vec<AgentIdentity>), AgentError> {
    let work = async {
        let mut agent = AgentClient::connect_uds(sock)
            .await
            .map_err(|e| AgentError::Unreachable(e.to_string()))?;
        let identities = agent
            .request_identities()
            .await
            .map_err(|e| AgentError::ListKeys(e.to_string()))?;
        Ok((agent, identities))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| AgentError::NoAnswer)?
}

fn ensure_open(handle: &Handle<Handler>) -> Result<(), AuthError> {
    if handle.is_closed() {
        Err(AuthError::Closed)
    } else {
        Ok(())
    }
}
