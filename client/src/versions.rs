//! Which API versions this client speaks, and the pick against a broker's ApiVersions answer.
//!
//! The caps are the versions whose fields the client code fills in; they stop below the
//! versions that switch from topic names to topic ids (Produce v13, Fetch v13), which this
//! client does not track.

use std::collections::HashMap;

use kafka_protocol::messages::ApiKey;

/// `(api, lowest, highest)` version this client can build and read.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    // Idempotent producer only (null transactional id); v6 adds KIP-939 2PC fields.
    (ApiKey::InitProducerId, 0, 5),
    // Classic consumer groups. Capped below the KIP-848 versions that switch to member
    // epochs (OffsetCommit v9, OffsetFetch v9) and the share-group FindCoordinator v6.
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
];

/// The ApiVersions version sent first; flexible versions carry the client's name.
pub const API_VERSIONS_FIRST: i16 = 3;

/// The version to use per API on one connection.
#[derive(Debug, Clone, Default)]
pub struct VersionTable {
    chosen: HashMap<i16, i16>,
    broker: HashMap<i16, (i16, i16)>,
}

impl VersionTable {
    /// Intersects the broker's advertised ranges with [`SUPPORTED`], keeping the highest
    /// common version of each API.
    pub fn negotiate(broker: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        let broker: HashMap<i16, (i16, i16)> = broker
            .into_iter()
            .map(|(key, min, max)| (key, (min, max)))
            .collect();
        let mut chosen = HashMap::new();
        for &(api, our_min, our_max) in SUPPORTED {
            if let Some(&(their_min, their_max)) = broker.get(&(api as i16)) {
                let hi = our_max.min(their_max);
                if hi >= our_min.max(their_min) {
                    chosen.insert(api as i16, hi);
                }
            }
        }
        Self { chosen, broker }
    }

    /// The version to use for `api`, or a description of both ranges when there is none.
    pub fn pick(&self, api: ApiKey) -> Result<i16, String> {
        if let Some(v) = self.chosen.get(&(api as i16)) {
            return Ok(*v);
        }
        let ours = SUPPORTED
            .iter()
            .find(|(a, _, _)| *a == api)
            .map(|(_, lo, hi)| (*lo, *hi));
        let theirs = self.broker.get(&(api as i16)).copied();
        Err(format!(
            "client speaks {}, broker advertises {}",
            fmt_range(ours),
            fmt_range(theirs)
        ))
    }
}

fn fmt_range(r: Option<(i16, i16)>) -> String {
    match r {
        Some((lo, hi)) => format!("v{lo}..=v{hi}"),
        None => "nothing".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common_version() {
        let t = VersionTable::negotiate([(0, 0, 11), (1, 4, 17), (3, 0, 13)]);
        assert_eq!(t.pick(ApiKey::Produce), Ok(11));
        // Capped at what the client fills in, not what the broker offers.
        assert_eq!(t.pick(ApiKey::Fetch), Ok(12));
        assert_eq!(t.pick(ApiKey::Metadata), Ok(12));
    }

    #[test]
    fn disjoint_or_missing_ranges_have_no_version() {
        let t = VersionTable::negotiate([(0, 0, 2), (1, 4, 12)]);
        assert!(t
            .pick(ApiKey::Produce)
            .is_err_and(|e| e.contains("v0..=v2")));
        assert!(t
            .pick(ApiKey::CreateTopics)
            .is_err_and(|e| e.contains("nothing")));
        assert_eq!(t.pick(ApiKey::Fetch), Ok(12));
    }

    #[test]
    fn group_apis_land_in_the_brokers_ranges() {
        // What Spate's broker advertises for the classic group protocol.
        let broker = [
            (ApiKey::FindCoordinator, 0, 4),
            (ApiKey::JoinGroup, 0, 9),
            (ApiKey::SyncGroup, 0, 5),
            (ApiKey::Heartbeat, 0, 4),
            (ApiKey::LeaveGroup, 0, 5),
            (ApiKey::OffsetCommit, 2, 8),
            (ApiKey::OffsetFetch, 1, 8),
            (ApiKey::DescribeGroups, 0, 5),
            (ApiKey::ListGroups, 0, 4),
            (ApiKey::DeleteGroups, 0, 2),
        ];
        let t = VersionTable::negotiate(broker.iter().map(|(k, lo, hi)| (*k as i16, *lo, *hi)));
        for (api, _, hi) in broker {
            assert_eq!(t.pick(api), Ok(hi), "{api:?}");
        }
        // A newer broker still gets versions whose fields this client fills in.
        let t = VersionTable::negotiate([(ApiKey::OffsetCommit as i16, 2, 10)]);
        assert_eq!(t.pick(ApiKey::OffsetCommit), Ok(8));
    }
}
