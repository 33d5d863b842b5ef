//! The admin client: topics, configs, offsets, record deletion and the cluster view.
//!
//! - [`topics`]: create, delete, list, describe topics; add partitions.
//! - [`configs`]: DescribeConfigs and IncrementalAlterConfigs.
//! - [`offsets`]: ListOffsets and DeleteRecords (routed to partition leaders).
//! - [`groups`]: consumer groups: coordinator lookup, list, describe, committed offsets,
//!   delete.
//! - [`log_dirs`]: DescribeLogDirs (a broker's log directories and replica sizes).
//!
//! Errors carry the Kafka error code name and the broker's message; calls on several items
//! return one result per item so that one bad topic does not hide the others' outcome.

pub mod configs;
pub mod groups;
pub mod log_dirs;
pub mod offsets;
pub mod topics;

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, DescribeClusterRequest};

pub use configs::{AlterConfigOp, AlterOpType, ConfigEntry, ConfigResource, ConfigSource};
pub use groups::{CommitIdentity, GroupDescription, GroupListing, MemberDescription};
pub use log_dirs::{LogDirDescription, ReplicaLogDir};
pub use offsets::{ListedOffset, OffsetSpec, PartitionResults};
pub use topics::{NewTopic, TopicDescription};

use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::metadata::BrokerInfo;
use crate::types::{NodeId, TopicPartition};

/// Admin operations against one cluster.
#[derive(Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
}

/// What DescribeCluster (or Metadata, on brokers without it) says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: Option<String>,
    /// The controller id the broker reports.
    pub controller: Option<NodeId>,
    /// Live brokers.
    pub brokers: Vec<BrokerInfo>,
}

impl Admin {
    /// Connects to the cluster. Metadata lookups never auto-create topics.
    pub async fn connect(mut config: ClientConfig) -> Result<Admin> {
        config.allow_auto_topic_creation = false;
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
        })
    }

    /// An admin client over an existing cluster handle.
    pub fn with_cluster(cluster: Arc<Cluster>) -> Admin {
        Admin { cluster }
    }

    /// The cluster handle.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Offsets per partition: earliest, latest, max-timestamp or by timestamp.
    pub async fn list_offsets(
        &self,
        specs: &[(TopicPartition, OffsetSpec)],
    ) -> Result<PartitionResults<ListedOffset>> {
        offsets::list_offsets(&self.cluster, specs, 0).await
    }

    /// Log end offsets of broker `node`'s replicas of `partitions` (leader or follower).
    pub async fn replica_log_end_offsets(
        &self,
        node: NodeId,
        partitions: &[TopicPartition],
    ) -> Result<PartitionResults<i64>> {
        offsets::replica_log_end_offsets(&self.cluster, node, partitions).await
    }

    /// Deletes records below the given offsets; returns each partition's new low watermark.
    pub async fn delete_records(
        &self,
        items: &[(TopicPartition, i64)],
    ) -> Result<PartitionResults<i64>> {
        offsets::delete_records(&self.cluster, items).await
    }

    /// Every group every broker coordinates, plus the errors of brokers that did not answer.
    pub async fn list_groups(&self) -> Result<(Vec<GroupListing>, Vec<Error>)> {
        groups::list_groups(&self.cluster).await
    }

    /// State, protocol and members (with their partitions) of `group`.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        groups::describe_group(&self.cluster, group).await
    }

    /// The offsets `group` committed (`partitions = None`: all of them).
    pub async fn committed_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<std::collections::BTreeMap<TopicPartition, i64>> {
        groups::fetch_committed(&self.cluster, group, partitions).await
    }

    /// Overwrites committed offsets from outside the group (generation -1, no member id);
    /// the coordinator accepts this only while the group has no members.
    pub async fn alter_committed_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<PartitionResults<()>> {
        groups::commit_offsets(&self.cluster, group, &CommitIdentity::ADMIN, offsets).await
    }

    /// Deletes groups (each must be empty); one result per group.
    pub async fn delete_groups(&self, groups: &[String]) -> Vec<(String, Result<()>)> {
        groups::delete_groups(&self.cluster, groups).await
    }

    /// Broker `node`'s log directories, their volumes' space and the replicas in them.
    pub async fn describe_log_dirs(&self, node: NodeId) -> Result<Vec<LogDirDescription>> {
        log_dirs::describe_log_dirs(&self.cluster, node).await
    }

    /// Cluster id, controller and brokers.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        self.cluster
            .with_retries(None, || async {
                let conn = self.cluster.any_connection().await?;
                let Ok(version) = conn.api_version(ApiKey::DescribeCluster) else {
                    let meta = self.cluster.refresh(Some(&[])).await?;
                    return Ok(ClusterDescription {
                        cluster_id: meta.cluster_id.clone(),
                        controller: meta.controller,
                        brokers: meta.brokers.values().cloned().collect(),
                    });
                };
                let resp = conn
                    .request(version, &DescribeClusterRequest::default())
                    .await?;
                if let Some(e) = Error::from_code(
                    resp.error_code,
                    resp.error_message.map(|m| m.to_string()),
                    "describe cluster",
                ) {
                    return Err(e);
                }
                Ok(ClusterDescription {
                    cluster_id: Some(resp.cluster_id.to_string()),
                    controller: (resp.controller_id.0 >= 0).then_some(NodeId(resp.controller_id.0)),
                    brokers: resp
                        .brokers
                        .iter()
                        .map(|b| BrokerInfo {
                            id: NodeId(b.broker_id.0),
                            host: b.host.to_string(),
                            port: b.port,
                            rack: b.rack.as_ref().map(|r| r.to_string()),
                        })
                        .collect(),
                })
            })
            .await
    }
}
