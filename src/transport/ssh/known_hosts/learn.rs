//! Learning a host key (accept-new): appended hashed, under an exclusive lock, after re-reading
//! the file under that lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::key::PublicKey;
use super::parse::{check_key_type, FormatError, SALT_LEN};
use super::pattern::hash_host;
use super::{lookup_name, HostKeyStatus, KnownHosts, KnownHostsError};

/// The outcome of [`learn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// The key was appended as this line.
    Added { line: usize },
    /// Another process had added it meanwhile (or it was there already) at this line.
    AlreadyKnown { line: usize },
}

/// Appends `key` for `host` on `port` to `file`, hashed as with OpenSSH's `HashKnownHosts yes`
/// (`|1|salt|hash TYPE BASE64`). Creates the parent directory (mode 0700) and the file (mode 0600)
/// if missing. Holds an exclusive lock on the file meanwhile and re-reads it under the lock: if
/// another process added the key in the meantime nothing is written; if the file now holds another
/// key for the host, or revokes this one, the key is refused.
///
/// This is blocking file I/O: call it from `spawn_blocking` in async code.
pub fn learn(
    file: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<Learned, KnownHostsError> {
    let key_text = checked_key_text(key)?;
    let write_error = |source| KnownHostsError::Write {
        path: file.to_path_buf(),
        source,
    };
    if let Some(parent) = file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        create_private_dir(parent).map_err(write_error)?;
    }
    let mut handle = open_private_append(file).map_err(write_error)?;
    handle.lock().map_err(|source| KnownHostsError::Lock {
        path: file.to_path_buf(),
        source,
    })?;

    let mut bytes = Vec::new();
    handle
        .read_to_end(&mut bytes)
        .map_err(|source| KnownHostsError::Read {
            path: file.to_path_buf(),
            source,
        })?;
    let name = lookup_name(host, port);
    match KnownHosts::parse(file, &String::from_utf8_lossy(&bytes)).check(host, port, key) {
        HostKeyStatus::Known { line, .. } => return Ok(Learned::AlreadyKnown { line }),
        HostKeyStatus::Revoked { line, .. } => {
            return Err(KnownHostsError::Revoked {
                path: file.to_path_buf(),
                line,
                host: name,
                fingerprint: key.fingerprint(),
            })
        }
        HostKeyStatus::Changed {
            line,
            expected_fingerprint,
            ..
        } => {
            return Err(KnownHostsError::Changed {
                path: file.to_path_buf(),
                line,
                host: name,
                expected_fingerprint,
                fingerprint: key.fingerprint(),
            })
        }
        HostKeyStatus::Unknown => {}
    }

    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|error| write_error(io::Error::other(error.to_string())))?;
    let needs_newline = bytes.last().is_some_and(|last| *last != b'\n');
    let mut text = String::new();
    if needs_newline {
        text.push('\n');
    }
    text.push_str(&hash_host(&name, &salt));
    text.push(' ');
    text.push_str(&key_text);
    text.push('\n');
    // One write on an O_APPEND descriptor: even a process that ignores the lock (ssh itself) cannot
    // land in the middle of this line.
    handle.write_all(text.as_bytes()).map_err(write_error)?;
    let line = bytes.iter().filter(|byte| **byte == b'\n').count() + 1 + usize::from(needs_newline);
    Ok(Learned::Added { line })
}

/// The `TYPE BASE64` text of a key about to be written, refusing one OpenSSH could not read back.
fn checked_key_text(key: &PublicKey) -> Result<String, KnownHostsError> {
    let key_type = key.key_type();
    if key_type.is_empty()
        || key_type
            .bytes()
            .any(|byte| byte.is_ascii_whitespace() || byte == b'#')
    {
        return Err(KnownHostsError::InvalidKey {
            reason: FormatError::UnusableKeyType(key_type.to_string()),
        });
    }
    check_key_type(key_type, &key.blob).map_err(|reason| KnownHostsError::InvalidKey { reason })?;
    Ok(key.to_openssh())
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn open_private_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ssh::known_hosts::test_support::*;

    #[test]
    fn learn_creates_a_private_directory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/known_hosts");
        let key = ed25519(1);
        // The port first: once the plain host is known, `[host]:port` is known through it.
        assert_eq!(
            learn(&file, "web1.example.com", 2222, &key).unwrap(),
            Learned::Added { line: 1 }
        );
        assert_eq!(
            learn(&file, "Web1.example.com", 22, &key).unwrap(),
            Learned::Added { line: 2 }
        );
        assert_eq!(
            learn(&file, "web1.example.com", 2200, &key).unwrap(),
            Learned::AlreadyKnown { line: 2 }
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join("a")), 0o700);
            assert_eq!(mode(&dir.path().join("a/b")), 0o700);
            assert_eq!(mode(&file), 0o600);
        }
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert!(line.starts_with("|1|"), "{line}");
            assert!(line.ends_with(&key.to_openssh()), "{line}");
        }
        let known_hosts = KnownHosts::parse(&file, &text);
        assert!(known_hosts.invalid_lines().is_empty());
        assert!(known_hosts.entries()[0].matches_name("[web1.example.com]:2222"));
        assert!(known_hosts.entries()[1].matches_name("web1.example.com"));
        assert_eq!(
            known_hosts.check("WEB1.example.com", 2222, &key),
            HostKeyStatus::Known {
                file: file.clone(),
                line: 1
            }
        );
    }

    #[test]
    fn learn_rechecks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let keys = synthetic_keys();
        // No trailing newline: the new line must not be glued to the last one.
        fs::write(&file, render("db1 {O}\nweb1 {K}\nweb2 {O}", &keys)).unwrap();
        assert_eq!(
            learn(&file, "web1", 22, &keys.presented).unwrap(),
            Learned::AlreadyKnown { line: 2 }
        );
        assert_eq!(
            learn(&file, "web1", 2222, &keys.presented).unwrap(),
            Learned::AlreadyKnown { line: 2 }
        );
        match learn(&file, "web2", 22, &keys.presented) {
            Err(error @ KnownHostsError::Changed { line: 3, .. }) => {
                let message = error.to_string();
                assert!(
                    message.contains("known_hosts:3: `web2` has another host key there (SHA256:"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            learn(&file, "web3", 22, &keys.presented).unwrap(),
            Learned::Added { line: 4 }
        );
        fs::write(&file, render("@revoked web4 {K}\n", &keys)).unwrap();
        assert!(matches!(
            learn(&file, "web4", 22, &keys.presented),
            Err(KnownHostsError::Revoked { line: 1, .. })
        ));
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 1);
        let bad = PublicKey::new("ssh-ed25519", b"junk".to_vec());
        assert!(matches!(
            learn(&file, "web5", 22, &bad),
            Err(KnownHostsError::InvalidKey { .. })
        ));
    }

    #[test]
    fn learn_under_contention_writes_whole_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ssh/known_hosts");
        let shared = ed25519(9);
        let results: Vec<Learned> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16u8)
                .map(|index| {
                    let (file, shared) = (&file, &shared);
                    scope.spawn(move || {
                        if index % 2 == 0 {
                            learn(file, "shared.example.com", 22, shared).unwrap()
                        } else {
                            learn(
                                file,
                                &format!("host{index}.example.com"),
                                22,
                                &ed25519(index),
                            )
                            .unwrap()
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .collect()
        });
        let added = results
            .iter()
            .filter(|result| matches!(result, Learned::Added { .. }))
            .count();
        assert_eq!(added, 9, "{results:?}");
        let known_hosts = KnownHosts::load(std::slice::from_ref(&file)).unwrap();
        assert!(
            known_hosts.invalid_lines().is_empty(),
            "{:?}",
            known_hosts.invalid_lines()
        );
        assert_eq!(known_hosts.entries().len(), 9);
        assert!(matches!(
            known_hosts.check("shared.example.com", 22, &shared),
            HostKeyStatus::Known { .. }
        ));
        for index in (1..16u8).step_by(2) {
            let status =
                known_hosts.check(&format!("host{index}.example.com"), 22, &ed25519(index));
            assert!(
                matches!(status, HostKeyStatus::Known { .. }),
                "host{index}: {status:?}"
            );
        }
    }

    #[test]
    fn learned_lines_are_found_by_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "k", &["-t", "ed25519"]);
        let file = dir.path().join("new/known_hosts");
        learn(&file, "web1.example.com", 2222, &key).unwrap();
        learn(&file, "web1.example.com", 22, &key).unwrap();
        assert_eq!(ssh_keygen_find(&file, "[web1.example.com]:2222"), [1]);
        assert_eq!(ssh_keygen_find(&file, "web1.example.com"), [2]);
        assert!(ssh_keygen_find(&file, "web2.example.com").is_empty());
    }
}
