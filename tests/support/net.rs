//! Loopback networking for the tests, written once: free and closed ports, a one-shot HTTP GET
//! client, and a webhook receiver that answers from a script and records what it got.
//!
//! Every test runs concurrently with the others in one process, so no test has a fixed port:
//! ports come from the kernel (`free_port`), and a port that must refuse connections is held
//! bound (but not listening) for as long as the test needs it (`ClosedPort`), so that no other
//! test's server can take it meanwhile.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A port that was free on `ip` a moment ago (the kernel picks it; callers retry on a race).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|e| panic!("cannot find a free port on {ip}: {e}"))
        .port()
}

/// `n` different free ports on `ip`: each is held until all are chosen, since a port given
/// back is free to be handed out again at once (two sites of one nginx on one port would
/// answer for each other).
pub fn free_ports(ip: Ipv4Addr, n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| {
            TcpListener::bind((ip, 0))
                .unwrap_or_else(|e| panic!("cannot find a free port on {ip}: {e}"))
        })
        .collect();
    held.iter()
        .map(|listener| {
            listener
                .local_addr()
                .expect("a bound socket's address")
                .port()
        })
        .collect()
}

/// A TCP port on `ip` that refuses every connection while this value lives: a socket bound to
/// it that never listens (a connection attempt gets a reset, `connection refused`).
pub struct ClosedPort {
    port: u16,
    _socket: OwnedFd,
}

impl ClosedPort {
    /// A closed port on 127.0.0.1.
    pub fn new() -> ClosedPort {
        ClosedPort::on(Ipv4Addr::LOCALHOST)
    }

    /// A closed port on `ip`.
    pub fn on(ip: Ipv4Addr) -> ClosedPort {
        // SAFETY: plain socket calls on a descriptor we own; `addr` and `len` outlive them.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "cannot create a socket");
            let socket = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(ip).to_be();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(fd, (&raw const addr).cast(), len);
            assert_eq!(rc, 0, "cannot bind a socket on {ip}");
            let rc = libc::getsockname(fd, (&raw mut addr).cast(), &mut len);
            assert_eq!(rc, 0, "cannot read a socket's address");
            ClosedPort {
                port: u16::from_be(addr.sin_port),
                _socket: socket,
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A status code and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// GET `path` from `addr` over HTTP/1.0 (one connection a request), `timeout` for the connect
/// and each read and write; Err says what went wrong (refused, timed out, not HTTP).
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("receive: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

/// One request a `HookServer` received.
#[derive(Debug, Clone)]
pub struct Hooked {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: String,
}

impl Hooked {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {:?}", self.body))
    }
}

/// What a `HookServer` does with a request: answer with a status, or hold the connection open
/// without answering.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    Status(u16),
    Silence,
}

/// A loopback HTTP/1.1 server recording every request and answering them in order from a script
/// (its last entry repeats). Its thread ends with the test process.
pub struct HookServer {
    pub port: u16,
    seen: Arc<Mutex<Vec<Hooked>>>,
}

impl HookServer {
    /// A server answering every request 200.
    pub fn start() -> HookServer {
        HookServer::scripted(&[Reply::Status(200)])
    }

    /// A server answering the n-th request with `script[n]` (the last entry repeats).
    pub fn scripted(script: &[Reply]) -> HookServer {
        assert!(!script.is_empty(), "a script needs one reply at least");
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot listen on 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = script.to_vec();
        let record = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let index = {
                    let mut seen = record.lock().unwrap();
                    match read_request(&stream) {
                        Some(request) => seen.push(request),
                        None => continue,
                    }
                    seen.len() - 1
                };
                respond(stream, script[index.min(script.len() - 1)]);
            }
        });
        HookServer { port, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, in the order received.
    pub fn seen(&self) -> Vec<Hooked> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests to `path`, in order.
    pub fn seen_at(&self, path: &str) -> Vec<Hooked> {
        self.seen().into_iter().filter(|h| h.path == path).collect()
    }
}

fn respond(mut stream: TcpStream, reply: Reply) {
    match reply {
        Reply::Status(code) => {
            let body = match code {
                200 => "ok",
                404 => "no_service",
                _ => "server trouble",
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        // Keep the socket open, unanswered, until the client gives up.
        Reply::Silence => {
            thread::spawn(move || {
                thread::sleep(Duration::from_secs(10));
                drop(stream);
            });
        }
    }
}

/// Read one HTTP/1 request (line, headers, a Content-Length body) from a test server's stream.
fn read_request(stream: &TcpStream) -> Option<Hooked> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut content_type = None;
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.trim().to_string()),
            "content-length" => length = value.trim().parse().ok()?,
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Hooked {
        method,
        path,
        content_type,
        body: String::from_utf8(body).ok()?,
    })
}
