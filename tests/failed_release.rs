//! A release that never went live is removed when its deploy fails, on every host where it was
//! created (its releases-log line stays, `failed`), so that what filled a disk does not fail the
//! next deploy too; a release the switch reached (live, or live for a moment) stays. A deploy
//! that ran out of disk says so, naming the host and the deploy path (issue 11, item 4).

use std::path::Path;
use std::process::Command;

use crate::support::project::{TestProject, T1, T2, T3};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// Fails on host `hN` after the code is in place, while the file `fail-hN` exists.
const FAILING: &str = r#"
[tasks.check]
run = "test ! -e {{ (deployfile_dir ~ '/fail-' ~ host)|quote }}"
after = "deploy:shared"
"#;

#[test]
fn a_failed_release_is_removed_from_every_host_and_its_log_line_kept() {
    let project = TestProject::new().fleet(3).deployfile(FAILING);
    project.deploy_at(T1);
    project.write("fail-h2", "");
    let output = project
        .dep(&["deploy", "test"])
        .now(T2)
        .status(1)
        .stderr(
            "error: failed on 1 host\n\n\
             host `h2`, task `check`: command exited with status 1\n  \
             command: test ! -e [PROJECT]/fail-h2\n",
        )
        .run();
    // The release was populated on every host before h2 failed (h1 and h3 ran `check` too).
    assert!(output.stdout.contains("[h1] ✓ check") && output.stdout.contains("[h3] ✓ check"));
    for host in HOSTS {
        assert_eq!(
            project.releases(host),
            [T1],
            "{host}: the failed release is still there"
        );
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert_eq!(project.previous(host), None, "{host}");
        assert_eq!(
            project.last_status(host, T2).as_deref(),
            Some("failed"),
            "{host}"
        );
        assert_eq!(
            project.last_status(host, T1).as_deref(),
            Some("live"),
            "{host}"
        );
        assert!(!project.locked(host), "{host}");
    }
    // Its name stays taken: a deploy in the same second names the next one.
    std::fs::remove_file(project.join("fail-h2")).unwrap();
    project.deploy_at(T2);
    for host in HOSTS {
        assert_eq!(project.releases(host), [T1, "20250101110001"], "{host}");
        assert_eq!(project.previous(host).as_deref(), Some(T1), "{host}");
        let statuses: Vec<(String, String)> = project
            .log(host)
            .iter()
            .map(|e| (e["release"].to_string(), e["status"].to_string()))
            .collect();
        assert_eq!(statuses.len(), 6, "{host}: {statuses:?}");
    }
}

#[test]
fn a_failed_first_deploy_leaves_no_release_behind() {
    let project = TestProject::new().fleet(3).deployfile(FAILING);
    project.write("fail-h3", "");
    project
        .run_env(&["deploy", "test"], &[("DEP_NOW", T1)])
        .expect_status(1);
    for host in HOSTS {
        assert!(project.releases(host).is_empty(), "{host}");
        assert_eq!(project.current(host), None, "{host}");
        let log = project.log(host);
        let statuses: Vec<&str> = log.iter().map(|e| e["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["prepared", "failed"], "{host}");
    }
}

#[test]
fn a_release_that_was_live_is_kept_when_its_health_check_rolls_it_back() {
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[[health]]
name = "app"
command = "test ! -e {{ (deployfile_dir ~ '/broken-' ~ release_name)|quote }}"
"#,
    );
    project.deploy_at(T1);
    project.write(&format!("broken-{T2}"), "");
    project
        .run_env(&["deploy", "test"], &[("DEP_NOW", T2)])
        .expect_status(4);
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert_eq!(
            project.releases(host),
            [T1, T2],
            "{host}: a release that was live stays"
        );
        assert_eq!(
            project.last_status(host, T2).as_deref(),
            Some("failed"),
            "{host}"
        );
    }
}

#[test]
fn a_release_the_switch_reached_is_kept_when_the_switch_fails_elsewhere() {
    // Just before the switch, h2's new release disappears, so h2 cannot switch; h1 and h3 do,
    // and go back.
    let project = TestProject::new().fleet(3).deployfile(
        r#"
[tasks.sabotage]
run = "if [ {{ host }} = h2 ]; then rm -rf {{ release_path|quote }}; fi"
before = "deploy:symlink"
"#,
    );
    project
        .run_env(&["deploy", "test"], &[("DEP_NOW", T1)])
        .expect_status(1)
        .stderr_has("host `h2`, task `deploy:symlink`: command exited with status 1");
    for host in ["h1", "h3"] {
        assert_eq!(project.current(host), None, "{host}");
        assert_eq!(
            project.releases(host),
            [T1],
            "{host}: it was live for a moment"
        );
        assert_eq!(
            project.last_status(host, T1).as_deref(),
            Some("failed"),
            "{host}"
        );
    }
}

#[test]
fn a_task_that_reports_a_full_disk_fails_saying_so() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks.fill]
run = "if [ {{ host }} = h2 ]; then echo 'cp: error writing big.bin: No space left on device' >&2; exit 1; fi"
after = "deploy:update_code"
"#,
    );
    project
        .dep(&["deploy", "test"])
        .now(T1)
        .status(1)
        .stderr(
            "error: failed on 1 host\n\n\
             host `h2`, task `fill`: command exited with status 1\n  \
             the disk is full: host `h2` has no space left on device under `[PROJECT]/hosts/h2`\n  \
             command: if [ h2 = h2 ]; then echo 'cp: error writing big.bin: No space left on device' >&2; exit 1; fi\n  \
             output:\n  \
             │ cp: error writing big.bin: No space left on device\n",
        )
        .run();
    for host in ["h1", "h2"] {
        assert!(project.releases(host).is_empty(), "{host}");
    }
}

/// A tmpfs of `size` mounted at `dir` for as long as it lives; None (and why) where this test
/// process may not mount one (not root, or a sandbox without the capability).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.0).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// `len` bytes that gzip cannot shrink (a xorshift stream), so the upload really is that big.
fn incompressible(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn a_full_disk_fails_the_deploy_saying_so_and_the_next_deploy_has_room() {
    let project = TestProject::new().fleet(2);
    // Each host's deploy path is a disk of 3 MB (declared after the project: unmounted first).
    let mut disks = Vec::new();
    for host in ["h1", "h2"] {
        match Tmpfs::mount(&project.deploy_path(host), "3m") {
            Ok(disk) => disks.push(disk),
            Err(why) => {
                eprintln!("skipped: cannot mount a 3 MB tmpfs to fill ({why}); run as root");
                return;
            }
        }
    }
    project.deploy_at(T1);
    std::fs::write(project.join("app/big.bin"), incompressible(6 << 20)).unwrap();
    let output = project
        .run_env(&["deploy", "test"], &[("DEP_NOW", T2)])
        .expect_status(1)
        .clone();
    for host in ["h1", "h2"] {
        output.stderr_has(&format!(
            "the disk is full: host `{host}` has no space left on device under `{}`",
            project.deploy_path(host).display()
        ));
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert_eq!(
            project.releases(host),
            [T1],
            "{host}: the half-extracted release stayed"
        );
        assert_eq!(
            project.last_status(host, T2).as_deref(),
            Some("failed"),
            "{host}"
        );
        assert!(!project.locked(host), "{host}");
    }
    // Room again (the big file is gone from the app): the next deploy goes through.
    std::fs::remove_file(project.join("app/big.bin")).unwrap();
    project.deploy_at(T3);
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T3), "{host}");
        assert_eq!(project.previous(host).as_deref(), Some(T1), "{host}");
    }
    drop(disks);
}
