//! The APIs and version ranges this broker implements, and nothing more: ApiVersions
//! advertises exactly this table and dispatch refuses anything outside it.
use kafka_protocol::messages::ApiKey;

/// (API, lowest version, highest version) implemented by the broker.
///
/// Ranges are capped where a newer version needs a feature we do not have yet
/// (e.g. Produce v10+ leader hints, Fetch v13+ topic ids, ListOffsets v8+ tiered storage).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
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
    (ApiKey::OffsetDelete, 0, 0),
];

/// The supported version range of `key`, if the API is implemented at all.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// Whether `(key, version)` is implemented.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    supported_range(key).is_some_and(|(min, max)| (min..=max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message;

    /// Every advertised range must lie within what the protocol crate can decode.
    #[test]
    fn advertised_ranges_are_decodable() {
        for (key, min, max) in SUPPORTED {
            let crate_range = key.valid_versions();
            assert!(
                *min >= crate_range.min && *max <= crate_range.max,
                "{key:?}"
            );
            assert!(min <= max);
        }
        assert!(is_supported(ApiKey::ApiVersions, 3));
        assert!(!is_supported(ApiKey::ApiVersions, 99));
        assert!(!is_supported(ApiKey::JoinGroup, 10));
        let _ = kafka_protocol::messages::ApiVersionsRequest::VERSIONS;
    }
}
