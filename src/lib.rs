//! dep: a fast, safe, agentless deployment tool. `run` is the whole program; the modules below
//! know nothing of terminals or exit codes except `cli` and `report`.

pub mod cli;
pub mod config;
pub mod error;
pub mod fleet;
pub mod health;
pub mod notify;
pub mod plan;
pub mod quote;
pub mod release;
pub mod report;
pub mod suggestion;
pub mod transport;

/// Run dep with these command-line arguments; returns the process exit code.
pub fn run<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> i32 {
    cli::main(args)
}
