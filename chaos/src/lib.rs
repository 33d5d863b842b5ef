//! Spate's chaos suite: start a cluster (local processes or the compose cluster), run a
//! workload that records every operation in a history, inject faults (kill, pause,
//! partition, slow links, corrupt a follower's log), heal, read everything back, and check
//! the history: no acknowledged write lost, no duplicates from idempotent producers, no
//! reads of values that were never written or sat above the high watermark, no gaps,
//! per-producer order, committed offsets that never go backwards, bounded recovery, one
//! leader per partition and epoch. The report says which check failed and why.
#![forbid(unsafe_code)]

pub mod backend;
pub mod checker;
pub mod cli;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod rdkafka;
pub mod report;
pub mod runner;
pub mod workload;

/// Log lines to stderr (`RUST_LOG`, default `info` for the harness, `warn` for clients).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,spate_client=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
