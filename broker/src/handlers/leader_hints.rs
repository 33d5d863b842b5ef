//! KIP-951: a partition refused because this broker does not lead it names its current
//! leader and leader epoch, and the response carries those leaders' endpoints, so the
//! client retries at the new leader without a Metadata round trip first (Produce v10+,
//! Fetch v16+). Each API maps the hints into its own message types.
use std::collections::BTreeSet;

use spate_metadata::MetadataImage;

use super::metadata::{registered_brokers, ListedBroker};

/// The leaders named so far in one response.
pub struct LeaderHints<'a> {
    image: &'a MetadataImage,
    named: BTreeSet<i32>,
}

impl<'a> LeaderHints<'a> {
    /// Hints drawn from `image`.
    pub fn new(image: &'a MetadataImage) -> Self {
        LeaderHints {
            image,
            named: BTreeSet::new(),
        }
    }

    /// The current leader of `topic`/`partition` (-1 when it has none) and its leader
    /// epoch; None when the image does not know the partition.
    pub fn leader(&mut self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        let state = self
            .image
            .topic_by_name(topic)?
            .partitions
            .get(&partition)?;
        let leader = state.leader.map_or(-1, |l| l.0);
        if leader >= 0 {
            self.named.insert(leader);
        }
        Some((leader, state.leader_epoch.0))
    }

    /// The endpoints on `listener` of every unfenced leader named.
    pub fn endpoints(&self, listener: &str) -> Vec<ListedBroker> {
        registered_brokers(self.image, listener)
            .filter(|b| self.named.contains(&b.id) && !b.fenced)
            .collect()
    }
}
