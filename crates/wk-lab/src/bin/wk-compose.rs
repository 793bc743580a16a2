//! The lab's compose stand-in, installed on each lab host as `docker` and `docker-compose`.
#![allow(clippy::print_stderr)]

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let me = std::path::Path::new(&argv[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest = &argv[1..];
    // A host without Docker Compose, for tests: `~/.config/wk-compose/not-installed` makes the
    // stand-in answer as a shell does for a command it cannot find.
    let absent = std::env::var_os("HOME")
        .map(|h| {
            std::path::Path::new(&h)
                .join(".config/wk-compose/not-installed")
                .exists()
        })
        .unwrap_or(false);
    if absent && rest.first().map(String::as_str) != Some("__supervise") {
        eprintln!("sh: 1: {me}: not found");
        return std::process::ExitCode::from(127);
    }
    let code = if rest.first().map(String::as_str) == Some("__supervise") && rest.len() == 4 {
        wk_lab::compose::supervise(std::path::Path::new(&rest[1]), &rest[2], &rest[3])
    } else if me == "docker" {
        match rest.first().map(String::as_str) {
            Some("compose") => wk_lab::compose::main(wk_lab::compose::Flavor::V2, &rest[1..]),
            _ => {
                eprintln!("the lab's docker stand-in runs only `docker compose …` (there is no Docker engine here)");
                1
            }
        }
    } else {
        wk_lab::compose::main(wk_lab::compose::Flavor::Hyphen, rest)
    };
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
