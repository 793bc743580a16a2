//! The lab's WuKongIM: `wk-sim`, configured by `WK_*` and `WKSIM_*` environment (docs/simulator.md).
#![allow(clippy::print_stderr)]

fn main() -> std::process::ExitCode {
    let settings = match wk_lab::sim::Settings::from_env(&wk_lab::sim::env_map()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = rt.block_on(async move {
        // PID 1 in its container: without handlers of its own it would ignore SIGTERM, and
        // Docker would wait its stop timeout before SIGKILL. WuKongIM stops on both signals.
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("cannot install signal handlers");
            return 2;
        };
        match wk_lab::sim::Node::new(settings) {
            Ok(node) => tokio::select! {
                code = wk_lab::sim::run(node) => code,
                _ = term.recv() => 0,
                _ = int.recv() => 0,
            },
            Err(e) => {
                eprintln!("{e}");
                2
            }
        }
    });
    std::process::ExitCode::from(code as u8)
}
