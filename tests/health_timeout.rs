//! A health check that hangs fails at its timeout, and what it started is stopped with it.

use std::time::{Duration, Instant};

use crate::support::project::{TestProject, T1, T2};

/// Processes running this test's distinctive `sleep 28.8642`.
fn hanging() -> usize {
    crate::support::process::running_with("28.8642")
}

#[test]
fn a_hanging_command_check_times_out_and_leaves_nothing_running() {
    let project = TestProject::new().fleet(2);
    project.deploy_at(T1);
    let project =
        project.top("[[health]]\nname = \"slow\"\ncommand = \"sleep 28.8642\"\ntimeout = \"1s\"\n");
    let started = Instant::now();
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    output.expect_status(5);
    output.stderr_has("the fleet is inconsistent:");
    output.stdout_has("✗ health check slow: timed out after 1s");
    let deadline = Instant::now() + Duration::from_secs(5);
    while hanging() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} check processes still run",
            hanging()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
