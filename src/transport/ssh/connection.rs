//! Making the one SSH connection of a host: TCP (or a direct-tcpip channel through the jump
//! hosts of `ProxyJump`), the SSH handshake with dep's algorithm preferences, the host key check
//! and authentication, every step bounded by the connect timeout.
//!
//! Settings follow the measurements in TRANSPORT.md: TCP_NODELAY on, TCP_QUICKACK re-armed after
//! every read (Linux), curve25519 key exchange first with the `ext-info-c` and strict-kex markers
//! listed, keepalives (no inactivity timeout: it would end a quiet command with no status).

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{Algorithm, HashAlg};
use russh::{kex, Preferred};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::auth::{self, AuthError};
use super::config::Settings;
use super::handler::{describe_error, describe_io, Handler, HostKeyError, HostKeyPolicy, State};
use crate::transport::human_duration;
use crate::transport::ssh::known_hosts::KnownHosts;
use crate::transport::CHUNK_QUEUE;

/// An authenticated connection, with the connections to its jump hosts kept open under it.
pub struct Connection {
    pub handle: Handle<Handler>,
    pub state: Arc<State>,
    /// Outermost first; dropped after `handle` (fields drop in order).
    _jumps: Vec<Handle<Handler>>,
}

impl Connection {
    /// Why the connection ended, if it did.
    pub fn lost_reason(&self) -> Option<String> {
        if let Some(reason) = self.state.lost() {
            return Some(reason);
        }
        self.handle
            .is_closed()
            .then(|| "the connection closed".to_string())
    }
}

/// Why a connection could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// A jump host on the way failed.
    #[error("via {hop}: {source}")]
    Via {
        hop: String,
        source: Box<ConnectError>,
    },
    #[error("cannot connect to {address}: {reason}")]
    Unreachable {
        address: String,
        reason: Unreachable,
    },
    #[error(transparent)]
    HostKey(Arc<HostKeyError>),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Why the SSH server of an address could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unreachable {
    #[error("timed out after {}", human_duration(*.0))]
    TimedOut(Duration),
    /// A TCP error, in words (see [`describe_io`]).
    #[error("{0}")]
    Tcp(String),
    #[error("the jump host could not open it: {0}")]
    Jump(String),
    #[error("SSH handshake failed: {0}")]
    Handshake(String),
}

/// Connect to `settings` through its jump hosts. Errors read "cannot connect to ADDR: …",
/// "authentication failed …", "host key changed …", naming the hop when it is a jump host.
pub async fn connect(settings: &Settings) -> Result<Connection, ConnectError> {
    let mut jumps: Vec<Handle<Handler>> = Vec::new();
    for hop in &settings.jumps {
        let (handle, _) =
            connect_hop(hop, jumps.last())
                .await
                .map_err(|source| ConnectError::Via {
                    hop: hop.name.clone(),
                    source: Box::new(source),
                })?;
        jumps.push(handle);
    }
    let (handle, state) = connect_hop(settings, jumps.last()).await?;
    Ok(Connection {
        handle,
        state,
        _jumps: jumps,
    })
}

async fn connect_hop(
    settings: &Settings,
    through: Option<&Handle<Handler>>,
) -> Result<(Handle<Handler>, Arc<State>), ConnectError> {
    let address = settings.address();
    let timeout = settings.connect_timeout;
    let cannot = |reason: Unreachable| ConnectError::Unreachable {
        address: address.clone(),
        reason,
    };

    let files = settings.known_hosts_files();
    let (hostname, port) = (settings.hostname.clone(), settings.port);
    let key_types = tokio::task::spawn_blocking(move || {
        KnownHosts::load(&files)
            .map(|k| k.key_types(&hostname, port))
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    let config = Arc::new(client_config(settings, &key_types));
    let state = Arc::new(State::default());
    let handler = Handler::new(HostKeyPolicy::for_settings(settings), Arc::clone(&state));

    let handshake = async {
        match through {
            None => {
                let stream = tcp_connect(&settings.hostname, settings.port)
                    .await
                    .map_err(|e| cannot(Unreachable::Tcp(describe_io(&e))))?;
                client::connect_stream(config, QuickAck(stream), handler).await
            }
            Some(jump) => {
                let channel = jump
                    .channel_open_direct_tcpip(
                        settings.hostname.clone(),
                        u32::from(settings.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|e| cannot(Unreachable::Jump(e.to_string())))?;
                client::connect_stream(config, channel.into_stream(), handler).await
            }
        }
        .map_err(|e| match state.refusal() {
            Some(refusal) => ConnectError::HostKey(refusal),
            None => cannot(Unreachable::Handshake(describe_error(&e))),
        })
    };
    tracing::debug!(host = %settings.name, %address, "connecting");
    let mut handle = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| cannot(Unreachable::TimedOut(timeout)))??;
    tracing::debug!(host = %settings.name, user = %settings.user, "authenticating");
    auth::authenticate(&mut handle, settings).await?;
    tracing::debug!(host = %settings.name, "connected");
    Ok((handle, state))
}

async fn tcp_connect(hostname: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut last = None;
    for address in tokio::net::lookup_host((hostname, port)).await? {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address found")))
}

/// The client configuration of one hop.
fn client_config(settings: &Settings, known_key_types: &[String]) -> client::Config {
    client::Config {
        nodelay: true,
        keepalive_interval: Some(settings.keepalive_interval),
        keepalive_max: settings.keepalive_max,
        inactivity_timeout: None,
        // Messages a channel holds for its reader before the connection waits (with russh's
        // 100, a host flooding output kept ~3 MB in dep), each a packet of at most 16 KiB (the
        // hosts' sshd sends what we ask for; uploads go in the host's packet size).
        channel_buffer_size: CHUNK_QUEUE,
        maximum_packet_size: 16 * 1024,
        preferred: Preferred {
            kex: Cow::Borrowed(KEX_ORDER),
            key: Cow::Owned(host_key_order(known_key_types)),
            ..Preferred::default()
        },
        ..client::Config::default()
    }
}

/// curve25519 first (cheap for the client), then the post-quantum hybrid and finite-field
/// fallbacks, and the two extension markers: without them strict kex (Terrapin) and
/// server-sig-algs would be lost silently.
const KEX_ORDER: &[kex::Name] = &[
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::MLKEM768X25519_SHA256,
    kex::ECDH_SHA2_NISTP256,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G14_SHA256,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

/// Host key algorithms, those known_hosts records for the host first (as OpenSSH orders them),
/// so that a host with an RSA key on file is not asked for its ed25519 key.
fn host_key_order(known_key_types: &[String]) -> Vec<Algorithm> {
    let mut all: Vec<Algorithm> = vec![
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: russh::keys::EcdsaCurve::NistP256,
        },
        Algorithm::Ecdsa {
            curve: russh::keys::EcdsaCurve::NistP384,
        },
        Algorithm::Ecdsa {
            curve: russh::keys::EcdsaCurve::NistP521,
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
    ];
    let key_type = |algorithm: &Algorithm| match algorithm {
        Algorithm::Rsa { .. } => "ssh-rsa".to_string(),
        other => other.as_str().to_string(),
    };
    let mut ordered = Vec::with_capacity(all.len());
    for known in known_key_types {
        let (matching, rest): (Vec<Algorithm>, Vec<Algorithm>) =
            all.into_iter().partition(|a| key_type(a) == *known);
        ordered.extend(matching);
        all = rest;
    }
    ordered.extend(all);
    ordered
}

/// A TCP stream that re-arms TCP_QUICKACK after every read: Linux clears it on its own, and a
/// delayed ACK then stalls the first channel of a connection by ~40 ms.
struct QuickAck(TcpStream);

impl QuickAck {
    #[cfg(target_os = "linux")]
    fn rearm(&self) {
        use std::os::fd::AsRawFd as _;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
        unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn rearm(&self) {}
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.rearm();
        }
        result
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_key_types_come_first() {
        let order = host_key_order(&["ssh-rsa".to_string()]);
        assert_eq!(
            order[0],
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512)
            }
        );
        assert_eq!(order[2], Algorithm::Ed25519);
        assert_eq!(host_key_order(&[])[0], Algorithm::Ed25519);
    }

    #[test]
    fn io_errors_read_as_words() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_io(&refused), "connection refused");
        let other = std::io::Error::other("Something Odd");
        assert_eq!(describe_io(&other), "something Odd");
    }
}
