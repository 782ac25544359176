//! Zero downtime, for real: nginx and php-fpm (tests/support/web.rs) serve every test host's
//! `current/public` while the real `dep` binary deploys, health-checks, rolls back, deploys in
//! batches and notifies webhooks; a client polls every host all along and no request may fail.
//!
//! The app is a tiny PHP app written by the test: `public/index.php` answers the release's
//! `VERSION`, `public/health.php` answers `ok`, or 500 when the release holds a `BROKEN` file.
//! Each host's health check is `curl http://127.0.0.1:{{ web_port }}/health.php` on the host.
//!
//! Needs nginx, php-fpm and curl (scripts/setup-test-deps installs them); the test starts its
//! own servers on 127.0.0.1 ports, never the system services.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::support::net::{ClosedPort, HookServer};
use crate::support::process::Watchdog;
use crate::support::project::{Output, TestProject, T1, T2, T3};
use crate::support::sshd::Fleet;
use crate::support::web::{serve_hosts, write_app, Poller, Sample, Samples, WebServer};

/// No test may run longer than this (each dep run is also bounded by the project harness).
const LIMIT: Duration = Duration::from_secs(50);

/// Fewest requests each host must answer while one dep run is under way: the poller really
/// overlapped the run, so "no request failed" is not vacuous.
const MIN_DURING: usize = 5;

/// The post-switch health check every host runs against its own nginx site.
const HEALTH: &str = r#"
[[health]]
http = "http://127.0.0.1:{{ web_port }}/health.php"
expect_status = 200
expect_body = "ok"
max_latency_ms = 3000
attempts = 2
interval = "100ms"
"#;

/// Breaks the new release on the host named by `-o break_host=NAME` (nowhere by default).
const BREAK_ONE_HOST: &str = r#"
[tasks."app:break"]
desc = "Make this host's copy of the release unhealthy"
if = "[ {{ host|quote }} = {{ break_host|quote }} ]"
run = "touch {{ release_path|quote }}/BROKEN"
after = "deploy:update_code"
"#;

/// Breaks, on the host named by `-o break_both=NAME`, the release that was live before too (as a
/// broken shared database would): there the rollback cannot restore a healthy host.
const BREAK_BOTH: &str = r#"
[tasks."app:break_both"]
desc = "Make this host's new AND previous release unhealthy"
if = "[ {{ host|quote }} = {{ break_both|quote }} ]"
run = "touch {{ release_path|quote }}/BROKEN {{ deploy_path|quote }}/releases/{{ previous_release|quote }}/BROKEN"
after = "deploy:update_code"
"#;

/// `n` local hosts `h1..hn`, a web server for them, `health` and `extra` in the Deployfile, and
/// version `v1` of the app in `app/`.
fn local_fleet(n: usize, health: &str, extra: &str) -> (TestProject, WebServer) {
    let project = TestProject::new()
        .fleet(n)
        .config("break_host", "\"\"")
        .config("break_both", "\"\"")
        .deployfile(health)
        .deployfile(BREAK_ONE_HOST)
        .deployfile(BREAK_BOTH)
        .deployfile(extra);
    let (project, web) = serve_hosts(project);
    write_app(&project, "v1", false);
    (project, web)
}

/// `local_fleet`, deployed once at `T1`: every host serves v1.
fn deployed_fleet(n: usize, health: &str, extra: &str) -> (TestProject, WebServer) {
    let (project, web) = local_fleet(n, health, extra);
    deploy(&project, T1, &[]).success();
    (project, web)
}

/// A deploy while a client polls `/` on every host, and what the client saw.
struct Watched {
    output: Output,
    samples: Samples,
    /// When the deploy started and finished.
    started: Instant,
    finished: Instant,
}

/// Deploys at `now` with `extra` arguments while a client polls `/` on every host of `hosts`:
/// before the run each answered `before` 5 times, after it `after` 5 times.
fn deploy_watched(
    project: &TestProject,
    web: &WebServer,
    hosts: &[&str],
    (now, extra): (&str, &[&str]),
    (before, after): (&str, &str),
) -> Watched {
    let poller = Poller::start(web, "/");
    poller.wait_for(hosts, before, 5, Instant::now());
    let started = Instant::now();
    let output = deploy(project, now, extra);
    let finished = Instant::now();
    poller.wait_for(hosts, after, 5, finished);
    Watched {
        output,
        samples: poller.stop(),
        started,
        finished,
    }
}

fn deploy(project: &TestProject, now: &str, extra: &[&str]) -> Output {
    let mut args = vec!["deploy", "test"];
    args.extend_from_slice(extra);
    project.run_env(&args, &[("DEP_NOW", now)])
}

/// Every host answers `version` now.
#[track_caller]
fn assert_serving(web: &WebServer, hosts: &[&str], version: &str) {
    for host in hosts {
        assert_eq!(
            web.body(host, "/"),
            version,
            "{host} serves the wrong version"
        );
    }
}

/// No request failed: every answer was 200 with one of `known` bodies.
#[track_caller]
fn assert_no_failed_request(samples: &Samples, known: &[&str], web: &WebServer) {
    let bad = samples.bad(known);
    assert!(
        bad.is_empty(),
        "{} of {} requests failed, e.g. {:?}\n{}",
        bad.len(),
        samples.0.len(),
        bad.iter().take(5).collect::<Vec<_>>(),
        web.logs()
    );
}

/// Each host answered at least `MIN_DURING` requests that started in `[from, to]`.
#[track_caller]
fn assert_polled_during(samples: &Samples, hosts: &[&str], from: Instant, to: Instant, what: &str) {
    let during = samples.between(from, to);
    for host in hosts {
        let n = during.iter().filter(|s| s.host == *host).count();
        assert!(
            n >= MIN_DURING,
            "only {n} requests to {host} during {what} ({:?}): the poller did not overlap it",
            to - from
        );
    }
}

/// Every request that started after `after` (and before `before`, if given) answered `version`.
#[track_caller]
fn assert_all_after(samples: &Samples, after: Instant, before: Option<Instant>, version: &str) {
    for sample in &samples.0 {
        if sample.started > after && before.is_none_or(|b| sample.started < b) {
            assert_eq!(
                sample.ok_body(),
                Some(version),
                "{}: a request after the run answered {:?}",
                sample.host,
                sample.outcome
            );
        }
    }
}

/// `host`'s answers, in order, collapsed: e.g. `["v1", "v2", "v1"]`.
fn sequence(samples: &Samples, host: &str) -> Vec<String> {
    samples.runs(host).into_iter().map(|(v, _)| v).collect()
}

/// Position of `needle` in `text`, failing with the transcript when it is not there.
#[track_caller]
fn position(output: &Output, needle: &str) -> usize {
    output
        .stdout
        .find(needle)
        .unwrap_or_else(|| panic!("stdout lacks {needle:?}\n{}", output.transcript()))
}

/// (a) Over SSH to three real sshd hosts: while a client polls every host, a deploy and then a
/// rollback switch what nginx serves without a single failed request; each host moves from v1
/// to v2 exactly once and back to v1 exactly once.
#[test]
fn no_request_fails_during_a_deploy_and_a_rollback_over_ssh() {
    let _watchdog = Watchdog::arm("zero_downtime over ssh", LIMIT);
    let fleet = Fleet::start(3);
    let names: Vec<String> = fleet.hosts().iter().map(|h| h.name().to_string()).collect();
    let hosts: Vec<&str> = names.iter().map(String::as_str).collect();
    let sites: Vec<(&str, &Path)> = fleet
        .hosts()
        .iter()
        .map(|h| (h.name(), h.deploy_path()))
        .collect();
    let web = WebServer::start(&sites);
    let mut text = String::from(HEALTH);
    for host in fleet.hosts() {
        text.push_str(&format!(
            "\n[hosts.{name}]\nstage = \"test\"\nconfig = {{ deploy_path = {path:?}, web_port = {port} }}\n",
            name = host.name(),
            path = host.deploy_path().display().to_string(),
            port = web.port(host.name()),
        ));
    }
    let project = TestProject::new().deployfile(&text);
    write_app(&project, "v1", false);
    let env = |now: &'static str| {
        vec![
            (
                "DEP_SSH_CONFIG",
                fleet.ssh_config().to_str().unwrap().to_string(),
            ),
            ("SSH_AUTH_SOCK", String::new()),
            ("DEP_NOW", now.to_string()),
        ]
    };
    let run = |args: &[&str], now: &'static str| {
        let env = env(now);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        project.run_env(args, &env)
    };

    run(&["deploy", "test"], T1).success();
    assert_serving(&web, &hosts, "v1");

    write_app(&project, "v2", false);
    let poller = Poller::start(&web, "/");
    poller.wait_for(&hosts, "v1", 5, Instant::now());
    let deploy_started = Instant::now();
    let deployed = run(&["deploy", "test"], T2);
    let deploy_finished = Instant::now();
    deployed.success();
    for host in &hosts {
        deployed.stdout_has(&format!("[{host}] ⇒ current -> releases/{T2}"));
        deployed.stdout_has(&format!("[{host}] ♥ "));
    }
    poller.wait_for(&hosts, "v2", 5, deploy_finished);

    let rollback_started = Instant::now();
    let rolled = run(&["rollback", "test"], T2);
    let rollback_finished = Instant::now();
    rolled.success();
    poller.wait_for(&hosts, "v1", 5, rollback_finished);
    let samples = poller.stop();

    assert_no_failed_request(&samples, &["v1", "v2"], &web);
    assert_polled_during(
        &samples,
        &hosts,
        deploy_started,
        deploy_finished,
        "the deploy",
    );
    assert_polled_during(
        &samples,
        &hosts,
        rollback_started,
        rollback_finished,
        "the rollback",
    );
    for host in &hosts {
        // One switch each way, never back and forth.
        assert_eq!(sequence(&samples, host), ["v1", "v2", "v1"], "{host}");
    }
    assert_all_after(&samples, deploy_finished, Some(rollback_started), "v2");
    assert_all_after(&samples, rollback_finished, None, "v1");
    // Each switch happened within its dep run: the first v2 answer came back after the deploy
    // began, and the first v1 answer after v2 came back after the rollback began.
    for host in &hosts {
        let of = samples.of(host);
        let first_v2 = of.iter().position(|s| s.ok_body() == Some("v2")).unwrap();
        assert!(of[first_v2].finished > deploy_started, "{host}");
        let back = first_v2
            + of[first_v2..]
                .iter()
                .position(|s| s.ok_body() == Some("v1"))
                .unwrap();
        assert!(of[back].finished > rollback_started, "{host}");
    }
    assert_serving(&web, &hosts, "v1");
    for host in fleet.hosts() {
        let current = fs::read_link(host.deploy_path().join("current")).unwrap();
        assert_eq!(current, Path::new("releases").join(T1), "{}", host.name());
    }
}

/// (b) One host's new release fails its post-switch health check: every host is rolled back
/// (the healthy ones too), the rollback is verified with the same check, exit 4; afterwards
/// every host serves the old version and the release is marked failed everywhere. The client
/// saw no failed request (v2 may have been served between the switch and the rollback).
#[test]
fn a_failing_health_check_rolls_every_host_back() {
    let _watchdog = Watchdog::arm("health check rollback", LIMIT);
    let (project, web) = deployed_fleet(3, HEALTH, "");
    let hosts = ["h1", "h2", "h3"];
    assert_serving(&web, &hosts, "v1");

    write_app(&project, "v2", false);
    let Watched {
        output,
        samples,
        started,
        finished,
    } = deploy_watched(
        &project,
        &web,
        &hosts,
        (T2, &["-o", "break_host=h2"]),
        ("v1", "v1"),
    );

    output.expect_status(4);
    output
        .stderr_has(&format!("release {T2} failed its health checks"))
        // The check is named by its URL (as written or rendered: either names it).
        .stderr_has("host `h2`: health check `http://127.0.0.1:")
        .stderr_has("/health.php` failed: status 500, expected 200");
    for healthy in ["h1", "h3"] {
        assert!(
            !output.stderr.contains(&format!("host `{healthy}`")),
            "{healthy} passed its check and is not a failure\n{}",
            output.transcript()
        );
    }
    // Every host switched, then went back, then passed the check again (the verification).
    output.stdout_has("rolled back 3 hosts to the release they had before; verified");
    for host in hosts {
        let switched = position(&output, &format!("[{host}] ⇒ current -> releases/{T2}"));
        let back = position(
            &output,
            &format!("[{host}] ⇐ current -> releases/{T1} (was {T2})"),
        );
        assert!(switched < back, "{host}\n{}", output.transcript());
        assert!(
            output.stdout[back..].contains(&format!("[{host}] ♥ ")),
            "{host}: no health check after its rollback\n{}",
            output.transcript()
        );
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
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
        assert!(!project.locked(host), "{host} still locked");
    }
    output.stdout_has("[h2] ✗ health check");

    assert_no_failed_request(&samples, &["v1", "v2"], &web);
    assert_polled_during(&samples, &hosts, started, finished, "the deploy");
    assert_all_after(&samples, finished, None, "v1");
    for host in hosts {
        let sequence = sequence(&samples, host);
        assert!(
            sequence == ["v1"] || sequence == ["v1", "v2", "v1"],
            "{host}: {sequence:?}"
        );
    }
    assert_serving(&web, &hosts, "v1");
}

/// (c) `--rolling 1`: one host at a time, each switched and health-checked before the next
/// begins. Proved three ways: hooks on `deploy:batch_start`/`deploy:batch_end` record, on the
/// host, the time and what every host's nginx serves at that moment; the output's order; and the
/// client's first sight of v2 on each host.
#[test]
fn rolling_one_switches_the_hosts_one_at_a_time() {
    let _watchdog = Watchdog::arm("rolling 1", LIMIT);
    let (project, web) = local_fleet(3, HEALTH, "");
    let hosts = ["h1", "h2", "h3"];
    let curls: Vec<String> = hosts
        .iter()
        .map(|h| {
            format!(
                "{h}=$(curl -s --max-time 2 http://127.0.0.1:{}/)",
                web.port(h)
            )
        })
        .collect();
    let record = |event: &str| {
        format!(
            "echo \"{event} {{{{ host }}}} $(date +%s%N) {}\" >> {{{{ deployfile_dir|quote }}}}/timeline.log",
            curls.join(" ")
        )
    };
    let project = project.deployfile(&format!(
        r#"
[tasks."timeline:start"]
desc = "Record the batch's start and what every host serves"
run = '{}'
after = "deploy:batch_start"

[tasks."timeline:switched"]
desc = "Record the switch"
run = '{}'
after = "deploy:symlink"

[tasks."timeline:end"]
desc = "Record the batch's end and what every host serves"
run = '{}'
after = "deploy:batch_end"
"#,
        record("start"),
        record("switched"),
        record("end"),
    ));
    deploy(&project, T1, &[]).success();
    assert_serving(&web, &hosts, "v1");
    let _ = fs::remove_file(project.join("timeline.log"));

    write_app(&project, "v2", false);
    let Watched {
        output,
        samples,
        started,
        finished,
    } = deploy_watched(
        &project,
        &web,
        &hosts,
        (T2, &["--rolling", "1"]),
        ("v1", "v2"),
    );
    output.success();

    // The timeline the hosts wrote: (event, host, nanoseconds, what h1 h2 h3 served).
    let timeline: Vec<(String, String, u128, String)> = project
        .read("timeline.log")
        .expect("no timeline.log: the batch hooks did not run")
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let event = words.next().unwrap().to_string();
            let host = words.next().unwrap().to_string();
            let nanos = words.next().unwrap().parse().unwrap();
            (event, host, nanos, words.collect::<Vec<_>>().join(" "))
        })
        .collect();
    let steps: Vec<(String, String, String)> = timeline
        .iter()
        .map(|(e, h, _, served)| (e.clone(), h.clone(), served.clone()))
        .collect();
    let step = |e: &str, h: &str, served: &str| (e.to_string(), h.to_string(), served.to_string());
    assert_eq!(
        steps,
        [
            step("start", "h1", "h1=v1 h2=v1 h3=v1"),
            step("switched", "h1", "h1=v2 h2=v1 h3=v1"),
            step("end", "h1", "h1=v2 h2=v1 h3=v1"),
            step("start", "h2", "h1=v2 h2=v1 h3=v1"),
            step("switched", "h2", "h1=v2 h2=v2 h3=v1"),
            step("end", "h2", "h1=v2 h2=v2 h3=v1"),
            step("start", "h3", "h1=v2 h2=v2 h3=v1"),
            step("switched", "h3", "h1=v2 h2=v2 h3=v2"),
            step("end", "h3", "h1=v2 h2=v2 h3=v2"),
        ],
        "{}",
        output.transcript()
    );
    let times: Vec<u128> = timeline.iter().map(|(_, _, t, _)| *t).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "timeline out of order: {timeline:?}"
    );

    // The output: each batch is announced, switched and health-checked before the next.
    let mut last = 0;
    for (i, host) in hosts.iter().enumerate() {
        for needle in [
            format!("batch {}/3: {host}", i + 1),
            format!("[{host}] ⇒ current -> releases/{T2}"),
            format!("[{host}] ♥ "),
        ] {
            let at = position(&output, &needle);
            assert!(
                at > last,
                "{needle:?} out of order\n{}",
                output.transcript()
            );
            last = at;
        }
    }

    // The releases logs: each host went live no earlier than the one before it.
    let live_at: Vec<String> = hosts
        .iter()
        .map(|h| {
            let entry = project.last_entry(h, T2).unwrap();
            assert_eq!(entry["status"], "live", "{h}");
            entry["finished_at"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(live_at.windows(2).all(|w| w[0] <= w[1]), "{live_at:?}");

    // The client saw h1 switch first, then h2, then h3, and no failed request.
    assert_no_failed_request(&samples, &["v1", "v2"], &web);
    assert_polled_during(&samples, &hosts, started, finished, "the rolling deploy");
    let first_v2: Vec<Instant> = hosts
        .iter()
        .map(|h| {
            assert_eq!(sequence(&samples, h), ["v1", "v2"], "{h}");
            samples
                .of(h)
                .iter()
                .find(|s| s.ok_body() == Some("v2"))
                .unwrap()
                .started
        })
        .collect();
    assert!(
        first_v2.windows(2).all(|w| w[0] < w[1]),
        "the client saw the hosts switch out of order"
    );
    // The batch hooks saw the same: h2's batch began after h1 served v2 (wall clock).
    let wall = |s: &Sample| s.wall.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let h1_v2 = samples
        .of("h1")
        .into_iter()
        .find(|s| s.ok_body() == Some("v2"))
        .map(wall)
        .unwrap();
    let h3_start = timeline
        .iter()
        .find(|(e, h, _, _)| e == "start" && h == "h3")
        .unwrap()
        .2;
    assert!(
        h1_v2 < h3_start,
        "h3's batch began before the client saw h1 switch"
    );
    assert_serving(&web, &hosts, "v2");
}

/// (d) `--canary` with an unhealthy release: only the first host gets it, fails its check and is
/// rolled back (exit 4); the other hosts never even got the release directory, and never
/// stopped serving v1.
#[test]
fn an_unhealthy_canary_stops_the_deploy_at_the_first_host() {
    let _watchdog = Watchdog::arm("canary", LIMIT);
    let (project, web) = deployed_fleet(3, HEALTH, "");
    let hosts = ["h1", "h2", "h3"];

    write_app(&project, "v2", true);
    let Watched {
        output,
        samples,
        started,
        finished,
    } = deploy_watched(&project, &web, &hosts, (T2, &["--canary"]), ("v1", "v1"));

    output.expect_status(4);
    output
        .stdout_has("batch 1/2: h1")
        .stdout_has(&format!("[h1] ⇐ current -> releases/{T1} (was {T2})"))
        .stderr_has("host `h1`: health check")
        .stderr_has("status 500");
    assert!(
        !output.stdout.contains("batch 2/2"),
        "the deploy went on after the canary failed\n{}",
        output.transcript()
    );
    assert_eq!(
        project.releases("h1"),
        [T1, T2],
        "the canary keeps its failed release"
    );
    assert_eq!(project.last_status("h1", T2).as_deref(), Some("failed"));
    for host in ["h2", "h3"] {
        assert_eq!(project.releases(host), [T1], "{host} got the new release");
        assert_eq!(
            project.last_status(host, T2),
            None,
            "{host} logged the release"
        );
        assert!(
            !output.stdout.contains(&format!("[{host}] ⇒")),
            "{host} switched\n{}",
            output.transcript()
        );
    }
    for host in hosts {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert!(!project.locked(host), "{host} still locked");
    }

    assert_no_failed_request(&samples, &["v1", "v2"], &web);
    assert_polled_during(&samples, &hosts, started, finished, "the canary deploy");
    assert_eq!(sequence(&samples, "h2"), ["v1"]);
    assert_eq!(sequence(&samples, "h3"), ["v1"]);
    assert_all_after(&samples, finished, None, "v1");
    assert_serving(&web, &hosts, "v1");
}

/// (e) Webhooks reach a loopback server: `start` then `success` for a good deploy, `start` then
/// `rollback` for one whose health check fails, as JSON with the event, release, hosts and stage;
/// a Slack hook subscribed to two events hears only those.
#[test]
fn webhooks_hear_the_start_success_and_rollback_of_deploys() {
    let _watchdog = Watchdog::arm("webhooks", LIMIT);
    let hooks = HookServer::start();
    let notify = format!(
        r#"
[[notify]]
webhook = "{json}"
kind = "json"

[[notify]]
webhook = "{slack}"
kind = "slack"
on = ["success", "rollback"]
"#,
        json = hooks.url("/json"),
        slack = hooks.url("/slack"),
    );
    let (project, web) = local_fleet(3, HEALTH, &notify);

    deploy(&project, T1, &[]).success();
    let json = hooks.seen_at("/json");
    let events: Vec<serde_json::Value> = json.iter().map(|h| h.json()).collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deploy_started", "deploy_succeeded"]);
    for (hook, event) in json.iter().zip(&events) {
        assert_eq!(hook.method, "POST");
        assert_eq!(hook.content_type.as_deref(), Some("application/json"));
        assert_eq!(event["release"], T1);
        assert_eq!(event["hosts"], serde_json::json!(["h1", "h2", "h3"]));
        assert_eq!(event["stage"], "test");
    }
    assert!(events[1]["duration_ms"].is_u64(), "{}", events[1]);
    let slack = hooks.seen_at("/slack");
    assert_eq!(slack.len(), 1, "{slack:?}");
    let text = slack[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains(&format!("release {T1}")) && text.contains("is live on test"),
        "{text}"
    );

    write_app(&project, "v2", true);
    deploy(&project, T2, &[]).expect_status(4);
    let events: Vec<serde_json::Value> = hooks.seen_at("/json")[2..]
        .iter()
        .map(|h| h.json())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deploy_started", "deploy_rolled_back"]);
    for event in &events {
        assert_eq!(event["release"], T2);
        assert_eq!(event["hosts"], serde_json::json!(["h1", "h2", "h3"]));
        assert_eq!(event["stage"], "test");
    }
    let message = events[1]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("failed its health checks") && message.contains("status 500"),
        "{message}"
    );
    let slack = hooks.seen_at("/slack");
    assert_eq!(slack.len(), 2, "{slack:?}");
    let text = slack[1].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains(&format!("release {T2}")) && text.contains("was rolled back"),
        "{text}"
    );
    assert_serving(&web, &["h1", "h2", "h3"], "v1");
}

/// (e) A webhook endpoint that refuses connections does not fail the deploy: exit 0, the
/// release is live, and a warning says the notification failed.
#[test]
fn a_dead_webhook_only_warns() {
    let _watchdog = Watchdog::arm("dead webhook", LIMIT);
    let closed = ClosedPort::new();
    let port = closed.port();
    let notify = format!(
        "\n[[notify]]\nwebhook = \"http://127.0.0.1:{port}/hook\"\nkind = \"json\"\non = [\"success\"]\ntimeout = 1\n"
    );
    let (project, web) = local_fleet(2, HEALTH, &notify);

    let output = deploy(&project, T1, &[]);
    output.success().stdout_has(&format!(
        "warning: notification to `http://127.0.0.1:{port}/…` (json) failed"
    ));
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T1));
        assert_eq!(project.last_status(host, T1).as_deref(), Some("live"));
    }
    assert_serving(&web, &["h1", "h2"], "v1");
}

/// (f) `dep health test` runs the stage's checks against what each host serves now: exit 0 on a
/// healthy fleet, exit 1 naming the one broken host (and only it).
#[test]
fn dep_health_names_the_broken_host() {
    let _watchdog = Watchdog::arm("dep health", LIMIT);
    let stage_health = r#"
[[stages.test.health]]
name = "app health"
http = "http://127.0.0.1:{{ web_port }}/health.php"
expect_body = "ok"
"#;
    let (project, web) = deployed_fleet(3, stage_health, "");

    let healthy = project.run(&["health", "test"]);
    healthy.success();
    for host in ["h1", "h2", "h3"] {
        healthy.stdout_has(&format!("[{host}] ♥ app health: status 200"));
    }

    // Break h2's live release: its health.php now answers 500.
    fs::write(project.deploy_path("h2").join("current/BROKEN"), "").unwrap();
    let broken = project.run(&["health", "test"]);
    broken
        .expect_status(1)
        .stderr_has("host `h2`: health check `app health` failed: status 500, expected 200");
    for host in ["h1", "h3"] {
        assert!(
            !broken.stderr.contains(&format!("host `{host}`")),
            "{host} is healthy\n{}",
            broken.transcript()
        );
        broken.stdout_has(&format!("[{host}] ♥ app health"));
    }
    // The check changes nothing.
    for host in ["h1", "h2", "h3"] {
        assert_eq!(project.current(host).as_deref(), Some(T1));
    }
    assert_serving(&web, &["h1", "h2", "h3"], "v1");
}

/// A stage deployed in batches of one (`[stages.test] rolling = 1`) where the LAST batch is
/// unhealthy: the two batches already switched (and healthy) go back too, so the fleet ends on
/// one release; exit 4. The client saw no failure.
#[test]
fn a_failing_last_batch_rolls_back_the_batches_already_switched() {
    let _watchdog = Watchdog::arm("rolling failure", LIMIT);
    let (project, web) = deployed_fleet(3, HEALTH, "\n[stages.test]\nrolling = 1\n");
    let hosts = ["h1", "h2", "h3"];

    write_app(&project, "v2", false);
    let Watched {
        output,
        samples,
        started,
        finished,
    } = deploy_watched(
        &project,
        &web,
        &hosts,
        (T2, &["-o", "break_host=h3"]),
        ("v1", "v1"),
    );

    output
        .expect_status(4)
        .stdout_has("batch 3/3: h3")
        .stderr_has("host `h3`: health check");
    for host in hosts {
        // Switched in its batch, back at the end.
        let switched = position(&output, &format!("[{host}] ⇒ current -> releases/{T2}"));
        let back = position(
            &output,
            &format!("[{host}] ⇐ current -> releases/{T1} (was {T2})"),
        );
        assert!(switched < back, "{host}\n{}", output.transcript());
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert_eq!(
            project.last_status(host, T2).as_deref(),
            Some("failed"),
            "{host}"
        );
        assert!(!project.locked(host), "{host} still locked");
    }
    for host in ["h1", "h2"] {
        assert!(
            !output.stderr.contains(&format!("host `{host}`")),
            "{host} was healthy\n{}",
            output.transcript()
        );
    }
    assert_no_failed_request(&samples, &["v1", "v2"], &web);
    assert_polled_during(&samples, &hosts, started, finished, "the rolling deploy");
    for host in ["h1", "h2"] {
        // Served v2 for a while (its batch passed), then v1 again.
        assert_eq!(sequence(&samples, host), ["v1", "v2", "v1"], "{host}");
    }
    assert_all_after(&samples, finished, None, "v1");
    assert_serving(&web, &hosts, "v1");
}

/// `--rolling 1 --keep-switched`: when the last batch fails, only it goes back; the batches
/// already switched (and healthy) keep the new release. Exit 4 all the same.
#[test]
fn keep_switched_leaves_the_healthy_batches_on_the_new_release() {
    let _watchdog = Watchdog::arm("keep switched", LIMIT);
    let (project, web) = deployed_fleet(3, HEALTH, "");

    write_app(&project, "v2", false);
    let output = deploy(
        &project,
        T2,
        &["--rolling", "1", "--keep-switched", "-o", "break_host=h3"],
    );
    output
        .expect_status(4)
        .stderr_has("host `h3`: health check");
    for host in ["h1", "h2"] {
        assert_eq!(project.current(host).as_deref(), Some(T2), "{host}");
        assert_eq!(
            project.last_status(host, T2).as_deref(),
            Some("live"),
            "{host}"
        );
        assert_eq!(web.body(host, "/"), "v2", "{host}");
    }
    assert_eq!(project.current("h3").as_deref(), Some(T1));
    assert_eq!(project.last_status("h3", T2).as_deref(), Some("failed"));
    assert_eq!(web.body("h3", "/"), "v1");
    for host in ["h1", "h2", "h3"] {
        assert!(!project.locked(host), "{host} still locked");
    }
}

/// The harness itself: a switch that is NOT atomic (remove `current`, then link it again) is
/// seen by the client as failed requests. So the zero-downtime tests above would notice a gap.
#[test]
fn the_poller_notices_a_non_atomic_switch() {
    let _watchdog = Watchdog::arm("poller self-test", LIMIT);
    let (project, web) = deployed_fleet(1, HEALTH, "");
    write_app(&project, "v2", false);
    deploy(&project, T2, &[]).success();

    let poller = Poller::start(&web, "/");
    poller.wait_for(&["h1"], "v2", 5, Instant::now());
    // What a careless tool does: `rm current; ln -s releases/T1 current`, with a small gap.
    let current = project.deploy_path("h1").join("current");
    fs::remove_file(&current).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    std::os::unix::fs::symlink(Path::new("releases").join(T1), &current).unwrap();
    poller.wait_for(&["h1"], "v1", 5, Instant::now());
    let samples = poller.stop();

    let bad = samples.bad(&["v1", "v2"]);
    assert!(
        !bad.is_empty(),
        "the client saw no gap: {:?}",
        samples.runs("h1")
    );
    assert!(
        bad.iter()
            .all(|s| matches!(&s.outcome, Ok(r) if r.status == 404)),
        "a missing `current` should answer 404: {:?}",
        samples.runs("h1")
    );
}

/// The RESULT column of `host`'s row in the summary table printed at the end of a deploy.
#[track_caller]
fn summary_result(output: &Output, host: &str) -> String {
    let row = output
        .stdout
        .lines()
        .rev()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no summary row for {host}\n{}", output.transcript()));
    row.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// After a failed canary, the summary must not call the hosts that never got the release `ok`.
#[test]

fn a_failed_canary_summary_does_not_call_untouched_hosts_ok() {
    let _watchdog = Watchdog::arm("canary summary", LIMIT);
    let (project, _web) = deployed_fleet(3, HEALTH, "");
    write_app(&project, "v2", true);
    let output = deploy(&project, T2, &["--canary"]);
    output.expect_status(4);
    for host in ["h2", "h3"] {
        assert_ne!(
            summary_result(&output, host),
            "ok",
            "{host} never got release {T2}, yet the summary says ok\n{}",
            output.transcript()
        );
    }
}

/// A host whose `pre_switch` check failed is a failed host: `--json` reports `host_failed` for
/// it (as for any failed step), and the summary table does not call it `ok`.
#[test]

fn a_failed_pre_switch_check_is_reported_as_a_host_failure() {
    let _watchdog = Watchdog::arm("pre_switch summary", LIMIT);
    let pre_switch = "\n[[health]]\nphase = \"pre_switch\"\ncommand = \"test ! -e BROKEN\"\n";
    let (project, _web) = deployed_fleet(3, pre_switch, "");

    let json = deploy(&project, T2, &["-o", "break_host=h3", "--json"]);
    json.expect_status(1);
    let failed: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "host_failed")
        .collect();
    assert!(
        failed.iter().any(|e| e["host"] == "h3"),
        "no host_failed event for h3\n{}",
        json.transcript()
    );

    let output = deploy(&project, T3, &["-o", "break_host=h3"]);
    output.expect_status(1);
    assert_ne!(
        summary_result(&output, "h3"),
        "ok",
        "h3 failed its pre_switch check, yet the summary says ok\n{}",
        output.transcript()
    );
}

/// When the release the hosts go back to fails the same check (h2's old release is broken too),
/// the rollback is not verified: exit 5, and dep says where every host's `current` points.
#[test]
fn an_unverifiable_rollback_exits_5_saying_where_each_host_points() {
    let _watchdog = Watchdog::arm("unverifiable rollback", LIMIT);
    let (project, web) = deployed_fleet(3, HEALTH, "");

    write_app(&project, "v2", false);
    let output = deploy(&project, T2, &["-o", "break_both=h2"]);
    output.expect_status(5);
    for host in ["h1", "h2", "h3"] {
        output.stderr_has(&format!("host `{host}`: current -> releases/{T1}"));
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert!(!project.locked(host), "{host} still locked");
    }
    output.stdout_has("after the rollback, host `h2`:");
    assert_eq!(web.body("h1", "/"), "v1");
}

/// The rollback above, told honestly: h2 WAS switched back (its `current` points at the old
/// release); what failed is the old release's health check there. The error must say that,
/// not that h2 "could not be switched back".
#[test]

fn an_unverifiable_rollback_says_why_the_host_is_a_problem() {
    let _watchdog = Watchdog::arm("unverifiable rollback message", LIMIT);
    let (project, _web) = deployed_fleet(3, HEALTH, "");
    write_app(&project, "v2", false);
    let output = deploy(&project, T2, &["-o", "break_both=h2"]);
    output.expect_status(5);
    assert_eq!(project.current("h2").as_deref(), Some(T1));
    assert!(
        !output.stderr.contains("could not switch back `h2`"),
        "h2 was switched back (current -> {T1}); the error says otherwise\n{}",
        output.transcript()
    );
    output
        .stderr_has("host `h2`")
        .stderr_has("failed: status 500, expected 200");
}

/// A `pre_switch` check runs against the new release before the switch: when it fails, nothing
/// switches anywhere (exit 1) and nobody ever sees the new version.
#[test]
fn a_failing_pre_switch_check_switches_nothing() {
    let _watchdog = Watchdog::arm("pre_switch", LIMIT);
    let pre_switch = r#"
[[health]]
name = "release is complete"
phase = "pre_switch"
command = "test -f public/index.php && test ! -e BROKEN"
"#;
    let (project, web) = deployed_fleet(3, pre_switch, "");
    let hosts = ["h1", "h2", "h3"];

    write_app(&project, "v2", false);
    let Watched {
        output,
        samples,
        started,
        finished,
    } = deploy_watched(
        &project,
        &web,
        &hosts,
        (T2, &["-o", "break_host=h3"]),
        ("v1", "v1"),
    );

    output
        .expect_status(1)
        .stderr_has("h3")
        .stderr_has("release is complete");
    assert!(
        !output.stdout.contains('⇒'),
        "something switched\n{}",
        output.transcript()
    );
    for host in hosts {
        assert_eq!(project.current(host).as_deref(), Some(T1), "{host}");
        assert_eq!(
            project.last_status(host, T2).as_deref(),
            Some("failed"),
            "{host}"
        );
        assert_eq!(
            sequence(&samples, host),
            ["v1"],
            "{host} served the new release"
        );
    }
    assert_polled_during(&samples, &hosts, started, finished, "the deploy");
}
