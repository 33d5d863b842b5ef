//! DescribeCluster: brokers from the metadata image (v2, KIP-1073: fenced ones too when
//! asked, marked so).
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use spate_metadata::ErrorCode;

use super::str_bytes;
use crate::server::context::RequestContext;

/// `endpoint_type` of a request for the brokers (1); 2 asks for the controllers, which
/// only a controller answers (Kafka: UNSUPPORTED_ENDPOINT_TYPE from a broker).
const BROKERS: i8 = 1;

/// Lists the unfenced brokers, and the fenced ones too if the request asks (v2).
pub fn describe(ctx: &RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let state = &ctx.state;
    let response = DescribeClusterResponse::default().with_endpoint_type(if ctx.api_version >= 1 {
        BROKERS
    } else {
        1
    });
    if ctx.api_version >= 1 && req.endpoint_type != BROKERS {
        return response
            .with_error_code(ErrorCode::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes(format!(
                "endpoint type {} is not served by brokers; ask for brokers (1)",
                req.endpoint_type
            ))))
            .with_cluster_id(str_bytes(state.config.cluster_id.clone()))
            .with_controller_id(BrokerId(-1))
            .with_cluster_authorized_operations(i32::MIN);
    }
    let image = state.metadata.image();
    let with_fenced = ctx.api_version >= 2 && req.include_fenced_brokers;
    let brokers = super::metadata::registered_brokers(&image, &ctx.session.listener)
        .filter(|b| with_fenced || !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(str_bytes))
                .with_is_fenced(with_fenced && b.fenced)
        })
        .collect();
    response
        .with_cluster_id(str_bytes(state.config.cluster_id.clone()))
        .with_controller_id(BrokerId(super::metadata::controller_id(state, &image)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
