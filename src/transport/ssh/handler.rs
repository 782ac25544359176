//! The russh client handler: checks the server's host key against known_hosts (OpenSSH's
//! semantics, `crate::transport::ssh::known_hosts`) and remembers why the connection ended.
//!
//! No code path accepts a key silently: a known key is accepted, an unknown one is learned only
//! with accept-new (appended under a lock, `known_hosts::learn`), a changed or revoked one is
//! always refused. A refusal is kept in [`State`] so the connect error can explain itself.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::PublicKeyOrCertificate;

use crate::transport::ssh::known_hosts::{
    self, HostKeyStatus, KnownHostsError, Learned, PublicKey,
};

use super::config::{display_path, Settings};

/// What the handler learned, shared with the connection.
#[derive(Debug, Default)]
pub struct State {
    /// Why the host key was refused.
    refusal: Mutex<Option<Arc<HostKeyError>>>,
    /// Why the connection ended (a disconnect message, an I/O error, missed keepalives).
    lost: Mutex<Option<String>>,
}

impl State {
    pub fn refusal(&self) -> Option<Arc<HostKeyError>> {
        lock(&self.refusal).clone()
    }

    pub fn lost(&self) -> Option<String> {
        lock(&self.lost).clone()
    }

    fn set_refusal(&self, reason: HostKeyError) {
        *lock(&self.refusal) = Some(Arc::new(reason));
    }

    fn set_lost(&self, reason: String) {
        lock(&self.lost).get_or_insert(reason);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// How one hop's host key is judged.
#[derive(Debug, Clone)]
pub struct HostKeyPolicy {
    /// The host as dep names it (for messages).
    pub label: String,
    pub hostname: String,
    pub port: u16,
    /// User files first, then global ones.
    pub files: Vec<PathBuf>,
    /// Where accept-new writes (the first user file), if any.
    pub learn_file: Option<PathBuf>,
    pub accept_new: bool,
}

impl HostKeyPolicy {
    pub fn for_settings(settings: &Settings) -> Self {
        HostKeyPolicy {
            label: settings.name.clone(),
            hostname: settings.hostname.clone(),
            port: settings.port,
            files: settings.known_hosts_files(),
            learn_file: settings.known_hosts.first().cloned(),
            accept_new: settings.accept_new,
        }
    }

    fn lookup_name(&self) -> String {
        known_hosts::lookup_name(&self.hostname, self.port)
    }

    fn files_text(&self) -> String {
        if self.files.is_empty() {
            return "no known_hosts file is configured".into();
        }
        let names: Vec<String> = self.files.iter().map(|f| display_path(f)).collect();
        format!("not found in {}", names.join(", "))
    }

    fn keyscan_hint(&self) -> String {
        let port = if self.port == 22 {
            String::new()
        } else {
            format!("-p {} ", self.port)
        };
        let file = self
            .learn_file
            .as_deref()
            .map(display_path)
            .unwrap_or_else(|| "~/.ssh/known_hosts".into());
        format!("ssh-keyscan {port}{} >> {file}", self.hostname)
    }

    /// Judge `key`: Ok(()) to accept it, Err(why) to refuse it. Blocking file I/O (the read, and
    /// the locked append of accept-new): call it from `spawn_blocking`.
    pub fn judge(&self, key: &PublicKey) -> Result<(), HostKeyError> {
        let name = self.lookup_name();
        let offered = Box::new(Offered {
            name: name.clone(),
            key_type: key.key_type().to_string(),
            fingerprint: key.fingerprint(),
        });
        let status =
            known_hosts::check(&self.files, &self.hostname, self.port, key).map_err(|source| {
                HostKeyError::Check {
                    name,
                    source: Box::new(source),
                }
            })?;
        match status {
            HostKeyStatus::Known { .. } => Ok(()),
            HostKeyStatus::Revoked { file, line } => Err(HostKeyError::Revoked {
                offered,
                file: display_path(&file),
                line,
            }),
            HostKeyStatus::Changed {
                file,
                line,
                expected_key_type,
                expected_fingerprint,
            } => Err(HostKeyError::Changed {
                offered,
                file: display_path(&file),
                line,
                expected_key_type,
                expected_fingerprint,
            }),
            HostKeyStatus::Unknown if self.accept_new => self.learn(key, offered),
            HostKeyStatus::Unknown => Err(HostKeyError::Unknown {
                offered,
                files: self.files_text(),
                hint: self.keyscan_hint(),
            }),
        }
    }

    /// Trust an unknown key on first use (accept-new).
    fn learn(&self, key: &PublicKey, offered: Box<Offered>) -> Result<(), HostKeyError> {
        let Some(file) = &self.learn_file else {
            return Err(HostKeyError::NowhereToLearn { offered });
        };
        match known_hosts::learn(file, &self.hostname, self.port, key) {
            Ok(Learned::Added { line }) => {
                tracing::warn!(
                    host = %self.label,
                    "{}: added the host key of {} ({} {}) to {}:{line}",
                    self.label,
                    offered.name,
                    offered.key_type,
                    offered.fingerprint,
                    display_path(file)
                );
                Ok(())
            }
            Ok(Learned::AlreadyKnown { .. }) => Ok(()),
            Err(source) => Err(HostKeyError::Learn {
                name: offered.name,
                source: Box::new(source),
            }),
        }
    }
}

/// The key a server offers, as messages name it.
#[derive(Debug, Clone)]
pub struct Offered {
    /// The host as known_hosts looks it up (`host` or `[host]:port`).
    pub name: String,
    pub key_type: String,
    pub fingerprint: String,
}

/// Why a server's host key was refused.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("cannot check the host key of {name}: {source}")]
    Check {
        name: String,
        source: Box<KnownHostsError>,
    },
    #[error(
        "the host key of {} ({} {}) is marked @revoked at {file}:{line}; refusing to connect",
        .offered.name, .offered.key_type, .offered.fingerprint
    )]
    Revoked {
        offered: Box<Offered>,
        file: String,
        line: usize,
    },
    #[error(
        "host key changed for {name}: the server offers {} {}, but {file}:{line} records \
         {expected_key_type} {expected_fingerprint}; this may be a man-in-the-middle \
         attack, so dep refuses to connect. If the key was changed on purpose, remove \
         the old line (`ssh-keygen -R '{name}' -f {file}`) and check the new key",
        .offered.key_type, .offered.fingerprint, name = .offered.name
    )]
    Changed {
        offered: Box<Offered>,
        file: String,
        line: usize,
        expected_key_type: String,
        expected_fingerprint: String,
    },
    #[error(
        "the host key of {} ({} {}) is unknown and there is no known_hosts file to add it to",
        .offered.name, .offered.key_type, .offered.fingerprint
    )]
    NowhereToLearn { offered: Box<Offered> },
    #[error("cannot accept the new host key of {name}: {source}")]
    Learn {
        name: String,
        source: Box<KnownHostsError>,
    },
    #[error(
        "the host key of {} is unknown ({} {}; {files}). Check the fingerprint with the \
         server's administrator, then add it with `{hint}`, or set \
         `host_key_check = \"accept-new\"` on the host to trust it on first use",
        .offered.name, .offered.key_type, .offered.fingerprint
    )]
    Unknown {
        offered: Box<Offered>,
        files: String,
        hint: String,
    },
    #[error("cannot encode the server's host key: {reason}")]
    Encode { reason: String },
    #[error("the server presented a host certificate, which dep does not support")]
    Certificate,
    #[error("host key check failed: {reason}")]
    CheckFailed { reason: String },
}

/// The handler of one hop's connection.
pub struct Handler {
    policy: Arc<HostKeyPolicy>,
    state: Arc<State>,
}

impl Handler {
    pub fn new(policy: HostKeyPolicy, state: Arc<State>) -> Self {
        Handler {
            policy: Arc::new(policy),
            state,
        }
    }
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => match key.to_bytes() {
                Ok(blob) => PublicKey::new(key.algorithm().as_str(), blob),
                Err(e) => {
                    self.state.set_refusal(HostKeyError::Encode {
                        reason: e.to_string(),
                    });
                    return Ok(false);
                }
            },
            PublicKeyOrCertificate::Certificate(_) => {
                self.state.set_refusal(HostKeyError::Certificate);
                return Ok(false);
            }
        };
        let policy = Arc::clone(&self.policy);
        let verdict = tokio::task::spawn_blocking(move || policy.judge(&key))
            .await
            .unwrap_or_else(|e| {
                Err(HostKeyError::CheckFailed {
                    reason: e.to_string(),
                })
            });
        match verdict {
            Ok(()) => Ok(true),
            Err(reason) => {
                self.state.set_refusal(reason);
                Ok(false)
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                let message = info.message.trim();
                self.state.set_lost(if message.is_empty() {
                    format!("the server disconnected ({:?})", info.reason_code)
                } else {
                    format!("the server disconnected: {message}")
                });
                Ok(())
            }
            client::DisconnectReason::Error(e) => {
                self.state.set_lost(describe_error(&e));
                Err(e)
            }
        }
    }
}

/// An I/O error in words: "connection refused", not "Connection refused (os error 111)".
pub fn describe_io(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset by the server".into(),
        ErrorKind::ConnectionAborted => "connection aborted".into(),
        ErrorKind::TimedOut => "timed out".into(),
        ErrorKind::UnexpectedEof => "the server closed the connection".into(),
        ErrorKind::BrokenPipe => "the connection broke".into(),
        _ => {
            let text = error.to_string();
            let text = match text.find(" (os error") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

/// A russh error in words for a user.
pub fn describe_error(error: &russh::Error) -> String {
    match error {
        russh::Error::KeepaliveTimeout => "the server stopped answering keepalives".into(),
        russh::Error::InactivityTimeout => "the connection was idle for too long".into(),
        russh::Error::HUP | russh::Error::Disconnect => "the server closed the connection".into(),
        russh::Error::IO(e) => describe_io(e),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PublicKey {
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&[byte; 32]);
        PublicKey::new("ssh-ed25519", blob)
    }

    fn policy(file: PathBuf, accept_new: bool) -> HostKeyPolicy {
        HostKeyPolicy {
            label: "web1".into(),
            hostname: "127.0.0.2".into(),
            port: 2222,
            files: vec![file.clone()],
            learn_file: Some(file),
            accept_new,
        }
    }

    #[test]
    fn unknown_is_refused_with_fingerprint_and_hint_unless_accept_new() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let error = policy(file.clone(), false)
            .judge(&key(1))
            .unwrap_err()
            .to_string();
        assert!(error.contains(&key(1).fingerprint()), "{error}");
        assert!(error.contains("ssh-keyscan -p 2222 127.0.0.2"), "{error}");
        assert!(error.contains("accept-new"), "{error}");
        assert!(!file.exists());

        policy(file.clone(), true).judge(&key(1)).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 1);
        policy(file.clone(), false).judge(&key(1)).unwrap();
    }

    #[test]
    fn changed_and_revoked_are_refused_even_with_accept_new() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        std::fs::write(
            &file,
            format!(
                "[127.0.0.2]:2222 {}\n@revoked [127.0.0.2]:2222 {}\n",
                key(1).to_openssh(),
                key(2).to_openssh()
            ),
        )
        .unwrap();
        let error = policy(file.clone(), true)
            .judge(&key(3))
            .unwrap_err()
            .to_string();
        assert!(error.contains("host key changed"), "{error}");
        assert!(error.contains(":1 records"), "{error}");
        let error = policy(file.clone(), true)
            .judge(&key(2))
            .unwrap_err()
            .to_string();
        assert!(error.contains("@revoked"), "{error}");
        policy(file, false).judge(&key(1)).unwrap();
    }
}
