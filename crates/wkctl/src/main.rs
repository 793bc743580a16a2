fn main() -> std::process::ExitCode {
    wkctl::run()
}
