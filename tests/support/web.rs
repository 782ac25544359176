//! Real web serving for integration tests: one nginx and one php-fpm, started by the test (never
//! the system services, no systemd), serving each test host's `current/public` on its own
//! 127.0.0.1 port; and a polling client that requests every host continuously while dep runs.
//!
//! ```text
//! let web = WebServer::start(&[("h1", &deploy_path_1), ("h2", &deploy_path_2)]);
//! let poller = Poller::start(&web, "/");       // one thread a host, until stopped
//! project.run(&["deploy", "test"]);
//! let samples = poller.stop();                 // every request: host, when, status, body
//! ```
//!
//! A path that is no file goes to `index.php` (a front controller: Laravel's routes).
//!
//! nginx resolves the `current` symlink on every request (`$realpath_root` as `SCRIPT_FILENAME`
//! and `DOCUMENT_ROOT`), as a zero-downtime setup must: the request after a switch runs the new
//! release, and php-fpm's opcache sees a new path instead of a stale one.
//!
//! Layout of the server's temporary directory (removed on drop, after both servers are dead):
//!
//! ```text
//! nginx.conf, nginx.pid, nginx-error.log, nginx-access.log, nginx-tmp/
//! php-fpm.conf, php-fpm.pid, php-fpm.log, php-errors.log, php-fpm.sock
//! ```
//!
//! Both servers run in their own process group, killed whole (master and workers) on drop, and
//! by `process::Watchdog` before it aborts a hung test. Setup failures panic with the servers' logs.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

use super::net::{free_port, free_ports, get, Response};
use super::process;
use super::project::TestProject;

/// Debian's nginx package.
pub const NGINX: &str = "/usr/sbin/nginx";

/// How long nginx or php-fpm may take to start answering.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often nginx is started again on fresh ports when one of its ports was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// The timeout of one request of the polling client (connect, and each read).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A poller stops by itself after this long, even if nobody stops it.
const POLL_LIMIT: Duration = Duration::from_secs(45);

/// A server process in its own process group; the group is killed on drop (also used by
/// `database`).
pub struct Server {
    child: Child,
    pgid: u32,
}

impl Server {
    pub fn spawn(command: &mut Command, what: &str) -> Server {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let pgid = child.id();
        process::register_group(pgid);
        Server { child, pgid }
    }

    /// Whether the process has exited (and so can never answer).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    /// SIGTERM to the master (it stops and reaps its workers), then SIGKILL to whatever is left
    /// of the group after a moment.
    fn drop(&mut self) {
        process::signal(self.pgid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        process::signal_group(self.pgid, libc::SIGKILL);
        let _ = self.child.wait();
        process::forget_group(self.pgid);
    }
}

/// Write version `version` of the two-page app into the project's `app/` (`broken`: its
/// health page answers 500).
pub fn write_app(project: &crate::support::project::TestProject, version: &str, broken: bool) {
    project.write("app/VERSION", &format!("{version}\n"));
    project.write("app/public/index.php", INDEX_PHP);
    project.write("app/public/health.php", HEALTH_PHP);
    let marker = project.join("app/BROKEN");
    if broken {
        project.write("app/BROKEN", "");
    } else if marker.exists() {
        fs::remove_file(marker).unwrap();
    }
}

/// An app page that answers with the release's `VERSION` file (`public/index.php`).
pub const INDEX_PHP: &str = r#"<?php
header('Content-Type: text/plain');
echo trim(file_get_contents(__DIR__ . '/../VERSION')), "\n";
"#;

/// An app's health page (`public/health.php`): 500 in a release holding `BROKEN`, else "ok".
pub const HEALTH_PHP: &str = r#"<?php
header('Content-Type: text/plain');
if (file_exists(__DIR__ . '/../BROKEN')) {
    http_response_code(500);
    echo "broken\n";
} else {
    echo "ok\n";
}
"#;

/// nginx and php-fpm serving every host of `project` (its deploy path's `current/public`), and
/// the project with each host's `web_port` set to the port of its site.
pub fn serve_hosts(project: TestProject) -> (TestProject, WebServer) {
    let paths: Vec<(String, PathBuf)> = project
        .host_names()
        .into_iter()
        .map(|h| {
            let path = project.deploy_path(&h);
            (h, path)
        })
        .collect();
    let sites: Vec<(&str, &Path)> = paths
        .iter()
        .map(|(h, p)| (h.as_str(), p.as_path()))
        .collect();
    let web = WebServer::start(&sites);
    let mut project = project;
    for site in web.sites() {
        project = project.host_config(&site.name, "web_port", &site.port.to_string());
    }
    (project, web)
}

/// One site: a test host's name, its port, and the deploy path whose `current/public` it serves.
#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub port: u16,
    pub deploy_path: PathBuf,
}

/// nginx and php-fpm serving each site's `current/public` on 127.0.0.1:port.
pub struct WebServer {
    // Declared first so that both servers die before `dir` is removed.
    _nginx: Server,
    _fpm: Server,
    sites: Vec<Site>,
    dir: TempDir,
}

impl WebServer {
    /// Starts php-fpm, then nginx with one server block a site (`(name, deploy_path)`), and
    /// returns once both answer.
    pub fn start(sites: &[(&str, &Path)]) -> WebServer {
        require_servers();
        let dir = tempfile::Builder::new()
            .prefix("dep-web-")
            .tempdir()
            .expect("cannot create the web server's temporary directory");
        let root = dir.path().to_path_buf();
        let fpm = start_fpm(&root);
        for attempt in 1..=PORT_ATTEMPTS {
            let ports = free_ports(Ipv4Addr::LOCALHOST, sites.len());
            let sites: Vec<Site> = sites
                .iter()
                .zip(ports)
                .map(|((name, path), port)| Site {
                    name: name.to_string(),
                    port,
                    deploy_path: path.to_path_buf(),
                })
                .collect();
            match start_nginx(&root, &sites) {
                Some(nginx) => {
                    return WebServer {
                        _nginx: nginx,
                        _fpm: fpm,
                        sites,
                        dir,
                    }
                }
                None if attempt < PORT_ATTEMPTS => continue,
                None => {}
            }
        }
        panic!(
            "nginx did not start after {PORT_ATTEMPTS} attempts\n{}",
            read_logs(&root)
        );
    }

    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    pub fn site(&self, name: &str) -> &Site {
        self.sites
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no site {name}"))
    }

    pub fn port(&self, name: &str) -> u16 {
        self.site(name).port
    }

    /// GET `path` on site `name`.
    pub fn get(&self, name: &str, path: &str) -> Result<Response, String> {
        get(site_addr(self.port(name)), path, REQUEST_TIMEOUT)
    }

    /// GET `path` on site `name`; it must answer 200. Returns the trimmed body.
    #[track_caller]
    pub fn body(&self, name: &str, path: &str) -> String {
        match self.get(name, path) {
            Ok(response) if response.status == 200 => response.body.trim().to_string(),
            other => panic!(
                "GET {path} on {name}: {other:?}\n{}",
                read_logs(self.dir.path())
            ),
        }
    }

    /// Both servers' logs, for assertion messages.
    pub fn logs(&self) -> String {
        read_logs(self.dir.path())
    }
}

/// One more nginx in front of the sites: a load balancer on its own 127.0.0.1 port proxying to
/// the `upstream app` whose servers `upstream.conf` lists (rewritten by a `traffic:switch` task,
/// then `reload_command`). Its directory holds nginx.conf, upstream.conf, pid and logs.
pub struct LoadBalancer {
    _nginx: Server,
    pub port: u16,
    dir: TempDir,
}

impl LoadBalancer {
    /// Starts proxying to `servers` (`host:port` each).
    pub fn start(servers: &[String]) -> LoadBalancer {
        require_servers();
        let dir = tempfile::Builder::new()
            .prefix("dep-lb-")
            .tempdir()
            .expect("cannot create the load balancer's temporary directory");
        let root = dir.path();
        fs::create_dir_all(root.join("nginx-tmp")).expect("cannot create nginx-tmp");
        let upstream: String = servers.iter().map(|s| format!("server {s};\n")).collect();
        fs::write(root.join("upstream.conf"), upstream).expect("cannot write upstream.conf");
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port(Ipv4Addr::LOCALHOST);
            let d = root.display();
            let user = if is_root() { "user root root;\n" } else { "" };
            let conf = format!(
                "{user}daemon off;\nmaster_process on;\nworker_processes 2;\npid {d}/nginx.pid;\n\
                 error_log {d}/nginx-error.log notice;\nevents {{ worker_connections 512; }}\n\
                 http {{\n  access_log {d}/nginx-access.log;\n\
                 \x20 client_body_temp_path {d}/nginx-tmp/body;\n\
                 \x20 fastcgi_temp_path {d}/nginx-tmp/fastcgi;\n\
                 \x20 proxy_temp_path {d}/nginx-tmp/proxy;\n\
                 \x20 uwsgi_temp_path {d}/nginx-tmp/uwsgi;\n\
                 \x20 scgi_temp_path {d}/nginx-tmp/scgi;\n\
                 \x20 upstream app {{ include {d}/upstream.conf; }}\n\
                 \x20 server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app; }} }}\n}}\n"
            );
            fs::write(root.join("nginx.conf"), conf).expect("cannot write nginx.conf");
            let mut nginx = Server::spawn(
                Command::new(NGINX)
                    .arg("-p")
                    .arg(root)
                    .arg("-e")
                    .arg(root.join("nginx-error.log"))
                    .arg("-c")
                    .arg(root.join("nginx.conf")),
                "nginx (load balancer)",
            );
            let addr = site_addr(port);
            let deadline = Instant::now() + READY_TIMEOUT;
            let mut up = true;
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if nginx.exited() || Instant::now() > deadline {
                    up = false;
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            if up {
                return LoadBalancer {
                    _nginx: nginx,
                    port,
                    dir,
                };
            }
            assert!(
                attempt < PORT_ATTEMPTS,
                "the load balancer did not start\n{}",
                read_logs(root)
            );
        }
        unreachable!()
    }

    /// The file listing the upstream servers.
    pub fn upstream_file(&self) -> PathBuf {
        self.dir.path().join("upstream.conf")
    }

    /// `nginx -t` on this load balancer's configuration, as a shell command.
    pub fn test_command(&self) -> String {
        self.nginx_command("-t -q")
    }

    /// Reload this load balancer (new workers with the new upstreams; in-flight requests finish).
    pub fn reload_command(&self) -> String {
        self.nginx_command("-s reload")
    }

    fn nginx_command(&self, what: &str) -> String {
        let d = self.dir.path().display();
        format!("{NGINX} -p '{d}' -e '{d}/nginx-error.log' -c '{d}/nginx.conf' {what}")
    }

    /// GET `path` through the load balancer; the trimmed body of a 200, else a panic.
    #[track_caller]
    pub fn body(&self, path: &str) -> String {
        match get(site_addr(self.port), path, REQUEST_TIMEOUT) {
            Ok(response) if response.status == 200 => response.body.trim().to_string(),
            other => panic!(
                "GET {path} through the load balancer: {other:?}\n{}",
                self.logs()
            ),
        }
    }

    pub fn logs(&self) -> String {
        read_logs(self.dir.path())
    }
}

fn require_servers() {
    assert!(
        Path::new(NGINX).exists(),
        "{NGINX} not found: run scripts/setup-test-deps (installs nginx, php-fpm, curl)"
    );
    fpm_binary();
}

/// Debian's php-fpm binary (`/usr/sbin/php-fpm8.2`, …).
fn fpm_binary() -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/sbin")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("php-fpm"))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("no /usr/sbin/php-fpm*: run scripts/setup-test-deps (installs nginx, php-fpm, curl)")
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn start_fpm(root: &Path) -> Server {
    let socket = root.join("php-fpm.sock");
    // Started as root, php-fpm insists on a pool user and on `-R`; the test hosts' files belong
    // to the user running the tests, so the workers run as that user too.
    let user = if is_root() {
        "user = root\ngroup = root\n"
    } else {
        ""
    };
    let conf = format!(
        "[global]\n\
         pid = {dir}/php-fpm.pid\n\
         error_log = {dir}/php-fpm.log\n\
         daemonize = no\n\
         \n\
         [web]\n\
         {user}\
         listen = {dir}/php-fpm.sock\n\
         listen.mode = 0660\n\
         pm = static\n\
         pm.max_children = 4\n\
         catch_workers_output = yes\n\
         php_admin_flag[log_errors] = on\n\
         php_admin_value[error_log] = {dir}/php-errors.log\n",
        dir = root.display(),
    );
    let path = root.join("php-fpm.conf");
    fs::write(&path, conf).expect("cannot write php-fpm.conf");
    let mut command = Command::new(fpm_binary());
    command.arg("-F").arg("-y").arg(&path);
    if is_root() {
        command.arg("-R");
    }
    let mut fpm = Server::spawn(&mut command, "php-fpm");
    let deadline = Instant::now() + READY_TIMEOUT;
    while UnixStream::connect(&socket).is_err() {
        assert!(
            !fpm.exited(),
            "php-fpm exited at start\n{}",
            read_logs(root)
        );
        assert!(
            Instant::now() < deadline,
            "php-fpm did not listen on {} within {READY_TIMEOUT:?}\n{}",
            socket.display(),
            read_logs(root)
        );
        thread::sleep(Duration::from_millis(20));
    }
    fpm
}

/// Starts nginx for `sites`; None when it could not listen (a port taken meanwhile).
fn start_nginx(root: &Path, sites: &[Site]) -> Option<Server> {
    let tmp = root.join("nginx-tmp");
    fs::create_dir_all(&tmp).expect("cannot create nginx-tmp");
    let dir = root.display();
    // Started as root, nginx's workers would become `nobody`, who cannot enter the tests'
    // private temporary directories.
    let user = if is_root() { "user root root;\n" } else { "" };
    let mut conf = format!(
        "{user}daemon off;\n\
         master_process on;\n\
         worker_processes 2;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/nginx-error.log notice;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
         \x20 access_log {dir}/nginx-access.log;\n\
         \x20 client_body_temp_path {dir}/nginx-tmp/body;\n\
         \x20 fastcgi_temp_path {dir}/nginx-tmp/fastcgi;\n\
         \x20 proxy_temp_path {dir}/nginx-tmp/proxy;\n\
         \x20 uwsgi_temp_path {dir}/nginx-tmp/uwsgi;\n\
         \x20 scgi_temp_path {dir}/nginx-tmp/scgi;\n\
         \x20 default_type text/plain;\n"
    );
    for site in sites {
        conf.push_str(&format!(
            "  server {{\n\
             \x20   listen 127.0.0.1:{port};\n\
             \x20   server_name {name};\n\
             \x20   root {deploy}/current/public;\n\
             \x20   index index.php;\n\
             \x20   location / {{ try_files $uri $uri/ /index.php?$query_string; }}\n\
             \x20   location ~ \\.php$ {{\n\
             \x20     try_files $uri =404;\n\
             \x20     include /etc/nginx/fastcgi_params;\n\
             \x20     fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n\
             \x20     fastcgi_param DOCUMENT_ROOT $realpath_root;\n\
             \x20     fastcgi_pass unix:{dir}/php-fpm.sock;\n\
             \x20   }}\n\
             \x20 }}\n",
            port = site.port,
            name = site.name,
            deploy = site.deploy_path.display(),
        ));
    }
    conf.push_str("}\n");
    let path = root.join("nginx.conf");
    fs::write(&path, conf).expect("cannot write nginx.conf");
    let mut nginx = Server::spawn(
        Command::new(NGINX)
            .arg("-p")
            .arg(root)
            .arg("-e")
            .arg(root.join("nginx-error.log"))
            .arg("-c")
            .arg(&path),
        "nginx",
    );
    let deadline = Instant::now() + READY_TIMEOUT;
    for site in sites {
        let addr = SocketAddr::from(([127, 0, 0, 1], site.port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if nginx.exited() {
                let log = fs::read_to_string(root.join("nginx-error.log")).unwrap_or_default();
                assert!(
                    log.contains("Address already in use"),
                    "nginx exited at start\n{}",
                    read_logs(root)
                );
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {addr} within {READY_TIMEOUT:?}\n{}",
                read_logs(root)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    Some(nginx)
}

/// Where nginx serves the site on `port`.
fn site_addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn read_logs(root: &Path) -> String {
    let mut text = String::new();
    for name in [
        "nginx-error.log",
        "php-fpm.log",
        "php-errors.log",
        "nginx.conf",
    ] {
        let content = fs::read_to_string(root.join(name)).unwrap_or_default();
        text.push_str(&format!("--- {name} ---\n{content}"));
    }
    text
}

/// One request of the polling client.
#[derive(Debug, Clone)]
pub struct Sample {
    pub host: String,
    pub started: Instant,
    pub finished: Instant,
    /// When the request started, on the wall clock (to compare with `date +%s%N` on a host).
    pub wall: SystemTime,
    pub outcome: Result<Response, String>,
}

impl Sample {
    /// The trimmed body of a 200 answer, else None.
    pub fn ok_body(&self) -> Option<&str> {
        match &self.outcome {
            Ok(r) if r.status == 200 => Some(r.body.trim()),
            _ => None,
        }
    }
}

/// A client requesting `path` on every site continuously, one thread a site, each request after
/// the previous one answered (so each site's samples are in order), until stopped or
/// `POLL_LIMIT`.
pub struct Poller {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Poller {
    pub fn start(web: &WebServer, path: &str) -> Poller {
        let targets: Vec<(String, u16)> = web
            .sites()
            .iter()
            .map(|s| (s.name.clone(), s.port))
            .collect();
        Poller::start_on(&targets, path)
    }

    /// Poll `path` on each `(name, port)` of 127.0.0.1 (a load balancer, say).
    pub fn start_on(targets: &[(String, u16)], path: &str) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let threads = targets
            .iter()
            .map(|(name, port)| {
                let (name, port, path) = (name.clone(), *port, path.to_string());
                let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
                thread::spawn(move || {
                    let begun = Instant::now();
                    while !stop.load(Ordering::Relaxed) && begun.elapsed() < POLL_LIMIT {
                        let (started, wall) = (Instant::now(), SystemTime::now());
                        let outcome = get(site_addr(port), &path, REQUEST_TIMEOUT);
                        samples.lock().unwrap().push(Sample {
                            host: name.clone(),
                            started,
                            finished: Instant::now(),
                            wall,
                            outcome,
                        });
                        thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Poller {
            stop,
            samples,
            threads,
        }
    }

    /// The samples so far.
    pub fn snapshot(&self) -> Samples {
        Samples(self.samples.lock().unwrap().clone())
    }

    /// Waits until each of `hosts` has answered `n` requests started after `since` with 200 and
    /// body `body`: the poller runs and sees what the test expects. Fails after 10 s.
    #[track_caller]
    pub fn wait_for(&self, hosts: &[&str], body: &str, n: usize, since: Instant) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let samples = self.snapshot();
            let short: Vec<&str> = hosts
                .iter()
                .copied()
                .filter(|host| {
                    samples
                        .of(host)
                        .iter()
                        .filter(|s| s.started >= since && s.ok_body() == Some(body))
                        .count()
                        < n
                })
                .collect();
            if short.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hosts {short:?} did not answer {body:?} {n} times within 10 s; runs: {:?}",
                short
                    .iter()
                    .map(|h| (h.to_string(), samples.runs(h)))
                    .collect::<Vec<_>>()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the client and returns every request it made.
    pub fn stop(mut self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        for thread in std::mem::take(&mut self.threads) {
            thread.join().expect("a polling thread panicked");
        }
        let samples = self.samples.lock().unwrap().clone();
        Samples(samples)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every request a poller made.
#[derive(Debug, Clone)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// `host`'s samples, in the order they were made.
    pub fn of(&self, host: &str) -> Vec<&Sample> {
        self.0.iter().filter(|s| s.host == host).collect()
    }

    /// Samples whose request started in `[from, to]`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<&Sample> {
        self.0
            .iter()
            .filter(|s| s.started >= from && s.started <= to)
            .collect()
    }

    /// The requests that did not answer 200 with one of `known` bodies.
    pub fn bad(&self, known: &[&str]) -> Vec<&Sample> {
        self.0
            .iter()
            .filter(|s| !s.ok_body().is_some_and(|b| known.contains(&b)))
            .collect()
    }

    /// `host`'s answers run-length encoded: `[("v1", 40), ("v2", 31)]`.
    pub fn runs(&self, host: &str) -> Vec<(String, usize)> {
        let mut runs: Vec<(String, usize)> = Vec::new();
        for sample in self.of(host) {
            let seen = match &sample.outcome {
                Ok(r) if r.status == 200 => r.body.trim().to_string(),
                Ok(r) => format!("HTTP {}: {}", r.status, r.body.trim()),
                Err(e) => format!("error: {e}"),
            };
            match runs.last_mut() {
                Some((last, n)) if *last == seen => *n += 1,
                _ => runs.push((seen, 1)),
            }
        }
        runs
    }
}
