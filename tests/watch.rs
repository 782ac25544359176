//! The watch window after the switch, on local hosts (and once over SSH, on real sshd): probes
//! are commands shipped with the release (each version of the app decides how its probes behave) and HTTP requests to a
//! loopback server; windows are short (200ms apart, 2s long) and no test asserts their speed.
//!
//! The app's versions: `FLAKY` in the release makes its critical `visits` probe fail one sample
//! in four; `SLOW` makes its non-critical `search` probe take 300ms (its bound is 150ms).

use crate::support::net::HookServer;
use crate::support::project::{Output, TestProject, T1, T2};
use crate::support::sshd::Fleet;

/// The window and the two probes every test here watches, with a webhook for every trigger.
const WATCH: &str = r#"
[watch]
duration = "2s"
interval = "200ms"

[[watch.probe]]
name = "visits"
critical = true
command = '''
n=$(cat {{ (deploy_path ~ '/visits.count')|quote }} 2>/dev/null || echo 0); n=$((n + 1))
echo "$n" > {{ (deploy_path ~ '/visits.count')|quote }}
if [ -e FLAKY ] && [ $((n % 4)) -eq 0 ]; then echo "visit $n failed" >&2; exit 1; fi
'''

[[watch.probe]]
name = "search"
max_p95_ms = 150
command = "if [ -e SLOW ]; then sleep 0.3; fi; echo 1"
"#;

/// Two local hosts watching `WATCH`, telling `hook` about everything, with v1 live (T1,
/// deployed without the window).
fn watched_fleet(hook: &HookServer, extra: &str) -> TestProject {
    let project = TestProject::new()
        .fleet(2)
        .deployfile(WATCH)
        .deployfile(&format!(
            "[[notify]]\nwebhook = {:?}\nkind = \"json\"\n",
            hook.url("/hook")
        ))
        .deployfile(extra);
    project
        .run_env(&["deploy", "test", "--no-watch"], &[("DEP_NOW", T1)])
        .success();
    project
}

/// The next version of the app: `markers` (FLAKY, SLOW) in it.
fn version(project: &TestProject, markers: &[&str]) {
    for marker in ["FLAKY", "SLOW"] {
        let _ = std::fs::remove_file(project.join(&format!("app/{marker}")));
    }
    for marker in markers {
        project.write(&format!("app/{marker}"), "");
    }
}

fn deploy(project: &TestProject, args: &[&str]) -> Output {
    let mut all = vec!["deploy", "test"];
    all.extend_from_slice(args);
    project.run_env(&all, &[("DEP_NOW", T2)])
}

/// The JSON events of `output` named `event`.
fn events(output: &Output, event: &str) -> Vec<serde_json::Value> {
    output
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

/// The notifications `hook` received after v1's deploy (its start and success): event, message.
fn notified(hook: &HookServer) -> Vec<(String, String)> {
    hook.seen()
        .iter()
        .skip(2)
        .map(|h| h.json())
        .map(|v| {
            (
                v["event"].as_str().unwrap_or_default().to_string(),
                v["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_critical_probe_failing_a_share_of_samples_rolls_every_host_back() {
    let hook = HookServer::start();
    let project = watched_fleet(&hook, "");
    version(&project, &["FLAKY"]);

    let output = deploy(&project, &["--json"]);

    output.expect_status(4);
    output.stderr_has(&format!(
        "release {T2} failed its watch window (an error rate is above its threshold)"
    ));
    output.stderr_has("probe `visits` on host `h1`: error rate 25%, above 1%");
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert_eq!(
            project.last_status(host, T2).as_deref(),
            Some("failed"),
            "{host}"
        );
        assert!(!project.locked(host), "{host}");
    }
    assert_eq!(
        events(&output, "rollback_verified").len(),
        1,
        "{}",
        output.stdout
    );
    let finished = &events(&output, "watch_finished")[0];
    assert_eq!(finished["verdict"], "rollback");
    // One failure in four samples of a 10-sample window cannot come back under 1%.
    assert_eq!(finished["stopped_early"], true);
    assert_eq!(events(&output, "watch_sample").len(), 4);
    let rollback: Vec<_> = notified(&hook)
        .into_iter()
        .filter(|(event, _)| event == "deploy_rolled_back")
        .collect();
    assert_eq!(rollback.len(), 1, "{:?}", notified(&hook));
    assert!(
        rollback[0]
            .1
            .contains("probe `visits` on host `h1`: error rate 25%, above 1%"),
        "{rollback:?}"
    );
}

#[test]
fn a_slow_non_critical_probe_keeps_the_release_and_alerts() {
    let hook = HookServer::start();
    let project = watched_fleet(&hook, "");
    version(&project, &["SLOW"]);

    let output = deploy(&project, &[]);

    output.success();
    output.stdout_has("watch verdict: alert");
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T2), "{host}");
    }
    let events = notified(&hook);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["deploy_started", "watch_alert", "deploy_succeeded"]);
    let alert = &events[1].1;
    assert!(
        alert.contains("probe `search` on host `h1`: p95 "),
        "{alert}"
    );
    assert!(alert.contains("ms, above 150 ms"), "{alert}");
}

#[test]
fn a_healthy_window_is_normal_and_its_events_carry_the_figures() {
    let hook = HookServer::start();
    let site = HookServer::start();
    let project = watched_fleet(
        &hook,
        &format!(
            "[[watch.probe]]\nname = \"orders\"\nhttp = {:?}\nmethod = \"POST\"\nmax_p95_ms = 5000\n",
            site.url("/orders")
        ),
    );
    version(&project, &[]);

    let output = deploy(&project, &["--json"]);

    output.success();
    let started = &events(&output, "watch_started")[0];
    assert_eq!(
        started["probes"],
        serde_json::json!(["visits", "search", "orders"])
    );
    assert_eq!(started["samples"], 10);
    assert_eq!(events(&output, "watch_sample").len(), 10);
    let finished = &events(&output, "watch_finished")[0];
    assert_eq!(finished["verdict"], "normal", "{finished}");
    assert_eq!(finished["stopped_early"], false);
    let figures = finished["figures"].as_array().unwrap();
    // Per probe: each host, then the fleet.
    assert_eq!(figures.len(), 9);
    let orders_fleet = figures
        .iter()
        .find(|f| f["probe"] == "orders" && f["host"].is_null())
        .unwrap();
    assert_eq!(orders_fleet["samples"], 20);
    assert_eq!(orders_fleet["errors"], 0);
    assert!(orders_fleet["p95_ms"].is_u64(), "{orders_fleet}");
    let posts = site.seen_at("/orders");
    assert_eq!(posts.len(), 20);
    assert!(posts.iter().all(|p| p.method == "POST"));
    let names: Vec<String> = notified(&hook).into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        names,
        ["deploy_started", "watch_normal", "deploy_succeeded"]
    );
}

#[test]
fn no_watch_skips_the_window_and_watch_sets_its_length() {
    let hook = HookServer::start();
    let project = watched_fleet(&hook, "");
    version(&project, &["FLAKY"]);

    let skipped = deploy(&project, &["--json", "--no-watch"]);
    skipped.success();
    assert!(events(&skipped, "watch_started").is_empty());

    let short = project.run_env(
        &["deploy", "test", "--json", "--watch", "800ms"],
        &[("DEP_NOW", "20250101120000")],
    );
    // Four samples a host: the fourth visit fails, and rolls back.
    short.expect_status(4);
    assert_eq!(events(&short, "watch_started")[0]["samples"], 4);
    assert_eq!(project.current("h1").as_deref(), Some(T2));
}

#[test]
fn a_dry_run_shows_the_probes_and_samples_nothing() {
    let hook = HookServer::start();
    let project = watched_fleet(&hook, "");

    let output = deploy(&project, &["--dry-run"]);

    output.success();
    output.stdout_has("[h2] watch probe visits\n[h2]   cd ");
    output.stdout_has("[h1] watch probe search\n");
    assert!(!output.stdout.contains("watching"), "{}", output.stdout);
    assert!(!project.deploy_path("h1").join("visits.count").exists());
}

#[test]
fn each_batch_of_a_rolling_deploy_is_watched_before_the_next() {
    let hook = HookServer::start();
    // Only h2's copy of the new release is flaky.
    let project = watched_fleet(
        &hook,
        r#"
[tasks."app:flaky_on_h2"]
if = "[ {{ host|quote }} = h2 ]"
run = "touch {{ release_path|quote }}/FLAKY"
after = "deploy:update_code"
"#,
    );
    version(&project, &[]);

    let output = deploy(&project, &["--json", "--rolling", "1"]);

    output.expect_status(4);
    let started = events(&output, "watch_started");
    assert_eq!(started.len(), 2, "{}", output.stdout);
    assert_eq!(started[0]["hosts"], serde_json::json!(["h1"]));
    assert_eq!(started[1]["hosts"], serde_json::json!(["h2"]));
    let verdicts: Vec<_> = events(&output, "watch_finished")
        .iter()
        .map(|f| f["verdict"].clone())
        .collect();
    assert_eq!(verdicts, ["normal", "rollback"]);
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
    }
}

#[test]
fn dep_watch_judges_the_live_release_and_changes_nothing() {
    let hook = HookServer::start();
    let project = watched_fleet(&hook, "");

    let normal = project.run(&["watch", "test", "--duration", "1s"]);
    normal.success();
    normal.stdout_has("watch verdict: normal");

    // The live release turns slow: `dep watch` says so, and changes nothing.
    for host in ["h1", "h2"] {
        std::fs::write(project.deploy_path(host).join("current/SLOW"), "").unwrap();
    }
    let breached = project.run(&["watch", "test", "--duration", "1s"]);
    breached.expect_status(1);
    breached.stderr_has("error: the watch window breached its thresholds");
    breached.stderr_has("probe `search` on host `h2`: p95 ");
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
    }
    let names: Vec<String> = notified(&hook).into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        &names[names.len() - 2..],
        ["watch_normal", "watch_alert"],
        "{names:?}"
    );
}

#[test]
fn a_bad_probe_is_pointed_at() {
    let project = TestProject::new().fleet(1).deployfile(
        "[[watch.probe]]\nname = \"visits\"\ncommand = \"true\"\nmax_error_rate = 0.01\n",
    );
    let output = project.run(&["deploy", "test"]);
    output.expect_status(2);
    output.stderr_has("Deployfile.toml:");
    output.stderr_has("expected a percentage such as \"1%\"");
}

#[test]
fn ctrl_c_during_the_window_leaves_the_release_live_and_says_so() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[watch]
duration = "30s"
interval = "200ms"

[[watch.probe]]
name = "marker"
command = "touch {{ (deployfile_dir ~ '/watching-' ~ host)|quote }}"
"#,
    );
    project
        .run_env(&["deploy", "test", "--no-watch"], &[("DEP_NOW", T1)])
        .success();
    let running = project.start_env(&["deploy", "test"], &[("DEP_NOW", T2)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !(project.join("watching-h1").exists() && project.join("watching-h2").exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the window never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    running.signal(libc::SIGINT);
    let output = running.wait();
    output.expect_status(1).stderr_has(&format!(
        "deploy interrupted after the switch; release {T2} stays live on every host"
    ));
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T2), "{host}");
        assert!(!project.locked(host), "{host} is still locked");
    }
}

#[test]
fn over_ssh_every_host_is_sampled_each_interval_over_its_one_connection() {
    let fleet = Fleet::start(2);
    let mut text = String::from(
        r#"
[watch]
duration = "1s"
interval = "200ms"

[[watch.probe]]
name = "connection"
# The client's port: the same for every sample over one connection.
command = "echo $SSH_CONNECTION | cut -d ' ' -f 2 >> {{ (deploy_path ~ '/../samples.log')|quote }}"

[[watch.probe]]
metric = "memory"
max_value = 100

[[watch.probe]]
metric = "disk"
max_value = 100

[[watch.probe]]
metric = "load"
"#,
    );
    for i in 0..fleet.hosts().len() {
        text.push_str(&fleet.host_table(i, &format!("host{i}"), "test"));
    }
    let project = TestProject::new().deployfile(&text);
    let env = [
        ("DEP_SSH_CONFIG", fleet.ssh_config().to_str().unwrap()),
        ("SSH_AUTH_SOCK", ""),
        ("DEP_NOW", T1),
    ];

    let output = project.run_env(&["deploy", "test", "--json"], &env);

    output.success();
    let finished = &events(&output, "watch_finished")[0];
    assert_eq!(finished["verdict"], "normal", "{finished}");
    for figure in finished["figures"].as_array().unwrap() {
        assert_eq!(figure["errors"], 0, "{figure}");
        if figure["probe"] != "connection" && !figure["host"].is_null() {
            assert!(figure["max_value"].is_number(), "{figure}");
        }
    }
    for index in 0..2 {
        let log = std::fs::read_to_string(fleet.host(index).dir().join("samples.log")).unwrap();
        let ports: Vec<&str> = log.lines().collect();
        // One sample an interval, all over the one connection the deploy opened.
        assert_eq!(ports.len(), 5, "host{index}: {log}");
        assert!(ports.iter().all(|p| *p == ports[0]), "host{index}: {log}");
    }
}
