//! The applied metadata state shared between the state machine (writer) and the service
//! (readers), plus the broadcast of applied batches that `WatchMetadata` follows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::{BasicNode, StoredMembership};
use parking_lot::RwLock;
use spate_proto::metadata::MetadataBatch;
use tokio::sync::broadcast;

use crate::types::{LogId, RaftNodeId};
use spate_metadata::MetadataImage;

/// How many applied batches a slow watcher may fall behind before it gets a fresh snapshot.
pub const EVENT_BUFFER: usize = 1024;

/// What the state machine has applied.
#[derive(Debug, Default)]
pub(crate) struct SmState {
    pub(crate) image: MetadataImage,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership<RaftNodeId, BasicNode>,
}

/// A cheap, cloneable read handle on the applied metadata.
#[derive(Clone)]
pub struct MetadataView {
    pub(crate) state: Arc<RwLock<SmState>>,
    pub(crate) events: broadcast::Sender<Arc<MetadataBatch>>,
    /// Raft commit index as last saved by the log store (`u64::MAX`: none yet).
    pub(crate) committed: Arc<AtomicU64>,
}

impl std::fmt::Debug for MetadataView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataView")
            .field("offset", &self.offset())
            .finish()
    }
}

impl MetadataView {
    pub(crate) fn new() -> MetadataView {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        MetadataView {
            state: Arc::new(RwLock::new(SmState::default())),
            events,
            committed: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    /// A copy of the current applied image.
    pub fn image(&self) -> MetadataImage {
        self.state.read().image.clone()
    }

    /// Runs `f` on the current image without copying it (keep `f` short: it holds a lock).
    pub fn with_image<T>(&self, f: impl FnOnce(&MetadataImage) -> T) -> T {
        f(&self.state.read().image)
    }

    /// The metadata offset of the last applied batch.
    pub fn offset(&self) -> u64 {
        self.state.read().image.offset()
    }

    /// The last Raft log id the state machine applied (including blank and membership entries).
    pub fn last_applied(&self) -> Option<LogId> {
        self.state.read().last_applied
    }

    /// The Raft commit index this node knows of.
    pub fn committed_index(&self) -> Option<u64> {
        let c = self.committed.load(Ordering::Acquire);
        (c != u64::MAX).then_some(c)
    }

    /// The current membership as applied.
    pub fn membership(&self) -> StoredMembership<RaftNodeId, BasicNode> {
        self.state.read().membership.clone()
    }

    /// Subscribes to applied batches. If the caller's `from_offset` is behind (or 0), also
    /// returns a snapshot; every batch in the receiver is then newer than what the caller
    /// has. Taken under the read lock, so no batch falls between snapshot and subscription.
    pub fn subscribe(
        &self,
        from_offset: u64,
    ) -> (
        Option<MetadataBatch>,
        broadcast::Receiver<Arc<MetadataBatch>>,
    ) {
        let state = self.state.read();
        let rx = self.events.subscribe();
        let offset = state.image.offset();
        let snapshot =
            (from_offset == 0 || from_offset < offset).then(|| snapshot_batch(&state.image));
        (snapshot, rx)
    }

    /// The current image as a snapshot batch.
    pub fn snapshot(&self) -> MetadataBatch {
        snapshot_batch(&self.state.read().image)
    }
}

/// An image as a `MetadataBatch` with `snapshot` set.
pub(crate) fn snapshot_batch(image: &MetadataImage) -> MetadataBatch {
    MetadataBatch {
        offset: image.offset(),
        records: image.to_records(),
        snapshot: true,
    }
}
