//! openraft's type configuration for the metadata quorum, and the app-data type.

use std::io::Cursor;

use prost::Message;
use serde::{Deserialize, Serialize};
use spate_proto::metadata::MetadataRecord;

use crate::error::ControllerError;

/// The Raft node id of a controller voter (`ControllerConfig::node_id`).
pub type RaftNodeId = u64;

/// Records proposed together; they commit atomically at one log index (one metadata
/// offset). Kept as prost bytes so the log and the snapshots share the protobuf format.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordBatch {
    /// Each record, prost-encoded.
    pub records: Vec<Vec<u8>>,
}

impl RecordBatch {
    /// Encodes records for proposal.
    pub fn encode(records: &[MetadataRecord]) -> RecordBatch {
        RecordBatch {
            records: records.iter().map(Message::encode_to_vec).collect(),
        }
    }

    /// Decodes the records; a record that does not decode is an error, never a panic.
    pub fn decode(&self) -> Result<Vec<MetadataRecord>, ControllerError> {
        self.records
            .iter()
            .map(|b| {
                MetadataRecord::decode(b.as_slice())
                    .map_err(|e| ControllerError::Decode(e.to_string()))
            })
            .collect()
    }
}

openraft::declare_raft_types!(
    /// openraft types for Spate's metadata quorum. `R` is the log index the batch was
    /// applied at, i.e. its metadata offset.
    pub TypeConfig:
        D = RecordBatch,
        R = u64,
        NodeId = RaftNodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running Raft node of the metadata quorum.
pub type SpateRaft = openraft::Raft<TypeConfig>;

/// Raft log id with our node id type.
pub type LogId = openraft::LogId<RaftNodeId>;

/// Snapshot metadata with our node types.
pub type SnapshotMetaOf = openraft::SnapshotMeta<RaftNodeId, openraft::BasicNode>;

/// Storage errors with our node id type.
pub type StorageError = openraft::StorageError<RaftNodeId>;

#[cfg(test)]
mod tests {
    use super::*;
    use spate_metadata::ids::TopicId;
    use spate_metadata::records;

    #[test]
    fn batch_round_trips_and_rejects_garbage() {
        let recs = vec![
            records::topic("a", TopicId::from_random([1; 16])),
            records::remove_topic(TopicId::ZERO),
        ];
        let batch = RecordBatch::encode(&recs);
        assert_eq!(batch.decode().unwrap(), recs);
        let json = serde_json::to_string(&batch).unwrap();
        assert_eq!(serde_json::from_str::<RecordBatch>(&json).unwrap(), batch);
        let bad = RecordBatch {
            records: vec![vec![0xff, 0xff, 0xff]],
        };
        assert!(bad.decode().is_err());
    }
}
