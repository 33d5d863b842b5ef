//! The Raft state machine (openraft storage-v2 `RaftStateMachine`): the metadata image in
//! memory, snapshots on sled.
//!
//! A snapshot is the image as records (`MetadataImage::to_records`) in a prost
//! `MetadataBatch`, the same format `WatchMetadata` streams. After a restart the image is
//! rebuilt from the last snapshot and openraft re-applies the committed log after it.

// openraft's trait signatures fix the (large) storage error type; boxing it only in our
// helpers would just move the conversion around.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use prost::Message;
use spate_proto::metadata::{MetadataBatch, MetadataRecord};

use super::view::{snapshot_batch, MetadataView, SmState};
use crate::error::ControllerError;
use crate::types::{LogId, RaftNodeId, SnapshotMetaOf, StorageError, TypeConfig};
use spate_metadata::MetadataImage;

const SNAPSHOT_META: &[u8] = b"meta";
const SNAPSHOT_DATA: &[u8] = b"data";

/// The state machine. Clones share state (the snapshot builder is a clone).
#[derive(Clone)]
pub struct StateMachineStore {
    view: MetadataView,
    db: sled::Db,
    snapshots: sled::Tree,
    snapshot_seq: Arc<AtomicU64>,
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn snapshot_write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

fn snapshot_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::new(&e)).into()
}

/// Decodes snapshot bytes into an image; skipped records are logged, not fatal.
fn decode_snapshot(data: &[u8]) -> Result<MetadataImage, prost::DecodeError> {
    let batch = MetadataBatch::decode(data)?;
    let (image, errors) = MetadataImage::from_records(batch.offset, &batch.records);
    for e in errors {
        tracing::error!(error = %e, "snapshot record skipped");
    }
    Ok(image)
}

impl StateMachineStore {
    /// Opens the snapshot tree and restores the image from the last snapshot, if any.
    pub(crate) fn open(
        db: &sled::Db,
        view: MetadataView,
    ) -> Result<StateMachineStore, ControllerError> {
        let sm = StateMachineStore {
            view,
            db: db.clone(),
            snapshots: db.open_tree("raft_snapshot")?,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        };
        if let Some((meta, data)) = sm.read_snapshot()? {
            let image = decode_snapshot(&data)
                .map_err(|e| ControllerError::Decode(format!("snapshot: {e}")))?;
            let mut state = sm.view.state.write();
            state.image = image;
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership;
        }
        Ok(sm)
    }

    /// The read handle on the applied state.
    pub fn view(&self) -> &MetadataView {
        &self.view
    }

    fn read_snapshot(&self) -> Result<Option<(SnapshotMetaOf, Vec<u8>)>, StorageError> {
        let meta = self
            .snapshots
            .get(SNAPSHOT_META)
            .map_err(snapshot_read_err)?;
        let data = self
            .snapshots
            .get(SNAPSHOT_DATA)
            .map_err(snapshot_read_err)?;
        match (meta, data) {
            (Some(meta), Some(data)) => {
                let meta = serde_json::from_slice(&meta).map_err(snapshot_read_err)?;
                Ok(Some((meta, data.to_vec())))
            }
            _ => Ok(None),
        }
    }

    async fn save_snapshot(&self, meta: &SnapshotMetaOf, data: &[u8]) -> Result<(), StorageError> {
        let meta_bytes = serde_json::to_vec(meta).map_err(snapshot_write_err)?;
        let mut batch = sled::Batch::default();
        batch.insert(SNAPSHOT_META, meta_bytes);
        batch.insert(SNAPSHOT_DATA, data);
        // One batch, so a crash never pairs new metadata with old data.
        self.snapshots
            .apply_batch(batch)
            .map_err(snapshot_write_err)?;
        self.db.flush_async().await.map_err(snapshot_write_err)?;
        Ok(())
    }

    /// Applies one normal entry's records at `log_id` and tells watchers.
    fn apply_records(
        state: &mut SmState,
        view: &MetadataView,
        log_id: LogId,
        batch: &crate::types::RecordBatch,
    ) {
        let offset = log_id.index;
        let mut applied: Vec<MetadataRecord> = Vec::with_capacity(batch.records.len());
        for bytes in &batch.records {
            // A committed record that cannot be decoded or applied is skipped the same way on
            // every node (apply is deterministic), so the images stay identical.
            match MetadataRecord::decode(bytes.as_slice()) {
                Ok(record) => match state.image.apply(offset, &record) {
                    Ok(()) => applied.push(record),
                    Err(e) => tracing::error!(offset, error = %e, "metadata record skipped"),
                },
                Err(e) => {
                    tracing::error!(offset, error = %e, "undecodable metadata record skipped")
                }
            }
        }
        state.image.advance_to(offset);
        // Sent while holding the write lock, so subscribers never miss or double a batch.
        let _ = view.events.send(Arc::new(MetadataBatch {
            offset,
            records: applied,
            snapshot: false,
        }));
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (batch, last_applied, membership) = {
            let state = self.view.state.read();
            (
                snapshot_batch(&state.image),
                state.last_applied,
                state.membership.clone(),
            )
        };
        let data = batch.encode_to_vec();
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!(
                "{}-{}-{}-{seq}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        self.save_snapshot(&meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<RaftNodeId, BasicNode>), StorageError> {
        let state = self.view.state.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<u64>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            let mut state = self.view.state.write();
            let log_id = entry.log_id;
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    Self::apply_records(&mut state, &self.view, log_id, batch)
                }
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(log_id), m.clone());
                }
            }
            state.last_applied = Some(log_id);
            responses.push(log_id.index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image = decode_snapshot(&data).map_err(sm_read_err)?;
        self.save_snapshot(meta, &data).await?;
        let mut state = self.view.state.write();
        state.image = image;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        // Watchers cannot apply a jump as a delta: hand them the whole new image.
        let _ = self
            .view
            .events
            .send(Arc::new(snapshot_batch(&state.image)));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.read_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
