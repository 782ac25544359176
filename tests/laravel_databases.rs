//! The laravel recipe's backup and restore on the database servers production uses: MariaDB
//! (`DB_CONNECTION=mysql`) and PostgreSQL 15 (`pgsql`), each a real server the test starts
//! (tests/support/database.rs), the real Laravel 8 application (`examples/laravel-app`) deployed
//! by the real `dep` binary to a local host. Per server, in one test (one server start):
//!
//! 1. a first deploy migrates, after a backup of the empty database;
//! 2. a deploy whose migrations fail half way (one creates a table and fills it, the next creates
//!    a table, fills it, then fails) gets the backup `db:backup` took just before restored,
//!    verified: the database's own client sees the rows, tables and `migrations` of before, and
//!    nothing switched;
//! 3. a deploy that migrates, reaching the database through its unix socket (`DB_SOCKET`, or a
//!    directory as `DB_HOST`), leaves the backup of the database before it, and `dep db:restore`
//!    from that backup puts the database back as it was (the migrated table gone too).
//!
//! The application user's password has a space, a `$`, double and single quotes: it goes
//! through the layered `.env` (a secret, never in dep's output) to mysqldump and pg_dump.
//!
//! Needs what tests/laravel.rs needs, plus mariadb-server, mariadb-client, postgresql-15,
//! php-mysql and php-pgsql (scripts/setup-test-deps installs them).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::database::{DatabaseServer, Engine};
use crate::support::process::{self, Watchdog};
use crate::support::project::{Output, TestProject, T1, T2, T3};

/// No test here may run longer than this.
const LIMIT: Duration = Duration::from_secs(180);

const APP_KEY: &str = "base64:61Fuhx8nh8gr4KY5p43Iio0ptevOc0P80wQl7DmQT1s=";

/// The application user's password: the `.env` must quote it, and so must every shell command.
const DB_PASSWORD: &str = "pw-k7q2 x$HOME \"dq\" it's-9zv";

/// Pieces of the password that survive any quoting, and appear nowhere else.
const PASSWORD_PIECES: &[&str] = &["pw-k7q2", "9zv"];

const CREATE_NOTES: &str = "2024_01_01_000000_create_notes_table";
const CREATE_LABELS: &str = "2024_03_02_000000_create_labels_table";
const FILL_COLORS: &str = "2024_03_03_000000_create_label_colors_table";

/// The first of the failing release's migrations: a table, filled. It succeeds.
const CREATE_LABELS_PHP: &str = r#"<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Schema;

class CreateLabelsTable extends Migration
{
    public function up()
    {
        Schema::create('labels', function (Blueprint $table) {
            $table->id();
            $table->string('name');
        });
        DB::table('labels')->insert([['name' => 'urgent'], ['name' => 'later']]);
    }
}
"#;

/// The second: a table, filled, then a failure. Outside a transaction, so that PostgreSQL too
/// keeps what it did before failing (as MySQL always does: its DDL commits).
const FILL_COLORS_PHP: &str = r#"<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Schema;

class CreateLabelColorsTable extends Migration
{
    public $withinTransaction = false;

    public function up()
    {
        Schema::create('label_colors', function (Blueprint $table) {
            $table->id();
            $table->string('color');
        });
        DB::table('label_colors')->insert([['color' => 'red'], ['color' => 'blue']]);
        DB::table('no_such_table')->insert(['color' => 'green']);
    }
}
"#;

/// The project (a copy of examples/laravel-app deploying to one local host) and its database.
struct App {
    project: TestProject,
    db: DatabaseServer,
}

impl App {
    fn new(engine: Engine) -> App {
        let db = DatabaseServer::start(engine, DB_PASSWORD);
        let project = TestProject::empty()
            .fleet(1)
            .top("import = [\"laravel\"]\nsecrets = [\"APP_KEY\", \"DB_PASSWORD\"]")
            .config("application", "\"laravel-example\"")
            .config("strategy", "\"upload\"")
            .config("upload_from", "\".\"")
            .config(
                "upload_exclude",
                r#"[".git", "vendor", "hosts", "Deployfile.toml", ".env"]"#,
            )
            .config("dotenv_render", "true");
        project.copy_laravel_example();
        App { project, db }
    }

    /// dep with the database's `.env` entries (TCP) and the secrets in its environment.
    #[track_caller]
    fn dep(&self, args: &[&str], now: &str) -> Output {
        self.dep_with(args, now, self.db.dotenv())
    }

    /// dep with the `.env` entries that reach the database through its unix socket.
    #[track_caller]
    fn dep_via_socket(&self, args: &[&str], now: &str) -> Output {
        self.dep_with(args, now, self.db.socket_dotenv())
    }

    /// dep with `dotenv` (as `DEP_ENV_*`) and the secrets in its environment. Every output is
    /// checked for the secrets.
    #[track_caller]
    fn dep_with(&self, args: &[&str], now: &str, dotenv: Vec<(&str, String)>) -> Output {
        let dotenv: Vec<(String, String)> = dotenv
            .into_iter()
            .map(|(name, value)| (format!("DEP_ENV_{name}"), value))
            .collect();
        let mut env: Vec<(&str, &str)> = dotenv
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        env.extend([
            ("DEP_NOW", now),
            ("APP_KEY", APP_KEY),
            ("DB_PASSWORD", DB_PASSWORD),
        ]);
        let output = self.project.run_env(args, &env);
        let all = format!("{}\n{}", output.stdout, output.stderr);
        for piece in PASSWORD_PIECES.iter().chain(&[&APP_KEY[7..20]]) {
            assert!(
                !all.contains(piece),
                "`dep {}` printed a secret ({piece:?})\n{}",
                args.join(" "),
                output.transcript()
            );
        }
        output
    }

    fn migration(&self, name: &str) -> String {
        format!("database/migrations/{name}.php")
    }

    fn backup(&self, release: &str) -> PathBuf {
        self.project
            .deploy_path("h1")
            .join("shared/backups")
            .join(format!("{release}.sql.gz"))
    }

    /// What the database's own client sees: the tables, `migrations`, the notes.
    fn state(&self) -> State {
        State {
            tables: self.db.tables(),
            migrations: self
                .db
                .rows("SELECT migration, batch FROM migrations ORDER BY id"),
            notes: self.db.rows("SELECT body FROM notes ORDER BY id"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct State {
    tables: Vec<String>,
    migrations: Vec<String>,
    notes: Vec<String>,
}

/// The backup's SQL.
fn unzip(backup: &Path) -> String {
    let child = Command::new("gzip")
        .arg("-dc")
        .arg(backup)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run gzip");
    let finished = process::wait_within(child, "gzip -dc", Duration::from_secs(20));
    assert!(
        finished.status.success(),
        "{}: {}",
        backup.display(),
        finished.stderr
    );
    finished.stdout
}

fn backups_and_restores(engine: Engine) {
    let app = App::new(engine);
    let db = &app.db;

    // A first deploy migrates; the (empty) database was backed up before.
    app.dep(&["deploy", "test"], T1).success();
    assert_eq!(app.project.current("h1").as_deref(), Some(T1));
    assert!(
        app.backup(T1).is_file(),
        "no backup before the first migration"
    );
    app.dep(&["run", "h1", "--", "php artisan note:add keep-me"], T1)
        .success();
    let before = app.state();
    assert_eq!(
        before,
        State {
            tables: vec!["migrations".into(), "notes".into()],
            migrations: vec![format!("{CREATE_NOTES}\t1")],
            notes: vec!["keep-me".into()],
        }
    );

    // Migrations that fail half way: the backup taken just before is restored, verified.
    app.project
        .write(&app.migration(CREATE_LABELS), CREATE_LABELS_PHP);
    app.project
        .write(&app.migration(FILL_COLORS), FILL_COLORS_PHP);
    let failed = app.dep(&["-vv", "deploy", "test"], T2);
    failed
        .expect_status(1)
        .stderr_has("host `h1`, task `artisan:migrate`: command exited with status 1")
        .stdout_has("deploy failed after ")
        .stdout_has(&format!("release {T2} is not live"))
        .stdout_has(&format!("Migrated:  {CREATE_LABELS}"))
        .stdout_has(&format!(
            "artisan:migrate: the migrations failed (exit status 1): restoring {}",
            app.backup(T2).display()
        ))
        .stdout_has(&format!(
            "artisan:migrate: restored {} and verified: the database is as it was before the migrations",
            app.backup(T2).display()
        ));
    assert_eq!(app.state(), before, "{}", failed.transcript());
    assert_eq!(app.project.current("h1").as_deref(), Some(T1));
    assert_eq!(app.project.last_status("h1", T2).as_deref(), Some("failed"));

    // A release that migrates, the database reached through its unix socket now (DB_SOCKET
    // for MySQL, DB_HOST a directory for PostgreSQL): the backup is of the database before it.
    fs::remove_file(app.project.join(&app.migration(FILL_COLORS))).unwrap();
    app.dep_via_socket(&["deploy", "test"], T3).success();
    assert_eq!(app.project.current("h1").as_deref(), Some(T3));
    assert_eq!(
        db.tables(),
        ["labels", "migrations", "notes"].map(String::from)
    );
    assert_eq!(
        db.rows("SELECT name FROM labels ORDER BY id"),
        ["urgent", "later"]
    );
    let dump = unzip(&app.backup(T3));
    assert!(dump.contains("keep-me"), "{dump}");
    assert!(!dump.contains("labels"), "{dump}");

    // And `dep db:restore` from it puts the database back as it was: later rows and the
    // migrated table go.
    app.dep(
        &["run", "h1", "--", "php artisan note:add after-backup"],
        T3,
    )
    .success();
    let restored = app.dep(
        &["db:restore", "test", "-o", &format!("backup_release={T3}")],
        T3,
    );
    restored.success();
    assert_eq!(app.state(), before, "{}", restored.transcript());
}

#[test]
fn mysql_backups_restore_a_failed_migration_and_db_restore_works() {
    let _watchdog = Watchdog::arm("laravel on mariadb", LIMIT);
    backups_and_restores(Engine::MariaDb);
}

#[test]
fn pgsql_backups_restore_a_failed_migration_and_db_restore_works() {
    let _watchdog = Watchdog::arm("laravel on postgresql", LIMIT);
    backups_and_restores(Engine::Postgres);
}
