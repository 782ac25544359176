//! Blue-green over real SSH (tests/support/sshd.rs): two blue hosts, two green hosts and two
//! routers, each its own sshd on 127.0.0.x. A router's `traffic:switch` writes the target
//! hosts into `upstream` in its deploy path (what a load balancer would read); health checks
//! are command checks. What a user checks: `.dep/live_color` and `upstream` on each router,
//! where `current` points, the releases logs, the exit code and the message, including when a
//! router dies or stops answering during the traffic switch, or a host's key is refused.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::process::{wait_for_file, Watchdog};
use crate::support::project::{Output, TestProject, T1, T2, T3, T4};
use crate::support::sshd::{Fleet, Key, KeyKind};

const LIMIT: Duration = Duration::from_secs(90);

/// The fleet's hosts by index: blue1, blue2, green1, green2, lb1, lb2.
const HOSTS: [(&str, &str); 6] = [
    ("blue1", "color = \"blue\"\n"),
    ("blue2", "color = \"blue\"\n"),
    ("green1", "color = \"green\"\n"),
    ("green2", "color = \"green\"\n"),
    ("lb1", "roles = [\"lb\"]\n"),
    ("lb2", "roles = [\"lb\"]\n"),
];
const BLUE: [usize; 2] = [0, 1];
const GREEN: [usize; 2] = [2, 3];
const ROUTERS: [usize; 2] = [4, 5];

/// The stage, a command health check that fails on a host holding `unhealthy` in its deploy
/// path, and a `traffic:switch` that, on the router named by `-o hang=HOST`, leaves `marker`
/// and sleeps once before writing `upstream`, and fails on the router and color named by
/// `-o fail=HOST:COLOR`.
fn deployfile(marker: &Path) -> String {
    format!(
        r#"
[stages.test]
strategy = "blue-green"

[[health]]
name = "app"
command = "test ! -e {{{{ deploy_path|quote }}}}/unhealthy"

[tasks."traffic:switch"]
desc = "Point the router at the target color"
roles = ["lb"]
timeout = "2s"
run = [
  '''if [ {{{{ host|quote }}}} = {{{{ hang|quote }}}} ] && [ ! -e {marker} ]; then touch {marker}; sleep 30.9137; fi''',
  '''[ {{{{ (host ~ ':' ~ target_color)|quote }}}} != {{{{ fail|quote }}}} ]''',
  '''printf '%s\n'{{% for h in target_hosts %}} {{{{ h|quote }}}}{{% endfor %}} > {{{{ deploy_path|quote }}}}/upstream.new''',
  '''mv {{{{ deploy_path|quote }}}}/upstream.new {{{{ deploy_path|quote }}}}/upstream''',
]
"#,
        marker = marker.display()
    )
}

/// How each host entry differs from the fleet's defaults (a test's fault).
#[derive(Default)]
struct Faults {
    identity_file: Vec<(usize, PathBuf)>,
    known_hosts_file: Vec<(usize, PathBuf)>,
}

struct Setup {
    fleet: Fleet,
    project: TestProject,
    marker: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let fleet = Fleet::start(HOSTS.len());
        let marker = fleet.dir().join("traffic-switch-started");
        let project = TestProject::new();
        Setup {
            project,
            marker,
            fleet,
        }
        .with(&Faults::default())
    }

    /// The same fleet and project, the Deployfile written with `faults`.
    fn with(self, faults: &Faults) -> Setup {
        let text = self.deployfile_with(faults);
        Setup {
            project: self.project.raw_deployfile(&text),
            ..self
        }
    }

    fn deployfile_with(&self, faults: &Faults) -> String {
        // The upload strategy ships the project's `app/` (TestProject::new).
        let mut text = String::from(
            "[config]\nstrategy = \"upload\"\nupload_from = \"app\"\nconnect_timeout = \"2s\"\n\
             hang = \"\"\nfail = \"\"\n",
        );
        text.push_str(&deployfile(&self.marker));
        for (index, (name, extra)) in HOSTS.iter().enumerate() {
            let host = self.fleet.host(index);
            let pick = |overrides: &[(usize, PathBuf)], default: &Path| {
                overrides
                    .iter()
                    .find(|(i, _)| *i == index)
                    .map_or(default.to_path_buf(), |(_, p)| p.clone())
                    .display()
                    .to_string()
            };
            text.push_str(&format!(
                "\n[hosts.{name}]\nhostname = {:?}\nport = {}\nuser = {:?}\nstage = \"test\"\n\
                 identity_file = {:?}\nknown_hosts_file = {:?}\n{extra}\
                 config = {{ deploy_path = {:?} }}\n",
                host.ip().to_string(),
                host.port(),
                self.fleet.user(),
                pick(&faults.identity_file, &self.fleet.client_key().private),
                pick(&faults.known_hosts_file, self.fleet.known_hosts()),
                host.deploy_path().display().to_string(),
            ));
        }
        text
    }

    /// `dep ARGS` with the clock at `now`, through the fleet's ssh_config and no agent.
    fn dep(&self, args: &[&str], now: &str) -> Output {
        self.project.run_env(args, &self.env(now))
    }

    fn env<'a>(&'a self, now: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("DEP_SSH_CONFIG", self.fleet.ssh_config().to_str().unwrap()),
            ("SSH_AUTH_SOCK", ""),
            ("DEP_NOW", now),
        ]
    }

    fn path(&self, index: usize, rel: &str) -> PathBuf {
        self.fleet.host(index).deploy_path().join(rel)
    }

    fn read(&self, index: usize, rel: &str) -> Option<String> {
        fs::read_to_string(self.path(index, rel)).ok()
    }

    fn current(&self, index: usize) -> Option<String> {
        let target = fs::read_link(self.path(index, "current")).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    fn log(&self, index: usize) -> String {
        self.read(index, ".dep/releases.log").unwrap_or_default()
    }

    /// The last status the releases log of host `index` records for `release`.
    fn status(&self, index: usize, release: &str) -> Option<String> {
        self.log(index)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .rfind(|entry| entry["release"] == release)
            .map(|entry| entry["status"].as_str().unwrap().to_string())
    }

    /// What the routers record and point at: (`.dep/live_color`, `upstream`), each.
    fn routers(&self) -> Vec<(Option<String>, Option<String>)> {
        ROUTERS
            .iter()
            .map(|&i| {
                (
                    self.read(i, ".dep/live_color")
                        .map(|c| c.trim().to_string()),
                    self.read(i, "upstream"),
                )
            })
            .collect()
    }

    /// What a router on `color` records and points at: its name, and its hosts' addresses
    /// (their `hostname`s, the `target_hosts` of `traffic:switch`).
    fn on(&self, color: &str) -> (Option<String>, Option<String>) {
        let hosts = if color == "blue" { BLUE } else { GREEN };
        let upstream: String = hosts
            .iter()
            .map(|&i| format!("{}\n", self.fleet.host(i).ip()))
            .collect();
        (Some(color.to_string()), Some(upstream))
    }

    /// Both routers record `color` as live and send the traffic to its hosts.
    #[track_caller]
    fn assert_routers_on(&self, color: &str) {
        assert_eq!(self.routers(), vec![self.on(color), self.on(color)]);
    }

    #[track_caller]
    fn assert_unlocked(&self) {
        for (index, (name, _)) in HOSTS.iter().enumerate() {
            assert!(
                !self.path(index, ".dep/deploy.lock").exists(),
                "{name} is still locked"
            );
        }
    }

    /// Starts `dep deploy test -o hang=ROUTER` and calls `fault` once that router's
    /// `traffic:switch` has started (and sleeps).
    fn deploy_with_fault(&self, now: &str, router: &str, fault: impl FnOnce()) -> Output {
        let _ = fs::remove_file(&self.marker);
        let hang = format!("hang={router}");
        let running = self
            .project
            .start_env(&["deploy", "test", "-o", &hang], &self.env(now));
        wait_for_file(&self.marker, Duration::from_secs(30));
        fault();
        running.wait()
    }
}

#[test]
fn deploys_go_blue_then_green_and_a_rollback_sends_the_traffic_back_to_blue() {
    let _watchdog = Watchdog::arm("blue-green over ssh: deploys and rollback", LIMIT);
    let setup = Setup::new();

    setup
        .dep(&["deploy", "test"], T1)
        .success()
        .stdout_has("traffic switched to blue (blue1, blue2; none was live)");
    setup.assert_routers_on("blue");
    for i in BLUE {
        assert_eq!(setup.current(i).as_deref(), Some(T1));
    }
    for i in GREEN {
        assert_eq!(setup.current(i), None, "green was not touched");
    }

    let blue_logs: Vec<String> = BLUE.iter().map(|&i| setup.log(i)).collect();
    let blue_links: Vec<_> = BLUE
        .iter()
        .map(|&i| {
            fs::symlink_metadata(setup.path(i, "current"))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    setup
        .dep(&["deploy", "test"], T2)
        .success()
        .stdout_has("traffic switched to green (green1, green2; blue was live)");
    setup.assert_routers_on("green");
    for i in GREEN {
        assert_eq!(setup.current(i).as_deref(), Some(T2));
        assert_eq!(setup.status(i, T2).as_deref(), Some("live"));
    }
    // The standby: its `current` and its log were never touched.
    for (n, &i) in BLUE.iter().enumerate() {
        assert_eq!(setup.current(i).as_deref(), Some(T1));
        let link = fs::symlink_metadata(setup.path(i, "current")).unwrap();
        assert_eq!(
            link.modified().unwrap(),
            blue_links[n],
            "blue's current was rewritten"
        );
        assert_eq!(setup.log(i), blue_logs[n], "blue's releases log changed");
    }
    setup.assert_unlocked();

    let releases = setup.dep(&["releases", "test"], T2);
    releases.success().stdout_has("live color: green\n");
    for (index, says) in [
        (0, "blue, standby"),
        (1, "blue, standby"),
        (2, "green, live"),
        (3, "green, live"),
        (4, "routes traffic to green"),
        (5, "routes traffic to green"),
    ] {
        let head = format!(
            "{} ({}) {says}\n",
            HOSTS[index].0,
            setup.fleet.host(index).deploy_path().display()
        );
        releases.stdout_has(&head);
    }

    // One step: the traffic goes back to the standby, no release changes.
    setup
        .dep(&["rollback", "test"], T3)
        .success()
        .stdout_has("traffic switched to blue (blue1, blue2; green was live)");
    setup.assert_routers_on("blue");
    for i in BLUE {
        assert_eq!(setup.current(i).as_deref(), Some(T1));
    }
    for i in GREEN {
        assert_eq!(setup.current(i).as_deref(), Some(T2));
        assert_eq!(setup.status(i, T2).as_deref(), Some("rolled_back"));
    }
    setup.assert_unlocked();
}

#[test]
fn a_failed_check_on_the_new_color_sends_every_router_back() {
    let _watchdog = Watchdog::arm("blue-green over ssh: failed check", LIMIT);
    let setup = Setup::new();
    setup.dep(&["deploy", "test"], T1).success();
    setup.dep(&["deploy", "test"], T2).success();
    setup.assert_routers_on("green");

    // One host of the color going live fails its check.
    fs::write(setup.path(BLUE[1], "unhealthy"), "").unwrap();
    let output = setup.dep(&["deploy", "test"], T3);
    output
        .expect_status(4)
        .stdout_has("traffic switched to blue (blue1, blue2; green was live)")
        .stdout_has("traffic switched to green (green1, green2; blue was live)")
        .stderr_has("release 20250101120000 failed its health checks")
        .stderr_has("host `blue2`: health check `app` failed");
    // The summary does not call blue live: it keeps the failed release, without traffic.
    for host in ["blue1", "blue2"] {
        let row = output.stdout.lines().find(|l| l.starts_with(host)).unwrap();
        let cells: Vec<&str> = row
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cells[1..3],
            ["switched, takes no traffic", T3],
            "{}",
            output.stdout
        );
    }
    setup.assert_routers_on("green");
    for i in BLUE {
        assert_eq!(
            setup.status(i, T3).as_deref(),
            Some("failed"),
            "{}",
            HOSTS[i].0
        );
    }
    for i in GREEN {
        assert_eq!(setup.current(i).as_deref(), Some(T2));
        assert_eq!(setup.status(i, T2).as_deref(), Some("live"));
    }
    setup.assert_unlocked();
}

/// A release name after T4.
const T5: &str = "20250101140000";

#[test]
fn a_router_that_fails_dies_or_stops_is_named_and_the_others_go_back() {
    let _watchdog = Watchdog::arm("blue-green over ssh: router faults", LIMIT);
    let setup = Setup::new();
    let lb2 = setup.fleet.host(ROUTERS[1]);
    setup.dep(&["deploy", "test"], T1).success();
    setup.assert_routers_on("blue");
    let untouched: Vec<_> = (0..HOSTS.len()).map(|i| setup.log(i)).collect();

    // lb2 stopped before the deploy: the lock times out naming it, and nothing changes.
    lb2.stop();
    let output = setup.dep(&["deploy", "test"], "20250101103000");
    lb2.cont();
    output
        .expect_status(1)
        .stderr_has("host `lb2`, task `deploy:lock`: ")
        .stderr_has("timed out after 2s");
    setup.assert_routers_on("blue");
    for i in GREEN {
        assert_eq!(setup.current(i), None, "{}", HOSTS[i].0);
    }
    let logs: Vec<_> = (0..HOSTS.len()).map(|i| setup.log(i)).collect();
    assert_eq!(logs, untouched, "a releases log changed");
    setup.assert_unlocked();

    // traffic:switch fails on lb2, which still answers: both routers go back (exit 4).
    setup
        .dep(&["deploy", "test", "-o", "fail=lb2:green"], T2)
        .expect_status(4)
        .stderr_has("host `lb2`, task `traffic:switch`: command exited with status 1");
    setup.assert_routers_on("blue");
    setup.assert_unlocked();

    // lb2's sshd dies while its traffic:switch runs (before it wrote anything): lb1 goes back,
    // and lb2 cannot, so the fleet is inconsistent (exit 5), and says where each router is.
    setup
        .deploy_with_fault(T3, "lb2", || lb2.kill())
        .expect_status(5)
        .stdout_has("host `lb2`: task `traffic:switch`: the connection to")
        .stderr_has(
            "host `lb2`: could not be switched back to blue: task `traffic:switch`: \
             the connection to",
        )
        .stderr_has("host `lb1`: routes traffic to blue\n")
        .stderr_has(
            "host `lb2`: routes traffic to an unknown color (its `traffic:switch` failed; \
             `.dep/live_color` says blue)\n",
        )
        .stderr_has("host `blue1`: current -> releases/20250101100000\n");
    setup.assert_routers_on("blue");
    for i in BLUE {
        assert_eq!(setup.current(i).as_deref(), Some(T1));
    }
    for i in GREEN {
        assert_eq!(
            setup.status(i, T3).as_deref(),
            Some("failed"),
            "{}",
            HOSTS[i].0
        );
    }

    // Back up, lb2 still holds the dead deploy's lock; once cleared, the next deploy goes on.
    lb2.restart();
    setup
        .dep(&["deploy", "test"], T4)
        .expect_status(3)
        .stderr_has("host `lb2`: locked by")
        .stderr_has("clear it with `dep unlock test`");
    setup.dep(&["unlock", "test"], T4).success();
    setup.dep(&["deploy", "test"], T4).success();
    setup.assert_routers_on("green");

    // lb2 stops answering (SIGSTOP) while its traffic:switch runs: it times out, named, and
    // going back cannot reach it either; lb1 is back on green.
    let started = Instant::now();
    let output = setup.deploy_with_fault(T5, "lb2", || lb2.stop());
    let took = started.elapsed();
    lb2.cont();
    output
        .expect_status(5)
        .stdout_has("[lb2] ✗ traffic:switch: timed out after 2s")
        .stderr_has("host `lb2`: could not be switched back to green: task `traffic:switch`: ")
        .stderr_has("stopped answering (no session within 2s)")
        .stderr_has("host `lb1`: routes traffic to green\n")
        .stderr_has("host `lb2`: routes traffic to an unknown color");
    // Not a hang: bounded by the task's and the connection's timeouts, not the keepalives'.
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}\n{}",
        output.transcript()
    );
    assert_eq!(setup.routers()[0], setup.on("green"), "lb1");
    for i in GREEN {
        assert_eq!(setup.current(i).as_deref(), Some(T4));
    }
}

#[test]
fn a_refused_key_on_one_green_host_changes_nothing_anywhere() {
    let _watchdog = Watchdog::arm("blue-green over ssh: refused keys", LIMIT);
    let mut setup = Setup::new();
    setup.dep(&["deploy", "test"], T1).success();
    let before: Vec<_> = (0..HOSTS.len())
        .map(|i| (setup.current(i), setup.log(i)))
        .collect();
    let routers = setup.routers();

    let stranger = Key::generate(
        &setup.fleet.dir().join("stranger"),
        KeyKind::Ed25519,
        None,
        "stranger",
    );
    let strangers = setup.fleet.dir().join("known_hosts-without-green2");
    let others: String = (0..HOSTS.len())
        .filter(|&i| i != GREEN[1])
        .map(|i| format!("{}\n", setup.fleet.host(i).known_hosts_line()))
        .collect();
    fs::write(&strangers, others).unwrap();

    let refused_key = format!(
        "host `green2`, task `deploy:lock`: authentication failed for user `{}`",
        setup.fleet.user()
    );
    let unknown_host_key = format!(
        "host `green2`, task `deploy:lock`: the host key of [{}]:{} is unknown",
        setup.fleet.host(GREEN[1]).ip(),
        setup.fleet.host(GREEN[1]).port()
    );
    for (faults, refusal) in [
        (
            Faults {
                identity_file: vec![(GREEN[1], stranger.private.clone())],
                ..Faults::default()
            },
            &refused_key,
        ),
        (
            Faults {
                known_hosts_file: vec![(GREEN[1], strangers.clone())],
                ..Faults::default()
            },
            &unknown_host_key,
        ),
    ] {
        setup = setup.with(&faults);
        let output = setup.dep(&["deploy", "test"], T2);
        output
            .expect_status(1)
            .stderr_has("error: failed on 1 host\n")
            .stderr_has(refusal);
        assert!(
            !output.stdout.contains("traffic:switch"),
            "{}",
            output.stdout
        );
        for i in GREEN {
            assert!(
                !setup.path(i, "releases").join(T2).exists(),
                "{}",
                HOSTS[i].0
            );
        }
        let after: Vec<_> = (0..HOSTS.len())
            .map(|i| (setup.current(i), setup.log(i)))
            .collect();
        assert_eq!(after, before, "a host changed");
        assert_eq!(setup.routers(), routers, "a router changed");
        setup.assert_unlocked();
    }
}
