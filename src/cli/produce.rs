//! `spate produce`: one record per stdin line; a summary goes to stderr.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use spate_client::{Acks, Compression, DeliveryFuture, Header, Producer, ProducerConfig};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{init_logging, parse_acks, parse_compression, parse_kv, Conn};

/// How many records may await their ack before reading more input: bounds memory while
/// keeping the pipeline full.
const MAX_PENDING: usize = 50_000;

/// Flags of `spate produce`.
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    conn: Conn,
    /// Topic to write to.
    #[arg(long)]
    topic: String,
    /// Partition to write to (default: by key hash, or sticky for lines without key).
    #[arg(long)]
    partition: Option<i32>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Header on every record, repeatable: --header source=cli.
    #[arg(long = "header", value_parser = parse_kv)]
    headers: Vec<(String, String)>,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// Batch compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// How long a batch waits for more lines.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Target batch size in bytes.
    #[arg(long, default_value_t = 16384)]
    batch_size: usize,
    /// Idempotent producer: no duplicates from retries, order kept (needs --acks all).
    #[arg(long)]
    idempotent: bool,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    bytes: u64,
    first_error: Option<String>,
}

impl Tally {
    async fn settle(&mut self, fut: DeliveryFuture) {
        match fut.await {
            Ok(_) => self.ok += 1,
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn fail(&mut self, e: String) {
        self.failed += 1;
        self.first_error.get_or_insert(e);
    }
}

/// Runs `spate produce`.
pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    init_logging();
    let mut config = ProducerConfig::new(args.conn.bootstrap.clone());
    config.client.client_id = "spate-cli".into();
    config.acks = args.acks;
    config.compression = args.compression;
    config.linger = Duration::from_millis(args.linger_ms);
    config.batch_size = args.batch_size;
    config.enable_idempotence = args.idempotent;
    config.validate()?;
    let producer = Producer::connect(config)
        .await
        .with_context(|| format!("cannot reach the cluster at {}", args.conn.bootstrap))?;
    let headers: Vec<Header> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(Bytes::from(v.clone()))))
        .collect();
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut line_no = 0u64;
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        line_no += 1;
        let (key, value) = match split(&line, args.key_separator.as_deref()) {
            Some(kv) => kv,
            None => {
                tally.fail(format!("line {line_no} has no key separator"));
                continue;
            }
        };
        tally.bytes += (key.as_ref().map_or(0, Bytes::len) + value.len()) as u64;
        match producer
            .send(
                &args.topic,
                args.partition,
                key,
                Some(value),
                headers.clone(),
            )
            .await
        {
            Ok(fut) => pending.push_back(fut),
            Err(e) => tally.fail(e.to_string()),
        }
        if pending.len() >= MAX_PENDING {
            if let Some(fut) = pending.pop_front() {
                tally.settle(fut).await;
            }
        }
    }
    for fut in pending {
        tally.settle(fut).await;
    }
    producer.close().await.ok();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "Produced {} record(s) ({} bytes) to '{}' in {secs:.2}s; {} failed.",
        tally.ok, tally.bytes, args.topic, tally.failed
    );
    match tally.first_error {
        Some(e) => anyhow::bail!("{} record(s) failed; first error: {e}", tally.failed),
        None => Ok(()),
    }
}

/// Splits a line into key and value; `None` when a separator is required but missing.
fn split(line: &str, separator: Option<&str>) -> Option<(Option<Bytes>, Bytes)> {
    match separator {
        None => Some((None, Bytes::copy_from_slice(line.as_bytes()))),
        Some(sep) => line.split_once(sep).map(|(k, v)| {
            (
                Some(Bytes::copy_from_slice(k.as_bytes())),
                Bytes::copy_from_slice(v.as_bytes()),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_first_separator() {
        let (k, v) = split("a:b:c", Some(":")).unwrap();
        assert_eq!(k.as_deref(), Some(&b"a"[..]));
        assert_eq!(&v[..], b"b:c");
        assert!(split("abc", Some(":")).is_none());
        let (k, v) = split("abc", None).unwrap();
        assert!(k.is_none());
        assert_eq!(&v[..], b"abc");
    }
}
