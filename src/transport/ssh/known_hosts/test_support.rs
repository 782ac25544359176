//! Keys and helpers the known_hosts tests share: synthetic keys, file templates, ssh-keygen.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::parse::SALT_LEN;
use super::pattern::hash_host;
use super::PublicKey;

/// A wire blob: SSH strings for the type and each part.
pub fn blob(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

pub fn ed25519(seed: u8) -> PublicKey {
    PublicKey::new("ssh-ed25519", blob(&[b"ssh-ed25519", &[seed; 32]]))
}

pub fn rsa(seed: u8) -> PublicKey {
    PublicKey::new("ssh-rsa", blob(&[b"ssh-rsa", &[1, 0, 1], &[seed; 65]]))
}

/// The keys a case's files are written with: `{K}` the presented key, `{O}` another
/// ed25519 key, `{R}` an RSA key; `{Kt}` is `{K}` with tabs, `{Kb}` its base64 alone,
/// `{H name}` the hashed form of `name`.
pub struct Keys {
    pub presented: PublicKey,
    pub other: PublicKey,
    pub rsa: PublicKey,
}

pub fn render(template: &str, keys: &Keys) -> String {
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

pub fn synthetic_keys() -> Keys {
    Keys {
        presented: ed25519(1),
        other: ed25519(2),
        rsa: rsa(3),
    }
}

pub fn ssh_keygen(args: &[&str]) -> std::process::Output {
    Command::new("ssh-keygen")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen (openssh-client) is needed by these tests")
}

/// Makes a key pair `name` in `dir` and returns its public key.
pub fn keygen(dir: &Path, name: &str, kind: &[&str]) -> PublicKey {
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
pub fn ssh_keygen_find(file: &Path, name: &str) -> Vec<usize> {
    let output = ssh_keygen(&["-F", name, "-f", file.to_str().unwrap()]);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("# Host {name} found: line ")))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// Keys made by ssh-keygen in `dir`: the presented one is the key pair `host_key` (an sshd
/// host key), then `other` (ed25519) and `rsa`.
pub fn real_keys(dir: &Path) -> Keys {
    Keys {
        presented: keygen(dir, "host_key", &["-t", "ed25519"]),
        other: keygen(dir, "other", &["-t", "ed25519"]),
        rsa: keygen(dir, "rsa", &["-t", "rsa", "-b", "1024"]),
    }
}
