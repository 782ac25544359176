//! What dep prints: the summary table, GitHub Actions groups and annotations, completions and
//! the man page (exact text where it is stable).

use crate::support::project::{TestProject, T1};

#[test]
fn deploy_ends_with_a_summary_table() {
    let project = TestProject::new().fleet(2);
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output.success();
    let table: Vec<&str> = output.stdout.lines().rev().take(3).collect();
    assert!(
        table[2].starts_with("HOST  RESULT  CURRENT         DURATION  SLOWEST TASK"),
        "{}",
        output.transcript()
    );
    for (line, host) in table[..2].iter().rev().zip(["h1", "h2"]) {
        assert!(
            line.starts_with(&format!("{host}    live    {T1}")),
            "{line:?}\n{}",
            output.transcript()
        );
    }
}

#[test]
fn a_failed_deploy_summary_names_the_failed_task_and_the_unchanged_hosts() {
    let project = TestProject::new().fleet(2).deployfile(
        "[tasks.check]\nrun = \"test {{ host }} != h2\"\nafter = \"deploy:update_code\"\n",
    );
    let output = project.run_env(&["deploy", "test"], &[("DEP_NOW", T1)]);
    output.expect_status(1);
    assert!(
        output.stdout.contains("\nh1    unchanged      (unchanged)"),
        "{}",
        output.transcript()
    );
    assert!(
        output.stdout.contains("\nh2    failed: check  (unchanged)"),
        "{}",
        output.transcript()
    );
}

#[test]
fn github_actions_gets_groups_with_output_and_error_annotations() {
    let project = TestProject::new()
        .fleet(1)
        .deployfile(
            "[tasks.say]\nrun = \"echo hello from {{ host }}\"\nafter = \"deploy:update_code\"\n",
        )
        .deployfile("[tasks.boom]\nrun = \"echo nope >&2; exit 7\"\nafter = \"say\"\n");
    let output = project.run_env(
        &["deploy", "test"],
        &[("DEP_NOW", T1), ("GITHUB_ACTIONS", "true")],
    );
    output.expect_status(1);
    assert!(
        output.stdout.contains("::group::[h1] ✓ say (")
            && output
                .stdout
                .contains(")\n[h1] │ hello from h1\n::endgroup::\n"),
        "{}",
        output.transcript()
    );
    assert!(
        output.stdout.contains(
            "[h1] │ nope\n::endgroup::\n::error title=dep: boom failed on h1::exit status 7\n"
        ),
        "{}",
        output.transcript()
    );
    // Tasks without output stay single lines.
    assert!(
        output.stdout.contains("\n[h1] ✓ deploy:setup ("),
        "{}",
        output.transcript()
    );
}

#[test]
fn completions_and_man_page() {
    let project = TestProject::empty().no_deployfile();
    let bash = project.run(&["completions", "bash"]);
    bash.success();
    assert!(
        bash.stdout.contains("_dep()") && bash.stdout.contains("rollback"),
        "{}",
        bash.transcript()
    );
    let man = project.run(&["man"]);
    man.success();
    assert!(
        man.stdout.starts_with(".ie \\n(.g .ds Aq \\(aq") && man.stdout.contains(".TH dep 1"),
        "{}",
        man.transcript()
    );
}

#[test]
fn releases_as_json_one_object_per_host() {
    let project = TestProject::new().fleet(2);
    project.deploy_at(T1);
    project.deploy_at("20250101100100");
    let output = project.run(&["releases", "test", "--json"]);
    output.success();
    let hosts: Vec<serde_json::Value> = output
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(hosts.len(), 2, "{}", output.transcript());
    for (value, host) in hosts.iter().zip(["h1", "h2"]) {
        assert_eq!(value["host"], host);
        assert_eq!(value["current"], "20250101100100");
        assert_eq!(value["previous"], T1);
        assert_eq!(value["releases"][0]["release"], "20250101100100");
        assert_eq!(value["releases"][0]["status"], "live");
        assert_eq!(value["releases"][1]["release"], T1);
    }
}
