//! A fleet of real OpenSSH `sshd` processes on loopback for integration tests: keys, known_hosts,
//! an ssh_config, an `ssh-agent`, and fault injection (kill, stop, changed host key).
//!
//! ```text
//! let fleet = Fleet::start(3);                 // host0..host2 on 127.0.0.2..4, each its own port
//! fleet.ssh().args(["host1", "echo hi"]);      // the system client, through the fleet's ssh_config
//! fleet.host(2).kill();                        // the host drops every connection and refuses more
//! ```
//!
//! Layout of the fleet's temporary directory (removed on drop, after every sshd is dead):
//!
//! ```text
//! authorized_keys        every client key the fleet accepts (shared by all hosts)
//! known_hosts            `[127.0.0.x]:port ssh-ed25519 ...`, one line a host
//! ssh_config             `Host host0` .. `Host hostN-1` blocks, for `ssh -F` and for dep
//! client/id_ed25519      the default client identity, unencrypted
//! host0/                 one directory a host:
//!   sshd_config, ssh_host_ed25519_key(.pub), sshd.pid, sshd.log
//!   home/                $HOME of sessions on this host (the working directory stays the
//!                        user's real home: sshd always chdirs to the passwd entry)
//!   bin/                 first on $PATH of sessions: drop stub commands (php, systemctl) here
//!   deploy/              suggested deploy_path; not created
//! ```
//!
//! Sessions also see `FLEET_HOST` (`host1`) and `FLEET_HOST_INDEX` (`1`).
//!
//! Every sshd runs as the current user in its own process group. Its per-connection children
//! call setsid(2) and so leave that group; faults therefore walk the process tree in /proc
//! (freezing it with SIGSTOP first so nothing forks away) instead of trusting the group alone.
//! Setup failures panic: this is test support, and a clear panic is the most useful report.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::net::free_port;
use super::process::{signal, signal_group};

/// Where the tests expect the OpenSSH server (Debian's openssh-server package).
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long a starting sshd (or ssh-agent) may take before the harness gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a host's initial start is retried on a fresh port when its port was taken.
const PORT_ATTEMPTS: usize = 5;

/// The kind of an SSH key the harness can generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    /// RSA, 2048 bits (signed with rsa-sha2-256/512 by current clients).
    Rsa,
    /// ECDSA on nistp256.
    Ecdsa,
}

impl KeyKind {
    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            KeyKind::Ed25519 => &["-t", "ed25519"],
            KeyKind::Rsa => &["-t", "rsa", "-b", "2048"],
            KeyKind::Ecdsa => &["-t", "ecdsa", "-b", "256"],
        }
    }
}

/// A key pair on disk, in OpenSSH format, made by `ssh-keygen`.
#[derive(Clone, Debug)]
pub struct Key {
    /// The private key file (mode 0600).
    pub private: PathBuf,
    /// The public key file: `private` with `.pub` appended.
    pub public: PathBuf,
    /// The public key line: `ssh-ed25519 AAAA... comment`.
    pub public_line: String,
    /// The passphrase the private key is encrypted with, if any.
    pub passphrase: Option<String>,
}

impl Key {
    /// Generates a key at `private` (replacing any key there). An encrypted key uses 4 bcrypt
    /// KDF rounds instead of the default 16, so that decrypting it stays fast in debug builds.
    pub fn generate(private: &Path, kind: KeyKind, passphrase: Option<&str>, comment: &str) -> Key {
        let public = with_suffix(private, ".pub");
        for path in [private, public.as_path()] {
            if path.exists() {
                fs::remove_file(path)
                    .unwrap_or_else(|e| panic!("cannot remove {}: {e}", path.display()));
            }
        }
        let mut keygen = Command::new("ssh-keygen");
        keygen
            .arg("-q")
            .args(kind.keygen_args())
            .arg("-N")
            .arg(passphrase.unwrap_or(""))
            .arg("-C")
            .arg(comment)
            .arg("-f")
            .arg(private);
        if passphrase.is_some() {
            keygen.args(["-a", "4"]);
        }
        let output = run(&mut keygen);
        assert!(
            output.status.success(),
            "ssh-keygen failed for {}: {}",
            private.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let public_line = fs::read_to_string(&public)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", public.display()))
            .trim()
            .to_string();
        Key {
            private: private.to_path_buf(),
            public,
            public_line,
            passphrase: passphrase.map(str::to_string),
        }
    }

    /// The public key without its comment: `ssh-ed25519 AAAA...`.
    pub fn blob(&self) -> String {
        self.public_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A set of sshd "hosts" on loopback sharing one client identity, known_hosts and ssh_config.
/// Dropping it kills every sshd and every session, then removes the directory.
pub struct Fleet {
    // Declared first so that the hosts die before `dir` is removed.
    hosts: Vec<Host>,
    user: String,
    client_key: Key,
    authorized_keys: PathBuf,
    known_hosts: PathBuf,
    ssh_config: PathBuf,
    counter: AtomicUsize,
    dir: TempDir,
}

impl Fleet {
    /// Starts `n` hosts, named `host0`..`host{n-1}`, on 127.0.0.2, 127.0.0.3, … (or on
    /// 127.0.0.1 with distinct ports where other loopback addresses are not usable), and
    /// returns once every one of them answers with an SSH banner.
    pub fn start(n: usize) -> Fleet {
        assert!(
            (1..=250).contains(&n),
            "a fleet has 1 to 250 hosts, not {n}"
        );
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} not found: install openssh-server (apt-get install -y openssh-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("dep-fleet-")
            .tempdir()
            .expect("cannot create the fleet's temporary directory");
        let root = dir.path().to_path_buf();
        assert!(
            !root
                .to_string_lossy()
                .contains(|c: char| c.is_whitespace() || c == '"'),
            "the fleet directory {} must not contain spaces or quotes",
            root.display()
        );
        // SAFETY: geteuid has no preconditions and cannot fail.
        let is_root = unsafe { libc::geteuid() } == 0;
        if is_root {
            ensure_privsep_dir();
        }
        let settings = Settings {
            is_root,
            per_source_penalties: sshd_version() >= (9, 8),
            authorized_keys: root.join("authorized_keys"),
        };

        fs::create_dir(root.join("client")).expect("cannot create the client directory");
        let client_key = Key::generate(
            &root.join("client/id_ed25519"),
            KeyKind::Ed25519,
            None,
            "dep-test-client",
        );
        fs::write(
            &settings.authorized_keys,
            format!("{}\n", client_key.public_line),
        )
        .expect("cannot write authorized_keys");

        let mut hosts = Vec::with_capacity(n);
        for (index, ip) in loopback_addresses(n).into_iter().enumerate() {
            hosts.push(Host::create(&root, index, ip, &settings));
        }
        // Start them all, then wait for them all: sshd starts in parallel.
        for host in &hosts {
            host.spawn();
        }
        for host in &mut hosts {
            host.await_initial_start(&settings);
        }

        let fleet = Fleet {
            hosts,
            user: current_user(),
            client_key,
            authorized_keys: settings.authorized_keys.clone(),
            known_hosts: root.join("known_hosts"),
            ssh_config: root.join("ssh_config"),
            counter: AtomicUsize::new(0),
            dir,
        };
        fleet.trust_current_host_keys();
        fleet.write_ssh_config(&fleet.ssh_config, &fleet.client_key);
        fleet
    }

    /// The fleet's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host `host{index}`.
    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index]
    }

    /// The user every host logs in as: the user running the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The default client identity (ed25519, unencrypted), authorized on every host.
    pub fn client_key(&self) -> &Key {
        &self.client_key
    }

    /// The known_hosts file: one `[ip]:port ssh-ed25519 ...` line a host.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The Deployfile table of host `index`, named `name`, of stage `stage`: its address and
    /// port, the fleet's user, client key and known_hosts, and its deploy path.
    pub fn host_table(&self, index: usize, name: &str, stage: &str) -> String {
        let host = self.host(index);
        format!(
            "\n[hosts.{name}]\nhostname = {:?}\nport = {}\nuser = {:?}\nstage = {stage:?}\n\
             identity_file = {:?}\nknown_hosts_file = {:?}\nconfig = {{ deploy_path = {:?} }}\n",
            host.ip().to_string(),
            host.port(),
            self.user(),
            self.client_key().private.display().to_string(),
            self.known_hosts().display().to_string(),
            host.deploy_path().display().to_string(),
        )
    }

    /// The ssh_config file with a `Host hostN` block for every host, using the default identity.
    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// Generates another client key in `client/NAME` and authorizes it on every host.
    pub fn new_client_key(&self, name: &str, kind: KeyKind, passphrase: Option<&str>) -> Key {
        let path = self.dir().join("client").join(name);
        assert!(!path.exists(), "client key {name} already exists");
        let key = Key::generate(&path, kind, passphrase, name);
        self.authorize(&key);
        key
    }

    /// Lets `key` log in on every host.
    pub fn authorize(&self, key: &Key) {
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .expect("cannot open authorized_keys");
        writeln!(file, "{}", key.public_line).expect("cannot append to authorized_keys");
    }

    /// Rewrites known_hosts with every host's current key (after `regenerate_host_key`, to
    /// trust the new key).
    pub fn trust_current_host_keys(&self) {
        let lines: String = self
            .hosts
            .iter()
            .map(|host| format!("{}\n", host.known_hosts_line()))
            .collect();
        fs::write(&self.known_hosts, lines).expect("cannot write known_hosts");
    }

    /// Writes another ssh_config, like `ssh_config()` but with `identity` as the only
    /// IdentityFile, and returns its path.
    pub fn ssh_config_with_identity(&self, identity: &Key) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.dir().join(format!("ssh_config-{n}"));
        self.write_ssh_config(&path, identity);
        path
    }

    /// `ssh -F <ssh_config>` with stdin closed; add options, a host alias and a command.
    pub fn ssh(&self) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.arg("-F").arg(&self.ssh_config).stdin(Stdio::null());
        ssh
    }

    /// Runs `command` on host `index` with the system ssh client and returns its output.
    pub fn ssh_output(&self, index: usize, command: &str) -> Output {
        run(self.ssh().arg(self.host(index).name()).arg(command))
    }

    /// Starts an ssh-agent with its socket in the fleet's directory.
    pub fn agent(&self) -> Agent {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Agent::start(&self.dir().join(format!("agent-{n}.sock")))
    }

    /// One `Host` block for each host. Written as `Key value` with single spaces, one alias a
    /// block and no `Host *`, so that simple parsers (russh-config) read it too.
    fn write_ssh_config(&self, path: &Path, identity: &Key) {
        let mut text = String::from("# Written by tests/support/sshd.rs for one test fleet.\n");
        for host in &self.hosts {
            text.push_str(&format!(
                "\nHost {name}\n  HostName {ip}\n  Port {port}\n  User {user}\n  \
                 IdentityFile {identity}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n  \
                 GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  \
                 UpdateHostKeys no\n  BatchMode yes\n  ControlMaster no\n  ControlPath none\n  \
                 LogLevel ERROR\n",
                name = host.name,
                ip = host.ip,
                port = host.port,
                user = self.user,
                identity = identity.private.display(),
                known = self.known_hosts.display(),
            ));
        }
        fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// What every host's sshd_config depends on besides the host itself.
struct Settings {
    is_root: bool,
    /// sshd 9.8 and later penalise addresses whose connections fail; faults would trip it.
    per_source_penalties: bool,
    authorized_keys: PathBuf,
}

/// One sshd: an address, a host key, its own directories, and the process (if running).
/// Fault methods take `&self` so that another thread can inject a fault mid-test.
pub struct Host {
    index: usize,
    name: String,
    ip: Ipv4Addr,
    port: u16,
    dir: PathBuf,
    home: PathBuf,
    bin: PathBuf,
    deploy_path: PathBuf,
    config: PathBuf,
    log: PathBuf,
    host_key: Mutex<Key>,
    process: Mutex<Option<Child>>,
}

impl Host {
    fn create(root: &Path, index: usize, ip: Ipv4Addr, settings: &Settings) -> Host {
        let name = format!("host{index}");
        let dir = root.join(&name);
        let home = dir.join("home");
        let bin = dir.join("bin");
        for d in [&dir, &home, &bin] {
            fs::create_dir(d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
        }
        let host_key = Key::generate(
            &dir.join("ssh_host_ed25519_key"),
            KeyKind::Ed25519,
            None,
            &name,
        );
        let host = Host {
            index,
            port: free_port(ip),
            ip,
            deploy_path: dir.join("deploy"),
            config: dir.join("sshd_config"),
            log: dir.join("sshd.log"),
            host_key: Mutex::new(host_key),
            process: Mutex::new(None),
            name,
            dir,
            home,
            bin,
        };
        host.write_config(settings);
        host
    }

    /// The alias in the fleet's ssh_config: `host0`, `host1`, …
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, self.port))
    }

    /// This host's own directory in the fleet's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `$HOME` of sessions on this host.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// A directory first on `$PATH` of sessions on this host, for stub commands.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// A deploy path private to this host (`<dir>/deploy`, not created).
    pub fn deploy_path(&self) -> &Path {
        &self.deploy_path
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many sessions (a shell or command each: one sshd child, one login shell) clients
    /// have started on this host so far, from sshd's own log.
    pub fn sessions_started(&self) -> usize {
        self.log().matches("Starting session:").count()
    }

    /// The host key sshd currently serves.
    pub fn host_key(&self) -> Key {
        lock(&self.host_key).clone()
    }

    /// This host's known_hosts line for its current key: `[127.0.0.2]:40001 ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!(
            "[{}]:{} {}",
            self.ip,
            self.port,
            lock(&self.host_key).blob()
        )
    }

    /// The pid of the sshd listener, if running.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.process).as_ref().map(Child::id)
    }

    /// The listener and all its descendants (per-connection sshd, sessions, their commands).
    pub fn pids(&self) -> Vec<u32> {
        match self.pid() {
            Some(pid) => std::iter::once(pid).chain(descendants(pid)).collect(),
            None => Vec::new(),
        }
    }

    /// SIGKILLs the listener and every session: open connections drop, new ones are refused.
    /// A no-op if the host is not running.
    pub fn kill(&self) {
        if let Some(mut child) = lock(&self.process).take() {
            kill_tree(&mut child);
        }
    }

    /// SIGKILLs every session but keeps the listener: open connections drop, new ones work.
    pub fn kill_sessions(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGSTOP);
            for child in freeze_descendants(pid) {
                signal(child, libc::SIGKILL);
            }
            signal(pid, libc::SIGCONT);
        }
    }

    /// SIGSTOPs the listener and every session: the host accepts TCP connections (the kernel
    /// does) but never answers, and open sessions hang, until `cont`.
    pub fn stop(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGSTOP);
            freeze_descendants(pid);
            signal_group(pid, libc::SIGSTOP);
        }
    }

    /// SIGCONTs what `stop` froze.
    pub fn cont(&self) {
        if let Some(pid) = self.pid() {
            for child in descendants(pid) {
                signal(child, libc::SIGCONT);
            }
            signal(pid, libc::SIGCONT);
            signal_group(pid, libc::SIGCONT);
        }
    }

    /// Kills the host (if running) and starts it again on the same address, port and key.
    pub fn restart(&self) {
        self.kill();
        self.spawn();
        if let Err(e) = self.await_ready() {
            self.kill();
            panic!(
                "{}: sshd did not restart on {}: {e}\n{}",
                self.name,
                self.addr(),
                self.log_tail()
            );
        }
    }

    /// Restarts the host with `MaxStartups spec` (e.g. `"2:100:2"`: while two connections are
    /// being set up, every other new one is dropped), as a busy bastion would.
    pub fn limit_startups(&self, spec: &str) {
        let text = fs::read_to_string(&self.config)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.config.display()));
        let text = text.replace("MaxStartups 200\n", &format!("MaxStartups {spec}\n"));
        fs::write(&self.config, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.config.display()));
        self.restart();
    }

    /// Kills the host, gives it a new ed25519 host key and starts it again on the same address
    /// and port. known_hosts keeps the old key (see `Fleet::trust_current_host_keys`).
    pub fn regenerate_host_key(&self) -> Key {
        self.kill();
        let path = lock(&self.host_key).private.clone();
        let key = Key::generate(&path, KeyKind::Ed25519, None, &self.name);
        *lock(&self.host_key) = key.clone();
        self.restart();
        key
    }

    fn write_config(&self, settings: &Settings) {
        let key = lock(&self.host_key).private.clone();
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.bin.display()
        );
        let mut text = format!(
            "# Written by tests/support/sshd.rs for {name}.\n\
             ListenAddress {ip}:{port}\n\
             AddressFamily inet\n\
             HostKey {key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {authorized}\n\
             StrictModes no\n\
             UsePAM no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             MaxStartups 200\n\
             MaxSessions 200\n\
             AllowTcpForwarding yes\n\
             Subsystem sftp internal-sftp\n\
             LogLevel VERBOSE\n\
             SetEnv HOME={home} PATH={path} FLEET_HOST={name} FLEET_HOST_INDEX={index}\n",
            name = self.name,
            ip = self.ip,
            port = self.port,
            key = key.display(),
            pid = self.dir.join("sshd.pid").display(),
            authorized = settings.authorized_keys.display(),
            home = self.home.display(),
            index = self.index,
        );
        if settings.is_root {
            text.push_str("PermitRootLogin yes\n");
        }
        if settings.per_source_penalties {
            text.push_str("PerSourcePenalties no\n");
        }
        fs::write(&self.config, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.config.display()));
    }

    /// Starts sshd in the foreground, in its own process group, logging to `sshd.log`.
    fn spawn(&self) {
        let mut process = lock(&self.process);
        assert!(process.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot clone the log handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SSHD}: {e}"));
        *process = Some(child);
    }

    /// Waits for the first start; if sshd lost its port to another process in the meantime,
    /// moves to a fresh port and tries again.
    fn await_initial_start(&mut self, settings: &Settings) {
        for attempt in 1.. {
            let Err(e) = self.await_ready() else { return };
            self.kill();
            if attempt >= PORT_ATTEMPTS || !self.log().contains("Address already in use") {
                panic!(
                    "{}: sshd did not start on {}: {e}\n{}",
                    self.name,
                    self.addr(),
                    self.log_tail()
                );
            }
            self.port = free_port(self.ip);
            self.write_config(settings);
            self.spawn();
        }
    }

    /// Polls until this host's own sshd answers on its address with an SSH banner.
    fn await_ready(&self) -> Result<(), String> {
        let mut process = lock(&self.process);
        let child = process.as_mut().ok_or("not running")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("sshd exited ({status})"));
            }
            if let Ok(mut stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1))
            {
                let mut banner = [0u8; 4];
                stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
                if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    // While the probe connection is open, our listener has a child for it; if
                    // not, someone else answered on this port.
                    if !Path::new("/proc/self").exists() || !descendants(child.id()).is_empty() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no SSH banner within {READY_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("--- {} ---\n{tail}", self.log.display())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An `ssh-agent` with its own socket; killed (and its socket removed) on drop.
pub struct Agent {
    sock: PathBuf,
    child: Child,
}

impl Agent {
    /// Starts `ssh-agent -D -a SOCK` and waits for the socket to appear.
    pub fn start(sock: &Path) -> Agent {
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ssh-agent: {e}"));
        let mut agent = Agent {
            sock: sock.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !sock.exists() {
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!(
                    "ssh-agent exited ({status}) before creating {}",
                    sock.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ssh-agent did not create {} within {READY_TIMEOUT:?}",
                sock.display()
            );
            thread::sleep(Duration::from_millis(5));
        }
        agent
    }

    /// The value for `SSH_AUTH_SOCK`.
    pub fn sock(&self) -> &Path {
        &self.sock
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ssh-add`s the key, answering its passphrase (if any) through an askpass script.
    pub fn add(&self, key: &Key) {
        let mut ssh_add = Command::new("ssh-add");
        ssh_add
            .arg(&key.private)
            .env("SSH_AUTH_SOCK", &self.sock)
            .env_remove("SSH_ASKPASS")
            .env_remove("SSH_ASKPASS_REQUIRE");
        if let Some(passphrase) = &key.passphrase {
            let askpass = with_suffix(&self.sock, ".askpass");
            fs::write(
                &askpass,
                "#!/bin/sh\nprintf '%s\\n' \"$FLEET_ASKPASS_PASSPHRASE\"\n",
            )
            .expect("cannot write the askpass script");
            fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700))
                .expect("cannot make the askpass script executable");
            ssh_add
                .env("SSH_ASKPASS", &askpass)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("FLEET_ASKPASS_PASSPHRASE", passphrase);
        }
        let output = run(&mut ssh_add);
        assert!(
            output.status.success(),
            "ssh-add {} failed: {}",
            key.private.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The public keys the agent holds (`ssh-add -L`), empty when none.
    pub fn list(&self) -> String {
        let output = run(Command::new("ssh-add")
            .arg("-L")
            .env("SSH_AUTH_SOCK", &self.sock));
        if output.status.success() {
            String::from_utf8_lossy(&output.stdout).into_owned()
        } else {
            String::new()
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.sock);
    }
}

/// Runs a command with stdin closed and collects its output.
fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not stop Drop from killing sshd.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 127.0.0.2, 127.0.0.3, … when those can be bound (Linux routes all of 127/8 to `lo`);
/// otherwise 127.0.0.1 for every host (macOS has only 127.0.0.1 without aliases).
fn loopback_addresses(n: usize) -> Vec<Ipv4Addr> {
    if TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).is_ok() {
        (0..n)
            .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8))
            .collect()
    } else {
        vec![Ipv4Addr::LOCALHOST; n]
    }
}

/// The login name of the current user.
fn current_user() -> String {
    let output = run(Command::new("id").arg("-un"));
    assert!(output.status.success(), "`id -un` failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// sshd's (major, minor) version, or (0, 0) when it cannot be told.
fn sshd_version() -> (u32, u32) {
    let output = run(Command::new(SSHD).arg("-V"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    let Some(start) = text.find("OpenSSH_") else {
        return (0, 0);
    };
    let digits: String = text[start + "OpenSSH_".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = digits.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// sshd started as root insists on its privilege separation directory, which Debian's service
/// unit creates at boot; without systemd (containers, CI) it is missing.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists() && fs::create_dir_all(dir).is_ok() {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    }
}

/// Every (pid, parent pid) in /proc; empty where there is no /proc.
fn process_table() -> Vec<(u32, u32)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let rest = &stat[stat.rfind(')')? + 1..];
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Every descendant of `root`, parents before children.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid) in process_table() {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            queue.push(child);
        }
    }
    found
}

/// SIGSTOPs the descendants of `root` (which the caller has stopped) until no new one appears,
/// so that none can fork or be orphaned out of reach; returns them.
fn freeze_descendants(root: u32) -> Vec<u32> {
    let mut seen = HashSet::new();
    let mut frozen = Vec::new();
    loop {
        let new: Vec<u32> = descendants(root)
            .into_iter()
            .filter(|pid| seen.insert(*pid))
            .collect();
        if new.is_empty() {
            return frozen;
        }
        for &pid in &new {
            signal(pid, libc::SIGSTOP);
        }
        frozen.extend(new);
    }
}

/// SIGKILLs a listener, its process group and every descendant, then reaps it.
fn kill_tree(child: &mut Child) {
    let pid = child.id();
    signal(pid, libc::SIGSTOP);
    let tree = freeze_descendants(pid);
    signal(pid, libc::SIGKILL);
    for descendant in tree {
        signal(descendant, libc::SIGKILL);
    }
    // The listener is unreaped until `wait`, so its group id cannot have been reused.
    signal_group(pid, libc::SIGKILL);
    let _ = child.wait();
}
