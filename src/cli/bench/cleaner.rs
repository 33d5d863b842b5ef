//! `spate bench cleaner`: the log cleaner's throughput, in process, on the same code a
//! broker runs (`spate_log`'s compaction): write records over a number of keys into a
//! log of small segments, fsynced, then time cleaning passes until the log is clean.
//! Reports MiB/s read and written and what the passes removed.
use std::time::Instant;

use anyhow::Context;
use bytes::BytesMut;
use spate_client::kafka_protocol::records::{
    Compression as WireCompression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use spate_log::{CleanerConfig, Log, LogConfig};

/// Flags of `spate bench cleaner`.
#[derive(clap::Args, Debug)]
pub struct CleanerBench {
    /// Records to write before cleaning.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Distinct keys the records cycle through.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 100)]
    batch_records: usize,
    /// Segment size (`segment.bytes`).
    #[arg(long, default_value_t = 64 << 20)]
    segment_bytes: u64,
    /// Key-map bytes (`log.cleaner.dedupe.buffer.size`).
    #[arg(long, default_value_t = 128 << 20)]
    dedupe_buffer_bytes: usize,
    /// Directory to write the log under (default: a temporary directory, removed after).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the cleaner benchmark (blocking I/O on a blocking thread).
pub async fn run(args: CleanerBench) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || bench(&args))
        .await
        .context("cleaner bench task")?
}

fn bench(args: &CleanerBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.keys > 0 && args.batch_records > 0,
        "--keys and --batch-records must be positive"
    );
    let tmp;
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    let config = LogConfig {
        segment_bytes: args.segment_bytes,
        keys_required: true,
        ..LogConfig::default()
    };
    let mut log =
        Log::open(&root.join("bench-0"), config, now_ms()).context("cannot open the bench log")?;
    log.assign_epoch(0, 0)?;
    let value = vec![b'v'; args.record_size];
    let write_started = Instant::now();
    let mut written = 0;
    while written < args.records {
        let n = (args.records - written).min(args.batch_records as u64);
        let mut batch = encode(written, n, args.keys, &value)?;
        log.append_as_leader(&mut batch, 0, now_ms())?;
        written += n;
    }
    log.flush()?;
    let write_secs = write_started.elapsed().as_secs_f64();
    let size_before = log.size_bytes();
    let cleaner = CleanerConfig {
        dedupe_buffer_bytes: args.dedupe_buffer_bytes,
        ..CleanerConfig::default()
    };
    let started = Instant::now();
    let (mut read, mut wrote, mut removed, mut passes) = (0u64, 0u64, 0u64, 0u32);
    while let Some(plan) = log.plan_clean(log.log_end_offset(), now_ms(), &cleaner) {
        let cleaned = plan.run()?;
        let Some(stats) = log.install_cleaned(cleaned)? else {
            break;
        };
        passes += 1;
        read += stats.bytes_read;
        wrote += stats.bytes_written;
        removed += stats.records_removed;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let size_after = log.size_bytes();
    log.delete()?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "records": args.records, "keys": args.keys, "record_size": args.record_size,
                "segment_bytes": args.segment_bytes, "passes": passes, "seconds": secs,
                "read_mib_per_s": mib(read) / secs, "written_mib_per_s": mib(wrote) / secs,
                "records_removed": removed, "log_bytes_before": size_before,
                "log_bytes_after": size_after, "write_seconds": write_secs,
            })
        );
    } else {
        println!(
            "cleaned {} records over {} keys in {passes} pass(es), {secs:.2} s: read {:.1} MiB ({:.1} MiB/s), wrote {:.1} MiB ({:.1} MiB/s), removed {removed} records; log {:.1} MiB -> {:.1} MiB (written in {write_secs:.2} s)",
            args.records,
            args.keys,
            mib(read),
            mib(read) / secs,
            mib(wrote),
            mib(wrote) / secs,
            mib(size_before),
            mib(size_after),
        );
    }
    Ok(())
}

/// One batch of `n` records from record number `first`, keyed `k{i % keys}`.
fn encode(first: u64, n: u64, keys: u64, value: &[u8]) -> anyhow::Result<Vec<u8>> {
    let now = now_ms();
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: now,
            key: Some(format!("k{}", (first + i) % keys).into()),
            value: Some(bytes::Bytes::copy_from_slice(value)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: WireCompression::None,
        },
    )?;
    Ok(buf.to_vec())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
