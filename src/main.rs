//! `spate`: the one binary. It only wires the crates together: `dev` runs a single-node
//! cluster (controller + broker in one process), `server` runs a node from a configuration
//! file, the other subcommands are the CLI.
#![forbid(unsafe_code)]

mod cli;
mod config;
mod dev;
mod logging;
mod server;

use clap::{Parser, Subcommand};

/// Spate: a Kafka-compatible, replicated event-streaming platform.
#[derive(Parser)]
#[command(name = "spate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a single-node cluster (controller + broker) with embedded defaults.
    Dev(dev::DevArgs),
    /// Run a node from a configuration file, SPATE_* variables and flags.
    Server(Box<server::ServerArgs>),
    /// Create, list, describe, delete topics and alter their configs.
    Topic(cli::topic::TopicArgs),
    /// Produce records read from stdin, one per line.
    Produce(cli::produce::ProduceArgs),
    /// Consume records and print them.
    Consume(cli::consume::ConsumeArgs),
    /// List, describe, reset offsets of and delete consumer groups.
    Group(cli::group::GroupArgs),
    /// Measure produce or consume throughput and latency.
    Bench(cli::bench::BenchArgs),
    /// Inspect the cluster through its controllers (quorum, brokers, epochs).
    Cluster(cli::cluster::ClusterArgs),
    /// Check a node's readiness (or liveness) on its admin port; exit 0 when healthy.
    Health(cli::node::HealthArgs),
    /// Move leadership off a broker and fence it (controlled shutdown without stopping).
    Drain(cli::node::DrainArgs),
    /// Check a running cluster with the chaos workload and checker (no faults injected).
    Verify {
        #[command(flatten)]
        conn: cli::Conn,
        #[command(flatten)]
        args: cli::verify::VerifyArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Server(args) => server::run(*args).await,
            Command::Topic(args) => cli::topic::run(args).await,
            Command::Produce(args) => cli::produce::run(args).await,
            Command::Consume(args) => cli::consume::run(args).await,
            Command::Group(args) => cli::group::run(args).await,
            Command::Bench(args) => cli::bench::run(args).await,
            Command::Cluster(args) => cli::cluster::run(args).await,
            Command::Health(args) => cli::node::health(args).await,
            Command::Drain(args) => cli::node::drain(args).await,
            Command::Verify { conn, args } => cli::verify::run(args, conn).await,
        }
    })
}

/// Waits for SIGINT or SIGTERM, the signals that ask `dev` and `server` to stop cleanly.
async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
