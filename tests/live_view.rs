//! The live view at fleet scale (issue 14): the real binary on a pseudo-terminal of a given size,
//! 40 local hosts, the screen read by a terminal emulator. While it runs, the view fits the
//! terminal (the announcement, a fleet line, as many host lines as fit, "… and N more"), follows
//! a resize, and puts failed and slowest hosts first; at the end the summary groups the hosts
//! alike.

use std::time::Duration;

use crate::support::process::Watchdog;
use crate::support::project::{TestProject, T1};
use crate::support::terminal::Terminal;

/// How long a screen may take to show what is awaited (the suite runs beside it).
const LIMIT: Duration = Duration::from_secs(60);

const HOSTS: usize = 40;

/// 40 hosts whose `build` sleeps `pause` seconds: `slow` longer than the others.
fn fleet(pause: &str, slow: &str, slow_pause: &str) -> TestProject {
    let mut project = TestProject::new()
        .fleet(HOSTS)
        .deployfile("[tasks.build]\nrun = \"sleep {{ pause }}\"\nafter = \"deploy:update_code\"\n");
    for i in 1..=HOSTS {
        let host = format!("h{i}");
        let pause = if host == slow { slow_pause } else { pause };
        project = project.host_config(&host, "pause", pause);
    }
    project
}

/// The row that is the fleet line, and its index.
fn fleet_line(rows: &[(String, bool)]) -> Option<(usize, &str)> {
    rows.iter()
        .enumerate()
        .find(|(_, (row, _))| row.starts_with("40 hosts ") && row.contains(" preparing · "))
        .map(|(i, (row, _))| (i, row.as_str()))
}

/// No row of the view (the fleet line and below) ran over the terminal's width. (What prints
/// above it may: the header names all 40 hosts.)
#[track_caller]
fn nothing_wraps(term: &Terminal, rows: &[(String, bool)]) {
    let (at, _) = fleet_line(rows).unwrap_or_else(|| panic!("no fleet line\n{}", term.contents()));
    assert!(
        rows[at..].iter().all(|(_, wrapped)| !wrapped),
        "a line of the view is wider than the terminal\n{}",
        term.contents()
    );
}

#[test]
fn the_live_view_of_40_hosts_fits_the_terminal_and_follows_a_resize() {
    let _watchdog = Watchdog::arm("live view", 2 * LIMIT);
    let project = fleet("2", "h23", "8");
    let mut term = Terminal::start(&project, &["deploy", "test"], &[("DEP_NOW", T1)], 24, 80);

    // 80x24: the announcement, the fleet line, 20 host lines, and the count of the rest.
    let rows = term.wait_for("… and 20 more", LIMIT);
    nothing_wraps(&term, &rows);
    let (at, line) = fleet_line(&rows).unwrap_or_else(|| panic!("no fleet line\n{rows:#?}"));
    assert_eq!(
        rows[at - 1].0,
        format!("deploying release {T1} to 40 hosts: h1, h2, h3, h4, h5 and 35 more"),
        "{}",
        term.contents()
    );
    assert!(
        line.contains(" preparing · ") && line.contains(" switched · ") && line.contains(" failed"),
        "{line}"
    );
    assert!(
        line.contains(" ["),
        "the fleet line has a bar at 80 columns: {line}"
    );
    let hosts = rows[at + 1..]
        .iter()
        .take_while(|(row, _)| row.starts_with("[h"))
        .count();
    assert_eq!(hosts, 20, "{}", term.contents());

    // Shorter and wider: fewer host lines, more left to count.
    term.resize(12, 100);
    let rows = term.wait_for("… and 32 more", LIMIT);
    nothing_wraps(&term, &rows);
    assert!(fleet_line(&rows).is_some(), "{}", term.contents());

    // When every other host is prepared and waits, the slow one is first.
    let rows = term.wait_until(LIMIT, "39 prepared, h23 first", |rows| {
        fleet_line(rows).is_some_and(|(at, line)| {
            line.contains(" 1 preparing · 39 prepared · ")
                && rows
                    .get(at + 1)
                    .is_some_and(|(row, _)| row.starts_with("[h23] "))
        })
    });
    nothing_wraps(&term, &rows);

    // The end: no view left, and the summary's one row for the 40 hosts alike.
    let status = term.wait(LIMIT);
    let screen = term.contents();
    assert_eq!(status, 0, "{screen}");
    assert!(
        fleet_line(&term.rows()).is_none(),
        "the view stayed\n{screen}"
    );
    let summary = screen
        .lines()
        .skip_while(|l| !l.starts_with("HOST "))
        .collect::<Vec<_>>();
    assert_eq!(summary.len(), 2, "{screen}");
    let cells: Vec<&str> = summary[1]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[..3], ["40 hosts", "live", T1], "{screen}");
    assert!(cells[4].starts_with("h23 build ("), "{screen}");
    assert_eq!(project.current("h40").as_deref(), Some(T1));
}

#[test]
fn a_failed_host_comes_first_in_the_live_view_and_has_its_own_summary_row() {
    let _watchdog = Watchdog::arm("live view failure", 2 * LIMIT);
    let project = fleet("2", "", "")
        .deployfile("[tasks.check]\nrun = \"test {{ host }} != h31\"\nbefore = \"build\"\n");
    let mut term = Terminal::start(&project, &["deploy", "test"], &[("DEP_NOW", T1)], 24, 80);

    let rows = term.wait_until(LIMIT, "h31 failed, first", |rows| {
        fleet_line(rows).is_some_and(|(at, line)| {
            line.contains(" 1 failed")
                && rows
                    .get(at + 1)
                    .is_some_and(|(row, _)| row == "[h31] ✗ check failed")
        })
    });
    nothing_wraps(&term, &rows);
    assert!(
        rows.iter().any(|(row, _)| row.starts_with("… and ")),
        "{}",
        term.contents()
    );

    let status = term.wait(LIMIT);
    let screen = term.contents();
    assert_eq!(status, 1, "{screen}");
    let summary: Vec<Vec<&str>> = screen
        .lines()
        .skip_while(|l| !l.starts_with("HOST "))
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with("error:"))
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(summary.len(), 2, "{screen}");
    assert_eq!(summary[0][..3], ["39 hosts", "unchanged", "(unchanged)"]);
    assert_eq!(summary[1][..3], ["h31", "failed: check", "(unchanged)"]);
    assert_eq!(project.current("h1"), None);
}
