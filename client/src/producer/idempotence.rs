//! Idempotent producer bookkeeping (KIP-98; KIP-360 recovery left out): per-partition
//! sequence numbers, the in-flight ordering rule and what a Produce outcome means.
//!
//! Pure: the sender asks [`Sequencer::may_send`] before draining a batch, calls
//! [`Sequencer::on_send`] when it goes out and [`Sequencer::settle`] with the broker's answer.
//!
//! Rules, as in the Java client:
//! - a batch gets its base sequence on its first send and keeps it for every retry;
//! - at most [`MAX_IN_FLIGHT`] batches per partition are in flight;
//! - a retried batch goes out only once nothing of its partition is in flight, so it and
//!   every later batch (which the broker rejects as out of order meanwhile) resend in order;
//! - DUPLICATE_SEQUENCE_NUMBER means the broker already has the batch: success;
//! - OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID or INVALID_PRODUCER_EPOCH for the batch
//!   the broker should expect next (right after the last acknowledged one) is fatal for the
//!   partition's pending batches; for a later batch it only means an earlier one is missing,
//!   so it is retried.
//!
//! Simplification: after a batch fails for good, every batch of the partition sequenced so
//! far fails too. When the broker surely lacks the failed batch (it rejected it), later
//! batches restart at the broker's expected sequence; when it may have it (timeout, delivery
//! timeout) sequences go on and the partition may keep failing until a new producer is made
//! (the Java client bumps the epoch instead, KIP-360).

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
    /// Put it back for a retry (same sequence).
    Retry(Error),
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
    /// Creation order of the newest sequenced batch.
    last_sequenced: Option<u64>,
    in_flight: usize,
    /// Batches up to this creation order fail with this error (an earlier one failed).
    failed: Option<(u64, Error)>,
}

/// Sequence state of one idempotent producer.
#[derive(Debug, Default)]
pub struct Sequencer {
    identity: Option<ProducerIdentity>,
    partitions: HashMap<TopicPartition, PartitionSeq>,
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

    /// Records InitProducerId's answer; sending may start.
    pub fn set_identity(&mut self, identity: ProducerIdentity) {
        self.identity = Some(identity);
    }

    /// Whether `batch`, the front of its partition's queue, may be sent now.
    pub fn may_send(&self, batch: &ProducerBatch) -> bool {
        if self.identity.is_none() {
            return false;
        }
        let Some(p) = self.partitions.get(&batch.tp) else {
            return true;
        };
        if batch.base_sequence().is_some() {
            // A retry: wait until every earlier attempt of the partition has come back.
            p.in_flight == 0
        } else {
            p.in_flight < MAX_IN_FLIGHT
        }
    }

    /// The error a queued batch must fail with without being sent, if an earlier batch of its
    /// partition failed for good after this one was sequenced.
    pub fn doomed(&self, batch: &ProducerBatch) -> Option<Error> {
        let p = self.partitions.get(&batch.tp)?;
        let (upto, err) = p.failed.as_ref()?;
        (batch.base_sequence().is_some() && batch.seq <= *upto).then(|| err.clone())
    }

    /// Sequences `batch` on its first send and counts it in flight.
    pub fn on_send(&mut self, batch: &mut ProducerBatch) {
        let Some(id) = self.identity else { return };
        let p = self.partitions.entry(batch.tp.clone()).or_default();
        if batch.base_sequence().is_none() {
            batch.set_producer(id.producer_id, id.epoch, p.next);
            p.next = next_sequence(p.next, batch.record_count());
            p.last_sequenced = Some(batch.seq);
        }
        p.in_flight += 1;
    }

    /// A sequenced batch failed without a response (delivery timeout while queued): the
    /// broker may or may not have it, so later batches fail too.
    pub fn on_expired(&mut self, batch: &ProducerBatch, err: &Error) {
        if batch.base_sequence().is_some() {
            self.fail_partition(&batch.tp, err, false);
        }
    }

    /// Decides what the outcome of a sent batch means; `can_retry` is false once the batch
    /// used up its retries.
    pub fn settle(
        &mut self,
        batch: &ProducerBatch,
        outcome: Result<BatchAck>,
        can_retry: bool,
    ) -> Settle {
        let p = self.partitions.entry(batch.tp.clone()).or_default();
        p.in_flight = p.in_flight.saturating_sub(1);
        let err = match outcome {
            Ok(ack) => {
                self.acked(batch);
                return Settle::Complete(Ok(ack));
            }
            Err(e) => e,
        };
        let code = err.kafka_code();
        if code == Some(ResponseError::DuplicateSequenceNumber) {
            // The broker has it (an earlier attempt landed) but did not say at which offset.
            self.acked(batch);
            return Settle::Complete(Ok(BatchAck {
                base_offset: -1,
                log_append_time: -1,
                acked_at: std::time::Instant::now(),
            }));
        }
        if let Some((upto, failed)) = &p.failed {
            if batch.seq <= *upto {
                return Settle::Complete(Err(failed.clone()));
            }
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
            if batch.base_sequence() == Some(p.expected) {
                // The broker lacks this batch and it is the next one: nothing after it can land.
                self.fail_partition(&batch.tp, &err, true);
                return Settle::Complete(Err(err));
            }
            // An earlier batch is missing (being retried): resend this one after it.
            return if can_retry {
                Settle::Retry(err)
            } else {
                self.fail_partition(&batch.tp, &err, false);
                Settle::Complete(Err(err))
            };
        }
        if err.is_retriable() && can_retry {
            return Settle::Retry(err);
        }
        // A non-retriable Kafka error means the broker refused the batch: it surely lacks it.
        let rejected = matches!(err, Error::Kafka(_)) && !err.is_retriable();
        self.fail_partition(&batch.tp, &err, rejected);
        Settle::Complete(Err(err))
    }

    fn acked(&mut self, batch: &ProducerBatch) {
        let (Some(p), Some(base)) = (self.partitions.get_mut(&batch.tp), batch.base_sequence())
        else {
            return;
        };
        if p.last_acked.is_none_or(|o| batch.seq > o) {
            p.last_acked = Some(batch.seq);
            p.expected = next_sequence(base, batch.record_count());
        }
    }

    /// Fails every batch of `tp` sequenced so far; with `rewind` new batches restart at the
    /// sequence the broker expects.
    fn fail_partition(&mut self, tp: &TopicPartition, err: &Error, rewind: bool) {
        let Some(p) = self.partitions.get_mut(tp) else {
            return;
        };
        if let Some(upto) = p.last_sequenced {
            p.failed = Some((upto, err.clone()));
        }
        if rewind {
            p.next = p.expected;
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
        assert!(matches!(s.settle(&a, err, true), Settle::Retry(_)));
        assert!(!s.may_send(&a), "b is still in flight");
        // b reaches the broker before a's retry: out of order, but not the expected one.
        assert!(matches!(
            s.settle(&b, kafka(ResponseError::OutOfOrderSequenceNumber), true),
            Settle::Retry(_)
        ));
        assert!(s.may_send(&a));
        s.on_send(&mut a);
        assert_eq!(a.base_sequence(), Some(0), "never re-sequenced");
        assert!(!s.may_send(&b), "one retry at a time");
        assert!(matches!(s.settle(&a, ack(), true), Settle::Complete(Ok(_))));
        s.on_send(&mut b);
        assert_eq!(b.base_sequence(), Some(2));
        assert!(matches!(s.settle(&b, ack(), true), Settle::Complete(Ok(_))));
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

    #[test]
    fn duplicate_counts_as_success() {
        let mut s = seq();
        let mut a = batch(0, 0, 2);
        s.on_send(&mut a);
        match s.settle(&a, kafka(ResponseError::DuplicateSequenceNumber), true) {
            Settle::Complete(Ok(ack)) => assert_eq!(ack.base_offset, -1),
            other => panic!("{other:?}"),
        }
        let mut b = batch(0, 1, 1);
        s.on_send(&mut b);
        assert!(matches!(
            s.settle(&b, kafka(ResponseError::OutOfOrderSequenceNumber), true),
            Settle::Complete(Err(_))
        ));
    }

    #[test]
    fn sequence_error_at_the_expected_batch_is_fatal_for_the_partition() {
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
            assert!(matches!(s.settle(&a, ack(), true), Settle::Complete(Ok(_))));
            match s.settle(&b, kafka(code), true) {
                Settle::Complete(Err(e)) => assert_eq!(e.kafka_code(), Some(code)),
                other => panic!("{code:?}: {other:?}"),
            }
            // c was in flight behind b: it fails with b's error instead of retrying.
            match s.settle(&c, Err(Error::ConnectionClosed("x".into())), true) {
                Settle::Complete(Err(e)) => assert_eq!(e.kafka_code(), Some(code)),
                other => panic!("{code:?}: {other:?}"),
            }
            assert!(s.doomed(&c).is_some());
            // New batches restart where the broker expects: right after a.
            let mut d = batch(0, 3, 1);
            assert!(s.doomed(&d).is_none());
            s.on_send(&mut d);
            assert_eq!(d.base_sequence(), Some(1));
        }
    }

    #[test]
    fn exhausted_retries_fail_later_batches_without_rewinding() {
        let mut s = seq();
        let (mut a, mut b) = (batch(0, 0, 1), batch(0, 1, 1));
        s.on_send(&mut a);
        s.on_send(&mut b);
        let timeout = Err(Error::ConnectionClosed("x".into()));
        assert!(matches!(
            s.settle(&a, timeout, false),
            Settle::Complete(Err(_))
        ));
        assert!(matches!(
            s.settle(&b, kafka(ResponseError::OutOfOrderSequenceNumber), true),
            Settle::Complete(Err(Error::ConnectionClosed(_)))
        ));
        let mut c = batch(0, 2, 1);
        s.on_send(&mut c);
        assert_eq!(
            c.base_sequence(),
            Some(2),
            "a may have landed: no reuse of 0"
        );
    }
}
