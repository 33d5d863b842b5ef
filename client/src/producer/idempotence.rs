//! Idempotent producer bookkeeping (KIP-98, with KIP-360's epoch bump): per-partition
//! sequence numbers, the in-flight ordering rule and what a Produce outcome means.
//!
//! Pure: the sender asks [`Sequencer::may_send`] before draining a batch, calls
//! [`Sequencer::on_send`] when it goes out, [`Sequencer::settle`] with the broker's answer
//! and [`Sequencer::maybe_bump`] before each drain.
//!
//! Rules, as in the Java client:
//! - a batch gets its base sequence on its first send and keeps it for every retry under
//!   the same producer epoch;
//! - at most [`MAX_IN_FLIGHT`] batches per partition are in flight;
//! - a retried batch goes out only once nothing of its partition is in flight, so it and
//!   every later batch (which the broker rejects as out of order meanwhile) resend in order;
//! - DUPLICATE_SEQUENCE_NUMBER means the broker already has the batch: success;
//! - a sequence error (OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID,
//!   INVALID_PRODUCER_EPOCH) means the broker does not have the batch (it checks duplicates
//!   first); for the batch right after the last acknowledged one it means the broker's
//!   sequence state and ours disagree.
//!
//! Epoch bump (KIP-360): when a batch fails for good (retries or delivery timeout used up,
//! or refused), or the broker disagrees about the next sequence, later sequences of that
//! partition can never be accepted. Instead of failing every later batch, the producer
//! bumps its epoch, which restarts every partition's sequences at 0 (the broker accepts a
//! newer epoch starting at 0). The bump waits until nothing is in flight and every batch
//! of which some attempt may have been written is settled: acknowledged (or
//! DUPLICATE_SEQUENCE_NUMBER), refused with a sequence error, or failed for good.
//! Re-sequencing such a batch could write it twice: only the sequence proves to the broker
//! that a retry is the same batch, and a refusal of one attempt before the append (say
//! NOT_ENOUGH_REPLICAS) says nothing about an earlier attempt. Batches waiting for a retry
//! are then re-stamped under the new epoch in their queue order. Only the batch that failed
//! is reported failed. At the last epoch the producer asks for a new producer id instead.

use std::collections::HashMap;

use kafka_protocol::ResponseError;

use super::batch::{BatchAck, ProducerBatch};
use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// Most batches of one partition (and requests on one connection) in flight (Kafka's limit
/// for idempotence: the broker remembers the last five batches per producer and partition).
pub const MAX_IN_FLIGHT: usize = 5;

/// The producer id and epoch InitProducerId assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// Broker-assigned producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
}

/// What to do with a batch after its Produce outcome.
#[derive(Debug)]
pub enum Settle {
    /// Complete the batch's futures with this.
    Complete(Result<BatchAck>),
    /// Put it back for a retry.
    Retry(Error),
}

/// What [`Sequencer::maybe_bump`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bump {
    /// Nothing to do, or still waiting for batches to resolve.
    None,
    /// The epoch went up by one; sequences restart at 0.
    Epoch(ProducerIdentity),
    /// The epoch cannot grow: a new producer id is needed (the identity is cleared).
    NewProducerId,
}

/// Kafka's sequence step: wraps from `i32::MAX` to 0, never negative.
pub fn next_sequence(sequence: i32, records: usize) -> i32 {
    let n = i64::from(sequence) + records as i64;
    (n % (i64::from(i32::MAX) + 1)) as i32
}

#[derive(Debug, Default)]
struct PartitionSeq {
    /// Base sequence of the next new batch.
    next: i32,
    /// The sequence the broker expects next: right after the last acknowledged batch.
    expected: i32,
    /// Creation order of the last acknowledged batch (acks of older ones arrive late).
    last_acked: Option<u64>,
    in_flight: usize,
    /// Batches not yet complete of which some attempt may be in the log (see
    /// [`ProducerBatch::unresolved`]).
    unresolved: usize,
}

impl PartitionSeq {
    fn resolve(&mut self, batch: &mut ProducerBatch) {
        if batch.unresolved {
            batch.unresolved = false;
            self.unresolved = self.unresolved.saturating_sub(1);
        }
    }
}

/// Sequence state of one idempotent producer.
#[derive(Debug, Default)]
pub struct Sequencer {
    identity: Option<ProducerIdentity>,
    partitions: HashMap<TopicPartition, PartitionSeq>,
    /// Sequences must restart under a new epoch (see the module docs).
    bump_needed: bool,
}

impl Sequencer {
    /// No producer id yet: nothing may be sent.
    pub fn new() -> Self {
        Self::default()
    }

    /// The producer id and epoch, once known.
    pub fn identity(&self) -> Option<ProducerIdentity> {
        self.identity
    }

    /// Records InitProducerId's answer; sending may start. Sequences start at 0.
    pub fn set_identity(&mut self, identity: ProducerIdentity) {
        if self.identity != Some(identity) {
            self.partitions.clear();
        }
        self.identity = Some(identity);
    }

    /// Whether an epoch bump is due (sending of new batches waits for it).
    pub fn bump_needed(&self) -> bool {
        self.bump_needed
    }

    /// Whether `batch` carries the current producer id and epoch (it was sent under them).
    fn is_current(&self, batch: &ProducerBatch) -> bool {
        self.identity
            .is_some_and(|id| batch.producer() == Some((id.producer_id, id.epoch)))
    }

    /// Whether `batch`, the front of its partition's queue, may be sent now.
    pub fn may_send(&self, batch: &ProducerBatch) -> bool {
        if self.identity.is_none() {
            return false;
        }
        let p = self.partitions.get(&batch.tp);
        let nothing_in_flight = p.is_none_or(|p| p.in_flight == 0);
        if self.is_current(batch) {
            // A retry: wait until every earlier attempt of the partition has come back.
            // Before a bump only a batch without a definite answer goes, to get one.
            return nothing_in_flight && (!self.bump_needed || batch.unresolved);
        }
        !self.bump_needed && p.is_none_or(|p| p.in_flight < MAX_IN_FLIGHT)
    }

    /// Sequences `batch` (its first send, or its first under a new epoch) and counts it in
    /// flight.
    pub fn on_send(&mut self, batch: &mut ProducerBatch) {
        let Some(id) = self.identity else { return };
        let current = self.is_current(batch);
        let p = self.partitions.entry(batch.tp.clone()).or_default();
        if !current {
            batch.set_producer(id.producer_id, id.epoch, p.next);
            p.next = next_sequence(p.next, batch.record_count());
            // A bump waits for every unresolved batch, so none is re-stamped.
            batch.unresolved = false;
        }
        p.in_flight += 1;
    }

    /// A queued batch failed without being sent again (delivery timeout). If it was sent
    /// under the current epoch the broker may or may not have it: sequences restart.
    pub fn on_expired(&mut self, batch: &mut ProducerBatch) {
        if !self.is_current(batch) {
            return;
        }
        self.resolve(batch);
        self.bump_needed = true;
    }

    /// `batch` is known to be in the log, known not to be, or done with: it no longer
    /// holds up a bump.
    fn resolve(&mut self, batch: &mut ProducerBatch) {
        if let Some(p) = self.partitions.get_mut(&batch.tp) {
            p.resolve(batch);
        } else {
            batch.unresolved = false;
        }
    }

    /// Bumps the epoch when one is due and nothing is in flight or unresolved any more.
    pub fn maybe_bump(&mut self) -> Bump {
        if !self.bump_needed
            || self
                .partitions
                .values()
                .any(|p| p.in_flight > 0 || p.unresolved > 0)
        {
            return Bump::None;
        }
        self.bump_needed = false;
        self.partitions.clear();
        match self.identity {
            Some(id) if id.epoch < i16::MAX => {
                let bumped = ProducerIdentity {
                    producer_id: id.producer_id,
                    epoch: id.epoch + 1,
                };
                self.identity = Some(bumped);
                Bump::Epoch(bumped)
            }
            _ => {
                self.identity = None;
                Bump::NewProducerId
            }
        }
    }

    /// Decides what the outcome of a sent batch means; `can_retry` is false once the batch
    /// used up its retries.
    pub fn settle(
        &mut self,
        batch: &mut ProducerBatch,
        outcome: Result<BatchAck>,
        can_retry: bool,
    ) -> Settle {
        let current = self.is_current(batch);
        let p = self.partitions.entry(batch.tp.clone()).or_default();
        p.in_flight = p.in_flight.saturating_sub(1);
        let err = match outcome {
            Ok(ack) => {
                self.resolve(batch);
                self.acked(batch);
                return Settle::Complete(Ok(ack));
            }
            Err(e) => e,
        };
        let code = err.kafka_code();
        if code == Some(ResponseError::DuplicateSequenceNumber) {
            // The broker has it (an earlier attempt landed) but did not say at which offset.
            self.resolve(batch);
            self.acked(batch);
            return Settle::Complete(Ok(BatchAck {
                base_offset: -1,
                log_append_time: -1,
                acked_at: std::time::Instant::now(),
            }));
        }
        if !current {
            // Sent under an epoch given up since: it is re-stamped when sent again.
            return if can_retry {
                Settle::Retry(err)
            } else {
                Settle::Complete(Err(err))
            };
        }
        let sequence_error = matches!(
            code,
            Some(
                ResponseError::OutOfOrderSequenceNumber
                    | ResponseError::UnknownProducerId
                    | ResponseError::InvalidProducerEpoch
            )
        );
        if sequence_error {
            // The broker checks duplicates first: no attempt of this batch is in the log.
            p.resolve(batch);
            if batch.base_sequence() == Some(p.expected) {
                // The next batch by our count, and the broker will not take it.
                self.bump_needed = true;
            }
        } else if !batch.unresolved {
            // Any other error leaves open whether this attempt was written (a leader answers
            // NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS_AFTER_APPEND or a timeout after
            // appending), and a later refusal before the append (NOT_ENOUGH_REPLICAS) says
            // nothing about an earlier attempt: only an ack or a sequence error settles it.
            batch.unresolved = true;
            p.unresolved += 1;
        }
        if can_retry && (err.is_retriable() || sequence_error) {
            // A sequence error: an earlier batch is being retried, or a bump is due.
            return Settle::Retry(err);
        }
        // Failed for good: no later sequence of this epoch can be accepted.
        p.resolve(batch);
        self.bump_needed = true;
        Settle::Complete(Err(err))
    }

    fn acked(&mut self, batch: &ProducerBatch) {
        if !self.is_current(batch) {
            return;
        }
        let (Some(p), Some(base)) = (self.partitions.get_mut(&batch.tp), batch.base_sequence())
        else {
            return;
        };
        if p.last_acked.is_none_or(|o| batch.seq > o) {
            p.last_acked = Some(batch.seq);
            p.expected = next_sequence(base, batch.record_count());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Instant;

    const ID: ProducerIdentity = ProducerIdentity {
        producer_id: 7,
        epoch: 0,
    };

    fn batch(partition: i32, order: u64, records: usize) -> ProducerBatch {
        let mut b = ProducerBatch::new(TopicPartition::new("t", partition), order, Instant::now());
        for _ in 0..records {
            let _f = b.push(None, Some(Bytes::from_static(b"v")), Vec::new(), 0, 22);
        }
        b
    }

    fn ack() -> Result<BatchAck> {
        Ok(BatchAck {
            base_offset: 0,
            log_append_time: -1,
            acked_at: Instant::now(),
        })
    }

    fn kafka(code: ResponseError) -> Result<BatchAck> {
        Err(Error::kafka(code, None, "test"))
    }

    fn seq() -> Sequencer {
        let mut s = Sequencer::new();
        s.set_identity(ID);
        s
    }

    #[test]
    fn nothing_goes_before_the_producer_id() {
        let s = Sequencer::new();
        assert!(!s.may_send(&batch(0, 0, 1)));
        assert!(seq().may_send(&batch(0, 0, 1)));
    }

    #[test]
    fn sequences_run_per_partition() {
        let mut s = seq();
        let (mut a, mut b, mut c) = (batch(0, 0, 3), batch(1, 1, 2), batch(0, 2, 4));
        s.on_send(&mut a);
        s.on_send(&mut b);
        s.on_send(&mut c);
        assert_eq!(a.base_sequence(), Some(0));
        assert_eq!(b.base_sequence(), Some(0));
        assert_eq!(c.base_sequence(), Some(3));
    }

    #[test]
    fn sequences_wrap_at_i32_max_to_zero() {
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(next_sequence(5, 2), 7);
        let mut s = seq();
        s.partitions
            .entry(TopicPartition::new("t", 0))
            .or_default()
            .next = i32::MAX - 1;
        let (mut a, mut b) = (batch(0, 0, 3), batch(0, 1, 1));
        s.on_send(&mut a);
        s.on_send(&mut b);
        assert_eq!(a.base_sequence(), Some(i32::MAX - 1));
        assert_eq!(b.base_sequence(), Some(1));
    }

    #[test]
    fn retries_keep_their_sequence_and_wait_for_in_flight() {
        let mut s = seq();
        let (mut a, mut b) = (batch(0, 0, 2), batch(0, 1, 2));
        s.on_send(&mut a);
        s.on_send(&mut b);
        let err = Err(Error::ConnectionClosed("x".into()));
        assert!(matches!(s.settle(&mut a, err, true), Settle::Retry(_)));
        assert!(!s.may_send(&a), "b is still in flight");
        // b reaches the broker before a's retry: out of order, but not the expected one.
        assert!(matches!(
            s.settle(&mut b, kafka(ResponseError::OutOfOrderSequenceNumber), true),
            Settle::Retry(_)
        ));
        assert!(s.may_send(&a));
        s.on_send(&mut a);
        assert_eq!(a.base_sequence(), Some(0), "never re-sequenced");
        assert!(!s.may_send(&b), "one retry at a time");
        assert!(matches!(
            s.settle(&mut a, ack(), true),
            Settle::Complete(Ok(_))
        ));
        s.on_send(&mut b);
        assert_eq!(b.base_sequence(), Some(2));
        assert!(matches!(
            s.settle(&mut b, ack(), true),
            Settle::Complete(Ok(_))
        ));
        let mut c = batch(0, 2, 1);
        s.on_send(&mut c);
        assert_eq!(c.base_sequence(), Some(4));
    }

    #[test]
    fn at_most_five_in_flight_per_partition() {
        let mut s = seq();
        for i in 0..MAX_IN_FLIGHT as u64 {
            let mut b = batch(0, i, 1);
            assert!(s.may_send(&b));
            s.on_send(&mut b);
        }
        assert!(!s.may_send(&batch(0, 9, 1)));
        assert!(
            s.may_send(&batch(1, 10, 1)),
            "other partitions are independent"
        );
    }

    /// Settles `b` and asserts it goes back for a retry.
    fn retried(s: &mut Sequencer, b: &mut ProducerBatch, outcome: Result<BatchAck>) {
        match s.settle(b, outcome, true) {
            Settle::Retry(_) => {}
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn duplicate_counts_as_success() {
        let mut s = seq();
        let mut a = batch(0, 0, 2);
        s.on_send(&mut a);
        match s.settle(&mut a, kafka(ResponseError::DuplicateSequenceNumber), true) {
            Settle::Complete(Ok(ack)) => assert_eq!(ack.base_offset, -1),
            other => panic!("{other:?}"),
        }
        assert!(!s.bump_needed());
        let mut b = batch(0, 1, 1);
        s.on_send(&mut b);
        assert_eq!(b.base_sequence(), Some(2), "a counted as acknowledged");
    }

    #[test]
    fn a_sequence_error_at_the_expected_batch_bumps_the_epoch_and_resends_in_order() {
        for code in [
            ResponseError::OutOfOrderSequenceNumber,
            ResponseError::UnknownProducerId,
            ResponseError::InvalidProducerEpoch,
        ] {
            let mut s = seq();
            let (mut a, mut b, mut c) = (batch(0, 0, 1), batch(0, 1, 2), batch(0, 2, 3));
            s.on_send(&mut a);
            s.on_send(&mut b);
            s.on_send(&mut c);
            assert!(matches!(
                s.settle(&mut a, ack(), true),
                Settle::Complete(Ok(_))
            ));
            // The broker lost track of us (say, a new leader without our state).
            retried(&mut s, &mut b, kafka(code));
            assert!(s.bump_needed(), "{code:?}");
            assert!(!s.may_send(&b), "{code:?}: b waits for the bump");
            assert!(!s.may_send(&batch(1, 3, 1)), "new batches wait too");
            // c was in flight behind b and its answer was lost: it may be in the log.
            retried(&mut s, &mut c, Err(Error::ConnectionClosed("x".into())));
            assert!(c.unresolved);
            assert_eq!(
                s.maybe_bump(),
                Bump::None,
                "c might be written: no bump yet"
            );
            // c is retried under the old epoch, same sequence, to get a definite answer.
            assert!(s.may_send(&c));
            s.on_send(&mut c);
            assert_eq!((c.producer(), c.base_sequence()), (Some((7, 0)), Some(3)));
            retried(
                &mut s,
                &mut c,
                kafka(ResponseError::OutOfOrderSequenceNumber),
            );
            assert_eq!(
                s.maybe_bump(),
                Bump::Epoch(ProducerIdentity {
                    producer_id: 7,
                    epoch: 1
                })
            );
            // Queue order: b, c, then a new d; all start over at 0 under epoch 1.
            let mut d = batch(0, 3, 1);
            for (b, want) in [(&mut b, 0), (&mut c, 2), (&mut d, 5)] {
                assert!(s.may_send(b), "{code:?}");
                s.on_send(b);
                assert_eq!(
                    (b.producer(), b.base_sequence()),
                    (Some((7, 1)), Some(want))
                );
            }
            assert!(matches!(
                s.settle(&mut b, ack(), true),
                Settle::Complete(Ok(_))
            ));
        }
    }

    #[test]
    fn a_batch_that_fails_for_good_fails_alone_and_later_ones_restart_after_a_bump() {
        let mut s = seq();
        let (mut a, mut b) = (batch(0, 0, 1), batch(0, 1, 1));
        s.on_send(&mut a);
        s.on_send(&mut b);
        let lost = Err(Error::ConnectionClosed("x".into()));
        assert!(matches!(
            s.settle(&mut a, lost, false),
            Settle::Complete(Err(Error::ConnectionClosed(_)))
        ));
        // a may or may not be in the log; b behind it is refused while a is missing.
        retried(
            &mut s,
            &mut b,
            kafka(ResponseError::OutOfOrderSequenceNumber),
        );
        assert!(matches!(s.maybe_bump(), Bump::Epoch(_)));
        assert!(s.may_send(&b));
        s.on_send(&mut b);
        assert_eq!((b.producer(), b.base_sequence()), (Some((7, 1)), Some(0)));
    }

    #[test]
    fn a_refused_batch_bumps_the_epoch() {
        let mut s = seq();
        let mut a = batch(0, 0, 1);
        s.on_send(&mut a);
        assert!(matches!(
            s.settle(&mut a, kafka(ResponseError::MessageTooLarge), true),
            Settle::Complete(Err(_))
        ));
        assert!(s.bump_needed());
        assert!(matches!(s.maybe_bump(), Bump::Epoch(_)));
    }

    #[test]
    fn every_error_but_a_sequence_error_leaves_the_batch_unresolved() {
        // Leaders answer these after appending too; only the sequence proves what landed.
        for code in [
            ResponseError::NotEnoughReplicasAfterAppend,
            ResponseError::RequestTimedOut,
            ResponseError::NotLeaderOrFollower,
            ResponseError::NotEnoughReplicas,
        ] {
            let mut s = seq();
            let mut a = batch(0, 0, 1);
            s.on_send(&mut a);
            retried(&mut s, &mut a, kafka(code));
            assert!(a.unresolved, "{code:?}");
        }
    }

    #[test]
    fn a_refusal_before_the_append_does_not_settle_an_earlier_attempt() {
        // Found by the chaos matrix: a's first attempt was written but timed out waiting for
        // the ISR; its retry was refused with NOT_ENOUGH_REPLICAS (checked before the
        // duplicate check). A bump then re-stamped a and wrote it a second time.
        let mut s = seq();
        let (mut a, mut b) = (batch(0, 0, 1), batch(1, 1, 1));
        s.on_send(&mut a);
        s.on_send(&mut b);
        retried(&mut s, &mut a, kafka(ResponseError::RequestTimedOut));
        // Another partition's batch fails for good: a bump is due.
        assert!(matches!(
            s.settle(&mut b, kafka(ResponseError::MessageTooLarge), true),
            Settle::Complete(Err(_))
        ));
        assert!(
            s.may_send(&a),
            "the unresolved batch goes under the old epoch"
        );
        s.on_send(&mut a);
        retried(&mut s, &mut a, kafka(ResponseError::NotEnoughReplicas));
        assert!(a.unresolved);
        assert_eq!(s.maybe_bump(), Bump::None, "a may still be in the log");
        s.on_send(&mut a);
        assert_eq!((a.producer(), a.base_sequence()), (Some((7, 0)), Some(0)));
        match s.settle(&mut a, kafka(ResponseError::DuplicateSequenceNumber), true) {
            Settle::Complete(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.maybe_bump(), Bump::Epoch(_)));
    }

    #[test]
    fn only_an_expired_batch_that_was_sent_bumps_the_epoch() {
        let mut s = seq();
        s.on_expired(&mut batch(0, 0, 1));
        assert!(!s.bump_needed(), "never sent: the broker cannot have it");
        let mut a = batch(0, 1, 1);
        s.on_send(&mut a);
        retried(&mut s, &mut a, Err(Error::ConnectionClosed("x".into())));
        s.on_expired(&mut a);
        assert!(s.bump_needed());
        assert!(
            matches!(s.maybe_bump(), Bump::Epoch(_)),
            "nothing left to resolve"
        );
    }

    #[test]
    fn the_last_epoch_asks_for_a_new_producer_id() {
        let mut s = Sequencer::new();
        s.set_identity(ProducerIdentity {
            producer_id: 7,
            epoch: i16::MAX,
        });
        let mut a = batch(0, 0, 1);
        s.on_send(&mut a);
        assert!(matches!(
            s.settle(&mut a, kafka(ResponseError::MessageTooLarge), true),
            Settle::Complete(Err(_))
        ));
        assert_eq!(s.maybe_bump(), Bump::NewProducerId);
        assert_eq!(s.identity(), None);
        assert!(!s.may_send(&a));
        s.set_identity(ProducerIdentity {
            producer_id: 8,
            epoch: 0,
        });
        let mut b = batch(0, 1, 1);
        s.on_send(&mut b);
        assert_eq!((b.producer(), b.base_sequence()), (Some((8, 0)), Some(0)));
    }
}
