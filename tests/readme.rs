//! The README's usage block is `dep --help`, word for word.

use crate::support::project::TestProject;

#[test]
fn readme_usage_block_is_dep_help() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("## Usage")
        .nth(1)
        .and_then(|usage| usage.split("```text\n").nth(1))
        .and_then(|rest| rest.split("\n```").next())
        .expect("README.md has a ```text block under ## Usage");
    let help = TestProject::empty()
        .no_deployfile()
        .dep(&["--help"])
        .stderr("")
        .run()
        .stdout;
    assert_eq!(
        block,
        help.trim_end(),
        "update README.md's usage block to the output of `dep --help`"
    );
}
