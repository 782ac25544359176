//! dep's integration tests: one binary, a module per feature, all driving the real `dep`
//! binary (and, for the SSH and web tests, real sshd, nginx and php-fpm on loopback).
//!
//! Every test here runs concurrently with the others in this one process, so none may touch
//! process-global state: no `std::env::set_var`, no `set_current_dir`, no signal handlers, no
//! fixed port or address of its own (ports come from `support::net::free_port`), and no test
//! may count processes it did not mark with a word of its own (`support::process`).
//!
//! ```text
//! cargo test --test main                 # the whole suite
//! cargo test --test main rollback::      # one feature (one file of tests/)
//! cargo test --test main rollback::rollback_twice_goes_back_two_releases -- --exact
//! ```

mod support;

mod bad_input;
mod batches;
mod blue_green;
mod blue_green_ssh;
mod ci;
mod code_and_env;
mod deploy;
mod events;
mod failed_release;
mod failure;
mod git_archive;
mod health_timeout;
mod init;
mod interrupt;
mod laravel;
mod laravel_databases;
mod laravel_migrations;
mod live_view;
mod lock;
mod lock_race;
mod notify;
mod output;
mod promote;
mod readme;
mod rollback;
mod ssh_transport;
mod sshd_fleet;
mod watch;
mod watch_laravel;
mod zero_downtime;
