//! A deploy that fails somewhere: no host switches, the release is marked `failed`, locks are
//! released, and the error names the host, the task, the command and its exit status. Also the
//! task options that decide what counts as a failure: `on_failure`, `retries`, `timeout`, `if`.

use std::time::{Duration, Instant};

use crate::support::process;
use crate::support::project::{TestProject, T1, T2, T3};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// A fleet of three where host `hN` fails task `check` while the file `fail-hN` exists.
fn failing_fleet() -> TestProject {
    TestProject::new().fleet(3).deployfile(
        r#"
[tasks.check]
desc = "Fails on a host while the test says so"
run = "test ! -e {{ (deployfile_dir ~ '/fail-' ~ host)|quote }}"
after = "deploy:update_code"
"#,
    )
}

#[test]
fn a_failure_on_one_host_of_the_first_deploy_switches_no_host() {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks.check]
run = "test {{ host }} != h2"
after = "deploy:update_code"
"#,
    );
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output.expect_status(1);
    assert_eq!(
        output.stderr,
        "error: failed on 1 host\n\n\
         host `h2`, task `check`: command exited with status 1\n  \
         command: test h2 != h2\n"
    );
    output.stdout_has("[h2] ✗ check: exit status 1");
    output.stdout_has(&format!("release {T1} is not live"));
    for host in HOSTS {
        assert_eq!(project.current(host), None, "{host} switched");
        assert_eq!(project.previous(host), None, "{host}");
        assert_eq!(
            project.last_status(host, T1).as_deref(),
            Some("failed"),
            "{host}"
        );
        assert!(!project.locked(host), "{host} left locked");
    }
}

#[test]
fn a_failure_on_a_later_deploy_leaves_every_host_on_the_old_release() {
    let project = failing_fleet();
    project.deploy_at(T1);
    project.write("fail-h2", "");
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    output.expect_status(1);
    output
        .stderr_has("host `h2`, task `check`: command exited with status 1")
        .stderr_has("command: test ! -e ");
    assert!(
        !output.stderr.contains("host `h1`") && !output.stderr.contains("host `h3`"),
        "only h2 failed\n{}",
        output.transcript()
    );
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert_eq!(project.previous(host), None, "{host}");
        assert_eq!(project.last_status(host, T1).as_deref(), Some("live"));
        assert_eq!(
            project.last_status(host, T2).as_deref(),
            Some("failed"),
            "{host}"
        );
        assert!(!project.locked(host), "{host} left locked");
    }
    // The failed release never went live: the next deploy's `previous` is the old current.
    std::fs::remove_file(project.join("fail-h2")).unwrap();
    project.deploy_at(T3);
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T3));
        assert_eq!(project.previous(host).as_deref(), Some(T1), "{host}");
    }
}

#[test]
fn failures_on_several_hosts_are_all_reported() {
    let project = failing_fleet();
    project.write("fail-h1", "");
    project.write("fail-h3", "");
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output
        .expect_status(1)
        .stderr_has("error: failed on 2 hosts\n")
        .stderr_has("host `h1`, task `check`: command exited with status 1")
        .stderr_has("host `h3`, task `check`: command exited with status 1");
    for host in HOSTS {
        assert_eq!(project.current(host), None);
        assert!(!project.locked(host));
    }
}

#[test]
fn the_failure_shows_the_tail_of_the_commands_output() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks."app:migrate"]
run = "echo 'migrating'; echo 'SQLSTATE[42S01]: table exists' >&2; exit 7"
after = "deploy:update_code"
"#,
    );
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output
        .expect_status(1)
        .stderr_has("host `h1`, task `app:migrate`: command exited with status 7\n")
        .stderr_has("  │ SQLSTATE[42S01]: table exists\n");
}

/// A fleet of three whose post-switch task `app:reload` fails on h2 while serving the release
/// named in the file `fail-after` (so the release it goes back to reloads fine).
fn post_switch_fleet() -> TestProject {
    failing_fleet().deployfile(
        r#"
[tasks."app:reload"]
run = "test {{ host }} != h2 || test \"$(cat {{ (deployfile_dir ~ '/fail-after')|quote }} 2>/dev/null)\" != {{ release_name|quote }}"
after = "deploy:symlink"
"#,
    )
}

/// The summary table's row for `host`: its cells (columns are two spaces or more apart).
fn summary_row<'o>(output: &'o crate::support::project::Output, host: &str) -> Vec<&'o str> {
    let line = output
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{host}  ")))
        .unwrap_or_else(|| panic!("no summary row for {host}\n{}", output.transcript()));
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn a_task_failure_after_the_switch_keeps_the_release_live_and_says_so() {
    let project = post_switch_fleet();
    project.deploy_at(T1);
    project.write("fail-after", T2);
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    output.expect_status(1);
    let command = format!(
        "test h2 != h2 || test \"$(cat {}/fail-after 2>/dev/null)\" != {T2}",
        std::fs::canonicalize(project.path()).unwrap().display()
    );
    assert_eq!(
        output.stderr,
        format!(
            "error: failed on 1 host; release {T2} stays live on every host (`dep rollback` puts \
             the previous release back)\n\nhost `h2`, task `app:reload`: command exited with \
             status 1\n  command: {command}\n"
        )
    );
    output
        .stdout_has(&format!(
            "release {T2} is live on every host, but the deploy failed (`dep rollback` puts the previous release back)\n"
        ))
        .stdout_has(&format!("release {T2} stays live\n"));
    // The summary says which host's post-switch task failed, and that the release is live.
    assert_eq!(summary_row(&output, "h1")[..3], ["h1", "live", T2]);
    assert_eq!(
        summary_row(&output, "h2")[..3],
        ["h2", "live, but app:reload failed", T2]
    );
    assert_eq!(summary_row(&output, "h3")[..3], ["h3", "live", T2]);
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T2));
        assert_eq!(project.previous(host).as_deref(), Some(T1));
        assert_eq!(project.last_status(host, T2).as_deref(), Some("live"));
        assert!(!project.locked(host), "{host} left locked");
    }
}

/// `on_post_switch_failure = "rollback"`: a failed post-switch task rolls every host back as a
/// failed health check does: post-switch tasks re-run on the old release, the health checks
/// verify it, the release is marked failed, exit 4.
#[test]
fn on_post_switch_failure_rollback_rolls_the_fleet_back_verified() {
    let project = post_switch_fleet()
        .config("on_post_switch_failure", "\"rollback\"")
        .deployfile("[[health]]\ncommand = \"test -e index.html\"\n");
    project.deploy_at(T1);
    project.write("fail-after", T2);
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    output.expect_status(4);
    let command = format!(
        "test h2 != h2 || test \"$(cat {}/fail-after 2>/dev/null)\" != {T2}",
        std::fs::canonicalize(project.path()).unwrap().display()
    );
    assert_eq!(
        output.stderr,
        format!(
            "error: release {T2} failed after the switch; the hosts that had switched were rolled \
             back to the release they had, and the rollback was verified:\n\nhost `h2`, task \
             `app:reload`: command exited with status 1\n  command: {command}\n"
        )
    );
    output
        .stdout_has(&format!("[h2] ⇐ current -> releases/{T1} (was {T2})\n"))
        .stdout_has("rolled back 3 hosts to the release they had before; verified\n")
        .stdout_has(&format!("release {T2} is not live\n"));
    assert_eq!(summary_row(&output, "h1")[..3], ["h1", "rolled back", T1]);
    assert_eq!(
        summary_row(&output, "h2")[..3],
        ["h2", "rolled back: app:reload failed", T1]
    );
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert_eq!(project.last_status(host, T1).as_deref(), Some("live"));
        assert_eq!(
            project.last_status(host, T2).as_deref(),
            Some("failed"),
            "{host}"
        );
        assert!(!project.locked(host), "{host} left locked");
    }
    // The next deploy goes ahead from T1 as if T2 never happened.
    project.deploy_at(T3);
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T3));
        assert_eq!(project.previous(host).as_deref(), Some(T1), "{host}");
    }
}

/// The rollback is verified: a host whose old release fails its post-switch tasks too leaves
/// the fleet inconsistent (exit 5), named.
#[test]
fn on_post_switch_failure_rollback_that_fails_too_is_inconsistent() {
    let project = failing_fleet()
        .config("on_post_switch_failure", "\"rollback\"")
        .deployfile(
            r#"
[tasks."app:reload"]
run = "test {{ host }} != h2 || test ! -e {{ (deployfile_dir ~ '/fail-after')|quote }}"
after = "deploy:symlink"
"#,
        );
    project.deploy_at(T1);
    project.write("fail-after", "");
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    output
        .expect_status(5)
        .stderr_has("error: the fleet is inconsistent:\n  host `h2`: switched back, but the previous release is not healthy either: task `app:reload`: command exited with status 1")
        .stderr_has(&format!("  host `h2`: current -> releases/{T1}\n"));
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert!(!project.locked(host), "{host} left locked");
    }
}

#[test]
fn on_failure_continue_tolerates_the_failure() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks."cache:warm"]
run = "exit 3"
on_failure = "continue"
after = "deploy:update_code"

[tasks."after:warm"]
run = "touch {{ (release_path ~ '/after-warm')|quote }}"
after = "cache:warm"
"#,
    );
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output
        .success()
        .stdout_has("[h1] ✗ cache:warm: exit status 3 (on_failure = continue)");
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T1));
        assert!(project
            .deploy_path(host)
            .join("current/after-warm")
            .exists());
        assert_eq!(project.last_status(host, T1).as_deref(), Some("live"));
    }
}

/// A task that fails until its `attempts-HOST` counter reaches 3.
const FLAKY: &str = r#"
[tasks.flaky]
run = """
f={{ (deployfile_dir ~ '/attempts-' ~ host)|quote }}
n=$(( $(cat "$f" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$f"
[ "$n" -ge 3 ]
"""
after = "deploy:update_code"
"#;

#[test]
fn retries_rerun_a_failing_task() {
    let project = TestProject::new()
        .fleet(2)
        .deployfile(&format!("{FLAKY}retries = 2\n"));
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output
        .success()
        .stdout_has("[h1] ↻ flaky: exit status 1, retry 1")
        .stdout_has("[h1] ↻ flaky: exit status 1, retry 2");
    for host in ["h1", "h2"] {
        assert_eq!(project.read(&format!("attempts-{host}")).unwrap(), "3\n");
        assert_eq!(project.current(host).as_deref(), Some(T1));
    }
}

#[test]
fn retries_that_run_out_fail_the_deploy() {
    let project = TestProject::new()
        .fleet(2)
        .deployfile(&format!("{FLAKY}retries = 1\n"));
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output
        .expect_status(1)
        .stderr_has("task `flaky`: command exited with status 1");
    for host in ["h1", "h2"] {
        assert_eq!(project.read(&format!("attempts-{host}")).unwrap(), "2\n");
        assert_eq!(project.current(host), None);
        assert_eq!(project.last_status(host, T1).as_deref(), Some("failed"));
    }
}

#[test]
fn a_task_timeout_fails_the_deploy_quickly() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks.hang]
run = "test ! -e {{ (deployfile_dir ~ '/hang')|quote }} || (exec -a {{ (deployfile_dir ~ '/hanging')|quote }} sleep 30)"
timeout = "1s"
after = "deploy:update_code"
"#,
    );
    project.deploy_at(T1);
    project.write("hang", "");
    let started = Instant::now();
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    output
        .expect_status(1)
        .stderr_has("error: failed on 2 hosts\n")
        .stderr_has("host `h1`, task `hang`: timed out after 1s")
        .stderr_has("host `h2`, task `hang`: timed out after 1s")
        .stderr_has("sleep 30)");
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T1));
        assert_eq!(project.last_status(host, T2).as_deref(), Some("failed"));
        assert!(!project.locked(host));
    }
    // The timed-out command was stopped, not left running.
    let marker = project.join("hanging").display().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while process::named(&marker) > 0 {
        assert!(Instant::now() < deadline, "`sleep 30` still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_if_condition_skips_a_task() {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks."h1:only"]
if = "test {{ host }} = h1"
run = "touch {{ (release_path ~ '/ran')|quote }}"
after = "deploy:update_code"

[tasks."when:enabled"]
if = "test -e {{ (deployfile_dir ~ '/enabled')|quote }}"
run = "touch {{ (release_path ~ '/enabled-ran')|quote }}"
after = "deploy:update_code"
"#,
    );
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output
        .success()
        .stdout_has("[h2] - h1:only (skipped: condition not met)")
        .stdout_has("[h1] - when:enabled (skipped: condition not met)");
    let has = |host: &str, file: &str| {
        project
            .deploy_path(host)
            .join("current")
            .join(file)
            .exists()
    };
    assert!(has("h1", "ran"));
    assert!(!has("h2", "ran"));
    assert!(!has("h3", "ran"));
    assert!(HOSTS.iter().all(|h| !has(h, "enabled-ran")));
    project.write("enabled", "");
    project.deploy_at(T2);
    assert!(HOSTS.iter().all(|h| has(h, "enabled-ran")));
}

#[test]
fn a_failing_once_task_stops_every_host() {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks."db:migrate"]
once = true
run = "echo 'migration 42 failed' >&2; exit 5"
after = "deploy:update_code"
"#,
    );
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output
        .expect_status(1)
        .stderr_has("error: failed on 1 host\n")
        .stderr_has("task `db:migrate`: command exited with status 5")
        .stderr_has("│ migration 42 failed");
    for host in HOSTS {
        assert_eq!(project.current(host), None, "{host}");
        assert_eq!(project.last_status(host, T1).as_deref(), Some("failed"));
        assert!(!project.locked(host));
    }
}

#[test]
fn a_failing_local_task_stops_every_host() {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks."assets:build"]
local = true
run = "exit 9"
after = "deploy:update_code"
"#,
    );
    project
        .run_env(&["deploy", "test"], &[("DEP_NOW", T1)])
        .expect_status(1)
        .stderr_has("task `assets:build`: command exited with status 9");
    for host in HOSTS {
        assert_eq!(project.current(host), None, "{host}");
        assert_eq!(project.last_status(host, T1).as_deref(), Some("failed"));
        assert!(!project.locked(host));
    }
}

#[test]
fn a_failing_dynamic_variable_fails_its_host() {
    let project = TestProject::new()
        .fleet(3)
        .config(
            "php",
            r#"{ run = "if [ {{ host }} = h3 ]; then exit 4; fi; echo /usr/bin/php" }"#,
        )
        .deployfile(
            r#"
[tasks."php:version"]
run = "echo {{ php|quote }} > {{ (release_path ~ '/php')|quote }}"
after = "deploy:update_code"
"#,
        );
    project
        .run_env(&["deploy", "test"], &[("DEP_NOW", T1)])
        .expect_status(1)
        .stderr_has("error: failed on 1 host\n")
        .stderr_has("host `h3`, task `php:version`: dynamic variable `php` failed: exit status 4");
    for host in HOSTS {
        assert_eq!(project.current(host), None, "{host}");
        assert!(!project.locked(host));
    }
}

#[test]
fn a_failing_dynamic_variable_evaluated_with_others_is_named_with_its_own_output() {
    let project = TestProject::new()
        .fleet(1)
        .config(
            "php",
            r#"{ run = "echo php: fine >&2; echo /usr/bin/php" }"#,
        )
        .config(
            "composer",
            r#"{ run = "echo 'composer: not found' >&2; exit 127" }"#,
        )
        .deployfile(
            r#"
[tasks."deploy:vendors"]
run = "{{ php|quote }} {{ composer|quote }} install"
after = "deploy:update_code"
"#,
        );
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output.expect_status(1);
    assert_eq!(
        output.stderr,
        "error: failed on 1 host\n\n\
         host `h1`, task `deploy:vendors`: dynamic variable `composer` failed: exit status 127\n  \
         command: echo 'composer: not found' >&2; exit 127\n  \
         output:\n  \u{2502} composer: not found\n"
    );
    assert_eq!(project.current("h1"), None);
}

#[test]
fn ctrl_c_before_the_switch_aborts_like_a_failure() {
    // Once `go` is gone, the task blocks in a `sleep` named after the host.
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks.wait]
run = """
touch {{ (deployfile_dir ~ '/waiting-' ~ host)|quote }}
test -e {{ (deployfile_dir ~ '/go')|quote }} || (exec -a {{ (deployfile_dir ~ '/blocked-' ~ host)|quote }} sleep 30)
"""
after = "deploy:update_code"
"#,
    );
    project.write("go", "");
    project.deploy_at(T1);
    std::fs::remove_file(project.join("go")).unwrap();
    let blocked = |host: &str| {
        project
            .join(&format!("blocked-{host}"))
            .display()
            .to_string()
    };
    let running = project.start_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while process::named(&blocked("h1")) == 0 || process::named(&blocked("h2")) == 0 {
        assert!(
            Instant::now() < deadline,
            "the deploy never reached the task"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    running.signal(libc::SIGINT);
    let output = running.wait();
    output
        .expect_status(1)
        .stderr_has("error: deploy interrupted before the switch: nothing was switched\n");
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert_eq!(project.last_status(host, T2).as_deref(), Some("failed"));
        assert!(!project.locked(host), "{host} left locked");
    }
    // The interrupted commands were stopped, not left running on the hosts.
    let deadline = Instant::now() + Duration::from_secs(5);
    while process::named(&blocked("h1")) + process::named(&blocked("h2")) > 0 {
        assert!(
            Instant::now() < deadline,
            "the interrupted task kept running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_switch_failure_on_one_host_switches_every_host_back() {
    // Just before the switch, h2's new release disappears, so h2 cannot switch.
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks.sabotage]
run = "if [ {{ host }} = h2 ] && [ -e {{ (deployfile_dir ~ '/sabotage')|quote }} ]; then rm -rf {{ release_path|quote }}; fi"
before = "deploy:symlink"
"#,
    );
    project.deploy_at(T1);
    project.deploy_at(T2);
    project.write("sabotage", "");
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T3)]);
    output
        .expect_status(1)
        .stderr_has("error: failed on 1 host\n")
        .stderr_has("host `h2`, task `deploy:symlink`: command exited with status 1");
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T2), "{host}");
        assert_eq!(project.previous(host).as_deref(), Some(T1), "{host}");
        assert!(!project.locked(host), "{host} left locked");
    }
    // (h2's release directory is gone, so only h1 and h3 still have a release to mark.)
    for host in ["h1", "h3"] {
        assert_eq!(
            project.last_status(host, T3).as_deref(),
            Some("failed"),
            "{host}"
        );
    }
}

#[test]
fn a_health_check_whose_variable_fails_reports_that_once() {
    let project = TestProject::new()
        .fleet(1)
        .config(
            "probe",
            r#"{ run = "test ! -e {{ (deployfile_dir ~ '/broken-' ~ release_name)|quote }} || exit 3; echo true" }"#,
        )
        .deployfile(
            r#"
[[health]]
name = "app"
command = "{{ probe }}"
"#,
        );
    project.deploy_at(T1);
    // Broken in the new release only: the release rolled back to passes.
    project.write(&format!("broken-{T2}"), "");
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    output.expect_status(4);
    let named: Vec<&str> = output
        .stderr
        .lines()
        .filter(|line| line.contains("host `h1`:"))
        .collect();
    assert_eq!(
        named,
        ["  host `h1`: dynamic variable `probe` failed: exit status 3"],
        "{}",
        output.transcript()
    );
    assert_eq!(project.current("h1").as_deref(), Some(T1));
}
