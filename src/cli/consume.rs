//! `spate consume`: print records as values, key/value pairs or JSON lines; with `--group`
//! as a member of a consumer group that commits what it printed.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use spate_client::{
    Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig, OffsetReset,
    StartOffset, TopicPartition,
};

use super::{init_logging, is_broken_pipe, parse_start, Conn};

/// Output layouts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The value only.
    Value,
    /// key, separator, value.
    Kv,
    /// One JSON object per record.
    Json,
}

/// Flags of `spate consume`.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    conn: Conn,
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// Only this partition (default: all).
    #[arg(long)]
    partition: Option<i32>,
    /// Where to start: beginning, end, offset:N or timestamp:MS. With --group: where
    /// partitions without a committed offset start (beginning or end).
    #[arg(long, default_value = "end", value_parser = parse_start)]
    from: StartOffset,
    /// Join this consumer group: read the partitions it assigns, commit as it goes and on
    /// exit.
    #[arg(long)]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Stop when no record arrived for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Output layout.
    #[arg(long, value_enum, default_value_t = Format::Value)]
    format: Format,
    /// Separator between key and value for --format kv.
    #[arg(long, default_value = "\t")]
    key_separator: String,
}

/// Runs `spate consume`.
pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    init_logging();
    if let Some(group) = args.group.clone() {
        return run_group(args, group).await;
    }
    let mut config = ConsumerConfig::new(args.conn.bootstrap.clone());
    config.client.client_id = "spate-cli".into();
    if let Some(t) = args.timeout_ms {
        // Do not let one long poll overshoot the idle timeout by much.
        config.max_wait = config.max_wait.min(Duration::from_millis(t.max(1)));
    }
    let mut consumer = Consumer::connect(config)
        .await
        .with_context(|| format!("cannot reach the cluster at {}", args.conn.bootstrap))?;
    match args.partition {
        Some(p) => {
            consumer
                .assign(&[TopicPartition::new(args.topic.as_str(), p)], args.from)
                .await?
        }
        None => {
            consumer.assign_topic(&args.topic, args.from).await?;
        }
    }
    let limit = args.count.unwrap_or(u64::MAX);
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let stdout = std::io::stdout();
    while printed < limit {
        let records = consumer.poll().await?;
        if records.is_empty() {
            if idle.is_some_and(|d| last_record.elapsed() >= d) {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        let mut out = std::io::BufWriter::new(stdout.lock());
        for r in records
            .iter()
            .take(usize::try_from(limit - printed).unwrap_or(usize::MAX))
        {
            if let Err(e) = write_record(&mut out, r, args.format, &args.key_separator) {
                if is_broken_pipe(&e) {
                    return Ok(());
                }
                return Err(e.into());
            }
            printed += 1;
        }
        if let Err(e) = out.flush() {
            if is_broken_pipe(&e) {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    Ok(())
}

/// `spate consume --group`: a group member that commits the records it printed.
async fn run_group(args: ConsumeArgs, group: String) -> anyhow::Result<()> {
    if args.partition.is_some() {
        bail!("--partition cannot be combined with --group: the group assigns partitions");
    }
    let mut config = GroupConsumerConfig::new(args.conn.bootstrap.clone(), group.clone());
    config.consumer.client.client_id = "spate-cli".into();
    config.consumer.offset_reset = match args.from {
        StartOffset::Earliest => OffsetReset::Earliest,
        StartOffset::Latest => OffsetReset::Latest,
        _ => bail!("with --group, --from must be beginning or end (committed offsets win)"),
    };
    let poll_timeout = match args.timeout_ms {
        Some(t) => Duration::from_millis(t.max(1)),
        None => Duration::from_secs(1),
    };
    config.consumer.max_wait = config.consumer.max_wait.min(poll_timeout);
    let mut consumer = GroupConsumer::connect(config, std::slice::from_ref(&args.topic))
        .await
        .map_err(|e| {
            anyhow!(
                "cannot join group '{group}' at {}: {e}",
                args.conn.bootstrap
            )
        })?;
    let outcome = consume_group(&mut consumer, &args).await;
    let closed = consumer
        .close()
        .await
        .map_err(|e| anyhow!("final commit of group '{group}': {e}"));
    outcome.and(closed)
}

async fn consume_group(consumer: &mut GroupConsumer, args: &ConsumeArgs) -> anyhow::Result<()> {
    let limit = args.count.unwrap_or(u64::MAX);
    let idle = args.timeout_ms.map(Duration::from_millis);
    let poll_timeout = idle.unwrap_or(Duration::from_secs(1));
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let stdout = std::io::stdout();
    while printed < limit {
        let records = tokio::select! {
            r = consumer.poll(poll_timeout) => r?,
            // Stop cleanly on SIGINT/SIGTERM so the group rebalances now, not after the
            // session timeout.
            _ = crate::wait_for_shutdown_signal() => return Ok(()),
        };
        if records.is_empty() {
            if idle.is_some_and(|d| last_record.elapsed() >= d) {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        let take = usize::try_from(limit - printed).unwrap_or(usize::MAX);
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut done = 0;
        let mut pipe_closed = false;
        for r in records.iter().take(take) {
            if let Err(e) = write_record(&mut out, r, args.format, &args.key_separator) {
                if !is_broken_pipe(&e) {
                    return Err(e.into());
                }
                pipe_closed = true;
                break;
            }
            done += 1;
        }
        if let Err(e) = out.flush() {
            if !is_broken_pipe(&e) {
                return Err(e.into());
            }
            pipe_closed = true;
        }
        printed += done as u64;
        // Records fetched but not printed must be read again by whoever owns them next.
        for (tp, offset) in rewind_points(&records[done..]) {
            consumer.seek(&tp, offset);
        }
        if pipe_closed {
            return Ok(());
        }
    }
    Ok(())
}

/// The lowest offset per partition among `unprinted` records.
fn rewind_points(unprinted: &[ConsumerRecord]) -> BTreeMap<TopicPartition, i64> {
    let mut points = BTreeMap::new();
    for r in unprinted {
        let tp = TopicPartition {
            topic: r.topic.clone(),
            partition: r.partition,
        };
        let o = points.entry(tp).or_insert(r.offset);
        *o = (*o).min(r.offset);
    }
    points
}

fn write_record(
    out: &mut impl Write,
    r: &ConsumerRecord,
    format: Format,
    sep: &str,
) -> std::io::Result<()> {
    match format {
        Format::Value => {
            out.write_all(r.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")
        }
        Format::Kv => {
            out.write_all(r.key.as_deref().unwrap_or_default())?;
            out.write_all(sep.as_bytes())?;
            out.write_all(r.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")
        }
        Format::Json => {
            serde_json::to_writer(&mut *out, &to_json(r)).map_err(std::io::Error::other)?;
            out.write_all(b"\n")
        }
    }
}

/// The JSON layout: bytes become (lossy) UTF-8 strings, null stays null.
fn to_json(r: &ConsumerRecord) -> serde_json::Value {
    let text = |b: &Option<bytes::Bytes>| match b {
        Some(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
        None => serde_json::Value::Null,
    };
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    serde_json::json!({
        "topic": &*r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": text(&r.key),
        "value": text(&r.value),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use spate_client::consumer::TimestampKind;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            timestamp: 1000,
            timestamp_kind: TimestampKind::CreateTime,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v\"1")),
            headers: vec![("h".into(), None)],
        }
    }

    #[test]
    fn formats() {
        let mut out = Vec::new();
        write_record(&mut out, &record(), Format::Kv, "=").unwrap();
        write_record(&mut out, &record(), Format::Value, "=").unwrap();
        write_record(&mut out, &record(), Format::Json, "=").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "k=v\"1");
        assert_eq!(lines[1], "v\"1");
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(v["partition"], 2);
        assert_eq!(v["offset"], 7);
        assert_eq!(v["value"], "v\"1");
        assert_eq!(v["headers"]["h"], serde_json::Value::Null);
    }

    #[test]
    fn rewind_to_the_first_unprinted_offset_of_each_partition() {
        let mut a = record();
        a.offset = 9;
        let mut b = record();
        b.offset = 8;
        let mut c = record();
        c.partition = 0;
        c.offset = 3;
        let points = rewind_points(&[a, b, c]);
        assert_eq!(points.get(&TopicPartition::new("t", 2)), Some(&8));
        assert_eq!(points.get(&TopicPartition::new("t", 0)), Some(&3));
        assert!(rewind_points(&[]).is_empty());
    }
}
