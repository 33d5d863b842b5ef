//! The image as records: the snapshot format for Raft snapshots and for `WatchMetadata`.

use spate_proto::metadata::MetadataRecord;

use super::records;
use super::{MetadataError, MetadataImage};
use crate::ids::{BrokerEpoch, NodeId};

impl MetadataImage {
    /// The records that rebuild this image when applied, in order, to an empty one.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        for b in self.brokers.values() {
            // Resolved epochs are positive, so `apply` keeps them instead of using the offset.
            out.push(records::register_broker(b, Some(b.epoch)));
        }
        for t in self.topics.values() {
            out.push(records::topic(&t.name, t.id));
            for (&index, p) in &t.partitions {
                out.push(records::partition(t.id, index, p));
            }
        }
        // Configs after topics: a topic config record needs its topic to exist.
        for (resource, map) in &self.configs {
            for (name, value) in map {
                out.push(records::config(resource, name, Some(value)));
            }
        }
        if self.next_producer_id != 0 {
            out.push(records::producer_id_block(
                NodeId(-1),
                BrokerEpoch(-1),
                self.next_producer_id,
            ));
        }
        out
    }

    /// Rebuilds an image from snapshot records taken at `offset`; records that do not apply
    /// are skipped and returned, so a damaged snapshot degrades instead of panicking.
    pub fn from_records(
        offset: u64,
        records: &[MetadataRecord],
    ) -> (MetadataImage, Vec<MetadataError>) {
        let mut image = MetadataImage::new();
        let errors = records
            .iter()
            .filter_map(|r| image.apply(offset, r).err())
            .collect();
        image.offset = offset;
        (image, errors)
    }
}
