//! Ctrl-C during a deploy: nothing switches, every lock is released, the release is marked
//! failed, and the commands that were running are stopped.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write_project(dir: &Path) {
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/index.html"), "v1").unwrap();
    let mut text = String::from("[config]\nstrategy = \"upload\"\nupload_from = \"app\"\n\n");
    for host in ["h1", "h2"] {
        text.push_str(&format!(
            "[hosts.{host}]\nlocal = true\nstage = \"test\"\nconfig = {{ deploy_path = \"{}\" }}\n\n",
            dir.join(host).display()
        ));
    }
    text.push_str(&format!(
        "[tasks.slow]\nrun = \"touch {}/started-{{{{ host }}}} && sleep 29.7531 && touch {}/finished-{{{{ host }}}}\"\nafter = \"deploy:update_code\"\n",
        dir.display(),
        dir.display()
    ));
    std::fs::write(dir.join("Deployfile.toml"), text).unwrap();
}

#[test]
fn ctrl_c_before_the_switch_changes_nothing_and_releases_the_locks() {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path());
    let child = Command::new(env!("CARGO_BIN_EXE_dep"))
        .args(["deploy", "test"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(dir.path().join("started-h1").exists() && dir.path().join("started-h2").exists()) {
        assert!(Instant::now() < deadline, "the slow task never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill only sends SIGINT to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "dep took {:?} to stop",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("interrupted before the switch: nothing was switched"),
        "{stderr}"
    );
    for host in ["h1", "h2"] {
        let dp = dir.path().join(host);
        assert!(
            std::fs::symlink_metadata(dp.join("current")).is_err(),
            "{host} was switched"
        );
        assert!(
            !dp.join(".dep/deploy.lock").exists(),
            "{host} is still locked"
        );
        let log = std::fs::read_to_string(dp.join(".dep/releases.log")).unwrap();
        let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
        assert_eq!(last["status"], "failed", "{host}: {log}");
    }
    // The running sleeps were stopped with dep (no orphan keeps working on the hosts).
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleeping() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} task processes survived the interrupt",
            sleeping()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!dir.path().join("finished-h1").exists() && !dir.path().join("finished-h2").exists());
}

/// Processes running this test's distinctive `sleep 29.7531`.
fn sleeping() -> usize {
    crate::support::process::running_with("29.7531")
}
