//! The fleet benchmark: the standard Laravel-shaped deploy to N loopback sshd hosts, dep against
//! the floor (plain OpenSSH running the same remote work as one `ssh host bash -s` per host, all
//! hosts in parallel), interleaved so machine load drift hits every contender alike: each round
//! runs the floor, dep and (optionally) a baseline dep once each, the order rotated by one per
//! round.
//!
//! Run: `cargo bench --bench fleet` (env BENCH_HOSTS="1 10 30 60", BENCH_ROUNDS=5,
//! BENCH_BASELINE_DEP=/path/to/another/dep to measure that build too, on the same fleet and
//! Deployfile). Reports medians and the ratio dep/floor, dep's CPU time per host and peak memory;
//! with a baseline, also its median, its ratio to the floor, dep/baseline and the spread.

// The sshd fleet of the integration tests, with the two support modules it builds on. The bench
// uses a part of each (no fault injection, no watchdog, no webhook receiver).
#[allow(dead_code, reason = "the bench uses a part of the test support")]
#[path = "../tests/support/net.rs"]
mod net;
#[allow(dead_code, reason = "the bench uses a part of the test support")]
#[path = "../tests/support/process.rs"]
mod process;
#[allow(dead_code, reason = "the bench uses a part of the test support")]
#[path = "../tests/support/sshd.rs"]
mod sshd;

#[allow(dead_code, reason = "each bench uses a part of the shared helpers")]
#[path = "common.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    cpu_per_host_ms, deployfile_head, git, host_cpu_s, hosts_cpu, make_repo, measure, median_cpu,
    median_wall, paired_ratio_range, peak_mb, spread_percent, Binaries, ChildrenMeter, Contender,
    Cost, Samples,
};
use sshd::Fleet;

fn main() {
    if common::listing() {
        return;
    }
    let sizes = common::sizes("1 10 30 60");
    let rounds = common::rounds(5);
    let binaries = Binaries {
        dep: common::build_dep(),
        baseline: common::binary_from_env("BENCH_BASELINE_DEP"),
    };
    println!("dep fleet benchmark: {rounds} interleaved rounds per size; wall seconds are medians");
    match &binaries.baseline {
        None => println!(
            "{:>4}  {:>8}  {:>8}  {:>6}  {:>14}  {:>12}  {:>13}  {:>19}",
            "N",
            "floor s",
            "dep s",
            "ratio",
            "dep CPU/host",
            "dep peak MB",
            "floor CPU s",
            "host CPU s flr/dep"
        ),
        Some(baseline) => print_baseline_header(&binaries.dep, baseline),
    }
    for n in sizes {
        let samples = measure_size(&binaries, n, rounds);
        match binaries.baseline {
            None => print_row(n, &samples),
            Some(_) => print_baseline_row(n, &samples),
        }
        std::io::stdout().flush().ok();
    }
}

/// A running fleet with its repository and Deployfile: the same for every contender.
struct Setup {
    fleet: Fleet,
    repo: PathBuf,
    revision: String,
    deployfile: PathBuf,
}

impl Setup {
    fn start(n: usize) -> Setup {
        let fleet = Fleet::start(n);
        let work = fleet.dir().join("bench");
        std::fs::create_dir_all(&work).unwrap();
        let repo = make_repo(&work);
        let revision = git(&repo, &["rev-parse", "HEAD"]);
        let deployfile = write_deployfile(&fleet, &work, &repo);
        Setup {
            fleet,
            repo,
            revision,
            deployfile,
        }
    }

    fn run(&self, binaries: &Binaries, who: Contender, round: usize) -> Cost {
        let before = hosts_cpu(&self.fleet);
        let mut cost = match who {
            Contender::Reference => floor(&self.fleet, &self.repo, &self.revision, round),
            Contender::Dep | Contender::Baseline => run_dep(binaries.of(who), &self.deployfile),
        };
        cost.host_cpu = hosts_cpu(&self.fleet).saturating_sub(before);
        cost
    }
}

fn measure_size(binaries: &Binaries, n: usize, rounds: usize) -> Samples {
    let setup = Setup::start(n);
    // One warm-up of each: the first run clones the mirrors.
    for who in binaries.contenders() {
        setup.run(binaries, who, 0);
    }
    let mut samples = Samples::default();
    for round in 1..=rounds {
        // Rotate the order by one each round: floor, dep, baseline; dep, baseline, floor; …
        for who in binaries.order(round) {
            let cost = setup.run(binaries, who, round);
            samples.of(who).push(cost);
        }
    }
    samples
}

/// The table of a run without a baseline (unchanged from before baselines existed).
fn print_row(n: usize, samples: &Samples) {
    let (floor, dep) = (median_wall(&samples.reference), median_wall(&samples.dep));
    println!(
        "{:>4}  {:>8.3}  {:>8.3}  {:>6.2}  {:>11.1} ms  {:>12.1}  {:>13.2}  {:>19}",
        n,
        floor,
        dep,
        dep / floor,
        cpu_per_host_ms(&samples.dep, n),
        peak_mb(&samples.dep),
        median_cpu(&samples.reference),
        format!(
            "{:.2} / {:.2}",
            host_cpu_s(&samples.reference),
            host_cpu_s(&samples.dep)
        ),
    );
}

fn print_baseline_header(dep: &Path, baseline: &Path) {
    println!("dep:  {}\nbase: {}", dep.display(), baseline.display());
    println!(
        "spread: (max - min) / median of one contender's rounds; dep/base rounds: lowest and \
         highest of the per-round ratios"
    );
    println!(
        "{:>4}  {:>8}  {:>8}  {:>8}  {:>9}  {:>9}  {:>8}  {:>15}  {:>21}  {:>17}  {:>13}  {:>20}",
        "N",
        "floor s",
        "dep s",
        "base s",
        "dep/floor",
        "base/flr",
        "dep/base",
        "dep/base rounds",
        "spread floor/dep/base",
        "CPU/host dep/base",
        "peak MB d/b",
        "host CPU s f/d/b"
    );
}

fn print_baseline_row(n: usize, s: &Samples) {
    let floor = median_wall(&s.reference);
    let dep = median_wall(&s.dep);
    let base = median_wall(&s.baseline);
    let (lo, hi) = paired_ratio_range(&s.dep, &s.baseline);
    let spread = format!(
        "{:.0}% / {:.0}% / {:.0}%",
        spread_percent(&s.reference),
        spread_percent(&s.dep),
        spread_percent(&s.baseline)
    );
    let cpu = format!(
        "{:.1} / {:.1} ms",
        cpu_per_host_ms(&s.dep, n),
        cpu_per_host_ms(&s.baseline, n)
    );
    let peak = format!("{:.1} / {:.1}", peak_mb(&s.dep), peak_mb(&s.baseline));
    let hosts = format!(
        "{:.2} / {:.2} / {:.2}",
        host_cpu_s(&s.reference),
        host_cpu_s(&s.dep),
        host_cpu_s(&s.baseline)
    );
    println!(
        "{:>4}  {:>8.3}  {:>8.3}  {:>8.3}  {:>9.2}  {:>9.2}  {:>8.3}  {:>15}  {:>21}  {:>17}  {:>13}  {:>20}",
        n,
        floor,
        dep,
        base,
        dep / floor,
        base / floor,
        dep / base,
        format!("{lo:.2}-{hi:.2}"),
        spread,
        cpu,
        peak,
        hosts,
    );
}

/// The commands standing for composer and artisan, the same in both runs.
const SHORT_COMMANDS: [&str; 6] = [
    "cat composer.json > /dev/null",
    "sh artisan storage:link > /dev/null",
    "sh artisan config:cache > /dev/null",
    "sh artisan route:cache > /dev/null",
    "sh artisan view:cache > /dev/null",
    "sh artisan event:cache > /dev/null",
];

fn write_deployfile(fleet: &Fleet, work: &Path, repo: &Path) -> PathBuf {
    let mut text = deployfile_head(fleet, repo);
    let mut previous = "deploy:writable".to_string();
    for (i, command) in SHORT_COMMANDS.iter().enumerate() {
        let name = format!("app:step{i}");
        text.push_str(&format!(
            "[tasks.\"{name}\"]\ncwd = \"{{{{ release_path }}}}\"\nrun = \"{command}\"\nafter = \"{previous}\"\n\n"
        ));
        previous = name;
    }
    text.push_str(&format!(
        "[tasks.\"app:migrate\"]\nonce = true\ncwd = \"{{{{ release_path }}}}\"\nrun = \"sh artisan migrate > /dev/null\"\nafter = \"{previous}\"\n"
    ));
    let path = work.join("Deployfile.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_dep(dep: &Path, deployfile: &Path) -> Cost {
    let mut command = Command::new(dep);
    command.args(["-q", "-f", deployfile.to_str().unwrap(), "deploy", "bench"]);
    let (cost, status) = measure(command);
    assert!(
        status.code() == 0,
        "dep deploy failed (exit {})",
        status.code()
    );
    cost
}

/// The floor: the same remote work as one `ssh host bash -s` script per host, all in parallel.
fn floor(fleet: &Fleet, repo: &Path, revision: &str, round: usize) -> Cost {
    let release = format!("2000010100{:04}", round);
    let meter = ChildrenMeter::start();
    let mut children = Vec::new();
    for (index, host) in fleet.hosts().iter().enumerate() {
        let script = floor_script(host.deploy_path(), &release, repo, revision, index == 0);
        let mut child = fleet
            .ssh()
            .arg(host.name())
            .arg("bash -s")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        children.push(child);
    }
    for mut child in children {
        let status = child.wait().unwrap();
        assert!(status.success(), "floor script failed");
    }
    meter.cost()
}

fn floor_script(dp: &Path, release: &str, repo: &Path, revision: &str, first: bool) -> String {
    let dp = dp.display();
    let rp = format!("{dp}/releases/{release}");
    let mut s = format!(
        "set -e\nmkdir -p {dp}/releases {dp}/shared {dp}/.dep\n\
         (set -C; echo '{{\"who\":\"floor\"}}' > {dp}/.dep/deploy.lock)\n\
         mkdir {rp}\nprintf '%s\\n' '{{\"release\":\"{release}\",\"status\":\"prepared\"}}' >> {dp}/.dep/releases.log\n\
         cd {dp}/.dep\nif [ -d repo ]; then git -C repo remote update --prune >/dev/null; else git clone --mirror --quiet {repo} repo; fi\n\
         git -C repo archive {revision} | tar -x -f - -C {rp}\n\
         mkdir -p {dp}/shared/storage; rm -rf {rp}/storage; ln -s {dp}/shared/storage {rp}/storage\n\
         [ -e {dp}/shared/.env ] || : > {dp}/shared/.env; rm -f {rp}/.env; ln -s {dp}/shared/.env {rp}/.env\n\
         mkdir -p {rp}/bootstrap/cache; chmod -R ug+rwX {rp}/bootstrap/cache/\ncd {rp}\n",
        repo = repo.display()
    );
    for command in SHORT_COMMANDS {
        s.push_str(command);
        s.push('\n');
    }
    if first {
        s.push_str("sh artisan migrate > /dev/null\n");
    }
    s.push_str(&format!(
        "cd {dp}\nold=$(readlink current || true)\n\
         if [ -n \"$old\" ]; then ln -sfn \"$old\" previous.tmp && mv -fT previous.tmp previous; fi\n\
         ln -sfn releases/{release} current.tmp && mv -fT current.tmp current\n\
         printf '%s\\n' '{{\"release\":\"{release}\",\"status\":\"live\"}}' >> .dep/releases.log\n\
         rm -f .dep/deploy.lock\n\
         ls -1 releases | sort | head -n -5 | while read r; do rm -rf \"releases/$r\"; done\n"
    ));
    s
}
