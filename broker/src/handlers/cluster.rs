//! DescribeCluster: brokers from the metadata image.
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::server::dispatch::RequestContext;

/// Lists the unfenced brokers.
pub fn describe(ctx: &RequestContext, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let state = &ctx.state;
    let image = state.metadata.image();
    let brokers = image
        .brokers()
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let ep = b.endpoints.first()?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id.0))
                    .with_host(str_bytes(ep.host.clone()))
                    .with_port(ep.port)
                    .with_rack(b.rack.clone().filter(|r| !r.is_empty()).map(str_bytes)),
            )
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(state.config.cluster_id.clone()))
        .with_controller_id(BrokerId(super::metadata::controller_id(state, &image)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
