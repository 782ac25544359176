//! git for the tests' own repositories: a fixed identity and dates, `main` as the first branch,
//! no user or system configuration.

use std::fs;
use std::path::Path;
use std::process::Command;

/// Run git in `dir`; its standard output, trimmed. A failure fails the test, with git's error.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", "2025-01-01T10:00:00Z")
        .env("GIT_COMMITTER_DATE", "2025-01-01T10:00:00Z")
        .output()
        .expect("cannot run git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Commit `index.html` with `content` in `repo`; returns the commit.
#[track_caller]
pub fn commit(repo: &Path, content: &str) -> String {
    fs::write(repo.join("index.html"), content).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", content.trim()]);
    git(repo, &["rev-parse", "HEAD"])
}
