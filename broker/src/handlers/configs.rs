//! DescribeConfigs (topic configs with their sources; the broker's own settings),
//! IncrementalAlterConfigs and the legacy AlterConfigs (both forwarded to the controller,
//! which decides them into config records).
use std::time::Duration;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as AlterConfigsResourceResponseLegacy;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use spate_metadata::config_defs::{self, ConfigDef, ConfigKind};
use spate_metadata::topic_defaults::{self, TopicDefaults};
use spate_metadata::ErrorCode;
use spate_proto::controller as pb;
use spate_proto::metadata::ConfigResourceType;

use super::str_bytes;
use crate::server::context::RequestContext;
use crate::state::BrokerState;
use crate::topic_config;

/// Kafka's ConfigResource type codes.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Kafka's ConfigSource codes.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn config_type(kind: ConfigKind) -> i8 {
    match kind {
        ConfigKind::Boolean => 1,
        ConfigKind::String => 2,
        ConfigKind::Int => 3,
        ConfigKind::Long => 5,
        ConfigKind::Double => 6,
        ConfigKind::List => 7,
        ConfigKind::Class => 8,
    }
}

struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    kind: i8,
    doc: String,
    /// (name, value, source), most specific first.
    synonyms: Vec<(String, String, i8)>,
}

fn entry_result(e: Entry, with_synonyms: bool, with_docs: bool) -> DescribeConfigsResourceResult {
    let synonyms = if with_synonyms {
        e.synonyms
            .iter()
            .map(|(n, v, s)| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(n.clone()))
                    .with_value(Some(str_bytes(v.clone())))
                    .with_source(*s)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(e.name))
        .with_value(Some(str_bytes(e.value)))
        .with_read_only(e.read_only)
        .with_config_source(e.source)
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(e.kind)
        .with_documentation(with_docs.then(|| str_bytes(e.doc)))
}

fn topic_entries(state: &BrokerState, topic: &str) -> Option<Vec<Entry>> {
    let image = state.metadata.image();
    image.topic_by_name(topic)?;
    let defaults = &state.config.topics.configs;
    let effective = topic_config::effective(&image, topic, defaults);
    Some(
        config_defs::TOPIC_CONFIGS
            .iter()
            .map(|def| {
                let value = effective.get(def.name).cloned().unwrap_or_default();
                let dynamic = topic_config::is_override(&image, topic, def.name);
                // As Kafka: the topic's own value, then the broker's static default,
                // then the built-in one, each under its own name.
                let mut synonyms = Vec::new();
                if dynamic {
                    synonyms.push((def.name.to_string(), value.clone(), SOURCE_DYNAMIC_TOPIC));
                }
                synonyms.extend(default_synonyms(defaults, def));
                let source = match synonyms.first() {
                    Some((_, _, source)) => *source,
                    None => SOURCE_DEFAULT,
                };
                Entry {
                    name: def.name.to_string(),
                    value,
                    source,
                    read_only: false,
                    kind: config_type(def.kind),
                    doc: def.doc.to_string(),
                    synonyms,
                }
            })
            .collect(),
    )
}

fn broker_entries(state: &BrokerState) -> Vec<Entry> {
    let c = &state.config;
    let statics = [
        (
            "node.id",
            c.node_id.to_string(),
            ConfigKind::Int,
            "This node's id.",
        ),
        (
            "broker.id",
            c.node_id.to_string(),
            ConfigKind::Int,
            "Same as node.id.",
        ),
        (
            "log.dirs",
            c.log_dir().display().to_string(),
            ConfigKind::String,
            "Where partition logs are stored.",
        ),
        (
            "advertised.listeners",
            state
                .endpoints
                .iter()
                .map(|e| format!("{}://{}:{}", e.listener, e.host, e.port))
                .collect::<Vec<_>>()
                .join(","),
            ConfigKind::List,
            "Addresses clients are given.",
        ),
        (
            "auto.create.topics.enable",
            c.topics.auto_create.to_string(),
            ConfigKind::Boolean,
            "Create unknown topics on Metadata requests.",
        ),
        (
            "num.partitions",
            c.topics.num_partitions.to_string(),
            ConfigKind::Int,
            "Partitions of topics created without a count.",
        ),
        (
            "default.replication.factor",
            c.topics.default_replication_factor.to_string(),
            ConfigKind::Int,
            "Replication factor of topics created without one.",
        ),
        (
            "socket.request.max.bytes",
            c.network.max_request_bytes.to_string(),
            ConfigKind::Int,
            "Largest request frame accepted.",
        ),
    ];
    let mut entries: Vec<Entry> = statics
        .into_iter()
        .map(|(name, value, kind, doc)| Entry {
            name: name.to_string(),
            value: value.clone(),
            source: SOURCE_STATIC_BROKER,
            read_only: true,
            kind: config_type(kind),
            doc: doc.to_string(),
            synonyms: vec![(name.to_string(), value, SOURCE_STATIC_BROKER)],
        })
        .collect();
    // Broker-wide defaults of topic configs, under Kafka's broker-level names.
    let defaults = &state.config.topics.configs;
    for def in config_defs::TOPIC_CONFIGS {
        let Some(name) = topic_defaults::broker_name(def.name) else {
            continue;
        };
        let synonyms = default_synonyms(defaults, def);
        let (value, source) = match synonyms.first() {
            Some((_, value, source)) => (value.clone(), *source),
            None => (def.default.to_string(), SOURCE_DEFAULT),
        };
        entries.push(Entry {
            name: name.to_string(),
            value,
            source,
            read_only: true,
            kind: config_type(def.kind),
            doc: def.doc.to_string(),
            synonyms,
        });
    }
    entries
}

/// A topic config's defaults as Kafka lists them: the server config's broker-level key if
/// set, then the built-in default.
fn default_synonyms(defaults: &TopicDefaults, def: &ConfigDef) -> Vec<(String, String, i8)> {
    let name = topic_defaults::broker_name(def.name)
        .unwrap_or(def.name)
        .to_string();
    let mut out = Vec::new();
    if let Some(value) = defaults
        .is_set(def.name)
        .then(|| defaults.get(def.name))
        .flatten()
    {
        out.push((name.clone(), value.to_string(), SOURCE_STATIC_BROKER));
    }
    out.push((name, def.default.to_string(), SOURCE_DEFAULT));
    out
}

/// DescribeConfigs.
pub fn describe(ctx: &RequestContext, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let state = &ctx.state;
    let with_docs = req.include_documentation;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let entries = match r.resource_type {
                TOPIC => topic_entries(state, &name).ok_or((
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )),
                BROKER if name.is_empty() || name == state.config.node_id.to_string() => {
                    Ok(broker_entries(state))
                }
                BROKER => Err((
                    ErrorCode::InvalidRequest,
                    format!("this is broker {}, not '{name}'", state.config.node_id),
                )),
                other => Err((
                    ErrorCode::InvalidRequest,
                    format!("config resource type {other} is not supported"),
                )),
            };
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match entries {
                Ok(entries) => {
                    // As Kafka's ConfigHelper: no keys, or an empty list, means all.
                    let keys: Option<Vec<String>> = r
                        .configuration_keys
                        .filter(|ks| !ks.is_empty())
                        .map(|ks| ks.iter().map(StrBytes::to_string).collect());
                    let configs = entries
                        .into_iter()
                        .filter(|e| keys.as_ref().is_none_or(|ks| ks.contains(&e.name)))
                        .map(|e| entry_result(e, req.include_synonyms, with_docs))
                        .collect();
                    base.with_error_code(0).with_configs(configs)
                }
                Err((err, msg)) => base
                    .with_error_code(err.code())
                    .with_error_message(Some(str_bytes(msg))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// One resource's answer to an alter request: (error code, message, type, name).
type Altered = (i16, Option<StrBytes>, i8, StrBytes);

fn resource_type(kafka_type: i8) -> i32 {
    match kafka_type {
        TOPIC => ConfigResourceType::ConfigResourceTopic as i32,
        BROKER => ConfigResourceType::ConfigResourceBroker as i32,
        _ => ConfigResourceType::ConfigResourceUnknown as i32,
    }
}

/// One resource of an alter request as the client named it, with its changes.
struct AlterResource {
    kafka_type: i8,
    name: StrBytes,
    configs: Vec<pb::AlterableConfig>,
}

impl AlterResource {
    /// A resource with its (name, operation, value) changes.
    fn new<'a>(
        kafka_type: i8,
        name: StrBytes,
        changes: impl Iterator<Item = (&'a StrBytes, i32, Option<&'a StrBytes>)>,
    ) -> AlterResource {
        let configs = changes
            .map(|(name, op, value)| pb::AlterableConfig {
                name: name.to_string(),
                op,
                value: value.map(|v| v.to_string()),
            })
            .collect();
        AlterResource {
            kafka_type,
            name,
            configs,
        }
    }
}

/// Sends an alter request to the controller (`replace`: the legacy AlterConfigs) and
/// answers once our image holds the change, so a DescribeConfigs sent here next already
/// sees it.
async fn alter(
    state: &BrokerState,
    asked: Vec<AlterResource>,
    validate_only: bool,
    replace: bool,
) -> Vec<Altered> {
    let names: Vec<(i8, StrBytes)> = asked
        .iter()
        .map(|r| (r.kafka_type, r.name.clone()))
        .collect();
    let pb_req = pb::AlterConfigsRequest {
        resources: asked
            .into_iter()
            .map(|r| pb::AlterConfigsResource {
                resource_type: resource_type(r.kafka_type),
                resource_name: r.name.to_string(),
                configs: r.configs,
                replace,
            })
            .collect(),
        validate_only,
    };
    let before = state.metadata.image().offset();
    let outcome =
        super::admin::controller_call(state, |mut c| async move { c.alter_configs(pb_req).await })
            .await;
    if let Ok(resp) = &outcome {
        if !validate_only && resp.resources.iter().any(|r| r.error_code == 0) {
            state
                .metadata
                .wait_until(Duration::from_secs(5), |i| i.offset() > before)
                .await;
        }
    }
    match outcome {
        Ok(resp) => resp
            .resources
            .into_iter()
            .map(|r| {
                let kafka_type =
                    if r.resource_type == ConfigResourceType::ConfigResourceBroker as i32 {
                        BROKER
                    } else {
                        TOPIC
                    };
                (
                    r.error_code as i16,
                    (!r.error_message.is_empty()).then(|| str_bytes(r.error_message)),
                    kafka_type,
                    str_bytes(r.resource_name),
                )
            })
            .collect(),
        Err(e) => names
            .into_iter()
            .map(|(t, name)| (e.code(), Some(str_bytes(e.to_string())), t, name))
            .collect(),
    }
}

/// IncrementalAlterConfigs: SET, DELETE, APPEND, SUBTRACT, validated by the controller.
pub async fn incremental_alter(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let asked = req
        .resources
        .iter()
        .map(|r| {
            let changes = r
                .configs
                .iter()
                .map(|c| (&c.name, c.config_operation as i32, c.value.as_ref()));
            AlterResource::new(r.resource_type, r.resource_name.clone(), changes)
        })
        .collect();
    let responses = alter(&ctx.state, asked, req.validate_only, false)
        .await
        .into_iter()
        .map(|(code, message, kafka_type, name)| {
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(kafka_type)
                .with_resource_name(name)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The legacy AlterConfigs (API 33, still used by older admin tools): each resource's
/// configs replace its whole set of overrides, so keys left out return to their
/// defaults. Validated by the controller as IncrementalAlterConfigs is, atomically per
/// resource.
pub async fn alter_legacy(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let asked = req
        .resources
        .iter()
        .map(|r| {
            let set = pb::AlterConfigOp::Set as i32;
            let changes = r.configs.iter().map(|c| (&c.name, set, c.value.as_ref()));
            AlterResource::new(r.resource_type, r.resource_name.clone(), changes)
        })
        .collect();
    let responses = alter(&ctx.state, asked, req.validate_only, true)
        .await
        .into_iter()
        .map(|(code, message, kafka_type, name)| {
            AlterConfigsResourceResponseLegacy::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(kafka_type)
                .with_resource_name(name)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}
