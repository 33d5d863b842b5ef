//! Broker-wide defaults of topic configs: `log.cleanup.policy = compact` in a server's
//! config makes every topic without its own `cleanup.policy` compacted, as Kafka's
//! server.properties does. Each topic config is set under Kafka's broker-level name
//! (its "synonym": `log.retention.ms` for `retention.ms`,
//! `log.cleaner.min.cleanable.ratio` for `min.cleanable.dirty.ratio`, ...).
//!
//! The two configs the controller decides by (`min.insync.replicas`,
//! `unclean.leader.election.enable`) are not broker defaults here: the active controller
//! elects leaders and shrinks the ELR from the metadata image alone, so a default only
//! some nodes' files carry would change those decisions with the controller's seat. They
//! are set per topic.
use std::collections::BTreeMap;

use crate::config_defs::{self, ConfigDef, TOPIC_CONFIGS};

/// Topic configs the controller's decisions read; they have no broker default.
const DECIDED_BY_THE_CONTROLLER: &[&str] =
    &["min.insync.replicas", "unclean.leader.election.enable"];

/// Each topic config's broker-level name in Kafka (`ServerTopicConfigSynonyms`); the
/// configs not listed (the replication throttle lists) are set per topic only.
const SYNONYMS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("compression.type", "compression.type"),
    ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
    ("file.delete.delay.ms", "log.segment.delete.delay.ms"),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms"),
    ("max.message.bytes", "message.max.bytes"),
    (
        "message.downconversion.enable",
        "log.message.downconversion.enable",
    ),
    (
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
    ),
    (
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
    ),
    (
        "message.timestamp.difference.max.ms",
        "log.message.timestamp.difference.max.ms",
    ),
    ("message.timestamp.type", "log.message.timestamp.type"),
    (
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
    ),
    ("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("preallocate", "log.preallocate"),
    ("retention.bytes", "log.retention.bytes"),
    ("retention.ms", "log.retention.ms"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.index.bytes", "log.index.size.max.bytes"),
    ("segment.jitter.ms", "log.roll.jitter.ms"),
    ("segment.ms", "log.roll.ms"),
    (
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
    ),
];

/// Kafka's broker-level name of a topic config's default, if it has one.
pub fn broker_name(topic_key: &str) -> Option<&'static str> {
    SYNONYMS
        .iter()
        .find(|(topic, _)| *topic == topic_key)
        .map(|(_, broker)| *broker)
}

/// The topic config a broker-level name sets, if it is one.
pub fn topic_key_of(broker_key: &str) -> Option<&'static ConfigDef> {
    let (topic, _) = SYNONYMS.iter().find(|(_, broker)| *broker == broker_key)?;
    config_defs::lookup(topic)
}

/// Every broker-level name a server config may name (including the two it refuses with
/// their reason), in table order.
pub fn broker_names() -> impl Iterator<Item = &'static str> {
    SYNONYMS.iter().map(|(_, broker)| *broker)
}

/// Why a broker-level default cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefaultError {
    /// Not a topic config's broker-level name.
    #[error("'{0}' is not the broker-level name of a topic config")]
    Unknown(String),
    /// A config the controller decides by.
    #[error(
        "'{0}' has no broker-wide default in Spate: the controller decides by it from the \
         metadata alone; set it per topic (spate topic create --config {0}=...)"
    )]
    DecidedByTheController(String),
    /// The value does not validate as the topic config's.
    #[error("{0}")]
    Invalid(String),
}

/// The topic-config defaults a broker applies: the built-in ones, each replaced by the
/// server config's broker-level key where one is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicDefaults {
    /// Set defaults by topic config name.
    set: BTreeMap<&'static str, String>,
}

impl TopicDefaults {
    /// Sets the default named by its broker-level key, validated as the topic config is.
    pub fn set(&mut self, broker_key: &str, value: &str) -> Result<(), DefaultError> {
        let def =
            topic_key_of(broker_key).ok_or_else(|| DefaultError::Unknown(broker_key.into()))?;
        if DECIDED_BY_THE_CONTROLLER.contains(&def.name) {
            return Err(DefaultError::DecidedByTheController(broker_key.into()));
        }
        // Kafka's message names the broker key the operator wrote, not the topic key.
        def.validate(value)
            .map_err(|e| DefaultError::Invalid(e.replacen(def.name, broker_key, 1)))?;
        self.set.insert(def.name, value.to_string());
        Ok(())
    }

    /// The default of a topic config: the broker's if set, else the built-in one.
    pub fn get(&self, topic_key: &str) -> Option<&str> {
        self.set
            .get(topic_key)
            .map(String::as_str)
            .or_else(|| config_defs::lookup(topic_key).map(|d| d.default))
    }

    /// Whether the server config set this topic config's default.
    pub fn is_set(&self, topic_key: &str) -> bool {
        self.set.contains_key(topic_key)
    }

    /// The set defaults under their broker-level names, for the start-up log.
    pub fn by_broker_name(&self) -> Vec<(&'static str, String)> {
        self.set
            .iter()
            .filter_map(|(k, v)| Some((broker_name(k)?, v.clone())))
            .collect()
    }

    /// Every known topic config with its value: the override in `overrides`, else this
    /// default.
    pub fn effective(&self, overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        TOPIC_CONFIGS
            .iter()
            .map(|def| {
                let value = overrides
                    .get(def.name)
                    .cloned()
                    .or_else(|| self.get(def.name).map(str::to_string))
                    .unwrap_or_default();
                (def.name.to_string(), value)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_names_are_kafkas_synonyms() {
        let cases = [
            ("cleanup.policy", "log.cleanup.policy"),
            ("retention.ms", "log.retention.ms"),
            ("segment.bytes", "log.segment.bytes"),
            ("segment.ms", "log.roll.ms"),
            (
                "min.cleanable.dirty.ratio",
                "log.cleaner.min.cleanable.ratio",
            ),
            ("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms"),
            ("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms"),
            ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
            ("max.message.bytes", "message.max.bytes"),
            ("compression.type", "compression.type"),
            ("message.timestamp.type", "log.message.timestamp.type"),
        ];
        for (topic, broker) in cases {
            assert_eq!(broker_name(topic), Some(broker), "{topic}");
            assert_eq!(
                topic_key_of(broker).map(|d| d.name),
                Some(topic),
                "{broker}"
            );
        }
        assert_eq!(broker_name("leader.replication.throttled.replicas"), None);
        assert_eq!(broker_name("no.such.key"), None);
        // Every topic config but the throttle lists has exactly one broker-level name.
        for def in TOPIC_CONFIGS {
            let throttle = def.name.ends_with(".replication.throttled.replicas");
            assert_eq!(broker_name(def.name).is_some(), !throttle, "{}", def.name);
        }
        let mut names: Vec<_> = broker_names().collect();
        assert!(names.iter().all(|n| topic_key_of(n).is_some()), "{names:?}");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SYNONYMS.len());
    }

    #[test]
    fn a_set_default_replaces_the_builtin_one_under_overrides() {
        let mut d = TopicDefaults::default();
        d.set("log.cleanup.policy", "compact").unwrap();
        d.set("log.cleaner.min.cleanable.ratio", "0.1").unwrap();
        assert!(d.is_set("cleanup.policy"));
        assert!(!d.is_set("retention.ms"));
        assert_eq!(d.get("cleanup.policy"), Some("compact"));
        assert_eq!(d.get("retention.ms"), Some("604800000"));
        let mut overrides = BTreeMap::new();
        overrides.insert("cleanup.policy".to_string(), "delete".to_string());
        let e = d.effective(&overrides);
        assert_eq!(e["cleanup.policy"], "delete", "a topic's own value wins");
        assert_eq!(e["min.cleanable.dirty.ratio"], "0.1");
        assert_eq!(e.len(), TOPIC_CONFIGS.len());
        assert_eq!(
            d.by_broker_name(),
            vec![
                ("log.cleanup.policy", "compact".to_string()),
                ("log.cleaner.min.cleanable.ratio", "0.1".to_string()),
            ]
        );
    }

    #[test]
    fn bad_defaults_are_refused_by_their_broker_name() {
        let mut d = TopicDefaults::default();
        assert_eq!(
            d.set("log.cleanup.policy", "shred"),
            Err(DefaultError::Invalid(
                "log.cleanup.policy must be a list of delete|compact, got 'shred'".into()
            ))
        );
        assert_eq!(
            d.set("log.cleanup.policies", "compact"),
            Err(DefaultError::Unknown("log.cleanup.policies".into()))
        );
        let e = d.set("min.insync.replicas", "2").unwrap_err();
        assert!(matches!(e, DefaultError::DecidedByTheController(_)));
        assert!(e.to_string().contains("set it per topic"), "{e}");
        assert_eq!(d, TopicDefaults::default(), "nothing refused was kept");
    }
}
