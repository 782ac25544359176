//! Ctrl-C during a deploy: nothing switches, every lock is released, the release is marked
//! failed and removed (it never went live), and the commands that were running are stopped.

use std::time::{Duration, Instant};

use crate::support::process::running_with;
use crate::support::project::{TestProject, T1};

/// This test's distinctive sleep: no other test runs `sleep 29.7531`.
const SLEEP: &str = "29.7531";

#[test]
fn ctrl_c_before_the_switch_changes_nothing_and_releases_the_locks() {
    let project = TestProject::new()
        .fleet(2)
        .file("app/index.html", "v1")
        .deployfile(&format!(
            "[tasks.slow]\nrun = \"touch {{{{ (deployfile_dir ~ '/started-' ~ host)|quote }}}} && \
             sleep {SLEEP} && touch {{{{ (deployfile_dir ~ '/finished-' ~ host)|quote }}}}\"\n\
             after = \"deploy:update_code\"\n"
        ));
    let running = project.start_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(project.join("started-h1").exists() && project.join("started-h2").exists()) {
        assert!(Instant::now() < deadline, "the slow task never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    running.signal(libc::SIGINT);
    let started = Instant::now();
    let output = running.wait();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "dep took {:?} to stop",
        started.elapsed()
    );
    output
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
