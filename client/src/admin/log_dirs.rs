//! DescribeLogDirs: each log directory of one broker, its volume's space, and the size and
//! offset lag of every replica in it (what `kafka-log-dirs --describe` shows).
use kafka_protocol::messages::{ApiKey, DescribeLogDirsRequest};

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::types::{NodeId, TopicPartition};

/// One log directory of a broker.
#[derive(Debug, Clone)]
pub struct LogDirDescription {
    /// Its path as the broker names it.
    pub path: String,
    /// Why the directory is unusable, if it is.
    pub error: Option<Error>,
    /// Size of its volume in bytes (-1: not reported).
    pub total_bytes: i64,
    /// Bytes still free on its volume (-1: not reported).
    pub usable_bytes: i64,
    /// The replicas it holds.
    pub replicas: Vec<ReplicaLogDir>,
}

/// One replica in a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLogDir {
    /// The partition.
    pub partition: TopicPartition,
    /// Bytes of its log on disk.
    pub size_bytes: i64,
    /// How far its log end is behind the high watermark (0 on the leader).
    pub offset_lag: i64,
}

/// Every log directory of broker `node`, with all the replicas it holds.
pub async fn describe_log_dirs(cluster: &Cluster, node: NodeId) -> Result<Vec<LogDirDescription>> {
    let conn = cluster.connection(node).await?;
    let version = conn.api_version(ApiKey::DescribeLogDirs)?;
    // No topic list: every replica of every directory.
    let resp = conn
        .request(
            version,
            &DescribeLogDirsRequest::default().with_topics(None),
        )
        .await?;
    if let Some(e) = Error::from_code(
        resp.error_code,
        None,
        format!("describe log dirs of broker {}", node.0),
    ) {
        return Err(e);
    }
    Ok(resp
        .results
        .into_iter()
        .map(|dir| LogDirDescription {
            error: Error::from_code(dir.error_code, None, format!("log dir {}", dir.log_dir)),
            path: dir.log_dir.to_string(),
            total_bytes: dir.total_bytes,
            usable_bytes: dir.usable_bytes,
            replicas: dir
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(move |p| ReplicaLogDir {
                        partition: TopicPartition::new(t.name.0.as_str(), p.partition_index),
                        size_bytes: p.partition_size,
                        offset_lag: p.offset_lag,
                    })
                })
                .collect(),
        })
        .collect())
}
