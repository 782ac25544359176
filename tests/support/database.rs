//! Database servers for the tests of the laravel recipe's backups: a MariaDB and a PostgreSQL 15
//! server, each started by the test in a temporary directory of its own (never the system
//! services), listening on 127.0.0.1 on a free port (and on a unix socket in that directory),
//! holding one database owned by one application user with a password. Stopped on drop.
//!
//! ```text
//! let db = DatabaseServer::start(Engine::MariaDb, "a password");
//! db.dotenv()                         // DB_CONNECTION, DB_HOST, DB_PORT, DB_DATABASE, DB_USERNAME
//! db.socket_dotenv()                  // the same through the unix socket (DB_SOCKET; DB_HOST=dir)
//! db.query("SELECT body FROM notes")  // with the database's own client, as the application user
//! ```
//!
//! Started as root (as in CI containers), the servers and their setup tools run as `nobody`:
//! neither mariadbd nor postgres runs as root. The directory (data/, the socket, the logs) is
//! removed on drop, after the server is dead. Setup failures panic with the server's log.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::net::free_port;
use super::process;
use super::web::Server;

/// The application's database and user on every server.
pub const DATABASE: &str = "shop";
pub const USER: &str = "deployer";

/// The superuser's password (PostgreSQL; MariaDB's root has none, on loopback).
const SUPERUSER_PASSWORD: &str = "superuser-secret";

/// InnoDB sized and synced for a test (a 26 MB data directory made in a second, instead of
/// 114 MB and its fsyncs, which take long on a busy disk): a test database need not survive a
/// power cut. Given to the bootstrap and to the server alike.
const MARIADB_SMALL: &[&str] = &[
    "--innodb-log-file-size=8M",
    "--innodb-buffer-pool-size=16M",
    "--innodb-flush-method=nosync",
    "--innodb-doublewrite=0",
];

/// How long a client may take to connect (a server that accepts and never answers fails).
const CONNECT_TIMEOUT_SECS: &str = "5";

/// PostgreSQL 15's server binaries (Debian keeps them off PATH).
const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

/// How long a server may take to answer after it started, and a setup command to finish.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// How often a server is started again on a fresh port when its port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    MariaDb,
    Postgres,
}

/// A running database server with the application's database and user.
pub struct DatabaseServer {
    // Declared first so that the server dies before `dir` is removed.
    _server: Server,
    engine: Engine,
    port: u16,
    password: String,
    dir: TempDir,
}

impl DatabaseServer {
    /// Starts a server of `engine` and creates the database and its user, whose password is
    /// `password`; returns once the user can connect.
    pub fn start(engine: Engine, password: &str) -> DatabaseServer {
        require(engine);
        let dir = tempfile::Builder::new()
            .prefix("dep-db-")
            .tempdir()
            .expect("cannot create the database server's temporary directory");
        if let Some((uid, gid)) = unprivileged() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("cannot hand the database directory to nobody");
        }
        let root = dir.path();
        match engine {
            Engine::MariaDb => init_mariadb(root),
            Engine::Postgres => init_postgres(root),
        }
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port(Ipv4Addr::LOCALHOST);
            let server = match engine {
                Engine::MariaDb => start_mariadb(root, port),
                Engine::Postgres => start_postgres(root, port),
            };
            if let Some(server) = server {
                let db = DatabaseServer {
                    _server: server,
                    engine,
                    port,
                    password: password.to_string(),
                    dir,
                };
                db.create_database();
                return db;
            }
            assert!(
                attempt < PORT_ATTEMPTS,
                "{engine:?} did not start\n{}",
                read_logs(root)
            );
        }
        unreachable!()
    }

    /// Laravel's `DB_CONNECTION` for this server.
    pub fn connection(&self) -> &'static str {
        match self.engine {
            Engine::MariaDb => "mysql",
            Engine::Postgres => "pgsql",
        }
    }

    /// The `.env` entries that point Laravel at the application's database (all but the
    /// password), over TCP.
    pub fn dotenv(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DB_CONNECTION", self.connection().to_string()),
            ("DB_HOST", "127.0.0.1".to_string()),
            ("DB_PORT", self.port.to_string()),
            ("DB_DATABASE", DATABASE.to_string()),
            ("DB_USERNAME", USER.to_string()),
        ]
    }

    /// The same, through the server's unix socket, as Laravel names one: `DB_SOCKET` for
    /// MySQL (which then ignores `DB_HOST` and `DB_PORT`: here a port nothing listens on), the
    /// socket's directory as `DB_HOST` for PostgreSQL.
    pub fn socket_dotenv(&self) -> Vec<(&'static str, String)> {
        let dir = self.dir.path().display();
        let mut entries = self.dotenv();
        match self.engine {
            Engine::MariaDb => {
                entries.retain(|(name, _)| *name != "DB_PORT");
                entries.push(("DB_PORT", "1".to_string()));
                entries.push(("DB_SOCKET", format!("{dir}/mysqld.sock")));
            }
            Engine::Postgres => {
                entries.retain(|(name, _)| *name != "DB_HOST");
                entries.push(("DB_HOST", dir.to_string()));
            }
        }
        entries
    }

    /// Runs `sql` in the application's database as its user, with the database's own client
    /// (`mysql`, `psql`) over TCP; it must succeed. Rows one a line, columns tab-separated.
    #[track_caller]
    pub fn query(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let mut command = match self.engine {
            Engine::MariaDb => {
                let mut c = Command::new("mysql");
                c.args(["--no-defaults", "-h", "127.0.0.1", "-P", &port, "-u", USER])
                    .arg(format!("--connect-timeout={CONNECT_TIMEOUT_SECS}"))
                    .args(["-N", "-B", "-e", sql, DATABASE])
                    .env("MYSQL_PWD", &self.password);
                c
            }
            Engine::Postgres => {
                let mut c = Command::new("psql");
                c.args(["-X", "-q", "-h", "127.0.0.1", "-p", &port, "-U", USER, "-d"])
                    .args([
                        DATABASE,
                        "-At",
                        "-F",
                        "\t",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-c",
                        sql,
                    ])
                    .env("PGPASSWORD", &self.password)
                    .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS);
                c
            }
        };
        run(&mut command, &format!("{:?} query {sql:?}", self.engine))
    }

    /// The query's rows, one string each.
    #[track_caller]
    pub fn rows(&self, sql: &str) -> Vec<String> {
        self.query(sql).lines().map(str::to_string).collect()
    }

    /// The names of the application database's tables, sorted.
    #[track_caller]
    pub fn tables(&self) -> Vec<String> {
        self.rows(match self.engine {
            Engine::MariaDb => {
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() \
                 ORDER BY table_name"
            }
            Engine::Postgres => {
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            }
        })
    }

    /// The application's database and user, made with the superuser.
    fn create_database(&self) {
        let password = sql_string(&self.password);
        let statements = match self.engine {
            Engine::MariaDb => vec![
                format!("CREATE DATABASE {DATABASE}"),
                format!("CREATE USER '{USER}'@'%' IDENTIFIED BY {password}"),
                format!("GRANT ALL ON {DATABASE}.* TO '{USER}'@'%'"),
            ],
            Engine::Postgres => vec![
                format!("CREATE ROLE {USER} LOGIN PASSWORD {password}"),
                format!("CREATE DATABASE {DATABASE} OWNER {USER}"),
            ],
        };
        for statement in statements {
            let mut command = self.superuser_client(&statement);
            run(&mut command, &format!("{:?}: {statement}", self.engine));
        }
    }

    /// The client, as the superuser, running `sql` (no database, or PostgreSQL's `postgres`).
    fn superuser_client(&self, sql: &str) -> Command {
        superuser_client(self.engine, self.port, sql)
    }
}

fn superuser_client(engine: Engine, port: u16, sql: &str) -> Command {
    let port = port.to_string();
    match engine {
        Engine::MariaDb => {
            let mut c = Command::new("mysql");
            c.args([
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                &port,
                "-u",
                "root",
            ])
            .arg(format!("--connect-timeout={CONNECT_TIMEOUT_SECS}"))
            .args(["-e", sql]);
            c
        }
        Engine::Postgres => {
            let mut c = Command::new("psql");
            c.args(["-X", "-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql])
                .env("PGPASSWORD", SUPERUSER_PASSWORD)
                .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS);
            c
        }
    }
}

/// `text` as an SQL string literal (quotes doubled, backslashes too for MariaDB's sake: doubled
/// backslashes are two in PostgreSQL's standard strings, hence an E'' there).
fn sql_string(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('\'', "''");
    if text.contains('\\') {
        format!("E'{escaped}'")
    } else {
        format!("'{escaped}'")
    }
}

/// The user the servers run as when the tests run as root (neither server runs as root).
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam returns a pointer into static storage (or
    // null), read at once, and the tests call nothing else that uses it concurrently.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let entry = libc::getpwnam(c"nobody".as_ptr());
        assert!(!entry.is_null(), "no user `nobody` to run the database as");
        Some(((*entry).pw_uid, (*entry).pw_gid))
    }
}

/// `command` as the unprivileged user, if any.
fn as_unprivileged(command: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = unprivileged() {
        command.uid(uid).gid(gid).env("HOME", "/nonexistent");
    }
    command
}

/// Runs a setup or client command with a time limit; it must succeed. Its stdout. In a process
/// group of its own, killed whole when it overruns: mariadb-install-db is a script whose
/// bootstrap server would go on writing into the directory being removed.
#[track_caller]
fn run(command: &mut Command, label: &str) -> String {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {label}: {e}"));
    let pgid = child.id();
    let finished = panic::catch_unwind(AssertUnwindSafe(|| {
        process::wait_within(child, label, COMMAND_LIMIT)
    }))
    .unwrap_or_else(|overran| {
        // The group outlives its leader while any member lives, so its id is still ours.
        process::signal_group(pgid, libc::SIGKILL);
        panic::resume_unwind(overran)
    });
    assert!(
        finished.status.success(),
        "{label}: {}\n{}{}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
    finished.stdout
}

/// Whether the client command succeeds now (the server answers).
fn answers(mut command: Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn require(engine: Engine) {
    let (tools, what): (&[&str], _) = match engine {
        Engine::MariaDb => (
            &["mariadbd", "mariadb-install-db", "mysql", "mysqldump"],
            "mariadb-server and mariadb-client",
        ),
        Engine::Postgres => (&["psql", "pg_dump"], "postgresql-15"),
    };
    for tool in tools {
        let found = std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .chain([PathBuf::from("/usr/sbin")])
                    .any(|dir| dir.join(tool).exists())
            })
            .unwrap_or(false);
        assert!(
            found,
            "`{tool}` is not installed ({what}): run scripts/setup-test-deps"
        );
    }
    if engine == Engine::Postgres {
        assert!(
            Path::new(POSTGRES_BIN).join("initdb").exists(),
            "{POSTGRES_BIN}/initdb is missing (postgresql-15): run scripts/setup-test-deps"
        );
    }
}

/// A fresh data directory (`data/`), root with no password on loopback, no test database.
fn init_mariadb(root: &Path) {
    let data = root.join("data");
    run(
        as_unprivileged(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args([
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ])
                .args(MARIADB_SMALL)
                .current_dir(root),
        ),
        "mariadb-install-db",
    );
}

fn start_mariadb(root: &Path, port: u16) -> Option<Server> {
    let log = root.join("mariadb.log");
    let _ = fs::remove_file(&log);
    let d = root.display();
    let mut server = Server::spawn(
        as_unprivileged(
            Command::new("/usr/sbin/mariadbd")
                .arg("--no-defaults")
                .arg(format!("--datadir={d}/data"))
                .arg(format!("--socket={d}/mysqld.sock"))
                .arg(format!("--pid-file={d}/mysqld.pid"))
                .arg(format!("--log-error={}", log.display()))
                .arg(format!("--port={port}"))
                .args([
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    "--skip-log-bin",
                    "--innodb-flush-log-at-trx-commit=0",
                ])
                .args(MARIADB_SMALL)
                .current_dir(root),
        ),
        "mariadbd",
    );
    wait_ready(&mut server, root, &log, || {
        answers(superuser_client(Engine::MariaDb, port, "SELECT 1"))
    })
    .then_some(server)
}

/// A fresh cluster (`data/`): superuser `postgres` with a password, every login by password.
fn init_postgres(root: &Path) {
    let pwfile = root.join("superuser.pw");
    fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n")).expect("cannot write superuser.pw");
    if let Some((uid, gid)) = unprivileged() {
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).expect("cannot chown superuser.pw");
    }
    run(
        as_unprivileged(
            Command::new(Path::new(POSTGRES_BIN).join("initdb"))
                .arg("-D")
                .arg(root.join("data"))
                .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync"])
                .arg(format!("--pwfile={}", pwfile.display()))
                .current_dir(root),
        ),
        "initdb",
    );
}

fn start_postgres(root: &Path, port: u16) -> Option<Server> {
    let log = root.join("postgres.log");
    let _ = fs::remove_file(&log);
    // Through a shell that sends the server's stderr to the log: a port already taken is
    // reported there, before any logging of its own would start.
    let mut server = Server::spawn(
        as_unprivileged(
            Command::new("sh")
                .args(["-c", "log=$1; shift; exec \"$@\" 2>>\"$log\"", "sh"])
                .arg(&log)
                .arg(Path::new(POSTGRES_BIN).join("postgres"))
                .arg("-D")
                .arg(root.join("data"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(root)
                // A test database need not survive a power cut.
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"])
                .current_dir(root),
        ),
        "postgres",
    );
    wait_ready(&mut server, root, &log, || {
        answers(superuser_client(Engine::Postgres, port, "SELECT 1"))
    })
    .then_some(server)
}

/// Waits until `ready()`; false when the server exited because its port was taken (start it
/// again on another), a panic with the logs on any other failure.
fn wait_ready(server: &mut Server, root: &Path, log: &Path, ready: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ready() {
        if server.exited() {
            let text = fs::read_to_string(log).unwrap_or_default();
            assert!(
                text.contains("Address already in use") || text.contains("already in use"),
                "the database server exited at start\n{}",
                read_logs(root)
            );
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "the database server did not answer within {READY_TIMEOUT:?}\n{}",
            read_logs(root)
        );
        thread::sleep(Duration::from_millis(50));
    }
    true
}

fn read_logs(root: &Path) -> String {
    let mut text = String::new();
    for name in ["mariadb.log", "postgres.log"] {
        if let Ok(content) = fs::read_to_string(root.join(name)) {
            text.push_str(&format!("--- {name} ---\n{content}"));
        }
    }
    text
}
