//! openraft storage on sled: the log and vote ([`LogStore`]), the state machine
//! ([`StateMachineStore`]) and the shared read handle on what it applied ([`MetadataView`]).

mod log_store;
mod state_machine;
mod view;

pub use log_store::LogStore;
pub use state_machine::StateMachineStore;
pub use view::{MetadataView, EVENT_BUFFER};

use crate::error::ControllerError;

/// Opens the Raft storage in `db` and restores the applied state from the last snapshot.
pub fn open(db: &sled::Db) -> Result<(LogStore, StateMachineStore, MetadataView), ControllerError> {
    let view = MetadataView::new();
    let log = LogStore::open(db, view.committed.clone())?;
    let sm = StateMachineStore::open(db, view.clone())?;
    Ok((log, sm, view))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{Entry, EntryPayload, RaftLogReader, RaftSnapshotBuilder};
    use spate_proto::metadata::MetadataBatch;

    use super::*;
    use crate::types::{RecordBatch, StorageError, TypeConfig};
    use spate_metadata::ids::TopicId;
    use spate_metadata::records;

    struct SledBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = sled::open(dir.path()).expect("sled");
            let (log, sm, _) = open(&db).expect("open");
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(SledBuilder).unwrap();
    }

    fn entry(index: u64, recs: &[spate_proto::metadata::MetadataRecord]) -> Entry<TypeConfig> {
        Entry {
            log_id: openraft::testing::log_id(1, 1, index),
            payload: EntryPayload::Normal(RecordBatch::encode(recs)),
        }
    }

    #[tokio::test]
    async fn state_survives_restart_through_snapshot_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let t = TopicId::from_random([5; 16]);
        let u = TopicId::from_random([6; 16]);
        {
            let db = sled::open(dir.path()).unwrap();
            let (mut log, mut sm, view) = open(&db).unwrap();
            let mut events = view.events.subscribe();
            let e1 = entry(1, &[records::topic("a", t)]);
            log.blocking_append([e1.clone()]).await.unwrap();
            assert_eq!(sm.apply([e1]).await.unwrap(), vec![1]);
            let ev = events.recv().await.unwrap();
            assert_eq!((ev.offset, ev.records.len(), ev.snapshot), (1, 1, false));
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            let e2 = entry(2, &[records::topic("b", u)]);
            log.blocking_append([e2.clone()]).await.unwrap();
            sm.apply([e2]).await.unwrap();
            assert_eq!(view.image().topic_names().len(), 2);
        }
        let db = sled::open(dir.path()).unwrap();
        let (mut log, mut sm, view) = open(&db).unwrap();
        // The snapshot brings back what was applied up to it...
        assert!(view.image().topic_by_name("a").is_some());
        assert_eq!(view.last_applied().map(|l| l.index), Some(1));
        // ...and the log holds the rest for openraft to re-apply.
        let rest = log.try_get_log_entries(2..).await.unwrap();
        sm.apply(rest).await.unwrap();
        assert!(view.image().topic_by_name("b").is_some());
        assert_eq!(view.offset(), 2);
    }

    #[tokio::test]
    async fn installing_a_snapshot_replaces_the_image_and_notifies_watchers() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let (_log, mut sm, view) = open(&db).unwrap();
        let (_, mut rx) = view.subscribe(5);
        let mut source = crate::MetadataImage::new();
        source
            .apply(9, &records::topic("x", TopicId::from_random([1; 16])))
            .unwrap();
        let batch = MetadataBatch {
            offset: 9,
            records: source.to_records(),
            snapshot: true,
        };
        let meta = openraft::SnapshotMeta {
            last_log_id: Some(openraft::testing::log_id(2, 1, 10)),
            last_membership: Default::default(),
            snapshot_id: "s".into(),
        };
        let data = Box::new(std::io::Cursor::new(prost::Message::encode_to_vec(&batch)));
        sm.install_snapshot(&meta, data).await.unwrap();
        assert_eq!(view.image(), source);
        let ev: Arc<MetadataBatch> = rx.recv().await.unwrap();
        assert!(ev.snapshot && ev.offset == 9);
        let garbage = Box::new(std::io::Cursor::new(vec![0xff; 7]));
        assert!(
            sm.install_snapshot(&meta, garbage).await.is_err(),
            "corrupt snapshots are errors, not panics"
        );
        assert!(sm.get_current_snapshot().await.unwrap().is_some());
    }

    #[tokio::test]
    async fn undecodable_records_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let (_log, mut sm, view) = open(&db).unwrap();
        let mut e = entry(3, &[records::topic("ok", TopicId::from_random([2; 16]))]);
        if let EntryPayload::Normal(b) = &mut e.payload {
            b.records.insert(0, vec![0xff, 0xff]);
        }
        assert_eq!(sm.apply([e]).await.unwrap(), vec![3]);
        assert!(view.image().topic_by_name("ok").is_some());
        assert_eq!(view.offset(), 3);
    }

    #[tokio::test]
    async fn log_state_after_purge_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let (mut log, _sm, _view) = open(&db).unwrap();
        log.blocking_append((1..=5).map(|i| entry(i, &[])))
            .await
            .unwrap();
        log.truncate(openraft::testing::log_id(1, 1, 4))
            .await
            .unwrap();
        log.purge(openraft::testing::log_id(1, 1, 2)).await.unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(3));
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(2));
        let left: Vec<u64> = log
            .try_get_log_entries(..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(left, vec![3]);
    }
}
