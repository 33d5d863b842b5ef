//! IncrementalAlterConfigs for topics: SET, DELETE, APPEND, SUBTRACT, validated against
//! `config_defs`; and the legacy AlterConfigs, whose configs replace a topic's whole set
//! of overrides (`AlterConfigsResource::replace`). Each resource is all-or-nothing, as in
//! Kafka.

use std::collections::{BTreeMap, BTreeSet};

use spate_proto::controller::{
    AlterConfigOp, AlterConfigsRequest, AlterConfigsResource, AlterConfigsResponse,
    AlterConfigsResult, AlterableConfig,
};
use spate_proto::metadata::{ConfigResourceType, MetadataRecord};

use super::election::{on_min_insync_changed, TopicRules};
use super::ControllerResult;
use crate::error::{ApiError, ErrorCode};
use spate_metadata::config_defs::{self, ConfigKind};
use spate_metadata::{records, ConfigResource, MetadataImage};

/// Decides an IncrementalAlterConfigs request.
pub fn alter_configs(
    image: &MetadataImage,
    req: &AlterConfigsRequest,
) -> ControllerResult<AlterConfigsResponse> {
    let mut seen = BTreeSet::new();
    let dups: BTreeSet<_> = req
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.as_str()))
        .filter(|k| !seen.insert(*k))
        .collect();
    let mut out = Vec::new();
    let mut results = Vec::new();
    for resource in &req.resources {
        let outcome = if dups.contains(&(resource.resource_type, resource.resource_name.as_str())) {
            Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "resource '{}' appears more than once in the request",
                    resource.resource_name
                ),
            ))
        } else {
            alter_one(image, resource)
        };
        let mut result = AlterConfigsResult {
            resource_type: resource.resource_type,
            resource_name: resource.resource_name.clone(),
            ..Default::default()
        };
        match outcome {
            Ok(records) if !req.validate_only => out.extend(records),
            Ok(_) => {}
            Err(e) => {
                result.error_code = e.code.proto_code();
                result.error_message = e.message;
            }
        }
        results.push(result);
    }
    ControllerResult {
        records: out,
        response: AlterConfigsResponse { resources: results },
    }
}

fn alter_one(
    image: &MetadataImage,
    resource: &AlterConfigsResource,
) -> Result<Vec<MetadataRecord>, ApiError> {
    let name = &resource.resource_name;
    match ConfigResourceType::try_from(resource.resource_type) {
        Ok(ConfigResourceType::ConfigResourceTopic) => {}
        Ok(ConfigResourceType::ConfigResourceBroker) => return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "dynamic broker configs are not supported yet; set them in the broker's config file",
        )),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown config resource type {}", resource.resource_type),
            ))
        }
    }
    if image.topic_by_name(name).is_none() {
        return Err(ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        ));
    }
    let current = image.topic_config(name);
    // Legacy AlterConfigs: what the request names is everything that stays overridden.
    let mut next = if resource.replace {
        BTreeMap::new()
    } else {
        current.clone()
    };
    let mut keys = BTreeSet::new();
    for change in &resource.configs {
        if resource.replace && change.value.is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "null value not supported for topic config '{}'",
                    change.name
                ),
            ));
        }
        if !keys.insert(change.name.as_str()) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "config '{}' appears more than once for topic '{name}'",
                    change.name
                ),
            ));
        }
        apply_op(&mut next, change)?;
    }
    let target = ConfigResource::Topic(name.clone());
    let mut out: Vec<MetadataRecord> = diff(current, &next)
        .into_iter()
        .map(|(k, v)| records::config(&target, k, v))
        .collect();
    let rules = TopicRules::from_configs(&next);
    if rules.min_insync != TopicRules::from_configs(current).min_insync {
        if let Some(id) = image.topic_by_name(name).map(|t| t.id) {
            out.extend(on_min_insync_changed(image, id, rules));
        }
    }
    Ok(out)
}

fn invalid_config(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidConfig, message)
}

/// Applies one operation to the topic's overrides, validating the resulting value.
fn apply_op(
    configs: &mut BTreeMap<String, String>,
    change: &AlterableConfig,
) -> Result<(), ApiError> {
    let key = change.name.as_str();
    let def = config_defs::lookup(key)
        .ok_or_else(|| invalid_config(format!("unknown topic config '{key}'")))?;
    let op = AlterConfigOp::try_from(change.op).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("unknown config operation {}", change.op),
        )
    })?;
    if op == AlterConfigOp::Delete {
        configs.remove(key);
        return Ok(());
    }
    let value = change
        .value
        .as_deref()
        .ok_or_else(|| invalid_config(format!("{} of '{key}' needs a value", op.as_str_name())))?;
    let new_value = match op {
        AlterConfigOp::Set | AlterConfigOp::Delete => value.to_string(),
        AlterConfigOp::Append | AlterConfigOp::Subtract => {
            if def.kind != ConfigKind::List {
                return Err(invalid_config(format!(
                    "{} is only allowed for list configs; '{key}' is not a list",
                    op.as_str_name()
                )));
            }
            let current = config_defs::effective(configs, key).unwrap_or_default();
            let mut items: Vec<&str> = config_defs::list_items(current);
            let given = config_defs::list_items(value);
            if op == AlterConfigOp::Append {
                for item in given {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
            } else {
                items.retain(|i| !given.contains(i));
            }
            items.join(",")
        }
    };
    // The one validation every path shares (CreateTopics, AlterConfigs, defaults).
    config_defs::validate(key, &new_value).map_err(invalid_config)?;
    configs.insert(key.to_string(), new_value);
    Ok(())
}

/// Keys whose stored value changes: `Some` to set, `None` to delete.
fn diff<'a>(
    old: &'a BTreeMap<String, String>,
    new: &'a BTreeMap<String, String>,
) -> Vec<(&'a str, Option<&'a str>)> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| (k.as_str(), new.get(k).map(String::as_str)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_metadata::ids::TopicId;

    fn image() -> MetadataImage {
        let mut img = MetadataImage::new();
        img.apply(1, &records::topic("t", TopicId::from_random([1; 16])))
            .unwrap();
        img.apply(
            2,
            &records::config(
                &ConfigResource::Topic("t".into()),
                "retention.ms",
                Some("5"),
            ),
        )
        .unwrap();
        img
    }

    fn op(name: &str, op: AlterConfigOp, value: Option<&str>) -> AlterableConfig {
        AlterableConfig {
            name: name.into(),
            op: op as i32,
            value: value.map(str::to_string),
        }
    }

    fn topic_res(name: &str, configs: Vec<AlterableConfig>) -> AlterConfigsResource {
        AlterConfigsResource {
            resource_type: ConfigResourceType::ConfigResourceTopic as i32,
            resource_name: name.into(),
            configs,
            replace: false,
        }
    }

    fn run(img: &mut MetadataImage, resources: Vec<AlterConfigsResource>) -> Vec<i32> {
        let res = alter_configs(
            img,
            &AlterConfigsRequest {
                resources,
                validate_only: false,
            },
        );
        for r in &res.records {
            img.apply(img.offset() + 1, r).unwrap();
        }
        res.response
            .resources
            .iter()
            .map(|r| r.error_code)
            .collect()
    }

    fn get(img: &MetadataImage, key: &str) -> Option<String> {
        img.topic_config("t").get(key).cloned()
    }

    #[test]
    fn lowering_min_insync_to_the_isr_size_clears_the_elr() {
        use spate_metadata::ids::{LeaderEpoch, NodeId, PartitionEpoch};
        let mut img = image();
        let t = TopicId::from_random([1; 16]);
        let part = spate_metadata::PartitionImage {
            replicas: vec![NodeId(1), NodeId(2), NodeId(3)],
            isr: vec![NodeId(1), NodeId(2)],
            elr: vec![NodeId(3)],
            last_known_elr: Vec::new(),
            leader: Some(NodeId(1)),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
        };
        img.apply(3, &records::partition(t, 0, &part)).unwrap();
        let set = |v| {
            topic_res(
                "t",
                vec![op("min.insync.replicas", AlterConfigOp::Set, Some(v))],
            )
        };
        // 3 -> 3 (the default is 1, so this is a change) keeps the frozen HW's ELR.
        assert_eq!(run(&mut img, vec![set("3")]), vec![0]);
        assert_eq!(img.partition(t, 0).unwrap().elr, vec![NodeId(3)]);
        // 2: the ISR meets it, the HW moves again, 3 is no longer known to keep up.
        assert_eq!(run(&mut img, vec![set("2")]), vec![0]);
        assert!(img.partition(t, 0).unwrap().elr.is_empty());
    }

    #[test]
    fn set_and_delete() {
        let mut img = image();
        let codes = run(
            &mut img,
            vec![topic_res(
                "t",
                vec![
                    op("segment.ms", AlterConfigOp::Set, Some("1000")),
                    op("retention.ms", AlterConfigOp::Delete, None),
                ],
            )],
        );
        assert_eq!(codes, vec![0]);
        assert_eq!(get(&img, "segment.ms").as_deref(), Some("1000"));
        assert_eq!(get(&img, "retention.ms"), None);
    }

    #[test]
    fn append_and_subtract_work_on_lists_from_the_default() {
        let mut img = image();
        // cleanup.policy is the one list config; "delete" is its default, so appending it
        // changes nothing and subtracting it leaves an empty list (valid, as in Kafka).
        let append = op("cleanup.policy", AlterConfigOp::Append, Some("delete"));
        // The first append makes the default an explicit override.
        assert_eq!(
            run(&mut img, vec![topic_res("t", vec![append.clone()])]),
            vec![0]
        );
        assert_eq!(get(&img, "cleanup.policy").as_deref(), Some("delete"));
        let res = alter_configs(
            &img,
            &AlterConfigsRequest {
                resources: vec![topic_res("t", vec![append])],
                validate_only: false,
            },
        );
        assert_eq!(res.response.resources[0].error_code, 0);
        assert!(
            res.records.is_empty(),
            "appending a present item changes nothing"
        );
        // Subtracting the last item leaves an empty list, which Kafka accepts.
        let empty = op("cleanup.policy", AlterConfigOp::Subtract, Some("delete"));
        assert_eq!(run(&mut img, vec![topic_res("t", vec![empty])]), vec![0]);
        assert_eq!(get(&img, "cleanup.policy").as_deref(), Some(""));
    }

    #[test]
    fn compaction_is_set_and_appended_as_kafka_does() {
        let mut img = image();
        let append = op("cleanup.policy", AlterConfigOp::Append, Some("compact"));
        assert_eq!(run(&mut img, vec![topic_res("t", vec![append])]), vec![0]);
        assert_eq!(
            get(&img, "cleanup.policy").as_deref(),
            Some("delete,compact")
        );
        let set = op("cleanup.policy", AlterConfigOp::Set, Some("compact"));
        assert_eq!(run(&mut img, vec![topic_res("t", vec![set])]), vec![0]);
        assert_eq!(get(&img, "cleanup.policy").as_deref(), Some("compact"));
        let bad = op("cleanup.policy", AlterConfigOp::Set, Some("compact,shred"));
        assert_eq!(run(&mut img, vec![topic_res("t", vec![bad])]), vec![40]);
    }

    #[test]
    fn errors_reject_the_whole_resource() {
        let mut img = image();
        let codes = run(
            &mut img,
            vec![
                topic_res(
                    "t",
                    vec![
                        op("segment.ms", AlterConfigOp::Set, Some("7")),
                        op("retention.ms", AlterConfigOp::Set, Some("x")),
                    ],
                ),
                topic_res("t2", vec![op("segment.ms", AlterConfigOp::Set, Some("7"))]),
            ],
        );
        assert_eq!(codes, vec![40, 3]);
        assert_eq!(get(&img, "segment.ms"), None);
        assert_eq!(get(&img, "retention.ms").as_deref(), Some("5"));
    }

    #[test]
    fn legacy_alter_configs_replaces_every_override() {
        // The image has retention.ms=5; the legacy request names only segment.ms.
        let mut img = image();
        let replace = |configs| AlterConfigsResource {
            replace: true,
            ..topic_res("t", configs)
        };
        let set = |k: &str, v: &str| op(k, AlterConfigOp::Set, Some(v));
        assert_eq!(
            run(&mut img, vec![replace(vec![set("segment.ms", "60000")])]),
            vec![0]
        );
        assert_eq!(get(&img, "segment.ms").as_deref(), Some("60000"));
        assert_eq!(get(&img, "retention.ms"), None, "left out: back to default");
        // Validated as IncrementalAlterConfigs is; a refused resource changes nothing.
        let bad = replace(vec![set("retention.ms", "soon")]);
        assert_eq!(run(&mut img, vec![bad]), vec![40]);
        let null = replace(vec![op("retention.ms", AlterConfigOp::Set, None)]);
        assert_eq!(run(&mut img, vec![null]), vec![42]);
        assert_eq!(get(&img, "segment.ms").as_deref(), Some("60000"));
        // An empty request clears every override.
        assert_eq!(run(&mut img, vec![replace(vec![])]), vec![0]);
        assert_eq!(get(&img, "segment.ms"), None);
    }

    #[test]
    fn kafka_error_codes_for_each_misuse() {
        let mut img = image();
        let broker = AlterConfigsResource {
            resource_type: ConfigResourceType::ConfigResourceBroker as i32,
            resource_name: "1".into(),
            configs: vec![],
            replace: false,
        };
        let unknown_type = AlterConfigsResource {
            resource_type: 99,
            ..broker.clone()
        };
        let codes = run(
            &mut img,
            vec![
                topic_res(
                    "t",
                    vec![op("retention.ms", AlterConfigOp::Append, Some("1"))],
                ),
                topic_res("t", vec![]),
                broker,
                unknown_type,
            ],
        );
        // The two "t" entries are duplicates of each other.
        assert_eq!(codes, vec![42, 42, 42, 42]);
        let codes = run(
            &mut img,
            vec![topic_res(
                "t",
                vec![op("retention.ms", AlterConfigOp::Append, Some("1"))],
            )],
        );
        assert_eq!(codes, vec![40]);
        let codes = run(
            &mut img,
            vec![topic_res(
                "t",
                vec![op("nope", AlterConfigOp::Set, Some("1"))],
            )],
        );
        assert_eq!(codes, vec![40]);
        let codes = run(
            &mut img,
            vec![topic_res(
                "t",
                vec![op("segment.ms", AlterConfigOp::Set, None)],
            )],
        );
        assert_eq!(codes, vec![40]);
        let dup_key = vec![
            op("segment.ms", AlterConfigOp::Set, Some("9")),
            op("segment.ms", AlterConfigOp::Delete, None),
        ];
        assert_eq!(run(&mut img, vec![topic_res("t", dup_key)]), vec![42]);
        let bad_op = AlterableConfig {
            name: "segment.ms".into(),
            op: 17,
            value: Some("1".into()),
        };
        assert_eq!(run(&mut img, vec![topic_res("t", vec![bad_op])]), vec![42]);
    }

    #[test]
    fn validate_only_commits_nothing() {
        let img = image();
        let req = AlterConfigsRequest {
            resources: vec![topic_res(
                "t",
                vec![op("segment.ms", AlterConfigOp::Set, Some("100"))],
            )],
            validate_only: true,
        };
        let res = alter_configs(&img, &req);
        assert!(res.records.is_empty());
        assert_eq!(res.response.resources[0].error_code, 0);
    }
}
