//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, and topic listings
//! from Metadata.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_topic_partitions_request::{
    Cursor as RequestCursor, TopicRequest,
};
use kafka_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponsePartition;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeTopicPartitionsRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::offsets::topic_name;
use super::Admin;
use crate::error::{Error, Result};
use crate::metadata::PartitionInfo;
use crate::{LeaderEpoch, NodeId};
use std::collections::HashMap;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Partition count; -1 for the broker default (`num.partitions`).
    pub num_partitions: i32,
    /// Replication factor; -1 for the broker default.
    pub replication_factor: i16,
    /// Topic configs, e.g. `("cleanup.policy", "compact")`.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with explicit partitions and replication factor and no configs.
    pub fn new(name: impl Into<String>, num_partitions: i32, replication_factor: i16) -> Self {
        Self {
            name: name.into(),
            num_partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    /// Adds a topic config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// A topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// Topic id (nil if the broker does not report ids).
    pub topic_id: Uuid,
    /// Whether the topic is internal.
    pub is_internal: bool,
    /// Partitions with leader, replicas and ISR, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

/// Per-topic outcomes, in request order.
pub type TopicResults<T> = Vec<(String, Result<T>)>;

impl Admin {
    /// Creates topics (or only validates the request with `validate_only`).
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<TopicResults<()>> {
        let timeout_ms = self.timeout_ms();
        self.cluster
            .with_retries(None, || async {
                let conn = self.cluster.controller_connection().await?;
                let version = conn.api_version(ApiKey::CreateTopics)?;
                let creatable = topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.num_partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                let req = CreateTopicsRequest::default()
                    .with_topics(creatable)
                    .with_timeout_ms(timeout_ms)
                    .with_validate_only(validate_only);
                let resp = conn.request(version, &req).await?;
                let results = topics
                    .iter()
                    .map(|t| {
                        let r = resp.topics.iter().find(|r| r.name.0.as_str() == t.name);
                        let outcome = match r {
                            None => Err(Error::protocol(format!(
                                "CreateTopics response has no entry for '{}'",
                                t.name
                            ))),
                            Some(r) => outcome(
                                r.error_code,
                                r.error_message.as_ref(),
                                format!("create topic '{}'", t.name),
                            ),
                        };
                        (t.name.clone(), outcome)
                    })
                    .collect();
                not_controller_is_retriable(results)
            })
            .await
    }

    /// Creates one topic.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        single(
            self.create_topics(std::slice::from_ref(&topic), false)
                .await?,
        )
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<TopicResults<()>> {
        let timeout_ms = self.timeout_ms();
        self.cluster
            .with_retries(None, || async {
                let conn = self.cluster.controller_connection().await?;
                let version = conn.api_version(ApiKey::DeleteTopics)?;
                let mut req = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
                if version >= 6 {
                    req.topics = names
                        .iter()
                        .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                        .collect();
                } else {
                    req.topic_names = names.iter().map(|n| topic_name(n)).collect();
                }
                let resp = conn.request(version, &req).await?;
                let results = names
                    .iter()
                    .map(|n| {
                        let r = resp
                            .responses
                            .iter()
                            .find(|r| r.name.as_ref().is_some_and(|x| x.0.as_str() == *n));
                        let outcome = match r {
                            None => Err(Error::protocol(format!(
                                "DeleteTopics response has no entry for '{n}'"
                            ))),
                            Some(r) => outcome(
                                r.error_code,
                                r.error_message.as_ref(),
                                format!("delete topic '{n}'"),
                            ),
                        };
                        (n.to_string(), outcome)
                    })
                    .collect();
                not_controller_is_retriable(results)
            })
            .await
    }

    /// Deletes one topic.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        single(self.delete_topics(&[name]).await?)
    }

    /// Raises a topic's partition count to `total`.
    pub async fn create_partitions(
        &self,
        topic: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<()> {
        let timeout_ms = self.timeout_ms();
        self.cluster
            .with_retries(None, || async {
                let conn = self.cluster.controller_connection().await?;
                let version = conn.api_version(ApiKey::CreatePartitions)?;
                let req = CreatePartitionsRequest::default()
                    .with_topics(vec![CreatePartitionsTopic::default()
                        .with_name(topic_name(topic))
                        .with_count(total)])
                    .with_timeout_ms(timeout_ms)
                    .with_validate_only(validate_only);
                let resp = conn.request(version, &req).await?;
                let r = resp.results.iter().find(|r| r.name.0.as_str() == topic);
                let results = vec![(
                    topic.to_string(),
                    match r {
                        None => Err(Error::protocol(format!(
                            "CreatePartitions response has no entry for '{topic}'"
                        ))),
                        Some(r) => outcome(
                            r.error_code,
                            r.error_message.as_ref(),
                            format!("create partitions of '{topic}'"),
                        ),
                    },
                )];
                not_controller_is_retriable(results)
            })
            .await
            .and_then(single)
    }

    /// Names of all topics, sorted; internal ones only if asked.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<String>> {
        let meta = self
            .cluster
            .with_retries(None, || self.cluster.refresh(None))
            .await?;
        let mut names: Vec<String> = meta
            .topics
            .values()
            .filter(|t| t.error.is_none() && (include_internal || !t.is_internal))
            .map(|t| t.name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Partitions, leaders, replicas and ISR of each topic.
    ///
    /// Asks DescribeTopicPartitions (KIP-966, which carries each partition's eligible
    /// leader replicas) where the broker has it, as Kafka's admin client does, and
    /// Metadata otherwise.
    pub async fn describe_topics(&self, names: &[&str]) -> Result<TopicResults<TopicDescription>> {
        let conn = self.cluster.any_connection().await?;
        if let Ok(version) = conn.api_version(ApiKey::DescribeTopicPartitions) {
            return self
                .cluster
                .with_retries(None, || self.describe_topic_partitions(names, version))
                .await;
        }
        let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let meta = self
            .cluster
            .with_retries(Some(&wanted), || self.cluster.refresh(Some(&wanted)))
            .await?;
        Ok(names
            .iter()
            .map(|n| {
                let d = meta.topic(n).map(|t| TopicDescription {
                    name: t.name.clone(),
                    topic_id: t.topic_id,
                    is_internal: t.is_internal,
                    partitions: t.partitions.clone(),
                });
                (n.to_string(), d)
            })
            .collect())
    }

    /// DescribeTopicPartitions, following the cursor until every partition is in.
    async fn describe_topic_partitions(
        &self,
        names: &[&str],
        version: i16,
    ) -> Result<TopicResults<TopicDescription>> {
        let conn = self.cluster.any_connection().await?;
        let topics: Vec<TopicRequest> = names
            .iter()
            .map(|n| TopicRequest::default().with_name(topic_name(n)))
            .collect();
        let mut found: HashMap<String, Result<TopicDescription>> = HashMap::new();
        let mut cursor = None;
        loop {
            let req = DescribeTopicPartitionsRequest::default()
                .with_topics(topics.clone())
                .with_cursor(cursor.take());
            let resp = conn.request(version, &req).await?;
            for t in &resp.topics {
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                if let Err(e) = outcome(t.error_code, None, format!("describe topic '{name}'")) {
                    found.insert(name, Err(e));
                    continue;
                }
                let entry = found.entry(name.clone()).or_insert_with(|| {
                    Ok(TopicDescription {
                        name,
                        topic_id: t.topic_id,
                        is_internal: t.is_internal,
                        partitions: Vec::new(),
                    })
                });
                if let Ok(d) = entry {
                    d.partitions
                        .extend(t.partitions.iter().map(described_partition));
                }
            }
            match resp.next_cursor {
                Some(next) => {
                    cursor = Some(
                        RequestCursor::default()
                            .with_topic_name(next.topic_name)
                            .with_partition_index(next.partition_index),
                    )
                }
                None => break,
            }
        }
        Ok(names
            .iter()
            .map(|n| {
                let result = found.remove(*n).unwrap_or_else(|| {
                    Err(Error::protocol(format!(
                        "the broker did not describe topic '{n}'"
                    )))
                });
                (n.to_string(), result.map(sorted))
            })
            .collect())
    }

    /// Describes one topic.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        single(self.describe_topics(&[name]).await?)
    }

    pub(crate) fn timeout_ms(&self) -> i32 {
        i32::try_from(self.cluster.config().request_timeout.as_millis()).unwrap_or(i32::MAX)
    }
}

fn described_partition(p: &DescribeTopicPartitionsResponsePartition) -> PartitionInfo {
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|n| NodeId(n.0)).collect();
    PartitionInfo {
        partition: p.partition_index,
        leader: (p.leader_id.0 >= 0).then_some(NodeId(p.leader_id.0)),
        leader_epoch: LeaderEpoch(p.leader_epoch),
        replicas: ids(&p.replica_nodes),
        isr: ids(&p.isr_nodes),
        offline_replicas: ids(&p.offline_replicas),
        elr: p.eligible_leader_replicas.as_deref().map(ids),
        last_known_elr: p.last_known_elr.as_deref().map(ids),
        error: ResponseError::try_from_code(p.error_code),
    }
}

fn sorted(mut d: TopicDescription) -> TopicDescription {
    d.partitions.sort_by_key(|p| p.partition);
    d
}

/// A per-item error code and message as a result.
pub(crate) fn outcome(code: i16, message: Option<&StrBytes>, context: String) -> Result<()> {
    match Error::from_code(code, message.map(|m| m.to_string()), context) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// NOT_CONTROLLER on any item means the request went to the wrong node: retry it whole.
pub(crate) fn not_controller_is_retriable<T>(results: TopicResults<T>) -> Result<TopicResults<T>> {
    for (_, r) in &results {
        if let Err(e) = r {
            if e.kafka_code() == Some(ResponseError::NotController) {
                return Err(e.clone());
            }
        }
    }
    Ok(results)
}

/// The only result of a one-item call.
pub(crate) fn single<T>(results: TopicResults<T>) -> Result<T> {
    results
        .into_iter()
        .next()
        .map_or_else(|| Err(Error::protocol("empty response")), |(_, r)| r)
}
