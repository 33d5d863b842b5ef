//! ApiVersions: exactly the request table it is given (the broker's own).
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;
use spate_metadata::ErrorCode;

use kafka_protocol::messages::ApiKey;

/// (API, lowest version, highest version) of each implemented API.
pub type VersionTable = [(ApiKey, i16, i16)];

fn api_keys(supported: &VersionTable) -> Vec<ApiVersion> {
    supported
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

/// The normal response.
pub fn handle(supported: &VersionTable) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys(supported))
}

/// The v0 response to an ApiVersions version we do not support (KIP-511).
pub fn unsupported_version_response(supported: &VersionTable) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UnsupportedVersion.code())
        .with_api_keys(api_keys(supported))
}
