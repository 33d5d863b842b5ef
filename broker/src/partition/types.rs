//! The values a partition hands out and takes in: the progress waiters watch, the
//! leadership facts, the assignment from metadata and the role change it causes, a
//! leader's answer to a follower fetch. Plain data, below both the core and the handle.
use spate_metadata::ids::{BrokerEpoch, NodeId};

use super::replica_state::IsrChange;

/// Offsets that waiters watch. Published whenever one of them moves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// The local log end offset.
    pub log_end_offset: i64,
    /// Every offset below this is fsynced.
    pub durable: i64,
    /// Consumers may read below this.
    pub high_watermark: i64,
    /// The leader epoch while this replica leads; `None` while it follows.
    pub leading_epoch: Option<i32>,
    /// Members of the committed ISR.
    pub isr_size: usize,
    /// Set once the log failed (I/O error): the partition is offline here.
    pub failed: Option<String>,
}

impl Progress {
    /// What a waiter for `reached` gets now: `Some(Ok)` once reached, `Some(Err(reason))`
    /// once the log failed without it, `None` to wait on. Reached comes first: a write
    /// the high watermark (or the fsync) passed before the log failed was acknowledged,
    /// and answering it with a storage error would tell the client it was not.
    pub fn settled(&self, reached: impl Fn(&Progress) -> bool) -> Option<Result<(), &str>> {
        if reached(self) {
            Some(Ok(()))
        } else {
            self.failed.as_deref().map(Err)
        }
    }
}

/// Leadership facts as this replica holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderState {
    /// Whether this broker leads the partition.
    pub is_leader: bool,
    /// Current leader epoch.
    pub leader_epoch: i32,
    /// Members of the ISR, the leader included.
    pub isr_size: usize,
}

/// The partition's state in a metadata image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// Committed ISR.
    pub isr: Vec<NodeId>,
    /// The leader, `None` while offline.
    pub leader: Option<NodeId>,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch.
    pub partition_epoch: i32,
}

/// What applying an [`Assignment`] changed for this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Same role and epoch as before.
    Unchanged,
    /// This replica now leads (stop fetching).
    Leading,
    /// Follow `leader` from `leader_epoch` on: truncate as KIP-279 says, then fetch.
    Follow {
        /// The leader to fetch from.
        leader: NodeId,
        /// Its epoch.
        leader_epoch: i32,
    },
    /// No leader for now (stop fetching).
    Leaderless,
}

/// One follower's fetch of one partition, as the leader receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetchRequest {
    /// The fetching follower.
    pub follower: NodeId,
    /// Its registration's broker epoch (a stale one is refused).
    pub broker_epoch: BrokerEpoch,
    /// The leader epoch the follower believes current.
    pub current_leader_epoch: i32,
    /// The follower holds everything below this offset (its LEO).
    pub fetch_offset: i64,
    /// Most bytes of batches to return.
    pub max_bytes: usize,
}

/// A leader's answer to one follower fetch.
#[derive(Debug, Clone)]
pub struct FollowerFetch {
    /// What to send: batches from the fetch offset on (up to the leader's LEO), read
    /// with [`spate_log::ReadView::read`] off the partition's lock.
    pub view: spate_log::ReadView,
    /// The leader's high watermark after this fetch.
    pub high_watermark: i64,
    /// The leader's log start.
    pub log_start_offset: i64,
    /// The leader's LEO.
    pub log_end_offset: i64,
    /// An ISR expansion to propose to the controller.
    pub isr_change: Option<IsrChange>,
}

/// Raised whenever a log of this broker fails (at open or later): wakes whoever reports
/// failed logs to the controller, and counts them for metrics.
#[derive(Debug, Default)]
pub struct LogFailures {
    notify: tokio::sync::Notify,
    count: std::sync::atomic::AtomicU64,
}

impl LogFailures {
    /// One more log failed.
    pub fn raise(&self) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Resolves at the next failure (or at once if one happened since the last wait).
    pub async fn next(&self) {
        self.notify.notified().await
    }

    /// Logs failed so far.
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_acknowledged_before_the_log_failed_stays_acknowledged() {
        let p = Progress {
            high_watermark: 20,
            failed: Some("append failed: no space".to_string()),
            ..Progress::default()
        };
        // Its end (10) is below the HW: acknowledged, although the log failed since.
        assert_eq!(p.settled(|p| p.high_watermark >= 10), Some(Ok(())));
        // A later write's end (30) is not: it fails with the log's reason.
        assert_eq!(
            p.settled(|p| p.high_watermark >= 30),
            Some(Err("append failed: no space"))
        );
        let healthy = Progress::default();
        assert_eq!(healthy.settled(|p| p.high_watermark >= 30), None);
    }
}
