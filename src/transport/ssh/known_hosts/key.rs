//! A public key as known_hosts holds it: algorithm name and wire blob, compared by blob, with
//! OpenSSH's fingerprint and text forms.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// A public key: its algorithm name and its wire blob (what a `known_hosts` key field decodes to).
///
/// Two keys are equal when their blobs are: the blob starts with the key type, so the algorithm name
/// (`rsa-sha2-512` or `ssh-rsa` for the same RSA key) does not take part.
#[derive(Clone)]
pub struct PublicKey {
    algorithm: String,
    pub(super) blob: Vec<u8>,
}

impl PublicKey {
    /// A key as the SSH layer sees it, e.g. `("ssh-ed25519", blob)`.
    pub fn new(algorithm: impl Into<String>, blob: impl Into<Vec<u8>>) -> Self {
        Self {
            algorithm: algorithm.into(),
            blob: blob.into(),
        }
    }

    /// The wire blob.
    #[cfg(test)]
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The key type named inside the blob (`ssh-rsa` for an RSA key whatever its signature
    /// algorithm), or the algorithm name if the blob does not start with one.
    pub fn key_type(&self) -> &str {
        blob_key_type(&self.blob).unwrap_or(&self.algorithm)
    }

    /// The fingerprint as OpenSSH prints it: `SHA256:` and unpadded base64.
    pub fn fingerprint(&self) -> String {
        fingerprint_sha256(&self.blob)
    }

    /// The OpenSSH text form `TYPE BASE64`, as `known_hosts` and `.pub` files hold it.
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.key_type(), STANDARD.encode(&self.blob))
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.blob == other.blob
    }
}

impl Eq for PublicKey {}

impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.blob.hash(state);
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.algorithm, self.fingerprint())
    }
}

/// The SHA-256 fingerprint of a key blob, formatted exactly like OpenSSH:
/// `SHA256:` followed by the unpadded standard base64 of the digest.
pub fn fingerprint_sha256(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// The first SSH `string` of a blob (its key type), if it is printable ASCII.
pub(super) fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let length = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4usize.checked_add(length)?)?;
    if name.is_empty() || !name.iter().all(|byte| byte.is_ascii_graphic()) {
        return None;
    }
    std::str::from_utf8(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ssh::known_hosts::test_support::*;

    #[test]
    fn fingerprint_and_text_form_match_openssh() {
        // `ssh-keygen -l -E sha256` of this key prints this fingerprint.
        let text = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM7dPfaNV3kPXOban0CwLAl9GfbddbgWlS+nQSmCf9kZ root@vm";
        let key = PublicKey::from_openssh(text).unwrap();
        assert_eq!(
            key.fingerprint(),
            "SHA256:qRtq3ypJvKQl3AhVhbXdbYgw+wykuKDZN/vF8dUGBMs"
        );
        assert_eq!(fingerprint_sha256(key.blob()), key.fingerprint());
        assert_eq!(key.to_openssh(), text.trim_end_matches(" root@vm"));
        assert_eq!(key.key_type(), "ssh-ed25519");
        // An RSA key under a signature algorithm name is the same key, written as `ssh-rsa`.
        let signed_as = PublicKey::new("rsa-sha2-512", rsa(1).blob());
        assert_eq!(signed_as, rsa(1));
        assert!(signed_as.to_openssh().starts_with("ssh-rsa AAAA"));
        assert!(PublicKey::from_openssh("ssh-ed25519").is_err());
        assert!(PublicKey::from_openssh(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIM7dPfaNV3kPXOban0CwLAl9GfbddbgWlS+nQSmCf9kZ"
        )
        .is_err());
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        for (name, kind) in [
            ("ed", &["-t", "ed25519"][..]),
            ("ec", &["-t", "ecdsa"]),
            ("rsa", &["-t", "rsa", "-b", "1024"]),
        ] {
            let key = keygen(dir.path(), name, kind);
            let output = ssh_keygen(&[
                "-l",
                "-E",
                "sha256",
                "-f",
                dir.path().join(format!("{name}.pub")).to_str().unwrap(),
            ]);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert_eq!(
                stdout.split(' ').nth(1),
                Some(key.fingerprint().as_str()),
                "{name}: {stdout}"
            );
        }
    }
}
