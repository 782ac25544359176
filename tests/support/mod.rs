//! Shared helpers for the integration tests, each written once.
//!
//! - `project`: the `TestProject` builder (Deployfile, files, fleet of local hosts, args, env)
//!   that runs the real `dep` binary and states its expected transcript; host-state readers.
//! - `transcript`: what in dep's output cannot be pinned, and how it is normalised.
//! - `events`: `--json` events, their `time` and `elapsed_ms` checked and taken off.
//! - `terminal`: dep on a pseudo-terminal of a given size, read as a screen (vt100).
//! - `process`: finding, signalling and waiting for processes; the `Watchdog`.
//! - `net`: free and closed ports, an HTTP GET client, a webhook receiver.
//! - `sshd`: a fleet of real OpenSSH servers on loopback (also used by `bench/fleet.rs`).
//! - `web`: nginx and php-fpm serving test hosts, and a polling client.
//! - `database`: MariaDB and PostgreSQL servers on loopback, for the recipe's backups.
//! - `git`: git for the tests' own repositories (fixed identity and dates).

pub mod database;
pub mod events;
pub mod git;
pub mod net;
pub mod process;
pub mod project;
pub mod sshd;
pub mod terminal;
pub mod transcript;
pub mod web;
