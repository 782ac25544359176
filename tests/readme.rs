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

/// The README's first screen shows a deploy: the picture of the live view and the transcript
/// that `scripts/screenshot-live-view` writes between its markers.
#[test]
fn readme_shows_the_live_view_that_the_screenshot_script_writes() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let block = readme
        .split("<!-- live-view:begin")
        .nth(1)
        .and_then(|rest| rest.split("<!-- live-view:end -->").next())
        .expect("README.md has the live-view markers");
    assert!(block.contains("](docs/live-view.svg)"), "{block}");
    assert!(
        block.contains("$ dep deploy production\ndeploying release "),
        "{block}"
    );
    let table: Vec<Vec<&str>> = block
        .lines()
        .skip_while(|l| !l.starts_with("HOST "))
        .take(2)
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert!(
        table.len() == 2
            && table[0] == ["HOST", "RESULT", "CURRENT", "DURATION", "SLOWEST TASK"]
            && table[1][..2] == ["40 hosts", "live"],
        "the summary in README.md is not as dep prints it now: run scripts/screenshot-live-view\n{block}"
    );
    let svg = std::fs::read_to_string(format!("{root}/docs/live-view.svg")).unwrap();
    assert!(
        svg.contains("40 hosts") && svg.contains(" preparing · "),
        "docs/live-view.svg"
    );
}
