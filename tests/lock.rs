//! The deploy lock: a held lock on any host stops the whole deploy with exit 3, naming the holder,
//! and changes nothing anywhere; `dep unlock` clears a stale one; two deploys cannot overlap.

use std::time::{Duration, Instant};

use crate::support::project::{TestProject, T1, T2};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

const HOLDER: &str = r#"{"who":"alice@laptop","pid":4242,"release":"20241231235959","since":"2024-12-31T23:59:59Z","id":"dep-by-hand"}"#;

const HELD_MESSAGE: &str = "error: deploy is locked; nothing was changed\n  \
     host `h2`: locked by alice@laptop (pid 4242, release 20241231235959) since 2024-12-31T23:59:59Z\n  \
     if no deploy is running, clear it with `dep unlock test`\n";

fn lock_by_hand(project: &TestProject, host: &str) {
    project.write(
        &format!("hosts/{host}/.dep/deploy.lock"),
        &format!("{HOLDER}\n"),
    );
}

#[test]
fn a_held_lock_stops_the_deploy_and_changes_nothing() {
    let project = TestProject::new().fleet(3);
    project.deploy_at(T1);
    lock_by_hand(&project, "h2");
    let before = project.snapshot();
    project
        .dep(&["deploy", "test"])
        .now(T2)
        .status(3)
        .stdout("")
        .stderr(HELD_MESSAGE)
        .run();
    assert_eq!(project.snapshot(), before);
    assert!(!project.locked("h1") && !project.locked("h3"));
    assert_eq!(
        project.read("hosts/h2/.dep/deploy.lock").unwrap(),
        format!("{HOLDER}\n"),
        "the holder's lock is left alone"
    );
}

#[test]
fn a_held_lock_on_a_first_deploy_creates_no_release_anywhere() {
    let project = TestProject::new().fleet(3);
    lock_by_hand(&project, "h2");
    project
        .dep(&["deploy", "test"])
        .now(T1)
        .status(3)
        .stdout("")
        .stderr(HELD_MESSAGE)
        .run();
    for host in HOSTS {
        assert!(project.releases(host).is_empty(), "{host}");
        assert!(project.log(host).is_empty(), "{host}");
        assert_eq!(project.current(host), None);
    }
    assert!(!project.locked("h1") && !project.locked("h3"));
}

#[test]
fn a_held_lock_stops_a_rollback_too() {
    let project = TestProject::new().fleet(3);
    project.deploy_at(T1);
    project.deploy_at(T2);
    lock_by_hand(&project, "h2");
    let before = project.snapshot();
    project
        .dep(&["rollback", "test"])
        .status(3)
        .stdout("")
        .stderr(HELD_MESSAGE)
        .run();
    assert_eq!(project.snapshot(), before);
}

#[test]
fn the_held_lock_message_names_the_holder_and_since() {
    let project = TestProject::new().fleet(3);
    project.deploy_at(T1);
    lock_by_hand(&project, "h2");
    let output = project
        .dep(&["deploy", "test"])
        .now(T2)
        .status(3)
        .stdout("")
        .stderr(HELD_MESSAGE)
        .run();
    assert_eq!(output.stderr, HELD_MESSAGE);
    let output = project
        .dep(&["rollback", "test"])
        .status(3)
        .stdout("")
        .stderr(HELD_MESSAGE)
        .run();
    assert_eq!(output.stderr, HELD_MESSAGE);
}

#[test]
fn unlock_clears_a_stale_lock_and_the_next_deploy_works() {
    let project = TestProject::new().fleet(3);
    project.deploy_at(T1);
    lock_by_hand(&project, "h2");
    project
        .run_env(&["deploy", "test"], &[("DEP_NOW", T2)])
        .expect_status(3);
    let output = project
        .dep(&["unlock", "test"])
        .stdout(
            "[h1] was not locked\n\
             [h2] unlocked (was locked by alice@laptop (pid 4242, release 20241231235959) since 2024-12-31T23:59:59Z)\n\
             [h3] was not locked\n",
        )
        .stderr("")
        .run();
    // Unnormalised too: the hosts answer in order.
    assert_eq!(
        output.stdout,
        "[h1] was not locked\n\
         [h2] unlocked (was locked by alice@laptop (pid 4242, release 20241231235959) since 2024-12-31T23:59:59Z)\n\
         [h3] was not locked\n"
    );
    for host in HOSTS {
        assert!(!project.locked(host), "{host}");
    }
    project.deploy_at(T2);
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T2));
        assert_eq!(project.previous(host).as_deref(), Some(T1));
    }
}

#[test]
fn the_lock_names_who_holds_it_while_a_deploy_runs() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks."copy:lock"]
run = "cp {{ (deploy_path ~ '/.dep/deploy.lock')|quote }} {{ (deployfile_dir ~ '/lock-' ~ host ~ '.json')|quote }}"
after = "deploy:update_code"
"#,
    );
    project.deploy_at(T1);
    for host in ["h1", "h2"] {
        let text = project.read(&format!("lock-{host}.json")).unwrap();
        let lock: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(lock["who"].as_str().unwrap().contains('@'), "{lock}");
        assert!(lock["pid"].as_u64().unwrap() > 0, "{lock}");
        assert_eq!(lock["release"], T1, "{lock}");
        assert!(lock["since"].as_str().unwrap().ends_with('Z'), "{lock}");
        assert!(!project.locked(host));
    }
}

#[test]
fn a_second_deploy_while_one_runs_is_refused() {
    // The first deploy waits in a task until the test lets it go.
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks.wait]
run = """
touch {{ (deployfile_dir ~ '/waiting-' ~ host)|quote }}
i=0
while [ ! -e {{ (deployfile_dir ~ '/go')|quote }} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
"""
after = "deploy:update_code"
"#,
    );
    let first = project.start_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(project.join("waiting-h1").exists() && project.join("waiting-h2").exists()) {
        assert!(Instant::now() < deadline, "the first deploy never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = project.run_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    project.write("go", "");
    let first = first.wait();
    first.success();
    second
        .expect_status(3)
        .stderr_has("error: deploy is locked; nothing was changed\n")
        .stderr_has("host `h1`: locked ")
        .stderr_has("host `h2`: locked ")
        // The holder is the first deploy, with its release.
        .stderr_has(T1);
    for host in ["h1", "h2"] {
        assert_eq!(project.releases(host), [T1], "{host}");
        assert_eq!(project.current(host).as_deref(), Some(T1));
        assert!(!project.locked(host));
    }
}

/// Removes `rel` in the project after `delay`, from another thread.
fn remove_later(project: &TestProject, rel: &str, delay: Duration) -> std::thread::JoinHandle<()> {
    let path = project.join(rel);
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        std::fs::remove_file(&path).expect("the lock was there");
    })
}

#[test]
fn lock_wait_waits_for_a_held_lock_and_names_its_holder() {
    let project = TestProject::new().fleet(3);
    project.deploy_at(T1);
    lock_by_hand(&project, "h2");
    let release = remove_later(
        &project,
        "hosts/h2/.dep/deploy.lock",
        Duration::from_secs(1),
    );
    let started = Instant::now();
    let output = project
        .run_env(
            &["deploy", "test", "--lock-wait", "20s"],
            &[("DEP_NOW", T2)],
        )
        .success()
        .stdout_has(
            "[h2] waiting for the deploy lock (locked by alice@laptop (pid 4242, release \
             20241231235959) since 2024-12-31T23:59:59Z), up to 20s\n",
        )
        .stdout_has(&format!("release {T2} is live"))
        .clone();
    release.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{}",
        output.transcript()
    );
    // The holder is shown once, and before the deploy starts.
    assert_eq!(
        output.stdout.matches("waiting for the deploy lock").count(),
        1
    );
    assert!(output.stdout.find("waiting").unwrap() < output.stdout.find("deploying").unwrap());
    for host in HOSTS {
        assert_eq!(project.current(host).as_deref(), Some(T2), "{host}");
        assert_eq!(project.releases(host), [T1, T2], "{host}");
        assert!(!project.locked(host), "{host}");
    }
}

#[test]
fn lock_wait_gives_up_with_exit_3_when_the_lock_stays_held() {
    let project = TestProject::new().fleet(3);
    project.deploy_at(T1);
    lock_by_hand(&project, "h2");
    let before = project.snapshot();
    let started = Instant::now();
    let output = project
        .dep(&["deploy", "test", "--lock-wait", "1s"])
        .now(T2)
        .status(3)
        .stdout(
            "[h2] waiting for the deploy lock (locked by alice@laptop (pid 4242, release \
             20241231235959) since 2024-12-31T23:59:59Z), up to [TIME]\n",
        )
        .run();
    assert_eq!(
        output.stderr,
        HELD_MESSAGE.replace(
            "deploy is locked;",
            "deploy is still locked after waiting 1s;"
        )
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(project.snapshot(), before);
    // With --json, the wait is an event.
    let output = project
        .dep(&["deploy", "test", "--lock-wait", "500ms", "--json"])
        .now(T2)
        .status(3)
        .run();
    let events = crate::support::events::parse(&output.stdout);
    assert_eq!(
        events[0],
        serde_json::json!({
            "event": "lock_waiting", "host": "h2", "waited_ms": 0, "left_ms": 500,
            "holder": "locked by alice@laptop (pid 4242, release 20241231235959) since 2024-12-31T23:59:59Z"
        })
    );
    // Then how it ended: still locked, exit 3.
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (&events[1]["event"], &events[1]["exit_code"]),
        (&serde_json::json!("failed"), &serde_json::json!(3))
    );
    // A rollback waits the same way.
    let output = project
        .dep(&["rollback", "test", "--lock-wait", "500ms"])
        .status(3)
        .run();
    assert!(output
        .stderr
        .starts_with("error: deploy is still locked after waiting 500ms;"));
    assert_eq!(project.snapshot(), before);
}

#[test]
fn lock_wait_waits_for_a_running_deploy_then_deploys() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks.wait]
run = """
touch {{ (deployfile_dir ~ '/waiting-' ~ host)|quote }}
i=0
while [ ! -e {{ (deployfile_dir ~ '/go')|quote }} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
"""
after = "deploy:update_code"
"#,
    );
    let first = project.start_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(project.join("waiting-h1").exists() && project.join("waiting-h2").exists()) {
        assert!(Instant::now() < deadline, "the first deploy never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = project.start_env(
        &["deploy", "test", "--lock-wait", "30s"],
        &[("DEP_NOW", T2)],
    );
    std::thread::sleep(Duration::from_millis(1500));
    project.write("go", "");
    first.wait().success();
    let second = second.wait();
    second
        .success()
        .stdout_has("[h1] waiting for the deploy lock (locked by ")
        .stdout_has(&format!(", release {T1}) since "));
    for host in ["h1", "h2"] {
        assert_eq!(project.releases(host), [T1, T2], "{host}");
        assert_eq!(project.current(host).as_deref(), Some(T2));
        assert!(!project.locked(host));
    }
}

/// This machine's name, as dep writes it in `who`.
fn machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the machine's name")
        .trim()
        .to_string()
}

/// A pid that ran and is gone (reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_lock_whose_process_is_gone_is_reported_stale_with_the_command_that_clears_it() {
    let project = TestProject::new().fleet(3);
    project.deploy_at(T1);
    let (machine, pid) = (machine(), dead_pid());
    let holder = format!(
        r#"{{"who":"ci@{machine}","pid":{pid},"release":"20241231235959","since":"2024-12-31T23:59:59Z","id":"dep-crashed"}}"#
    );
    project.write("hosts/h2/.dep/deploy.lock", &format!("{holder}\n"));
    let before = project.snapshot();
    let expected = format!(
        "error: deploy is locked; nothing was changed\n  \
         host `h2`: locked by ci@{machine} (pid {pid}, release 20241231235959) since 2024-12-31T23:59:59Z\n    \
         stale: process {pid} is not running on {machine}\n  \
         the process that took it is gone: clear it with `dep unlock test`\n"
    );
    project
        .dep(&["deploy", "test"])
        .now(T2)
        .status(3)
        .stdout("")
        .stderr(&expected)
        .run();
    // Waiting for it would be pointless: it is reported at once.
    let started = Instant::now();
    project
        .dep(&["deploy", "test", "--lock-wait", "30s"])
        .now(T2)
        .status(3)
        .stdout("")
        .stderr(&expected)
        .run();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        project.snapshot(),
        before,
        "a stale lock is not cleared by itself"
    );
    project
        .dep(&["unlock", "test"])
        .stdout(&format!(
            "[h1] was not locked\n\
             [h2] unlocked (was locked by ci@{machine} (pid {pid}, release 20241231235959) since 2024-12-31T23:59:59Z)\n\
             [h3] was not locked\n"
        ))
        .run();
    project.deploy_at(T2);
}

#[test]
fn a_live_holder_on_this_machine_is_not_stale() {
    let project = TestProject::new().fleet(1);
    let holder = format!(
        r#"{{"who":"ci@{}","pid":{},"release":"20241231235959","since":"2024-12-31T23:59:59Z","id":"x"}}"#,
        machine(),
        std::process::id()
    );
    project.write("hosts/h1/.dep/deploy.lock", &format!("{holder}\n"));
    let output = project.dep(&["deploy", "test"]).now(T1).status(3).run();
    assert!(!output.stderr.contains("stale"), "{}", output.transcript());
    output.stderr_has("if no deploy is running, clear it with `dep unlock test`");
}

#[test]
fn a_held_lock_on_the_first_host_is_reported_with_every_other_holder() {
    // h1 is the first host every run locks: a run that finds it held tries no other host, yet
    // names every host that is locked.
    let project = TestProject::new().fleet(3);
    project.deploy_at(T1);
    lock_by_hand(&project, "h1");
    lock_by_hand(&project, "h3");
    let before = project.snapshot();
    project
        .dep(&["deploy", "test"])
        .now(T2)
        .status(3)
        .stdout("")
        .stderr(
            "error: deploy is locked; nothing was changed\n  \
             host `h1`: locked by alice@laptop (pid 4242, release 20241231235959) since 2024-12-31T23:59:59Z\n  \
             host `h3`: locked by alice@laptop (pid 4242, release 20241231235959) since 2024-12-31T23:59:59Z\n  \
             if no deploy is running, clear it with `dep unlock test`\n",
        )
        .run();
    assert_eq!(project.snapshot(), before);
}
