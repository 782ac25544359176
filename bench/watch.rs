//! The watch benchmark: what a watch window costs the hosts. N loopback sshd hosts with a
//! release live (the git project of `fleet.rs`), then `dep watch` for BENCH_WINDOW seconds
//! (default 60) at a 5 s interval with four probes: an HTTP GET (curl on the host, against a
//! loopback server the bench runs), the `cpu` and `memory` metrics, and a command printing a
//! number (a queue depth's stand-in). The reference is what a hand-written loop would do: every
//! interval, one `ssh HOST '…'` per host running the same four commands, in parallel.
//!
//! Reported per N: the requests each host served a minute, the hosts' CPU a minute per host
//! (every sshd with its sessions and commands), dep's CPU a minute and peak RSS, and the ratios
//! dep ÷ reference. Nothing is asserted.
//!
//! Run: `cargo bench --bench watch` (env BENCH_HOSTS="10", BENCH_WINDOW=60, BENCH_ROUNDS=1,
//! BENCH_DEP=/path/to/dep to measure that binary instead of building target/release/dep).

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

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{deployfile_head, hosts_cpu, make_repo, measure, reap, Cost};
use net::HookServer;
use sshd::Fleet;

const INTERVAL: Duration = Duration::from_secs(5);

/// The probes' commands as a plain script would run them: curl's status and time, the CPU
/// busy share over a quarter of a second, the memory in use, a number.
const REFERENCE_COMMANDS: &str = concat!(
    "curl -sS -o /dev/null --max-time 10 -w '%{http_code} %{time_total}\\n' \"$1\"; ",
    "read -r _ u n s i w q sq st _ < /proc/stat; sleep 0.25; ",
    "read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat; ",
    "echo $(( (u2+n2+s2+q2+sq2+st2) - (u+n+s+q+sq+st) )) $(( (i2+w2) - (i+w) )); ",
    "awk '/^MemTotal:/ { t = $2 } /^MemAvailable:/ { a = $2 } END { print 100 * (t - a) / t }' /proc/meminfo; ",
    "echo 3"
);

fn main() {
    if common::listing() {
        return;
    }
    let sizes = common::sizes("10");
    let rounds = common::rounds(1);
    let window = Duration::from_secs(
        std::env::var("BENCH_WINDOW")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    let dep = common::binary_from_env("BENCH_DEP").unwrap_or_else(common::build_dep);
    println!(
        "dep watch benchmark: a {} s window at a {} s interval, 4 probes (http, cpu, memory, command); {rounds} round(s)",
        window.as_secs(),
        INTERVAL.as_secs()
    );
    println!("dep:  {}", dep.display());
    println!("reference: every interval, `ssh HOST '<the same four commands>'` on every host in parallel");
    println!("per host and minute: requests served, hosts' CPU ms; dep's own CPU ms per minute and peak RSS");
    println!(
        "{:>4}  {:>10}  {:>10}  {:>12}  {:>12}  {:>7}  {:>14}  {:>12}",
        "N",
        "run",
        "req/host/m",
        "host CPU ms",
        "ctl CPU ms/m",
        "peak MB",
        "host CPU ratio",
        "exit"
    );
    for n in sizes {
        let setup = Setup::start(n, &dep, window);
        for _ in 0..rounds {
            let (dep_cost, dep_requests, exit) = setup.run_dep(&dep);
            let (ref_cost, ref_requests) = setup.run_reference();
            let minutes = window.as_secs_f64() / 60.0;
            let per_host_minute = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64 / minutes;
            for (name, cost, requests, exit) in [
                ("ssh loop", ref_cost, ref_requests, "0".to_string()),
                ("dep watch", dep_cost, dep_requests, exit),
            ] {
                let ratio = if name == "dep watch" {
                    format!(
                        "{:.2}",
                        dep_cost.host_cpu.as_secs_f64() / ref_cost.host_cpu.as_secs_f64().max(1e-9)
                    )
                } else {
                    "-".to_string()
                };
                // The reference's clients are many; RUSAGE_CHILDREN keeps no peak of theirs alone.
                let peak = if name == "dep watch" {
                    format!("{:.1}", cost.max_rss_kb as f64 / 1024.0)
                } else {
                    "-".to_string()
                };
                println!(
                    "{n:>4}  {name:>10}  {:>10.1}  {:>12.0}  {:>12.0}  {peak:>7}  {ratio:>14}  {exit:>12}",
                    requests as f64 / n as f64 / minutes,
                    per_host_minute(cost.host_cpu),
                    cost.cpu.as_secs_f64() * 1000.0 / minutes,
                );
            }
        }
    }
}

/// A fleet with a release live and a Deployfile that watches it, and the server the probes ask.
struct Setup {
    fleet: Fleet,
    site: HookServer,
    deployfile: PathBuf,
    window: Duration,
}

impl Setup {
    fn start(n: usize, dep: &Path, window: Duration) -> Setup {
        let fleet = Fleet::start(n);
        let site = HookServer::start();
        let work = fleet.dir().join("bench");
        std::fs::create_dir_all(&work).unwrap();
        let repo = make_repo(&work);
        let mut text = deployfile_head(&fleet, &repo);
        text.push_str(&format!(
            "[watch]\nduration = \"{}s\"\ninterval = \"{}s\"\n\n\
             [[watch.probe]]\nname = \"page\"\nhttp = \"{}\"\n\n\
             [[watch.probe]]\nname = \"cpu\"\nmetric = \"cpu\"\nmax_value = 100\n\n\
             [[watch.probe]]\nname = \"memory\"\nmetric = \"memory\"\nmax_value = 100\n\n\
             [[watch.probe]]\nname = \"queue\"\ncommand = \"echo 3\"\nmax_value = 1000\n",
            window.as_secs(),
            INTERVAL.as_secs(),
            site.url("/page"),
        ));
        let deployfile = work.join("Deployfile.toml");
        std::fs::write(&deployfile, text).unwrap();
        let mut deploy = Command::new(dep);
        deploy
            .args(["-q", "-f"])
            .arg(&deployfile)
            .args(["deploy", "bench", "--no-watch"])
            .stdout(Stdio::null());
        let (_, status) = measure(deploy);
        assert!(status.success(), "the first deploy failed (exit {status})");
        Setup {
            fleet,
            site,
            deployfile,
            window,
        }
    }

    fn requests(&self) -> usize {
        self.site.seen_at("/page").len()
    }

    /// `dep watch` over the window: its cost, the requests it made, its exit.
    fn run_dep(&self, dep: &Path) -> (Cost, usize, String) {
        let before = (hosts_cpu(&self.fleet), self.requests());
        let mut watch = Command::new(dep);
        watch
            .args(["-q", "-f"])
            .arg(&self.deployfile)
            .args(["watch", "bench"])
            .stdout(Stdio::null());
        let (mut cost, status) = measure(watch);
        cost.host_cpu = hosts_cpu(&self.fleet).saturating_sub(before.0);
        (cost, self.requests() - before.1, status.code().to_string())
    }

    /// The same sampling by hand: one ssh a host an interval, all hosts at once.
    fn run_reference(&self) -> (Cost, usize) {
        let before = (hosts_cpu(&self.fleet), self.requests());
        let meter = common::ChildrenMeter::start();
        let started = Instant::now();
        let samples = (self.window.as_secs_f64() / INTERVAL.as_secs_f64()).ceil() as u32;
        for sample in 0..samples {
            let tick = started + INTERVAL * sample;
            std::thread::sleep(tick.saturating_duration_since(Instant::now()));
            let children: Vec<_> = self
                .fleet
                .hosts()
                .iter()
                .map(|host| {
                    self.fleet
                        .ssh()
                        .arg(host.name())
                        .arg(format!(
                            "bash -c {} sample {}",
                            shell_quote(REFERENCE_COMMANDS),
                            self.site.url("/page")
                        ))
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("ssh")
                })
                .collect();
            for child in children {
                let (_, status) = reap(child, Instant::now());
                assert!(
                    status.success(),
                    "the reference sample failed (exit {status})"
                );
            }
        }
        let mut cost = meter.cost();
        cost.host_cpu = hosts_cpu(&self.fleet).saturating_sub(before.0);
        (cost, self.requests() - before.1)
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
