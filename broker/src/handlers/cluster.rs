//! DescribeCluster: brokers from the metadata image.
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::server::context::RequestContext;

/// Lists the unfenced brokers.
pub fn describe(ctx: &RequestContext, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let state = &ctx.state;
    let image = state.metadata.image();
    let brokers = super::metadata::live_brokers(&image, &ctx.session.listener)
        .map(|(id, host, port, rack)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(rack.map(str_bytes))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(state.config.cluster_id.clone()))
        .with_controller_id(BrokerId(super::metadata::controller_id(state, &image)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
