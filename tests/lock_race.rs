//! Two deploys racing for the same three hosts (issue 11): every round exactly one wins and
//! deploys everywhere; the other exits 3 having changed nothing. Over local hosts and over real
//! sshd hosts.

use crate::support::project::{Output, TestProject};
use crate::support::sshd::Fleet;

const ROUNDS: usize = 10;

/// Both deploys wait for each other on this machine just before `deploy:lock`, so they reach
/// the lock within a few milliseconds of each other: the race at its tightest.
const TOGETHER: &str = r#"
[stages.test]
config = { keep_releases = 20 }

[tasks."race:start"]
local = true
run = """
touch {{ (deployfile_dir ~ '/ready-' ~ racer)|quote }}
i=0
while [ "$(ls {{ deployfile_dir|quote }} | grep -c '^ready-')" -lt 2 ] && [ $i -lt 6000 ]; do sleep 0.005; i=$((i+1)); done
"""
before = "deploy:lock"
"#;

/// What racer `racer` (0: a, 1: b) of round `round` pins its clock to, so the release it names
/// (no release on the hosts is later) says who won.
fn release_at(round: usize, racer: usize) -> String {
    format!("2025010110{:02}{:02}", round, racer * 30)
}

/// One round: both deploys at once; returns (the winner's index, both outputs).
fn race(project: &TestProject, round: usize, env: &[(&str, &str)]) -> (usize, [Output; 2]) {
    for racer in ["a", "b"] {
        let _ = std::fs::remove_file(project.join(&format!("ready-{racer}")));
    }
    let runs: Vec<_> = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(i, racer)| {
            let now = release_at(round, i);
            let mut env: Vec<(&str, &str)> = env.to_vec();
            env.extend([("DEP_NOW", now.as_str()), ("DEP_RACER", racer)]);
            project.start_env(&["deploy", "test"], &env)
        })
        .collect();
    let outputs: Vec<Output> = runs.into_iter().map(|r| r.wait()).collect();
    let [a, b]: [Output; 2] = outputs.try_into().unwrap();
    let winner = match (a.status, b.status) {
        (0, 3) => 0,
        (3, 0) => 1,
        _ => panic!(
            "round {round}: exactly one deploy must win\n--- a ---\n{}\n--- b ---\n{}",
            a.transcript(),
            b.transcript()
        ),
    };
    (winner, [a, b])
}

/// After each round, every host is on the winner's release, with one more release and one more
/// `live` line in its log, and no host is locked.
struct Expect<'a> {
    hosts: Vec<String>,
    releases: &'a dyn Fn(&str) -> Vec<String>,
    current: &'a dyn Fn(&str) -> Option<String>,
    log: &'a dyn Fn(&str) -> Vec<serde_json::Value>,
    locked: &'a dyn Fn(&str) -> bool,
}

impl Expect<'_> {
    fn round(&self, round: usize, winner: usize, outputs: &[Output; 2]) {
        let release = release_at(round, winner);
        let loser = &outputs[1 - winner];
        assert!(
            loser
                .stderr
                .contains("error: deploy is locked; nothing was changed")
                && !loser.stdout.contains("deploying release"),
            "round {round}: the loser\n{}",
            loser.transcript()
        );
        for host in &self.hosts {
            assert_eq!((self.current)(host), Some(release.clone()), "{host}");
            assert_eq!((self.releases)(host).len(), round + 1, "{host}");
            let log = (self.log)(host);
            let of_round: Vec<&serde_json::Value> = log
                .iter()
                .filter(|e| {
                    e["release"] == release_at(round, 0) || e["release"] == release_at(round, 1)
                })
                .collect();
            let statuses: Vec<&str> = of_round
                .iter()
                .map(|e| e["status"].as_str().unwrap())
                .collect();
            assert_eq!(
                statuses,
                ["prepared", "live"],
                "round {round}, {host}: {log:?}"
            );
            assert!(of_round.iter().all(|e| e["release"] == release));
            assert!(!(self.locked)(host), "round {round}: {host} left locked");
        }
    }
}

#[test]
fn two_deploys_racing_on_local_hosts_exactly_one_wins_every_round() {
    let project = TestProject::new().fleet(3).deployfile(TOGETHER);
    let expect = Expect {
        hosts: project.host_names(),
        releases: &|h| project.releases(h),
        current: &|h| project.current(h),
        log: &|h| project.log(h),
        locked: &|h| project.locked(h),
    };
    let mut won = [0; 2];
    for round in 0..ROUNDS {
        let (winner, outputs) = race(&project, round, &[]);
        expect.round(round, winner, &outputs);
        won[winner] += 1;
    }
    eprintln!(
        "local hosts: {ROUNDS} rounds, each won by exactly one deploy (a {}, b {})",
        won[0], won[1]
    );
}

#[test]
fn two_deploys_racing_on_sshd_hosts_exactly_one_wins_every_round() {
    let fleet = Fleet::start(3);
    let mut text = String::from(TOGETHER);
    for i in 0..fleet.hosts().len() {
        text.push_str(&fleet.host_table(i, &format!("host{i}"), "test"));
    }
    let project = TestProject::new().deployfile(&text);
    let path = |h: &str| {
        let index: usize = h.trim_start_matches("host").parse().unwrap();
        fleet.host(index).deploy_path().to_path_buf()
    };
    let releases = |h: &str| {
        let mut names: Vec<String> = std::fs::read_dir(path(h).join("releases"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let current = |h: &str| {
        std::fs::read_link(path(h).join("current"))
            .ok()
            .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
    };
    let log = |h: &str| {
        std::fs::read_to_string(path(h).join(".dep/releases.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let locked = |h: &str| path(h).join(".dep/deploy.lock").exists();
    let expect = Expect {
        hosts: (0..3).map(|i| format!("host{i}")).collect(),
        releases: &releases,
        current: &current,
        log: &log,
        locked: &locked,
    };
    let env = [
        ("DEP_SSH_CONFIG", fleet.ssh_config().to_str().unwrap()),
        ("SSH_AUTH_SOCK", ""),
    ];
    let mut won = [0; 2];
    for round in 0..ROUNDS {
        let (winner, outputs) = race(&project, round, &env);
        expect.round(round, winner, &outputs);
        won[winner] += 1;
    }
    eprintln!(
        "sshd hosts: {ROUNDS} rounds, each won by exactly one deploy (a {}, b {})",
        won[0], won[1]
    );
}
