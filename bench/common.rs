//! What the benchmarks share, written once: their command line (`--list`, BENCH_HOSTS,
//! BENCH_ROUNDS, the dep binaries), the contenders and their rotation, measuring a run (wall
//! time, CPU and peak memory by wait4; the CPU the sshd hosts spent), the figures a table shows
//! (medians, spread, per-round ratios), and the small git-strategy project of `fleet.rs` and
//! `flood.rs` (a repository and the Deployfile's hosts).
//!
//! Each bench includes it with `#[path = "common.rs"] mod common;` beside the `sshd` module of
//! the test support, and uses a part of it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sshd::Fleet;

/// What one measured run cost.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kb: i64,
    /// What the run cost the hosts: every sshd's CPU with its sessions, shells and commands
    /// (zero unless the bench measures it, see `hosts_cpu`).
    pub host_cpu: Duration,
}

/// One of the runs a round measures: the bench's reference without dep (plain OpenSSH), dep,
/// and optionally another dep build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    Reference,
    Dep,
    Baseline,
}

/// The dep builds under test: this one (or `BENCH_DEP` where a bench takes it), and optionally
/// another (`BENCH_BASELINE_DEP`).
pub struct Binaries {
    pub dep: PathBuf,
    pub baseline: Option<PathBuf>,
}

impl Binaries {
    /// The contenders of every round, in the first round's order.
    pub fn contenders(&self) -> Vec<Contender> {
        let mut all = vec![Contender::Reference, Contender::Dep];
        if self.baseline.is_some() {
            all.push(Contender::Baseline);
        }
        all
    }

    /// The contenders of round `round` (from 1), the first round's order rotated by one per
    /// round: reference, dep, baseline; dep, baseline, reference; …
    pub fn order(&self, round: usize) -> Vec<Contender> {
        let mut all = self.contenders();
        let len = all.len();
        all.rotate_left((round.max(1) - 1) % len);
        all
    }

    /// The binary a dep contender runs.
    pub fn of(&self, who: Contender) -> &Path {
        match who {
            Contender::Dep => &self.dep,
            Contender::Baseline => self.baseline.as_deref().expect("a baseline binary"),
            Contender::Reference => panic!("the reference runs no dep"),
        }
    }
}

/// Every measured round's cost of each contender, in round order (warm-ups left out).
#[derive(Default)]
pub struct Samples {
    pub reference: Vec<Cost>,
    pub dep: Vec<Cost>,
    pub baseline: Vec<Cost>,
}

impl Samples {
    pub fn of(&mut self, who: Contender) -> &mut Vec<Cost> {
        match who {
            Contender::Reference => &mut self.reference,
            Contender::Dep => &mut self.dep,
            Contender::Baseline => &mut self.baseline,
        }
    }
}

/// Whether cargo only asks for a listing (`cargo test --benches`): the benchmarks have no unit
/// tests, so they answer with nothing, at once.
pub fn listing() -> bool {
    std::env::args().any(|a| a == "--list")
}

/// The fleet sizes to measure: `BENCH_HOSTS`, else `default` (numbers apart by spaces).
pub fn sizes(default: &str) -> Vec<usize> {
    std::env::var("BENCH_HOSTS")
        .unwrap_or_else(|_| default.into())
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// How many measured rounds per size: `BENCH_ROUNDS`, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// `name` from the environment, checked to be a file, made absolute.
pub fn binary_from_env(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(name).filter(|p| !p.is_empty())?);
    let absolute = path
        .canonicalize()
        .unwrap_or_else(|e| panic!("{name}={}: {e}", path.display()));
    assert!(
        absolute.is_file(),
        "{name}={} is not a file",
        path.display()
    );
    Some(absolute)
}

/// `cargo build --release --bin dep` of this tree; the binary's path.
pub fn build_dep() -> PathBuf {
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

pub fn walls(costs: &[Cost]) -> Vec<f64> {
    costs.iter().map(|c| c.wall.as_secs_f64()).collect()
}

/// The middle value (the upper one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn median_wall(costs: &[Cost]) -> f64 {
    median(walls(costs))
}

/// The median CPU time of one run, in seconds.
pub fn median_cpu(costs: &[Cost]) -> f64 {
    median(costs.iter().map(|c| c.cpu.as_secs_f64()).collect())
}

/// The median CPU time of one run per host, in milliseconds.
pub fn cpu_per_host_ms(costs: &[Cost], n: usize) -> f64 {
    median_cpu(costs) * 1000.0 / n as f64
}

/// The median CPU time the hosts spent on one run, in seconds.
pub fn host_cpu_s(costs: &[Cost]) -> f64 {
    median(costs.iter().map(|c| c.host_cpu.as_secs_f64()).collect())
}

/// The highest peak resident memory of the runs, in MB (MiB).
pub fn peak_mb(costs: &[Cost]) -> f64 {
    costs.iter().map(|c| c.max_rss_kb).max().unwrap_or(0) as f64 / 1024.0
}

/// The round-to-round spread of wall times: (max − min) / median, in percent.
pub fn spread_percent(costs: &[Cost]) -> f64 {
    let walls = walls(costs);
    let max = walls.iter().copied().fold(f64::MIN, f64::max);
    let min = walls.iter().copied().fold(f64::MAX, f64::min);
    (max - min) / median(walls) * 100.0
}

/// The lowest and highest of each round's `a` wall over the same round's `b` wall.
pub fn paired_ratio_range(a: &[Cost], b: &[Cost]) -> (f64, f64) {
    a.iter()
        .zip(b)
        .map(|(a, b)| a.wall.as_secs_f64() / b.wall.as_secs_f64())
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(r), hi.max(r)))
}

/// How a measured process ended: its wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(libc::c_int);

impl Status {
    /// The exit code, or -1 when a signal ended the process.
    pub fn code(self) -> i32 {
        if libc::WIFEXITED(self.0) {
            libc::WEXITSTATUS(self.0)
        } else {
            -1
        }
    }

    pub fn success(self) -> bool {
        libc::WIFEXITED(self.0) && libc::WEXITSTATUS(self.0) == 0
    }
}

impl std::fmt::Display for Status {
    /// The exit code, or `signal N`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if libc::WIFSIGNALED(self.0) {
            write!(f, "signal {}", libc::WTERMSIG(self.0))
        } else {
            write!(f, "{}", self.code())
        }
    }
}

/// Run a command (stdin from /dev/null), returning its wall time, CPU time (user + system, its
/// children included) and peak resident memory, measured with wait4, and how it ended.
pub fn measure(mut command: Command) -> (Cost, Status) {
    command.stdin(Stdio::null());
    let started = Instant::now();
    let child = command.spawn().expect("spawn");
    reap(child, started)
}

/// Wait for `child`, started at `started`, with wait4: what `measure` reports.
#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4 (std's wait would not report its resource usage)"
)]
pub fn reap(child: Child, started: Instant) -> (Cost, Status) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    let wall = started.elapsed();
    let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
    (
        Cost {
            wall,
            cpu,
            max_rss_kb: usage.ru_maxrss,
            host_cpu: Duration::ZERO,
        },
        Status(status),
    )
}

/// `reap`, but the child is killed (SIGKILL) when it still runs `limit` after `started`; then
/// the flag is true. Waits on a pidfd, so the wall time is as exact as `reap`'s.
pub fn reap_within(child: Child, started: Instant, limit: Duration) -> (Cost, Status, bool) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: pidfd_open only opens a descriptor for our own child, not reaped yet.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    let mut timed_out = false;
    loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            // SAFETY: the child is not reaped yet, so the pid is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            timed_out = true;
            break;
        }
        let mut ready = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        let wait_ms = left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1;
        // SAFETY: one pollfd, ours.
        let polled = unsafe { libc::poll(&mut ready, 1, wait_ms) };
        if polled > 0 {
            break;
        }
        let error = std::io::Error::last_os_error();
        assert!(
            polled == 0 || error.kind() == std::io::ErrorKind::Interrupted,
            "poll: {error}"
        );
    }
    // SAFETY: the descriptor is ours and used no more.
    unsafe { libc::close(pidfd) };
    let (cost, status) = reap(child, started);
    (cost, status, timed_out)
}

/// The cost of the children a run spawns and reaps itself (`ssh`, `tar`, …): the wall time
/// since `start`, and the CPU of the children reaped since.
pub struct ChildrenMeter {
    pub started: Instant,
    cpu_before: Duration,
}

impl ChildrenMeter {
    pub fn start() -> ChildrenMeter {
        let started = Instant::now();
        ChildrenMeter {
            started,
            cpu_before: children_usage().0,
        }
    }

    /// The cost so far. The peak memory is the largest of all children reaped so far, this
    /// run's or not (RUSAGE_CHILDREN keeps no other).
    pub fn cost(&self) -> Cost {
        let (cpu, max_rss_kb) = children_usage();
        Cost {
            wall: self.started.elapsed(),
            cpu: cpu.saturating_sub(self.cpu_before),
            max_rss_kb,
            host_cpu: Duration::ZERO,
        }
    }
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
pub fn hosts_cpu(fleet: &Fleet) -> Duration {
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

/// A small Laravel-shaped repository: composer.json, artisan, a page; returns the bare clone
/// the Deployfile's `repository` names.
pub fn make_repo(work: &Path) -> PathBuf {
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

/// `git ARGS` in `dir`, which must succeed; its stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
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

/// The start of a git-strategy Deployfile for `repo` (keep 5 releases, shared `storage` and
/// `.env`, writable `bootstrap/cache`) and a `[hosts.NAME]` table for every host of the fleet,
/// stage `bench`; the bench appends its tasks.
pub fn deployfile_head(fleet: &Fleet, repo: &Path) -> String {
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
    text
}
