//! An acks=all producer load for fault tests: one value at a time to whichever broker
//! leads, recording what was acknowledged where, and the check that every acknowledged
//! value is in the committed log exactly once at its offset.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use kafka_protocol::records::Compression;

use crate::cluster::{self, topic_name, Cluster};
use crate::{encode_batch, RawConnection};

/// A one-record batch holding `value`.
pub fn batch(value: &str) -> Bytes {
    encode_batch(&[value.as_bytes()], Compression::None).unwrap()
}

/// The current leader's Kafka address, asked of any broker that answers.
pub async fn find_leader(addrs: &[SocketAddr], topic: &str, partition: i32) -> Option<SocketAddr> {
    for addr in addrs {
        let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_secs(1), RawConnection::connect(*addr)).await
        else {
            continue;
        };
        let req = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]))
            .with_allow_auto_topic_creation(false);
        let Ok(Ok(resp)) = tokio::time::timeout(
            Duration::from_secs(2),
            conn.request::<_, MetadataResponse>(ApiKey::Metadata, 12, &req),
        )
        .await
        else {
            continue;
        };
        let Some(leader) = resp
            .topics
            .first()
            .and_then(|t| t.partitions.iter().find(|p| p.partition_index == partition))
            .map(|p| p.leader_id.0)
            .filter(|l| *l >= 0)
        else {
            continue;
        };
        if let Some(b) = resp.brokers.iter().find(|b| b.node_id.0 == leader) {
            return format!("{}:{}", b.host.as_str(), b.port).parse().ok();
        }
    }
    None
}

/// What a producer loop saw: acknowledged (value, offset) and failed sends.
#[derive(Default, Debug)]
pub struct History {
    /// Acknowledged values and their offsets.
    pub acked: Vec<(String, i64)>,
    /// Sends that failed (indeterminate: maybe written).
    pub failed: usize,
}

/// Produces `prefix-<n>` values with acks=all to whichever broker leads, one at a time,
/// until `stop` or `limit` sends; never retries a value (a failed send is indeterminate).
pub async fn produce_loop(
    addrs: Vec<SocketAddr>,
    topic: &'static str,
    prefix: &'static str,
    limit: usize,
    stop: Arc<AtomicBool>,
    history: Arc<parking_lot::Mutex<History>>,
) {
    let mut conn: Option<RawConnection> = None;
    for n in 0..limit {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if conn.is_none() {
            if let Some(addr) = find_leader(&addrs, topic, 0).await {
                conn = RawConnection::connect(addr).await.ok();
            }
        }
        let Some(c) = conn.as_mut() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let value = format!("{prefix}-{n}");
        match cluster::produce(c, topic, 0, -1, 5_000, batch(&value)).await {
            Ok((0, offset)) => history.lock().acked.push((value, offset)),
            Ok(_) => {
                history.lock().failed += 1;
                conn = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {
                history.lock().failed += 1;
                conn = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub fn kafka_addrs(cluster: &Cluster) -> Vec<SocketAddr> {
    cluster.live().filter_map(|n| n.kafka_addr).collect()
}

/// Waits (up to 30 s) until the producer loop has `n` acknowledged sends.
pub async fn acked_at_least(history: Arc<parking_lot::Mutex<History>>, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while history.lock().acked.len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    history.lock().acked.len() >= n
}

/// Checks that every acknowledged value sits at its acknowledged offset, once.
pub fn check_acked(history: &History, committed: &[(i64, Bytes)]) {
    let by_offset: BTreeMap<i64, &Bytes> = committed.iter().map(|(o, v)| (*o, v)).collect();
    for (value, offset) in &history.acked {
        assert_eq!(
            by_offset.get(offset).map(|v| v.as_ref()),
            Some(value.as_bytes()),
            "acknowledged {value} at offset {offset} is not there"
        );
        let copies = committed
            .iter()
            .filter(|(_, v)| v == value.as_bytes())
            .count();
        assert_eq!(copies, 1, "{value} appears {copies} times");
    }
}

/// Every replica's log bytes (up to its LEO), by node.
pub fn logs(cluster: &Cluster, topic: &str, partition: i32) -> BTreeMap<i32, Bytes> {
    (1..=3)
        .filter(|id| cluster.is_running(*id))
        .filter_map(|id| {
            let p = cluster.replica(id, topic, partition)?;
            let (start, leo) = p.log_bounds();
            let bytes = p.read_below(start, usize::MAX, leo).unwrap();
            Some((id, bytes))
        })
        .collect()
}

/// Waits until every running replica holds the same log as the leader (and the leader's
/// HW has reached its LEO).
pub async fn wait_replicas_identical(cluster: &Cluster, topic: &str, partition: i32) {
    let converged = cluster
        .wait_for(Duration::from_secs(20), |c| {
            let logs = logs(c, topic, partition);
            let Some((leader, _, _)) = c.partition_state(topic, partition) else {
                return false;
            };
            let Some(leader) = leader.and_then(|l| c.replica(l, topic, partition)) else {
                return false;
            };
            logs.len() == (1..=3).filter(|id| c.is_running(*id)).count()
                && logs.values().all(|b| Some(b) == logs.values().next())
                && leader.high_watermark() == leader.log_end_offset()
        })
        .await;
    assert!(converged, "replica logs did not converge: {:?}", {
        logs(cluster, topic, partition)
            .into_iter()
            .map(|(id, b)| (id, b.len()))
            .collect::<Vec<_>>()
    });
}
