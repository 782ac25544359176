//! The SSH transport against real OpenSSH sshd processes on loopback (tests/support/sshd.rs):
//! the real `dep` binary deploys over SSH, authenticates with key files, an agent and encrypted
//! keys, goes through ProxyJump, checks host keys, and fails fast and cleanly when a host dies
//! or stops answering mid-deploy.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::net::ClosedPort;
use crate::support::process::wait_for_file;
use crate::support::project::{Output, TestProject};
use crate::support::sshd::{Fleet, Key, KeyKind};

const T1: &str = "20250101100000";
const T2: &str = "20250101110000";

/// How one Deployfile host entry authenticates and checks keys.
struct Entry {
    hostname: String,
    port: Option<u16>,
    identity_file: Option<PathBuf>,
    known_hosts_file: PathBuf,
    extra: String,
}

impl Entry {
    fn for_host(fleet: &Fleet, index: usize) -> Entry {
        let host = fleet.host(index);
        Entry {
            hostname: host.ip().to_string(),
            port: Some(host.port()),
            identity_file: Some(fleet.client_key().private.clone()),
            known_hosts_file: fleet.known_hosts().to_path_buf(),
            extra: String::new(),
        }
    }

    fn toml(&self, name: &str, fleet: &Fleet, index: usize) -> String {
        let mut text = format!(
            "\n[hosts.{name}]\nhostname = {:?}\nuser = {:?}\nstage = \"test\"\nknown_hosts_file = {:?}\n",
            self.hostname,
            fleet.user(),
            self.known_hosts_file.display().to_string(),
        );
        if let Some(port) = self.port {
            text.push_str(&format!("port = {port}\n"));
        }
        if let Some(identity) = &self.identity_file {
            text.push_str(&format!(
                "identity_file = {:?}\n",
                identity.display().to_string()
            ));
        }
        text.push_str(&self.extra);
        text.push_str(&format!(
            "config = {{ deploy_path = {:?} }}\n",
            fleet.host(index).deploy_path().display().to_string()
        ));
        text
    }
}

/// A project whose hosts `host0..` are the fleet's hosts, reached over SSH.
fn project_for(fleet: &Fleet, entries: &[(usize, Entry)], extra: &str) -> TestProject {
    let mut text = String::from(extra);
    for (index, entry) in entries {
        text.push_str(&entry.toml(&format!("host{index}"), fleet, *index));
    }
    TestProject::new().deployfile(&text)
}

fn all_hosts(fleet: &Fleet) -> Vec<(usize, Entry)> {
    (0..fleet.hosts().len())
        .map(|i| (i, Entry::for_host(fleet, i)))
        .collect()
}

/// dep's environment for a fleet: its ssh_config only, and no agent unless a test adds one.
fn env<'a>(fleet: &'a Fleet, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("DEP_SSH_CONFIG", fleet.ssh_config().to_str().unwrap()),
        ("SSH_AUTH_SOCK", ""),
    ];
    env.extend_from_slice(extra);
    env
}

fn current(fleet: &Fleet, index: usize) -> Option<String> {
    fs::read_link(fleet.host(index).deploy_path().join("current"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn locked(fleet: &Fleet, index: usize) -> bool {
    fleet
        .host(index)
        .deploy_path()
        .join(".dep/deploy.lock")
        .exists()
}

/// `ssh-keygen -lf`'s SHA256 fingerprint of a public key file.
fn fingerprint(public: &Path) -> String {
    let output = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .nth(1)
        .expect("ssh-keygen -lf printed no fingerprint")
        .to_string()
}

#[track_caller]
fn assert_fast(started: Instant, limit: Duration, output: &Output) {
    assert!(
        started.elapsed() < limit,
        "took {:?} (limit {limit:?})\n{}",
        started.elapsed(),
        output.transcript()
    );
}

#[test]
fn deploys_to_five_hosts_over_one_connection_each() {
    let fleet = Fleet::start(5);
    let once_log = fleet.dir().join("once.log");
    let tasks = format!(
        "[tasks.\"app:migrate\"]\nonce = true\nrun = \"echo {{{{ host }}}} >> {once}\"\nafter = \"deploy:update_code\"\n\n\
         [tasks.\"app:check\"]\nrun = \"test -f {{{{ release_path }}}}/index.html && echo on-$FLEET_HOST\"\nafter = \"deploy:shared\"\n\n\
         [tasks.\"app:before\"]\nrun = \"echo $SSH_CONNECTION $$ >> {{{{ deploy_path }}}}/../conn.log\"\nafter = \"deploy:release\"\n\n\
         [tasks.\"app:after\"]\nrun = \"echo $SSH_CONNECTION $$ >> {{{{ deploy_path }}}}/../conn.log\"\nafter = \"deploy:symlink\"\n",
        once = once_log.display()
    );
    let project = project_for(&fleet, &all_hosts(&fleet), &tasks);
    let started = Instant::now();
    let output = project.run_env(&["-vv", "deploy", "test"], &env(&fleet, &[("DEP_NOW", T1)]));
    output.success();
    let elapsed = started.elapsed();
    for index in 0..5 {
        assert_eq!(current(&fleet, index).as_deref(), Some(T1), "host{index}");
        assert!(!locked(&fleet, index), "host{index} still locked");
        let index_html = fleet.host(index).deploy_path().join("current/index.html");
        assert_eq!(fs::read_to_string(index_html).unwrap(), "hello\n");
    }
    for index in 0..5 {
        assert!(
            output.stdout.contains(&format!("on-host{index}")),
            "{}",
            output.transcript()
        );
    }
    // Steps on either side of the once task and the switch share the host's one connection
    // (the same client port) and its one shell (the same `$$`); the whole deploy (lock, upload,
    // tasks, switch, unlock, cleanup) started one session on each host.
    for index in 0..5 {
        let log = fs::read_to_string(fleet.host(index).dir().join("conn.log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "host{index}: {log}");
        assert_eq!(
            lines[0], lines[1],
            "host{index} used two connections or shells"
        );
        assert_eq!(
            fleet.host(index).sessions_started(),
            1,
            "host{index}: {}\n{}",
            fleet.host(index).log(),
            output.transcript()
        );
    }
    let once = fs::read_to_string(&once_log).unwrap();
    assert_eq!(once.lines().count(), 1, "the once task ran {once:?}");
    eprintln!("deploy to 5 hosts over SSH: {elapsed:?}");

    // A second deploy switches again and keeps `previous`; `dep releases` reads over SSH too.
    project
        .run_env(&["deploy", "test"], &env(&fleet, &[("DEP_NOW", T2)]))
        .success();
    for index in 0..5 {
        assert_eq!(current(&fleet, index).as_deref(), Some(T2), "host{index}");
    }
    let releases = project.run_env(&["releases", "test"], &env(&fleet, &[]));
    releases.success().stdout_has(T1).stdout_has(T2);
}

#[test]
fn proxy_jump_agent_and_key_kinds() {
    let fleet = Fleet::start(2);
    let (jump, target) = (fleet.host(0), fleet.host(1));
    // host1 is reached only through host0, named by an alias of the ssh config.
    let config = fleet.dir().join("jump_config");
    fs::write(
        &config,
        format!(
            "Host target\n  HostName {}\n  Port {}\n  ProxyJump bastion\n\n\
             Host bastion\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             UserKnownHostsFile {}\n",
            target.ip(),
            target.port(),
            jump.ip(),
            jump.port(),
            fleet.user(),
            fleet.client_key().private.display(),
            fleet.known_hosts().display()
        ),
    )
    .unwrap();
    let mut entry = Entry::for_host(&fleet, 1);
    entry.hostname = "target".into();
    entry.port = None;
    let tasks = "[tasks.hello]\nrun = \"echo hello-from-$FLEET_HOST\"\n";
    let project = project_for(&fleet, &[(1, entry)], tasks);
    let jump_env = [
        ("DEP_SSH_CONFIG", config.to_str().unwrap()),
        ("SSH_AUTH_SOCK", ""),
        ("DEP_NOW", T1),
    ];
    project.run_env(&["deploy", "test"], &jump_env).success();
    assert_eq!(current(&fleet, 1).as_deref(), Some(T1));
    // With the jump host down, the target is out of reach: the route really went through it.
    jump.kill();
    project
        .run_env(&["hello", "test"], &jump_env)
        .expect_status(1)
        .stderr_has("host `host1`")
        .stderr_has("jump host `bastion`");
    jump.restart();

    // Agent: no identity file, an empty HOME (no default keys): only the agent's key can log in.
    let agent = fleet.agent();
    let agent_key = fleet.new_client_key("agent_key", KeyKind::Ecdsa, None);
    agent.add(&agent_key);
    let home = tempfile::tempdir().unwrap();
    let mut entry = Entry::for_host(&fleet, 0);
    entry.identity_file = None;
    let project = project_for(&fleet, &[(0, entry)], tasks);
    let sock = agent.sock().to_str().unwrap();
    let home_dir = home.path().to_str().unwrap();
    project
        .run_env(
            &["-vv", "hello", "test"],
            &env(&fleet, &[("SSH_AUTH_SOCK", sock), ("HOME", home_dir)]),
        )
        .success()
        .stdout_has("hello-from-host0");
    // Without the agent the same host refuses, and the message says what was tried.
    project
        .run_env(&["hello", "test"], &env(&fleet, &[("HOME", home_dir)]))
        .expect_status(1)
        .stderr_has("authentication failed for user");

    // IdentitiesOnly: the agent's key is not offered when it is not one of the IdentityFiles.
    let stranger = Key::generate(
        &fleet.dir().join("client/stranger"),
        KeyKind::Ed25519,
        None,
        "stranger",
    );
    let only = fleet.dir().join("identities_only_config");
    fs::write(
        &only,
        format!(
            "Host {}\n  IdentitiesOnly yes\n  IdentityFile {}\n",
            fleet.host(0).ip(),
            stranger.private.display()
        ),
    )
    .unwrap();
    project
        .run_env(
            &["hello", "test"],
            &[
                ("DEP_SSH_CONFIG", only.to_str().unwrap()),
                ("SSH_AUTH_SOCK", sock),
                ("HOME", home_dir),
            ],
        )
        .expect_status(1)
        .stderr_has(&format!("(tried: {})", stranger.private.display()));

    // RSA (rsa-sha2-* signatures against OpenSSH 9) and an encrypted ed25519 key.
    let rsa = fleet.new_client_key("rsa_key", KeyKind::Rsa, None);
    let mut entry = Entry::for_host(&fleet, 0);
    entry.identity_file = Some(rsa.private.clone());
    project_for(&fleet, &[(0, entry)], tasks)
        .run_env(&["-vv", "hello", "test"], &env(&fleet, &[]))
        .success()
        .stdout_has("hello-from-host0");

    let encrypted = fleet.new_client_key("encrypted_key", KeyKind::Ed25519, Some("open sesame"));
    let mut entry = Entry::for_host(&fleet, 0);
    entry.identity_file = Some(encrypted.private.clone());
    let project = project_for(&fleet, &[(0, entry)], tasks);
    project
        .run_env(
            &["-vv", "hello", "test"],
            &env(&fleet, &[("DEP_SSH_PASSPHRASE", "open sesame")]),
        )
        .success()
        .stdout_has("hello-from-host0");
    project
        .run_env(&["hello", "test"], &env(&fleet, &[]))
        .expect_status(1)
        .stderr_has("authentication failed for user")
        .stderr_has("encrypted; set DEP_SSH_PASSPHRASE");
}

#[test]
fn host_keys_unknown_accept_new_and_changed() {
    let fleet = Fleet::start(1);
    let tasks = "[tasks.hello]\nrun = \"echo hello-from-$FLEET_HOST\"\n";
    let known_hosts = fleet.dir().join("empty_known_hosts");
    fs::write(&known_hosts, "").unwrap();
    let key_fingerprint = fingerprint(&fleet.host(0).host_key().public);

    // Unknown: refused, with the fingerprint and how to accept it; the file is untouched.
    let mut entry = Entry::for_host(&fleet, 0);
    entry.known_hosts_file = known_hosts.clone();
    project_for(&fleet, &[(0, entry)], tasks)
        .run_env(&["hello", "test"], &env(&fleet, &[]))
        .expect_status(1)
        .stderr_has("host `host0`")
        .stderr_has("is unknown")
        .stderr_has(&key_fingerprint)
        .stderr_has("ssh-keyscan")
        .stderr_has("accept-new");
    assert_eq!(fs::read_to_string(&known_hosts).unwrap(), "");

    // accept-new: learned (one hashed line), then known.
    let mut entry = Entry::for_host(&fleet, 0);
    entry.known_hosts_file = known_hosts.clone();
    entry.extra = "host_key_check = \"accept-new\"\n".into();
    let accept_new = project_for(&fleet, &[(0, entry)], tasks);
    accept_new
        .run_env(&["-vv", "hello", "test"], &env(&fleet, &[]))
        .success()
        .stdout_has("hello-from-host0");
    let learned = fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(learned.lines().count(), 1, "{learned}");
    assert!(learned.starts_with("|1|"), "{learned}");
    accept_new
        .run_env(&["hello", "test"], &env(&fleet, &[]))
        .success();
    assert_eq!(fs::read_to_string(&known_hosts).unwrap(), learned);

    // Changed: refused even with accept-new, naming the file and line; nothing is rewritten.
    let new_key = fleet.host(0).regenerate_host_key();
    accept_new
        .run_env(&["hello", "test"], &env(&fleet, &[]))
        .expect_status(1)
        .stderr_has("host `host0`")
        .stderr_has("host key changed")
        .stderr_has(&format!("{}:1", known_hosts.display()))
        .stderr_has(&fingerprint(&new_key.public));
    assert_eq!(fs::read_to_string(&known_hosts).unwrap(), learned);
    let strict = project_for(&fleet, &all_hosts(&fleet), tasks);
    strict
        .run_env(&["hello", "test"], &env(&fleet, &[]))
        .expect_status(1)
        .stderr_has("host key changed");
}

#[test]
fn connection_errors_name_the_host_and_the_cause() {
    let fleet = Fleet::start(1);
    let tasks = "[tasks.hello]\nrun = \"echo hello\"\n";
    // Nothing listens on that port.
    let closed = ClosedPort::on(fleet.host(0).ip());
    let closed_port = closed.port();
    let mut entry = Entry::for_host(&fleet, 0);
    entry.port = Some(closed_port);
    project_for(&fleet, &[(0, entry)], tasks)
        .run_env(&["hello", "test"], &env(&fleet, &[]))
        .expect_status(1)
        .stderr_has(&format!(
            "host `host0`, task `read state`: cannot connect to {}:{closed_port}: connection refused",
            fleet.host(0).ip()
        ));

    // A key the hosts do not accept.
    let stranger = fleet.dir().join("client/stranger");
    Key::generate(&stranger, KeyKind::Ed25519, None, "stranger");
    let mut entry = Entry::for_host(&fleet, 0);
    entry.identity_file = Some(stranger.clone());
    project_for(&fleet, &[(0, entry)], tasks)
        .run_env(&["hello", "test"], &env(&fleet, &[]))
        .expect_status(1)
        .stderr_has(&format!(
            "host `host0`, task `read state`: authentication failed for user `{}` (tried: {})",
            fleet.user(),
            stranger.display()
        ));

    // A host that accepts TCP but never answers: the connect timeout (`-o connect_timeout=1`).
    fleet.host(0).stop();
    let started = Instant::now();
    let output = project_for(&fleet, &all_hosts(&fleet), tasks).run_env(
        &["hello", "test", "-o", "connect_timeout=1"],
        &env(&fleet, &[]),
    );
    fleet.host(0).cont();
    output
        .expect_status(1)
        .stderr_has("host `host0`, task `read state`: cannot connect to")
        .stderr_has("timed out after 1s");
    assert_fast(started, Duration::from_secs(10), &output);
}

/// A task that, on the host named by `-o hang=HOST`, leaves a marker file and sleeps.
fn hanging_task(marker: &Path) -> String {
    format!(
        "[tasks.\"app:slow\"]\ntimeout = \"2s\"\n\
         run = \"if [ {{{{ host }}}} = '{{{{ hang }}}}' ]; then touch {marker}; sleep 30; fi\"\n\
         after = \"deploy:shared\"\n",
        marker = marker.display()
    )
}

#[test]
fn a_host_killed_mid_deploy_fails_the_deploy_and_switches_nothing() {
    let fleet = Fleet::start(3);
    let marker = fleet.dir().join("slow-started");
    let project =
        project_for(&fleet, &all_hosts(&fleet), &hanging_task(&marker)).config("hang", "\"\"");
    project
        .run_env(&["deploy", "test"], &env(&fleet, &[("DEP_NOW", T1)]))
        .success();

    let killer = {
        let marker = marker.clone();
        thread::spawn(move || wait_for_file(&marker, Duration::from_secs(20)))
    };
    let running = project.start_env(
        &["deploy", "test", "-o", "hang=host1"],
        &env(&fleet, &[("DEP_NOW", T2)]),
    );
    killer.join().unwrap();
    let started = Instant::now();
    fleet.host(1).kill();
    let output = running.wait();
    output.expect_status(1).stderr_has("host `host1`");
    assert_fast(started, Duration::from_secs(10), &output);
    for index in 0..3 {
        assert_eq!(current(&fleet, index).as_deref(), Some(T1), "host{index}");
    }
    assert!(!locked(&fleet, 0) && !locked(&fleet, 2), "a lock was left");
}

/// A task that times out on a live host takes that host's kept shell with it (the kill reaches
/// the shell's whole process group, so the task's `sleep` is gone); the unlock after the failure
/// still reaches the host through a new shell, and the next deploy goes through.
#[test]
fn a_task_timing_out_on_a_live_host_is_killed_and_the_host_unlocked() {
    let fleet = Fleet::start(2);
    let marker = fleet.dir().join("slow-started");
    let project =
        project_for(&fleet, &all_hosts(&fleet), &hanging_task(&marker)).config("hang", "\"\"");
    let started = Instant::now();
    let output = project.run_env(
        &["deploy", "test", "-o", "hang=host1"],
        &env(&fleet, &[("DEP_NOW", T1)]),
    );
    output
        .expect_status(1)
        .stderr_has("host `host1`")
        .stderr_has("app:slow")
        .stderr_has("timed out after 2s");
    assert_fast(started, Duration::from_secs(15), &output);
    for index in 0..2 {
        assert_eq!(current(&fleet, index), None, "host{index} switched");
        assert!(!locked(&fleet, index), "host{index} still locked");
    }
    let sleeping = || {
        fleet.host(1).pids().into_iter().any(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.starts_with(b"sleep\x0030"))
        })
    };
    assert!(!sleeping(), "the timed-out `sleep 30` still runs on host1");
    // The shell that ran the task is gone: the kill (a channel of its own, never the shell it
    // kills) and the unlock's new shell took one session each.
    assert_eq!(
        fleet.host(1).sessions_started(),
        3,
        "{}",
        fleet.host(1).log()
    );
    project
        .run_env(&["deploy", "test"], &env(&fleet, &[("DEP_NOW", T2)]))
        .success();
    for index in 0..2 {
        assert_eq!(current(&fleet, index).as_deref(), Some(T2), "host{index}");
    }
}

/// Every process on the machine running `sleep ARG` (a task's process can outlive its session
/// and leave the host's process tree, so look everywhere; ARG is unique to one test).
fn sleeps(arg: &str) -> Vec<u32> {
    let cmdline = format!("sleep\x00{arg}\x00");
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == cmdline.as_bytes())
        })
        .collect()
}

/// A controller killed with SIGKILL in the middle of a slow task (a cancelled CI job) leaves
/// nothing running on its hosts: each host's shell notices that the controller's end of the
/// session closed without a goodbye and kills what it started, within seconds.
#[test]
fn a_killed_controller_leaves_nothing_running_on_its_hosts() {
    let fleet = Fleet::start(2);
    let marker = fleet.dir().join("slow-started");
    let tasks = format!(
        "[tasks.\"app:slow\"]\nrun = \"touch {marker}; sleep 37.0913\"\nafter = \"deploy:shared\"\n",
        marker = marker.display()
    );
    let project = project_for(&fleet, &all_hosts(&fleet), &tasks);
    let running = project.start_env(&["deploy", "test"], &env(&fleet, &[("DEP_NOW", T1)]));
    wait_for_file(&marker, Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeps("37.0913").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the slow task never ran on both hosts"
        );
        thread::sleep(Duration::from_millis(20));
    }
    running.signal(libc::SIGKILL);
    let killed_at = Instant::now();
    running.reap_killed();
    while !sleeps("37.0913").is_empty() {
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "the task still runs on a host 10 s after its controller died"
        );
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "hosts ended the task {:?} after the controller died",
        killed_at.elapsed()
    );
    for index in 0..2 {
        assert_eq!(current(&fleet, index), None, "host{index} switched");
    }
}

/// A run that ends normally says goodbye to every host's shell: a daemon a task started in the
/// background on purpose keeps running after dep exits.
#[test]
fn a_daemon_started_by_a_task_outlives_a_normal_run() {
    let fleet = Fleet::start(1);
    let tasks = format!("[tasks.\"app:daemon\"]\nrun = \"nohup sleep {DAEMON_SLEEP} >/dev/null 2>&1 &\"\nafter = \"deploy:shared\"\n");
    let project = project_for(&fleet, &all_hosts(&fleet), &tasks);
    project
        .run_env(&["deploy", "test"], &env(&fleet, &[("DEP_NOW", T1)]))
        .success();
    // Longer than the watchdog's grace: it did not fire. The daemon outlived its session, so it
    // is no longer the host's descendant: look for it everywhere.
    thread::sleep(Duration::from_millis(3500));
    let daemons = sleeps(DAEMON_SLEEP);
    for &pid in &daemons {
        crate::support::process::signal(pid, libc::SIGKILL);
    }
    assert_eq!(daemons.len(), 1, "the daemon was killed");
}

/// The daemon's `sleep` argument: no other process on the machine has it.
const DAEMON_SLEEP: &str = "41.4711";

/// Make host `index`'s switch take two seconds (an `mv` on its PATH that waits when it moves
/// the `current` link); the returned file appears when a switch there begins.
fn slow_switch_on(fleet: &Fleet, index: usize) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let marker = fleet.dir().join(format!("host{index}-switching"));
    let slow_mv = fleet.host(index).bin_dir().join("mv");
    fs::write(
        &slow_mv,
        format!(
            "#!/bin/sh\ncase \"$*\" in *current.dep-tmp*) touch {}; sleep 2 ;; esac\nexec /bin/mv \"$@\"\n",
            marker.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&slow_mv, fs::Permissions::from_mode(0o755)).unwrap();
    marker
}

/// The dead man's switch: a controller killed between two hosts' switches leaves no host on the
/// new release. host1's switch is held up (a slow `mv` on its PATH); host0 has switched when the
/// controller dies. host0 never hears the fleet's confirmation, so it puts its previous release
/// back by itself within `switch_confirm_timeout`, and records the new one as rolled back; host1
/// either never moved (its shell was killed mid-switch) or did the same.
#[test]
fn a_controller_killed_between_two_hosts_switches_leaves_every_host_on_the_old_release() {
    let fleet = Fleet::start(2);
    let marker = slow_switch_on(&fleet, 1);
    let project =
        project_for(&fleet, &all_hosts(&fleet), "").config("switch_confirm_timeout", "\"3s\"");
    // The first deploy goes through: its confirmation keeps it, with host1's slow switch too.
    project
        .run_env(&["deploy", "test"], &env(&fleet, &[("DEP_NOW", T1)]))
        .success();
    fs::remove_file(&marker).unwrap();
    let running = project.start_env(&["deploy", "test"], &env(&fleet, &[("DEP_NOW", T2)]));
    wait_for_file(&marker, Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(5);
    while current(&fleet, 0).as_deref() != Some(T2) {
        assert!(Instant::now() < deadline, "host0 never switched");
        thread::sleep(Duration::from_millis(10));
    }
    running.signal(libc::SIGKILL);
    let killed_at = Instant::now();
    running.reap_killed();
    // Both hosts are back on T1 within the timeout (and a margin), by themselves.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..2).any(|i| current(&fleet, i).as_deref() != Some(T1)) {
        assert!(
            Instant::now() < deadline,
            "host0 on {:?}, host1 on {:?}",
            current(&fleet, 0),
            current(&fleet, 1)
        );
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "every host back on the old release {:?} after the controller died",
        killed_at.elapsed()
    );
    let log = |index: usize| {
        fs::read_to_string(fleet.host(index).deploy_path().join(".dep/releases.log")).unwrap()
    };
    let says = |log: &str, status: &str| {
        log.lines().any(|l| {
            l.contains(&format!("\"release\":\"{T2}\"")) && l.contains(&format!("\"{status}\""))
        })
    };
    // Both guards stand down once their time is up: removing the pending id is their last step,
    // after the log line.
    while (0..2).any(|i| {
        fleet
            .host(i)
            .deploy_path()
            .join(".dep/switch.pending")
            .exists()
    }) {
        assert!(Instant::now() < deadline, "a guard never stood down");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        says(&log(0), "live") && says(&log(0), "rolled_back"),
        "host0: {}",
        log(0)
    );
    // host1 switched or not, depending on whether its slow switch ended before its shell was
    // killed; if it did, it went back by itself too.
    assert!(
        !says(&log(1), "live") || says(&log(1), "rolled_back"),
        "host1: {}",
        log(1)
    );
    // The first deploy, confirmed, never went back: T1 has no `rolled_back` line anywhere.
    for index in 0..2 {
        assert!(!log(index).contains(&format!("\"release\":\"{T1}\",\"status\":\"rolled_back\"")));
    }
}

/// The dead man's switch of `dep rollback`: the controller killed after host0 went back to T1
/// but before the fleet confirmed. host0 puts T2 back by itself, and its log says T2 is live
/// again (not rolled back): the log agrees with `current`, and a later rollback works.
#[test]
fn a_controller_killed_during_a_rollback_leaves_the_log_agreeing_with_current() {
    let fleet = Fleet::start(2);
    let marker = slow_switch_on(&fleet, 1);
    let project =
        project_for(&fleet, &all_hosts(&fleet), "").config("switch_confirm_timeout", "\"3s\"");
    for now in [T1, T2] {
        project
            .run_env(&["deploy", "test"], &env(&fleet, &[("DEP_NOW", now)]))
            .success();
    }
    fs::remove_file(&marker).unwrap();
    let running = project.start_env(&["rollback", "test"], &env(&fleet, &[]));
    wait_for_file(&marker, Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(5);
    while current(&fleet, 0).as_deref() != Some(T1) {
        assert!(Instant::now() < deadline, "host0 never switched back");
        thread::sleep(Duration::from_millis(10));
    }
    running.signal(libc::SIGKILL);
    running.reap_killed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..2).any(|i| {
        current(&fleet, i).as_deref() != Some(T2)
            || fleet
                .host(i)
                .deploy_path()
                .join(".dep/switch.pending")
                .exists()
    }) {
        assert!(
            Instant::now() < deadline,
            "host0 on {:?}, host1 on {:?}",
            current(&fleet, 0),
            current(&fleet, 1)
        );
        thread::sleep(Duration::from_millis(50));
    }
    let last_status = |index: usize, release: &str| -> String {
        fs::read_to_string(fleet.host(index).deploy_path().join(".dep/releases.log"))
            .unwrap()
            .lines()
            .rev()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["release"] == release)
            .map(|e| e["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    for index in 0..2 {
        assert_eq!(
            last_status(index, T2),
            "live",
            "host{index}: T2 is current again"
        );
        assert_eq!(last_status(index, T1), "live", "host{index}: T1");
    }
    // The stale lock of the killed run cleared, a rollback goes through.
    project
        .run_env(&["unlock", "test"], &env(&fleet, &[]))
        .success();
    project
        .run_env(&["rollback", "test"], &env(&fleet, &[]))
        .success();
    for index in 0..2 {
        assert_eq!(current(&fleet, index).as_deref(), Some(T1), "host{index}");
    }
}

#[test]
fn a_stopped_host_times_out_instead_of_hanging_the_deploy() {
    let fleet = Fleet::start(3);
    let marker = fleet.dir().join("slow-started");
    let project =
        project_for(&fleet, &all_hosts(&fleet), &hanging_task(&marker)).config("hang", "\"\"");
    let stopper = {
        let marker = marker.clone();
        thread::spawn(move || wait_for_file(&marker, Duration::from_secs(20)))
    };
    let started = Instant::now();
    let running = project.start_env(
        &[
            "deploy",
            "test",
            "-o",
            "hang=host2",
            "-o",
            "connect_timeout=2",
        ],
        &env(&fleet, &[("DEP_NOW", T1)]),
    );
    stopper.join().unwrap();
    fleet.host(2).stop();
    let output = running.wait();
    fleet.host(2).cont();
    output
        .expect_status(1)
        .stderr_has("host `host2`")
        .stderr_has("timed out after 2s");
    assert_fast(started, Duration::from_secs(20), &output);
    for index in 0..3 {
        assert_eq!(current(&fleet, index), None, "host{index} switched");
    }
    assert!(!locked(&fleet, 0) && !locked(&fleet, 1), "a lock was left");
}

/// The backend itself, in process: one connection carries every channel, more than
/// `MAX_SESSIONS` commands queue instead of failing, stdin streams in, output splits by stream,
/// and killing a command ends it at once.
#[test]
fn one_connection_many_channels_stdin_and_kill() {
    use dep::transport::ssh::{Settings, Ssh, MAX_SESSIONS};
    use dep::transport::Chunk;
    use std::sync::Arc;

    let fleet = Fleet::start(1);
    let host = fleet.host(0);
    let ssh = Ssh::new(Settings {
        name: "host0".into(),
        hostname: host.ip().to_string(),
        port: host.port(),
        user: fleet.user().to_string(),
        identity_files: vec![fleet.client_key().private.clone()],
        default_identities: false,
        identities_only: false,
        known_hosts: vec![fleet.known_hosts().to_path_buf()],
        global_known_hosts: Vec::new(),
        accept_new: false,
        connect_timeout: Duration::from_secs(5),
        keepalive_interval: Duration::from_secs(15),
        keepalive_max: 3,
        jumps: Vec::new(),
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The watchdog: a hang fails the test instead of stalling the suite.
    let within = |work| async move {
        tokio::time::timeout(Duration::from_secs(60), work)
            .await
            .expect("the SSH backend hung for 60 s")
    };
    runtime.block_on(within(async {
        // 25 commands at once on one connection: the same client port every time, and at most
        // MAX_SESSIONS at a time (25 sleeps of 0.3 s need at least three rounds).
        let started = Instant::now();
        let outputs = futures::future::join_all((0..25).map(|_| {
            let ssh = ssh.clone();
            async move {
                ssh.capture("echo \"$SSH_CONNECTION\"; echo err >&2; sleep 0.3; exit 7")
                    .await
            }
        }))
        .await;
        let elapsed = started.elapsed();
        let mut connections: Vec<&str> = outputs.iter().map(|o| o.stdout.trim()).collect();
        connections.dedup();
        assert_eq!(connections.len(), 1, "{connections:?}");
        for output in &outputs {
            assert_eq!(output.status, Some(7), "{output:?}");
            assert_eq!(output.stderr, "err\n");
        }
        const { assert!(MAX_SESSIONS < 25) };
        assert!(
            elapsed >= Duration::from_millis(850),
            "25 commands finished in {elapsed:?}: more than {MAX_SESSIONS} ran at once"
        );

        // 4 MiB of stdin arrive whole.
        let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let mut running = ssh
            .spawn_with_stdin("wc -c", Arc::new(payload))
            .await
            .unwrap();
        let mut stdout = Vec::new();
        let mut status = None;
        while let Some(chunk) = running.chunks.recv().await {
            match chunk {
                Chunk::Stdout(data) => stdout.extend(data),
                Chunk::Exit(code, _) => status = code,
                Chunk::Stderr(_) => {}
            }
        }
        assert_eq!(status, Some(0));
        assert_eq!(String::from_utf8_lossy(&stdout).trim(), "4194304");

        // Killing a running script ends it at once, with no exit status.
        let mut running = ssh.spawn_script("echo started\nsleep 30\n").await.unwrap();
        match running.chunks.recv().await {
            Some(Chunk::Stdout(data)) => assert_eq!(data, b"started\n"),
            other => panic!("expected output, got {other:?}"),
        }
        let killed_at = Instant::now();
        running.kill.kill();
        let mut exit = None;
        while let Some(chunk) = running.chunks.recv().await {
            if let Chunk::Exit(code, reason) = chunk {
                exit = Some((code, reason));
            }
        }
        assert!(killed_at.elapsed() < Duration::from_secs(2));
        let (code, reason) = exit.expect("no exit chunk");
        assert_eq!(code, None);
        assert!(reason.unwrap().contains("host `host0`"));
        // And the remote processes are gone, not left running on the host.
        let sleeping = || {
            host.pids().into_iter().any(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.starts_with(b"sleep\x0030"))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while sleeping() {
            assert!(
                Instant::now() < deadline,
                "the remote `sleep 30` survived the kill"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The connection is still good afterwards.
        let output = ssh.capture("echo still-here").await;
        assert_eq!(output.stdout, "still-here\n", "{output:?}");
    }));
}

/// Six hosts behind one sshd that drops every new connection while three are being set up (sshd
/// counts one a little past its authentication): paced to one set-up at a time, every host
/// connects and the deploy goes through. All at once, some of the six are dropped.
#[test]
fn connection_set_ups_are_paced_for_an_sshd_with_max_startups() {
    let fleet = Fleet::start(1);
    fleet.host(0).limit_startups("3:100:3");
    let entry = Entry::for_host(&fleet, 0);
    let mut text = String::new();
    for n in 0..6 {
        let mut host = entry.toml(&format!("host{n}"), &fleet, 0);
        // Each "host" deploys to a directory of its own on the one machine.
        host = host.replace(
            &format!(
                "deploy_path = {:?}",
                fleet.host(0).deploy_path().display().to_string()
            ),
            &format!(
                "deploy_path = {:?}",
                fleet
                    .host(0)
                    .deploy_path()
                    .join(format!("h{n}"))
                    .display()
                    .to_string()
            ),
        );
        text.push_str(&host);
    }
    let project = TestProject::new()
        .deployfile(&text)
        .config("max_concurrent_starts", "1");
    let output = project.run_env(&["deploy", "test"], &env(&fleet, &[("DEP_NOW", T1)]));
    output.success();
    for n in 0..6 {
        let current = fleet.host(0).deploy_path().join(format!("h{n}/current"));
        assert!(
            current.exists(),
            "h{n} did not switch\n{}",
            output.transcript()
        );
    }
}
