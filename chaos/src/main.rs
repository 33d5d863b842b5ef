//! Spate chaos runner. The runner, nemeses, workload, checker and report are built by the
//! chaos issue; until then this binary says so instead of pretending to test anything.
use clap::Parser;

/// Spate chaos runner (not built yet).
#[derive(Parser)]
#[command(name = "chaos", about = "Spate chaos runner (not built yet)")]
struct Args {}

fn main() -> std::process::ExitCode {
    let _ = Args::parse();
    eprintln!("chaos: the chaos suite is not built yet; no scenario can run");
    std::process::ExitCode::from(2)
}
