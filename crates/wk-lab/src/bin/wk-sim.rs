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
        match wk_lab::sim::Node::new(settings) {
            Ok(node) => wk_lab::sim::run(node).await,
            Err(e) => {
                eprintln!("{e}");
                2
            }
        }
    });
    std::process::ExitCode::from(code as u8)
}
