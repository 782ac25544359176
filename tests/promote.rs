//! Issue 13: `dep promote FROM TO` deploys to TO exactly what is live on FROM: the same commit
//! (git strategy) however the branch moved on, or the same bytes (upload, artifact: the sha256
//! FROM's releases log recorded). Refusals (exit 1) change nothing on TO. Local hosts: two of
//! stage `staging` (s1, s2), two of stage `production` (p1, p2).

use std::fs;
use std::process::Command;

use crate::support::git::{commit, git};
use crate::support::project::{TestProject, T1, T2, T3, T4};

const STAGING: [&str; 2] = ["s1", "s2"];
const PRODUCTION: [&str; 2] = ["p1", "p2"];

/// A health check that fails on a host whose deploy path holds a file named `broken`.
const HEALTH: &str =
    "[[health]]\nname = \"alive\"\ncommand = \"test ! -e {{ deploy_path }}/broken\"\n";

/// `project` with the four local hosts and the health check.
fn two_stages(mut project: TestProject) -> TestProject {
    for (stage, hosts) in [("staging", STAGING), ("production", PRODUCTION)] {
        for host in hosts {
            project = project.local_host(host, stage, &[]);
        }
    }
    project.top(HEALTH)
}

/// The log lines of `host`, as text (to compare before and after a refusal).
fn log_text(project: &TestProject, host: &str) -> String {
    fs::read_to_string(project.deploy_path(host).join(".dep/releases.log")).unwrap_or_default()
}

/// A refused promotion left TO as it was: the same releases and log, and no lock.
#[track_caller]
fn unchanged(project: &TestProject, before: &[(Vec<String>, String)]) {
    for (host, (releases, log)) in PRODUCTION.iter().zip(before) {
        assert_eq!(&project.releases(host), releases, "{host}: release dirs");
        assert_eq!(&log_text(project, host), log, "{host}: releases log");
        assert!(!project.locked(host), "{host}: a lock was left");
    }
}

fn production_state(project: &TestProject) -> Vec<(Vec<String>, String)> {
    PRODUCTION
        .iter()
        .map(|h| (project.releases(h), log_text(project, h)))
        .collect()
}

#[test]
fn upload_promotes_the_bytes_live_on_staging_and_records_where_they_came_from() {
    let project = two_stages(TestProject::new());
    project.dep(&["deploy", "staging"]).now(T1).run();
    let staged = project.last_entry("s1", T1).unwrap();
    let sha256 = staged["sha256"]
        .as_str()
        .expect("an upload records its sha256");
    assert_eq!(sha256.len(), 64, "{staged}");
    assert_eq!(project.last_entry("s2", T1).unwrap()["sha256"], sha256);

    // A dry run reads staging and prints what production would run, changing nothing there.
    let before = production_state(&project);
    project
        .dep(&["promote", "staging", "production", "--dry-run"])
        .now(T2)
        .run()
        .stdout_has("[p1] deploy:update_code")
        .stdout_has("\"promoted_from\":{\"stage\":\"staging\",\"release\":\"20250101100000\"}")
        .stdout_has("dry run: release 20250101110000 would be deployed");
    unchanged(&project, &before);
    assert!(
        !project.deploy_path("p1").exists(),
        "a dry run made the deploy path"
    );

    project
        .dep(&["promote", "staging", "production", "--no-watch"])
        .now(T2)
        .run();
    for host in PRODUCTION {
        assert_eq!(project.current(host).as_deref(), Some(T2), "{host}");
        let entry = project.last_entry(host, T2).unwrap();
        assert_eq!(entry["status"], "live", "{host}: {entry}");
        assert_eq!(entry["sha256"], sha256, "{host}: {entry}");
        assert_eq!(
            entry["promoted_from"],
            serde_json::json!({"stage": "staging", "release": T1}),
            "{host}: {entry}"
        );
        let served = fs::read_to_string(project.deploy_path(host).join("current/index.html"));
        assert_eq!(served.unwrap(), "hello\n");
    }
    // `dep releases --json` shows both.
    let output = project.run(&["releases", "production", "--json"]);
    output.success();
    let first: serde_json::Value =
        serde_json::from_str(output.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["releases"][0]["sha256"], sha256, "{first}");
    assert_eq!(
        first["releases"][0]["promoted_from"]["release"], T1,
        "{first}"
    );
    // Staging was only read.
    for host in STAGING {
        assert_eq!(project.releases(host), vec![T1.to_string()]);
        assert!(!project.locked(host));
    }
}

#[test]
fn upload_refuses_when_the_bytes_changed_since_staging_got_them() {
    let project = two_stages(TestProject::new());
    project.dep(&["deploy", "production"]).now(T1).run();
    project.dep(&["deploy", "staging"]).now(T2).run();
    project.write("app/index.html", "changed after staging\n");
    let before = production_state(&project);
    let output = project
        .dep(&["promote", "staging", "production"])
        .now(T3)
        .status(1)
        .run();
    output
        .stderr_has("promotion from `staging` refused, nothing was changed")
        .stderr_has("would send other bytes than release 20250101110000 was sent");
    unchanged(&project, &before);
    assert_eq!(project.current("p1").as_deref(), Some(T1));
}

#[test]
fn artifact_promotes_the_same_archive_and_refuses_another() {
    let project = two_stages(
        TestProject::new()
            .config("strategy", "\"artifact\"")
            .config("artifact_path", "\"build/app.tar.gz\""),
    );
    // A build made elsewhere: a .tar.gz sent as is.
    let build = project.join("build");
    fs::create_dir_all(&build).unwrap();
    let tar = |content: &str| {
        let dir = project.join("src-tree");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("index.html"), content).unwrap();
        let status = Command::new("tar")
            .arg("-czf")
            .arg(build.join("app.tar.gz"))
            .arg("-C")
            .arg(&dir)
            .arg("index.html")
            .status()
            .unwrap();
        assert!(status.success());
    };
    tar("built once\n");
    project.dep(&["deploy", "staging"]).now(T1).run();
    project
        .dep(&["promote", "staging", "production"])
        .now(T2)
        .run();
    let served = fs::read_to_string(project.deploy_path("p2").join("current/index.html"));
    assert_eq!(served.unwrap(), "built once\n");
    assert_eq!(
        project.last_entry("p2", T2).unwrap()["sha256"],
        project.last_entry("s2", T1).unwrap()["sha256"]
    );

    tar("built again, differently\n");
    let before = production_state(&project);
    project
        .dep(&["promote", "staging", "production"])
        .now(T3)
        .status(1)
        .run()
        .stderr_has("the artifact strategy would send other bytes");
    unchanged(&project, &before);
}

#[test]
fn refuses_when_the_staging_hosts_serve_different_releases() {
    let project = two_stages(TestProject::new());
    project.dep(&["deploy", "staging"]).now(T1).run();
    project.write("app/index.html", "only on s1\n");
    project.dep(&["deploy", "s1"]).now(T2).run();
    let before = production_state(&project);
    project
        .dep(&["promote", "staging", "production"])
        .now(T3)
        .status(1)
        .run()
        .stderr_has("its hosts do not all serve the same release")
        .stderr_has("s1: 20250101110000")
        .stderr_has("s2: 20250101100000");
    unchanged(&project, &before);
    assert!(project.releases("p1").is_empty());
}

#[test]
fn refuses_when_staging_fails_its_health_checks_now() {
    let project = two_stages(TestProject::new());
    project.dep(&["deploy", "staging"]).now(T1).run();
    // Healthy when deployed; broken since.
    fs::write(project.deploy_path("s2").join("broken"), "").unwrap();
    let before = production_state(&project);
    project
        .dep(&["promote", "staging", "production"])
        .now(T2)
        .status(1)
        .run()
        .stderr_has("release 20250101100000 fails its health checks now")
        .stderr_has("host `s2`");
    unchanged(&project, &before);
    // A dry run checks staging the same way.
    project
        .dep(&["promote", "staging", "production", "--dry-run"])
        .now(T2)
        .status(1)
        .run()
        .stderr_has("release 20250101100000 fails its health checks now");
    unchanged(&project, &before);
}

#[test]
fn refuses_promoting_a_stage_to_itself() {
    let project = two_stages(TestProject::new());
    project
        .dep(&["promote", "staging", "staging"])
        .status(2)
        .run()
        .stderr_has("promote from one stage to another");
}

#[test]
fn git_promotes_the_staging_revision_after_the_branch_moved_on() {
    let project = TestProject::new();
    let repo = project.join("repo");
    fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let one = commit(&repo, "one\n");
    let project = two_stages(
        project
            .config("strategy", "\"git\"")
            .config("repository", &format!("{:?}", repo.display().to_string()))
            .config("branch", "\"main\""),
    );
    project.dep(&["deploy", "staging"]).now(T1).run();
    let two = commit(&repo, "two\n");
    assert_ne!(one, two);

    project
        .dep(&["promote", "staging", "production"])
        .now(T2)
        .run();
    for host in PRODUCTION {
        let served = fs::read_to_string(project.deploy_path(host).join("current/index.html"));
        assert_eq!(served.unwrap(), "one\n", "{host}");
        let entry = project.last_entry(host, T2).unwrap();
        assert_eq!(entry["revision"], one.as_str(), "{host}: {entry}");
        assert_eq!(entry["branch"], "main", "{host}: {entry}");
        assert_eq!(
            entry["promoted_from"],
            serde_json::json!({"stage": "staging", "release": T1}),
            "{host}: {entry}"
        );
    }
    // A plain deploy takes the branch as it is now.
    project.dep(&["deploy", "production"]).now(T3).run();
    assert_eq!(
        project.last_entry("p1", T3).unwrap()["revision"],
        two.as_str()
    );
}

/// Over real sshd: two hosts of staging, two of production; the upload strategy's bytes are
/// promoted, and other bytes are refused leaving production unlocked and unchanged.
#[test]
fn over_ssh_the_staging_bytes_are_promoted_and_other_bytes_refused() {
    let fleet = crate::support::sshd::Fleet::start(4);
    let mut text = String::new();
    for index in 0..fleet.hosts().len() {
        let stage = if index < 2 { "staging" } else { "production" };
        text.push_str(&fleet.host_table(index, &format!("host{index}"), stage));
    }
    let project = TestProject::new().deployfile(&text);
    let ssh_config = fleet.ssh_config().display().to_string();
    let dep = |args: &[&str], now: &str, status: i32| {
        project
            .dep(args)
            .env("DEP_SSH_CONFIG", &ssh_config)
            .env("SSH_AUTH_SOCK", "")
            .now(now)
            .status(status)
            .run()
    };
    let log = |index: usize| -> Vec<serde_json::Value> {
        fs::read_to_string(fleet.host(index).deploy_path().join(".dep/releases.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    dep(&["deploy", "staging"], T1, 0);
    dep(&["promote", "staging", "production"], T2, 0);
    let staged = log(0).pop().unwrap();
    for index in [2, 3] {
        let dp = fleet.host(index).deploy_path();
        let current = fs::read_link(dp.join("current")).unwrap();
        assert_eq!(current.file_name().unwrap(), T2, "host{index}");
        let entry = log(index).pop().unwrap();
        assert_eq!(entry["status"], "live", "{entry}");
        assert_eq!(entry["sha256"], staged["sha256"], "{entry}");
        assert_eq!(entry["promoted_from"]["stage"], "staging", "{entry}");
        assert_eq!(entry["promoted_from"]["release"], T1, "{entry}");
    }

    project.write("app/index.html", "not what staging got\n");
    let before: Vec<usize> = [2, 3].iter().map(|&i| log(i).len()).collect();
    dep(&["promote", "staging", "production"], T3, 1)
        .stderr_has("would send other bytes than release 20250101100000 was sent");
    for (index, lines) in [2, 3].into_iter().zip(before) {
        let dp = fleet.host(index).deploy_path();
        assert_eq!(log(index).len(), lines, "host{index}: a log line was added");
        assert!(!dp.join(".dep/deploy.lock").exists(), "host{index}: locked");
        assert!(!dp.join("releases").join(T3).exists(), "host{index}");
    }
}

/// A blue-green staging (local hosts sb blue, sg green, router slb): what it serves is its live
/// color's release. `dep health`, `dep watch` and `dep promote` look at the live color only: the
/// routers serve no release and the standby serves the one before.
#[test]
fn a_blue_green_stage_is_checked_watched_and_promoted_by_its_live_color() {
    let project = TestProject::new()
        .local_host("sb", "staging", &["color = \"blue\""])
        .local_host("sg", "staging", &["color = \"green\""])
        .local_host("slb", "staging", &[])
        .roles("slb", &["lb"])
        .local_host("p1", "production", &[])
        .local_host("p2", "production", &[])
        .deployfile(
            r#"
[stages.staging]
strategy = "blue-green"

[stages.staging.watch]
duration = "0s"
interval = "100ms"

[[stages.staging.watch.probe]]
name = "alive"
critical = true
command = "test ! -e {{ deploy_path }}/broken"

[[health]]
name = "serving"
command = "test -d {{ deploy_path }}/current && test ! -e {{ deploy_path }}/broken"

[tasks."traffic:switch"]
roles = ["lb"]
run = "printf '%s\n' {{ target_hosts | join(' ') | quote }} > {{ deploy_path }}/routed"
"#,
        );
    let mark = |host: &str| fs::write(project.deploy_path(host).join("broken"), "").unwrap();

    // Blue goes live first; the router and green serve nothing.
    project.dep(&["deploy", "staging"]).now(T1).run();
    assert_eq!(project.current("sb").as_deref(), Some(T1));
    assert_eq!(project.current("sg"), None);
    project.dep(&["health", "staging"]).run();
    project
        .dep(&["promote", "staging", "production"])
        .now(T2)
        .run();
    assert_eq!(
        project.last_entry("p1", T2).unwrap()["promoted_from"],
        serde_json::json!({"stage": "staging", "release": T1})
    );

    // Green goes live with new bytes; blue keeps T1 as the standby, and breaks.
    project.write("app/index.html", "version two\n");
    project.dep(&["deploy", "staging"]).now(T3).run();
    assert_eq!(project.current("sg").as_deref(), Some(T3));
    assert_eq!(project.current("sb").as_deref(), Some(T1));
    mark("sb");
    project.dep(&["health", "staging"]).run();
    project
        .dep(&["watch", "staging", "--duration", "300ms"])
        .run();
    project
        .dep(&["promote", "staging", "production"])
        .now(T4)
        .run();
    for host in PRODUCTION {
        let entry = project.last_entry(host, T4).unwrap();
        assert_eq!(
            entry["promoted_from"],
            serde_json::json!({"stage": "staging", "release": T3}),
            "{host}: {entry}"
        );
        assert_eq!(
            entry["sha256"],
            project.last_entry("sg", T3).unwrap()["sha256"]
        );
        let served = fs::read_to_string(project.deploy_path(host).join("current/index.html"));
        assert_eq!(served.unwrap(), "version two\n", "{host}");
    }

    // Another stage in the same selection, or only the routers: refused, not misread.
    project
        .dep(&["health", "staging,production"])
        .status(2)
        .run()
        .stderr_has("a blue-green stage is worked on alone");
    project
        .dep(&["health", "slb"])
        .status(2)
        .run()
        .stderr_has("the selection has none of the live color's hosts (green)");

    // The live color broken: all three say so, naming its host.
    mark("sg");
    let output = project.dep(&["health", "staging"]).status(1).run();
    output.stderr_has("host `sg`");
    assert!(!output.stderr.contains("host `sb`"), "{}", output.stderr);
    project
        .dep(&["watch", "staging", "--duration", "300ms"])
        .status(1)
        .run()
        .stderr_has("alive");
    let before = production_state(&project);
    project
        .dep(&["promote", "staging", "production"])
        .status(1)
        .run()
        .stderr_has("fails its health checks now");
    unchanged(&project, &before);
}
