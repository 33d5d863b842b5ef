//! The topic config keys Spate knows, with Kafka's names, types, defaults and validators.
//! Shared with the broker (DescribeConfigs, IncrementalAlterConfigs) so both sides agree
//! on what is valid. Unknown keys are `INVALID_CONFIG`.

use std::collections::BTreeMap;

/// The value type of a config, as Kafka's `ConfigDef.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// A 64-bit integer.
    Long,
    /// A 32-bit integer.
    Int,
    /// A floating point number.
    Double,
    /// `true` or `false` (case-insensitive, as Kafka).
    Boolean,
    /// Free text (possibly restricted by the validator).
    String,
    /// A comma-separated list.
    List,
    /// A class name (kept for parity with Kafka's types; no topic config uses it).
    Class,
}

/// What values a config accepts beyond its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Validator {
    /// Any value of the type.
    Any,
    /// A number at least this large.
    AtLeast(i64),
    /// A number within `[lo, hi]`.
    Between(f64, f64),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A non-empty list whose items are each one of these strings.
    ListOf(&'static [&'static str]),
}

/// One known config key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfigDef {
    /// Kafka's key name.
    pub name: &'static str,
    /// The default as a string, exactly as DescribeConfigs reports it.
    pub default: &'static str,
    /// The value type.
    pub kind: ConfigKind,
    /// The accepted values.
    pub validator: Validator,
    /// One line of documentation.
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";
const COMPRESSION_TYPES: &[&str] = &["producer", "gzip", "snappy", "lz4", "zstd", "uncompressed"];

const fn def(
    name: &'static str,
    default: &'static str,
    kind: ConfigKind,
    validator: Validator,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        default,
        kind,
        validator,
        doc,
    }
}

use ConfigKind::{Boolean, Double, Int, List, Long};
use Validator::{Any, AtLeast, Between, ListOf, OneOf};

/// Every topic config Spate knows, sorted by name.
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    def(
        "cleanup.policy",
        "delete",
        List,
        ListOf(&["delete", "compact"]),
        "Delete old segments, compact by key, or both.",
    ),
    def(
        "compression.type",
        "producer",
        ConfigKind::String,
        OneOf(COMPRESSION_TYPES),
        "Compression of stored batches; 'producer' keeps the producer's.",
    ),
    def(
        "delete.retention.ms",
        "86400000",
        Long,
        AtLeast(0),
        "How long delete tombstones are kept on compacted topics.",
    ),
    def(
        "file.delete.delay.ms",
        "60000",
        Long,
        AtLeast(0),
        "Delay before a deleted segment file is removed from disk.",
    ),
    // Spate acknowledges only after fsync by default (docs/architecture.md §6), unlike Kafka's Long.MAX.
    def(
        "flush.messages",
        "1",
        Long,
        AtLeast(1),
        "Fsync after this many messages; 1 fsyncs before acknowledging.",
    ),
    def(
        "flush.ms",
        "1000",
        Long,
        AtLeast(0),
        "Fsync at least this often.",
    ),
    def(
        "follower.replication.throttled.replicas",
        "",
        List,
        Any,
        "Replicas (partition:broker, or *) whose follower-side replication is throttled (accepted; throttling is not implemented).",
    ),
    def(
        "index.interval.bytes",
        "4096",
        Int,
        AtLeast(0),
        "Bytes between offset index entries.",
    ),
    def(
        "leader.replication.throttled.replicas",
        "",
        List,
        Any,
        "Replicas (partition:broker, or *) whose leader-side replication is throttled (accepted; throttling is not implemented).",
    ),
    def(
        "max.compaction.lag.ms",
        LONG_MAX,
        Long,
        AtLeast(1),
        "Longest time a message stays ineligible for compaction.",
    ),
    def(
        "max.message.bytes",
        "1048588",
        Int,
        AtLeast(0),
        "Largest record batch the topic accepts.",
    ),
    def(
        "message.downconversion.enable",
        "true",
        Boolean,
        Any,
        "Accepted for compatibility; Spate never down-converts.",
    ),
    def(
        "message.timestamp.after.max.ms",
        "3600000",
        Long,
        AtLeast(0),
        "How far a CreateTime timestamp may be ahead of the broker's clock.",
    ),
    def(
        "message.timestamp.before.max.ms",
        LONG_MAX,
        Long,
        AtLeast(0),
        "How far a CreateTime timestamp may be behind the broker's clock.",
    ),
    def(
        "message.timestamp.difference.max.ms",
        LONG_MAX,
        Long,
        AtLeast(0),
        "Deprecated: largest allowed CreateTime skew.",
    ),
    def(
        "message.timestamp.type",
        "CreateTime",
        ConfigKind::String,
        OneOf(&["CreateTime", "LogAppendTime"]),
        "Whether batches keep the producer's timestamp or get the broker's.",
    ),
    def(
        "min.cleanable.dirty.ratio",
        "0.5",
        Double,
        Between(0.0, 1.0),
        "Dirty ratio that makes a log eligible for compaction.",
    ),
    def(
        "min.compaction.lag.ms",
        "0",
        Long,
        AtLeast(0),
        "Shortest time a message stays uncompacted.",
    ),
    def(
        "min.insync.replicas",
        "1",
        Int,
        AtLeast(1),
        "ISR size needed for acks=all produce to succeed.",
    ),
    def(
        "preallocate",
        "false",
        Boolean,
        Any,
        "Preallocate segment files.",
    ),
    def(
        "retention.bytes",
        "-1",
        Long,
        Any,
        "Largest partition size before old segments are deleted; -1 is unlimited.",
    ),
    def(
        "retention.ms",
        "604800000",
        Long,
        AtLeast(-1),
        "How long segments are kept; -1 is forever.",
    ),
    def(
        "segment.bytes",
        "1073741824",
        Int,
        AtLeast(14),
        "Segment file size.",
    ),
    def(
        "segment.index.bytes",
        "10485760",
        Int,
        AtLeast(4),
        "Offset index file size.",
    ),
    def(
        "segment.jitter.ms",
        "0",
        Long,
        AtLeast(0),
        "Random jitter subtracted from segment.ms.",
    ),
    def(
        "segment.ms",
        "604800000",
        Long,
        AtLeast(1),
        "Roll a new segment after this long.",
    ),
    def(
        "unclean.leader.election.enable",
        "false",
        Boolean,
        Any,
        "Allow an out-of-sync replica to lead when no ISR member is alive.",
    ),
];

/// Looks a key up.
pub fn lookup(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks a key and value; the error is the message for `INVALID_CONFIG`.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    match lookup(name) {
        Some(d) => d.validate(value),
        None => Err(format!("unknown topic config '{name}'")),
    }
}

/// The value in effect: the dynamic override if set, else the default. `None` for unknown keys
/// that are not overridden.
pub fn effective<'a>(overrides: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    overrides
        .get(name)
        .map(String::as_str)
        .or_else(|| lookup(name).map(|d| d.default))
}

/// The effective value of a numeric config, parsed as [`validate`] parses it (trimmed).
/// Every write path validates, so an override that does not parse can only come from an
/// older version's image; it counts as unset (the default), never as some other number.
pub fn effective_long(overrides: &BTreeMap<String, String>, name: &str) -> i64 {
    let parse = |v: &str| v.trim().parse::<i64>().ok();
    overrides
        .get(name)
        .and_then(|v| parse(v))
        .or_else(|| lookup(name).and_then(|d| parse(d.default)))
        .unwrap_or(0)
}

/// Splits a list value into trimmed, non-empty items.
pub fn list_items(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

impl ConfigDef {
    /// Checks a value against the type and validator.
    pub fn validate(&self, value: &str) -> Result<(), String> {
        let v = value.trim();
        match self.kind {
            ConfigKind::Long => self.check_number(v.parse::<i64>().ok(), value, "a long"),
            ConfigKind::Int => {
                self.check_number(v.parse::<i32>().ok().map(i64::from), value, "an int")
            }
            ConfigKind::Double => match v.parse::<f64>() {
                Ok(x) if x.is_finite() => self.check_range(x, value),
                _ => Err(self.describe_error("a number", value)),
            },
            ConfigKind::Boolean => match v.to_ascii_lowercase().as_str() {
                "true" | "false" => Ok(()),
                _ => Err(self.describe_error("a boolean (true|false)", value)),
            },
            ConfigKind::String | ConfigKind::Class => match self.validator {
                OneOf(allowed) if !allowed.contains(&v) => {
                    Err(self.describe_error(&format!("one of {}", allowed.join("|")), value))
                }
                _ => Ok(()),
            },
            ConfigKind::List => match self.validator {
                // As Kafka's `ValidList`: every item must be allowed; an empty list is
                // a valid value (`cleanup.policy=""`: neither delete nor compact).
                ListOf(allowed) => {
                    let items = list_items(v);
                    if items.iter().any(|i| !allowed.contains(i)) {
                        Err(self.describe_error(&format!("a list of {}", allowed.join("|")), value))
                    } else {
                        Ok(())
                    }
                }
                _ => Ok(()),
            },
        }
    }

    fn check_number(&self, parsed: Option<i64>, raw: &str, kind: &str) -> Result<(), String> {
        match (parsed, self.validator) {
            (Some(x), AtLeast(min)) if x >= min => Ok(()),
            (Some(_), AtLeast(min)) => Err(self.describe_error(&format!("{kind} >= {min}"), raw)),
            (Some(x), Between(..)) => self.check_range(x as f64, raw),
            (Some(_), _) => Ok(()),
            (None, AtLeast(min)) => Err(self.describe_error(&format!("{kind} >= {min}"), raw)),
            (None, _) => Err(self.describe_error(kind, raw)),
        }
    }

    fn check_range(&self, x: f64, raw: &str) -> Result<(), String> {
        match self.validator {
            Between(lo, hi) if !(lo..=hi).contains(&x) => {
                Err(self.describe_error(&format!("a number in [{lo}, {hi}]"), raw))
            }
            _ => Ok(()),
        }
    }

    fn describe_error(&self, expected: &str, got: &str) -> String {
        format!("{} must be {expected}, got '{got}'", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_defaults_validate() {
        let names: Vec<_> = TOPIC_CONFIGS.iter().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        for d in TOPIC_CONFIGS {
            // Defaults pass the same validation as values from requests.
            assert_eq!(validate(d.name, d.default), Ok(()), "default of {}", d.name);
            assert!(!d.doc.is_empty());
        }
    }

    #[test]
    fn effective_numbers_parse_as_validation_does() {
        let mut o = BTreeMap::new();
        assert_eq!(effective_long(&o, "min.insync.replicas"), 1);
        o.insert("min.insync.replicas".to_string(), " 3".to_string());
        assert_eq!(validate("min.insync.replicas", " 3"), Ok(()));
        assert_eq!(effective_long(&o, "min.insync.replicas"), 3);
        o.insert("min.insync.replicas".to_string(), "junk".to_string());
        assert_eq!(effective_long(&o, "min.insync.replicas"), 1);
    }

    #[test]
    fn numbers_are_checked_with_kafka_like_messages() {
        assert_eq!(
            validate("retention.ms", "abc"),
            Err("retention.ms must be a long >= -1, got 'abc'".into())
        );
        assert_eq!(
            validate("retention.ms", "-2"),
            Err("retention.ms must be a long >= -1, got '-2'".into())
        );
        assert_eq!(validate("retention.ms", "-1"), Ok(()));
        assert_eq!(
            validate("segment.bytes", "13"),
            Err("segment.bytes must be an int >= 14, got '13'".into())
        );
        assert!(
            validate("segment.bytes", "4294967296").is_err(),
            "int overflow"
        );
        assert_eq!(validate("retention.bytes", "-5"), Ok(()));
        assert!(validate("retention.bytes", "x").is_err());
        assert!(validate("min.insync.replicas", "0").is_err());
        assert!(validate("flush.messages", "0").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert_eq!(validate("min.cleanable.dirty.ratio", "0.25"), Ok(()));
    }

    #[test]
    fn enums_lists_and_booleans() {
        assert_eq!(validate("cleanup.policy", "delete"), Ok(()));
        assert_eq!(validate("cleanup.policy", "compact, delete"), Ok(()));
        assert_eq!(validate("cleanup.policy", "compact"), Ok(()));
        assert!(validate("cleanup.policy", "compact,nope").is_err());
        assert_eq!(validate("cleanup.policy", ""), Ok(()));
        assert_eq!(validate("cleanup.policy", " "), Ok(()));
        assert_eq!(validate("compression.type", "zstd"), Ok(()));
        assert!(validate("compression.type", "brotli")
            .unwrap_err()
            .contains("producer|gzip"));
        assert_eq!(validate("message.timestamp.type", "LogAppendTime"), Ok(()));
        assert!(validate("message.timestamp.type", "logappendtime").is_err());
        assert_eq!(validate("unclean.leader.election.enable", "TRUE"), Ok(()));
        assert!(validate("unclean.leader.election.enable", "yes").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected_and_effective_values_fall_back() {
        assert_eq!(
            validate("no.such.key", "1"),
            Err("unknown topic config 'no.such.key'".into())
        );
        let mut overrides = BTreeMap::new();
        overrides.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(effective(&overrides, "retention.ms"), Some("5"));
        assert_eq!(effective(&overrides, "segment.ms"), Some("604800000"));
        assert_eq!(effective(&overrides, "nope"), None);
        assert_eq!(list_items(" a, ,b "), vec!["a", "b"]);
    }
}
