//! The APIs and version ranges this broker implements, and nothing more: ApiVersions
//! advertises exactly the request table ([`super::apis`]) and dispatch refuses anything
//! outside it.
use kafka_protocol::messages::ApiKey;

pub use super::apis::SUPPORTED;

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
