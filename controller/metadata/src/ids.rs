//! Newtypes for the ids and epochs of docs/architecture.md §3, so a broker id can never be passed
//! where a leader epoch is expected.

use std::fmt;

/// A broker (or controller) id, as Kafka's `broker.id` / `node.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub i32);

/// A broker's registration epoch: the metadata offset of its `RegisterBroker` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BrokerEpoch(pub i64);

/// A partition's leader epoch; bumped on every leader change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LeaderEpoch(pub i32);

/// A partition's epoch; bumped on every change to the partition (leader, ISR, replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PartitionEpoch(pub i32);

/// A topic's id: a UUID, 16 bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TopicId(pub uuid::Uuid);

impl NodeId {
    /// Wire value; `-1` stands for "no node" in records, so use `Option<NodeId>` in code.
    pub fn to_wire(opt: Option<NodeId>) -> i32 {
        opt.map_or(-1, |n| n.0)
    }

    /// Reads the wire convention back: any negative id means "no node".
    pub fn from_wire(raw: i32) -> Option<NodeId> {
        (raw >= 0).then_some(NodeId(raw))
    }
}

impl LeaderEpoch {
    /// The epoch after this one (wrapping is not a concern at one change per second).
    pub fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0.wrapping_add(1))
    }
}

impl PartitionEpoch {
    /// The epoch after this one.
    pub fn next(self) -> PartitionEpoch {
        PartitionEpoch(self.0.wrapping_add(1))
    }
}

/// A topic id on the wire was not 16 bytes long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a topic id is 16 bytes, got {0}")]
pub struct BadTopicId(pub usize);

impl TopicId {
    /// Kafka's "no topic id" value (all zeros).
    pub const ZERO: TopicId = TopicId(uuid::Uuid::nil());

    /// The 16 bytes sent on the wire and stored in records.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.as_bytes().to_vec()
    }

    /// Parses the 16 wire bytes; any other length is an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<TopicId, BadTopicId> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| BadTopicId(bytes.len()))?;
        Ok(TopicId(uuid::Uuid::from_bytes(arr)))
    }

    /// A random (v4-shaped) id built from caller-supplied randomness, so tests are deterministic.
    pub fn from_random(bytes: [u8; 16]) -> TopicId {
        TopicId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }
}

impl From<uuid::Uuid> for TopicId {
    fn from(id: uuid::Uuid) -> TopicId {
        TopicId(id)
    }
}

impl From<TopicId> for uuid::Uuid {
    fn from(id: TopicId) -> uuid::Uuid {
        id.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for BrokerEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for PartitionEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// 128 bits as 22 URL-safe characters, the shape of Kafka's printed ids (cluster id,
/// directory id).
pub fn url_safe_id(bits: u128) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_id_round_trips_and_rejects_bad_lengths() {
        let id = TopicId::from_random([7; 16]);
        assert_eq!(TopicId::from_bytes(&id.to_bytes()), Ok(id));
        assert_eq!(TopicId::from_bytes(&[1, 2, 3]), Err(BadTopicId(3)));
        assert_eq!(TopicId::from_bytes(&[]), Err(BadTopicId(0)));
    }

    #[test]
    fn node_id_wire_convention() {
        assert_eq!(NodeId::from_wire(-1), None);
        assert_eq!(NodeId::from_wire(3), Some(NodeId(3)));
        assert_eq!(NodeId::to_wire(None), -1);
        assert_eq!(NodeId::to_wire(Some(NodeId(2))), 2);
    }

    #[test]
    fn epochs_display_and_advance() {
        assert_eq!(LeaderEpoch(4).next(), LeaderEpoch(5));
        assert_eq!(PartitionEpoch(0).next().to_string(), "1");
        assert_eq!(BrokerEpoch(12).to_string(), "12");
    }
}
