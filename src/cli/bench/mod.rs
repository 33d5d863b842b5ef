//! `spate bench produce|consume`: bounded throughput and latency runs.
//!
//! - `produce`: like `kafka-producer-perf-test` — N records of a fixed size from P
//!   producers, optional throughput cap, per-record send→ack latency in an HDR histogram.
//! - `consume`: like `kafka-consumer-perf-test` — read N records as fast as possible.
//! - `cleaner`: the log cleaner's throughput on an in-process log.
//! - `stats`: the progress window and latency summary they share.
pub mod cleaner;
pub mod consume;
pub mod produce;
pub mod stats;

use super::init_logging;

/// Flags of `spate bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    cmd: BenchCmd,
}

#[derive(clap::Subcommand, Debug)]
enum BenchCmd {
    /// Producer throughput and latency.
    Produce(produce::ProduceBench),
    /// Consumer throughput.
    Consume(consume::ConsumeBench),
    /// Log cleaner (compaction) throughput, in process.
    Cleaner(cleaner::CleanerBench),
}

/// Runs `spate bench ...`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    init_logging();
    match args.cmd {
        BenchCmd::Produce(a) => produce::run(a).await,
        BenchCmd::Consume(a) => consume::run(a).await,
        BenchCmd::Cleaner(a) => cleaner::run(a).await,
    }
}
