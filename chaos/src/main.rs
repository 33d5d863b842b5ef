//! `chaos`: runs Spate's chaos scenarios and checks the histories.
//!
//!     cargo run --release -p chaos -- list
//!     cargo run --release -p chaos -- run --backend process --scenario kill-leader --duration 60 --seed 1 --out target/chaos/kill-leader
//!     cargo run --release -p chaos -- matrix --backend process --seeds 1,2 --duration 45 --out target/chaos/matrix
//!     cargo run --release -p chaos -- selftest --out target/chaos/selftest
//!
//! Exit code 0 only when every check passes (for `selftest`: when the deliberately unsafe
//! build is caught losing acknowledged writes).
use std::process::ExitCode;

use chaos::cli::{self, Cli};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    chaos::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::main(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}
