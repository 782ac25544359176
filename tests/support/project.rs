//! A throwaway dep project for integration tests, in the style of casey/just's `tests/test.rs`:
//! a Deployfile, files and a fleet of local hosts in a temporary directory, the real `dep` binary
//! run in it, and helpers that read each host's layout the way a user would check it.
//!
//! ```text
//! let project = TestProject::new().fleet(2).deployfile("[tasks.say]\nrun = \"echo hi\"\n");
//! project
//!     .dep(&["deploy", "test"])                // a `Run`: args in...
//!     .now(T1)                                 // ...env in (DEP_NOW pins the release name)...
//!     .status(1)                               // ...and out: the exit status (0 by default),
//!     .stdout("deploying release 20250101100000 to 2 hosts: h1, h2\n...")
//!     .stderr("error: ...\n")                  // the WHOLE stdout and stderr, normalised
//!     .run();                                  // (see `transcript`); returns the raw `Output`
//! project.deploy_at(T2);                       // `dep deploy test`, must exit 0
//! assert_eq!(project.current("h2").as_deref(), Some(T2));
//! ```
//!
//! Layout of the temporary directory (removed on drop):
//!
//! ```text
//! Deployfile.toml     written before every run: [config] (upload strategy), the test's text, hosts
//! app/index.html      the code the upload strategy ships (`upload_from = "app"`)
//! hosts/h1 .. hN      each local host's deploy_path (created by dep, not by the harness)
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use super::{process, transcript};

/// How long one run of dep may take before the harness kills it and fails the test.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A release name (UTC `YYYYMMDDHHMMSS`) to pin the clock with, through `DEP_NOW`.
pub const T1: &str = "20250101100000";
pub const T2: &str = "20250101110000";
pub const T3: &str = "20250101120000";
pub const T4: &str = "20250101130000";

/// What one run of dep did: its exit code and everything it printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The whole transcript, for assertion messages.
    pub fn transcript(&self) -> String {
        format!(
            "exit status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// Assert the run exited with `code`; returns self for further checks.
    #[track_caller]
    pub fn expect_status(&self, code: i32) -> &Self {
        assert_eq!(
            self.status,
            code,
            "unexpected exit status\n{}",
            self.transcript()
        );
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        self.expect_status(0)
    }

    /// Assert stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.transcript()
        );
        self
    }

    /// Assert stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.transcript()
        );
        self
    }
}

/// A host of the generated fleet: local, deploying to `hosts/NAME` in the project.
#[derive(Debug, Clone)]
struct HostSpec {
    name: String,
    stage: String,
    roles: Vec<String>,
    /// More lines of its table, as TOML (`color = "blue"`).
    keys: Vec<String>,
    /// Extra `config` entries: name and raw TOML value.
    config: Vec<(String, String)>,
}

/// A project directory with a Deployfile, and the dep binary to run in it.
#[derive(Debug)]
pub struct TestProject {
    dir: TempDir,
    /// `[config]` entries: name and raw TOML value, in order; a later `config` call replaces.
    config: Vec<(String, String)>,
    /// Everything after `[config]`: tasks, stages, extra hosts.
    text: String,
    hosts: Vec<HostSpec>,
    /// Written verbatim instead of the generated file (for malformed input).
    raw: Option<String>,
    /// Write no Deployfile at all.
    none: bool,
    top: String,
}

impl Default for TestProject {
    fn default() -> Self {
        Self::new()
    }
}

impl TestProject {
    /// A temporary project with the upload strategy and a one-file app in `app/`.
    pub fn new() -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("dep-test-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let project = TestProject {
            dir,
            config: Vec::new(),
            text: String::new(),
            hosts: Vec::new(),
            raw: None,
            none: false,
            top: String::new(),
        };
        project
            .config("strategy", "\"upload\"")
            .config("upload_from", "\"app\"")
            .file("app/index.html", "hello\n")
    }

    /// A temporary project with nothing in it: no app, no `[config]`. Give it files (e.g. with
    /// `copy_tree`) and a `raw_deployfile`.
    pub fn empty() -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("dep-test-")
            .tempdir()
            .expect("cannot create a temporary directory");
        TestProject {
            dir,
            config: Vec::new(),
            text: String::new(),
            hosts: Vec::new(),
            raw: None,
            none: false,
            top: String::new(),
        }
    }

    /// The Laravel app of examples/laravel-app, copied into the project as its checkout, without
    /// what a developer's checkout of it may hold but the example does not ship (vendor/, .env,
    /// Laravel's caches, the storage link).
    pub fn copy_laravel_example(&self) {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/laravel-app");
        self.copy_tree(&example, "", &["vendor", ".env", "composer.phar"]);
        for cached in [
            "config.php",
            "routes-v7.php",
            "events.php",
            "packages.php",
            "services.php",
        ] {
            let _ = fs::remove_file(self.join("bootstrap/cache").join(cached));
        }
        let _ = fs::remove_file(self.join("public/storage"));
    }

    /// Copy the directory tree `from` into `rel` inside the project (`""`: the project itself),
    /// leaving out entries named in `skip` at any depth. Symlinks are copied as symlinks and
    /// file modes are kept (an executable stays executable).
    pub fn copy_tree(&self, from: &Path, rel: &str, skip: &[&str]) {
        copy_tree(from, &self.join(rel), skip);
    }

    /// The project directory (where the Deployfile lives and dep runs).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` inside the project directory.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// Set `[config] name = value`, `value` written as TOML (`"\"text\""`, `"2"`, `"[\"a\"]"`).
    pub fn config(mut self, name: &str, value: &str) -> TestProject {
        self.config.retain(|(n, _)| n != name);
        self.config.push((name.to_string(), value.to_string()));
        self
    }

    /// Append TOML after `[config]` (tasks, stages, hosts). Must not open `[config]` itself.
    pub fn deployfile(mut self, text: &str) -> TestProject {
        self.text.push_str(text);
        self.text.push('\n');
        self
    }

    /// Use exactly `text` as the Deployfile: no generated config or hosts.
    /// Top-level keys (`secrets`, `import`), written before `[config]`.
    pub fn top(mut self, text: &str) -> TestProject {
        self.top.push_str(text);
        self.top.push('\n');
        self
    }

    pub fn raw_deployfile(mut self, text: &str) -> TestProject {
        self.raw = Some(text.to_string());
        self
    }

    /// Write no Deployfile (and remove one written before).
    pub fn no_deployfile(mut self) -> TestProject {
        self.none = true;
        let _ = fs::remove_file(self.join("Deployfile.toml"));
        self
    }

    /// Write a file relative to the project directory, creating its parents.
    pub fn file(self, rel: &str, content: &str) -> TestProject {
        self.write(rel, content);
        self
    }

    /// `n` local hosts `h1..hn` in stage `test`, each deploying to `hosts/hN` in the project.
    pub fn fleet(mut self, n: usize) -> TestProject {
        for i in 1..=n {
            self = self.local_host(&format!("h{i}"), "test", &[]);
        }
        self
    }

    /// A local host `name` of stage `stage`, deploying to `hosts/NAME` in the project; `keys`
    /// are more lines of its table (`color = "blue"`, `hostname = "127.0.0.1:8080"`).
    pub fn local_host(mut self, name: &str, stage: &str, keys: &[&str]) -> TestProject {
        self.hosts.push(HostSpec {
            name: name.to_string(),
            stage: stage.to_string(),
            roles: Vec::new(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            config: Vec::new(),
        });
        self
    }

    /// Give a fleet host roles.
    pub fn roles(mut self, host: &str, roles: &[&str]) -> TestProject {
        let spec = self
            .hosts
            .iter_mut()
            .find(|h| h.name == host)
            .unwrap_or_else(|| panic!("no fleet host {host}"));
        spec.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Set a fleet host's own `config` entry (`value` as TOML).
    pub fn host_config(mut self, host: &str, name: &str, value: &str) -> TestProject {
        let spec = self
            .hosts
            .iter_mut()
            .find(|h| h.name == host)
            .unwrap_or_else(|| panic!("no fleet host {host}"));
        spec.config.push((name.to_string(), value.to_string()));
        self
    }

    /// Write (or overwrite) a file now, e.g. between two runs.
    pub fn write(&self, rel: &str, content: &str) {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("cannot create a directory");
        }
        fs::write(&path, content).expect("cannot write a file");
    }

    /// The content of a file in the project, or None if it does not exist.
    pub fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.join(rel)).ok()
    }

    /// The Deployfile text the next run sees.
    pub fn deployfile_text(&self) -> String {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut text = self.top.clone();
        text.push_str("[config]\n");
        for (name, value) in &self.config {
            text.push_str(&format!("{name} = {value}\n"));
        }
        text.push('\n');
        text.push_str(&self.text);
        for host in &self.hosts {
            let roles: Vec<String> = host.roles.iter().map(|r| format!("{r:?}")).collect();
            // `hosts/NAME`, unless the host's own config says otherwise.
            let mut config: Vec<String> = (!host.config.iter().any(|(n, _)| n == "deploy_path"))
                .then(|| {
                    format!(
                        "deploy_path = {:?}",
                        self.deploy_path(&host.name).display().to_string()
                    )
                })
                .into_iter()
                .collect();
            config.extend(host.config.iter().map(|(n, v)| format!("{n} = {v}")));
            text.push_str(&format!(
                "\n[hosts.{name}]\nlocal = true\nstage = {stage:?}\nroles = [{roles}]\n{keys}config = {{ {config} }}\n",
                name = host.name,
                stage = host.stage,
                roles = roles.join(", "),
                keys = host.keys.iter().map(|k| format!("{k}\n")).collect::<String>(),
                config = config.join(", "),
            ));
        }
        text
    }

    /// Describe a run of dep with `args`: state its environment and expected transcript, then
    /// `run` it (see `Run`).
    pub fn dep(&self, args: &[&str]) -> Run<'_> {
        Run {
            project: self,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            status: 0,
            stdout: None,
            stderr: None,
        }
    }

    /// Run dep with `args` in the project directory (no `DEP_*` from the outside world).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Run dep with `args` and extra environment variables (e.g. `("DEP_NOW", T1)`).
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_with_limit(self.command(args, env), &join_args(args))
    }

    /// Start dep in the background; `Running::wait` collects its output.
    pub fn start_env(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let child = self
            .command(args, env)
            .spawn()
            .expect("cannot run the dep binary");
        let pid = child.id();
        let label = join_args(args);
        Running {
            pid,
            output: thread::spawn(move || collect(child, &label)),
        }
    }

    /// The dep command for `args`, after writing the Deployfile (stdout and stderr piped, no
    /// stdin; a caller may set them otherwise, as `terminal` does).
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        if !self.none {
            // Written aside, then renamed: a dep already running beside this one (two deploys
            // racing) reads the whole file, never one being rewritten.
            static WRITES: AtomicUsize = AtomicUsize::new(0);
            let n = WRITES.fetch_add(1, Ordering::Relaxed);
            let aside = self.join(&format!(".Deployfile.toml.{n}"));
            fs::write(&aside, self.deployfile_text()).expect("cannot write Deployfile.toml");
            fs::rename(&aside, self.join("Deployfile.toml")).expect("cannot write Deployfile.toml");
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_dep"));
        command
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("DEP_") {
                command.env_remove(&key);
            }
        }
        for (key, value) in env {
            command.env(key, value);
        }
        command
    }

    /// Run `dep deploy test` with the clock at `now`; it must succeed. Returns the new release
    /// (where `h1`'s current points).
    #[track_caller]
    pub fn deploy_at(&self, now: &str) -> String {
        self.run_env(&["deploy", "test"], &[("DEP_NOW", now)])
            .success();
        self.current("h1").expect("h1 has no current release")
    }

    /// The deploy path of host `host`.
    pub fn deploy_path(&self, host: &str) -> PathBuf {
        self.path().join("hosts").join(host)
    }

    /// The release `current` points at on `host`, or None when there is no such link.
    pub fn current(&self, host: &str) -> Option<String> {
        self.link(host, "current")
    }

    /// The release `previous` points at on `host`.
    pub fn previous(&self, host: &str) -> Option<String> {
        self.link(host, "previous")
    }

    fn link(&self, host: &str, name: &str) -> Option<String> {
        let target = fs::read_link(self.deploy_path(host).join(name)).ok()?;
        let parent = target.parent().and_then(Path::file_name);
        assert_eq!(
            parent.and_then(|p| p.to_str()),
            Some("releases"),
            "{host}: `{name}` -> {} does not point into releases/",
            target.display()
        );
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// The release directories on `host`, oldest first (empty when there are none).
    pub fn releases(&self, host: &str) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.deploy_path(host).join("releases")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|e| {
                e.expect("cannot read releases/")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// Every line of `host`'s `.dep/releases.log`, parsed (a line that is not JSON fails the test).
    pub fn log(&self, host: &str) -> Vec<serde_json::Value> {
        let path = self.deploy_path(host).join(".dep/releases.log");
        let Ok(text) = fs::read_to_string(&path) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{host}: releases.log line {line:?}: {e}"))
            })
            .collect()
    }

    /// The status on the LAST log line of `release` on `host` (the log is append-only).
    pub fn last_status(&self, host: &str, release: &str) -> Option<String> {
        self.log(host)
            .iter()
            .rev()
            .find(|entry| entry["release"] == release)
            .map(|entry| {
                entry["status"]
                    .as_str()
                    .expect("status is a string")
                    .to_string()
            })
    }

    /// The last log line of `release` on `host`.
    pub fn last_entry(&self, host: &str, release: &str) -> Option<serde_json::Value> {
        self.log(host)
            .into_iter()
            .rev()
            .find(|entry| entry["release"] == release)
    }

    /// Whether `host` has a `.dep/deploy.lock`.
    pub fn locked(&self, host: &str) -> bool {
        self.deploy_path(host).join(".dep/deploy.lock").exists()
    }

    /// Names of the generated fleet's hosts.
    pub fn host_names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// Everything a user would compare before/after on every host: links, releases, log, lock.
    pub fn snapshot(&self) -> Vec<HostSnapshot> {
        self.hosts
            .iter()
            .map(|h| HostSnapshot {
                host: h.name.clone(),
                current: self.current(&h.name),
                previous: self.previous(&h.name),
                releases: self.releases(&h.name),
                log: fs::read_to_string(self.deploy_path(&h.name).join(".dep/releases.log"))
                    .unwrap_or_default(),
                lock: fs::read_to_string(self.deploy_path(&h.name).join(".dep/deploy.lock")).ok(),
            })
            .collect()
    }
}

/// A dep run in the background.
pub struct Running {
    /// The dep process, e.g. to send it SIGINT.
    pub pid: u32,
    output: thread::JoinHandle<Output>,
}

impl Running {
    /// Send `signal` to the dep process.
    pub fn signal(&self, signal: libc::c_int) {
        // `wait` has not returned, so the child is not reaped and the pid cannot be reused.
        process::signal(self.pid, signal);
    }

    pub fn wait(self) -> Output {
        self.output.join().expect("the dep run panicked")
    }

    /// Wait for a dep process the test killed with a signal (its output is not wanted).
    pub fn reap_killed(self) {
        // The collector fails on a process killed by a signal: that is the expected end here.
        let _ = self.output.join();
    }
}

fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries =
        fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
        let name = entry.file_name();
        if skip.iter().any(|s| name.to_str() == Some(*s)) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type().expect("cannot stat a directory entry");
        if kind.is_symlink() {
            let target = fs::read_link(&src).expect("cannot read a symlink");
            std::os::unix::fs::symlink(target, &dst)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dst.display()));
        } else if kind.is_dir() {
            copy_tree(&src, &dst, skip);
        } else {
            fs::copy(&src, &dst).unwrap_or_else(|e| {
                panic!("cannot copy {} to {}: {e}", src.display(), dst.display())
            });
        }
    }
}

fn join_args(args: &[&str]) -> String {
    args.join(" ")
}

/// One host's visible state, compared whole to prove "nothing changed".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSnapshot {
    pub host: String,
    pub current: Option<String>,
    pub previous: Option<String>,
    pub releases: Vec<String>,
    pub log: String,
    pub lock: Option<String>,
}

/// Run `command`, reading both pipes, and kill it (failing the test) after `RUN_LIMIT`.
fn run_with_limit(mut command: Command, label: &str) -> Output {
    let child = command.spawn().expect("cannot run the dep binary");
    collect(child, label)
}

/// Wait for `child`, reading both pipes, and kill it (failing the test) after `RUN_LIMIT`.
fn collect(child: Child, label: &str) -> Output {
    let label = format!("`dep {label}`");
    let finished = process::wait_within(child, &label, RUN_LIMIT);
    let status = finished.status.code().unwrap_or_else(|| {
        panic!(
            "{label} killed by a signal ({})\n{}\n{}",
            finished.status, finished.stdout, finished.stderr
        )
    });
    Output {
        status,
        stdout: finished.stdout,
        stderr: finished.stderr,
    }
}

/// One run of dep described before it runs, in the style of just's `Test`: arguments and
/// environment in; the exit status (0 unless stated) and, where output matters, the WHOLE
/// stdout and stderr out, compared after `transcript::normalize`.
///
/// ```text
/// project.dep(&["deploy", "test"]).now(T1)
///     .status(2)
///     .stdout("")
///     .stderr("error: ...\n")
///     .run();
/// ```
#[must_use = "a described run does nothing until `run`"]
pub struct Run<'a> {
    project: &'a TestProject,
    args: Vec<String>,
    env: Vec<(String, String)>,
    status: i32,
    stdout: Option<String>,
    stderr: Option<String>,
}

impl<'a> Run<'a> {
    /// Set an environment variable for the run (`DEP_*` from the outside world never leak in).
    pub fn env(mut self, key: &str, value: &str) -> Run<'a> {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Pin the clock, and so the release name, with `DEP_NOW`.
    pub fn now(self, release: &str) -> Run<'a> {
        self.env("DEP_NOW", release)
    }

    /// The expected exit status (0 when not stated).
    pub fn status(mut self, status: i32) -> Run<'a> {
        self.status = status;
        self
    }

    /// The whole expected stdout, normalised (see `transcript`).
    pub fn stdout(mut self, text: &str) -> Run<'a> {
        self.stdout = Some(text.to_string());
        self
    }

    /// The whole expected stderr, normalised (see `transcript`).
    pub fn stderr(mut self, text: &str) -> Run<'a> {
        self.stderr = Some(text.to_string());
        self
    }

    /// Run dep and check what was stated; returns the raw output for further checks.
    #[track_caller]
    pub fn run(self) -> Output {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let output = self.project.run_env(&args, &env);
        let dir = self.project.path();
        let normalize = |text: &str| transcript::normalize(text, dir);
        let stdout = normalize(&output.stdout);
        let stderr = normalize(&output.stderr);
        // The expectation is normalised too, so a test may spell a path out or write `[PROJECT]`.
        let same = |expected: &Option<String>, actual: &str| {
            expected.as_ref().is_none_or(|e| normalize(e) == actual)
        };
        if output.status != self.status
            || !same(&self.stdout, &stdout)
            || !same(&self.stderr, &stderr)
        {
            panic!(
                "`dep {}` did not print what was expected\n\
                 --- expected (status {}) ---\n--- stdout ---\n{}--- stderr ---\n{}\
                 --- actual, normalised (status {}) ---\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
                args.join(" "),
                self.status,
                self.stdout.as_deref().unwrap_or("(not stated)\n"),
                self.stderr.as_deref().unwrap_or("(not stated)\n"),
                output.status,
            );
        }
        output
    }
}
