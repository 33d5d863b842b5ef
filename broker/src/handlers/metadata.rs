//! Metadata: brokers, topics and partition leadership from the image; unknown topics
//! are auto-created when the broker and the request allow it.
use std::time::Duration;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use spate_metadata::ids::{NodeId, TopicId};
use spate_metadata::ErrorCode;
use spate_metadata::{MetadataImage, PartitionImage, TopicImage};

use super::{admin, str_bytes};
use crate::server::context::RequestContext;
use crate::state::BrokerState;

/// The most topics one Metadata request may auto-create (a client subscribing to a
/// generated list of names must not create an unbounded number of topics in one go).
pub const AUTO_CREATE_MAX_TOPICS: usize = 1000;

/// Builds the Metadata response, auto-creating requested topics first if allowed.
pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let state = &ctx.state;
    let mut image = state.metadata.image();
    let requested: Option<Vec<String>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .filter_map(|t| match t.name {
                Some(name) => Some(name.0.to_string()),
                // v10+: a topic asked for by id.
                None => image.topic(TopicId(t.topic_id)).map(|t| t.name.clone()),
            })
            .collect()
    });
    // v0 has no null array: an empty list there means "all topics".
    let requested = match requested {
        Some(list) if list.is_empty() && ctx.api_version == 0 => None,
        other => other,
    };
    let allow_auto =
        state.config.topics.auto_create && (ctx.api_version < 4 || req.allow_auto_topic_creation);
    if let (Some(names), true) = (&requested, allow_auto) {
        // At most AUTO_CREATE_MAX_TOPICS per request: the rest are answered
        // UNKNOWN_TOPIC_OR_PARTITION (retriable) and created when asked for again.
        let missing: Vec<String> = names
            .iter()
            .filter(|n| image.topic_by_name(n).is_none() && admin::valid_topic_name(n).is_ok())
            .take(AUTO_CREATE_MAX_TOPICS)
            .cloned()
            .collect();
        if !missing.is_empty() {
            if let Err(e) = admin::auto_create(state, &missing).await {
                tracing::warn!(topics = ?missing, error = %e, "auto topic creation failed");
            }
            image = state
                .metadata
                .wait_until(Duration::from_secs(5), |img| {
                    missing
                        .iter()
                        .all(|n| img.topic_by_name(n).is_some_and(has_all_leaders))
                })
                .await;
        }
    }
    let topics = match requested {
        None => image
            .topics()
            .values()
            .map(|t| topic_entry(t, &image))
            .collect(),
        Some(names) => names
            .iter()
            .map(|name| match image.topic_by_name(name) {
                Some(t) => topic_entry(t, &image),
                None => {
                    let code = match admin::valid_topic_name(name) {
                        Ok(()) => ErrorCode::UnknownTopicOrPartition.code(),
                        Err(_) => ErrorCode::InvalidTopicException.code(),
                    };
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(str_bytes(name.clone()))))
                        .with_error_code(code)
                }
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(brokers(&image, &ctx.session.listener))
        .with_cluster_id(Some(str_bytes(state.config.cluster_id.clone())))
        .with_controller_id(BrokerId(controller_id(state, &image)))
        .with_topics(topics)
}

fn has_all_leaders(t: &TopicImage) -> bool {
    !t.partitions.is_empty() && t.partitions.values().all(|p| p.leader.is_some())
}

/// A registered broker as a client reaches it on one listener.
pub struct ListedBroker {
    /// Its id.
    pub id: i32,
    /// Host on the listener.
    pub host: String,
    /// Port on the listener.
    pub port: i32,
    /// Rack, if set.
    pub rack: Option<String>,
    /// Fenced (not serving) in the image.
    pub fenced: bool,
}

/// Every registered broker with an endpoint on `listener`, fenced ones included.
pub fn registered_brokers<'a>(
    image: &'a MetadataImage,
    listener: &'a str,
) -> impl Iterator<Item = ListedBroker> + 'a {
    image.brokers().values().filter_map(move |b| {
        let ep = b.endpoints.iter().find(|e| e.listener == listener)?;
        Some(ListedBroker {
            id: b.id.0,
            host: ep.host.clone(),
            port: ep.port,
            rack: b.rack.clone().filter(|r| !r.is_empty()),
            fenced: b.fenced,
        })
    })
}

fn brokers(image: &MetadataImage, listener: &str) -> Vec<MetadataResponseBroker> {
    registered_brokers(image, listener)
        .filter(|b| !b.fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(str_bytes))
        })
        .collect()
}

/// The "controller" id shown to clients. As in KRaft, clients cannot reach the quorum
/// directly, so we name a live broker (which forwards admin requests).
pub fn controller_id(state: &BrokerState, image: &MetadataImage) -> i32 {
    let me = state.config.node_id;
    if image.broker(NodeId(me)).is_some_and(|b| !b.fenced) {
        return me;
    }
    image
        .brokers()
        .values()
        .find(|b| !b.fenced)
        .map(|b| b.id.0)
        .unwrap_or(-1)
}

/// Replicas that cannot serve the partition: on an unregistered or fenced broker, or
/// whose log failed there (Kafka's replicas on offline brokers or log directories).
pub fn offline_replicas(
    image: &MetadataImage,
    topic: TopicId,
    index: i32,
    p: &PartitionImage,
) -> Vec<BrokerId> {
    p.replicas
        .iter()
        .filter(|r| !image.can_serve(**r, topic, index))
        .map(|r| BrokerId(r.0))
        .collect()
}

fn topic_entry(t: &TopicImage, image: &MetadataImage) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|(index, p)| {
            let offline = offline_replicas(image, t.id, *index, p);
            let error = if p.leader.is_none() {
                ErrorCode::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(*index)
                .with_leader_id(BrokerId(p.leader.map(|l| l.0).unwrap_or(-1)))
                .with_leader_epoch(p.leader_epoch.0)
                .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(r.0)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| BrokerId(r.0)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(0)
        .with_name(Some(TopicName(str_bytes(t.name.clone()))))
        .with_topic_id(t.id.0)
        .with_is_internal(t.name.starts_with("__"))
        .with_partitions(partitions)
}
