//! `spate bench produce`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::Rng;
use spate_client::admin::NewTopic;
use spate_client::{Acks, Admin, Compression, DeliveryFuture, Producer, ProducerConfig};
use tokio::sync::mpsc;

use super::stats::{latency_histogram, rates, summarize, Window};
use crate::cli::{parse_acks, parse_compression, Conn};

/// Distinct payloads cycled through, so compression sees some variety (as the Java tool's
/// random payload, but not one single buffer).
const PAYLOADS: usize = 16;
/// Records handed to the ack-collecting task ahead of their acks.
const ACK_QUEUE: usize = 1 << 16;

/// Flags of `spate bench produce`.
#[derive(clap::Args, Debug)]
pub struct ProduceBench {
    #[command(flatten)]
    conn: Conn,
    /// Topic to write to.
    #[arg(long)]
    topic: String,
    /// Records to send in total (over all producers).
    #[arg(long)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// Independent producers (each with its own connections), run concurrently.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Total records per second cap; -1 for unlimited.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    throughput: i64,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    partitions: Option<i32>,
    /// Replication factor when creating the topic.
    #[arg(long, default_value_t = 1)]
    replication_factor: i16,
    /// Target batch size in bytes.
    #[arg(long, default_value_t = 65536)]
    batch_size: usize,
    /// How long a batch waits to fill.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Batch compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// Produce requests in flight per broker connection.
    #[arg(long, default_value_t = 5)]
    max_in_flight: usize,
    /// Largest Produce request in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_request_size: usize,
    /// Progress line interval.
    #[arg(long, default_value_t = 5000)]
    report_interval_ms: u64,
    /// Print the final result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Idempotent producer (needs --acks all; caps --max-in-flight at 5).
    #[arg(long)]
    idempotent: bool,
    /// Key records `k0`..`k{N-1}` in turn (default: no keys). A compacted topic needs
    /// keys; few keys give its cleaner much to drop.
    #[arg(long)]
    keys: Option<u64>,
    /// Config of the topic when created (repeatable), e.g. cleanup.policy=compact.
    #[arg(long = "topic-config", value_parser = crate::cli::parse_kv)]
    topic_configs: Vec<(String, String)>,
}

struct Outcome {
    histogram: Histogram<u64>,
    acked: u64,
    failed: u64,
    first_error: Option<String>,
}

/// Runs the producer benchmark.
pub async fn run(args: ProduceBench) -> anyhow::Result<()> {
    anyhow::ensure!(args.producers > 0, "--producers must be at least 1");
    anyhow::ensure!(args.throughput != 0, "--throughput must be positive or -1");
    if let Some(partitions) = args.partitions {
        ensure_topic(&args, partitions).await?;
    }
    let payloads: Arc<Vec<Bytes>> = Arc::new(
        (0..PAYLOADS)
            .map(|_| random_payload(args.record_size))
            .collect(),
    );
    let window = Arc::new(Window::default());
    let reporter = tokio::spawn(report_progress(
        window.clone(),
        Duration::from_millis(args.report_interval_ms.max(100)),
    ));
    let topic: Arc<str> = Arc::from(args.topic.as_str());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.producers);
    for i in 0..args.producers {
        let share = args.records / args.producers as u64
            + u64::from((i as u64) < args.records % args.producers as u64);
        let rate = (args.throughput > 0).then(|| args.throughput as f64 / args.producers as f64);
        tasks.push(tokio::spawn(run_one(
            config(&args),
            topic.clone(),
            args.keys.filter(|k| *k > 0),
            share,
            rate,
            payloads.clone(),
            window.clone(),
        )));
    }
    let mut total = Outcome {
        histogram: latency_histogram()?,
        acked: 0,
        failed: 0,
        first_error: None,
    };
    for task in tasks {
        let o = task.await.context("producer task failed")??;
        total
            .histogram
            .add(&o.histogram)
            .context("merging latency histograms")?;
        total.acked += o.acked;
        total.failed += o.failed;
        if total.first_error.is_none() {
            total.first_error = o.first_error;
        }
    }
    let elapsed = started.elapsed();
    reporter.abort();
    print_result(&args, &total, elapsed);
    match total.first_error {
        Some(e) => anyhow::bail!("{} record(s) failed; first error: {e}", total.failed),
        None => Ok(()),
    }
}

fn config(args: &ProduceBench) -> ProducerConfig {
    let mut c = ProducerConfig::new(args.conn.bootstrap.clone());
    c.client.client_id = "spate-bench".into();
    c.client.max_in_flight = args.max_in_flight.max(1);
    c.acks = args.acks;
    c.batch_size = args.batch_size;
    c.linger = Duration::from_millis(args.linger_ms);
    c.compression = args.compression;
    c.enable_idempotence = args.idempotent;
    c.max_request_size = args.max_request_size.max(args.batch_size);
    // Room for a full pipeline of requests plus one filling; more would only add queueing
    // latency once the broker is the bottleneck.
    c.buffer_memory = c
        .buffer_memory
        .max((args.max_in_flight.max(1) + 1) * c.max_request_size);
    c
}

/// One producer: sends its share, another task collects acks so sending never waits on them.
async fn run_one(
    config: ProducerConfig,
    topic: Arc<str>,
    keys: Option<u64>,
    records: u64,
    rate: Option<f64>,
    payloads: Arc<Vec<Bytes>>,
    window: Arc<Window>,
) -> anyhow::Result<Outcome> {
    config.validate()?;
    let producer = Producer::connect(config)
        .await
        .context("cannot reach the cluster")?;
    let (tx, rx) = mpsc::channel::<(Instant, DeliveryFuture)>(ACK_QUEUE);
    let size = payloads.first().map_or(0, |p| p.len() as u64);
    let acker = tokio::spawn(collect_acks(rx, size, window));
    let start = Instant::now();
    let mut send_failed = 0;
    let mut first_error = None;
    for i in 0..records {
        if let Some(rate) = rate {
            throttle(start, i, rate).await;
        }
        let payload = payloads[i as usize % payloads.len()].clone();
        let key = keys.map(|n| Bytes::from(format!("k{}", i % n)));
        let sent_at = Instant::now();
        match producer
            .send(&topic, None, key, Some(payload), Vec::new())
            .await
        {
            Ok(fut) => {
                if tx.send((sent_at, fut)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                send_failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    drop(tx);
    producer.flush().await.ok();
    let mut outcome = acker.await.context("ack collector failed")??;
    producer.close().await.ok();
    outcome.failed += send_failed;
    if first_error.is_some() {
        outcome.first_error = first_error;
    }
    Ok(outcome)
}

async fn collect_acks(
    mut rx: mpsc::Receiver<(Instant, DeliveryFuture)>,
    size: u64,
    window: Arc<Window>,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome {
        histogram: latency_histogram()?,
        acked: 0,
        failed: 0,
        first_error: None,
    };
    while let Some((sent_at, fut)) = rx.recv().await {
        match fut.await {
            Ok(meta) => {
                // acked_at, not "now": awaiting in send order must not inflate latencies.
                let us = meta.acked_at.saturating_duration_since(sent_at).as_micros() as u64;
                out.histogram.saturating_record(us.max(1));
                out.acked += 1;
                window.record(size, us);
            }
            Err(e) => {
                out.failed += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    Ok(out)
}

/// Sleeps until record `sent` is due at `rate` records per second.
async fn throttle(start: Instant, sent: u64, rate: f64) {
    let due = Duration::from_secs_f64(sent as f64 / rate);
    let elapsed = start.elapsed();
    if due > elapsed + Duration::from_millis(1) {
        tokio::time::sleep(due - elapsed).await;
    }
}

async fn report_progress(window: Arc<Window>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut last = Instant::now();
    loop {
        tick.tick().await;
        let w = window.take();
        let (rps, mibps) = rates(w.records, w.bytes, last.elapsed());
        last = Instant::now();
        eprintln!(
            "{} records sent, {rps:.1} records/sec ({mibps:.2} MiB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            w.records, w.avg_ms, w.max_ms
        );
    }
}

fn print_result(args: &ProduceBench, total: &Outcome, elapsed: Duration) {
    let bytes = total.acked * args.record_size as u64;
    let (rps, mibps) = rates(total.acked, bytes, elapsed);
    let lat = summarize(&total.histogram);
    if args.json {
        let v = serde_json::json!({
            "bench": "produce",
            "topic": args.topic,
            "records": total.acked,
            "failed": total.failed,
            "record_size": args.record_size,
            "producers": args.producers,
            "acks": format!("{:?}", args.acks).to_lowercase(),
            "idempotent": args.idempotent,
            "compression": format!("{:?}", args.compression).to_lowercase(),
            "batch_size": args.batch_size,
            "linger_ms": args.linger_ms,
            "throughput_cap": args.throughput,
            "elapsed_s": elapsed.as_secs_f64(),
            "records_per_sec": rps,
            "mib_per_sec": mibps,
            "latency_ms": lat.to_json(),
        });
        println!("{v}");
    } else {
        println!(
            "{} records sent, {rps:.1} records/sec ({mibps:.2} MiB/sec), {:.2} ms avg latency, {:.2} ms max latency, \
             {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th.",
            total.acked, lat.avg, lat.max, lat.p50, lat.p95, lat.p99, lat.p999
        );
    }
}

/// Creates the topic unless it exists.
async fn ensure_topic(args: &ProduceBench, partitions: i32) -> anyhow::Result<()> {
    let admin = Admin::connect(args.conn.client_config())
        .await
        .context("cannot reach the cluster")?;
    if admin.describe_topic(&args.topic).await.is_ok() {
        return Ok(());
    }
    let topic = args.topic_configs.iter().fold(
        NewTopic::new(args.topic.clone(), partitions, args.replication_factor),
        |t, (k, v)| t.config(k, v),
    );
    for (_, r) in admin.create_topics(&[topic], false).await? {
        match r {
            Ok(()) => {}
            Err(e)
                if e.kafka_code()
                    == Some(spate_client::kafka_protocol::ResponseError::TopicAlreadyExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Random uppercase letters, like the Java tool's payload.
fn random_payload(size: usize) -> Bytes {
    let mut rng = rand::rng();
    (0..size)
        .map(|_| rng.random_range(b'A'..=b'Z'))
        .collect::<Vec<u8>>()
        .into()
}
