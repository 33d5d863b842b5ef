//! DescribeConfigs and IncrementalAlterConfigs for topics and brokers.

use std::fmt;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use super::topics::{not_controller_is_retriable, outcome, single};
use super::Admin;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::types::NodeId;

/// Something that has configs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigResource {
    /// A topic.
    Topic(String),
    /// A broker; `None` is the cluster-wide default.
    Broker(Option<NodeId>),
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        // Kafka's ConfigResource.Type codes: TOPIC = 2, BROKER = 4.
        match self {
            ConfigResource::Topic(name) => (2, name.clone()),
            ConfigResource::Broker(Some(id)) => (4, id.0.to_string()),
            ConfigResource::Broker(None) => (4, String::new()),
        }
    }
}

impl fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigResource::Topic(t) => write!(f, "topic '{t}'"),
            ConfigResource::Broker(Some(id)) => write!(f, "broker {id}"),
            ConfigResource::Broker(None) => write!(f, "cluster default broker config"),
        }
    }
}

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    DynamicTopic,
    /// Set dynamically for this broker.
    DynamicBroker,
    /// Set dynamically as the cluster-wide broker default.
    DynamicDefaultBroker,
    /// From the broker's config file.
    StaticBroker,
    /// The built-in default.
    Default,
    /// Another or unknown source (raw code).
    Other(i8),
}

impl ConfigSource {
    fn from_wire(code: i8) -> Self {
        match code {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::DynamicTopic => f.write_str("DYNAMIC_TOPIC_CONFIG"),
            ConfigSource::DynamicBroker => f.write_str("DYNAMIC_BROKER_CONFIG"),
            ConfigSource::DynamicDefaultBroker => f.write_str("DYNAMIC_DEFAULT_BROKER_CONFIG"),
            ConfigSource::StaticBroker => f.write_str("STATIC_BROKER_CONFIG"),
            ConfigSource::Default => f.write_str("DEFAULT_CONFIG"),
            ConfigSource::Other(c) => write!(f, "SOURCE_{c}"),
        }
    }
}

/// One config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name.
    pub name: String,
    /// Value; `None` for sensitive values or unset ones.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether it can be altered.
    pub read_only: bool,
    /// Whether the value is hidden.
    pub sensitive: bool,
}

/// IncrementalAlterConfigs operation kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterOpType {
    /// Set the value.
    Set,
    /// Remove the override (back to the default).
    Delete,
    /// Append to a list value.
    Append,
    /// Remove from a list value.
    Subtract,
}

/// One change to a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterConfigOp {
    /// Config name.
    pub name: String,
    /// What to do.
    pub op: AlterOpType,
    /// The value (unused by `Delete`).
    pub value: Option<String>,
}

impl AlterConfigOp {
    /// `name = value`.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op: AlterOpType::Set,
            value: Some(value.into()),
        }
    }

    /// Remove the override of `name`.
    pub fn delete(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op: AlterOpType::Delete,
            value: None,
        }
    }
}

impl Admin {
    /// Configs of each resource (all keys).
    pub async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<Vec<(ConfigResource, Result<Vec<ConfigEntry>>)>> {
        let mut out = Vec::with_capacity(resources.len());
        for res in resources {
            let r = self
                .cluster
                .with_retries(None, || self.describe_one(res))
                .await;
            out.push((res.clone(), r));
        }
        Ok(out)
    }

    /// Configs of one topic.
    pub async fn describe_topic_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let res = ConfigResource::Topic(topic.to_string());
        self.cluster
            .with_retries(None, || self.describe_one(&res))
            .await
    }

    async fn describe_one(&self, res: &ConfigResource) -> Result<Vec<ConfigEntry>> {
        let conn = self.connection_for(res).await?;
        let version = conn.api_version(ApiKey::DescribeConfigs)?;
        let (kind, name) = res.wire();
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(StrBytes::from_string(name))
                .with_configuration_keys(None),
        ]);
        let resp = conn.request(version, &req).await?;
        let result = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Error::protocol("DescribeConfigs response is empty"))?;
        outcome(
            result.error_code,
            result.error_message.as_ref(),
            format!("describe configs of {res}"),
        )?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: ConfigSource::from_wire(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Applies SET / DELETE / APPEND / SUBTRACT operations to one resource's configs.
    pub async fn incremental_alter_configs(
        &self,
        res: &ConfigResource,
        ops: &[AlterConfigOp],
        validate_only: bool,
    ) -> Result<()> {
        let label = res.to_string();
        self.cluster
            .with_retries(None, || async {
                let conn = self.connection_for(res).await?;
                let version = conn.api_version(ApiKey::IncrementalAlterConfigs)?;
                let (kind, name) = res.wire();
                let configs = ops
                    .iter()
                    .map(|o| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(o.name.clone()))
                            .with_config_operation(match o.op {
                                AlterOpType::Set => 0,
                                AlterOpType::Delete => 1,
                                AlterOpType::Append => 2,
                                AlterOpType::Subtract => 3,
                            })
                            .with_value(o.value.clone().map(StrBytes::from_string))
                    })
                    .collect();
                let req = IncrementalAlterConfigsRequest::default()
                    .with_resources(vec![AlterConfigsResource::default()
                        .with_resource_type(kind)
                        .with_resource_name(StrBytes::from_string(name))
                        .with_configs(configs)])
                    .with_validate_only(validate_only);
                let resp = conn.request(version, &req).await?;
                let r = resp.responses.first();
                let result = match r {
                    None => Err(Error::protocol("IncrementalAlterConfigs response is empty")),
                    Some(r) => outcome(
                        r.error_code,
                        r.error_message.as_ref(),
                        format!("alter configs of {label}"),
                    ),
                };
                not_controller_is_retriable(vec![(label.clone(), result)])
            })
            .await
            .and_then(single)
    }

    /// A specific broker's configs live on that broker; everything else goes to the controller.
    async fn connection_for(&self, res: &ConfigResource) -> Result<std::sync::Arc<Connection>> {
        match res {
            ConfigResource::Broker(Some(id)) => self.cluster.connection(*id).await,
            _ => self.cluster.controller_connection().await,
        }
    }
}
