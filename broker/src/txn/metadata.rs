//! One transactional id's metadata and the coordinator's decisions on it, as Kafka 4's
//! transaction coordinator takes them (KIP-98, KIP-360 epoch bumps, KIP-890 transactions
//! v2), without I/O: every accepted request yields a [`Transition`] to write to
//! `__transaction_state`; once the write committed, [`TxnMetadata::complete`] makes it
//! the state (a failed write calls [`TxnMetadata::abandon`]). While a transition is
//! pending every other request answers CONCURRENT_TRANSACTIONS, so decisions are taken
//! one at a time against committed state.
//!
//! Where Kafka 4.0.0 and 4.0.1 differ, this follows 4.0.1 (KAFKA-19367): fencing an open
//! transaction bumps the epoch once, not twice.
use std::collections::BTreeSet;

use spate_metadata::ErrorCode;

use super::state::TxnState::{self, *};
use crate::topic_partition::TopicPartition;

/// No producer id.
pub const NO_PRODUCER_ID: i64 = -1;
/// No producer epoch.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// From this epoch on a producer id is used up: the next bump moves to a new id.
const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

fn exhausted(epoch: i16) -> bool {
    epoch >= EPOCH_EXHAUSTED
}

/// The transaction protocol a client speaks, from its request versions: transactions v2
/// (EndTxn v5+, the coordinator bumps the epoch at the end of every transaction) or the
/// original one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxnVersion {
    /// KIP-98: one epoch for the producer's life (until InitProducerId bumps it).
    V0,
    /// KIP-890: a new epoch per transaction.
    V2,
}

impl TxnVersion {
    /// The version an EndTxn of this request version speaks.
    pub fn of_end_txn(api_version: i16) -> TxnVersion {
        if api_version >= 5 {
            TxnVersion::V2
        } else {
            TxnVersion::V0
        }
    }
}

/// A state to write for one transactional id (a `__transaction_state` value) and, once
/// committed, to make current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The new state.
    pub state: TxnState,
    /// The producer id.
    pub producer_id: i64,
    /// The id before the last rotation (answers retries across it).
    pub previous_producer_id: i64,
    /// The id the transaction moves to when it completes (its epoch ran out).
    pub next_producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// The epoch before the last bump (KIP-360 retries of InitProducerId).
    pub last_producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    /// The partitions in the transaction.
    pub partitions: BTreeSet<TopicPartition>,
    /// When the transaction began (-1 without one).
    pub start_ms: i64,
    /// When this transition was decided.
    pub last_update_ms: i64,
    /// The protocol of the client that caused it.
    pub client_version: TxnVersion,
}

/// What InitProducerId calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Write this Empty state, then answer with its producer id and epoch.
    Ready(Transition),
    /// A transaction of an older instance was open: write this PrepareAbort (the older
    /// instance is fenced by its epoch), answer CONCURRENT_TRANSACTIONS (the client
    /// retries) and write the abort markers.
    AbortOpen(Transition),
}

/// What EndTxn calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// Already done (a retry): answer at once with this producer id and epoch.
    Done {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// Write this Prepare state, answer, then write the markers.
    Prepare(Transition),
}

/// A completed transition that breaks the rules (a bug, or a corrupt log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transactional id '{id}': cannot complete {from:?} -> {to:?}: {why}")]
pub struct TransitionError {
    id: String,
    from: TxnState,
    to: TxnState,
    why: &'static str,
}

/// One transactional id's committed state, and the transition being written, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id.
    pub producer_id: i64,
    /// The id before the last rotation.
    pub previous_producer_id: i64,
    /// The id to move to when the open transaction completes (its epoch ran out).
    pub next_producer_id: i64,
    /// The producer epoch (-1 before the first InitProducerId).
    pub producer_epoch: i16,
    /// The epoch before the last bump.
    pub last_producer_epoch: i16,
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// The state.
    pub state: TxnState,
    /// Partitions of the open transaction (markers still owed, while preparing).
    pub partitions: BTreeSet<TopicPartition>,
    /// When the open transaction began (-1 without one).
    pub start_ms: i64,
    /// When the state last changed.
    pub last_update_ms: i64,
    /// The protocol of the client that last changed it.
    pub client_version: TxnVersion,
    pending: Option<TxnState>,
}

impl TxnMetadata {
    /// A transactional id seen for the first time, with a fresh producer id.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_version: TxnVersion::V0,
            pending: None,
        }
    }

    /// The metadata a loaded `__transaction_state` value describes.
    pub fn loaded(transactional_id: &str, t: Transition) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id: t.producer_id,
            previous_producer_id: t.previous_producer_id,
            next_producer_id: t.next_producer_id,
            producer_epoch: t.producer_epoch,
            last_producer_epoch: t.last_producer_epoch,
            timeout_ms: t.timeout_ms,
            state: t.state,
            partitions: t.partitions,
            start_ms: t.start_ms,
            last_update_ms: t.last_update_ms,
            client_version: t.client_version,
            pending: None,
        }
    }

    /// The transition being written, if any.
    pub fn pending(&self) -> Option<TxnState> {
        self.pending
    }

    /// The current state as a transition to `state` (the fields a decision changes are
    /// then set on it).
    fn to(&self, state: TxnState, now_ms: i64) -> Transition {
        Transition {
            state,
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            last_producer_epoch: self.last_producer_epoch,
            timeout_ms: self.timeout_ms,
            partitions: self.partitions.clone(),
            start_ms: self.start_ms,
            last_update_ms: now_ms,
            client_version: self.client_version,
        }
    }

    /// Marks `t` pending; the caller writes it.
    fn begin(&mut self, t: Transition) -> Result<Transition, ErrorCode> {
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        if !t.state.valid_previous().contains(&self.state) {
            return Err(ErrorCode::InvalidTxnState);
        }
        self.pending = Some(t.state);
        Ok(t)
    }

    /// The pending transition was written and committed: it becomes the state.
    pub fn complete(&mut self, t: Transition) -> Result<(), TransitionError> {
        let fail = |why| TransitionError {
            id: self.transactional_id.clone(),
            from: self.state,
            to: t.state,
            why,
        };
        if self.pending != Some(t.state) {
            return Err(fail("it is not the pending transition"));
        }
        let epoch_ok = match t.state {
            Empty => {
                t.producer_epoch == self.producer_epoch
                    || i32::from(t.producer_epoch) == i32::from(self.producer_epoch) + 1
                    || (t.producer_epoch == 0 && t.producer_id != self.producer_id)
            }
            PrepareCommit | PrepareAbort if t.client_version == TxnVersion::V2 => {
                t.last_producer_epoch == self.producer_epoch
            }
            PrepareCommit | PrepareAbort => t.producer_epoch >= self.producer_epoch,
            CompleteCommit | CompleteAbort if t.producer_id != self.producer_id => {
                t.producer_epoch == 0 && t.previous_producer_id == self.producer_id
            }
            CompleteCommit | CompleteAbort => t.producer_epoch == self.producer_epoch,
            Ongoing => t.producer_epoch == self.producer_epoch,
            Dead | PrepareEpochFence => false,
        };
        if !epoch_ok {
            return Err(fail("its producer id or epoch does not follow"));
        }
        *self = TxnMetadata {
            pending: None,
            ..TxnMetadata::loaded(&self.transactional_id, t)
        };
        Ok(())
    }

    /// The pending transition's write failed: the state stays as it was.
    pub fn abandon(&mut self) {
        self.pending = None;
    }

    /// InitProducerId with this id: a new epoch for the calling instance (fencing every
    /// older one), or, when an older instance's transaction is open, its abort first.
    /// `expected` is the producer id and epoch a KIP-360 client already has; `next_id`
    /// hands out a new producer id when the epoch ran out.
    pub fn init_producer_id(
        &mut self,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
        next_id: &mut dyn FnMut() -> Result<i64, ErrorCode>,
    ) -> Result<InitStep, ErrorCode> {
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        if let Some((pid, epoch)) = expected {
            let known = self.producer_epoch == NO_PRODUCER_EPOCH
                || pid == self.producer_id
                || (pid == self.previous_producer_id && exhausted(epoch));
            if !known {
                return Err(ErrorCode::ProducerFenced);
            }
        }
        match self.state {
            PrepareCommit | PrepareAbort => Err(ErrorCode::ConcurrentTransactions),
            Ongoing => self.fence_and_abort(now_ms).map(InitStep::AbortOpen),
            Dead | PrepareEpochFence => Err(ErrorCode::ConcurrentTransactions),
            Empty | CompleteCommit | CompleteAbort => {
                let mut t = self.to(Empty, now_ms);
                let expected_epoch = expected.map(|(_, e)| e);
                if exhausted(self.producer_epoch)
                    && expected_epoch.is_none_or(|e| e == self.producer_epoch)
                {
                    t.previous_producer_id = self.producer_id;
                    t.producer_id = next_id()?;
                    t.producer_epoch = 0;
                    t.last_producer_epoch = expected_epoch.unwrap_or(NO_PRODUCER_EPOCH);
                } else {
                    let (epoch, last) = match expected_epoch {
                        None => (self.producer_epoch + 1, NO_PRODUCER_EPOCH),
                        Some(e)
                            if e == self.producer_epoch
                                || self.producer_epoch == NO_PRODUCER_EPOCH =>
                        {
                            (self.producer_epoch + 1, self.producer_epoch)
                        }
                        // A retry of the InitProducerId that made this epoch.
                        Some(e) if e == self.last_producer_epoch => {
                            (self.producer_epoch, self.last_producer_epoch)
                        }
                        Some(_) => return Err(ErrorCode::ProducerFenced),
                    };
                    t.producer_epoch = epoch;
                    t.last_producer_epoch = last;
                }
                t.timeout_ms = timeout_ms;
                t.partitions.clear();
                t.start_ms = -1;
                self.begin(t).map(InitStep::Ready)
            }
        }
    }

    /// Fences the open transaction's producer and aborts it (InitProducerId of a newer
    /// instance, or the transaction timed out): PrepareAbort one epoch up, so the older
    /// instance's next request is PRODUCER_FENCED.
    pub fn fence_and_abort(&mut self, now_ms: i64) -> Result<Transition, ErrorCode> {
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        if self.state != Ongoing {
            return Err(ErrorCode::InvalidTxnState);
        }
        if self.producer_epoch == i16::MAX {
            return Err(ErrorCode::ProducerFenced);
        }
        let mut t = self.to(PrepareAbort, now_ms);
        t.producer_epoch = self.producer_epoch + 1;
        t.last_producer_epoch = self.producer_epoch;
        t.client_version = TxnVersion::V2;
        self.begin(t)
    }

    /// Whether the open transaction ran past its timeout.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == Ongoing
            && self.pending.is_none()
            && self.start_ms.saturating_add(i64::from(self.timeout_ms)) < now_ms
    }

    /// Whether the id may be forgotten (`transactional.id.expiration.ms` without use).
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.state.may_expire()
            && self.pending.is_none()
            && self.last_update_ms <= now_ms.saturating_sub(expiration_ms)
    }

    /// Checks that a request comes from the current producer instance.
    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
        if producer_id != self.producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn (or AddOffsetsToTxn's `__consumer_offsets` partition): the
    /// transaction now spans `partitions`. `None`: already so, nothing to write.
    pub fn add_partitions(
        &mut self,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
        version: TxnVersion,
        now_ms: i64,
    ) -> Result<Option<Transition>, ErrorCode> {
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        self.check_producer(producer_id, epoch)?;
        if self.state.is_prepare() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        if self.state == Ongoing && partitions.iter().all(|p| self.partitions.contains(p)) {
            return Ok(None);
        }
        let mut t = self.to(Ongoing, now_ms);
        if self.state != Ongoing {
            t.start_ms = now_ms;
            t.partitions.clear();
        }
        t.partitions.extend(partitions.iter().cloned());
        t.client_version = version;
        self.begin(t).map(Some)
    }

    /// The verify-only AddPartitionsToTxn a partition leader sends before appending a
    /// transactional batch (KIP-890 part 1): each partition is fine if it is in the open
    /// transaction, else TRANSACTION_ABORTABLE (the client aborts; nothing hangs).
    pub fn verify_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, ErrorCode)>, ErrorCode> {
        self.check_producer(producer_id, epoch)?;
        if self.state.is_prepare() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        Ok(partitions
            .iter()
            .map(|p| {
                let in_txn = self.state == Ongoing && self.partitions.contains(p);
                let code = if in_txn {
                    ErrorCode::None
                } else {
                    ErrorCode::TransactionAbortable
                };
                (p.clone(), code)
            })
            .collect())
    }

    /// EndTxn from the client.
    pub fn end_txn(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        version: TxnVersion,
        now_ms: i64,
        next_id: &mut dyn FnMut() -> Result<i64, ErrorCode>,
    ) -> Result<EndStep, ErrorCode> {
        match version {
            TxnVersion::V0 => self.end_txn_v0(producer_id, epoch, commit, now_ms),
            TxnVersion::V2 => self.end_txn_v2(producer_id, epoch, commit, now_ms, next_id),
        }
    }

    /// The original protocol: no bump, markers in the transaction's epoch.
    fn end_txn_v0(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<EndStep, ErrorCode> {
        if producer_id != self.producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let done = EndStep::Done {
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
        };
        match (self.state, commit) {
            (Ongoing, _) => {
                let mut t = self.to(if commit { PrepareCommit } else { PrepareAbort }, now_ms);
                t.client_version = TxnVersion::V0;
                self.begin(t).map(EndStep::Prepare)
            }
            (CompleteCommit, true) | (CompleteAbort, false) => Ok(done),
            (PrepareCommit, true) | (PrepareAbort, false) => Err(ErrorCode::ConcurrentTransactions),
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    /// Transactions v2: every transaction ends one epoch up, and a retry after the bump
    /// (one epoch behind, or across a rotation) is recognised.
    fn end_txn_v2(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
        next_id: &mut dyn FnMut() -> Result<i64, ErrorCode>,
    ) -> Result<EndStep, ErrorCode> {
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let retry_bump = i32::from(self.producer_epoch) == i32::from(epoch) + 1;
        let retry_overflow = self.previous_producer_id == producer_id
            && epoch == EPOCH_EXHAUSTED
            && self.producer_epoch == 0;
        if producer_id != self.producer_id && !retry_overflow {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        let epoch_ok = match self.state {
            Ongoing | Empty => epoch == self.producer_epoch,
            PrepareCommit | PrepareAbort => retry_bump,
            CompleteCommit | CompleteAbort => {
                retry_bump || retry_overflow || epoch == self.producer_epoch
            }
            Dead | PrepareEpochFence => false,
        };
        if !epoch_ok {
            return Err(ErrorCode::ProducerFenced);
        }
        let retry = retry_bump || retry_overflow;
        let done = || EndStep::Done {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
        };
        match (self.state, commit) {
            (Ongoing, _) => self.prepare_end(commit, now_ms, next_id),
            (CompleteCommit, true) if retry => Ok(done()),
            (CompleteAbort, false) if retry => Ok(done()),
            (CompleteCommit, false) if retry => Err(ErrorCode::InvalidTxnState),
            // An abort with nothing added still ends the epoch (the client may have
            // written nothing, or its first add failed).
            (CompleteCommit | CompleteAbort | Empty, false) => {
                self.prepare_end(false, now_ms, next_id)
            }
            (PrepareCommit, true) | (PrepareAbort, false) => Err(ErrorCode::ConcurrentTransactions),
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    /// PrepareCommit or PrepareAbort one epoch up; a used-up id gets its successor, which
    /// the transaction moves to when it completes.
    fn prepare_end(
        &mut self,
        commit: bool,
        now_ms: i64,
        next_id: &mut dyn FnMut() -> Result<i64, ErrorCode>,
    ) -> Result<EndStep, ErrorCode> {
        let mut t = self.to(if commit { PrepareCommit } else { PrepareAbort }, now_ms);
        if self.state != Ongoing {
            t.start_ms = now_ms;
            t.partitions.clear();
        }
        if self.producer_epoch == i16::MAX {
            return Err(ErrorCode::ProducerFenced);
        }
        if exhausted(self.producer_epoch) {
            t.next_producer_id = next_id()?;
        }
        t.producer_epoch = self.producer_epoch + 1;
        t.last_producer_epoch = self.producer_epoch;
        t.client_version = TxnVersion::V2;
        self.begin(t).map(EndStep::Prepare)
    }

    /// Every marker of the prepared transaction is written: the Complete state to write
    /// (a used-up id moves to its successor at epoch 0).
    pub fn prepare_complete(&mut self, now_ms: i64) -> Result<Transition, ErrorCode> {
        let state = match self.state {
            PrepareCommit => CompleteCommit,
            PrepareAbort => CompleteAbort,
            _ => return Err(ErrorCode::InvalidTxnState),
        };
        let mut t = self.to(state, now_ms);
        t.partitions.clear();
        if self.client_version == TxnVersion::V2 && self.next_producer_id != NO_PRODUCER_ID {
            t.previous_producer_id = self.producer_id;
            t.producer_id = self.next_producer_id;
            t.producer_epoch = 0;
        } else if self.client_version == TxnVersion::V2 {
            t.previous_producer_id = self.producer_id;
        }
        t.next_producer_id = NO_PRODUCER_ID;
        self.begin(t)
    }
}
