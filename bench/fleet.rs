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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sshd::Fleet;

/// What one measured run cost.
#[derive(Debug, Clone, Copy)]
struct Cost {
    wall: Duration,
    cpu: Duration,
    max_rss_kb: i64,
    /// What the run cost the hosts: every sshd's CPU with its sessions, shells and commands.
    host_cpu: Duration,
}

/// One of the runs a round measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Floor,
    Dep,
    Baseline,
}

/// The dep builds under test: this one, and optionally another (`BENCH_BASELINE_DEP`).
struct Binaries {
    dep: PathBuf,
    baseline: Option<PathBuf>,
}

impl Binaries {
    /// The contenders of every round, in the first round's order.
    fn contenders(&self) -> Vec<Contender> {
        let mut all = vec![Contender::Floor, Contender::Dep];
        if self.baseline.is_some() {
            all.push(Contender::Baseline);
        }
        all
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` asks for a listing; this benchmark has no unit tests.
        return;
    }
    let sizes: Vec<usize> = std::env::var("BENCH_HOSTS")
        .unwrap_or_else(|_| "1 10 30 60".into())
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let binaries = Binaries {
        dep: build_dep(),
        baseline: baseline_dep(),
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

/// `BENCH_BASELINE_DEP`, checked to be a file, made absolute.
fn baseline_dep() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("BENCH_BASELINE_DEP").filter(|p| !p.is_empty())?);
    let absolute = path.canonicalize().unwrap_or_else(|e| {
        panic!("BENCH_BASELINE_DEP={}: {e}", path.display());
    });
    assert!(
        absolute.is_file(),
        "BENCH_BASELINE_DEP={} is not a file",
        path.display()
    );
    Some(absolute)
}

/// Every measured round's cost of each contender, in round order (warm-ups left out).
#[derive(Default)]
struct Samples {
    floor: Vec<Cost>,
    dep: Vec<Cost>,
    baseline: Vec<Cost>,
}

impl Samples {
    fn of(&mut self, who: Contender) -> &mut Vec<Cost> {
        match who {
            Contender::Floor => &mut self.floor,
            Contender::Dep => &mut self.dep,
            Contender::Baseline => &mut self.baseline,
        }
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
            Contender::Floor => floor(&self.fleet, &self.repo, &self.revision, round),
            Contender::Dep => run_dep(&binaries.dep, &self.deployfile),
            Contender::Baseline => {
                let baseline = binaries.baseline.as_deref().expect("a baseline binary");
                run_dep(baseline, &self.deployfile)
            }
        };
        cost.host_cpu = hosts_cpu(&self.fleet).saturating_sub(before);
        cost
    }
}

/// Whether any of `parents` has a child process (one scan of /proc).
fn has_children(parents: &[u32]) -> bool {
    let parents: std::collections::HashSet<u32> = parents.iter().copied().collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_string();
            rest.split_whitespace().nth(1)?.parse::<u32>().ok()
        })
        .any(|ppid| parents.contains(&ppid))
}

/// The CPU time the fleet's sshd processes used so far, with all their reaped descendants
/// (per-connection sshd, sessions, shells, git, …), once every session has ended: an sshd
/// counts a child's time when it reaps it.
fn hosts_cpu(fleet: &Fleet) -> Duration {
    let listeners: Vec<u32> = fleet.hosts().iter().filter_map(|h| h.pid()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while has_children(&listeners) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let total: u64 = fleet
        .hosts()
        .iter()
        .filter_map(|h| h.pid())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // After the command name's closing parenthesis: fields 3 onwards; utime, stime,
            // cutime and cstime are fields 14 to 17.
            let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            rest.split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum();
    Duration::from_secs_f64(total as f64 / ticks)
}

fn measure_size(binaries: &Binaries, n: usize, rounds: usize) -> Samples {
    let setup = Setup::start(n);
    let contenders = binaries.contenders();
    // One warm-up of each: the first run clones the mirrors.
    for &who in &contenders {
        setup.run(binaries, who, 0);
    }
    let mut samples = Samples::default();
    for round in 1..=rounds {
        // Rotate the order by one each round: floor, dep, baseline; dep, baseline, floor; …
        for k in 0..contenders.len() {
            let who = contenders[(round - 1 + k) % contenders.len()];
            let cost = setup.run(binaries, who, round);
            samples.of(who).push(cost);
        }
    }
    samples
}

fn walls(costs: &[Cost]) -> Vec<f64> {
    costs.iter().map(|c| c.wall.as_secs_f64()).collect()
}

/// The middle value (the upper one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_wall(costs: &[Cost]) -> f64 {
    median(walls(costs))
}

fn cpu_per_host_ms(costs: &[Cost], n: usize) -> f64 {
    median(costs.iter().map(|c| c.cpu.as_secs_f64()).collect()) * 1000.0 / n as f64
}

/// The median CPU time the hosts spent on one run, in seconds.
fn host_cpu_s(costs: &[Cost]) -> f64 {
    median(costs.iter().map(|c| c.host_cpu.as_secs_f64()).collect())
}

fn peak_mb(costs: &[Cost]) -> f64 {
    costs.iter().map(|c| c.max_rss_kb).max().unwrap_or(0) as f64 / 1024.0
}

/// The round-to-round spread of wall times: (max − min) / median, in percent.
fn spread_percent(costs: &[Cost]) -> f64 {
    let walls = walls(costs);
    let max = walls.iter().copied().fold(f64::MIN, f64::max);
    let min = walls.iter().copied().fold(f64::MAX, f64::min);
    (max - min) / median(walls) * 100.0
}

/// The lowest and highest of each round's dep wall over the same round's baseline wall.
fn paired_ratio_range(samples: &Samples) -> (f64, f64) {
    let ratios = samples
        .dep
        .iter()
        .zip(&samples.baseline)
        .map(|(dep, baseline)| dep.wall.as_secs_f64() / baseline.wall.as_secs_f64());
    ratios.fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(r), hi.max(r)))
}

/// The table of a run without a baseline (unchanged from before baselines existed).
fn print_row(n: usize, samples: &Samples) {
    let (floor, dep) = (median_wall(&samples.floor), median_wall(&samples.dep));
    println!(
        "{:>4}  {:>8.3}  {:>8.3}  {:>6.2}  {:>11.1} ms  {:>12.1}  {:>13.2}  {:>19}",
        n,
        floor,
        dep,
        dep / floor,
        cpu_per_host_ms(&samples.dep, n),
        peak_mb(&samples.dep),
        median(samples.floor.iter().map(|c| c.cpu.as_secs_f64()).collect()),
        format!(
            "{:.2} / {:.2}",
            host_cpu_s(&samples.floor),
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
    let floor = median_wall(&s.floor);
    let dep = median_wall(&s.dep);
    let base = median_wall(&s.baseline);
    let (lo, hi) = paired_ratio_range(s);
    let spread = format!(
        "{:.0}% / {:.0}% / {:.0}%",
        spread_percent(&s.floor),
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
        host_cpu_s(&s.floor),
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

fn build_dep() -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    // Cargo hands the bench the variables it sets for a crate (CARGO_MANIFEST_DIR, CARGO_PKG_*,
    // …); ring's build script reruns when one of them changes, so passing them on would rebuild
    // ring and all above it here, and again at the next plain `cargo build --release`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let per_crate = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ];
        if per_crate.iter().any(|prefix| name.starts_with(prefix))
            || name == "CARGO_PRIMARY_PACKAGE"
        {
            cargo.env_remove(name.as_ref());
        }
    }
    let status = cargo
        .args(["build", "--release", "--bin", "dep"])
        .status()
        .expect("cargo build");
    assert!(status.success(), "cargo build --release failed");
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/dep")
}

/// A small Laravel-shaped repository: composer.json, artisan, a page.
fn make_repo(work: &Path) -> PathBuf {
    let src = work.join("src");
    std::fs::create_dir_all(src.join("public")).unwrap();
    std::fs::create_dir_all(src.join("storage/logs")).unwrap();
    std::fs::write(src.join("composer.json"), "{\"name\": \"acme/shop\"}\n").unwrap();
    std::fs::write(src.join("artisan"), "#!/bin/sh\necho artisan \"$@\"\n").unwrap();
    std::fs::write(src.join("public/index.php"), "<?php echo 'ok';\n").unwrap();
    std::fs::write(src.join("storage/logs/.gitkeep"), "").unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    git(&src, &["add", "."]);
    git(
        &src,
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            "commit",
            "-qm",
            "app",
        ],
    );
    let bare = work.join("shop.git");
    git(
        work,
        &[
            "clone",
            "-q",
            "--bare",
            src.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    bare
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
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
    let mut text = format!(
        "[config]\nrepository = \"{}\"\nkeep_releases = 5\nshared_dirs = [\"storage\"]\nshared_files = [\".env\"]\n\
         writable_dirs = [\"bootstrap/cache\"]\n\n",
        repo.display()
    );
    for host in fleet.hosts() {
        text.push_str(&format!(
            "[hosts.{name}]\nhostname = \"{ip}\"\nport = {port}\nuser = \"{user}\"\nstage = \"bench\"\n\
             identity_file = \"{key}\"\nknown_hosts_file = \"{kh}\"\nconfig = {{ deploy_path = \"{dp}\" }}\n\n",
            name = host.name(),
            ip = host.ip(),
            port = host.port(),
            user = fleet.user(),
            key = fleet.client_key().private.display(),
            kh = fleet.known_hosts().display(),
            dp = host.deploy_path().display(),
        ));
    }
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
    let (cost, status) = measure(command, None);
    assert!(status == 0, "dep deploy failed (exit {status})");
    cost
}

/// The floor: the same remote work as one `ssh host bash -s` script per host, all in parallel.
fn floor(fleet: &Fleet, repo: &Path, revision: &str, round: usize) -> Cost {
    let release = format!("2000010100{:04}", round);
    let started = Instant::now();
    let before = children_usage();
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
    let after = children_usage();
    Cost {
        wall: started.elapsed(),
        cpu: after.0.saturating_sub(before.0),
        max_rss_kb: after.1,
        host_cpu: Duration::ZERO,
    }
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

/// Run a command, returning its wall time, CPU time (user + system, its children included) and
/// peak resident memory, measured with wait4.
#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4 (std's wait would not report its resource usage)"
)]
fn measure(mut command: Command, stdin: Option<&[u8]>) -> (Cost, i32) {
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    let wall = started.elapsed();
    let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (
        Cost {
            wall,
            cpu,
            max_rss_kb: usage.ru_maxrss,
            host_cpu: Duration::ZERO,
        },
        code,
    )
}

/// CPU time and peak RSS of all reaped children so far.
fn children_usage() -> (Duration, i64) {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (
        timeval(usage.ru_utime) + timeval(usage.ru_stime),
        usage.ru_maxrss,
    )
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
}
