//! `spate verify`: the chaos suite's workload and checker against a running cluster. It
//! injects no faults (it does not control the cluster's processes): run it while you
//! restart, kill or partition brokers yourself, and it tells you whether anything
//! acknowledged was lost, duplicated or read dirty. `cargo run -p chaos` runs the same
//! checks with faults it injects itself.
use std::path::PathBuf;
use std::time::Duration;

use chaos::runner::{self, RunConfig};
use chaos::workload::ClientKind;

/// Flags of `spate verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Seconds of workload.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Output directory (summary.json, report.html, history.jsonl).
    #[arg(long, default_value = "spate-verify")]
    out: PathBuf,
    /// Client writing the judged idempotent acks=all values.
    #[arg(long, value_enum, default_value = "rust")]
    client: ClientKind,
    /// Python with confluent-kafka, for --client rdkafka.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Longest time after which an acks=all write must succeed again.
    #[arg(long, default_value_t = 30_000)]
    recovery_bound_ms: u64,
    /// Seed (names the topic: chaos-SEED-PID, 3 partitions, RF min(3, brokers)).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs the workload and the checks; fails when a check fails.
pub async fn run(args: VerifyArgs, conn: super::Conn) -> anyhow::Result<()> {
    chaos::init_logging();
    let config = RunConfig {
        backend: None,
        bootstrap: Some(conn.bootstrap.clone()),
        scenario: "none".to_string(),
        duration: Duration::from_secs(args.duration),
        seed: args.seed,
        out: args.out.clone(),
        spate_bin: PathBuf::new(),
        compose_file: PathBuf::new(),
        image: String::new(),
        client: args.client,
        python: args.python,
        recovery_bound: Duration::from_millis(args.recovery_bound_ms),
        keep: false,
    };
    let summary = runner::run(&config).await?;
    println!(
        "verify {}: {} (acked {}, lost {}, duplicates {}, indeterminate {}) -> {}",
        conn.bootstrap,
        summary.verdict.to_uppercase(),
        summary.acked,
        summary.lost,
        summary.duplicates,
        summary.counts.indeterminate,
        args.out.join("report.html").display()
    );
    for c in summary.checks.iter().filter(|c| c.judged && !c.pass) {
        println!("  FAILED {}: {}", c.name, c.summary);
    }
    anyhow::ensure!(summary.verdict == "pass", "verification failed");
    Ok(())
}
