//! Rolling and canary deploys on local hosts: what runs once, and what runs per batch.

use crate::support::project::{TestProject, T1, T2, T3};

#[test]
fn a_once_task_runs_on_its_role_even_when_that_host_is_in_a_later_batch() {
    let project = TestProject::new()
        .fleet(3)
        .roles("h1", &["web"])
        .roles("h2", &["web"])
        .roles("h3", &["db"])
        .deployfile(
            r#"
[tasks.migrate]
once = true
roles = ["db"]
run = "echo {{ host|quote }} >> {{ (deployfile_dir ~ '/migrated')|quote }}"
after = "deploy:update_code"
"#,
        );
    let output = project.run_env(&["deploy", "test", "--rolling", "1"], &[("DEP_NOW", T1)]);
    output.success();
    assert_eq!(project.read("migrated").as_deref(), Some("h3\n"));
}

#[test]
fn a_failing_batch_end_runs_once_for_its_batch() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks."deploy:batch_end"]
run = "echo {{ host|quote }} >> {{ (deployfile_dir ~ '/batch_end')|quote }}; test {{ host|quote }} != h2"
"#,
    );
    let output = project.run_env(&["deploy", "test", "--rolling", "1"], &[("DEP_NOW", T1)]);
    output.expect_status(1);
    assert_eq!(project.read("batch_end").as_deref(), Some("h1\nh2\n"));
    output.stderr_has("host `h2`, task `deploy:batch_end`: command exited with status 1");
}

/// Three hosts, one a batch, whose post-switch task fails on h2 while serving the release named
/// in the file `fail-after`; T1 is live everywhere.
fn post_switch_failing_on_h2() -> TestProject {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks."app:reload"]
run = "test {{ host }} != h2 || test \"$(cat {{ (deployfile_dir ~ '/fail-after')|quote }} 2>/dev/null)\" != {{ release_name|quote }}"
after = "deploy:symlink"
"#,
    );
    project.deploy_at(T1);
    project.write("fail-after", T2);
    project
}

/// A batch whose post-switch task fails goes back with the batches before it, and the rollback
/// reruns that task on the old release (it was reported as an inconsistent fleet, exit 5).
#[test]
fn a_post_switch_failure_in_a_batch_rolls_the_switched_batches_back() {
    let project = post_switch_failing_on_h2();
    let output = project.run_env(&["deploy", "test", "--rolling", "1"], &[("DEP_NOW", T2)]);
    output
        .expect_status(1)
        .stdout_has("rolled back 2 hosts to the release they had before; verified\n")
        .stderr_has("error: failed on 1 host\n\nhost `h2`, task `app:reload`: command exited with status 1\n");
    for host in ["h1", "h2", "h3"] {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert!(!project.locked(host), "{host} left locked");
    }
    // With the rollback policy, it is the failed deploy that was rolled back: exit 4.
    project.write("fail-after", T3);
    let output = project.run_env(
        &[
            "deploy",
            "test",
            "--rolling",
            "1",
            "-o",
            "on_post_switch_failure=rollback",
        ],
        &[("DEP_NOW", T3)],
    );
    output
        .expect_status(4)
        .stderr_has("failed after the switch; the hosts that had switched were rolled back");
    for host in ["h1", "h2", "h3"] {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
    }
}

/// `--keep-switched`: the batches stay on the new release, and the error says where it is live.
#[test]
fn a_post_switch_failure_with_keep_switched_says_where_the_release_stays_live() {
    let project = post_switch_failing_on_h2();
    let output = project.run_env(
        &["deploy", "test", "--rolling", "1", "--keep-switched"],
        &[("DEP_NOW", T2)],
    );
    output.expect_status(1).stderr_has(&format!(
        "error: failed on 1 host; release {T2} stays live on h1, h2 (`dep rollback` puts the previous release back)\n"
    ));
    assert_eq!(project.current("h1").as_deref(), Some(T2));
    assert_eq!(project.current("h2").as_deref(), Some(T2));
    assert_eq!(project.current("h3").as_deref(), Some(T1));
}
