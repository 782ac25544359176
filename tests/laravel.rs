//! End to end: the built-in `laravel` recipe deploys a real Laravel 8 application
//! (`examples/laravel-app`, on Debian's php-laravel-framework) to three real OpenSSH hosts on
//! loopback (tests/support/sshd.rs), offline: composer install, the artisan caches, a database
//! backup then the migrations once for the whole fleet, the layered `.env` with its secrets kept
//! out of every output, the switch, real HTTP requests to the deployed code, a restore of the
//! backup with `dep db:restore`; then a rollback.
//!
//! The three hosts share ONE SQLite file outside their deploy paths (`DEP_ENV_DB_DATABASE`), as a
//! fleet shares one database server; so "migrated exactly once" and "backed up before migrating"
//! are checkable. `database/` is deliberately not a shared dir: it holds the migrations, and a
//! shared copy seeded by the first release would hide every later release's new migrations.
//!
//! Needs php-cli, php-sqlite3, php-mbstring, php-xml, php-laravel-framework, composer and sqlite3
//! (scripts/setup-test-deps installs them).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::net;
use crate::support::process::{self, Watchdog};

use crate::support::project::{Output, TestProject, T1, T2};
use crate::support::sshd::Fleet;

/// The whole test must finish within this (each dep run is also bounded by the harness).
pub(crate) const WATCHDOG: Duration = Duration::from_secs(150);

/// How long a local helper command (sqlite3, gzip, php) may run.
const COMMAND_LIMIT: Duration = Duration::from_secs(20);

/// The application key: a secret, given to dep through its environment only.
const APP_KEY: &str = "base64:61Fuhx8nh8gr4KY5p43Iio0ptevOc0P80wQl7DmQT1s=";

/// A second secret with characters that the `.env` and the shell must quote (`"`, `$`, spaces).
const MAIL_PASSWORD: &str = "mailpw-7f3k wq9x $HOME \"zz8q\" end";

/// A secret with a single quote too: the `.env` then double-quotes it and the shell command that
/// writes the file escapes its `'`, so it reaches the command line only in a quoted form.
const QUOTED_SECRET: &str = "mailpw-7f3k'wq9x $HOME \"zz8q\" end";

/// Pieces of those secrets that survive any quoting, and appear nowhere else.
const SECRET_PIECES: &[&str] = &["mailpw-7f3k", "wq9x", "zz8q"];

const CREATE_NOTES: &str = "2024_01_01_000000_create_notes_table";
const CREATE_TAGS: &str = "2024_02_01_000000_create_tags_table";

/// The second release's migration: a new table.
const CREATE_TAGS_PHP: &str = r#"<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;

class CreateTagsTable extends Migration
{
    public function up()
    {
        Schema::create('tags', function (Blueprint $table) {
            $table->id();
            $table->string('name')->unique();
            $table->timestamps();
        });
    }

    public function down()
    {
        Schema::dropIfExists('tags');
    }
}
"#;

/// Runs a local helper command with a time limit; returns (exit code, stdout, stderr).
fn run_local(command: &mut Command) -> (i32, String, String) {
    let label = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {label}: {e}"));
    let finished = process::wait_within(child, &label, COMMAND_LIMIT);
    (
        finished.status.code().unwrap_or(-1),
        finished.stdout,
        finished.stderr,
    )
}

/// `sqlite3 DB SQL`, which must succeed; its stdout.
pub(crate) fn sql(db: &Path, query: &str) -> String {
    let (code, stdout, stderr) = run_local(Command::new("sqlite3").arg(db).arg(query));
    assert_eq!(code, 0, "sqlite3 {query:?}: {stderr}");
    stdout
}

/// The migrations table: `batch|migration` lines, in order.
pub(crate) fn migrations(db: &Path) -> Vec<String> {
    sql(
        db,
        "SELECT batch || '|' || migration FROM migrations ORDER BY id",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

pub(crate) fn notes(db: &Path) -> Vec<String> {
    sql(db, "SELECT body FROM notes ORDER BY id")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `php -S` serving one host's `current/public` on a free loopback port; killed on drop.
struct PhpServer {
    child: Child,
    addr: SocketAddr,
}

impl PhpServer {
    fn start(public: &Path) -> PhpServer {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, net::free_port(Ipv4Addr::LOCALHOST)));
        let child = Command::new("php")
            .arg("-S")
            .arg(addr.to_string())
            .arg("-t")
            .arg(public)
            .arg(public.join("index.php"))
            // Only what the app reads from its .env: nothing of the test's environment.
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run php -S");
        let server = PhpServer { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "php -S on {addr} did not start within 10 s"
            );
            thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// GET `path`: the status code and the body (retried twice: a loaded CI machine can stall
    /// php's built-in server for a moment).
    fn get(&self, path: &str) -> (u16, String) {
        for attempt in 1..=3 {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.get_once(path))) {
                Ok(response) => return response,
                Err(panic) if attempt == 3 => std::panic::resume_unwind(panic),
                Err(_) => thread::sleep(Duration::from_millis(500)),
            }
        }
        unreachable!("the third attempt returns or panics")
    }

    fn get_once(&self, path: &str) -> (u16, String) {
        let response = net::get(self.addr, path, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("GET {path} on php -S at {}: {e}", self.addr));
        (response.status, response.body)
    }
}

impl Drop for PhpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fleet, the project (a copy of examples/laravel-app with a Deployfile) and the database.
pub(crate) struct Setup {
    pub(crate) fleet: Fleet,
    pub(crate) project: TestProject,
    pub(crate) db: PathBuf,
}

impl Setup {
    /// A fleet of `hosts` hosts and the project deploying to all of them.
    pub(crate) fn new(hosts: usize) -> Setup {
        require_php_stack();
        let fleet = Fleet::start(hosts);
        let project = TestProject::empty();
        project.copy_laravel_example();
        // The stage's layer of the .env, beside the Deployfile, never shipped with the code.
        project.write(
            ".env.test",
            "# stage `test`\nAPP_ENV=staging\nAPP_NAME=\"Laravel on the test fleet\"\nLOG_LEVEL=info\n",
        );
        let db_dir = fleet.dir().join("database-server");
        fs::create_dir(&db_dir).unwrap();
        let db = db_dir.join("app.sqlite");

        let mut deployfile = String::from(
            r#"import = ["laravel"]
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
"#,
        );
        for host in fleet.hosts() {
            deployfile.push_str(&format!(
                "\n[hosts.{name}]\nstage = \"test\"\nroles = [\"app\"]\nconfig = {{ deploy_path = {path:?} }}\n",
                name = host.name(),
                path = host.deploy_path().display().to_string(),
            ));
        }
        let project = project.raw_deployfile(&deployfile);
        Setup { fleet, project, db }
    }

    pub(crate) fn deploy_path(&self, index: usize) -> &Path {
        self.fleet.host(index).deploy_path()
    }

    pub(crate) fn link(&self, index: usize, name: &str) -> Option<String> {
        let target = fs::read_link(self.deploy_path(index).join(name)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// dep with the fleet's ssh_config, no agent, the database and the secrets in its
    /// environment, and `extra`. Every output is checked for the secrets.
    pub(crate) fn dep(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut env = vec![
            ("DEP_SSH_CONFIG", self.fleet.ssh_config().to_str().unwrap()),
            ("SSH_AUTH_SOCK", ""),
            ("DEP_ENV_DB_DATABASE", self.db.to_str().unwrap()),
            ("APP_KEY", APP_KEY),
            ("MAIL_PASSWORD", MAIL_PASSWORD),
        ];
        env.extend_from_slice(extra);
        let output = self.project.run_env(args, &env);
        assert_no_secrets(&output, args);
        output
    }
}

/// Fails with what to do when the PHP side of the test is not installed.
fn require_php_stack() {
    for tool in ["php", "composer", "sqlite3", "gzip"] {
        let (code, _, _) = run_local(
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}")),
        );
        assert_eq!(
            code, 0,
            "`{tool}` is not installed: run scripts/setup-test-deps"
        );
    }
    let framework = Path::new("/usr/share/php/Illuminate/autoload.php");
    assert!(
        framework.exists(),
        "{} is missing (Debian's php-laravel-framework): run scripts/setup-test-deps",
        framework.display()
    );
    let check = "foreach (['pdo_sqlite', 'mbstring', 'dom'] as $e) { \
                 if (!extension_loaded($e)) { echo $e; exit(1); } }";
    let (code, missing, _) = run_local(Command::new("php").arg("-r").arg(check));
    assert_eq!(
        code, 0,
        "PHP lacks the `{missing}` extension: run scripts/setup-test-deps"
    );
}

#[track_caller]
fn assert_no_secrets(output: &Output, args: &[&str]) {
    let all = format!("{}\n{}", output.stdout, output.stderr);
    assert!(
        !all.contains(APP_KEY) && !all.contains(&APP_KEY[7..20]),
        "`dep {}` printed APP_KEY\n{}",
        args.join(" "),
        output.transcript()
    );
    for piece in SECRET_PIECES {
        assert!(
            !all.contains(piece),
            "`dep {}` printed (part of) MAIL_PASSWORD: {piece:?}\n{}",
            args.join(" "),
            output.transcript()
        );
    }
}

/// The lines commands printed, as dep shows them at `-vv`: `(host, line)` from `[host] │ line`.
fn printed(output: &Output) -> Vec<(String, String)> {
    output
        .stdout
        .lines()
        .filter_map(|line| {
            let (host, rest) = line.strip_prefix('[')?.split_once("] │ ")?;
            Some((host.to_string(), rest.to_string()))
        })
        .collect()
}

/// The hosts on which a command printed a line starting with `prefix`, in output order.
pub(crate) fn printed_by(output: &Output, prefix: &str) -> Vec<String> {
    printed(output)
        .into_iter()
        .filter(|(_, line)| line.starts_with(prefix))
        .map(|(host, _)| host)
        .collect()
}

/// The hosts on which `task` started (`[host] ▶ task` at `-v`).
pub(crate) fn started_on(output: &Output, task: &str) -> Vec<String> {
    let marker = format!("] ▶ {task}");
    output
        .stdout
        .lines()
        .filter(|line| line.ends_with(&marker))
        .filter_map(|line| Some(line.strip_prefix('[')?.split_once(']')?.0.to_string()))
        .collect()
}

/// Where in stdout a command printed a line starting with `prefix`.
#[track_caller]
fn position(output: &Output, prefix: &str) -> usize {
    output
        .stdout
        .find(&format!(" │ {prefix}"))
        .unwrap_or_else(|| panic!("no output line {prefix:?}\n{}", output.transcript()))
}

#[test]
fn deploys_a_laravel_app_to_three_hosts_with_one_migration_run() {
    let _watchdog = Watchdog::arm("laravel deploy", WATCHDOG);
    let started = Instant::now();
    let setup = Setup::new(3);
    let db = &setup.db;

    // First deploy: no database yet. db:backup says so, db:create makes it, migrate runs once.
    let first = setup.dep(
        &["-vv", "deploy", "test"],
        &[("DEP_NOW", T1), ("DEP_ENV_APP_VERSION", "1.0.1")],
    );
    first.success();
    let first_deploy = started.elapsed();
    for index in 0..3 {
        assert_eq!(
            setup.link(index, "current").as_deref(),
            Some(T1),
            "host{index}"
        );
    }
    assert_eq!(
        started_on(&first, "artisan:migrate"),
        ["host0"],
        "{}",
        first.transcript()
    );
    assert_eq!(
        started_on(&first, "db:backup"),
        ["host0"],
        "{}",
        first.transcript()
    );
    assert_eq!(
        printed_by(&first, &format!("Migrated:  {CREATE_NOTES}")),
        ["host0"],
        "{}",
        first.transcript()
    );
    assert_eq!(printed_by(&first, "db:backup: no database at"), ["host0"]);
    assert_eq!(printed_by(&first, "db:create: created"), ["host0"]);
    assert!(position(&first, "db:backup: no database") < position(&first, "db:create: created"));
    assert!(position(&first, "db:create: created") < position(&first, "Migrated:"));
    assert!(
        !setup
            .deploy_path(0)
            .join("shared/backups")
            .join(format!("{T1}.sql.gz"))
            .exists(),
        "a backup of a database that did not exist"
    );
    assert_eq!(migrations(db), [format!("1|{CREATE_NOTES}")]);

    for index in 0..3 {
        let deploy = setup.deploy_path(index);
        let release = deploy.join("releases").join(T1);
        // composer install made the autoloader; artisan cached config, routes, events, views.
        for file in [
            "vendor/autoload.php",
            "vendor/composer/autoload_files.php",
            "bootstrap/cache/config.php",
            "bootstrap/cache/routes-v7.php",
            "bootstrap/cache/events.php",
            "bootstrap/cache/packages.php",
        ] {
            assert!(release.join(file).is_file(), "host{index}: no {file}");
        }
        let views = fs::read_dir(deploy.join("shared/storage/framework/views"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".php")
            })
            .count();
        assert!(views > 0, "host{index}: view:cache compiled nothing");
        let storage_link = fs::read_link(release.join("public/storage")).unwrap();
        assert!(
            storage_link.ends_with("storage/app/public"),
            "host{index}: public/storage -> {}",
            storage_link.display()
        );
        // storage/ and .env live in shared/.
        assert_eq!(
            fs::read_link(release.join("storage")).unwrap(),
            deploy.join("shared/storage")
        );
        assert_eq!(
            fs::read_link(release.join(".env")).unwrap(),
            deploy.join("shared/.env")
        );
        // The cached config was made from the layered .env.
        let config = fs::read_to_string(release.join("bootstrap/cache/config.php")).unwrap();
        assert!(
            config.contains("'name' => 'Laravel on the test fleet'"),
            "host{index}"
        );
        assert!(
            config.contains(&format!("'database' => '{}'", db.display())),
            "host{index}"
        );
        assert_env_file(&setup, index, "1.0.1");
    }

    // Real HTTP requests to each host's deployed code (php -S on loopback, `current/public`).
    for index in 0..3 {
        let server = PhpServer::start(&setup.deploy_path(index).join("current/public"));
        assert_eq!(
            server.get("/health"),
            (200, "ok".to_string()),
            "host{index}"
        );
        let (status, page) = server.get("/");
        assert_eq!(status, 200, "host{index}: {page}");
        assert!(
            page.contains("<h1>Laravel on the test fleet</h1>"),
            "host{index}: {page}"
        );
        assert!(
            page.contains("Version <span id=\"version\">1.0.1</span>"),
            "host{index}: {page}"
        );
        assert!(page.contains("Laravel 8."), "host{index}: {page}");
        assert!(
            page.contains("<span id=\"notes\">0</span>"),
            "host{index}: {page}"
        );
    }

    // Data written on one host is seen by all (one database), and is in the next backup.
    setup
        .dep(
            &["run", "host1", "--", "php artisan note:add before-backup"],
            &[],
        )
        .success()
        .stdout_has("note 1 added");

    // Second deploy, with a new migration: backup first (once), then migrate (once).
    setup.project.write(
        &format!("database/migrations/{CREATE_TAGS}.php"),
        CREATE_TAGS_PHP,
    );
    let second = setup.dep(
        &["-vv", "deploy", "test"],
        &[("DEP_NOW", T2), ("DEP_ENV_APP_VERSION", "1.0.2")],
    );
    second.success();
    for index in 0..3 {
        assert_eq!(
            setup.link(index, "current").as_deref(),
            Some(T2),
            "host{index}"
        );
        assert_eq!(
            setup.link(index, "previous").as_deref(),
            Some(T1),
            "host{index}"
        );
        assert_env_file(&setup, index, "1.0.2");
    }
    assert_eq!(
        started_on(&second, "db:backup"),
        ["host0"],
        "{}",
        second.transcript()
    );
    assert_eq!(
        started_on(&second, "artisan:migrate"),
        ["host0"],
        "{}",
        second.transcript()
    );
    assert_eq!(
        printed_by(&second, &format!("Migrated:  {CREATE_TAGS}")),
        ["host0"],
        "{}",
        second.transcript()
    );
    let backup_line = second
        .stdout
        .find("db:backup: /")
        .expect("db:backup reported no file");
    let migrated_line = second
        .stdout
        .find(&format!("Migrated:  {CREATE_TAGS}"))
        .unwrap();
    assert!(
        backup_line < migrated_line,
        "the backup came after the migration"
    );
    assert_eq!(
        migrations(db),
        [format!("1|{CREATE_NOTES}"), format!("2|{CREATE_TAGS}")]
    );

    // The backup is on the host that migrated, and holds the database as it was before.
    let backup = setup
        .deploy_path(0)
        .join("shared/backups")
        .join(format!("{T2}.sql.gz"));
    let (code, dump, stderr) = run_local(Command::new("gzip").arg("-dc").arg(&backup));
    assert_eq!(code, 0, "{}: {stderr}", backup.display());
    assert!(
        dump.contains("CREATE TABLE IF NOT EXISTS \"notes\"")
            || dump.contains("CREATE TABLE \"notes\""),
        "{dump}"
    );
    assert!(dump.contains("before-backup"), "{dump}");
    assert!(
        !dump.contains("\"tags\""),
        "the backup already has the new table:\n{dump}"
    );
    for index in 1..3 {
        assert!(
            !setup.deploy_path(index).join("shared/backups").exists(),
            "host{index} took a backup too"
        );
    }

    // The new release serves the new version; through dep run, a request through the kernel.
    let health = setup.dep(
        &[
            "run",
            "test",
            "--",
            "REQUEST_METHOD=GET REQUEST_URI=/health php public/index.php; echo",
        ],
        &[],
    );
    health.success();
    // `dep run` prints each host's output as `[host] line`.
    let mut answered: Vec<(String, String)> = health
        .stdout
        .lines()
        .filter_map(|line| {
            let (host, rest) = line.strip_prefix('[')?.split_once("] ")?;
            Some((host.to_string(), rest.to_string()))
        })
        .collect();
    answered.sort();
    let expected: Vec<(String, String)> = (0..3)
        .map(|i| (format!("host{i}"), "ok".to_string()))
        .collect();
    assert_eq!(answered, expected, "{}", health.transcript());
    let server = PhpServer::start(&setup.deploy_path(2).join("current/public"));
    let (status, page) = server.get("/");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Version <span id=\"version\">1.0.2</span>"),
        "{page}"
    );
    assert!(page.contains("<span id=\"notes\">1</span>"), "{page}");
    drop(server);

    // Restore the backup taken before the second migration: later rows and the migration go.
    setup
        .dep(
            &["run", "host2", "--", "php artisan note:add after-backup"],
            &[],
        )
        .success();
    assert_eq!(notes(db), ["before-backup", "after-backup"]);
    setup
        .dep(
            &["db:restore", "test", "-o", &format!("backup_release={T2}")],
            &[],
        )
        .success();
    assert_eq!(notes(db), ["before-backup"]);
    assert_eq!(migrations(db), [format!("1|{CREATE_NOTES}")]);
    // And the migration runs again, once, as a task of its own.
    let migrate = setup.dep(&["-vv", "artisan:migrate", "test"], &[]);
    migrate.success();
    assert_eq!(
        printed_by(&migrate, &format!("Migrated:  {CREATE_TAGS}")),
        ["host0"],
        "{}",
        migrate.transcript()
    );
    assert_eq!(
        migrations(db),
        [format!("1|{CREATE_NOTES}"), format!("2|{CREATE_TAGS}")]
    );

    // Artisan commands this Laravel 8 application does not define are skipped on every host
    // (a command added in a later Laravel; a package's namespace), any other failure is one.
    for (task, command) in [
        ("artisan:schedule:interrupt", "schedule:interrupt"),
        ("artisan:horizon:terminate", "horizon:terminate"),
    ] {
        let skipped = setup.dep(&[task, "test"], &[]);
        skipped.success();
        let mut hosts = printed_by(
            &skipped,
            &format!("artisan {command}: not defined in this application, skipped"),
        );
        hosts.sort();
        assert_eq!(
            hosts,
            ["host0", "host1", "host2"],
            "{}",
            skipped.transcript()
        );
    }
    setup
        .dep(
            &["artisan:config:cache", "test", "-o", "bin_php=false"],
            &[],
        )
        .expect_status(1)
        .stderr_has("artisan:config:cache");

    // A rollback serves the previous release with the configuration cached for it.
    setup.dep(&["rollback", "test"], &[]).success();
    for index in 0..3 {
        assert_eq!(
            setup.link(index, "current").as_deref(),
            Some(T1),
            "host{index}"
        );
    }
    let version = setup.dep(&["run", "test", "--", "php artisan app:version"], &[]);
    version.success();
    assert_eq!(
        version
            .stdout
            .matches("Laravel on the test fleet 1.0.1")
            .count(),
        3,
        "{}",
        version.transcript()
    );

    eprintln!(
        "laravel: first deploy {first_deploy:?}, whole test {:?}",
        started.elapsed()
    );
}

/// shared/.env on host `index`: the layers in order, mode 0640, the secrets in it.
#[track_caller]
fn assert_env_file(setup: &Setup, index: usize, version: &str) {
    let path = setup.deploy_path(index).join("shared/.env");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "host{index}: shared/.env mode {mode:o}");
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let has = |line: &str| {
        assert!(
            lines.contains(&line),
            "host{index}: shared/.env lacks {line:?}:\n{text}"
        )
    };
    // .env.example < .env.test < DEP_ENV_* < secrets.
    has("APP_ENV=staging");
    has("APP_NAME='Laravel on the test fleet'");
    has("APP_DEBUG=false");
    has("DB_CONNECTION=sqlite");
    has(&format!("DB_DATABASE={}", setup.db.display()));
    has(&format!("APP_VERSION={version}"));
    has(&format!("APP_KEY={APP_KEY}"));
    has("LOG_LEVEL=info");
    assert!(text.contains("MAIL_PASSWORD="), "host{index}: {text}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("APP_KEY=")).count(),
        1,
        "host{index}: {text}"
    );
    // The dotenv library Laravel reads it with (vlucas/phpdotenv) gets exactly the values meant:
    // MAIL_PASSWORD has quotes, a space and a `$`.
    let env = read_dotenv(&setup.deploy_path(index).join("shared"));
    assert_eq!(env["MAIL_PASSWORD"], MAIL_PASSWORD, "host{index}");
    assert_eq!(env["APP_KEY"], APP_KEY, "host{index}");
    assert_eq!(env["APP_NAME"], "Laravel on the test fleet", "host{index}");
}

/// The `.env` in `dir` as vlucas/phpdotenv (Debian's, which Laravel uses) reads it.
fn read_dotenv(dir: &Path) -> serde_json::Value {
    let php = "require 'Dotenv/autoload.php'; \
               echo json_encode(Dotenv\\Dotenv::createArrayBacked($argv[1])->load());";
    let (code, stdout, stderr) = run_local(
        Command::new("php")
            .arg("-r")
            .arg(php)
            .arg(dir)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin"),
    );
    assert_eq!(
        code,
        0,
        "phpdotenv cannot read {}/.env: {stderr}",
        dir.display()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A secret whose value needs quoting in the `.env` and in the shell (it has a `'`) is written
/// exactly, and shows in no form in dep's output, even with `-vv` showing every command.
/// (`deploy:env` runs only as a step of the deploy, hence a whole deploy to one host.)
#[test]
fn a_secret_that_needs_quoting_never_reaches_the_output() {
    let _watchdog = Watchdog::arm("laravel secret", Duration::from_secs(60));
    let setup = Setup::new(1);
    // Setup::dep fails the test if any piece of the secret is in the output.
    setup
        .dep(
            &["-vv", "deploy", "test"],
            &[("MAIL_PASSWORD", QUOTED_SECRET), ("DEP_NOW", T1)],
        )
        .success();
    let env = read_dotenv(&setup.deploy_path(0).join("shared"));
    assert_eq!(env["MAIL_PASSWORD"], QUOTED_SECRET);
    assert_eq!(env["APP_KEY"], APP_KEY);
}
