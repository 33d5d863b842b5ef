//! CreateTopics, DeleteTopics, CreatePartitions: forwarded to the active controller,
//! which turns them into metadata records; we answer once our own image shows the
//! result, so a client's next Metadata request here already sees it.
use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use spate_metadata::config_defs;
use spate_metadata::topic_defaults::TopicDefaults;
use spate_metadata::ErrorCode;
use spate_proto::controller as pb;
use spate_proto::metadata::ReplicaList;

use super::str_bytes;
use crate::error::Result;
use crate::metadata::controller_link::unavailable;
use crate::server::context::RequestContext;
use crate::state::BrokerState;

/// Kafka's topic name rules (the controller's check, so both sides agree).
pub fn valid_topic_name(name: &str) -> std::result::Result<(), String> {
    spate_metadata::topic_name::validate_topic_name(name).map_err(|e| e.to_string())
}

/// One admin call on the active controller (the client retries and follows leadership).
pub(crate) async fn controller_call<T, F, Fut>(state: &BrokerState, f: F) -> Result<T>
where
    F: FnOnce(spate_controller_client::ControllerClient) -> Fut,
    Fut: std::future::Future<Output = Result<T, spate_controller_client::ClientError>>,
{
    f(state.controller.admin()?).await.map_err(unavailable)
}

/// How long to wait for our image to reflect a committed admin change.
pub(crate) fn settle_timeout(timeout_ms: i32) -> Duration {
    Duration::from_millis(timeout_ms.clamp(1000, 30_000) as u64)
}

/// Creates topics with broker defaults (Metadata auto-creation).
pub async fn auto_create(state: &BrokerState, names: &[String]) -> Result<()> {
    let req = pb::CreateTopicsRequest {
        topics: names
            .iter()
            .map(|n| pb::CreatableTopic {
                name: n.clone(),
                num_partitions: -1,
                replication_factor: -1,
                ..Default::default()
            })
            .collect(),
        validate_only: false,
    };
    let resp = controller_call(state, |mut c| async move { c.create_topics(req).await }).await?;
    for t in resp.topics {
        // Someone else creating it at the same moment is fine.
        if t.error_code != 0 && t.error_code != ErrorCode::TopicAlreadyExists.code() as i32 {
            tracing::warn!(topic = %t.name, code = t.error_code, msg = %t.error_message, "auto-create refused");
        }
    }
    Ok(())
}

/// CreateTopics.
pub async fn create_topics(ctx: &RequestContext, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let state = &ctx.state;
    let validate_only = req.validate_only;
    let mut requested_configs: HashMap<String, HashMap<String, String>> = HashMap::new();
    let topics: Vec<pb::CreatableTopic> = req
        .topics
        .iter()
        .map(|t| {
            let configs: HashMap<String, String> = t
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            requested_configs.insert(t.name.0.to_string(), configs.clone());
            let mut assignments = t.assignments.clone();
            assignments.sort_by_key(|a| a.partition_index);
            pb::CreatableTopic {
                name: t.name.0.to_string(),
                num_partitions: t.num_partitions,
                replication_factor: t.replication_factor as i32,
                assignments: assignments
                    .iter()
                    .map(|a| ReplicaList {
                        ids: a.broker_ids.iter().map(|b| b.0).collect(),
                    })
                    .collect(),
                configs: configs.into_iter().collect(),
            }
        })
        .collect();
    let pb_req = pb::CreateTopicsRequest {
        topics,
        validate_only,
    };
    let result = controller_call(state, |mut c| async move { c.create_topics(pb_req).await }).await;
    let results = match result {
        Ok(resp) => {
            let created: Vec<String> = resp
                .topics
                .iter()
                .filter(|t| t.error_code == 0)
                .map(|t| t.name.clone())
                .collect();
            if !validate_only && !created.is_empty() {
                state
                    .metadata
                    .wait_until(settle_timeout(req.timeout_ms), |img| {
                        created.iter().all(|n| img.topic_by_name(n).is_some())
                    })
                    .await;
            }
            resp.topics
                .into_iter()
                .map(|t| {
                    let overrides = requested_configs.get(&t.name).cloned().unwrap_or_default();
                    topic_result(t, &overrides, &state.config.topics.configs, ctx.api_version)
                })
                .collect()
        }
        Err(e) => req
            .topics
            .iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(e.to_string())))
            })
            .collect(),
    };
    CreateTopicsResponse::default().with_topics(results)
}

fn topic_result(
    t: pb::CreatableTopicResult,
    overrides: &HashMap<String, String>,
    defaults: &TopicDefaults,
    version: i16,
) -> CreatableTopicResult {
    let ok = t.error_code == 0;
    // Configs are part of the response from v5 on.
    let configs = (ok && version >= 5).then(|| {
        config_defs::TOPIC_CONFIGS
            .iter()
            .map(|def| {
                // Kafka's ConfigSource: 1 the topic's, 4 the broker's static, 5 built in.
                let (value, source) = match overrides.get(def.name) {
                    Some(v) => (v.clone(), 1),
                    None if defaults.is_set(def.name) => {
                        (defaults.get(def.name).unwrap_or(def.default).to_string(), 4)
                    }
                    None => (def.default.to_string(), 5),
                };
                CreatableTopicConfigs::default()
                    .with_name(str_bytes(def.name))
                    .with_value(Some(str_bytes(value)))
                    .with_read_only(false)
                    .with_config_source(source)
                    .with_is_sensitive(false)
            })
            .collect()
    });
    CreatableTopicResult::default()
        .with_name(TopicName(str_bytes(t.name)))
        .with_topic_id(uuid_from(&t.topic_id))
        .with_error_code(t.error_code as i16)
        .with_error_message((!t.error_message.is_empty()).then(|| str_bytes(t.error_message)))
        .with_num_partitions(if ok { t.num_partitions } else { -1 })
        .with_replication_factor(if ok { t.replication_factor as i16 } else { -1 })
        .with_configs(configs)
}

fn uuid_from(bytes: &[u8]) -> uuid::Uuid {
    <[u8; 16]>::try_from(bytes)
        .map(uuid::Uuid::from_bytes)
        .unwrap_or_default()
}

/// DeleteTopics (by name, or by id from v6).
pub async fn delete_topics(ctx: &RequestContext, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let state = &ctx.state;
    let image = state.metadata.image();
    // (name as asked, id as asked, resolved name)
    let mut asked: Vec<(Option<String>, uuid::Uuid, Option<String>)> = Vec::new();
    for name in &req.topic_names {
        asked.push((
            Some(name.0.to_string()),
            uuid::Uuid::nil(),
            Some(name.0.to_string()),
        ));
    }
    for t in &req.topics {
        match &t.name {
            Some(name) => asked.push((
                Some(name.0.to_string()),
                uuid::Uuid::nil(),
                Some(name.0.to_string()),
            )),
            None => {
                let resolved = image
                    .topic(spate_metadata::ids::TopicId(t.topic_id))
                    .map(|x| x.name.clone());
                asked.push((None, t.topic_id, resolved));
            }
        }
    }
    let names: Vec<String> = asked.iter().filter_map(|a| a.2.clone()).collect();
    let pb_req = pb::DeleteTopicsRequest {
        names: names.clone(),
    };
    let result = controller_call(state, |mut c| async move { c.delete_topics(pb_req).await }).await;
    let by_name: HashMap<String, (i16, String)> = match &result {
        Ok(resp) => resp
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    (t.error_code as i16, t.error_message.clone()),
                )
            })
            .collect(),
        Err(_) => HashMap::new(),
    };
    if result.is_ok() {
        let deleted: Vec<&String> = names
            .iter()
            .filter(|n| by_name.get(*n).is_some_and(|r| r.0 == 0))
            .collect();
        state
            .metadata
            .wait_until(settle_timeout(req.timeout_ms), |img| {
                deleted.iter().all(|n| img.topic_by_name(n).is_none())
            })
            .await;
    }
    let responses = asked
        .into_iter()
        .map(|(name, id, resolved)| {
            let (code, msg) = match (&result, &resolved) {
                (Err(e), _) => (e.code(), e.to_string()),
                (Ok(_), None) => (
                    ErrorCode::UnknownTopicId.code(),
                    format!("no topic with id {id}"),
                ),
                (Ok(_), Some(n)) => by_name.get(n).cloned().unwrap_or((
                    ErrorCode::UnknownServerError.code(),
                    "controller gave no result".to_string(),
                )),
            };
            DeletableTopicResult::default()
                .with_name(name.map(|n| TopicName(str_bytes(n))))
                .with_topic_id(id)
                .with_error_code(code)
                .with_error_message((!msg.is_empty()).then(|| str_bytes(msg)))
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// CreatePartitions.
pub async fn create_partitions(
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let state = &ctx.state;
    let mut results = Vec::new();
    let mut forward = Vec::new();
    for t in &req.topics {
        forward.push(pb::PartitionCountChange {
            name: t.name.0.to_string(),
            count: t.count,
            assignments: t
                .assignments
                .iter()
                .flatten()
                .map(|a| ReplicaList {
                    ids: a.broker_ids.iter().map(|b| b.0).collect(),
                })
                .collect(),
        });
    }
    if !forward.is_empty() {
        let pb_req = pb::CreatePartitionsRequest {
            topics: forward.clone(),
            validate_only: req.validate_only,
        };
        match controller_call(
            state,
            |mut c| async move { c.create_partitions(pb_req).await },
        )
        .await
        {
            Ok(resp) => {
                let grown: Vec<(String, i32)> = resp
                    .topics
                    .iter()
                    .filter(|t| t.error_code == 0)
                    .filter_map(|t| {
                        forward
                            .iter()
                            .find(|f| f.name == t.name)
                            .map(|f| (f.name.clone(), f.count))
                    })
                    .collect();
                if !req.validate_only {
                    state
                        .metadata
                        .wait_until(settle_timeout(req.timeout_ms), |img| {
                            grown.iter().all(|(n, c)| {
                                img.topic_by_name(n)
                                    .is_some_and(|t| t.partitions.len() as i32 >= *c)
                            })
                        })
                        .await;
                }
                for t in resp.topics {
                    results.push(
                        CreatePartitionsTopicResult::default()
                            .with_name(TopicName(str_bytes(t.name)))
                            .with_error_code(t.error_code as i16)
                            .with_error_message(
                                (!t.error_message.is_empty()).then(|| str_bytes(t.error_message)),
                            ),
                    );
                }
            }
            Err(e) => {
                for f in forward {
                    results.push(
                        CreatePartitionsTopicResult::default()
                            .with_name(TopicName(str_bytes(f.name)))
                            .with_error_code(e.code())
                            .with_error_message(Some(str_bytes(e.to_string()))),
                    );
                }
            }
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::valid_topic_name;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(valid_topic_name("orders.v1_eu-west").is_ok());
        assert!(valid_topic_name("").is_err());
        assert!(valid_topic_name(".").is_err());
        assert!(valid_topic_name("..").is_err());
        assert!(valid_topic_name("a b").is_err());
        assert!(valid_topic_name("ü").is_err());
        assert!(valid_topic_name(&"a".repeat(249)).is_ok());
        assert!(valid_topic_name(&"a".repeat(250)).is_err());
    }
}
