//! Blue-green through a real load balancer: two colors, each a local host served by nginx and
//! php-fpm (tests/support/web.rs), and one more nginx in front of them on loopback whose
//! upstream file the Deployfile's `traffic:switch` task rewrites, checks (`nginx -t`) and
//! reloads. A client polls through the load balancer all along: no request may fail while
//! deploys, traffic switches and a blue-green rollback happen.
//!
//! Needs nginx, php-fpm and curl (scripts/setup-test-deps installs them).

use std::fs;
use std::time::{Duration, Instant};

use crate::support::process::Watchdog;
use crate::support::project::{Output, TestProject, T1, T2, T3, T4};
use crate::support::web::{write_app, LoadBalancer, Poller, Samples, WebServer};

const LIMIT: Duration = Duration::from_secs(60);

/// The stage, its checks, and the nginx upstream recipe of docs/zero-downtime.md.
const DEPLOYFILE: &str = r#"
[stages.test]
strategy = "blue-green"

[[health]]
http = "http://127.0.0.1:{{ web_port }}/health.php"
expect_status = 200
expect_body = "ok"
max_latency_ms = 3000
attempts = 2
interval = "100ms"

# The watch window is off unless `--watch D`; its probe fails in a release holding WATCHFAIL.
[stages.test.watch]
duration = "0s"
interval = "200ms"

[[stages.test.watch.probe]]
name = "errors"
critical = true
command = "[ ! -e WATCHFAIL ]"

# With `-o strict=yes`, a broken release fails before the traffic moves.
[[health]]
phase = "pre_switch"
command = "[ {{ strict|quote }} != yes ] || [ ! -f {{ release_path|quote }}/BROKEN ]"

[tasks."traffic:switch"]
desc = "Point the load balancer at the target color"
roles = ["lb"]
run = [
  '''printf 'server %s;\n'{% for h in target_hosts %} {{ h|quote }}{% endfor %} > {{ upstream|quote }}.new''',
  '''cp {{ upstream|quote }} {{ upstream|quote }}.old && mv {{ upstream|quote }}.new {{ upstream|quote }}''',
  '''{{ nginx_test }} || { mv {{ upstream|quote }}.old {{ upstream|quote }}; exit 1; }''',
  '''{{ nginx_reload }}''',
]
"#;

struct Setup {
    project: TestProject,
    web: WebServer,
    lb: LoadBalancer,
}

/// Hosts blue1 and green1 behind lb1 (the load balancer's router, a local host too), and
/// version v1 of the app.
fn setup() -> Setup {
    let project = TestProject::new();
    let (blue, green) = (project.deploy_path("blue1"), project.deploy_path("green1"));
    let web = WebServer::start(&[("blue1", blue.as_path()), ("green1", green.as_path())]);
    let address = |host: &str| format!("127.0.0.1:{}", web.port(host));
    let lb = LoadBalancer::start(&[address("blue1")]);
    let hostname = |host: &str| format!("hostname = {:?}", address(host));
    let project = project
        .local_host("blue1", "test", &["color = \"blue\"", &hostname("blue1")])
        .local_host(
            "green1",
            "test",
            &["color = \"green\"", &hostname("green1")],
        )
        .host_config("blue1", "web_port", &web.port("blue1").to_string())
        .host_config("green1", "web_port", &web.port("green1").to_string())
        .local_host("lb1", "test", &[])
        .roles("lb1", &["lb"])
        .host_config("lb1", "web_port", &lb.port.to_string())
        .host_config(
            "lb1",
            "upstream",
            &format!("{:?}", lb.upstream_file().display().to_string()),
        )
        .host_config("lb1", "nginx_test", &format!("{:?}", lb.test_command()))
        .host_config("lb1", "nginx_reload", &format!("{:?}", lb.reload_command()))
        .config("strict", "\"no\"")
        .deployfile(DEPLOYFILE);
    write_app(&project, "v1", false);
    Setup { project, web, lb }
}

fn deploy(project: &TestProject, now: &str) -> Output {
    deploy_with(project, now, &[])
}

fn deploy_with(project: &TestProject, now: &str, extra: &[&str]) -> Output {
    let mut args = vec!["deploy", "test"];
    args.extend_from_slice(extra);
    project.run_env(&args, &[("DEP_NOW", now)])
}

fn live_color(project: &TestProject) -> Option<String> {
    fs::read_to_string(project.deploy_path("lb1").join(".dep/live_color"))
        .ok()
        .map(|c| c.trim().to_string())
}

fn releases_log(project: &TestProject, host: &str) -> String {
    fs::read_to_string(project.deploy_path(host).join(".dep/releases.log")).unwrap_or_default()
}

/// Two deploys: v1 went to blue, then v2 to green, which is live; blue is the standby.
fn green_live_on_v2(project: &TestProject) {
    deploy(project, T1).success();
    write_app(project, "v2", false);
    deploy(project, T2).success();
    assert_eq!(live_color(project).as_deref(), Some("green"));
}

/// A client polling `/` through the load balancer.
fn poll(lb: &LoadBalancer) -> Poller {
    Poller::start_on(&[("lb".to_string(), lb.port)], "/")
}

#[track_caller]
fn assert_no_failed_request(samples: &Samples, known: &[&str], setup: &Setup) {
    let bad = samples.bad(known);
    assert!(
        bad.is_empty(),
        "{} of {} requests through the load balancer failed, e.g. {:?}\n{}\n{}",
        bad.len(),
        samples.0.len(),
        bad.iter().take(5).collect::<Vec<_>>(),
        setup.lb.logs(),
        setup.web.logs()
    );
}

#[track_caller]
fn assert_polled_during(samples: &Samples, from: Instant, to: Instant, what: &str) {
    let n = samples.between(from, to).len();
    assert!(
        n >= 5,
        "only {n} requests during {what}: the poller did not overlap it"
    );
}

#[test]
fn deploys_and_a_rollback_switch_the_load_balancer_without_a_failed_request() {
    let _watchdog = Watchdog::arm("blue-green deploys and rollback", LIMIT);
    let setup = setup();
    let project = &setup.project;

    // The first deploy goes to blue.
    deploy(project, T1).success();
    assert_eq!(live_color(project).as_deref(), Some("blue"));
    assert_eq!(project.current("blue1").as_deref(), Some(T1));
    assert_eq!(project.current("green1"), None, "green was not touched");
    assert_eq!(setup.lb.body("/"), "v1");

    // A dry run says which color would go live, and changes nothing.
    write_app(project, "v2", false);
    project
        .run_env(&["deploy", "test", "--dry-run"], &[("DEP_NOW", T2)])
        .success()
        .stdout_has("dry run: green would go live (green1; blue was live)");
    assert_eq!(live_color(project).as_deref(), Some("blue"));

    let poller = poll(&setup.lb);
    poller.wait_for(&["lb"], "v1", 5, Instant::now());
    let blue_log = releases_log(project, "blue1");
    let started = Instant::now();
    deploy(project, T2)
        .success()
        .stdout_has("traffic switched to green (green1; blue was live)");
    let deployed = Instant::now();
    poller.wait_for(&["lb"], "v2", 5, deployed);
    assert_eq!(live_color(project).as_deref(), Some("green"));
    assert_eq!(project.current("green1").as_deref(), Some(T2));
    // The standby color still serves the release it had, and its log did not change.
    assert_eq!(project.current("blue1").as_deref(), Some(T1));
    assert_eq!(setup.web.body("blue1", "/"), "v1");
    assert_eq!(releases_log(project, "blue1"), blue_log);
    let releases = project.run(&["releases", "test"]);
    releases.success().stdout_has("live color: green\n");
    for (host, says) in [
        ("blue1", "blue, standby"),
        ("green1", "green, live"),
        ("lb1", "routes traffic to green"),
    ] {
        let head = format!("{host} ({}) {says}\n", project.deploy_path(host).display());
        releases.stdout_has(&head);
    }

    // The rollback switches the traffic back to the standby: no release changes.
    let rollback_started = Instant::now();
    let rollback = project.run(&["rollback", "test"]);
    let rolled_back = Instant::now();
    rollback
        .success()
        .stdout_has("traffic switched to blue (blue1; green was live)");
    eprintln!(
        "blue-green rollback, end to end: {:?}",
        rolled_back - rollback_started
    );
    poller.wait_for(&["lb"], "v1", 5, rolled_back);
    assert_eq!(live_color(project).as_deref(), Some("blue"));
    assert_eq!(project.current("green1").as_deref(), Some(T2));
    assert_eq!(project.current("blue1").as_deref(), Some(T1));
    assert_eq!(
        project.last_status("green1", T2).as_deref(),
        Some("rolled_back")
    );
    let samples = poller.stop();
    assert_no_failed_request(&samples, &["v1", "v2"], &setup);
    assert_polled_during(&samples, started, deployed, "the deploy");

    // Green's release was rolled back: there is nothing left to go back to.
    project
        .run(&["rollback", "test"])
        .expect_status(1)
        .stderr_has("rollback refused, nothing was changed");
    assert_eq!(live_color(project).as_deref(), Some("blue"));
}

#[test]
fn a_broken_release_on_the_idle_color_gets_traffic_only_while_its_checks_run() {
    let _watchdog = Watchdog::arm("blue-green broken release", LIMIT);
    let setup = setup();
    let project = &setup.project;
    green_live_on_v2(project);

    let poller = poll(&setup.lb);
    poller.wait_for(&["lb"], "v2", 5, Instant::now());
    write_app(project, "v3", true);
    let started = Instant::now();
    let output = deploy(project, T3);
    let finished = Instant::now();
    output
        .expect_status(4)
        .stdout_has("traffic switched to blue (blue1; green was live)")
        .stdout_has("traffic switched to green (green1; blue was live)");
    poller.wait_for(&["lb"], "v2", 5, finished);
    let samples = poller.stop();

    // The traffic is back on the standby, which was never touched.
    assert_eq!(live_color(project).as_deref(), Some("green"));
    assert_eq!(project.current("green1").as_deref(), Some(T2));
    // The idle color keeps the failed release (it takes no traffic; the next deploy goes there).
    assert_eq!(project.current("blue1").as_deref(), Some(T3));
    assert_eq!(project.last_status("blue1", T3).as_deref(), Some("failed"));
    assert_eq!(setup.lb.body("/"), "v2");
    // v1 is blue's answer to a request an old nginx worker still took just after the previous
    // deploy's reload (`nginx -s reload` returns before the old workers stop): 200 all the same.
    assert_no_failed_request(&samples, &["v1", "v2", "v3"], &setup);
    assert_polled_during(&samples, started, finished, "the deploy");
    // The broken release answered only while the deploy ran (its checks), never after: a
    // request the old nginx workers had accepted may finish just after the reload.
    let settled = finished + Duration::from_secs(1);
    let late: Vec<_> = samples
        .0
        .iter()
        .filter(|s| s.started > settled && s.ok_body() == Some("v3"))
        .collect();
    assert!(
        late.is_empty(),
        "v3 still served after the deploy: {late:?}"
    );

    // No rollback to a failed release; the next deploy goes to the idle color again.
    project
        .run(&["rollback", "test"])
        .expect_status(1)
        .stderr_has("not older than the live");
    write_app(project, "v4", false);
    deploy(project, T4).success();
    assert_eq!(live_color(project).as_deref(), Some("blue"));
    // `nginx -s reload` returns before the new workers take over.
    poll(&setup.lb).wait_for(&["lb"], "v4", 5, Instant::now());
}

#[test]
fn a_watch_window_that_rolls_back_sends_the_traffic_back_to_the_standby() {
    let _watchdog = Watchdog::arm("blue-green watch window", LIMIT);
    let setup = setup();
    let project = &setup.project;
    green_live_on_v2(project);
    let poller = poll(&setup.lb);
    poller.wait_for(&["lb"], "v2", 20, Instant::now());
    write_app(project, "v3", false);
    project.write("app/WATCHFAIL", "");
    deploy_with(project, T3, &["--watch", "2s"])
        .expect_status(4)
        .stdout_has("traffic switched to blue (blue1; green was live)")
        .stdout_has("traffic switched to green (green1; blue was live)");
    fs::remove_file(project.join("app/WATCHFAIL")).unwrap();
    poller.wait_for(&["lb"], "v2", 5, Instant::now());
    let samples = poller.stop();
    assert_no_failed_request(&samples, &["v1", "v2", "v3"], &setup);
    assert_eq!(live_color(project).as_deref(), Some("green"));
    assert_eq!(project.current("green1").as_deref(), Some(T2));
    assert_eq!(project.last_status("blue1", T3).as_deref(), Some("failed"));
}

#[test]
fn a_release_failing_its_pre_switch_check_never_gets_traffic() {
    let _watchdog = Watchdog::arm("blue-green pre_switch", LIMIT);
    let setup = setup();
    let project = &setup.project;
    green_live_on_v2(project);
    let poller = poll(&setup.lb);
    poller.wait_for(&["lb"], "v2", 20, Instant::now());
    write_app(project, "v3", true);
    deploy_with(project, T3, &["-o", "strict=yes"])
        .expect_status(1)
        .stdout_has("health check (pre_switch)");
    poller.wait_for(&["lb"], "v2", 5, Instant::now());
    let samples = poller.stop();
    assert_no_failed_request(&samples, &["v1", "v2"], &setup);
    assert_eq!(live_color(project).as_deref(), Some("green"));
    assert_eq!(
        project.current("blue1").as_deref(),
        Some(T1),
        "nothing switched"
    );
    assert_eq!(project.last_status("blue1", T3).as_deref(), Some("failed"));
    assert!(
        !releases_log(project, "lb1").contains(T3),
        "the routers hold no releases"
    );
}

#[test]
fn a_blue_green_stage_needs_both_colors_and_a_router() {
    let project = TestProject::new().deployfile(
        "[stages.test]\nstrategy = \"blue-green\"\n\n[hosts.a]\nlocal = true\nstage = \"test\"\ncolor = \"blue\"\n",
    );
    project
        .run(&["deploy", "test"])
        .expect_status(2)
        .stderr_has("blue-green stage `test` has no green host");
    let project = TestProject::new().deployfile("[hosts.a]\nlocal = true\ncolor = \"purple\"\n");
    project.run(&["deploy", "test"]).expect_status(2);

    // A selection across a blue-green stage and another: refused whole, nothing deployed.
    let project = TestProject::new();
    let mut deployfile = String::from(
        "[stages.bg]\nstrategy = \"blue-green\"\n\n[tasks.\"traffic:switch\"]\nrun = \"true\"\n\n",
    );
    for (host, stage, color) in [
        ("plain", "other", ""),
        ("blue1", "bg", "color = \"blue\"\n"),
        ("green1", "bg", "color = \"green\"\n"),
        ("lb1", "bg", ""),
    ] {
        deployfile.push_str(&format!(
            "[hosts.{host}]\nlocal = true\nstage = \"{stage}\"\nroles = [\"app\"]\n{color}\
             config = {{ deploy_path = {:?} }}\n",
            project.deploy_path(host).display().to_string()
        ));
    }
    let project = project.deployfile(&deployfile);
    project
        .run(&["deploy", "role=app"])
        .expect_status(2)
        .stderr_has(
        "a blue-green stage is worked on alone: the selection has hosts of the stages bg, other",
    );
    for host in ["plain", "blue1", "green1", "lb1"] {
        assert!(
            !project.deploy_path(host).join("current").exists(),
            "{host} was deployed"
        );
    }
}
