//! Issue 10: the git strategy archived once on the controller (`git_archive_on = "controller"`):
//! this machine keeps the mirror and archives the one revision, and every host is sent the same
//! bytes, so hosts need neither git nor the repository. Real sshd hosts whose `git` is broken,
//! and local hosts for dry runs, tags and errors.

use std::fs;
use std::path::Path;

use crate::support::git::{commit, git};
use crate::support::project::{Output, TestProject, T1, T2, T3};
use crate::support::sshd::Fleet;

/// A repository in `repo/` of the project: `main` at "one", then "two" (tagged `v1` at one).
/// Returns (the repository's path, commit one, commit two).
fn repository(project: &TestProject) -> (String, String, String) {
    let repo = project.join("repo");
    fs::create_dir_all(repo.join("lib")).unwrap();
    fs::write(repo.join("lib/app.txt"), "app\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let one = commit(&repo, "one\n");
    git(&repo, &["tag", "-a", "v1", "-m", "version 1"]);
    let two = commit(&repo, "two\n");
    (repo.display().to_string(), one, two)
}

/// The git strategy, archived on the controller, from `repository`.
fn archived_on_controller(project: TestProject, repository: &str) -> TestProject {
    project
        .config("strategy", "\"git\"")
        .config("repository", &format!("{repository:?}"))
        .config("git_archive_on", "\"controller\"")
}

/// A project whose hosts `host0..` are `fleet`'s sshd hosts, each with a `git` on its PATH that
/// fails and leaves a trace: a host that ran git at all is caught.
fn sshd_project(fleet: &Fleet) -> (TestProject, String, String, String) {
    let mut text = String::new();
    for (index, host) in fleet.hosts().iter().enumerate() {
        let stub = host.bin_dir().join("git");
        fs::write(
            &stub,
            "#!/bin/sh\necho \"$@\" >> \"$HOME/git-was-run\"\necho 'git: not on this host' >&2\nexit 127\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
        text.push_str(&fleet.host_table(index, &format!("host{index}"), "test"));
    }
    let project = TestProject::new().deployfile(&text);
    let (repository, one, two) = repository(&project);
    (
        archived_on_controller(project, &repository),
        repository,
        one,
        two,
    )
}

fn deploy(project: &TestProject, fleet: &Fleet, args: &[&str], now: &str) -> Output {
    let mut all = vec!["deploy", "test"];
    all.extend_from_slice(args);
    project.run_env(
        &all,
        &[
            ("DEP_SSH_CONFIG", fleet.ssh_config().to_str().unwrap()),
            ("SSH_AUTH_SOCK", ""),
            ("DEP_NOW", now),
        ],
    )
}

fn current(dir: &Path) -> Option<String> {
    fs::read_link(dir.join("current"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn log(dir: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(dir.join(".dep/releases.log"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Every host of `fleet` has `release` live with `commit`'s `content`, and never ran git.
fn assert_live(fleet: &Fleet, release: &str, commit: &str, content: &str) {
    for host in fleet.hosts() {
        let dp = host.deploy_path();
        let name = host.name();
        assert_eq!(current(dp).as_deref(), Some(release), "{name}");
        let dir = dp.join("current");
        assert_eq!(
            fs::read_to_string(dir.join("index.html")).unwrap(),
            content,
            "{name}"
        );
        assert_eq!(
            fs::read_to_string(dir.join("lib/app.txt")).unwrap(),
            "app\n",
            "{name}"
        );
        assert_eq!(
            fs::read_to_string(dir.join("REVISION")).unwrap(),
            format!("{commit}\n"),
            "{name}"
        );
        let entry = log(dp).pop().unwrap();
        assert_eq!(entry["release"], release, "{name}: {entry}");
        assert_eq!(entry["status"], "live", "{name}: {entry}");
        assert_eq!(entry["revision"], commit, "{name}: {entry}");
        assert!(!dp.join(".dep/repo").exists(), "{name} has a git mirror");
        assert!(
            !host.home().join("git-was-run").exists(),
            "{name} ran git: {}",
            fs::read_to_string(host.home().join("git-was-run")).unwrap_or_default()
        );
    }
}

#[test]
fn controller_archive_deploys_to_hosts_without_git() {
    let fleet = Fleet::start(3);
    let (project, _, _, two) = sshd_project(&fleet);
    deploy(&project, &fleet, &["--branch", "main"], T1).success();
    assert_live(&fleet, T1, &two, "two\n");
    for host in fleet.hosts() {
        assert_eq!(log(host.deploy_path()).pop().unwrap()["branch"], "main");
    }
    // The mirror is this machine's, kept out of the project's git status.
    let mirror = project.join(".dep/repo");
    assert_eq!(git(&mirror, &["rev-parse", "--is-bare-repository"]), "true");
    assert_eq!(
        fs::read_to_string(project.join(".dep/.gitignore")).unwrap(),
        "# dep's cache on this machine (git_archive_on = \"controller\")\n*\n"
    );
    // A redeploy of a commit the mirror has fetches nothing.
    deploy(&project, &fleet, &[], T2).success();
    assert_live(&fleet, T2, &two, "two\n");
    assert!(!mirror.join("FETCH_HEAD").exists(), "fetched again");
}

#[test]
fn controller_archive_deploys_an_older_revision_and_a_tag() {
    let fleet = Fleet::start(2);
    let (project, _, one, two) = sshd_project(&fleet);
    deploy(&project, &fleet, &[], T1).success();
    assert_live(&fleet, T1, &two, "two\n");
    // A short name, resolved to the full commit on this machine.
    deploy(&project, &fleet, &["--revision", &one[..10]], T2).success();
    assert_live(&fleet, T2, &one, "one\n");
    // An annotated tag records the commit it points at.
    deploy(&project, &fleet, &["--tag", "v1"], T3).success();
    assert_live(&fleet, T3, &one, "one\n");
}

#[test]
fn controller_archive_of_a_missing_revision_changes_no_host() {
    let fleet = Fleet::start(2);
    let (project, repository, _, two) = sshd_project(&fleet);
    deploy(&project, &fleet, &[], T1).success();
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let output = deploy(&project, &fleet, &["--revision", missing], T2);
    output.expect_status(1).stderr_has(&format!(
        "revision `{missing}` not found in `{repository}` (looked up in the mirror `{}` on this machine)",
        project.join(".dep/repo").display()
    ));
    deploy(&project, &fleet, &["--revision", "no-such-branch"], T2)
        .expect_status(1)
        .stderr_has(&format!(
            "revision `no-such-branch` not found in `{repository}`"
        ));
    deploy(&project, &fleet, &["--branch", "nope"], T2)
        .expect_status(1)
        .stderr_has(&format!("branch `nope` not found in `{repository}`"));
    assert_live(&fleet, T1, &two, "two\n");
    for host in fleet.hosts() {
        let dp = host.deploy_path();
        let releases: Vec<String> = fs::read_dir(dp.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(releases, vec![T1.to_string()], "{}", host.name());
        assert_eq!(log(dp).len(), 2, "{}: prepared and live only", host.name());
        assert!(
            !dp.join(".dep/deploy.lock").exists(),
            "{} locked",
            host.name()
        );
    }
}

/// The project's local hosts deploy from a repository archived on the controller.
fn local_project() -> (TestProject, String, String, String) {
    let project = TestProject::new().fleet(2);
    let (repository, one, two) = repository(&project);
    (
        archived_on_controller(project, &repository),
        repository,
        one,
        two,
    )
}

/// `text` with every "N bytes" count read as "[N] bytes": the gzip's size is git's and zlib's.
fn without_sizes(text: &str) -> String {
    let mut out = Vec::new();
    for word in text.split(' ') {
        out.push(
            if word.bytes().all(|b| b.is_ascii_digit()) && !word.is_empty() {
                "[N]"
            } else {
                word
            },
        );
    }
    out.join(" ")
}

#[test]
fn controller_archive_dry_run_shows_what_would_be_sent() {
    let (project, repository, one, two) = local_project();
    let output = project.run_env(&["deploy", "test", "--dry-run"], &[("DEP_NOW", T1)]);
    output.success();
    let stdout = without_sizes(&output.stdout);
    let mirror = project.join(".dep/repo").display().to_string();
    assert!(
        stdout.contains(&format!(
            "[local] deploy:update_code\n[local]   git -C {mirror} archive --format=tar {two} | gzip  # HEAD of {repository}: [N] bytes, streamed to every host\n"
        )),
        "{}",
        output.transcript()
    );
    for host in ["h1", "h2"] {
        let release = project.deploy_path(host).join("releases").join(T1);
        let release = release.display();
        assert!(
            stdout.contains(&format!(
                "[{host}] deploy:update_code\n[{host}]   tar -xzf - -C {release} && printf '%s\\n' {two} > {release}/REVISION  # with [N] bytes on stdin\n"
            )),
            "{}",
            output.transcript()
        );
        assert!(!project.deploy_path(host).exists(), "{host} created");
    }
    // No host is asked to run git.
    assert!(
        !output.stdout.contains("git clone"),
        "{}",
        output.transcript()
    );
    // A `--revision` name is resolved on this machine in a dry run too.
    let output = project.run_env(
        &["deploy", "test", "--dry-run", "--revision", &one[..8]],
        &[("DEP_NOW", T1)],
    );
    output.success();
    let short = &one[..8];
    assert!(
        without_sizes(&output.stdout).contains(&format!(
            "archive --format=tar {one} | gzip  # revision `{short}` of {repository}: [N] bytes, streamed to every host\n"
        )),
        "{}",
        output.transcript()
    );
}

#[test]
fn controller_archive_tags_the_deployed_revision_and_stays_out_of_git_status() {
    // The project is the repository: its mirror lives in its own working tree.
    let project = TestProject::new().fleet(2).config("deploy_tag", "true");
    let dir = project.path().to_path_buf();
    fs::write(dir.join(".gitignore"), "/hosts/\n/Deployfile.toml\n").unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "app", ".gitignore"]);
    git(&dir, &["commit", "-q", "-m", "app"]);
    git(&dir, &["init", "-q", "--bare", "origin.git"]);
    let origin = dir.join("origin.git").display().to_string();
    git(&dir, &["remote", "add", "origin", &origin]);
    git(&dir, &["push", "-q", "origin", "main"]);
    let head = git(&dir, &["rev-parse", "HEAD"]);
    let project = archived_on_controller(project, &origin);
    project.deploy_at(T1);
    for host in ["h1", "h2"] {
        let current = project.deploy_path(host).join("current");
        assert_eq!(
            fs::read_to_string(current.join("app/index.html")).unwrap(),
            "hello\n"
        );
        assert_eq!(
            project.last_entry(host, T1).unwrap()["revision"],
            head.as_str()
        );
    }
    let pushed = git(
        &dir,
        &[
            "ls-remote",
            "origin",
            &format!("refs/tags/deploy/test/{T1}"),
        ],
    );
    assert!(
        pushed.starts_with(&head),
        "origin has {pushed:?}, deployed {head}"
    );
    assert!(
        dir.join(".dep/repo").is_dir(),
        "no mirror in the working tree"
    );
    assert_eq!(
        git(&dir, &["status", "--porcelain", "--ignored=no"]),
        "?? origin.git/"
    );
}

#[test]
fn controller_archive_errors_before_any_host_changes() {
    let (project, _, _, _) = local_project();
    let missing = project.join("missing").display().to_string();
    let project = project.config("repository", &format!("{missing:?}"));
    // A name is fetched first: the clone fails, naming the repository and the revision.
    project
        .run_env(&["deploy", "test", "--revision", "main"], &[("DEP_NOW", T1)])
        .expect_status(1)
        .stderr_has(&format!(
            "cannot fetch revision `main` from `{missing}` on this machine: `git clone --mirror --quiet -- {missing} "
        ));
    assert!(
        !project.join(".dep/repo").exists(),
        "a failed clone left a mirror"
    );
    project
        .run_env(&["deploy", "test"], &[("DEP_NOW", T1)])
        .expect_status(1)
        .stderr_has(&format!("cannot read `{missing}` with `git ls-remote"));
    let wrong = project.config("git_archive_on", "\"laptop\"");
    wrong
        .run_env(&["deploy", "test"], &[("DEP_NOW", T1)])
        .expect_status(2)
        .stderr_has("unknown `git_archive_on = \"laptop\"` (use \"host\" or \"controller\")");
    for host in ["h1", "h2"] {
        assert!(!wrong.deploy_path(host).exists(), "{host} was touched");
    }
}
