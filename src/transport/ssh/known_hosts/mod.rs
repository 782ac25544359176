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

mod key;
mod learn;
mod parse;
mod pattern;
#[cfg(test)]
mod test_support;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::key::PublicKey;
pub use self::learn::{learn, Learned};
use self::parse::{parse_line, Hosts};
pub use self::parse::{FormatError, Marker};
use self::pattern::{hash_host, match_pattern_list};

/// The port for which OpenSSH writes and looks up the plain host name.
const DEFAULT_PORT: u16 = 22;

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

/// One parsed `known_hosts` line holding a key.
#[derive(Debug, Clone)]
pub struct Entry {
    file: Arc<Path>,
    line: usize,
    marker: Option<Marker>,
    hosts: Hosts,
    key: PublicKey,
}

impl Entry {
    /// The line number, from 1.
    #[cfg(test)]
    pub fn line(&self) -> usize {
        self.line
    }

    /// Whether the host field is hashed (`|1|salt|hash`).
    #[cfg(test)]
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
    pub reason: FormatError,
}

impl fmt::Display for InvalidLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
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
    InvalidKey { reason: FormatError },
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
    #[cfg(test)]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The lines skipped as unparsable, for diagnostics.
    #[cfg(test)]
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

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::test_support::*;
    use super::*;

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

    #[test]
    fn host_matching_agrees_with_ssh_keygen_find() {
        let dir = tempfile::tempdir().unwrap();
        let keys = real_keys(dir.path());
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
        let keys = real_keys(dir.path());
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
