//! dep: a fast, safe, agentless deployment tool. `run` is the whole program; the modules below
//! know nothing of terminals or exit codes except `cli` and `output`.

pub mod archive;
pub mod backend;
pub mod cli;
pub mod command;
pub mod deployfile;
pub mod dotenv;
pub mod engine;
pub mod error;
pub mod health_check;
pub mod host;
pub mod init;
pub mod known_hosts;
pub mod lock;
pub mod notify;
pub mod output;
pub mod plan;
pub mod project;
pub mod quote;
pub mod recipe;
pub mod release;
pub mod script;
pub mod selector;
pub mod ssh;
pub mod suggestion;
pub mod table;
pub mod task;
pub mod template;
pub mod vars;

/// Run dep with these command-line arguments; returns the process exit code.
pub fn run<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> i32 {
    cli::main(args)
}
