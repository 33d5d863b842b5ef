//! When a produce is acknowledged (docs/architecture.md §5): what a request's `acks` and
//! the partition's settings wait for before the answer goes out. One pure decision, so
//! the produce handler only waits for what it is told.
use super::settings::PartitionSettings;

/// The point a batch must reach before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckPoint {
    /// At once, once appended (acks=1 without fsync-before-ack; acks=0 never answers).
    Appended,
    /// Once fsynced on the leader, still leading in the epoch it was written in.
    LeaderDurable,
    /// Once the high watermark passes it (replicated to the ISR), with the ISR still at
    /// least `min_insync` replicas.
    HighWatermark {
        /// `min.insync.replicas`, checked again after the wait.
        min_insync: usize,
    },
}

/// Set only in the chaos suite's self-test build (feature `unsafe-ack-before-hw`):
/// acks=all is then acknowledged like acks=1 with fsync, so the checker must catch the
/// acknowledged writes an isolated leader later loses. Never in a build that serves data.
const ACK_ALL_AT_LEADER: bool = cfg!(feature = "unsafe-ack-before-hw");

impl AckPoint {
    /// What `acks` waits for on a partition with `settings`.
    pub fn for_request(acks: i16, settings: &PartitionSettings) -> AckPoint {
        Self::decide(acks, settings, ACK_ALL_AT_LEADER)
    }

    fn decide(acks: i16, settings: &PartitionSettings, all_at_leader: bool) -> AckPoint {
        match acks {
            -1 if !all_at_leader => AckPoint::HighWatermark {
                min_insync: settings.min_insync_replicas.max(1) as usize,
            },
            -1 => AckPoint::LeaderDurable,
            _ if settings.sync_before_ack => AckPoint::LeaderDurable,
            _ => AckPoint::Appended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(sync_before_ack: bool, min_insync_replicas: i32) -> PartitionSettings {
        let mut settings = PartitionSettings::default();
        settings.sync_before_ack = sync_before_ack;
        settings.min_insync_replicas = min_insync_replicas;
        settings
    }

    #[test]
    fn acks_all_waits_for_the_high_watermark_with_min_insync() {
        for sync in [true, false] {
            assert_eq!(
                AckPoint::decide(-1, &settings(sync, 2), false),
                AckPoint::HighWatermark { min_insync: 2 }
            );
        }
        // min.insync.replicas below 1 still needs the leader.
        assert_eq!(
            AckPoint::decide(-1, &settings(true, 0), false),
            AckPoint::HighWatermark { min_insync: 1 }
        );
    }

    #[test]
    fn acks_one_waits_for_the_leader_fsync_only_when_configured() {
        assert_eq!(
            AckPoint::decide(1, &settings(true, 2), false),
            AckPoint::LeaderDurable
        );
        assert_eq!(
            AckPoint::decide(1, &settings(false, 2), false),
            AckPoint::Appended
        );
    }

    #[test]
    fn the_unsafe_self_test_build_acknowledges_acks_all_at_the_leader() {
        assert_eq!(
            AckPoint::decide(-1, &settings(true, 3), true),
            AckPoint::LeaderDurable
        );
    }

    #[test]
    fn a_normal_build_is_not_the_unsafe_one() {
        assert_eq!(ACK_ALL_AT_LEADER, cfg!(feature = "unsafe-ack-before-hw"));
        #[cfg(not(feature = "unsafe-ack-before-hw"))]
        assert_eq!(
            AckPoint::for_request(-1, &settings(true, 2)),
            AckPoint::HighWatermark { min_insync: 2 }
        );
    }
}
