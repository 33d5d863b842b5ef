//! `spate bench consume`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use spate_client::{Consumer, ConsumerConfig, StartOffset};

use super::stats::{rates, Window};
use crate::cli::{parse_start, Conn};

/// Flags of `spate bench consume`.
#[derive(clap::Args, Debug)]
pub struct ConsumeBench {
    #[command(flatten)]
    conn: Conn,
    /// Topic to read (all partitions).
    #[arg(long)]
    topic: String,
    /// Records to read before stopping.
    #[arg(long)]
    records: u64,
    /// Where to start: beginning, end, offset:N or timestamp:MS.
    #[arg(long, default_value = "beginning", value_parser = parse_start)]
    from: StartOffset,
    /// Stop when no record arrived for this long.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Soft cap on one Fetch response in bytes.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    fetch_max_bytes: i32,
    /// Soft cap per partition in one Fetch.
    #[arg(long, default_value_t = 1024 * 1024)]
    partition_max_bytes: i32,
    /// Progress line interval.
    #[arg(long, default_value_t = 5000)]
    report_interval_ms: u64,
    /// Print the final result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the consumer benchmark.
pub async fn run(args: ConsumeBench) -> anyhow::Result<()> {
    let mut config = ConsumerConfig::new(args.conn.bootstrap.clone());
    config.client.client_id = "spate-bench".into();
    config.max_bytes = args.fetch_max_bytes;
    config.partition_max_bytes = args.partition_max_bytes;
    config.max_wait = config
        .max_wait
        .min(Duration::from_millis(args.timeout_ms.max(1)));
    let mut consumer = Consumer::connect(config)
        .await
        .context("cannot reach the cluster")?;
    consumer.assign_topic(&args.topic, args.from).await?;
    let window = Arc::new(Window::default());
    let every = Duration::from_millis(args.report_interval_ms.max(100));
    let idle = Duration::from_millis(args.timeout_ms);
    let started = Instant::now();
    let (mut records, mut bytes, mut fetches) = (0u64, 0u64, 0u64);
    let mut last_record = Instant::now();
    let mut last_report = Instant::now();
    while records < args.records && last_record.elapsed() < idle {
        let batch = consumer.poll().await?;
        fetches += 1;
        if !batch.is_empty() {
            last_record = Instant::now();
        }
        let n = batch.len() as u64;
        let b: u64 = batch
            .iter()
            .map(|r| {
                (r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()))
                    as u64
            })
            .sum();
        records += n;
        bytes += b;
        window.add(n, b);
        if last_report.elapsed() >= every {
            let w = window.take();
            let (rps, mibps) = rates(w.records, w.bytes, last_report.elapsed());
            eprintln!(
                "{} records read, {rps:.1} records/sec ({mibps:.2} MiB/sec).",
                w.records
            );
            last_report = Instant::now();
        }
    }
    // The idle wait at the end is not reading time.
    let elapsed = if records < args.records {
        last_record.duration_since(started)
    } else {
        started.elapsed()
    };
    let (rps, mibps) = rates(records, bytes, elapsed);
    if args.json {
        let v = serde_json::json!({
            "bench": "consume",
            "topic": args.topic,
            "records": records,
            "bytes": bytes,
            "fetches": fetches,
            "complete": records >= args.records,
            "elapsed_s": elapsed.as_secs_f64(),
            "records_per_sec": rps,
            "mib_per_sec": mibps,
        });
        println!("{v}");
    } else {
        println!(
            "{records} records ({:.2} MiB) read in {:.2}s: {rps:.1} records/sec, {mibps:.2} MiB/sec, {fetches} fetch rounds.",
            bytes as f64 / (1024.0 * 1024.0),
            elapsed.as_secs_f64()
        );
    }
    anyhow::ensure!(
        records >= args.records,
        "stopped after {} ms without records: read {records} of {} records",
        args.timeout_ms,
        args.records
    );
    Ok(())
}
