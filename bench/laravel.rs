//! The Laravel benchmark: the built-in `laravel` recipe deploying the real Laravel 8 application
//! of the test suite (`examples/laravel-app`, on Debian's php-laravel-framework, composer
//! offline) to N loopback sshd hosts, set up as `tests/laravel.rs` does (upload strategy, the
//! layered `.env` with two secrets, one SQLite database shared by the fleet), against "the
//! script": what a careful engineer would write by hand with plain OpenSSH for the same remote
//! work. The contenders run interleaved, after one warm-up each, the order rotated by one every
//! round, so machine load drift hits all alike; every round is checked to have really deployed.
//!
//! Run: `cargo bench --bench laravel` (env BENCH_HOSTS="3 10", BENCH_ROUNDS=5, BENCH_DEP=/path/to/dep
//! to measure that binary instead of building target/release/dep, BENCH_BASELINE_DEP=/path/to/dep
//! to measure another build too, BENCH_TRACE=DIR to write, after each size's rounds, one more
//! deploy of each traced: dep at `-vv` with RUST_LOG=dep=debug, the script's step times). Needs php-cli (sqlite3, mbstring, xml), php-laravel-framework,
//! composer, sqlite3 and gzip, as the Laravel integration test does (scripts/setup-test-deps).

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

use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    cpu_per_host_ms, measure, median_cpu, median_wall, paired_ratio_range, peak_mb, spread_percent,
    Binaries, ChildrenMeter, Contender, Cost, Samples,
};
use sshd::Fleet;

/// The application key: a secret, given to dep through its environment only (as in the test).
const APP_KEY: &str = "base64:61Fuhx8nh8gr4KY5p43Iio0ptevOc0P80wQl7DmQT1s=";

/// A second secret with characters that the `.env` and the shell must quote.
const MAIL_PASSWORD: &str = "mailpw-7f3k wq9x $HOME \"zz8q\" end";

/// The stage's layer of the `.env`, beside the Deployfile (tests/laravel.rs writes the same).
const STAGE_DOTENV: &str =
    "# stage `test`\nAPP_ENV=staging\nAPP_NAME=\"Laravel on the test fleet\"\nLOG_LEVEL=info\n";

/// The Deployfile of tests/laravel.rs, before its hosts.
const DEPLOYFILE: &str = r#"import = ["laravel"]
secrets = ["APP_KEY", "MAIL_PASSWORD"]

[config]
application = "laravel-example"
strategy = "upload"
upload_from = "."
upload_exclude = [".git", "vendor", "node_modules", "Deployfile.toml", ".env", ".env.test"]
dotenv_render = true
keep_releases = 3

# Laravel 8 does not create a missing SQLite database; a real project's first deploy would.
# After db:backup, so that the first deploy's backup finds no database yet.
[tasks."db:create"]
desc = "Create the SQLite database file if it does not exist"
once = true
cwd = "{{ release_path }}"
after = "db:backup"
run = '''
db=$(sed -n 's/^DB_DATABASE=//p' .env | tail -n 1)
case "$db" in /*) ;; *) db="$PWD/$db" ;; esac
if [ ! -e "$db" ]; then mkdir -p "$(dirname "$db")"; : > "$db"; echo "db:create: created $db"; fi
'''
"#;

/// What the Deployfile's `upload_exclude` leaves out (names at any depth), for the script's tar.
const UPLOAD_EXCLUDE: [&str; 6] = [
    ".git",
    "vendor",
    "node_modules",
    "Deployfile.toml",
    ".env",
    ".env.test",
];

/// The Deployfile's `keep_releases`.
const KEEP_RELEASES: usize = 3;

/// The laravel recipe's `keep_backups`.
const KEEP_BACKUPS: usize = 10;

/// The laravel recipe's `shared_dirs`, `shared_files` and `writable_dirs`.
const SHARED_DIRS: [&str; 1] = ["storage"];
const SHARED_FILES: [&str; 1] = [".env"];
const WRITABLE_DIRS: [&str; 9] = [
    "bootstrap/cache",
    "storage",
    "storage/app",
    "storage/app/public",
    "storage/framework",
    "storage/framework/cache",
    "storage/framework/sessions",
    "storage/framework/views",
    "storage/logs",
];

/// The laravel recipe's commands in the new release after the code is in place, in its order.
const RELEASE_COMMANDS: [&str; 6] = [
    "composer install --no-dev --prefer-dist --optimize-autoloader --no-interaction --no-progress",
    "php artisan storage:link --no-interaction",
    "php artisan config:cache --no-interaction",
    "php artisan route:cache --no-interaction",
    "php artisan view:cache --no-interaction",
    "php artisan event:cache --no-interaction",
];

fn main() {
    if common::listing() {
        return;
    }
    let sizes = common::sizes("3 10");
    let rounds = common::rounds(5);
    require_php_stack();
    let binaries = Binaries {
        dep: common::binary_from_env("BENCH_DEP").unwrap_or_else(common::build_dep),
        baseline: common::binary_from_env("BENCH_BASELINE_DEP"),
    };
    println!(
        "dep Laravel benchmark: {rounds} interleaved rounds per size; wall seconds are medians"
    );
    println!("dep:  {}", binaries.dep.display());
    if let Some(baseline) = &binaries.baseline {
        println!("base: {}", baseline.display());
    }
    println!(
        "rounds: lowest and highest per-round ratio; spread: (max - min) / median of one \
         contender's rounds; CPU/host and peak: dep's own process; script CPU: its local tar, \
         gzip and ssh clients"
    );
    print_header(binaries.baseline.is_some());
    for n in sizes {
        let samples = measure_size(&binaries, n, rounds);
        print_row(n, &samples, binaries.baseline.is_some());
        std::io::stdout().flush().ok();
    }
}

/// How the stderr lines and failures name a contender.
fn label(who: Contender) -> &'static str {
    match who {
        Contender::Reference => "Script",
        Contender::Dep => "Dep",
        Contender::Baseline => "Baseline",
    }
}

/// Fails with what to install when the PHP side is missing.
fn require_php_stack() {
    for tool in ["php", "composer", "sqlite3", "gzip", "tar"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool} > /dev/null"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool}` is not installed: run scripts/setup-test-deps"
        );
    }
    let framework = Path::new("/usr/share/php/Illuminate/autoload.php");
    assert!(
        framework.exists(),
        "{} is missing (Debian's php-laravel-framework): run scripts/setup-test-deps",
        framework.display()
    );
}

/// A running fleet, the project (a copy of examples/laravel-app with its Deployfile) and the
/// fleet's one database: the same for every contender, which all deploy to the same deploy paths.
struct Setup {
    fleet: Fleet,
    project: PathBuf,
    /// Where the script keeps its tarball (outside the project, which is packed).
    scratch: PathBuf,
    db: PathBuf,
    /// The `.env` the script writes: the same layers as dep's `deploy:env`.
    dotenv: String,
    /// How many deploys ran so far: each gets the next release name.
    deploys: Cell<usize>,
}

impl Setup {
    fn start(n: usize) -> Setup {
        let fleet = Fleet::start(n);
        let work = fleet.dir().join("bench");
        let project = work.join("app");
        let scratch = work.join("script");
        fs::create_dir_all(&scratch).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/laravel-app");
        // What a developer's checkout may hold but the example does not ship.
        copy_tree(&example, &project, &["vendor", ".env", "composer.phar"]);
        for cached in [
            "config.php",
            "routes-v7.php",
            "events.php",
            "packages.php",
            "services.php",
        ] {
            let _ = fs::remove_file(project.join("bootstrap/cache").join(cached));
        }
        let _ = fs::remove_file(project.join("public/storage"));
        fs::write(project.join(".env.test"), STAGE_DOTENV).unwrap();
        let db_dir = fleet.dir().join("database-server");
        fs::create_dir(&db_dir).unwrap();
        let db = db_dir.join("app.sqlite");
        let mut deployfile = DEPLOYFILE.to_string();
        for host in fleet.hosts() {
            deployfile.push_str(&format!(
                "\n[hosts.{name}]\nstage = \"test\"\nroles = [\"app\"]\nconfig = {{ deploy_path = {path:?} }}\n",
                name = host.name(),
                path = host.deploy_path().display().to_string(),
            ));
        }
        fs::write(project.join("Deployfile.toml"), deployfile).unwrap();
        let dotenv = render_dotenv(&project, &db);
        Setup {
            fleet,
            project,
            scratch,
            db,
            dotenv,
            deploys: Cell::new(0),
        }
    }

    /// One deploy by `who`, checked: every host's `current` is the new release, complete.
    fn run(&self, binaries: &Binaries, who: Contender) -> Cost {
        let release = self.next_release();
        let cost = match who {
            Contender::Reference => script(self, &release).0,
            Contender::Dep | Contender::Baseline => self.run_dep(binaries.of(who), &release, None),
        };
        self.check_deployed(who, &release);
        cost
    }

    /// The next release name: 2026-01-01 10:00 UTC, then one minute later each deploy.
    fn next_release(&self) -> String {
        let k = self.deploys.get();
        self.deploys.set(k + 1);
        assert!(k < 14 * 60, "more deploys than one day's release names");
        format!("20260101{:02}{:02}00", 10 + k / 60, k % 60)
    }

    /// `dep -q deploy test` (with a `trace` file: `dep -vv deploy test` with RUST_LOG=dep=debug,
    /// its output into that file).
    fn run_dep(&self, dep: &Path, release: &str, trace: Option<&Path>) -> Cost {
        let mut command = Command::new(dep);
        command.current_dir(&self.project);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("DEP_") {
                command.env_remove(&key);
            }
        }
        match trace {
            None => {
                command
                    .args(["-q", "-f", "Deployfile.toml", "deploy", "test"])
                    .stdout(Stdio::null());
            }
            Some(file) => {
                let output = fs::File::create(file).expect("the trace file");
                command
                    .args(["-vv", "-f", "Deployfile.toml", "deploy", "test"])
                    .env("RUST_LOG", "dep=debug")
                    .stdout(output.try_clone().expect("the trace file"))
                    .stderr(output);
            }
        }
        command
            .env("DEP_SSH_CONFIG", self.fleet.ssh_config())
            .env("SSH_AUTH_SOCK", "")
            .env("DEP_ENV_DB_DATABASE", &self.db)
            .env("APP_KEY", APP_KEY)
            .env("MAIL_PASSWORD", MAIL_PASSWORD)
            .env("DEP_NOW", release);
        let (cost, status) = measure(command);
        assert!(
            status.code() == 0,
            "dep deploy of release {release} failed (exit {})",
            status.code()
        );
        cost
    }

    /// After a deploy of `release`: on every host `current` points at it, it has its vendors,
    /// its cached configuration and its `.env`, `previous` exists from the second deploy on, no
    /// lock is left and at most keep_releases releases remain; the database was migrated once,
    /// and from the second deploy on backed up for this release first.
    fn check_deployed(&self, who: Contender, release: &str) {
        let first = self.deploys.get() == 1;
        for host in self.fleet.hosts() {
            let dp = host.deploy_path();
            let name = label(who);
            let at = |what: &str| format!("{name} deploy of {release}, {}: {what}", host.name());
            let current = fs::read_link(dp.join("current"))
                .unwrap_or_else(|e| panic!("{}", at(&format!("no current: {e}"))));
            assert_eq!(
                current,
                Path::new("releases").join(release),
                "{}",
                at("current")
            );
            let live = dp.join("current");
            for file in [
                "vendor/autoload.php",
                "bootstrap/cache/config.php",
                "bootstrap/cache/routes-v7.php",
                "bootstrap/cache/events.php",
                "public/storage",
            ] {
                assert!(live.join(file).exists(), "{}", at(&format!("no {file}")));
            }
            let env = fs::read_to_string(live.join(".env")).unwrap_or_default();
            assert!(env.contains(APP_KEY), "{}", at(".env lacks APP_KEY"));
            assert!(
                first || dp.join("previous").exists(),
                "{}",
                at("no previous")
            );
            assert!(
                !dp.join(".dep/deploy.lock").exists(),
                "{}",
                at("lock left behind")
            );
            let releases = fs::read_dir(dp.join("releases")).unwrap().count();
            assert!(
                releases <= KEEP_RELEASES,
                "{}",
                at(&format!("{releases} releases kept"))
            );
        }
        let migrations = Command::new("sqlite3")
            .arg(&self.db)
            .arg("SELECT count(*) FROM migrations")
            .output()
            .expect("sqlite3");
        assert_eq!(
            String::from_utf8_lossy(&migrations.stdout).trim(),
            "1",
            "{} deploy of {release}: the migrations table",
            label(who)
        );
        let backup = self
            .fleet
            .host(0)
            .deploy_path()
            .join(format!("shared/backups/{release}.sql.gz"));
        assert!(
            first || backup.is_file(),
            "{} deploy of {release}: no backup {}",
            label(who),
            backup.display()
        );
    }

    /// One more deploy of dep and of the script, traced into `dir`: dep's `-vv` output and debug
    /// log in `dep-N.log`, the script's step times in `script-N.log`.
    fn trace(&self, binaries: &Binaries, dir: &Path) {
        let n = self.fleet.hosts().len();
        fs::create_dir_all(dir).unwrap();
        let release = self.next_release();
        let file = dir.join(format!("dep-{n}.log"));
        let cost = self.run_dep(&binaries.dep, &release, Some(&file));
        self.check_deployed(Contender::Dep, &release);
        eprintln!(
            "trace: {} ({:.3} s)",
            file.display(),
            cost.wall.as_secs_f64()
        );
        let release = self.next_release();
        let (cost, steps) = script(self, &release);
        self.check_deployed(Contender::Reference, &release);
        let mut text = format!(
            "script deploy of {release} to {n} hosts: {:.3} s\n",
            cost.wall.as_secs_f64()
        );
        for (step, took) in steps {
            text.push_str(&format!("{step:>8}  {:.3} s\n", took.as_secs_f64()));
        }
        let file = dir.join(format!("script-{n}.log"));
        fs::write(&file, text).unwrap();
        eprintln!("trace: {}", file.display());
    }

    /// Whether dep wrote the same `.env` as the script does (a check that both do the same
    /// work; a difference is reported, not fatal).
    fn compare_dotenv(&self) {
        let written = self.fleet.host(0).deploy_path().join("shared/.env");
        let dep = fs::read_to_string(&written).unwrap_or_default();
        if dep != self.dotenv {
            eprintln!(
                "warning: dep's .env differs from the script's:\n--- dep\n{dep}--- script\n{}",
                self.dotenv
            );
        }
    }
}

fn measure_size(binaries: &Binaries, n: usize, rounds: usize) -> Samples {
    let setup = Setup::start(n);
    // One warm-up of each: the first deploy creates the layout, the shared dirs and the database.
    for who in binaries.contenders() {
        setup.run(binaries, who);
        if who == Contender::Dep {
            setup.compare_dotenv();
        }
    }
    let mut samples = Samples::default();
    for round in 1..=rounds {
        // Rotate the order by one each round: script, dep, baseline; dep, baseline, script; …
        let mut walls = Vec::new();
        for who in binaries.order(round) {
            let cost = setup.run(binaries, who);
            samples.of(who).push(cost);
            walls.push(format!("{} {:.3} s", label(who), cost.wall.as_secs_f64()));
        }
        // Each round's figures, in the order they ran, on stderr (the table is on stdout).
        eprintln!("N = {n}, round {round}: {}", walls.join(", "));
    }
    if let Some(dir) = std::env::var_os("BENCH_TRACE").filter(|d| !d.is_empty()) {
        setup.trace(binaries, Path::new(&dir));
    }
    samples
}

/// The script: the tarball packed once locally; then per host, all in parallel, one ssh that
/// prepares the release (lock, layout, code, shared links, `.env`, writable dirs, composer, the
/// artisan caches); one ssh to the first host for the database backup and the migrations; one
/// ssh per host, in parallel, for the switch; one ssh per host, in parallel, to finish (queue
/// restart, unlock, cleanup). Each step must succeed on every host before the next starts, as a
/// careful script's `wait` and `set -e` make it.
fn script(setup: &Setup, release: &str) -> (Cost, Vec<(&'static str, Duration)>) {
    let hosts = setup.fleet.hosts();
    let meter = ChildrenMeter::start();
    let mut steps = Vec::new();
    let mut step_started = meter.started;
    let mut step_done = |name: &'static str| {
        let now = Instant::now();
        steps.push((name, now - step_started));
        step_started = now;
    };
    let since = utc_now();

    let tarball = setup.scratch.join("app.tar.gz");
    let mut pack = String::from("tar -c -f - -C ");
    pack.push_str(&quote(&setup.project.display().to_string()));
    for name in UPLOAD_EXCLUDE {
        pack.push_str(&format!(" --exclude={}", quote(name)));
    }
    pack.push_str(&format!(
        " . | gzip -1 > {}",
        quote(&tarball.display().to_string())
    ));
    let packed = Command::new("bash")
        .args(["-o", "pipefail", "-c", &pack])
        .status()
        .expect("bash");
    assert!(packed.success(), "script: packing the upload failed");
    step_done("pack");

    let prepares: Vec<Step> = hosts
        .iter()
        .map(|host| {
            let code = fs::File::open(&tarball).expect("the tarball");
            let text = prepare_script(setup, host.deploy_path(), release, &since);
            ssh(setup, host.name(), &text, Stdio::from(code))
        })
        .collect();
    wait_all("prepare", prepares);
    step_done("prepare");

    let first = hosts[0].deploy_path();
    let migrate = migrate_script(setup, first, release);
    wait_all(
        "migrate",
        vec![ssh(setup, hosts[0].name(), &migrate, Stdio::null())],
    );
    step_done("migrate");

    let finished = utc_now();
    let switches: Vec<Step> = hosts
        .iter()
        .map(|host| {
            let text = switch_script(host.deploy_path(), release, &since, &finished);
            ssh(setup, host.name(), &text, Stdio::null())
        })
        .collect();
    wait_all("switch", switches);
    step_done("switch");

    let finishes: Vec<Step> = hosts
        .iter()
        .map(|host| {
            let text = finish_script(host.deploy_path(), release);
            ssh(setup, host.name(), &text, Stdio::null())
        })
        .collect();
    wait_all("finish", finishes);
    step_done("finish");

    (meter.cost(), steps)
}

/// One step on one host: `ssh HOST bash -c SCRIPT` with the fleet's ssh_config (the script is
/// the argument, since the prepare step's stdin carries the tarball). Its output goes to a file
/// in the scratch directory, shown when the step fails.
struct Step {
    host: String,
    log: PathBuf,
    child: Child,
}

fn ssh(setup: &Setup, host: &str, script: &str, stdin: Stdio) -> Step {
    let log = setup.scratch.join(format!("{host}.log"));
    let output = fs::File::create(&log).expect("the step's log");
    let child = setup
        .fleet
        .ssh()
        .arg(host)
        .arg(format!("bash -c {}", quote(script)))
        .stdin(stdin)
        .stdout(output.try_clone().expect("the step's log"))
        .stderr(output)
        .spawn()
        .expect("ssh");
    Step {
        host: host.to_string(),
        log,
        child,
    }
}

/// Waits for every host's step; fails naming each host that failed, with its output's tail.
fn wait_all(step: &str, steps: Vec<Step>) {
    let mut failed = Vec::new();
    for mut running in steps {
        let status = running.child.wait().expect("wait for ssh");
        if !status.success() {
            let output = fs::read_to_string(&running.log).unwrap_or_default();
            let lines: Vec<&str> = output.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            failed.push(format!("{} ({status}):\n{tail}", running.host));
        }
    }
    assert!(
        failed.is_empty(),
        "script: the {step} step failed on {}",
        failed.join("\n")
    );
}

/// The lock, the layout, the release and its log line, the code from stdin, the shared links,
/// the `.env`, the writable dirs, composer and the artisan caches: dep's deploy:lock …
/// artisan:event:cache.
fn prepare_script(setup: &Setup, dp: &Path, release: &str, since: &str) -> String {
    let dp = quote(&dp.display().to_string());
    let mut s = format!(
        "set -euo pipefail\ndp={dp}; rp=\"$dp/releases/{release}\"; sp=\"$dp/shared\"\n\
         mkdir -p \"$dp/.dep\"\n\
         (set -C; printf '%s\\n' '{{\"who\":\"bench@script\",\"pid\":'$$',\"release\":\"{release}\",\"since\":\"{since}\",\"id\":\"script-{release}\"}}' > \"$dp/.dep/deploy.lock\")\n\
         mkdir -p \"$dp/releases\" \"$sp\"\n\
         mkdir \"$rp\"\n\
         printf '%s\\n' '{{\"release\":\"{release}\",\"status\":\"prepared\",\"revision\":null,\"branch\":null,\"user\":\"bench@script\",\"started_at\":\"{since}\",\"finished_at\":null}}' >> \"$dp/.dep/releases.log\"\n\
         tar -xzf - -C \"$rp\"\n"
    );
    for dir in SHARED_DIRS {
        s.push_str(&format!(
            "src=\"$sp/{dir}\"; dst=\"$rp/{dir}\"\n\
             if [ ! -d \"$src\" ]; then mkdir -p \"$src\"; if [ -d \"$dst\" ] && [ ! -L \"$dst\" ]; then cp -a \"$dst/.\" \"$src/\"; fi; fi\n\
             rm -rf \"$dst\"; ln -s \"$src\" \"$dst\"\n"
        ));
    }
    for file in SHARED_FILES {
        s.push_str(&format!(
            "src=\"$sp/{file}\"; dst=\"$rp/{file}\"\n\
             if [ ! -e \"$src\" ]; then if [ -f \"$dst\" ] && [ ! -L \"$dst\" ]; then cp -a \"$dst\" \"$src\"; else : > \"$src\"; fi; fi\n\
             rm -rf \"$dst\"; ln -s \"$src\" \"$dst\"\n"
        ));
    }
    s.push_str(&format!(
        "(umask 077 && printf '%s' {env} > \"$sp/.env.tmp\") && chmod 0640 \"$sp/.env.tmp\" && mv -f \"$sp/.env.tmp\" \"$sp/.env\"\n",
        env = quote(&setup.dotenv)
    ));
    for dir in WRITABLE_DIRS {
        s.push_str(&format!(
            "mkdir -p \"$rp/{dir}\"; chmod -R ug+rwX \"$rp/{dir}/\"\n"
        ));
    }
    s.push_str("cd \"$rp\"\n");
    for command in RELEASE_COMMANDS {
        s.push_str(command);
        s.push_str(" < /dev/null\n");
    }
    s
}

/// On the first host: back up the database (sqlite3 .backup, dumped and gzipped, the recipe's
/// db:backup), create it on the first deploy (the Deployfile's db:create), then migrate.
fn migrate_script(setup: &Setup, dp: &Path, release: &str) -> String {
    let dp = quote(&dp.display().to_string());
    let db = quote(&setup.db.display().to_string());
    format!(
        "set -euo pipefail\ndp={dp}; db={db}\ncd \"$dp/releases/{release}\"\n\
         backups=\"$dp/shared/backups\"; out=\"$backups/{release}.sql.gz\"\nmkdir -p \"$backups\"\n\
         if [ -f \"$db\" ]; then\n\
           sqlite3 \"$db\" \".backup '$out.sqlite.tmp'\"\n\
           sqlite3 \"$out.sqlite.tmp\" .dump | gzip > \"$out.tmp\"\n\
           rm -f \"$out.sqlite.tmp\"; mv -f \"$out.tmp\" \"$out\"\n\
           ls -1 \"$backups\" | grep '\\.sql\\.gz$' | sort | head -n -{KEEP_BACKUPS} | while read -r old; do rm -f \"$backups/$old\"; done\n\
         fi\n\
         [ -e \"$db\" ] || {{ mkdir -p \"$(dirname \"$db\")\"; : > \"$db\"; }}\n\
         php artisan migrate --force --no-interaction < /dev/null\n"
    )
}

/// `previous` <- the old current, `current` <- the release, both by rename; the log line.
fn switch_script(dp: &Path, release: &str, since: &str, finished: &str) -> String {
    let dp = quote(&dp.display().to_string());
    format!(
        "set -euo pipefail\ncd {dp}\n[ -d releases/{release} ]\n\
         old=$(readlink current || true)\n\
         if [ -n \"$old\" ]; then ln -sfn \"$old\" previous.tmp && mv -fT previous.tmp previous; fi\n\
         ln -sfn releases/{release} current.tmp && mv -fT current.tmp current\n\
         printf '%s\\n' '{{\"release\":\"{release}\",\"status\":\"live\",\"revision\":null,\"branch\":null,\"user\":\"bench@script\",\"started_at\":\"{since}\",\"finished_at\":\"{finished}\"}}' >> .dep/releases.log\n"
    )
}

/// The queue restart in current (php-fpm reload: `php_fpm_service` is empty, nothing to do), the
/// unlock, then the cleanup to keep_releases, never current or previous.
fn finish_script(dp: &Path, release: &str) -> String {
    let dp = quote(&dp.display().to_string());
    format!(
        "set -euo pipefail\ncd {dp}/current\nphp artisan queue:restart --no-interaction < /dev/null\n\
         cd {dp}\n\
         if grep -qF '\"id\":\"script-{release}\"' .dep/deploy.lock; then rm -f .dep/deploy.lock; fi\n\
         cur=$(readlink current); prev=$(readlink previous || true)\n\
         ls -1 releases | sort | head -n -{KEEP_RELEASES} | while read -r r; do\n\
           if [ \"releases/$r\" != \"$cur\" ] && [ \"releases/$r\" != \"$prev\" ]; then rm -rf -- \"releases/$r\"; fi\n\
         done\n"
    )
}

/// The layered `.env` (`.env.example` < `.env.test` < DB_DATABASE < the secrets), with values
/// quoted where dotenv needs it: what a careful engineer renders once, locally.
fn render_dotenv(project: &Path, db: &Path) -> String {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut layer = |pairs: Vec<(String, String)>| {
        for (key, value) in pairs {
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key, value)),
            }
        }
    };
    for file in [".env.example", ".env.test"] {
        let text = fs::read_to_string(project.join(file)).unwrap_or_default();
        layer(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .filter_map(|line| line.split_once('='))
                .map(|(key, value)| (key.trim().to_string(), unquote(value.trim())))
                .collect(),
        );
    }
    layer(vec![("DB_DATABASE".into(), db.display().to_string())]);
    layer(vec![
        ("APP_KEY".into(), APP_KEY.into()),
        ("MAIL_PASSWORD".into(), MAIL_PASSWORD.into()),
    ]);
    entries
        .iter()
        .map(|(key, value)| format!("{key}={}\n", dotenv_quote(value)))
        .collect()
}

fn unquote(value: &str) -> String {
    for q in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            return value[1..value.len() - 1].to_string();
        }
    }
    value.to_string()
}

/// A `.env` value: bare when plain, else single-quoted (dotenv expands `${…}` in double quotes).
fn dotenv_quote(value: &str) -> String {
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:@,+%^*~=".contains(&b));
    if plain {
        value.to_string()
    } else {
        assert!(!value.contains('\''), "a .env value with a single quote");
        format!("'{value}'")
    }
}

/// POSIX single-quoting.
fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@,+=%".contains(&b));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn utc_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Copy the tree `from` to `to`, leaving out entries named in `skip` at any depth, keeping
/// symlinks as symlinks and file modes.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if skip.iter().any(|s| name.to_str() == Some(*s)) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if kind.is_dir() {
            copy_tree(&src, &dst, skip);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

fn print_header(baseline: bool) {
    if baseline {
        println!(
            "{:>4}  {:>8}  {:>8}  {:>8}  {:>10}  {:>12}  {:>9}  {:>8}  {:>11}  {:>19}  {:>17}  {:>11}  {:>12}",
            "N",
            "script s",
            "dep s",
            "base s",
            "dep/script",
            "rounds",
            "base/scr",
            "dep/base",
            "rounds",
            "spread scr/dep/base",
            "CPU/host dep/base",
            "peak MB d/b",
            "script CPU s"
        );
    } else {
        println!(
            "{:>4}  {:>8}  {:>8}  {:>10}  {:>12}  {:>14}  {:>13}  {:>11}  {:>12}",
            "N",
            "script s",
            "dep s",
            "dep/script",
            "rounds",
            "spread scr/dep",
            "dep CPU/host",
            "dep peak MB",
            "script CPU s"
        );
    }
}

fn print_row(n: usize, s: &Samples, baseline: bool) {
    let script = median_wall(&s.reference);
    let dep = median_wall(&s.dep);
    let (lo, hi) = paired_ratio_range(&s.dep, &s.reference);
    if baseline {
        let base = median_wall(&s.baseline);
        let (blo, bhi) = paired_ratio_range(&s.dep, &s.baseline);
        println!(
            "{:>4}  {:>8.3}  {:>8.3}  {:>8.3}  {:>10.2}  {:>12}  {:>9.2}  {:>8.3}  {:>11}  {:>19}  {:>17}  {:>11}  {:>12.2}",
            n,
            script,
            dep,
            base,
            dep / script,
            format!("{lo:.2}-{hi:.2}"),
            base / script,
            dep / base,
            format!("{blo:.2}-{bhi:.2}"),
            format!(
                "{:.0}% / {:.0}% / {:.0}%",
                spread_percent(&s.reference),
                spread_percent(&s.dep),
                spread_percent(&s.baseline)
            ),
            format!(
                "{:.1} / {:.1} ms",
                cpu_per_host_ms(&s.dep, n),
                cpu_per_host_ms(&s.baseline, n)
            ),
            format!("{:.1} / {:.1}", peak_mb(&s.dep), peak_mb(&s.baseline)),
            median_cpu(&s.reference),
        );
    } else {
        println!(
            "{:>4}  {:>8.3}  {:>8.3}  {:>10.2}  {:>12}  {:>14}  {:>10.1} ms  {:>11.1}  {:>12.2}",
            n,
            script,
            dep,
            dep / script,
            format!("{lo:.2}-{hi:.2}"),
            format!(
                "{:.0}% / {:.0}%",
                spread_percent(&s.reference),
                spread_percent(&s.dep)
            ),
            cpu_per_host_ms(&s.dep, n),
            peak_mb(&s.dep),
            median_cpu(&s.reference),
        );
    }
}
