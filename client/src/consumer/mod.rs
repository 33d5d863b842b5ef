//! An assign-only consumer: positions per partition, a Fetch per leader per poll, records
//! decoded from any compression; and a group consumer on top of it.
//!
//! - [`decode`]: record batches to records, skipping below the position.
//! - [`fetch`]: Fetch request building and response splitting.
//! - [`assignor`]: the consumer protocol's subscription/assignment bytes, RANGE assignor.
//! - [`coordinator`]: finding the group coordinator, error reactions, the heartbeat task.
//! - [`group`]: the classic-protocol group consumer (join, sync, commit, leave).

pub mod assignor;
pub mod coordinator;
pub mod decode;
pub mod fetch;
pub mod group;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::join_all;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

pub use decode::{ConsumerRecord, TimestampKind};
pub use group::{GroupConsumer, GroupConsumerConfig};

use crate::admin::offsets::{list_offsets, OffsetSpec};
use crate::cluster::Cluster;
use crate::config::{ConsumerConfig, OffsetReset, StartOffset};
use crate::error::{Error, Result};
use crate::types::{NodeId, TopicPartition};

/// A consumer of explicitly assigned partitions.
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    positions: BTreeMap<TopicPartition, i64>,
    high_watermarks: HashMap<TopicPartition, i64>,
    failures: u32,
}

impl Consumer {
    /// Connects to the cluster.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Self::with_cluster(cluster, config))
    }

    /// A consumer over an existing cluster handle.
    pub fn with_cluster(cluster: Arc<Cluster>, config: ConsumerConfig) -> Consumer {
        Consumer {
            cluster,
            config,
            positions: BTreeMap::new(),
            high_watermarks: HashMap::new(),
            failures: 0,
        }
    }

    /// The cluster handle.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Adds partitions, each starting at `start` (resolved now with ListOffsets).
    pub async fn assign(
        &mut self,
        partitions: &[TopicPartition],
        start: StartOffset,
    ) -> Result<()> {
        let resolved = self.resolve(partitions, start).await?;
        self.positions.extend(resolved);
        Ok(())
    }

    /// Assigns every partition of `topic`; returns them.
    pub async fn assign_topic(
        &mut self,
        topic: &str,
        start: StartOffset,
    ) -> Result<Vec<TopicPartition>> {
        let n = self.cluster.partition_count(topic).await?;
        let name: Arc<str> = Arc::from(topic);
        let tps: Vec<TopicPartition> = (0..n as i32)
            .map(|p| TopicPartition {
                topic: name.clone(),
                partition: p,
            })
            .collect();
        self.assign(&tps, start).await?;
        Ok(tps)
    }

    /// Drops partitions from the assignment.
    pub fn unassign(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.positions.remove(tp);
        }
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    /// Moves the next fetch of `tp` to `offset` (assigning it if needed).
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) {
        self.positions.insert(tp.clone(), offset);
    }

    /// The offset the next record of `tp` will have.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    /// The high watermark last seen for `tp` (for lag: `hw - position`).
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.high_watermarks.get(tp).copied()
    }

    /// One fetch round: a Fetch to every leader at once; returns the records they had (empty
    /// after `max_wait` with nothing new). Transient errors are retried on the next poll;
    /// after `retries` failing polls in a row the error is returned.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        if self.positions.is_empty() {
            return Err(Error::InvalidArgument("no partitions assigned".into()));
        }
        let mut meta = self.cluster.metadata();
        if self
            .positions
            .keys()
            .any(|tp| meta.leader(&tp.topic, tp.partition).is_err())
        {
            // First poll after assign, or a leader moved: look it up before fetching rather
            // than spend this poll on nothing.
            if let Ok(fresh) = self.cluster.refresh(Some(&self.topics())).await {
                meta = fresh;
            }
        }
        let mut groups: BTreeMap<NodeId, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        let mut stale: Option<Error> = None;
        for (tp, offset) in &self.positions {
            match meta.leader(&tp.topic, tp.partition) {
                Ok(node) => groups.entry(node).or_default().push((tp.clone(), *offset)),
                Err(e) => stale = Some(e),
            }
        }
        let this = &*self;
        let fetches = groups.into_iter().map(|(node, asked)| async move {
            let r = this.fetch_from(node, &asked).await;
            (asked, r)
        });
        let answers = join_all(fetches).await;
        let mut records = Vec::new();
        let mut resets = Vec::new();
        for (asked, answer) in answers {
            let parts = match answer {
                Ok(parts) => parts,
                Err(e) if e.is_retriable() => {
                    stale = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for part in parts {
                let asked_at = asked
                    .iter()
                    .find(|(tp, _)| *tp == part.tp)
                    .map_or(0, |(_, o)| *o);
                match part.error {
                    None => {}
                    Some(e) if e.kafka_code() == Some(ResponseError::OffsetOutOfRange) => {
                        resets.push((part.tp, e));
                        continue;
                    }
                    Some(e) if e.is_retriable() => {
                        stale = Some(e);
                        continue;
                    }
                    Some(e) => return Err(e),
                }
                self.high_watermarks
                    .insert(part.tp.clone(), part.high_watermark);
                let decoded = decode::decode_records(
                    &part.tp.topic,
                    part.tp.partition,
                    part.records,
                    asked_at,
                )?;
                if decoded.only_partial {
                    return Err(Error::protocol(format!(
                        "{}: the batch at offset {asked_at} is larger than partition_max_bytes {} and the broker sent it cut short",
                        part.tp, self.config.partition_max_bytes
                    )));
                }
                if let (Some(next), Some(pos)) =
                    (decoded.next_offset, self.positions.get_mut(&part.tp))
                {
                    // Only move forward, and only if nobody seeked meanwhile.
                    if *pos == asked_at && next > *pos {
                        *pos = next;
                    }
                }
                records.extend(decoded.records);
            }
        }
        for (tp, e) in resets {
            self.reset_out_of_range(&tp, e).await?;
        }
        match stale {
            None => self.failures = 0,
            Some(e) => {
                self.failures += 1;
                if self.failures > self.cluster.config().retries {
                    return Err(e);
                }
                tracing::debug!(error = %e, "fetch hit stale metadata; refreshing");
                let topics: Vec<String> = self.topics();
                tokio::time::sleep(self.cluster.config().backoff(self.failures - 1)).await;
                let _ = self.cluster.refresh(Some(&topics)).await;
            }
        }
        Ok(records)
    }

    async fn fetch_from(
        &self,
        node: NodeId,
        asked: &[(TopicPartition, i64)],
    ) -> Result<Vec<fetch::PartitionFetch>> {
        let conn = self.cluster.connection(node).await?;
        let version = conn.api_version(ApiKey::Fetch)?;
        let req = fetch::build_request(&self.config, asked);
        let timeout = self
            .cluster
            .config()
            .request_timeout
            .saturating_add(self.config.max_wait);
        let resp = conn.request_with_timeout(version, &req, timeout).await?;
        fetch::split_response(resp, asked)
    }

    async fn reset_out_of_range(&mut self, tp: &TopicPartition, e: Error) -> Result<()> {
        let start = match self.config.offset_reset {
            OffsetReset::Earliest => StartOffset::Earliest,
            OffsetReset::Latest => StartOffset::Latest,
            OffsetReset::None => return Err(e),
        };
        tracing::info!(%tp, ?start, "offset out of range; resetting");
        let resolved = self.resolve(std::slice::from_ref(tp), start).await?;
        self.positions.extend(resolved);
        Ok(())
    }

    /// Turns a start position into offsets with ListOffsets.
    async fn resolve(
        &self,
        partitions: &[TopicPartition],
        start: StartOffset,
    ) -> Result<Vec<(TopicPartition, i64)>> {
        let spec = match start {
            StartOffset::Offset(o) => {
                return Ok(partitions.iter().map(|tp| (tp.clone(), o)).collect())
            }
            StartOffset::Earliest => OffsetSpec::Earliest,
            StartOffset::Latest => OffsetSpec::Latest,
            StartOffset::Timestamp(t) => OffsetSpec::Timestamp(t),
        };
        let specs: Vec<(TopicPartition, OffsetSpec)> =
            partitions.iter().map(|tp| (tp.clone(), spec)).collect();
        let listed = list_offsets(&self.cluster, &specs, self.config.isolation_level).await?;
        let mut out = Vec::with_capacity(listed.len());
        let mut no_match = Vec::new();
        for (tp, r) in listed {
            let offset = r?.offset;
            if offset < 0 {
                // No record at or after the timestamp: start at the end, as the Java client does.
                no_match.push(tp);
            } else {
                out.push((tp, offset));
            }
        }
        if !no_match.is_empty() {
            let specs: Vec<_> = no_match
                .iter()
                .map(|tp| (tp.clone(), OffsetSpec::Latest))
                .collect();
            for (tp, r) in list_offsets(&self.cluster, &specs, self.config.isolation_level).await? {
                out.push((tp, r?.offset));
            }
        }
        Ok(out)
    }

    fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .positions
            .keys()
            .map(|tp| tp.topic.to_string())
            .collect();
        t.dedup();
        t
    }
}
