//! Parsing `known_hosts` lines as OpenSSH's `hostfile.c` does: markers, the host field (patterns
//! or a hash), the key type and the base64 key; what is wrong with a line that OpenSSH skips.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::key::{blob_key_type, PublicKey};
use super::pattern::HASH_MAGIC;

/// Salt length of a hashed host field: the HMAC-SHA1 key, as long as its output.
pub(super) const SALT_LEN: usize = 20;

/// OpenSSH decodes key blobs with or without `=` padding.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What is wrong with a `known_hosts` line or a key's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("more than one marker")]
    TwoMarkers,
    #[error("unknown marker `{0}`")]
    UnknownMarker(String),
    #[error("no host pattern after the marker")]
    NoHostPattern,
    #[error("no key type")]
    NoKeyType,
    #[error("no key after key type `{0}`")]
    NoKey(String),
    #[error("malformed hashed host name")]
    MalformedHash,
    #[error("bad salt in hashed host name")]
    BadSalt,
    #[error("bad base64 key: {0}")]
    Base64(base64::DecodeError),
    #[error("key blob has no key type")]
    NoBlobKeyType,
    #[error("key type `{written}` does not match the `{inner}` key")]
    KeyTypeMismatch { written: String, inner: String },
    #[error("empty key")]
    EmptyKey,
    #[error("no base64 data after key type `{0}`")]
    NoBase64(String),
    #[error("unusable key type `{0}`")]
    UnusableKeyType(String),
}

/// A `known_hosts` line marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `@cert-authority`: the key signs host certificates (not supported yet: never matches a plain key).
    CertAuthority,
    /// `@revoked`: the key must never be accepted for the matching hosts.
    Revoked,
}

#[derive(Debug, Clone)]
pub(super) enum Hosts {
    /// A comma list of patterns, as written.
    Patterns(String),
    /// `|1|salt|hash`: the salt decoded, and the whole field as written.
    Hashed { salt: Vec<u8>, field: String },
}

pub(super) struct ParsedLine {
    pub marker: Option<Marker>,
    pub hosts: Hosts,
    pub key: PublicKey,
}

/// Splits on runs of spaces and tabs, the only separators OpenSSH knows.
pub(super) fn split_fields(text: &str) -> impl Iterator<Item = &str> {
    text.split([' ', '\t']).filter(|field| !field.is_empty())
}

/// Parses one line: `Ok(None)` for a blank or comment line, `Err` for a line OpenSSH would skip.
pub(super) fn parse_line(line: &str) -> Result<Option<ParsedLine>, FormatError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let rest = line.trim_start_matches([' ', '\t']);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let mut fields = split_fields(rest);
    let mut marker = None;
    let mut hosts = fields.next().unwrap_or_default();
    while hosts.starts_with('@') {
        if marker.is_some() {
            return Err(FormatError::TwoMarkers);
        }
        marker = Some(match hosts {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            other => return Err(FormatError::UnknownMarker(other.to_string())),
        });
        hosts = fields.next().ok_or(FormatError::NoHostPattern)?;
    }
    let hosts = parse_hosts(hosts)?;
    let key_type = fields
        .next()
        .filter(|field| !field.starts_with('#'))
        .ok_or(FormatError::NoKeyType)?;
    let base64 = fields
        .next()
        .ok_or_else(|| FormatError::NoKey(key_type.to_string()))?;
    let key = parse_key(key_type, base64)?;
    Ok(Some(ParsedLine { marker, hosts, key }))
}

pub(super) fn parse_hosts(field: &str) -> Result<Hosts, FormatError> {
    if !field.starts_with('|') {
        return Ok(Hosts::Patterns(field.to_string()));
    }
    let salt = field
        .strip_prefix(HASH_MAGIC)
        .and_then(|rest| rest.split_once('|'))
        .map(|(salt, _hash)| salt)
        .filter(|salt| !salt.is_empty() && salt.len() <= 1024)
        .ok_or(FormatError::MalformedHash)?;
    let salt = BASE64_LENIENT
        .decode(salt)
        .ok()
        .filter(|salt| salt.len() == SALT_LEN)
        .ok_or(FormatError::BadSalt)?;
    Ok(Hosts::Hashed {
        salt,
        field: field.to_string(),
    })
}

pub(super) fn parse_key(key_type: &str, base64: &str) -> Result<PublicKey, FormatError> {
    let blob = BASE64_LENIENT.decode(base64).map_err(FormatError::Base64)?;
    check_key_type(key_type, &blob)?;
    Ok(PublicKey::new(key_type, blob))
}

/// Checks that the type written before a key matches the type inside its blob, as OpenSSH's
/// `sshkey_read` does (which also takes an RSA signature algorithm name for an RSA key).
pub(super) fn check_key_type(key_type: &str, blob: &[u8]) -> Result<(), FormatError> {
    let inner = blob_key_type(blob).ok_or(FormatError::NoBlobKeyType)?;
    let rsa_alias = match inner {
        "ssh-rsa" => matches!(key_type, "rsa-sha2-256" | "rsa-sha2-512"),
        "ssh-rsa-cert-v01@openssh.com" => matches!(
            key_type,
            "rsa-sha2-256-cert-v01@openssh.com" | "rsa-sha2-512-cert-v01@openssh.com"
        ),
        _ => false,
    };
    if inner == key_type || rsa_alias {
        Ok(())
    } else {
        Err(FormatError::KeyTypeMismatch {
            written: key_type.to_string(),
            inner: inner.to_string(),
        })
    }
}

#[cfg(test)]
impl PublicKey {
    /// Parses the OpenSSH text form `TYPE BASE64 [COMMENT]` (a `.pub` file, or the key part of a
    /// `known_hosts` line).
    pub fn from_openssh(text: &str) -> Result<Self, super::KnownHostsError> {
        let mut fields = split_fields(text.trim_end_matches(['\r', '\n']));
        let key_type = fields.next().ok_or(super::KnownHostsError::InvalidKey {
            reason: FormatError::EmptyKey,
        })?;
        let base64 = fields
            .next()
            .ok_or_else(|| super::KnownHostsError::InvalidKey {
                reason: FormatError::NoBase64(key_type.to_string()),
            })?;
        parse_key(key_type, base64).map_err(|reason| super::KnownHostsError::InvalidKey { reason })
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use crate::transport::ssh::known_hosts::test_support::*;

    #[test]
    fn parse_line_table() {
        let key = ed25519(1).to_openssh();
        let rsa_b64 = STANDARD.encode(rsa(1).blob());
        // (line, Ok(Some(marker, hashed)) / Ok(None) for a non-entry / Err(part of the reason))
        type Expected = Result<Option<(Option<Marker>, bool)>, &'static str>;
        let table: Vec<(String, Expected)> = vec![
            ("".into(), Ok(None)),
            ("   \t ".into(), Ok(None)),
            ("# web1 ssh-ed25519 AAAA".into(), Ok(None)),
            ("  # indented comment".into(), Ok(None)),
            (format!("web1 {key}"), Ok(Some((None, false)))),
            (
                format!("web1 {key} comment with  spaces"),
                Ok(Some((None, false))),
            ),
            (
                format!("\tweb1\t\t{}", key.replace(' ', "\t")),
                Ok(Some((None, false))),
            ),
            (format!("web1 {key}\r"), Ok(Some((None, false)))),
            (
                format!("@revoked * {key}"),
                Ok(Some((Some(Marker::Revoked), false))),
            ),
            (
                format!("@revoked\t* {key}"),
                Ok(Some((Some(Marker::Revoked), false))),
            ),
            (
                format!("@cert-authority *.example.com {key}"),
                Ok(Some((Some(Marker::CertAuthority), false))),
            ),
            (
                format!("|1|n1ZwIXrlCm6bONyNFGUefzxjnDU=|DWIwZjehj8hr5eNUxSi9Vwae8xg= {key}"),
                Ok(Some((None, true))),
            ),
            (
                format!("web1 rsa-sha2-512 {rsa_b64}"),
                Ok(Some((None, false))),
            ),
            (
                format!("web1 ssh-rsa {}", rsa_b64.trim_end_matches('=')),
                Ok(Some((None, false))),
            ),
            (
                format!("@revoked @revoked web1 {key}"),
                Err("more than one marker"),
            ),
            (format!("@Revoked web1 {key}"), Err("unknown marker")),
            (format!("@ web1 {key}"), Err("unknown marker")),
            ("@revoked".into(), Err("no host pattern")),
            ("web1".into(), Err("no key type")),
            (format!("web1 #{key}"), Err("no key type")),
            ("web1 ssh-ed25519".into(), Err("no key after")),
            ("web1 ssh-ed25519 !!!!".into(), Err("bad base64")),
            (
                format!("web1 ssh-rsa {}", STANDARD.encode(ed25519(1).blob())),
                Err("does not match"),
            ),
            ("web1 ssh-ed25519 AAAA".into(), Err("no key type")),
            (
                "web1 2048 65537 12345678901234567890".into(),
                Err("bad base64"),
            ),
            (format!("|1|abc|def {key}"), Err("bad salt")),
            (
                format!("|2|n1ZwIXrlCm6bONyNFGUefzxjnDU=|x {key}"),
                Err("malformed hashed"),
            ),
            (
                format!("|1|n1ZwIXrlCm6bONyNFGUefzxjnDU= {key}"),
                Err("malformed hashed"),
            ),
        ];
        for (line, expected) in table {
            let got = parse_line(&line)
                .map(|parsed| {
                    parsed
                        .map(|parsed| (parsed.marker, matches!(parsed.hosts, Hosts::Hashed { .. })))
                })
                .map_err(|reason| reason.to_string());
            match (&got, &expected) {
                (Err(reason), Err(part)) => {
                    assert!(reason.contains(part), "{line:?}: {reason:?} lacks {part:?}")
                }
                _ => assert_eq!(got, expected.map_err(str::to_string), "{line:?}"),
            }
        }
    }
}
