fn main() {
    std::process::exit(dep::run(std::env::args_os()));
}
