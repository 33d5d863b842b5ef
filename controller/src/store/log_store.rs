//! The Raft log and vote on sled (openraft storage-v2 `RaftLogStorage`).
//!
//! Entries are JSON keyed by big-endian index, so sled's key order is log order. Appends
//! and votes are acknowledged only after `flush_async`, which is what makes them durable.

// openraft's trait signatures fix the (large) storage error type.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, Entry, LogState, RaftLogReader, StorageIOError, Vote};

use crate::types::{LogId, RaftNodeId, StorageError, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// sled-backed Raft log. Cheap to clone (sled trees are shared handles).
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
    committed: Arc<AtomicU64>,
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl LogStore {
    /// Opens (or creates) the log trees in `db`; `committed` mirrors the saved commit index.
    pub(crate) fn open(db: &sled::Db, committed: Arc<AtomicU64>) -> Result<LogStore, sled::Error> {
        let store = LogStore {
            db: db.clone(),
            logs: db.open_tree("raft_log")?,
            meta: db.open_tree("raft_meta")?,
            committed,
        };
        if let Ok(Some(Some(c))) = store.read_meta::<Option<LogId>>(COMMITTED) {
            store.committed.store(c.index, Ordering::Release);
        }
        Ok(store)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        name: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self.meta.get(name).map_err(read_err)? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(read_err),
            None => Ok(None),
        }
    }

    fn write_meta<T: serde::Serialize>(&self, name: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        self.meta.insert(name, bytes).map_err(write_err)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StorageError> {
        self.db.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
        serde_json::from_slice(bytes).map_err(read_err)
    }

    /// Removes every entry whose key is in `range`.
    fn remove_range(&self, range: (Bound<[u8; 8]>, Bound<[u8; 8]>)) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.logs.range(range) {
            let (k, _) = item.map_err(read_err)?;
            batch.remove(k);
        }
        self.logs.apply_batch(batch).map_err(write_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(key(i)),
            Bound::Excluded(&i) => Bound::Excluded(key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(key(i)),
            Bound::Excluded(&i) => Bound::Excluded(key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.logs.range((start, end)) {
            let (_, v) = item.map_err(read_err)?;
            out.push(Self::decode_entry(&v)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED)?;
        let last_log_id = match self.logs.last().map_err(read_err)? {
            Some((_, v)) => Some(Self::decode_entry(&v)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> Result<(), StorageError> {
        let bytes =
            serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.meta
            .insert(VOTE, bytes)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        // A vote must survive a crash, or this node could vote twice in one term.
        self.db
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftNodeId>>, StorageError> {
        self.read_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: losing it only means re-applying from the snapshot after a crash.
        self.write_meta(COMMITTED, &committed)?;
        self.committed
            .store(committed.map_or(u64::MAX, |c| c.index), Ordering::Release);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(write_err)?;
            batch.insert(&key(entry.log_id.index), bytes);
        }
        self.logs.apply_batch(batch).map_err(write_err)?;
        match self.db.flush_async().await {
            Ok(_) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.remove_range((Bound::Included(key(log_id.index)), Bound::Unbounded))?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: if we crash mid-way the log state is still right.
        self.write_meta(LAST_PURGED, &log_id)?;
        self.flush().await?;
        self.remove_range((Bound::Unbounded, Bound::Included(key(log_id.index))))?;
        Ok(())
    }
}
