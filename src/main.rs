//! The `dep` binary: everything is in the library; this only passes the exit code on.

fn main() {
    std::process::exit(dep::run(std::env::args_os()));
}
