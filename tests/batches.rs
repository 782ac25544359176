//! Rolling and canary deploys on local hosts: what runs once, and what runs per batch.

use crate::support::project::{TestProject, T1};

#[test]
fn a_once_task_runs_on_its_role_even_when_that_host_is_in_a_later_batch() {
    let project = TestProject::new()
        .fleet(3)
        .roles("h1", &["web"])
        .roles("h2", &["web"])
        .roles("h3", &["db"])
        .deployfile(
            r#"
[tasks.migrate]
once = true
roles = ["db"]
run = "echo {{ host|quote }} >> {{ (deployfile_dir ~ '/migrated')|quote }}"
after = "deploy:update_code"
"#,
        );
    let output = project.run_env(&["deploy", "test", "--rolling", "1"], &[("DEP_NOW", T1)]);
    output.success();
    assert_eq!(project.read("migrated").as_deref(), Some("h3\n"));
}

#[test]
fn a_failing_batch_end_runs_once_for_its_batch() {
    let project = TestProject::new().fleet(2).deployfile(
        r#"
[tasks."deploy:batch_end"]
run = "echo {{ host|quote }} >> {{ (deployfile_dir ~ '/batch_end')|quote }}; test {{ host|quote }} != h2"
"#,
    );
    let output = project.run_env(&["deploy", "test", "--rolling", "1"], &[("DEP_NOW", T1)]);
    output.expect_status(1);
    assert_eq!(project.read("batch_end").as_deref(), Some("h1\nh2\n"));
    output.stderr_has("host `h2`, task `deploy:batch_end`: command exited with status 1");
}
