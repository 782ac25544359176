//! `--json` events for what dep decides on its own (batches, rollbacks, dry runs): structured
//! fields a CI script can read, not sentences; and the time of every event.

use serde_json::{json, Value};

use crate::support::events;
use crate::support::project::{TestProject, T1, T2};

/// The events of one run named `name`, in order, without their `event` field (nor their time:
/// `support::events` checks it).
fn events(stdout: &str, name: &str) -> Vec<Value> {
    events::parse(stdout)
        .into_iter()
        .filter(|event| event["event"] == name)
        .map(|mut event| {
            event.as_object_mut().unwrap().remove("event");
            event
        })
        .collect()
}

/// A post-switch health check that fails while the file `unhealthy` exists.
fn checked_fleet(hosts: usize) -> TestProject {
    TestProject::new().fleet(hosts).deployfile(
        r#"
[[health]]
name = "app"
command = "test ! -e {{ (deployfile_dir ~ '/unhealthy')|quote }}"
"#,
    )
}

#[test]
fn a_rolling_deploy_announces_each_batch_with_its_hosts() {
    let project = TestProject::new().fleet(3);
    let output = project.run_env(
        &["deploy", "test", "--rolling", "2", "--json"],
        &[("DEP_NOW", T1)],
    );
    output.success();
    assert_eq!(
        events(&output.stdout, "batch_started"),
        [
            json!({"batch": 1, "batches": 2, "hosts": ["h1", "h2"]}),
            json!({"batch": 2, "batches": 2, "hosts": ["h3"]}),
        ]
    );
}

#[test]
fn an_undone_first_deploy_rolls_back_to_no_release() {
    let project = checked_fleet(2);
    project.write("unhealthy", "");
    let output = project.run_env(&["deploy", "test", "--json"], &[("DEP_NOW", T1)]);
    output.expect_status(4);
    assert_eq!(
        events(&output.stdout, "rolled_back"),
        [
            json!({"host": "h1", "from": T1, "to": null}),
            json!({"host": "h2", "from": T1, "to": null}),
        ]
    );
    assert_eq!(
        events(&output.stdout, "rollback_verified"),
        [json!({"hosts": []})]
    );
    assert_eq!(project.current("h1"), None);
}

#[test]
fn a_failed_check_rolls_back_and_verifies_every_host() {
    // Unhealthy only in the new release: the release rolled back to passes the same check.
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[[health]]
name = "app"
command = "test ! -e {{ (deployfile_dir ~ '/unhealthy-' ~ release_name)|quote }}"
"#,
    );
    project.deploy_at(T1);
    project.write(&format!("unhealthy-{T2}"), "");
    let output = project.run_env(&["deploy", "test", "--json"], &[("DEP_NOW", T2)]);
    output.expect_status(4);
    assert_eq!(
        events(&output.stdout, "rolled_back"),
        [
            json!({"host": "h1", "from": T2, "to": T1}),
            json!({"host": "h2", "from": T2, "to": T1}),
        ]
    );
    assert_eq!(
        events(&output.stdout, "rollback_verified"),
        [json!({"hosts": ["h1", "h2"]})]
    );
    assert_eq!(project.current("h2").as_deref(), Some(T1));
}

#[test]
fn a_rollback_that_fails_its_checks_too_says_what_is_still_wrong() {
    let project = checked_fleet(2);
    project.deploy_at(T1);
    project.write("unhealthy", "");
    let output = project.run_env(&["deploy", "test", "--json"], &[("DEP_NOW", T2)]);
    output.expect_status(5);
    assert_eq!(
        events(&output.stdout, "rollback_verified"),
        Vec::<Value>::new()
    );
    let unverified = events(&output.stdout, "rollback_unverified");
    assert_eq!(unverified.len(), 1, "{}", output.transcript());
    let hosts = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|f| f["host"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(unverified[0]["release"], T2);
    assert_eq!(hosts(&unverified[0]["failures"]), ["h1", "h2"]);
    assert_eq!(hosts(&unverified[0]["after_rollback"]), ["h1", "h2"]);
    assert!(unverified[0]["after_rollback"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("health check `app` failed: command exited with status 1"));
}

#[test]
fn a_dry_run_ends_with_its_release_and_a_dry_rollback_says_where_hosts_would_go() {
    let project = TestProject::new().fleet(2);
    project.deploy_at(T1);
    project.deploy_at(T2);
    let output = project.run_env(
        &["deploy", "test", "--dry-run", "--json"],
        &[("DEP_NOW", "20250101120000")],
    );
    output.success();
    let last = events::parse(&output.stdout).pop().unwrap();
    assert_eq!(
        last,
        json!({"event": "dry_run_finished", "release": "20250101120000"})
    );
    let output = project.run(&["rollback", "test", "--dry-run", "--json"]);
    output.success();
    assert_eq!(
        events(&output.stdout, "would_roll_back"),
        [
            json!({"host": "h1", "from": T2, "to": T1}),
            json!({"host": "h2", "from": T2, "to": T1}),
        ]
    );
    assert_eq!(events(&output.stdout, "rolled_back"), Vec::<Value>::new());
    assert_eq!(
        events(&output.stdout, "rollback_finished"),
        Vec::<Value>::new()
    );
    assert_eq!(
        project.current("h1").as_deref(),
        Some(T2),
        "a dry run changes nothing"
    );
    // The real one ends with `rollback_finished`.
    let output = project.run(&["rollback", "test", "--json"]);
    output.success();
    let last = events::parse(&output.stdout).pop().unwrap();
    assert_eq!(last["event"], "rollback_finished", "{last}");
    assert_eq!((&last["release"], &last["hosts"]), (&json!(T1), &json!(2)));
    assert!(last["duration_ms"].is_u64(), "{last}");
}

/// Every event says when it happened, in UTC to the millisecond, and how long after the run
/// started: a dashboard or a log pipeline can place it. Times never go back, whatever the hosts'
/// interleaving.
#[test]
fn every_event_has_its_time_and_the_milliseconds_since_the_run_started() {
    let project = TestProject::new()
        .fleet(3)
        .deployfile("[tasks.build]\nrun = \"sleep 0.2\"\nafter = \"deploy:update_code\"\n");
    // The stamps have milliseconds, so the bounds do too.
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    let output = project.run_env(&["deploy", "test", "--json"], &[("DEP_NOW", T1)]);
    let after = chrono::Utc::now();
    output.success();
    let stamped = events::stamped(&output.stdout);
    assert!(stamped.len() > 20, "{}", output.transcript());
    for (time, _, event) in &stamped {
        assert!(
            before <= *time && *time <= after,
            "{time} is not during the run ({before} to {after}): {event}"
        );
    }
    for pair in stamped.windows(2) {
        assert!(pair[0].0 <= pair[1].0, "time went back: {:?}", &pair[1]);
    }
    let (_, elapsed, last) = stamped.last().unwrap();
    assert_eq!(last["event"], "deploy_finished");
    // The run started before the deploy did.
    assert!(
        *elapsed >= last["duration_ms"].as_u64().unwrap(),
        "{}",
        output.transcript()
    );
    let (first_time, first_elapsed, _) = &stamped[0];
    let between = (stamped.last().unwrap().0 - *first_time).num_milliseconds();
    assert!(
        (between - (*elapsed as i64 - *first_elapsed as i64)).abs() <= 50,
        "`time` and `elapsed_ms` disagree by more than the clocks' rounding"
    );
}

/// With `--json`, how the run ended is an event too, whatever ended it (a configuration error
/// before anything ran, a failed task): `failed`, with the message and the exit code, last.
#[test]
fn a_run_that_fails_ends_with_a_failed_event() {
    let project = TestProject::new().fleet(1);
    let output = project.run(&["deploy", "nope", "--json"]);
    assert_eq!(output.status, 2);
    let last = events::parse(&output.stdout).pop().expect("an event");
    assert_eq!(last["event"], "failed", "{last}");
    assert_eq!(last["exit_code"], 2);
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .starts_with("no host matches `nope`"),
        "{last}"
    );
    let project = TestProject::new()
        .fleet(1)
        .deployfile("[tasks.boom]\nrun = \"exit 3\"\nafter = \"deploy:update_code\"\n");
    let output = project.run(&["deploy", "test", "--json"]);
    assert_eq!(output.status, 1);
    let last = events::parse(&output.stdout).pop().expect("an event");
    assert_eq!(last["event"], "failed", "{last}");
    assert_eq!(last["exit_code"], 1);
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("host `h1`, task `boom`"),
        "{last}"
    );
}
