//! `dep rollback`: every host back to the same older live release (or `--to`), the abandoned
//! release marked `rolled_back`; refused, changing nothing, when a host cannot follow.

use crate::support::project::{TestProject, T1, T2, T3, T4};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// A three-host fleet with releases T1, T2, T3 deployed (T3 current).
fn deployed_three_times() -> TestProject {
    let project = TestProject::new().fleet(3);
    for now in [T1, T2, T3] {
        project.deploy_at(now);
    }
    project
}

#[track_caller]
fn assert_links(project: &TestProject, current: &str, previous: &str) {
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(current), "{host}");
        assert_eq!(project.previous(host).as_deref(), Some(previous), "{host}");
        assert!(!project.locked(host), "{host} left locked");
    }
}

#[track_caller]
fn assert_status(project: &TestProject, release: &str, status: &str) {
    for host in HOSTS {
        assert_eq!(
            project.last_status(host, release).as_deref(),
            Some(status),
            "{host} {release}"
        );
    }
}

#[test]
fn rollback_goes_to_the_release_before_and_marks_the_abandoned_one() {
    let project = deployed_three_times();
    let output = project.run(&["rollback", "test"]);
    output.success();
    for host in HOSTS {
        output.stdout_has(&format!("[{host}] ⇐ current -> releases/{T2} (was {T3})"));
    }
    // One line per host says where it went, and one line the whole of it.
    assert!(!output.stdout.contains('⇒'), "{}", output.stdout);
    output.stdout_has(&format!(
        "rolled back to release {T2} on {} hosts (",
        HOSTS.len()
    ));
    assert_links(&project, T2, T3);
    assert_status(&project, T3, "rolled_back");
    assert_status(&project, T2, "live");
    assert_status(&project, T1, "live");
    // Nothing is deleted by a rollback.
    for host in HOSTS {
        assert_eq!(project.releases(host), [T1, T2, T3]);
    }
}

#[test]
fn rollback_twice_goes_back_two_releases() {
    let project = deployed_three_times();
    project.run(&["rollback", "test"]).success();
    project.run(&["rollback", "test"]).success();
    assert_links(&project, T1, T2);
    assert_status(&project, T3, "rolled_back");
    assert_status(&project, T2, "rolled_back");
    assert_status(&project, T1, "live");
    // A deploy after rollbacks: the release that was current becomes previous.
    project.deploy_at(T4);
    assert_links(&project, T4, T1);
}

#[test]
fn rollback_skips_failed_releases() {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks.check]
run = "test ! -e {{ (deployfile_dir ~ '/fail')|quote }}"
after = "deploy:update_code"
"#,
    );
    project.deploy_at(T1);
    project.write("fail", "");
    project
        .run_env(&["deploy", "test"], &[("DEP_NOW", T2)])
        .expect_status(1);
    std::fs::remove_file(project.join("fail")).unwrap();
    project.deploy_at(T3);
    project.run(&["rollback", "test"]).success();
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert_eq!(project.previous(host).as_deref(), Some(T3), "{host}");
    }
    assert_status(&project, T2, "failed");
}

#[test]
fn rollback_to_a_named_release() {
    let project = deployed_three_times();
    project.run(&["rollback", "test", "--to", T1]).success();
    assert_links(&project, T1, T3);
    assert_status(&project, T3, "rolled_back");
    assert_status(&project, T2, "live");
    assert_status(&project, T1, "live");
}

/// Back to T3 (rolled back before) with `--to`: it is live again, in the log too, so the next
/// plain rollback goes back from it as from any live release.
#[test]
fn rollback_to_a_rolled_back_release_makes_it_live_again() {
    let project = deployed_three_times();
    project.run(&["rollback", "test"]).success();
    assert_status(&project, T3, "rolled_back");
    project.run(&["rollback", "test", "--to", T3]).success();
    assert_links(&project, T3, T2);
    assert_status(&project, T3, "live");
    assert_status(&project, T2, "rolled_back");
    project.run(&["rollback", "test"]).success();
    assert_links(&project, T1, T3);
}

#[test]
fn rollback_to_a_release_missing_on_one_host_changes_nothing() {
    let project = deployed_three_times();
    std::fs::remove_dir_all(project.deploy_path("h2").join("releases").join(T1)).unwrap();
    let before = project.snapshot();
    let output = project.run(&["rollback", "test", "--to", T1]);
    assert_ne!(output.status, 0, "{}", output.transcript());
    assert_eq!(
        output.stderr,
        format!(
            "error: rollback refused, nothing was changed:\n  host `h2`: release `{T1}` does not exist\n"
        )
    );
    assert_eq!(project.snapshot(), before);
}

#[test]
fn rollback_to_the_current_release_is_refused() {
    let project = deployed_three_times();
    let before = project.snapshot();
    let output = project.run(&["rollback", "test", "--to", T3]);
    assert_ne!(output.status, 0, "{}", output.transcript());
    output.stderr_has(&format!("release `{T3}` is already current"));
    assert_eq!(project.snapshot(), before);
}

#[test]
fn rollback_with_nothing_to_go_back_to_is_an_error() {
    let project = TestProject::new().fleet(3);
    project.deploy_at(T1);
    let before = project.snapshot();
    let output = project.run(&["rollback", "test"]);
    assert_ne!(output.status, 0, "{}", output.transcript());
    let mut expected = String::from("error: rollback refused, nothing was changed:");
    for host in HOSTS {
        expected.push_str(&format!(
            "\n  host `{host}`: no release older than current `{T1}` went live and was not rolled back"
        ));
    }
    expected.push('\n');
    assert_eq!(output.stderr, expected);
    assert_eq!(project.snapshot(), before);
}

#[test]
fn rollback_before_any_deploy_is_an_error() {
    let project = TestProject::new().fleet(2);
    let output = project.run(&["rollback", "test"]);
    assert_ne!(output.status, 0, "{}", output.transcript());
    output.stderr_has("host `h1`: no `current` release to roll back from");
    assert!(project.releases("h1").is_empty());
    assert!(!project.locked("h1") && !project.locked("h2"));
}

#[test]
fn rollback_runs_the_post_switch_tasks() {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks."app:reload"]
run = "echo reload $(readlink {{ current_path|quote }}) >> {{ (deployfile_dir ~ '/reload-' ~ host)|quote }}"
after = "deploy:symlink"
"#,
    );
    project.deploy_at(T1);
    project.deploy_at(T2);
    project.run(&["rollback", "test"]).success();
    for host in HOSTS {
        assert_eq!(
            project.read(&format!("reload-{host}")).unwrap(),
            format!("reload releases/{T1}\nreload releases/{T2}\nreload releases/{T1}\n"),
            "{host}"
        );
    }
}

#[test]
fn rollback_is_refused_when_hosts_would_go_to_different_releases() {
    let project = deployed_three_times();
    std::fs::remove_dir_all(project.deploy_path("h3").join("releases").join(T2)).unwrap();
    let before = project.snapshot();
    let output = project.run(&["rollback", "test"]);
    assert_ne!(output.status, 0, "{}", output.transcript());
    assert_eq!(
        output.stderr,
        format!(
            "error: rollback refused, nothing was changed:\n  \
             host `h1` would go to {T2}\n  host `h2` would go to {T2}\n  host `h3` would go to {T1}\n  \
             hosts disagree on the release to go back to; choose one with `--to RELEASE`\n"
        )
    );
    assert_eq!(project.snapshot(), before);
    // Naming a release every host has works.
    project.run(&["rollback", "test", "--to", T1]).success();
    assert_links(&project, T1, T3);
}
