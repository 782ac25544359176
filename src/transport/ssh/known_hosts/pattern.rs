//! Host patterns as OpenSSH matches them: comma lists of `*`/`?` globs with `!` negation, and
//! hashed host names (`|1|salt|hash`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// How a hashed host field starts (`HASH_MAGIC` in OpenSSH).
pub(super) const HASH_MAGIC: &str = "|1|";

/// OpenSSH's `match_pattern_list` copies a subpattern into a 1024-byte buffer: from 1023 bytes on,
/// the whole list fails to match.
const MAX_SUBPATTERN: usize = 1023;

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, as OpenSSH's `host_hash`.
pub(super) fn hash_host(name: &str, salt: &[u8]) -> String {
    // HMAC accepts a key of any length: this cannot fail.
    let mut mac =
        <Hmac<Sha1> as KeyInit>::new_from_slice(salt).expect("HMAC takes keys of any length");
    mac.update(name.as_bytes());
    format!(
        "{HASH_MAGIC}{}|{}",
        STANDARD.encode(salt),
        STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// OpenSSH's `match_hostname`: true when some pattern of the comma list matches `name` (both
/// compared in ASCII lower case) and no negated `!pattern` does.
pub(super) fn match_pattern_list(name: &str, list: &str) -> bool {
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
    use std::path::Path;

    use super::*;
    use crate::transport::ssh::known_hosts::parse::{parse_hosts, Hosts};
    use crate::transport::ssh::known_hosts::test_support::*;
    use crate::transport::ssh::known_hosts::KnownHosts;

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
}
