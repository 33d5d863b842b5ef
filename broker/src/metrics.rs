//! Prometheus metrics of one node (docs/architecture.md §9), registered in one `prometheus-client`
//! registry and rendered in the text exposition format for `/metrics`. Counters and
//! histograms are updated where things happen; gauges that describe state (partitions,
//! lag, log sizes) are computed at scrape time from the broker's state.
//!
//! Names, after the `spate_` prefix (counters also get `_total`):
//! - requests: `kafka_requests`, `kafka_request_errors` and the histogram
//!   `kafka_request_duration_seconds`, labelled `api` and `version` (`server::dispatch`);
//! - traffic: `topic_{bytes,records}_{in,out}` by `topic` (produce and consumer fetch);
//! - `produce_purgatory_size`: produce partitions waiting for their acks;
//! - partitions (scrape time): `partitions_{led,under_replicated,offline,under_min_isr}`,
//!   `replication_follower_lag_records`, `group_lag_records`, `log_size_bytes`,
//!   `log_segments`;
//! - `isr_shrinks`, `isr_expands` (committed changes), `broker_fencings` (fence events
//!   seen in the metadata log);
//! - the log cleaner: `log_cleaner_passes`, `log_cleaner_bytes_{read,written}`,
//!   `log_cleaner_records_removed`, `log_cleaner_errors`,
//!   `log_cleaner_pass_duration_seconds`, `log_cleaner_uncleanable_partitions`, and at
//!   scrape time `log_cleaner_dirty_ratio` of each compacted partition;
//! - `log_fsyncs` and `log_fsync_duration_seconds`, process-wide ([`LOG_METRICS`]: the
//!   flusher only holds its partition);
//! - controller gauges are the node wiring's (the `spate` crate's `controller_metrics`),
//!   appended by [`render_node`].
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use spate_metadata::MetadataImage;

use crate::partition::Partition;

/// What the scrape-time gauges are computed from (the broker state builds it, so this
/// module does not depend on it).
pub struct ScrapeSources {
    /// The metadata image this broker follows.
    pub image: Arc<MetadataImage>,
    /// The partitions hosted here.
    pub partitions: Vec<Arc<Partition>>,
    /// This broker's id.
    pub node_id: i32,
    /// (group, topic, partition, committed offset) of the groups coordinated here.
    pub committed_offsets: Vec<(String, String, i32, i64)>,
    /// Replicas hosted here whose log failed or did not open.
    pub offline_replicas: usize,
    /// Logs failed since the broker started.
    pub log_failures: u64,
    /// Kafka client connections open.
    pub open_connections: usize,
    /// Request bytes in flight (`queued.max.request.bytes` spent).
    pub queued_request_bytes: usize,
    /// Fetch response bytes held (`fetch.memory.max.bytes` spent).
    pub fetch_memory_bytes: usize,
}

/// Latency buckets, 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `api`, `version`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
pub struct ApiLabels {
    /// Kafka API name (`Produce`, `Fetch`, ...).
    pub api: String,
    /// Request version.
    pub version: i16,
}

/// `limit`: the setting's name.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
pub struct LimitLabels {
    /// Kafka's name of the limit (`max.connections`, `queued.max.request.bytes`, ...).
    pub limit: String,
}

/// `topic`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
pub struct TopicLabels {
    /// Topic name.
    pub topic: String,
}

/// `topic`, `partition`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
pub struct PartitionLabels {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// `topic`, `partition`, `follower`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
pub struct FollowerLabels {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Follower's node id.
    pub follower: i32,
}

/// `group`, `topic`, `partition`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
pub struct GroupLabels {
    /// Consumer group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Log metrics updated where no `BrokerState` is at hand (the per-partition flusher).
/// Process-wide: several brokers in one process (tests) share them.
pub struct LogMetrics {
    fsyncs: Counter,
    fsync_duration: Histogram,
}

impl LogMetrics {
    /// Records one fsync that took `seconds`.
    pub fn fsync(&self, seconds: f64) {
        self.fsyncs.inc();
        self.fsync_duration.observe(seconds);
    }
}

/// The process's fsync metrics, registered into every [`Metrics`].
pub static LOG_METRICS: LazyLock<LogMetrics> = LazyLock::new(|| LogMetrics {
    fsyncs: Counter::default(),
    fsync_duration: latency_histogram(),
});

/// One produce partition in the purgatory; leaves it when dropped.
pub struct PurgatoryEntry(Gauge);

impl Drop for PurgatoryEntry {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<ApiLabels, Counter>,
    request_errors: Family<ApiLabels, Counter>,
    request_duration: HistogramFamily<ApiLabels>,
    bytes_in: Family<TopicLabels, Counter>,
    records_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    records_out: Family<TopicLabels, Counter>,
    purgatory: Gauge,
    partitions_led: Gauge,
    under_replicated: Gauge,
    offline: Gauge,
    under_min_isr: Gauge,
    isr_shrinks: Counter,
    isr_expands: Counter,
    follower_lag: Family<FollowerLabels, Gauge>,
    group_lag: Family<GroupLabels, Gauge>,
    log_size: Family<PartitionLabels, Gauge>,
    log_segments: Family<PartitionLabels, Gauge>,
    fencings: Counter,
    offline_replicas: Gauge,
    log_failures: Counter,
    /// Failures already counted into `log_failures`.
    log_failures_seen: std::sync::atomic::AtomicU64,
    limit_hits: Family<LimitLabels, Counter>,
    open_connections: Gauge,
    queued_request_bytes: Gauge,
    fetch_memory_bytes: Gauge,
    cleaner_passes: Counter,
    cleaner_bytes_read: Counter,
    cleaner_bytes_written: Counter,
    cleaner_records_removed: Counter,
    cleaner_errors: Counter,
    cleaner_pass_duration: Histogram,
    cleaner_uncleanable: Gauge,
    dirty_ratio: Family<PartitionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("spate");
        let m = Metrics {
            requests: Family::default(),
            request_errors: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            records_in: Family::default(),
            bytes_out: Family::default(),
            records_out: Family::default(),
            purgatory: Gauge::default(),
            partitions_led: Gauge::default(),
            under_replicated: Gauge::default(),
            offline: Gauge::default(),
            under_min_isr: Gauge::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            follower_lag: Family::default(),
            group_lag: Family::default(),
            log_size: Family::default(),
            log_segments: Family::default(),
            fencings: Counter::default(),
            offline_replicas: Gauge::default(),
            log_failures: Counter::default(),
            log_failures_seen: Default::default(),
            limit_hits: Family::default(),
            open_connections: Gauge::default(),
            queued_request_bytes: Gauge::default(),
            fetch_memory_bytes: Gauge::default(),
            cleaner_passes: Counter::default(),
            cleaner_bytes_read: Counter::default(),
            cleaner_bytes_written: Counter::default(),
            cleaner_records_removed: Counter::default(),
            cleaner_errors: Counter::default(),
            cleaner_pass_duration: latency_histogram(),
            cleaner_uncleanable: Gauge::default(),
            dirty_ratio: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "kafka_requests",
            "Kafka requests handled",
            m.requests.clone(),
        );
        r.register(
            "kafka_request_errors",
            "Kafka requests answered with any error code, or that failed as a whole (undecodable, unsupported version, connection closed)",
            m.request_errors.clone(),
        );
        r.register(
            "kafka_request_duration_seconds",
            "Time from decoding a Kafka request to its response being ready",
            m.request_duration.clone(),
        );
        r.register(
            "topic_bytes_in",
            "Bytes appended by producers",
            m.bytes_in.clone(),
        );
        r.register(
            "topic_records_in",
            "Records appended by producers",
            m.records_in.clone(),
        );
        r.register(
            "topic_bytes_out",
            "Bytes sent to consumers",
            m.bytes_out.clone(),
        );
        r.register(
            "topic_records_out",
            "Records sent to consumers",
            m.records_out.clone(),
        );
        r.register(
            "produce_purgatory_size",
            "Produce partitions waiting for their acks",
            m.purgatory.clone(),
        );
        r.register(
            "partitions_led",
            "Partitions this broker leads",
            m.partitions_led.clone(),
        );
        r.register(
            "partitions_under_replicated",
            "Led partitions whose ISR is smaller than their replica set",
            m.under_replicated.clone(),
        );
        r.register(
            "partitions_offline",
            "Partitions without a leader in the metadata image",
            m.offline.clone(),
        );
        r.register(
            "partitions_under_min_isr",
            "Led partitions whose ISR is below min.insync.replicas",
            m.under_min_isr.clone(),
        );
        r.register(
            "isr_shrinks",
            "ISR shrinks committed by the controller",
            m.isr_shrinks.clone(),
        );
        r.register(
            "isr_expands",
            "ISR expansions committed by the controller",
            m.isr_expands.clone(),
        );
        r.register(
            "replication_follower_lag_records",
            "Leader's log end offset minus the follower's",
            m.follower_lag.clone(),
        );
        r.register(
            "group_lag_records",
            "High watermark minus the group's committed offset (groups coordinated here, partitions with a replica here)",
            m.group_lag.clone(),
        );
        r.register(
            "log_size_bytes",
            "Size of the partition's log",
            m.log_size.clone(),
        );
        r.register(
            "log_segments",
            "Segments of the partition's log",
            m.log_segments.clone(),
        );
        r.register(
            "log_cleaner_passes",
            "Cleaning passes installed on compacted logs",
            m.cleaner_passes.clone(),
        );
        r.register(
            "log_cleaner_bytes_read",
            "Segment bytes the log cleaner read",
            m.cleaner_bytes_read.clone(),
        );
        r.register(
            "log_cleaner_bytes_written",
            "Segment bytes the log cleaner wrote",
            m.cleaner_bytes_written.clone(),
        );
        r.register(
            "log_cleaner_records_removed",
            "Records the log cleaner dropped (superseded, keyless, expired tombstones)",
            m.cleaner_records_removed.clone(),
        );
        r.register(
            "log_cleaner_errors",
            "Cleaning passes that failed (the log is then left uncleanable until restart)",
            m.cleaner_errors.clone(),
        );
        r.register(
            "log_cleaner_pass_duration_seconds",
            "Time one cleaning pass took, reading and writing included",
            m.cleaner_pass_duration.clone(),
        );
        r.register(
            "log_cleaner_uncleanable_partitions",
            "Compacted partitions the cleaner gave up on after a failed pass",
            m.cleaner_uncleanable.clone(),
        );
        r.register(
            "log_cleaner_dirty_ratio",
            "Dirty share of a compacted partition's cleanable log (below the high watermark)",
            m.dirty_ratio.clone(),
        );
        r.register(
            "broker_fencings",
            "Brokers fenced, as seen in the metadata log by this node",
            m.fencings.clone(),
        );
        r.register(
            "log_failures",
            "Partition logs of this broker that failed (I/O or fsync error, or did not open) and went offline",
            m.log_failures.clone(),
        );
        r.register(
            "replicas_offline",
            "Replicas hosted here whose log failed or could not be opened (Kafka's OfflineReplicaCount)",
            m.offline_replicas.clone(),
        );
        r.register(
            "limit_hits",
            "Times a connection or memory limit was hit (the connection refused or closed, or its reading or fetching held back)",
            m.limit_hits.clone(),
        );
        r.register(
            "connections_open",
            "Kafka client connections open",
            m.open_connections.clone(),
        );
        r.register(
            "queued_request_bytes",
            "Request bytes in flight, of queued.max.request.bytes",
            m.queued_request_bytes.clone(),
        );
        r.register(
            "fetch_memory_bytes",
            "Consumer fetch response bytes being read or written, of fetch.memory.max.bytes",
            m.fetch_memory_bytes.clone(),
        );
        r.register(
            "log_fsyncs",
            "Log fsyncs (process-wide)",
            LOG_METRICS.fsyncs.clone(),
        );
        r.register(
            "log_fsync_duration_seconds",
            "Duration of log fsyncs (process-wide)",
            LOG_METRICS.fsync_duration.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one hit of the limit called `limit`.
    pub fn limit_hit(&self, limit: &str) {
        self.limit_hits
            .get_or_create(&LimitLabels {
                limit: limit.to_string(),
            })
            .inc();
    }

    /// Records one request: its API name, version, outcome and latency.
    pub fn record_request(&self, api: &str, version: i16, error: bool, seconds: f64) {
        let labels = ApiLabels {
            api: api.to_string(),
            version,
        };
        self.requests.get_or_create(&labels).inc();
        // Created at 0 with the first request, so rates and dashboards see the series.
        let errors = self.request_errors.get_or_create(&labels);
        if error {
            errors.inc();
        }
        self.request_duration
            .get_or_create(&labels)
            .observe(seconds);
    }

    /// Records a successful produce append.
    pub fn bytes_in(&self, topic: &str, bytes: u64, records: u64) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_in.get_or_create(&labels).inc_by(bytes);
        self.records_in.get_or_create(&labels).inc_by(records);
    }

    /// Records data sent to a consumer.
    pub fn bytes_out(&self, topic: &str, bytes: u64, records: u64) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_out.get_or_create(&labels).inc_by(bytes);
        self.records_out.get_or_create(&labels).inc_by(records);
    }

    /// A produce partition starts waiting for its acks.
    pub fn purgatory_enter(&self) {
        self.purgatory.inc();
    }

    /// A produce partition stops waiting for its acks.
    pub fn purgatory_exit(&self) {
        self.purgatory.dec();
    }

    /// A produce partition waiting for its acks, until the returned guard is dropped.
    pub fn purgatory_entry(&self) -> PurgatoryEntry {
        self.purgatory.inc();
        PurgatoryEntry(self.purgatory.clone())
    }

    /// A committed ISR change: `"shrink"` or `"expand"`.
    pub fn isr_change(&self, kind: &str) {
        match kind {
            "shrink" => self.isr_shrinks.inc(),
            _ => self.isr_expands.inc(),
        };
    }

    /// Records one fsync (same as [`LOG_METRICS`]`.fsync`).
    pub fn fsync(&self, seconds: f64) {
        LOG_METRICS.fsync(seconds);
    }

    /// A broker went from unfenced to fenced in the metadata log.
    pub fn broker_fenced(&self) {
        self.fencings.inc();
    }

    /// Records one installed cleaning pass.
    pub fn cleaner_pass(&self, stats: &spate_log::CleanStats, seconds: f64) {
        self.cleaner_passes.inc();
        self.cleaner_bytes_read.inc_by(stats.bytes_read);
        self.cleaner_bytes_written.inc_by(stats.bytes_written);
        self.cleaner_records_removed.inc_by(stats.records_removed);
        self.cleaner_pass_duration.observe(seconds);
    }

    /// Records a failed cleaning pass; `uncleanable` logs are given up on now.
    pub fn cleaner_failed(&self, uncleanable: usize) {
        self.cleaner_errors.inc();
        self.cleaner_uncleanable.set(uncleanable as i64);
    }

    /// The text exposition of every metric, scrape-time gauges refreshed from `sources`.
    pub fn render(&self, sources: &ScrapeSources) -> String {
        let mut out = String::new();
        self.encode_into(sources, &mut out);
        if let Err(e) = prometheus_client::encoding::text::encode_eof(&mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// Refreshes the gauges and encodes the registry without the final `# EOF`.
    fn encode_into(&self, sources: &ScrapeSources, out: &mut String) {
        self.refresh(sources);
        if let Err(e) = prometheus_client::encoding::text::encode_registry(out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
    }

    /// Recomputes the scrape-time gauges from the broker's state.
    fn refresh(&self, state: &ScrapeSources) {
        self.follower_lag.clear();
        self.group_lag.clear();
        self.log_size.clear();
        self.log_segments.clear();
        self.dirty_ratio.clear();
        let image = &state.image;
        let now = crate::clock::now_ms();
        let cleaner = spate_log::CleanerConfig::default();
        let offline = image
            .topics()
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.leader.is_none())
            .count();
        self.offline.set(offline as i64);
        self.offline_replicas.set(state.offline_replicas as i64);
        self.open_connections.set(state.open_connections as i64);
        self.queued_request_bytes
            .set(state.queued_request_bytes as i64);
        self.fetch_memory_bytes.set(state.fetch_memory_bytes as i64);
        let seen = self
            .log_failures_seen
            .swap(state.log_failures, std::sync::atomic::Ordering::Relaxed);
        self.log_failures
            .inc_by(state.log_failures.saturating_sub(seen));
        let (mut led, mut under_replicated, mut under_min_isr) = (0i64, 0i64, 0i64);
        let mut high_watermarks: HashMap<(String, i32), i64> = HashMap::new();
        for p in &state.partitions {
            let (topic, partition) = (p.tp.topic.clone(), p.tp.partition);
            let (size, segments) = p.storage_stats();
            let labels = PartitionLabels {
                topic: topic.clone(),
                partition,
            };
            self.log_size.get_or_create(&labels).set(size as i64);
            self.log_segments
                .get_or_create(&labels)
                .set(segments as i64);
            if let Some((dirtiness, _)) = p.cleaning_state(now, &cleaner) {
                self.dirty_ratio
                    .get_or_create(&labels)
                    .set(dirtiness.ratio());
            }
            // Group lag uses the local replica's high watermark, leader or follower (a
            // follower's trails the leader's by at most one fetch round).
            high_watermarks.insert((topic.clone(), partition), p.high_watermark());
            let leader = p.leader_state();
            if !leader.is_leader {
                continue;
            }
            led += 1;
            if let Some(pi) = image
                .topic_by_name(&topic)
                .and_then(|t| t.partitions.get(&partition))
            {
                if pi.isr.len() < pi.replicas.len() {
                    under_replicated += 1;
                }
            }
            if (leader.isr_size as i64) < p.settings().min_insync_replicas as i64 {
                under_min_isr += 1;
            }
            let leos = p.replica_log_end_offsets();
            let local = state.node_id;
            let leader_leo = leos
                .iter()
                .find(|(id, _)| id.0 == local)
                .and_then(|(_, leo)| *leo);
            for (id, leo) in &leos {
                if id.0 == local {
                    continue;
                }
                if let (Some(leader_leo), Some(leo)) = (leader_leo, leo) {
                    let labels = FollowerLabels {
                        topic: topic.clone(),
                        partition,
                        follower: id.0,
                    };
                    self.follower_lag
                        .get_or_create(&labels)
                        .set((leader_leo - leo).max(0));
                }
            }
        }
        self.partitions_led.set(led);
        self.under_replicated.set(under_replicated);
        self.under_min_isr.set(under_min_isr);
        for (group, topic, partition, committed) in state.committed_offsets.iter().cloned() {
            let Some(hw) = high_watermarks.get(&(topic.clone(), partition)) else {
                continue;
            };
            if committed < 0 {
                continue;
            }
            let labels = GroupLabels {
                group,
                topic,
                partition,
            };
            self.group_lag
                .get_or_create(&labels)
                .set((hw - committed).max(0));
        }
    }
}

/// Everything this node exposes on `/metrics`: the broker's metrics when it runs a
/// broker, then what `more` adds (the node's wiring adds the controller's), then `# EOF`.
pub fn render_node(
    broker: Option<(&Metrics, &ScrapeSources)>,
    more: impl FnOnce(&mut String),
) -> String {
    let mut out = String::new();
    if let Some((metrics, sources)) = broker {
        metrics.encode_into(sources, &mut out);
    }
    more(&mut out);
    if let Err(e) = prometheus_client::encoding::text::encode_eof(&mut out) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::BrokerState;

    /// The value of the sample `name{labels}` (labels as rendered, `""` for none).
    fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
        let key = if labels.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{labels}}}")
        };
        text.lines()
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
    }

    fn encode(m: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        out
    }

    #[test]
    fn requests_are_counted_by_api_and_version() {
        let m = Metrics::new();
        m.record_request("Produce", 9, false, 0.002);
        m.record_request("Produce", 9, true, 0.003);
        m.record_request("Fetch", 12, false, 20.0);
        let text = encode(&m);
        let p = r#"api="Produce",version="9""#;
        assert_eq!(sample(&text, "spate_kafka_requests_total", p), Some(2.0));
        assert_eq!(
            sample(&text, "spate_kafka_request_errors_total", p),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "spate_kafka_request_duration_seconds_count", p),
            Some(2.0)
        );
        let b = r#"le="0.0025",api="Produce",version="9""#;
        assert_eq!(
            sample(&text, "spate_kafka_request_duration_seconds_bucket", b),
            Some(1.0)
        );
        let f = r#"le="+Inf",api="Fetch",version="12""#;
        assert_eq!(
            sample(&text, "spate_kafka_request_duration_seconds_bucket", f),
            Some(1.0)
        );
        // Created at 0 with the API's first request, so dashboards see the series.
        assert_eq!(
            sample(
                &text,
                "spate_kafka_request_errors_total",
                r#"api="Fetch",version="12""#
            ),
            Some(0.0)
        );
    }

    #[test]
    fn topic_traffic_and_gauges_render() {
        let m = Metrics::new();
        m.bytes_in("orders", 100, 3);
        m.bytes_in("orders", 50, 1);
        m.bytes_out("orders", 70, 2);
        m.purgatory_enter();
        m.purgatory_enter();
        m.purgatory_exit();
        let waiting = m.purgatory_entry();
        assert_eq!(
            sample(&encode(&m), "spate_produce_purgatory_size", ""),
            Some(2.0)
        );
        drop(waiting);
        m.isr_change("shrink");
        m.isr_change("expand");
        m.isr_change("expand");
        m.broker_fenced();
        let text = encode(&m);
        let t = r#"topic="orders""#;
        assert_eq!(sample(&text, "spate_topic_bytes_in_total", t), Some(150.0));
        assert_eq!(sample(&text, "spate_topic_records_in_total", t), Some(4.0));
        assert_eq!(sample(&text, "spate_topic_bytes_out_total", t), Some(70.0));
        assert_eq!(sample(&text, "spate_topic_records_out_total", t), Some(2.0));
        assert_eq!(sample(&text, "spate_produce_purgatory_size", ""), Some(1.0));
        assert_eq!(sample(&text, "spate_isr_shrinks_total", ""), Some(1.0));
        assert_eq!(sample(&text, "spate_isr_expands_total", ""), Some(2.0));
        assert_eq!(sample(&text, "spate_broker_fencings_total", ""), Some(1.0));
    }

    #[test]
    fn fsyncs_are_counted_process_wide() {
        let m = Metrics::new();
        let before = sample(&encode(&m), "spate_log_fsyncs_total", "").unwrap();
        m.fsync(0.004);
        LOG_METRICS.fsync(0.001);
        let text = encode(&m);
        // Other tests may fsync concurrently: at least ours are counted.
        assert!(sample(&text, "spate_log_fsyncs_total", "").unwrap() >= before + 2.0);
        assert!(sample(&text, "spate_log_fsync_duration_seconds_count", "").unwrap() >= 2.0);
    }

    fn empty_broker(dir: &std::path::Path) -> BrokerState {
        BrokerState::unconnected(dir)
    }

    /// A broker with no partitions renders zeros, and one `# EOF` at the end.
    #[tokio::test]
    async fn render_without_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let state = empty_broker(dir.path());
        state.metrics.record_request("Metadata", 12, false, 0.001);
        let text = state.metrics.render(&state.scrape_sources());
        assert_eq!(sample(&text, "spate_partitions_led", ""), Some(0.0));
        assert_eq!(sample(&text, "spate_partitions_offline", ""), Some(0.0));
        assert_eq!(
            sample(
                &text,
                "spate_kafka_requests_total",
                r#"api="Metadata",version="12""#
            ),
            Some(1.0)
        );
        assert!(text.ends_with("# EOF\n"));
        let node = render_node(Some((&state.metrics, &state.scrape_sources())), |_| {});
        assert_eq!(node.matches("# EOF").count(), 1);
        assert_eq!(render_node(None, |_| {}), "# EOF\n");
    }

    /// Families (labelled metrics) appear once they have a sample; the others always.
    #[test]
    fn every_metric_name_is_exposed() {
        let text = encode(&Metrics::new());
        for name in [
            "spate_produce_purgatory_size",
            "spate_partitions_led",
            "spate_partitions_under_replicated",
            "spate_partitions_offline",
            "spate_partitions_under_min_isr",
            "spate_isr_shrinks_total",
            "spate_isr_expands_total",
            "spate_log_fsyncs_total",
            "spate_broker_fencings_total",
        ] {
            assert!(sample(&text, name, "").is_some(), "{name} missing:\n{text}");
        }
        assert!(text.contains("# TYPE spate_log_fsync_duration_seconds histogram"));
    }
}
