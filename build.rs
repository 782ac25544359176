//! `dep --version` names the commit it was built from: `dep 0.1.0 (1a2b3c4)`, from
//! `git rev-parse --short HEAD` when the source is a git checkout; a build from a tarball (no
//! `.git`, or no git at all) is plain `dep 0.1.0`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    // Only dep's own checkout: a tarball unpacked inside some other repository is not.
    let manifest_dir = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).ok();
    let own_checkout = git(&["rev-parse", "--show-toplevel"])
        .and_then(|top| std::fs::canonicalize(top).ok())
        .is_some_and(|top| Some(top) == manifest_dir);
    let commit = own_checkout
        .then(|| git(&["rev-parse", "--short", "HEAD"]))
        .flatten();
    let long = match &commit {
        Some(commit) => format!("{version} ({commit})"),
        None => version.to_string(),
    };
    println!("cargo:rustc-env=DEP_VERSION={long}");
    println!("cargo:rerun-if-changed=build.rs");
    // Build again when HEAD moves: the files git changes then (in a worktree too).
    if commit.is_some() {
        for name in ["HEAD", "packed-refs"] {
            watch(git(&["rev-parse", "--git-path", name]));
        }
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(git(&["rev-parse", "--git-path", &branch]));
        }
    }
}

fn watch(path: Option<String>) {
    let Some(path) = path.map(|p| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)) else {
        return;
    };
    if path.exists() {
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// git's answer in the package's directory, or None (no git, not a checkout, an error).
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}
