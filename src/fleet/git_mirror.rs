//! The git strategy's mirror on this machine (`git_archive_on = "controller"`): a bare mirror
//! cloned once, fetched only when it lacks the revision wanted, and that one commit archived and
//! gzipped once, so the same bytes stream to every host and no host needs git or the
//! repository. Everything here blocks: call it from `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::quote::quote;

/// The revision to archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A commit already resolved with `git ls-remote`; `label` says what it is ("branch `main`").
    Commit { commit: String, label: String },
    /// A name given with `--revision`, resolved in the mirror after a fetch.
    Name(String),
}

impl Wanted {
    fn label(&self) -> String {
        match self {
            Wanted::Commit { commit, label } => format!("{label} (commit `{commit}`)"),
            Wanted::Name(name) => format!("revision `{name}`"),
        }
    }
}

/// One revision archived: its commit and the gzipped tar of its tree.
#[derive(Debug)]
pub struct Packed {
    pub commit: String,
    pub bytes: Vec<u8>,
    /// The command that archived it, for a dry run to show.
    pub command: String,
}

/// Why the mirror could not give the revision; each names the repository and the revision.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("`{}` cannot hold a git mirror: it names no directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot use the git mirror `{}` on this machine: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run `{command}` on this machine: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot fetch {wanted} from `{repository}` on this machine: `{command}` failed{}", tail(.stderr))]
    Fetch {
        repository: String,
        wanted: String,
        command: String,
        stderr: String,
    },
    #[error("{wanted} not found in `{repository}` (looked up in the mirror `{}` on this machine)", mirror.display())]
    NotFound {
        repository: String,
        wanted: String,
        mirror: PathBuf,
    },
    #[error("cannot archive {wanted} of `{repository}` on this machine: `{command}` failed{}", tail(.stderr))]
    Archive {
        repository: String,
        wanted: String,
        command: String,
        stderr: String,
    },
}

fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    let start = lines.len().saturating_sub(10);
    lines[start..]
        .iter()
        .map(|line| format!("\n  │ {line}"))
        .collect()
}

/// This machine's bare mirror of `repository`, in `dir`.
#[derive(Debug, Clone)]
pub struct GitMirror {
    dir: PathBuf,
    repository: String,
}

impl GitMirror {
    pub fn new(dir: PathBuf, repository: String) -> Result<GitMirror, MirrorError> {
        if dir.file_name().is_none() || dir.parent().is_none() {
            return Err(MirrorError::NotADirectory(dir));
        }
        Ok(GitMirror { dir, repository })
    }

    /// Bring the mirror as far as `wanted` needs, then archive its commit. The mirror's lock is
    /// held throughout, so two deploys from this machine never write into it at once.
    pub fn pack(&self, wanted: &Wanted) -> Result<Packed, MirrorError> {
        let _lock = self.lock()?;
        self.update(wanted)?;
        let commit = self.commit_of(wanted)?;
        let (bytes, command) = self.archive(&commit, wanted)?;
        Ok(Packed {
            commit,
            bytes,
            command,
        })
    }

    /// `dir` with `suffix` added to its name: the lock file, the clone in progress.
    fn beside(&self, suffix: &str) -> PathBuf {
        let mut name = self.dir.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.dir.with_file_name(name)
    }

    /// Lock the mirror (`<dir>.lock`). A parent directory dep creates gets a `.gitignore`, so
    /// the default `.dep/` beside the Deployfile never shows up in the project's `git status`.
    fn lock(&self) -> Result<File, MirrorError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MirrorError::Io { path, source }
        };
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        if !parent.exists() {
            fs::create_dir_all(parent).map_err(io(parent))?;
            let ignore = parent.join(".gitignore");
            fs::write(
                &ignore,
                "# dep's cache on this machine (git_archive_on = \"controller\")\n*\n",
            )
            .map_err(io(&ignore))?;
        }
        let path = self.beside(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    /// Clone the mirror if there is none; otherwise fetch, unless it has the commit already (a
    /// redeploy, a branch fetched with another). A name other than a full commit always
    /// fetches: the branch or tag may have moved.
    fn update(&self, wanted: &Wanted) -> Result<(), MirrorError> {
        if !self.dir.is_dir() {
            return self.clone_mirror(wanted);
        }
        let known = match wanted {
            Wanted::Commit { commit, .. } => Some(commit.as_str()),
            Wanted::Name(name) if is_full_commit(name) => Some(name.as_str()),
            Wanted::Name(_) => None,
        };
        if known.is_some_and(|commit| self.has(commit)) {
            return Ok(());
        }
        // The URL is given each time: a changed `repository` needs no other step.
        let args = [
            "fetch",
            "--prune",
            "--quiet",
            "--",
            &self.repository,
            "+refs/*:refs/*",
        ];
        self.fetching(wanted, self.git(Some(&self.dir), &args))
    }

    /// Clone beside the mirror, then rename: an interrupted clone never passes for a mirror.
    fn clone_mirror(&self, wanted: &Wanted) -> Result<(), MirrorError> {
        let partial = self.beside(".partial");
        if partial.exists() {
            fs::remove_dir_all(&partial).map_err(|source| MirrorError::Io {
                path: partial.clone(),
                source,
            })?;
        }
        let target = partial.display().to_string();
        let args = [
            "clone",
            "--mirror",
            "--quiet",
            "--",
            &self.repository,
            &target,
        ];
        self.fetching(wanted, self.git(None, &args))?;
        fs::rename(&partial, &self.dir).map_err(|source| MirrorError::Io {
            path: self.dir.clone(),
            source,
        })
    }

    fn fetching(
        &self,
        wanted: &Wanted,
        (command, shown): (Command, String),
    ) -> Result<(), MirrorError> {
        let output = run(command, &shown)?;
        if output.status.success() {
            return Ok(());
        }
        Err(MirrorError::Fetch {
            repository: self.repository.clone(),
            wanted: wanted.label(),
            command: shown,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    fn has(&self, commit: &str) -> bool {
        let (command, shown) = self.git(
            Some(&self.dir),
            &["cat-file", "-e", &format!("{commit}^{{commit}}")],
        );
        run(command, &shown).is_ok_and(|output| output.status.success())
    }

    /// The full commit `wanted` names in the mirror (annotated tags peeled).
    fn commit_of(&self, wanted: &Wanted) -> Result<String, MirrorError> {
        let name = match wanted {
            Wanted::Commit { commit, .. } => commit,
            Wanted::Name(name) => name,
        };
        let (command, shown) = self.git(
            Some(&self.dir),
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{name}^{{commit}}"),
            ],
        );
        let output = run(command, &shown)?;
        let commit = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if output.status.success() && !commit.is_empty() {
            return Ok(commit);
        }
        Err(MirrorError::NotFound {
            repository: self.repository.clone(),
            wanted: wanted.label(),
            mirror: self.dir.clone(),
        })
    }

    /// `git archive` of `commit` (a tar), gzipped while it streams; the same commit always
    /// packs to the same bytes.
    fn archive(&self, commit: &str, wanted: &Wanted) -> Result<(Vec<u8>, String), MirrorError> {
        let (mut command, shown) = self.git(Some(&self.dir), &["archive", "--format=tar", commit]);
        let spawn_error = |source| MirrorError::Spawn {
            command: shown.clone(),
            source,
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_error(std::io::ErrorKind::BrokenPipe.into()));
        };
        // stderr is read alongside, so a chatty git never blocks on a full pipe.
        let (copied, errors) = std::thread::scope(|scope| {
            let errors = scope.spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            });
            let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
            let copied = std::io::copy(&mut stdout, &mut encoder).and_then(|_| encoder.finish());
            (copied, errors.join().unwrap_or_default())
        });
        let status = child.wait().map_err(spawn_error)?;
        match copied {
            Ok(bytes) if status.success() => Ok((bytes, shown)),
            Ok(_) => Err(self.archive_error(wanted, &shown, errors)),
            Err(e) => Err(self.archive_error(wanted, &shown, format!("{errors}{e}"))),
        }
    }

    fn archive_error(&self, wanted: &Wanted, command: &str, stderr: String) -> MirrorError {
        MirrorError::Archive {
            repository: self.repository.clone(),
            wanted: wanted.label(),
            command: command.to_string(),
            stderr,
        }
    }

    /// `git [-C dir] args`, and how it reads in a message.
    fn git(&self, dir: Option<&Path>, args: &[&str]) -> (Command, String) {
        let mut command = Command::new("git");
        let mut shown = String::from("git");
        if let Some(dir) = dir {
            command.arg("-C").arg(dir);
            shown.push_str(&format!(" -C {}", quote(&dir.display().to_string())));
        }
        // dep run from a git hook inherits these: they would point every command at the
        // hook's repository instead of the mirror.
        for name in REPOSITORY_ENV {
            command.env_remove(name);
        }
        command.args(args).stdin(Stdio::null());
        for arg in args {
            shown.push(' ');
            shown.push_str(&quote(arg));
        }
        (command, shown)
    }
}

/// Environment variables that choose the repository git works on.
const REPOSITORY_ENV: [&str; 7] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
];

fn run(mut command: Command, shown: &str) -> Result<Output, MirrorError> {
    command.output().map_err(|source| MirrorError::Spawn {
        command: shown.to_string(),
        source,
    })
}

/// A full SHA-1 or SHA-256 commit id: when the mirror has it, it cannot have moved.
fn is_full_commit(name: &str) -> bool {
    matches!(name.len(), 40 | 64) && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run git in `dir` with a fixed identity and no user or system configuration.
    fn git(dir: &Path, args: &[&str]) -> String {
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
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn commit(repo: &Path, content: &str) -> String {
        std::fs::write(repo.join("index.html"), content).unwrap();
        git(repo, &["add", "."]);
        git(repo, &["commit", "-q", "-m", content]);
        git(repo, &["rev-parse", "HEAD"])
    }

    /// A repository with one commit, and a mirror of it under `cache/` (not created yet).
    fn setup() -> (tempfile::TempDir, PathBuf, GitMirror, String) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        let first = commit(&repo, "first\n");
        let mirror =
            GitMirror::new(dir.path().join("cache/repo"), repo.display().to_string()).unwrap();
        (dir, repo, mirror, first)
    }

    fn files(bytes: &[u8]) -> Vec<(String, String)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().display().to_string();
                let mut text = String::new();
                let _ = entry.read_to_string(&mut text);
                (path, text)
            })
            .filter(|(path, _)| path != "pax_global_header")
            .collect()
    }

    fn at(commit: &str) -> Wanted {
        Wanted::Commit {
            commit: commit.to_string(),
            label: "branch `main`".into(),
        }
    }

    #[test]
    fn clones_once_and_fetches_only_for_a_commit_it_lacks() {
        let (dir, repo, mirror, first) = setup();
        let packed = mirror.pack(&at(&first)).unwrap();
        assert_eq!(packed.commit, first);
        assert_eq!(
            files(&packed.bytes),
            vec![("index.html".into(), "first\n".into())]
        );
        assert_eq!(
            mirror.pack(&at(&first)).unwrap().bytes,
            packed.bytes,
            "the same commit packs to the same bytes"
        );
        let fetch_head = dir.path().join("cache/repo/FETCH_HEAD");
        assert!(!fetch_head.exists(), "a clone, then nothing fetched");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cache/.gitignore")).unwrap(),
            "# dep's cache on this machine (git_archive_on = \"controller\")\n*\n"
        );

        let second = commit(&repo, "second\n");
        let packed = mirror.pack(&at(&second)).unwrap();
        assert_eq!(
            files(&packed.bytes),
            vec![("index.html".into(), "second\n".into())]
        );
        assert!(fetch_head.exists(), "the new commit was fetched");
        std::fs::remove_file(&fetch_head).unwrap();
        mirror.pack(&at(&first)).unwrap();
        assert!(!fetch_head.exists(), "a commit the mirror had was fetched");
    }

    #[test]
    fn a_name_is_fetched_then_resolved_to_its_commit() {
        let (_dir, repo, mirror, first) = setup();
        mirror.pack(&at(&first)).unwrap();
        git(&repo, &["tag", "-a", "v1", "-m", "version 1"]);
        let second = commit(&repo, "second\n");
        for (name, commit) in [
            ("v1", &first),
            ("main", &second),
            (&first[..10], &first),
            (first.as_str(), &first),
        ] {
            let packed = mirror.pack(&Wanted::Name(name.to_string())).unwrap();
            assert_eq!(&packed.commit, commit, "{name}");
        }
    }

    #[test]
    fn errors_name_the_repository_and_the_revision() {
        let (dir, _repo, mirror, first) = setup();
        let repository = dir.path().join("repo").display().to_string();
        let unknown = "0123456789abcdef0123456789abcdef01234567";
        let error = mirror.pack(&Wanted::Name(unknown.into())).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "revision `{unknown}` not found in `{repository}` (looked up in the mirror `{}` on this machine)",
                dir.path().join("cache/repo").display()
            )
        );
        let missing = dir.path().join("missing").display().to_string();
        let error = GitMirror::new(dir.path().join("other/repo"), missing.clone())
            .unwrap()
            .pack(&at(&first))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!(
                "cannot fetch branch `main` (commit `{first}`) from `{missing}` on this machine: `git clone --mirror --quiet -- {missing} "
            )),
            "{error}"
        );
        assert!(
            !dir.path().join("other/repo").exists(),
            "a failed clone left a mirror"
        );
        assert!(matches!(
            GitMirror::new(PathBuf::from("/"), repository),
            Err(MirrorError::NotADirectory(_))
        ));
    }

    #[test]
    fn full_commits_are_recognised() {
        assert!(is_full_commit(&"a".repeat(40)));
        assert!(is_full_commit(&"0".repeat(64)));
        assert!(!is_full_commit("abc1234"));
        assert!(!is_full_commit(&"g".repeat(40)));
    }
}
