//! Smoke tests for the sshd fleet harness (`tests/support/sshd.rs`), driven by the system `ssh`
//! client: they prove the harness, not dep.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::process::is_gone;
use crate::support::sshd::{Fleet, Key, KeyKind};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}): stdout {:?}, stderr {:?}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Starts `ssh host 'echo ready; sleep 60'` and returns once the session is up.
fn open_session(fleet: &Fleet, index: usize) -> Child {
    let mut child = fleet
        .ssh()
        .arg(fleet.host(index).name())
        .arg("echo ready; sleep 60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ssh");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n", "session on host{index} did not start");
    child
}

/// Waits for `child` to exit, failing after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("process still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn runs_a_command_on_five_hosts_in_parallel() {
    let fleet = Fleet::start(5);
    let children: Vec<Child> = fleet
        .hosts()
        .iter()
        .map(|host| {
            fleet
                .ssh()
                .arg(host.name())
                .arg("echo hi-$FLEET_HOST_INDEX $FLEET_HOST; echo $HOME")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("cannot run ssh")
        })
        .collect();
    for (index, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        let host = fleet.host(index);
        assert_eq!(
            text(&output.stdout),
            format!("hi-{index} host{index}\n{}\n", host.home().display()),
            "stderr: {}",
            text(&output.stderr)
        );
    }
    let addresses: std::collections::HashSet<_> = fleet.hosts().iter().map(|h| h.ip()).collect();
    assert_eq!(addresses.len(), 5, "every host has its own address");

    // A stub command on host3's PATH only.
    let stub = fleet.host(3).bin_dir().join("stub");
    std::fs::write(&stub, "#!/bin/sh\necho stubbed \"$@\"\n").unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = fleet.ssh_output(3, "stub a b");
    assert_ok(&output, "stub on host3");
    assert_eq!(text(&output.stdout), "stubbed a b\n");
    assert!(!fleet.ssh_output(2, "stub").status.success());
}

#[test]
fn killed_host_drops_its_sessions_and_refuses_while_others_work() {
    let fleet = Fleet::start(3);
    let mut session = open_session(&fleet, 1);

    fleet.host(1).kill();
    let status = wait_exit(&mut session, Duration::from_secs(5));
    assert!(
        !status.success(),
        "the open session must fail when its host dies"
    );

    let output = fleet.ssh_output(1, "true");
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("Connection refused"),
        "stderr: {}",
        text(&output.stderr)
    );
    for index in [0, 2] {
        assert_ok(&fleet.ssh_output(index, "true"), "ssh to a live host");
    }

    fleet.host(1).restart();
    assert_ok(&fleet.ssh_output(1, "true"), "ssh after restart");
}

#[test]
fn killed_sessions_drop_but_the_host_stays_up() {
    let fleet = Fleet::start(1);
    let mut session = open_session(&fleet, 0);
    fleet.host(0).kill_sessions();
    assert!(!wait_exit(&mut session, Duration::from_secs(5)).success());
    assert_ok(&fleet.ssh_output(0, "true"), "ssh after kill_sessions");
}

#[test]
fn stopped_host_times_out_until_continued() {
    let fleet = Fleet::start(2);
    fleet.host(0).stop();

    let started = Instant::now();
    let output = fleet
        .ssh()
        .args(["-o", "ConnectTimeout=2", "host0", "true"])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("timed out"),
        "stderr: {}",
        text(&output.stderr)
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    assert_ok(&fleet.ssh_output(1, "true"), "ssh to the other host");

    fleet.host(0).cont();
    assert_ok(&fleet.ssh_output(0, "true"), "ssh after cont");
}

#[test]
fn changed_host_key_is_rejected() {
    let fleet = Fleet::start(2);
    let old = fleet.host(0).host_key();
    let new = fleet.host(0).regenerate_host_key();
    assert_ne!(old.blob(), new.blob());

    let output = fleet.ssh_output(0, "true");
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("Host key verification failed"),
        "stderr: {}",
        text(&output.stderr)
    );
    assert_ok(&fleet.ssh_output(1, "true"), "ssh to the unchanged host");

    fleet.trust_current_host_keys();
    assert_ok(
        &fleet.ssh_output(0, "true"),
        "ssh after trusting the new key",
    );
}

#[test]
fn other_key_kinds_and_an_agent_log_in() {
    let fleet = Fleet::start(1);
    let ssh_with = |config: &Path, agent: Option<&Path>| {
        let mut ssh = Command::new("ssh");
        ssh.arg("-F")
            .arg(config)
            .args(["host0", "echo in"])
            .stdin(Stdio::null())
            .env_remove("SSH_AUTH_SOCK");
        if let Some(sock) = agent {
            ssh.env("SSH_AUTH_SOCK", sock);
        }
        ssh.output().unwrap()
    };

    for (name, kind) in [("id_rsa", KeyKind::Rsa), ("id_ecdsa", KeyKind::Ecdsa)] {
        let key = fleet.new_client_key(name, kind, None);
        let output = ssh_with(&fleet.ssh_config_with_identity(&key), None);
        assert_ok(&output, name);
        assert_eq!(text(&output.stdout), "in\n");
    }

    let encrypted = fleet.new_client_key("id_encrypted", KeyKind::Ed25519, Some("s3cret pass"));
    let config = fleet.ssh_config_with_identity(&encrypted);
    // BatchMode cannot ask for the passphrase, so the key alone does not get in…
    assert!(!ssh_with(&config, None).status.success());
    // …but the agent holding it does.
    let agent = fleet.agent();
    agent.add(&encrypted);
    assert!(agent.list().contains(&encrypted.blob()));
    assert_ok(&ssh_with(&config, Some(agent.sock())), "ssh via the agent");

    // A key that is not authorized is refused.
    let stranger = Key::generate(
        &fleet.dir().join("stranger"),
        KeyKind::Ed25519,
        None,
        "stranger",
    );
    let output = ssh_with(&fleet.ssh_config_with_identity(&stranger), None);
    assert!(
        text(&output.stderr).contains("Permission denied"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn drop_leaves_no_process_behind() {
    let fleet = Fleet::start(2);
    let mut session = open_session(&fleet, 0);
    let agent = fleet.agent();
    let mut pids = fleet.host(0).pids();
    pids.extend(fleet.host(1).pids());
    pids.push(agent.pid());
    assert!(
        pids.len() >= 4,
        "listeners, session processes and agent: {pids:?}"
    );
    let dir = fleet.dir().to_path_buf();

    drop(agent);
    drop(fleet);
    wait_exit(&mut session, Duration::from_secs(5));
    // A killed session process can take a moment to exit on a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for pid in pids {
        while !is_gone(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(is_gone(pid), "process {pid} survived the fleet");
    }
    assert!(!dir.exists(), "the fleet directory is removed");
}
