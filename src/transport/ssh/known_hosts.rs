//! Host key trust: checks a server's host key against OpenSSH `known_hosts` files with OpenSSH's
//! own semantics, and appends a newly learned key to a file under an exclusive lock.
//!
//! The rules follow OpenSSH 9 (`hostfile.c`, `match.c`, `sshconnect.c`), checked against the real
//! `ssh` in this module's tests:
//!
//! - Lines: blank lines and `#` comments are skipped; fields are separated by any run of spaces and
//!   tabs; an optional `@revoked` or `@cert-authority` marker comes first, then the host field, the
//!   key type and the base64 key; the rest of the line is a comment and is never compared. A line
//!   OpenSSH cannot parse is skipped, as OpenSSH does (see [`KnownHosts::invalid_lines`]).
//! - Host field: a comma list of patterns with `*` and `?`, case-insensitive; a matching `!pattern`
//!   makes the whole line not match. A host on port 22 is looked up as `host`, on another port as
//!   `[host]:port`. A hashed field `|1|salt|hash` is HMAC-SHA1 (keyed by the salt) of that name.
//! - Verdict, over the matching lines of all files in order: a `@revoked` line with this key gives
//!   [`HostKeyStatus::Revoked`], whatever else matches; else a plain line with this key gives
//!   [`HostKeyStatus::Known`], even if a line with another key comes first; else a plain line with
//!   another key (of any type: OpenSSH warns just the same) gives [`HostKeyStatus::Changed`]; else
//!   [`HostKeyStatus::Unknown`]. For a non-22 port that is unknown as `[host]:port`, the plain
//!   `host` is tried next, as `ssh` does: only a match there counts, a different key does not.
//! - `@cert-authority` lines are parsed and kept ([`KnownHosts::entries`]), but host certificates
//!   are not supported yet, so a plain host key never matches one: such a line neither trusts nor
//!   contradicts a plain key (OpenSSH does the same for a plain key).
//!
//! Where this module is stricter than OpenSSH 9.2, on purpose:
//! - a `@revoked` marker followed by a tab is honoured (OpenSSH drops the whole line when a space
//!   follows later on it, and then accepts the revoked key);
//! - a key that is `@revoked` for the plain `host` is reported revoked on any port (OpenSSH's
//!   fallback for a non-22 port then calls the host unknown, and would learn the key).
//!
//! Where it differs in reporting only: for [`HostKeyStatus::Changed`] it names the first line with
//! another key (OpenSSH's "Offending key" names the last one).
//!
//! A key is its algorithm name and its wire blob ([`PublicKey`]); keys are compared by blob, which
//! names its own type. Nothing here knows about the SSH library.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::alphabet;
use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, STANDARD, STANDARD_NO_PAD,
};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The port for which OpenSSH writes and looks up the plain host name.
const DEFAULT_PORT: u16 = 22;

/// How a hashed host field starts (`HASH_MAGIC` in OpenSSH).
const HASH_MAGIC: &str = "|1|";

/// Salt length of a hashed host field: the HMAC-SHA1 key, as long as its output.
const SALT_LEN: usize = 20;

/// OpenSSH's `match_pattern_list` copies a subpattern into a 1024-byte buffer: from 1023 bytes on,
/// the whole list fails to match.
const MAX_SUBPATTERN: usize = 1023;

/// OpenSSH decodes key blobs with or without `=` padding.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A public key: its algorithm name and its wire blob (what a `known_hosts` key field decodes to).
///
/// Two keys are equal when their blobs are: the blob starts with the key type, so the algorithm name
/// (`rsa-sha2-512` or `ssh-rsa` for the same RSA key) does not take part.
#[derive(Clone)]
pub struct PublicKey {
    algorithm: String,
    blob: Vec<u8>,
}

impl PublicKey {
    /// A key as the SSH layer sees it, e.g. `("ssh-ed25519", blob)`.
    pub fn new(algorithm: impl Into<String>, blob: impl Into<Vec<u8>>) -> Self {
        Self {
            algorithm: algorithm.into(),
            blob: blob.into(),
        }
    }

    /// Parses the OpenSSH text form `TYPE BASE64 [COMMENT]` (a `.pub` file, or the key part of a
    /// `known_hosts` line).
    pub fn from_openssh(text: &str) -> Result<Self, KnownHostsError> {
        let mut fields = split_fields(text.trim_end_matches(['\r', '\n']));
        let key_type = fields.next().ok_or_else(|| KnownHostsError::InvalidKey {
            reason: "empty key".to_string(),
        })?;
        let base64 = fields.next().ok_or_else(|| KnownHostsError::InvalidKey {
            reason: format!("no base64 data after key type `{key_type}`"),
        })?;
        parse_key(key_type, base64).map_err(|reason| KnownHostsError::InvalidKey { reason })
    }

    /// The algorithm name this key was created with.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The wire blob.
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

/// The name OpenSSH looks a host up under: the host in lower case, as `[host]:port` when the port is
/// neither 22 nor 0.
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 0 || port == DEFAULT_PORT {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// OpenSSH's default files, in the order it reads them: the user's `~/.ssh/known_hosts` and
/// `~/.ssh/known_hosts2`, then the global `/etc/ssh/ssh_known_hosts` and `/etc/ssh/ssh_known_hosts2`.
pub fn default_files(home: &Path) -> Vec<PathBuf> {
    vec![
        home.join(".ssh/known_hosts"),
        home.join(".ssh/known_hosts2"),
        PathBuf::from("/etc/ssh/ssh_known_hosts"),
        PathBuf::from("/etc/ssh/ssh_known_hosts2"),
    ]
}

/// What the `known_hosts` files say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// A line for this host holds this key.
    Known { file: PathBuf, line: usize },
    /// No line for this host (other than `@cert-authority` lines).
    Unknown,
    /// Lines for this host exist, none with this key: `file:line` is the first of them.
    Changed {
        file: PathBuf,
        line: usize,
        /// The type of the key on that line, e.g. `ssh-rsa`.
        expected_key_type: String,
        /// The fingerprint of the key on that line.
        expected_fingerprint: String,
    },
    /// A `@revoked` line for this host holds this key: it must never be accepted.
    Revoked { file: PathBuf, line: usize },
}

/// A `known_hosts` line marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `@cert-authority`: the key signs host certificates (not supported yet: never matches a plain key).
    CertAuthority,
    /// `@revoked`: the key must never be accepted for the matching hosts.
    Revoked,
}

/// One parsed `known_hosts` line holding a key.
#[derive(Debug, Clone)]
pub struct Entry {
    file: Arc<Path>,
    line: usize,
    marker: Option<Marker>,
    hosts: Hosts,
    key: PublicKey,
}

#[derive(Debug, Clone)]
enum Hosts {
    /// A comma list of patterns, as written.
    Patterns(String),
    /// `|1|salt|hash`: the salt decoded, and the whole field as written.
    Hashed { salt: Vec<u8>, field: String },
}

impl Entry {
    /// The file this line is in.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The line number, from 1.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The line's marker, if any.
    pub fn marker(&self) -> Option<Marker> {
        self.marker
    }

    /// The line's key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// Whether the host field is hashed (`|1|salt|hash`).
    pub fn is_hashed(&self) -> bool {
        matches!(self.hosts, Hosts::Hashed { .. })
    }

    /// Whether the host field matches a lookup name (see [`lookup_name`]) exactly as OpenSSH
    /// matches it: no port fallback here.
    pub fn matches_name(&self, name: &str) -> bool {
        match &self.hosts {
            Hosts::Patterns(list) => match_pattern_list(name, list),
            Hosts::Hashed { salt, field } => hash_host(name, salt) == *field,
        }
    }
}

/// A line that OpenSSH would skip as unparsable (and so does this module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLine {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for InvalidLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// The outcome of [`learn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// The key was appended as this line.
    Added { line: usize },
    /// Another process had added it meanwhile (or it was there already) at this line.
    AlreadyKnown { line: usize },
}

/// Why host keys could not be checked or learned.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    #[error("cannot read known hosts file `{}`: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write known hosts file `{}`: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot lock known hosts file `{}`: {source}", .path.display())]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "{}:{line}: the host key {fingerprint} of `{host}` is marked @revoked; not adding it",
        .path.display()
    )]
    Revoked {
        path: PathBuf,
        line: usize,
        host: String,
        fingerprint: String,
    },
    #[error(
        "{}:{line}: `{host}` has another host key there ({expected_fingerprint}); not adding {fingerprint}",
        .path.display()
    )]
    Changed {
        path: PathBuf,
        line: usize,
        host: String,
        expected_fingerprint: String,
        fingerprint: String,
    },
    #[error("invalid host key: {reason}")]
    InvalidKey { reason: String },
}

/// The parsed contents of one or more `known_hosts` files, in order.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    invalid: Vec<InvalidLine>,
}

impl KnownHosts {
    /// Reads the files in order (user files first, then global ones, as OpenSSH does). A missing
    /// file counts as empty; any other read error is an error.
    pub fn load(files: &[PathBuf]) -> Result<Self, KnownHostsError> {
        let mut known_hosts = Self::default();
        for path in files {
            match fs::read(path) {
                Ok(bytes) => known_hosts.add_file(path, &String::from_utf8_lossy(&bytes)),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(KnownHostsError::Read {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(known_hosts)
    }

    /// Parses one file's text; `path` is only used to name lines.
    pub fn parse(path: &Path, text: &str) -> Self {
        let mut known_hosts = Self::default();
        known_hosts.add_file(path, text);
        known_hosts
    }

    /// Appends one more file's text after those already parsed.
    pub fn add_file(&mut self, path: &Path, text: &str) {
        let file: Arc<Path> = Arc::from(path);
        for (index, line) in text.split('\n').enumerate() {
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some(parsed)) => self.entries.push(Entry {
                    file: Arc::clone(&file),
                    line: index + 1,
                    marker: parsed.marker,
                    hosts: parsed.hosts,
                    key: parsed.key,
                }),
                Err(reason) => {
                    tracing::debug!("{}:{}: skipping line: {reason}", path.display(), index + 1);
                    self.invalid.push(InvalidLine {
                        file: path.to_path_buf(),
                        line: index + 1,
                        reason,
                    });
                }
            }
        }
    }

    /// Every parsed line holding a key, including `@revoked` and `@cert-authority` lines.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The lines skipped as unparsable, for diagnostics.
    pub fn invalid_lines(&self) -> &[InvalidLine] {
        &self.invalid
    }

    /// Checks `key` for `host` on `port` (see the module docs for the rules).
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
        let status = self.check_name(&lookup_name(host, port), key);
        if status == HostKeyStatus::Unknown && port != 0 && port != DEFAULT_PORT {
            // sshconnect.c retries an unknown `[host]:port` as the plain host, quietly: only a
            // match counts. A revocation counts too here (OpenSSH ignores it: we are stricter).
            let plain = self.check_name(&lookup_name(host, DEFAULT_PORT), key);
            if matches!(
                plain,
                HostKeyStatus::Known { .. } | HostKeyStatus::Revoked { .. }
            ) {
                return plain;
            }
        }
        status
    }

    /// The key types recorded for a host (plain lines only, in file order, without duplicates),
    /// for ordering the host key algorithms offered to the server as OpenSSH does: a server that
    /// answers with a type not listed here is reported [`HostKeyStatus::Changed`].
    pub fn key_types(&self, host: &str, port: u16) -> Vec<String> {
        let mut types = self.key_types_for(&lookup_name(host, port));
        if types.is_empty() && port != 0 && port != DEFAULT_PORT {
            types = self.key_types_for(&lookup_name(host, DEFAULT_PORT));
        }
        types
    }

    fn key_types_for(&self, name: &str) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for entry in self.matching(name).filter(|entry| entry.marker.is_none()) {
            let key_type = entry.key.key_type();
            if !types.iter().any(|known| known == key_type) {
                types.push(key_type.to_string());
            }
        }
        types
    }

    fn matching<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |entry| entry.matches_name(name))
    }

    fn check_name(&self, name: &str, key: &PublicKey) -> HostKeyStatus {
        let mut known = None;
        let mut changed = None;
        for entry in self.matching(name) {
            let same_key = entry.key.blob == key.blob;
            match entry.marker {
                Some(Marker::Revoked) if same_key => {
                    return HostKeyStatus::Revoked {
                        file: entry.file.to_path_buf(),
                        line: entry.line,
                    }
                }
                // Revocations of other keys, and CAs: host certificates are not supported yet.
                Some(_) => {}
                None if same_key => {
                    known.get_or_insert(entry);
                }
                None => {
                    changed.get_or_insert(entry);
                }
            }
        }
        match (known, changed) {
            (Some(entry), _) => HostKeyStatus::Known {
                file: entry.file.to_path_buf(),
                line: entry.line,
            },
            (None, Some(entry)) => HostKeyStatus::Changed {
                file: entry.file.to_path_buf(),
                line: entry.line,
                expected_key_type: entry.key.key_type().to_string(),
                expected_fingerprint: entry.key.fingerprint(),
            },
            (None, None) => HostKeyStatus::Unknown,
        }
    }
}

/// Checks `key` for `host` on `port` against `files`, read in order (a missing file is empty).
pub fn check(
    files: &[PathBuf],
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<HostKeyStatus, KnownHostsError> {
    Ok(KnownHosts::load(files)?.check(host, port, key))
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
    fs4::FileExt::lock(&handle).map_err(|source| KnownHostsError::Lock {
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
            reason: format!("unusable key type `{key_type}`"),
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

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, as OpenSSH's `host_hash`.
fn hash_host(name: &str, salt: &[u8]) -> String {
    // HMAC accepts a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(salt).expect("HMAC takes keys of any length");
    mac.update(name.as_bytes());
    format!(
        "{HASH_MAGIC}{}|{}",
        STANDARD.encode(salt),
        STANDARD.encode(mac.finalize().into_bytes())
    )
}

struct ParsedLine {
    marker: Option<Marker>,
    hosts: Hosts,
    key: PublicKey,
}

/// Splits on runs of spaces and tabs, the only separators OpenSSH knows.
fn split_fields(text: &str) -> impl Iterator<Item = &str> {
    text.split([' ', '\t']).filter(|field| !field.is_empty())
}

/// Parses one line: `Ok(None)` for a blank or comment line, `Err` for a line OpenSSH would skip.
fn parse_line(line: &str) -> Result<Option<ParsedLine>, String> {
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
            return Err("more than one marker".to_string());
        }
        marker = Some(match hosts {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            other => return Err(format!("unknown marker `{other}`")),
        });
        hosts = fields
            .next()
            .ok_or_else(|| "no host pattern after the marker".to_string())?;
    }
    let hosts = parse_hosts(hosts)?;
    let key_type = fields
        .next()
        .filter(|field| !field.starts_with('#'))
        .ok_or_else(|| "no key type".to_string())?;
    let base64 = fields
        .next()
        .ok_or_else(|| format!("no key after key type `{key_type}`"))?;
    let key = parse_key(key_type, base64)?;
    Ok(Some(ParsedLine { marker, hosts, key }))
}

fn parse_hosts(field: &str) -> Result<Hosts, String> {
    if !field.starts_with('|') {
        return Ok(Hosts::Patterns(field.to_string()));
    }
    let salt = field
        .strip_prefix(HASH_MAGIC)
        .and_then(|rest| rest.split_once('|'))
        .map(|(salt, _hash)| salt)
        .filter(|salt| !salt.is_empty() && salt.len() <= 1024)
        .ok_or_else(|| "malformed hashed host name".to_string())?;
    let salt = BASE64_LENIENT
        .decode(salt)
        .ok()
        .filter(|salt| salt.len() == SALT_LEN)
        .ok_or_else(|| "bad salt in hashed host name".to_string())?;
    Ok(Hosts::Hashed {
        salt,
        field: field.to_string(),
    })
}

fn parse_key(key_type: &str, base64: &str) -> Result<PublicKey, String> {
    let blob = BASE64_LENIENT
        .decode(base64)
        .map_err(|error| format!("bad base64 key: {error}"))?;
    check_key_type(key_type, &blob)?;
    Ok(PublicKey::new(key_type, blob))
}

/// Checks that the type written before a key matches the type inside its blob, as OpenSSH's
/// `sshkey_read` does (which also takes an RSA signature algorithm name for an RSA key).
fn check_key_type(key_type: &str, blob: &[u8]) -> Result<(), String> {
    let inner = blob_key_type(blob).ok_or_else(|| "key blob has no key type".to_string())?;
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
        Err(format!(
            "key type `{key_type}` does not match the `{inner}` key"
        ))
    }
}

/// The first SSH `string` of a blob (its key type), if it is printable ASCII.
fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let length = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4usize.checked_add(length)?)?;
    if name.is_empty() || !name.iter().all(|byte| byte.is_ascii_graphic()) {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// OpenSSH's `match_hostname`: true when some pattern of the comma list matches `name` (both
/// compared in ASCII lower case) and no negated `!pattern` does.
fn match_pattern_list(name: &str, list: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(pattern) => (true, pattern),
            None => (false, pattern),
        };
        if pattern.len() >= MAX_SUBPATTERN {
            return false;
        }
        if glob_match(name.as_bytes(), pattern.to_ascii_lowercase().as_bytes()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` matches any run of bytes, `?` any one byte, anything else itself (OpenSSH's `match_pattern`).
fn glob_match(text: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    // Where the last `*` was, and the text position it is currently made to swallow up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&byte) if byte == b'?' || byte == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|byte| *byte == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A wire blob: SSH strings for the type and each part.
    fn blob(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    fn ed25519(seed: u8) -> PublicKey {
        PublicKey::new("ssh-ed25519", blob(&[b"ssh-ed25519", &[seed; 32]]))
    }

    fn rsa(seed: u8) -> PublicKey {
        PublicKey::new("ssh-rsa", blob(&[b"ssh-rsa", &[1, 0, 1], &[seed; 65]]))
    }

    /// The keys a case's files are written with: `{K}` the presented key, `{O}` another
    /// ed25519 key, `{R}` an RSA key; `{Kt}` is `{K}` with tabs, `{Kb}` its base64 alone,
    /// `{H name}` the hashed form of `name`.
    struct Keys {
        presented: PublicKey,
        other: PublicKey,
        rsa: PublicKey,
    }

    fn render(template: &str, keys: &Keys) -> String {
        let presented = keys.presented.to_openssh();
        let mut text = template
            .replace("{Kt}", &presented.replace(' ', "\t\t"))
            .replace("{Kb}", &STANDARD.encode(keys.presented.blob()))
            .replace("{K}", &presented)
            .replace("{O}", &keys.other.to_openssh())
            .replace("{R}", &keys.rsa.to_openssh());
        while let Some(start) = text.find("{H ") {
            let end = start + text[start..].find('}').expect("unclosed {H");
            let mut salt = [0u8; SALT_LEN];
            getrandom::fill(&mut salt).unwrap();
            let hashed = hash_host(&text[start + 3..end], &salt);
            text.replace_range(start..=end, &hashed);
        }
        text
    }

    /// An expected verdict: file index in the case, line.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        Known(usize, usize),
        Unknown,
        Changed(usize, usize),
        Revoked(usize, usize),
    }

    struct Case {
        name: &'static str,
        port: u16,
        /// File texts in order; `None` is a file that does not exist.
        files: &'static [Option<&'static str>],
        expect: Expect,
        /// What OpenSSH 9.2 says where it differs on purpose (see the module docs).
        openssh: Option<Expect>,
    }

    const HOST: &str = "web1.example.com";

    use Expect::*;

    const fn case(
        name: &'static str,
        port: u16,
        files: &'static [Option<&'static str>],
        expect: Expect,
    ) -> Case {
        Case {
            name,
            port,
            files,
            expect,
            openssh: None,
        }
    }

    const fn differs(mut case: Case, openssh: Expect) -> Case {
        case.openssh = Some(openssh);
        case
    }

    const CASES: &[Case] = &[
        case("plain", 22, &[Some("web1.example.com {K}\n")], Known(0, 1)),
        case("empty file", 22, &[Some("")], Unknown),
        case(
            "missing file",
            22,
            &[None, Some("web1.example.com {K}\n")],
            Known(1, 1),
        ),
        case(
            "comments, blanks, tabs, CRLF, trailing comment",
            22,
            &[Some(
                "# comment\n\n \t\r\n  \tweb1.example.com\t \t{Kt}\tsome comment here\r\n",
            )],
            Known(0, 4),
        ),
        case(
            "wrong key first",
            22,
            &[Some("web1.example.com {O}\nweb1.example.com {K}\n")],
            Known(0, 2),
        ),
        case(
            "changed",
            22,
            &[Some("db1.example.com {K}\nweb1.example.com {O}\n")],
            Changed(0, 2),
        ),
        differs(
            case(
                "changed twice: first line named",
                22,
                &[Some("*.example.com {O}\nweb1.example.com {R}\n")],
                Changed(0, 1),
            ),
            Changed(0, 2),
        ),
        case(
            "only another key type",
            22,
            &[Some("web1.example.com {R}\n")],
            Changed(0, 1),
        ),
        case(
            "wrong in first file, right in second",
            22,
            &[
                Some("web1.example.com {O}\n"),
                Some("web1.example.com {K}\n"),
            ],
            Known(1, 1),
        ),
        case(
            "changed in second file",
            22,
            &[
                Some("db1.example.com {O}\n"),
                Some("web1.example.com {O}\n"),
            ],
            Changed(1, 1),
        ),
        case(
            "revoked after known",
            22,
            &[Some("web1.example.com {K}\n@revoked * {K}\n")],
            Revoked(0, 2),
        ),
        case(
            "revoked in first file, known in second",
            22,
            &[
                Some("@revoked web1.example.com {K}\n"),
                Some("web1.example.com {K}\n"),
            ],
            Revoked(0, 1),
        ),
        case(
            "revoked for another host",
            22,
            &[Some("web1.example.com {K}\n@revoked db1.example.com {K}\n")],
            Known(0, 1),
        ),
        case(
            "another key revoked",
            22,
            &[Some(
                "@revoked web1.example.com {O}\nweb1.example.com {K}\n",
            )],
            Known(0, 2),
        ),
        differs(
            case(
                "revoked, tab after the marker",
                22,
                &[Some(
                    "@revoked\tweb1.example.com {K}\nweb1.example.com {K}\n",
                )],
                Revoked(0, 1),
            ),
            Known(0, 2),
        ),
        case(
            "cert authority with this key",
            22,
            &[Some("@cert-authority web1.example.com {K}\n")],
            Unknown,
        ),
        case(
            "cert authority with another key",
            22,
            &[Some("@cert-authority *.example.com {O}\n")],
            Unknown,
        ),
        case("wildcard", 22, &[Some("*.example.com {K}\n")], Known(0, 1)),
        case(
            "question mark",
            22,
            &[Some("web?.example.com {K}\n")],
            Known(0, 1),
        ),
        case(
            "negated host",
            22,
            &[Some("*.example.com,!web1.example.com {K}\n")],
            Unknown,
        ),
        case(
            "negated host first",
            22,
            &[Some("!web1.example.com,*.example.com {K}\n")],
            Unknown,
        ),
        case(
            "negated other host",
            22,
            &[Some("!db1.example.com,*.example.com {K}\n")],
            Known(0, 1),
        ),
        case(
            "negated line with another key is not a change",
            22,
            &[Some("*,!web1.* {O}\n")],
            Unknown,
        ),
        case(
            "upper case pattern",
            22,
            &[Some("WEB1.Example.COM {K}\n")],
            Known(0, 1),
        ),
        case(
            "comma list",
            22,
            &[Some("db1,web1.example.com,10.0.0.1 {K}\n")],
            Known(0, 1),
        ),
        case(
            "hashed",
            22,
            &[Some("{H db1.example.com} {O}\n{H web1.example.com} {K}\n")],
            Known(0, 2),
        ),
        case(
            "hashed, another key",
            22,
            &[Some("{H web1.example.com} {O}\n")],
            Changed(0, 1),
        ),
        case(
            "hashed port",
            2222,
            &[Some("{H [web1.example.com]:2222} {K}\n")],
            Known(0, 1),
        ),
        case(
            "port",
            2222,
            &[Some("web1.example.com {O}\n[web1.example.com]:2222 {K}\n")],
            Known(0, 2),
        ),
        case(
            "port in a wildcard",
            2222,
            &[Some("[web1.example.com]:* {K}\n")],
            Known(0, 1),
        ),
        case(
            "bracketed port 22 is not port 22",
            22,
            &[Some("[web1.example.com]:22 {K}\n")],
            Unknown,
        ),
        case(
            "port falls back to the plain host",
            2222,
            &[Some("web1.example.com {K}\n")],
            Known(0, 1),
        ),
        case(
            "port fallback ignores another key",
            2222,
            &[Some("web1.example.com {O}\n")],
            Unknown,
        ),
        case(
            "port changed, plain host known",
            2222,
            &[Some("[web1.example.com]:2222 {O}\nweb1.example.com {K}\n")],
            Changed(0, 1),
        ),
        differs(
            case(
                "port fallback finds a revocation",
                2222,
                &[Some(
                    "@revoked web1.example.com {K}\nweb1.example.com {K}\n",
                )],
                Revoked(0, 1),
            ),
            Unknown,
        ),
        case(
            "unparsable lines are skipped",
            22,
            &[Some(concat!(
                "web1.example.com ssh-ed25519 !!!\n",
                "web1.example.com ssh-rsa {Kb}\n",
                "web1.example.com\n",
                "web1.example.com ssh-ed25519\n",
                "@foo web1.example.com {O}\n",
                "@revoked @revoked web1.example.com {K}\n",
                "|2|abc|def {O}\n",
                "web1.example.com {K}\n",
            ))],
            Known(0, 8),
        ),
    ];

    fn status_of(expect: Expect, files: &[PathBuf]) -> HostKeyStatus {
        match expect {
            Known(file, line) => HostKeyStatus::Known {
                file: files[file].clone(),
                line,
            },
            Unknown => HostKeyStatus::Unknown,
            Changed(file, line) => HostKeyStatus::Changed {
                file: files[file].clone(),
                line,
                expected_key_type: String::new(),
                expected_fingerprint: String::new(),
            },
            Revoked(file, line) => HostKeyStatus::Revoked {
                file: files[file].clone(),
                line,
            },
        }
    }

    fn expect_of(status: &HostKeyStatus, files: &[PathBuf]) -> Expect {
        let index = |file: &PathBuf| files.iter().position(|path| path == file).unwrap();
        match status {
            HostKeyStatus::Known { file, line } => Known(index(file), *line),
            HostKeyStatus::Unknown => Unknown,
            HostKeyStatus::Changed { file, line, .. } => Changed(index(file), *line),
            HostKeyStatus::Revoked { file, line } => Revoked(index(file), *line),
        }
    }

    /// Drops the expected key's details, which the case tables do not spell out.
    fn without_details(status: HostKeyStatus) -> HostKeyStatus {
        match status {
            HostKeyStatus::Changed { file, line, .. } => HostKeyStatus::Changed {
                file,
                line,
                expected_key_type: String::new(),
                expected_fingerprint: String::new(),
            },
            other => other,
        }
    }

    /// Writes a case's files into `dir`, returning all their paths (missing ones included).
    fn write_case(dir: &Path, case: &Case, keys: &Keys) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for (index, text) in case.files.iter().enumerate() {
            let path = dir.join(format!("known_hosts{index}"));
            if let Some(text) = text {
                fs::write(&path, render(text, keys)).unwrap();
            }
            paths.push(path);
        }
        paths
    }

    fn synthetic_keys() -> Keys {
        Keys {
            presented: ed25519(1),
            other: ed25519(2),
            rsa: rsa(3),
        }
    }

    #[test]
    fn check_table() {
        let keys = synthetic_keys();
        for (index, case) in CASES.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let files = write_case(dir.path(), case, &keys);
            let status = check(&files, HOST, case.port, &keys.presented).unwrap();
            assert_eq!(
                without_details(status),
                status_of(case.expect, &files),
                "case {index}: {}",
                case.name
            );
        }
    }

    #[test]
    fn changed_names_the_expected_key() {
        let keys = synthetic_keys();
        let text = render("web1.example.com {R}\n", &keys);
        let status = KnownHosts::parse(Path::new("kh"), &text).check(HOST, 22, &keys.presented);
        assert_eq!(
            status,
            HostKeyStatus::Changed {
                file: PathBuf::from("kh"),
                line: 1,
                expected_key_type: "ssh-rsa".to_string(),
                expected_fingerprint: keys.rsa.fingerprint(),
            }
        );
    }

    #[test]
    fn glob_table() {
        let table: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "abd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("?", "", false),
            ("*?", "", false),
            ("*?", "a", true),
            ("**a", "bba", true),
            ("*a*b", "xaxb", true),
            ("*a*b", "xaxbx", false),
            ("a*b*c", "abxbyc", true),
            ("*.example.com", "web1.example.com", true),
            ("*.example.com", "example.com", false),
            ("10.0.0.*", "10.0.0.17", true),
            ("[web1]:*", "[web1]:2222", true),
            ("abc", "abcd", false),
        ];
        for (pattern, text, expected) in table {
            assert_eq!(
                glob_match(text.as_bytes(), pattern.as_bytes()),
                *expected,
                "{pattern:?} vs {text:?}"
            );
        }
    }

    #[test]
    fn pattern_list_table() {
        let long = "a".repeat(MAX_SUBPATTERN);
        let long_list = format!("web1,{long}");
        let almost_long = format!("web1,{}", "a".repeat(MAX_SUBPATTERN - 1));
        let table: &[(&str, &str, bool)] = &[
            ("web1,db1", "db1", true),
            ("web1,db1", "db2", false),
            ("*,!db1", "db1", false),
            ("!db1,*", "db1", false),
            ("!db1,*", "web1", true),
            ("!db1", "web1", false),
            ("WEB1", "web1", true),
            ("web1", "WEB1", true),
            ("", "web1", false),
            ("web1,", "web1", true),
            (",web1", "web1", true),
            ("[web1]:2222", "[web1]:2222", true),
            ("[web1]:2222", "web1", false),
            ("web1", "[web1]:2222", false),
            (&long_list, "web1", false),
            (&almost_long, "web1", true),
        ];
        for (list, name, expected) in table {
            assert_eq!(
                match_pattern_list(name, list),
                *expected,
                "{list:?} vs {name:?}"
            );
        }
    }

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
            let got = parse_line(&line).map(|parsed| {
                parsed.map(|parsed| (parsed.marker, matches!(parsed.hosts, Hosts::Hashed { .. })))
            });
            match (&got, &expected) {
                (Err(reason), Err(part)) => {
                    assert!(reason.contains(part), "{line:?}: {reason:?} lacks {part:?}")
                }
                _ => assert_eq!(got, expected.map_err(str::to_string), "{line:?}"),
            }
        }
    }

    #[test]
    fn invalid_lines_are_reported_with_file_and_line() {
        let text = format!(
            "# ok\nweb1 ssh-ed25519 !!!\nweb1 {}\n",
            ed25519(1).to_openssh()
        );
        let known_hosts = KnownHosts::parse(Path::new("/x/known_hosts"), &text);
        assert_eq!(known_hosts.entries().len(), 1);
        let invalid: Vec<String> = known_hosts
            .invalid_lines()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(invalid.len(), 1);
        assert!(
            invalid[0].starts_with("/x/known_hosts:2: bad base64"),
            "{invalid:?}"
        );
    }

    #[test]
    fn hashes_match_ssh_keygen_vectors() {
        // Made by `ssh-keygen -H` from plain lines for these names.
        let vectors = [
            (
                "web1.example.com",
                "|1|n1ZwIXrlCm6bONyNFGUefzxjnDU=|DWIwZjehj8hr5eNUxSi9Vwae8xg=",
            ),
            (
                "[web1.example.com]:2222",
                "|1|RD9w7FrUBIU4mDy5IdJ+VoDiROo=|+q85BXH6x2ynsfksf+H0gmK4f5I=",
            ),
        ];
        for (name, field) in vectors {
            let Ok(Hosts::Hashed { salt, .. }) = parse_hosts(field) else {
                panic!("{field} is hashed")
            };
            assert_eq!(hash_host(name, &salt), field);
            let line = format!("{field} {}", ed25519(1).to_openssh());
            let known_hosts = KnownHosts::parse(Path::new("kh"), &line);
            let entry = &known_hosts.entries()[0];
            assert!(entry.is_hashed());
            assert!(entry.matches_name(name));
            assert!(!entry.matches_name("web2.example.com"));
        }
    }

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
    fn lookup_names_and_key_types() {
        assert_eq!(lookup_name("Web1.Example.com", 22), "web1.example.com");
        assert_eq!(lookup_name("web1", 0), "web1");
        assert_eq!(lookup_name("web1", 2222), "[web1]:2222");
        assert_eq!(lookup_name("::1", 2222), "[::1]:2222");
        let keys = synthetic_keys();
        let text = render(
            "web1 {O}\n*,!db1 {R}\nweb1 {K}\n@revoked web1 {R}\n@cert-authority * {K}\n",
            &keys,
        );
        let known_hosts = KnownHosts::parse(Path::new("kh"), &text);
        assert_eq!(
            known_hosts.key_types("web1", 22),
            ["ssh-ed25519", "ssh-rsa"]
        );
        assert_eq!(known_hosts.key_types("web1", 2222), ["ssh-rsa"]);
        assert!(known_hosts.key_types("db1", 22).is_empty());
        let fallback = KnownHosts::parse(Path::new("kh"), &render("web1 {O}\n", &keys));
        assert_eq!(fallback.key_types("web1", 2222), ["ssh-ed25519"]);
    }

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
    fn read_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be read as a file.
        let error = check(&[dir.path().to_path_buf()], HOST, 22, &ed25519(1)).unwrap_err();
        assert!(matches!(error, KnownHostsError::Read { .. }));
        assert!(
            error
                .to_string()
                .contains(&format!("`{}`", dir.path().display())),
            "{error}"
        );
    }

    // ---- Comparisons with the real OpenSSH tools ----

    fn ssh_keygen(args: &[&str]) -> std::process::Output {
        Command::new("ssh-keygen")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ssh-keygen (openssh-client) is needed by these tests")
    }

    /// Makes a key pair `name` in `dir` and returns its public key.
    fn keygen(dir: &Path, name: &str, kind: &[&str]) -> PublicKey {
        let path = dir.join(name);
        let path = path.to_str().unwrap();
        let mut args = vec!["-q", "-N", "", "-C", "test", "-f", path];
        args.extend_from_slice(kind);
        let output = ssh_keygen(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        PublicKey::from_openssh(&fs::read_to_string(format!("{path}.pub")).unwrap()).unwrap()
    }

    /// The line numbers `ssh-keygen -F name -f file` reports.
    fn ssh_keygen_find(file: &Path, name: &str) -> Vec<usize> {
        let output = ssh_keygen(&["-F", name, "-f", file.to_str().unwrap()]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix(&format!("# Host {name} found: line ")))
            .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
            .collect()
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

    #[test]
    fn host_matching_agrees_with_ssh_keygen_find() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys {
            presented: keygen(dir.path(), "k", &["-t", "ed25519"]),
            other: keygen(dir.path(), "o", &["-t", "ed25519"]),
            rsa: keygen(dir.path(), "r", &["-t", "rsa", "-b", "1024"]),
        };
        let plain = dir.path().join("plain");
        fs::write(
            &plain,
            render(
                concat!(
                    "web1.example.com {K}\n",
                    "db1.example.com,web1.example.com {O}\n",
                    "*.example.com,!db1.example.com {R}\n",
                    "web?.example.com {K}\n",
                    "[web1.example.com]:2222 {K}\n",
                    "[web1.example.com]:* {O}\n",
                    "10.0.0.*,!10.0.0.2 {K}\n",
                    "@revoked web1.example.com {O}\n",
                    "@cert-authority *.example.com {K}\n",
                    "  WEB1.EXAMPLE.COM\t\t{Kt} comment\n",
                    "# web1.example.com {K}\n",
                    "!web1.example.com,* {O}\n",
                    "x.test,,y.test {R}\n",
                    "{H web1.example.com} {K}\n",
                ),
                &keys,
            ),
        )
        .unwrap();
        // The same entries with host names hashed by OpenSSH itself.
        let hashed = dir.path().join("hashed");
        fs::copy(&plain, &hashed).unwrap();
        let output = ssh_keygen(&["-H", "-f", hashed.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let names = [
            "web1.example.com",
            "db1.example.com",
            "web12.example.com",
            "[web1.example.com]:2222",
            "[web1.example.com]:22",
            "10.0.0.1",
            "10.0.0.2",
            "x.test",
            "y.test",
            "z.test",
        ];
        for file in [&plain, &hashed] {
            let known_hosts = KnownHosts::load(std::slice::from_ref(file)).unwrap();
            assert!(
                known_hosts.invalid_lines().is_empty(),
                "{:?}",
                known_hosts.invalid_lines()
            );
            assert!(
                known_hosts
                    .entries()
                    .iter()
                    .filter(|entry| entry.is_hashed())
                    .count()
                    >= if file == &hashed { 3 } else { 1 }
            );
            for name in names {
                let ours: Vec<usize> = known_hosts
                    .entries()
                    .iter()
                    .filter(|entry| entry.matches_name(name))
                    .map(Entry::line)
                    .collect();
                assert_eq!(
                    ours,
                    ssh_keygen_find(file, name),
                    "{} for {name}",
                    file.display()
                );
            }
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

    /// `sshd`, if installed: the verdict test below runs the real `ssh` client against it.
    fn sshd_path() -> Option<PathBuf> {
        ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
    }

    /// What the real `ssh` decides for `host` on `port` with these user known_hosts files, its
    /// server being `sshd -i` on a pipe (no network). Outcomes as [`Expect`]; OpenSSH prints no
    /// location for a revoked key, so that is reported as line 0 of file 0.
    fn openssh_verdict(sshd: &Path, config: &Path, files: &[PathBuf], port: u16) -> Expect {
        let user_files = files
            .iter()
            .map(|path| path.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new("ssh")
            .args(["-F", "/dev/null", "-v", "-p", &port.to_string()])
            .arg(format!(
                "-oProxyCommand={} -i -f {}",
                sshd.display(),
                config.display()
            ))
            .arg(format!("-oUserKnownHostsFile={user_files}"))
            .args([
                "-oGlobalKnownHostsFile=/dev/null",
                "-oStrictHostKeyChecking=yes",
                "-oBatchMode=yes",
                "-oCheckHostIP=no",
                "-oUpdateHostKeys=no",
                "-oHostKeyAlgorithms=ssh-ed25519",
                "-oKexAlgorithms=curve25519-sha256",
                "-oIdentitiesOnly=yes",
                "-oIdentityFile=none",
                HOST,
                "true",
            ])
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
            .expect("ssh");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // `debug1: Found key in PATH:LINE`, `Offending ED25519 key in PATH:LINE`.
        let location = |prefix: &str| -> (usize, usize) {
            let place = stderr
                .lines()
                .filter(|line| line.starts_with(prefix))
                .find_map(|line| line.split_once(" key in "))
                .map(|(_, place)| place.trim())
                .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stderr}"));
            let (path, number) = place.rsplit_once(':').unwrap();
            let file = files
                .iter()
                .position(|file| file.to_str() == Some(path))
                .unwrap();
            (file, number.parse().unwrap())
        };
        if stderr.contains("Permission denied") {
            let (file, line) = location("debug1: Found key in ");
            Known(file, line)
        } else if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
            let (file, line) = location("Offending ");
            Changed(file, line)
        } else if stderr.contains("host key is known for") {
            Unknown
        } else if stderr.contains("REVOKED HOST KEY DETECTED") {
            Revoked(0, 0)
        } else {
            panic!("cannot read ssh's verdict:\n{stderr}");
        }
    }

    #[test]
    fn verdicts_agree_with_the_openssh_client() {
        let Some(sshd) = sshd_path() else {
            eprintln!("skipping: sshd (openssh-server) is not installed");
            return;
        };
        if !Path::new("/run/sshd").exists() {
            // sshd run by root needs its privilege separation directory; elsewhere this fails harmlessly.
            let _ = fs::create_dir_all("/run/sshd");
        }
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys {
            presented: keygen(dir.path(), "host_key", &["-t", "ed25519"]),
            other: keygen(dir.path(), "other", &["-t", "ed25519"]),
            rsa: keygen(dir.path(), "rsa", &["-t", "rsa", "-b", "1024"]),
        };
        let config = dir.path().join("sshd_config");
        fs::write(
            &config,
            format!(
                "HostKey {}\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication no\nLogLevel QUIET\n",
                dir.path().join("host_key").display()
            ),
        )
        .unwrap();

        // Files learned by us, read by OpenSSH.
        let learned = dir.path().join("learned/known_hosts");
        learn(&learned, HOST, 2222, &keys.presented).unwrap();
        learn(&learned, HOST, 22, &keys.presented).unwrap();
        assert_eq!(
            openssh_verdict(&sshd, &config, std::slice::from_ref(&learned), 2222),
            Known(0, 1)
        );
        assert_eq!(
            openssh_verdict(&sshd, &config, std::slice::from_ref(&learned), 22),
            Known(0, 2)
        );

        let verdicts: Vec<(usize, Expect, Expect)> = std::thread::scope(|scope| {
            let handles: Vec<_> = CASES
                .iter()
                .enumerate()
                .map(|(index, case)| {
                    let (dir, keys, sshd, config) = (dir.path(), &keys, &sshd, &config);
                    scope.spawn(move || {
                        let case_dir = dir.join(format!("case{index}"));
                        fs::create_dir(&case_dir).unwrap();
                        let files = write_case(&case_dir, case, keys);
                        let ours = without_details(
                            check(&files, HOST, case.port, &keys.presented).unwrap(),
                        );
                        let ours = expect_of(&ours, &files);
                        (
                            index,
                            ours,
                            openssh_verdict(sshd, config, &files, case.port),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .collect()
        });
        for (index, ours, openssh) in verdicts {
            let case = &CASES[index];
            assert_eq!(ours, case.expect, "ours, case {index}: {}", case.name);
            let expected = case.openssh.unwrap_or(case.expect);
            let expected = match expected {
                Revoked(..) => Revoked(0, 0),
                other => other,
            };
            assert_eq!(openssh, expected, "OpenSSH, case {index}: {}", case.name);
        }
    }
}
