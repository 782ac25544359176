//! dep: a fast, safe, agentless deployment tool. `run` is the whole program: the binary calls
//! it and exits with its code. The modules below know nothing of terminals or exit codes except
//! `cli` and `report`.
//!
//! The library's public API is deliberately small: `run`, the webhook notifications
//! (`notify`: payloads and delivery, as dep sends them) and the SSH transport on its own
//! (`transport`: one connection per host, commands as streams of chunks), which the
//! integration tests drive against real sshd. Everything else is internal and may change.

mod cli;
mod config;
mod error;
mod fleet;
mod health;
mod migration;
pub mod notify;
mod plan;
mod quote;
mod release;
mod report;
mod suggestion;
pub mod transport;
mod watch;

/// Run dep with these command-line arguments; returns the process exit code.
pub fn run<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> i32 {
    cli::main(args)
}
