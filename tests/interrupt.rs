//! Ctrl-C (or SIGTERM) during a deploy: before the switch nothing switches, every lock is released, the
//! release is marked failed and removed (it never went live), and the commands that were running
//! are stopped. During a switch (here the traffic switch of a blue-green stage) dep lets the
//! switch end first, so the fleet is never half switched, then stops.

use std::time::{Duration, Instant};

use crate::support::process::running_with;
use crate::support::project::{Output, Running, TestProject, T1, T2};

/// Wait until every one of `files` (in the project) exists: a marker the hosts' tasks touch.
#[track_caller]
fn wait_for(project: &TestProject, files: &[&str], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !files.iter().all(|f| project.join(f).exists()) {
        assert!(Instant::now() < deadline, "{what} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The interrupted dep's output, once it ended, which it must do promptly.
#[track_caller]
fn ended(running: Running) -> Output {
    let started = Instant::now();
    let output = running.wait();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "dep took {:?} to stop",
        started.elapsed()
    );
    output
}

/// This test's distinctive sleep: no other test runs `sleep 29.7531`.
const SLEEP: &str = "29.7531";

#[test]
fn ctrl_c_before_the_switch_changes_nothing_and_releases_the_locks() {
    interrupted_before_the_switch(libc::SIGINT);
}

/// What a cancelled CI job gets first (GitLab's runner, GitHub after SIGINT).
#[test]
fn sigterm_before_the_switch_changes_nothing_and_releases_the_locks() {
    interrupted_before_the_switch(libc::SIGTERM);
}

fn interrupted_before_the_switch(signal: libc::c_int) {
    let project = TestProject::new()
        .fleet(2)
        .file("app/index.html", "v1")
        .deployfile(&format!(
            "[tasks.slow]\nrun = \"touch {{{{ (deployfile_dir ~ '/started-' ~ host)|quote }}}} && \
             sleep {SLEEP} && touch {{{{ (deployfile_dir ~ '/finished-' ~ host)|quote }}}}\"\n\
             after = \"deploy:update_code\"\n"
        ));
    let running = project.start_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    wait_for(&project, &["started-h1", "started-h2"], "the slow task");
    running.signal(signal);
    ended(running)
        .expect_status(1)
        .stderr_has("interrupted before the switch: nothing was switched");
    for host in ["h1", "h2"] {
        assert!(
            std::fs::symlink_metadata(project.deploy_path(host).join("current")).is_err(),
            "{host} was switched"
        );
        assert!(!project.locked(host), "{host} is still locked");
        assert!(
            project.releases(host).is_empty(),
            "{host}: the interrupted release is still there"
        );
        let log = project.log(host);
        assert_eq!(
            log.last().expect("a releases.log line")["status"],
            "failed",
            "{host}: {log:?}"
        );
    }
    // The running sleeps were stopped with dep (no orphan keeps working on the hosts).
    let deadline = Instant::now() + Duration::from_secs(5);
    while running_with(SLEEP) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} task processes survived the interrupt",
            running_with(SLEEP)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!project.join("finished-h1").exists() && !project.join("finished-h2").exists());
}

/// Two routers, one slow to switch: Ctrl-C once the quick one switched. Both routers end on the
/// new color (recorded in `.dep/live_color`), and dep says the release stayed live there.
#[test]
fn ctrl_c_during_a_traffic_switch_lets_every_router_finish_it() {
    let project = TestProject::new()
        .local_host("blue1", "test", &["color = \"blue\""])
        .local_host("green1", "test", &["color = \"green\""])
        .local_host("lb1", "test", &[])
        .local_host("lb2", "test", &[])
        .roles("lb1", &["lb"])
        .roles("lb2", &["lb"])
        .host_config("lb1", "switch_delay", "\"0\"")
        .host_config("lb2", "switch_delay", "\"1.5\"")
        .deployfile(
            r#"
[stages.test]
strategy = "blue-green"

[tasks."traffic:switch"]
roles = ["lb"]
run = [
  "touch {{ (deployfile_dir ~ '/switching-' ~ host)|quote }}",
  "sleep {{ switch_delay }}",
  "printf '%s\n' {{ target_color|quote }} > {{ deploy_path|quote }}/routed",
]
"#,
        );
    let routed = |host: &str| {
        std::fs::read_to_string(project.deploy_path(host).join("routed")).unwrap_or_default()
    };
    let live_color = |host: &str| {
        std::fs::read_to_string(project.deploy_path(host).join(".dep/live_color"))
            .unwrap_or_default()
    };
    project.dep(&["deploy", "test"]).now(T1).run();
    assert_eq!(
        (routed("lb1"), routed("lb2")),
        ("blue\n".into(), "blue\n".into())
    );
    for host in ["lb1", "lb2"] {
        std::fs::remove_file(project.join(&format!("switching-{host}"))).unwrap();
    }

    let running = project.start_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(routed("lb1") == "green\n" && project.join("switching-lb2").exists()) {
        assert!(
            Instant::now() < deadline,
            "the traffic switch never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        routed("lb2"),
        "blue\n",
        "lb2 switched too soon for this test"
    );
    running.signal(libc::SIGINT);
    let output = running.wait();
    for host in ["lb1", "lb2"] {
        assert_eq!(routed(host), "green\n", "{host} was left on the old color");
        assert_eq!(live_color(host), "green\n", "{host}: .dep/live_color");
        assert!(!project.locked(host), "{host} is still locked");
    }
    output
        .expect_status(1)
        .stdout_has("interrupted: stopping once the switch under way is over")
        .stderr_has("release 20250101110000 stays live on green1");
    assert_eq!(project.current("green1").as_deref(), Some(T2));
    assert_eq!(
        project.current("blue1").as_deref(),
        Some(T1),
        "the standby was touched"
    );
}

/// This test's own sleep, for `running_with`.
const VERIFY_SLEEP: &str = "29.8642";

/// A health check fails and the rollback's verification hangs: the first Ctrl-C waits for the
/// rollback (it holds the switch back), the second stops dep at once: exit 5, naming where each
/// host's `current` points, since only the links can tell after a stop mid-switch. They went
/// back before the verification, so every host is on T1.
#[test]
fn a_second_ctrl_c_stops_a_rollback_that_hangs() {
    let project = TestProject::new().fleet(2).deployfile(&format!(
        "[[health]]\nname = \"app\"\ncommand = '''[ \"{{{{ release_name }}}}\" != {T2} ] || exit 1; \
         if [ -e {{{{ deployfile_dir|quote }}}}/slow ]; then touch {{{{ (deployfile_dir ~ '/verifying-' ~ host)|quote }}}}; \
         sleep {VERIFY_SLEEP}; fi'''\n"
    ));
    project.dep(&["deploy", "test"]).now(T1).run();
    project.write("slow", "");
    let running = project.start_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    wait_for(
        &project,
        &["verifying-h1", "verifying-h2"],
        "the rollback's verification",
    );
    running.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    running.signal(libc::SIGINT);
    let output = ended(running);
    output
        .expect_status(5)
        .stdout_has("interrupted: stopping once the switch under way is over")
        .stdout_has("interrupted again: stopping now")
        .stderr_has("the run was stopped during a switch (a second interrupt)")
        .stderr_has(&format!("host `h1`: current -> releases/{T1}"))
        .stderr_has(&format!("host `h2`: current -> releases/{T1}"));
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert!(!project.locked(host), "{host} is still locked");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while running_with(VERIFY_SLEEP) > 0 {
        assert!(Instant::now() < deadline, "the hanging check survived dep");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ctrl-C inside a rolling deploy's batch, after `deploy:batch_start` took it out of rotation:
/// its hosts still run `deploy:batch_end`, back into rotation, and nothing switched.
#[test]
fn ctrl_c_inside_a_batch_puts_the_batch_back_into_rotation() {
    let project = TestProject::new().fleet(2).deployfile(&format!(
        "[tasks.\"deploy:batch_start\"]\nrun = \"touch {{{{ (deployfile_dir ~ '/out-' ~ host)|quote }}}}\"\n\
         [tasks.\"deploy:batch_end\"]\nrun = \"rm {{{{ (deployfile_dir ~ '/out-' ~ host)|quote }}}}\"\n\
         [tasks.slow]\nrun = \"touch {{{{ (deployfile_dir ~ '/started-' ~ host)|quote }}}} && sleep {SLEEP}\"\n\
         after = \"deploy:update_code\"\n"
    ));
    let running = project.start_env(&["deploy", "test", "--rolling", "1"], &[("DEP_NOW", T1)]);
    wait_for(
        &project,
        &["started-h1", "out-h1"],
        "the first batch's slow task",
    );
    running.signal(libc::SIGINT);
    ended(running)
        .expect_status(1)
        .stderr_has("interrupted before the switch: nothing was switched");
    assert!(
        !project.join("out-h1").exists(),
        "h1 is still out of rotation"
    );
    assert!(!project.join("out-h2").exists(), "h2's batch never started");
    for host in ["h1", "h2"] {
        assert!(project.current(host).is_none(), "{host} was switched");
        assert!(!project.locked(host), "{host} is still locked");
    }
}
