//! The partitions this broker hosts. It reconciles them with each new metadata image:
//! opens logs for partitions assigned here, applies leadership and config changes, and
//! deletes the logs of topics that are gone.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use spate_log::LogDir;
use spate_metadata::topic_defaults::TopicDefaults;
use spate_metadata::MetadataImage;

use spate_metadata::ids::NodeId;

use crate::partition::{
    Assignment, LogFailures, Partition, PartitionSettings, RoleChange, TopicPartition,
};
use crate::topic_config;

/// File in each partition directory naming the topic id it belongs to (as KIP-516).
const PARTITION_METADATA: &str = "partition.metadata";

/// Hosts and reconciles this broker's partitions.
pub struct ReplicaManager {
    node_id: i32,
    log_dir: LogDir,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Assigned partitions whose log could not be opened, with their topic ids.
    failed_opens: RwLock<BTreeMap<TopicPartition, [u8; 16]>>,
    /// Raised whenever a log fails (at open or later).
    failures: Arc<LogFailures>,
    /// Topic configs' broker-wide defaults.
    topic_defaults: TopicDefaults,
}

impl ReplicaManager {
    /// A manager keeping partition logs under `log_dir`.
    pub fn new(node_id: i32, log_dir: LogDir, topic_defaults: TopicDefaults) -> Self {
        ReplicaManager {
            topic_defaults,
            node_id,
            log_dir,
            partitions: RwLock::new(HashMap::new()),
            failed_opens: RwLock::new(BTreeMap::new()),
            failures: Arc::default(),
        }
    }

    /// The replicas this broker cannot serve, as (topic id, partition): logs that failed
    /// (I/O or fsync error) and logs that did not open. Kafka reports failed log
    /// directories; here a partition directory is the unit that fails.
    pub fn offline_replicas(&self) -> BTreeSet<([u8; 16], i32)> {
        let mut out: BTreeSet<([u8; 16], i32)> = self
            .failed_opens
            .read()
            .iter()
            .map(|(tp, id)| (*id, tp.partition))
            .collect();
        for p in self.partitions.read().values() {
            if p.is_failed() {
                out.insert((p.topic_id, p.tp.partition));
            }
        }
        out
    }

    /// The replicas whose log lost its tail when it opened (see
    /// [`Partition::recovery_cut`]), as (topic id, partition).
    pub fn recovered_with_loss(&self) -> BTreeSet<([u8; 16], i32)> {
        self.partitions
            .read()
            .values()
            .filter(|p| p.recovery_cut())
            .map(|p| (p.topic_id, p.tp.partition))
            .collect()
    }

    /// Raised whenever a log fails.
    pub fn failures(&self) -> &LogFailures {
        &self.failures
    }

    /// The local replica of `topic`/`partition`, if hosted here.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        self.partitions.read().get(&tp).cloned()
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Brings the hosted partitions in line with `image` (blocking file I/O: call from a
    /// blocking context or accept the short stall on the metadata task). Returns the
    /// role changes, for the fetchers.
    pub fn apply_image(
        &self,
        image: &MetadataImage,
        now_ms: i64,
    ) -> Vec<(Arc<Partition>, RoleChange)> {
        let local = NodeId(self.node_id);
        let mut wanted: HashMap<TopicPartition, ([u8; 16], Assignment)> = HashMap::new();
        for topic in image.topics().values() {
            for (index, p) in &topic.partitions {
                if p.replicas.contains(&local) {
                    let tp = TopicPartition {
                        topic: topic.name.clone(),
                        partition: *index,
                    };
                    let assignment = Assignment {
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        leader: p.leader,
                        leader_epoch: p.leader_epoch.0,
                        partition_epoch: p.partition_epoch.0,
                    };
                    wanted.insert(tp, (*topic.id.0.as_bytes(), assignment));
                }
            }
        }
        // Drop partitions no longer assigned here (topic deleted, reassigned, or re-created
        // with a new id).
        let stale: Vec<(TopicPartition, Arc<Partition>)> = self
            .partitions
            .read()
            .iter()
            .filter(|(tp, p)| wanted.get(*tp).is_none_or(|(id, _)| *id != p.topic_id))
            .map(|(tp, p)| (tp.clone(), p.clone()))
            .collect();
        self.failed_opens
            .write()
            .retain(|tp, id| wanted.get(tp).is_some_and(|(want, _)| want == id));
        let mut changes = Vec::new();
        for (tp, partition) in stale {
            self.partitions.write().remove(&tp);
            if let Err(e) = partition.close() {
                tracing::warn!(partition = %tp, error = %e, "closing removed partition");
            }
            remove_dir(&self.partition_dir(&tp));
            tracing::info!(partition = %tp, "removed partition log");
            changes.push((partition, RoleChange::Leaderless));
        }
        for (tp, (topic_id, assignment)) in wanted {
            let configs = topic_config::effective(image, &tp.topic, &self.topic_defaults);
            let existing = self.partitions.read().get(&tp).cloned();
            let partition = match existing {
                Some(p) => {
                    p.update_config(
                        topic_config::log_config(&configs),
                        PartitionSettings::from_configs(&configs),
                    );
                    p
                }
                None => match self.open_partition(&tp, topic_id, &configs, now_ms) {
                    Ok(p) => {
                        self.failed_opens.write().remove(&tp);
                        p
                    }
                    Err(e) => {
                        let first = self
                            .failed_opens
                            .write()
                            .insert(tp.clone(), topic_id)
                            .is_none();
                        if first {
                            tracing::error!(partition = %tp, error = %e, "cannot open partition log; offline on this broker");
                            self.failures.raise();
                        }
                        continue;
                    }
                },
            };
            match partition.apply_assignment(&assignment, now_ms) {
                Ok(RoleChange::Unchanged) => {}
                Ok(change) => changes.push((partition, change)),
                Err(e) => partition.fail(format!("cannot take the assigned role: {e}")),
            }
        }
        changes
    }

    fn open_partition(
        &self,
        tp: &TopicPartition,
        topic_id: [u8; 16],
        configs: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> crate::error::Result<Arc<Partition>> {
        let dir = self.partition_dir(tp);
        match read_topic_id(&dir) {
            Some(id) if id != topic_id => {
                // A topic of the same name existed before: its data is not ours.
                tracing::info!(partition = %tp, "discarding log of an earlier topic with this name");
                remove_dir(&dir);
            }
            _ => {}
        }
        dir.create().map_err(spate_log::LogError::from)?;
        write_topic_id(&dir, topic_id).map_err(spate_log::LogError::from)?;
        let partition = Partition::open(
            dir,
            tp.clone(),
            topic_id,
            NodeId(self.node_id),
            topic_config::log_config(configs),
            PartitionSettings::from_configs(configs),
            now_ms,
            Some(self.failures.clone()),
        )?;
        self.partitions
            .write()
            .insert(tp.clone(), partition.clone());
        tracing::info!(partition = %tp, leo = partition.log_end_offset(), "opened partition log");
        Ok(partition)
    }

    fn partition_dir(&self, tp: &TopicPartition) -> LogDir {
        self.log_dir.child(&partition_dir_name(tp))
    }

    /// Deletes partition directories on disk that no topic in `image` owns (topics
    /// deleted while this broker was down). Call once a full image is known.
    pub fn remove_orphans(&self, image: &MetadataImage) {
        let Ok(entries) = self.log_dir.list() else {
            return;
        };
        let hosted: Vec<String> = self
            .partitions
            .read()
            .keys()
            .map(partition_dir_name)
            .collect();
        for name in entries {
            let Some(name) = name.to_str() else {
                continue;
            };
            if hosted.iter().any(|h| h == name) {
                continue;
            }
            // Anything without a readable partition.metadata (a plain file, a directory
            // not ours) is left alone.
            let dir = self.log_dir.child(name);
            let Some(id) = read_topic_id(&dir) else {
                continue;
            };
            let owned = image.topics().values().any(|t| *t.id.0.as_bytes() == id);
            if !owned {
                tracing::info!(dir = %dir.path().display(), "removing log of a deleted topic");
                remove_dir(&dir);
            }
        }
    }

    /// Periodic interval flushes and checkpoints; retention too when `retention` is set.
    pub fn maintain(&self, now_ms: i64, retention: bool) {
        for p in self.all() {
            if retention {
                p.enforce_retention(now_ms);
            }
            p.maintain(now_ms);
        }
    }

    /// Closes every log cleanly (shutdown).
    pub fn close_all(&self) {
        let partitions: Vec<_> = self.partitions.write().drain().collect();
        for (tp, p) in partitions {
            if let Err(e) = p.close() {
                tracing::warn!(partition = %tp, error = %e, "unclean close");
            }
        }
    }
}

/// The directory name of a partition's log (Kafka's `topic-partition`).
fn partition_dir_name(tp: &TopicPartition) -> String {
    format!("{}-{}", tp.topic, tp.partition)
}

fn read_topic_id(dir: &LogDir) -> Option<[u8; 16]> {
    let bytes = dir.read_if_present(PARTITION_METADATA).ok()??;
    let text = String::from_utf8(bytes).ok()?;
    let hex = text.lines().find_map(|l| l.strip_prefix("topic_id: "))?;
    uuid::Uuid::parse_str(hex.trim())
        .ok()
        .map(|u| *u.as_bytes())
}

fn write_topic_id(dir: &LogDir, id: [u8; 16]) -> std::io::Result<()> {
    let text = format!("version: 0\ntopic_id: {}\n", uuid::Uuid::from_bytes(id));
    if dir
        .read_if_present(PARTITION_METADATA)
        .ok()
        .flatten()
        .as_deref()
        == Some(text.as_bytes())
    {
        return Ok(());
    }
    dir.write_atomic(PARTITION_METADATA, text.as_bytes())
}

fn remove_dir(dir: &LogDir) {
    if let Err(e) = dir.remove_all() {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.path().display(), error = %e, "cannot remove directory");
        }
    }
}
