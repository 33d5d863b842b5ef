//! Per-partition batch queues and the decision which batches go out now.
//!
//! Pure: time and leader lookup are arguments, so the batching rules are tested without a
//! broker. A batch is ready when it is full, its linger expired, or a flush/close forces it;
//! ready batches are grouped per leader into requests, at most one batch per partition per
//! request (Kafka rejects more) and only while the leader has an in-flight slot free.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::batch::{DeliveryFuture, ProducerBatch};
use super::idempotence::{Bump, Sequencer};
use super::partitioner::Sticky;
use crate::types::{Header, NodeId, TopicPartition};

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Target batch size.
    pub batch_size: usize,
    /// How long a batch may wait to fill.
    pub linger: Duration,
    /// Cap on the batches' estimated bytes in one request.
    pub max_request_size: usize,
    /// How long a record may wait for an ack in total before failing.
    pub delivery_timeout: Duration,
}

struct TopicQueues {
    name: Arc<str>,
    partitions: Vec<VecDeque<ProducerBatch>>,
    sticky: Sticky,
}

/// The outcome of one drain pass.
#[derive(Default)]
pub struct Drained {
    /// Requests to send: a leader and the batches for it.
    pub requests: Vec<(NodeId, Vec<ProducerBatch>)>,
    /// Batches past their delivery timeout; the caller fails them.
    pub expired: Vec<ProducerBatch>,
    /// Topics with a ready batch but no known leader; metadata needs a refresh.
    pub unknown_leaders: Vec<String>,
    /// The earliest time something becomes ready (for the sender's sleep).
    pub next_wake: Option<Instant>,
}

/// All unsent batches of one producer.
pub struct Accumulator {
    limits: Limits,
    topics: HashMap<Arc<str>, TopicQueues>,
    next_seq: u64,
    batches: usize,
    /// Set for an idempotent producer: sequences and the in-flight ordering rule.
    sequencer: Option<Sequencer>,
}

/// What `append` did.
pub struct Appended {
    /// The record's future.
    pub future: DeliveryFuture,
    /// A new batch was opened or one filled up: the sender should look again.
    pub wake_sender: bool,
    /// A new batch was opened.
    pub opened: bool,
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            topics: HashMap::new(),
            next_seq: 0,
            batches: 0,
            sequencer: None,
        }
    }

    /// An accumulator for an idempotent producer: nothing drains until the sequencer has a
    /// producer id, and batches get sequences as they go out.
    pub fn idempotent(limits: Limits) -> Self {
        Self {
            sequencer: Some(Sequencer::new()),
            ..Self::new(limits)
        }
    }

    /// The idempotent producer's sequence state, if enabled.
    pub fn sequencer_mut(&mut self) -> Option<&mut Sequencer> {
        self.sequencer.as_mut()
    }

    /// Number of unsent batches (in flight ones not counted).
    pub fn len(&self) -> usize {
        self.batches
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.batches == 0
    }

    /// Topic names with batches or partitioning state.
    pub fn topics(&self) -> Vec<String> {
        self.topics.keys().map(|t| t.to_string()).collect()
    }

    /// The partition for a record without key (sticky per topic).
    pub fn sticky_partition(&mut self, topic: &str, num_partitions: usize, size: usize) -> i32 {
        let batch_size = self.limits.batch_size;
        self.topic_mut(topic)
            .map_or(0, |q| q.sticky.next(num_partitions, batch_size, size))
    }

    /// Appends a record to the partition's open batch, opening one if needed.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        topic: &str,
        partition: i32,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<Header>,
        timestamp: i64,
        size: usize,
        now: Instant,
    ) -> Appended {
        let batch_size = self.limits.batch_size;
        let seq = self.next_seq;
        let Some(queues) = self.topic_mut(topic) else {
            return Appended {
                future: dead_future(topic, partition, now),
                wake_sender: false,
                opened: false,
            };
        };
        let name = queues.name.clone();
        let index = usize::try_from(partition).unwrap_or(0);
        if queues.partitions.len() <= index {
            queues.partitions.resize_with(index + 1, VecDeque::new);
        }
        let queue = &mut queues.partitions[index];
        let mut wake_sender = false;
        let needs_new = match queue.back_mut() {
            Some(last) if last.has_room(size, batch_size) => false,
            Some(last) => {
                last.full = true;
                true
            }
            None => true,
        };
        let mut opened = false;
        if needs_new {
            queue.push_back(ProducerBatch::new(
                TopicPartition {
                    topic: name,
                    partition,
                },
                seq,
                now,
            ));
            opened = true;
            wake_sender = true;
        }
        let Some(batch) = queue.back_mut() else {
            // Unreachable: a batch was just ensured; fail safe rather than panic.
            return Appended {
                future: dead_future(topic, partition, now),
                wake_sender: false,
                opened: false,
            };
        };
        let future = batch.push(key, value, headers, timestamp, size);
        if batch.bytes >= batch_size {
            batch.full = true;
            wake_sender = true;
        }
        if opened {
            self.next_seq += 1;
            self.batches += 1;
        }
        Appended {
            future,
            wake_sender,
            opened,
        }
    }

    /// Puts a batch back for a retry, in creation order among the partition's batches.
    /// Hands the batch back if it cannot be queued.
    #[must_use = "a batch handed back must still be completed"]
    pub fn reenqueue(&mut self, batch: ProducerBatch) -> Option<ProducerBatch> {
        let topic = batch.tp.topic.clone();
        let index = usize::try_from(batch.tp.partition).unwrap_or(0);
        let Some(queues) = self.topic_mut(&topic) else {
            return Some(batch);
        };
        if queues.partitions.len() <= index {
            queues.partitions.resize_with(index + 1, VecDeque::new);
        }
        let queue = &mut queues.partitions[index];
        let pos = queue.partition_point(|b| b.seq < batch.seq);
        queue.insert(pos, batch);
        self.batches += 1;
        None
    }

    /// Takes the batches that should go out now. `leader_of` maps a partition to its leader;
    /// `reserve` claims one in-flight slot on a leader and says whether one was free.
    pub fn drain(
        &mut self,
        now: Instant,
        force: bool,
        leader_of: impl Fn(&str, i32) -> Option<NodeId>,
        mut reserve: impl FnMut(NodeId) -> bool,
    ) -> Drained {
        let mut out = Drained::default();
        // The request each leader is still filling (index into out.requests) and sizes.
        let mut open: HashMap<NodeId, usize> = HashMap::new();
        let mut sizes: Vec<usize> = Vec::new();
        let mut no_slot: Vec<NodeId> = Vec::new();
        let limits = self.limits;
        let mut sequencer = self.sequencer.as_mut();
        if let Some(seqr) = sequencer.as_deref_mut() {
            match seqr.maybe_bump() {
                Bump::None => {}
                Bump::Epoch(id) => tracing::info!(
                    producer_id = id.producer_id,
                    epoch = id.epoch,
                    "bumped the producer epoch: sequences restart at 0"
                ),
                Bump::NewProducerId => {
                    tracing::info!("producer epoch exhausted: asking for a new producer id")
                }
            }
        }
        for (topic, queues) in self.topics.iter_mut() {
            for (index, queue) in queues.partitions.iter_mut().enumerate() {
                let expired_before = out.expired.len();
                expire(queue, now, limits.delivery_timeout, &mut out.expired);
                if let Some(seqr) = sequencer.as_deref_mut() {
                    for b in &mut out.expired[expired_before..] {
                        seqr.on_expired(b);
                    }
                }
                let Some(front) = queue.front() else { continue };
                // A linger too large for the clock never expires rather than overflowing.
                let linger_end = front
                    .created
                    .checked_add(limits.linger)
                    .unwrap_or(far_future(now));
                if let Some(at) = front.retry_at.filter(|at| *at > now) {
                    wake_at(&mut out.next_wake, at);
                    continue;
                }
                let ready = force || front.full || queue.len() > 1 || linger_end <= now;
                if !ready {
                    wake_at(&mut out.next_wake, linger_end);
                    continue;
                }
                // Idempotence: no producer id yet, a full in-flight window, or a retry
                // waiting for earlier attempts; the settled responses wake the sender.
                if sequencer.as_deref().is_some_and(|s| !s.may_send(front)) {
                    continue;
                }
                let partition = index as i32;
                let Some(leader) = leader_of(topic, partition) else {
                    if !out.unknown_leaders.iter().any(|t| **t == **topic) {
                        out.unknown_leaders.push(topic.to_string());
                    }
                    continue;
                };
                if no_slot.contains(&leader) {
                    continue;
                }
                let size = front.bytes;
                let fits = |i: &usize| {
                    sizes
                        .get(*i)
                        .is_some_and(|used| used + size <= limits.max_request_size)
                };
                let i = match open.get(&leader).copied().filter(fits) {
                    Some(i) => i,
                    None if reserve(leader) => {
                        out.requests.push((leader, Vec::new()));
                        sizes.push(0);
                        open.insert(leader, out.requests.len() - 1);
                        out.requests.len() - 1
                    }
                    None => {
                        no_slot.push(leader);
                        continue;
                    }
                };
                let (Some(request), Some(used)) = (out.requests.get_mut(i), sizes.get_mut(i))
                else {
                    continue;
                };
                let Some(mut batch) = queue.pop_front() else {
                    continue;
                };
                if let Some(seqr) = sequencer.as_deref_mut() {
                    seqr.on_send(&mut batch);
                }
                *used += size;
                request.1.push(batch);
                self.batches -= 1;
            }
        }
        self.batches -= out.expired.len();
        out
    }

    fn topic_mut(&mut self, topic: &str) -> Option<&mut TopicQueues> {
        // Look up by &str first: allocating the Arc'd name once per topic, not per record.
        if !self.topics.contains_key(topic) {
            let name: Arc<str> = Arc::from(topic);
            let queues = TopicQueues {
                name: name.clone(),
                partitions: Vec::new(),
                sticky: Sticky::default(),
            };
            self.topics.insert(name, queues);
        }
        self.topics.get_mut(topic)
    }
}

/// Moves batches whose delivery timeout passed (and that are not in flight) to `expired`.
fn expire(
    queue: &mut VecDeque<ProducerBatch>,
    now: Instant,
    timeout: Duration,
    expired: &mut Vec<ProducerBatch>,
) {
    while queue
        .front()
        .is_some_and(|b| b.created.checked_add(timeout).is_some_and(|end| end <= now))
    {
        if let Some(b) = queue.pop_front() {
            expired.push(b);
        }
    }
}

/// A wake-up time far enough away to mean "never" (about a year).
fn far_future(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(365 * 24 * 3600))
        .unwrap_or(now)
}

fn wake_at(slot: &mut Option<Instant>, at: Instant) {
    *slot = Some(slot.map_or(at, |s| s.min(at)));
}

fn dead_future(topic: &str, partition: i32, now: Instant) -> DeliveryFuture {
    let mut b = ProducerBatch::new(TopicPartition::new(topic, partition), 0, now);
    let f = b.push(None, None, Vec::new(), 0, 0);
    b.complete(Err(crate::error::Error::Closed));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn acc(batch_size: usize, linger_ms: u64, max_request: usize) -> Accumulator {
        Accumulator::new(Limits {
            batch_size,
            linger: MS * linger_ms as u32,
            max_request_size: max_request,
            delivery_timeout: Duration::from_secs(60),
        })
    }

    fn add(a: &mut Accumulator, topic: &str, p: i32, size: usize, now: Instant) -> Appended {
        a.append(
            topic,
            p,
            None,
            Some(Bytes::from(vec![0u8; 4])),
            Vec::new(),
            0,
            size,
            now,
        )
    }

    fn leaders(_: &str, p: i32) -> Option<NodeId> {
        Some(NodeId(p % 2))
    }

    #[test]
    fn linger_holds_a_batch_until_it_expires() {
        let t0 = Instant::now();
        let mut a = acc(1000, 10, 10_000);
        assert!(
            add(&mut a, "t", 0, 100, t0).wake_sender,
            "a new batch wakes the sender"
        );
        assert!(!add(&mut a, "t", 0, 100, t0).wake_sender);
        let d = a.drain(t0 + 5 * MS, false, leaders, |_| true);
        assert!(d.requests.is_empty());
        assert_eq!(d.next_wake, Some(t0 + 10 * MS));
        let d = a.drain(t0 + 10 * MS, false, leaders, |_| true);
        assert_eq!(d.requests.len(), 1);
        assert_eq!(d.requests[0].1[0].record_count(), 2);
        assert!(a.is_empty());
    }

    #[test]
    fn full_batches_go_at_once_and_new_ones_open() {
        let t0 = Instant::now();
        let mut a = acc(61 + 250, 1000, 10_000);
        add(&mut a, "t", 0, 100, t0);
        add(&mut a, "t", 0, 100, t0);
        // Third record does not fit: the batch closes and a second one opens.
        assert!(add(&mut a, "t", 0, 100, t0).wake_sender);
        assert_eq!(a.len(), 2);
        let d = a.drain(t0, false, leaders, |_| true);
        assert_eq!(d.requests.len(), 1);
        assert_eq!(
            d.requests[0].1.len(),
            1,
            "one batch per partition per request"
        );
        assert_eq!(d.requests[0].1[0].record_count(), 2);
        assert_eq!(a.len(), 1);
        // flush forces the partly filled one out.
        let d = a.drain(t0, true, leaders, |_| true);
        assert_eq!(d.requests[0].1[0].record_count(), 1);
    }

    #[test]
    fn groups_by_leader_and_respects_request_size_and_slots() {
        let t0 = Instant::now();
        let mut a = acc(1000, 0, 500);
        for p in 0..6 {
            add(&mut a, "t", p, 200, t0);
        }
        // Leader 0 has partitions 0,2,4 (~261 bytes each): two fit per 500-byte request.
        let mut slots: HashMap<NodeId, usize> = HashMap::from([(NodeId(0), 1), (NodeId(1), 5)]);
        let d = a.drain(t0, false, leaders, |n| {
            let s = slots.entry(n).or_default();
            if *s == 0 {
                return false;
            }
            *s -= 1;
            true
        });
        let for_0: Vec<usize> = d
            .requests
            .iter()
            .filter(|(n, _)| *n == NodeId(0))
            .map(|(_, b)| b.len())
            .collect();
        let for_1: Vec<usize> = d
            .requests
            .iter()
            .filter(|(n, _)| *n == NodeId(1))
            .map(|(_, b)| b.len())
            .collect();
        assert_eq!(
            for_0,
            vec![1],
            "only one slot for leader 0 and ~261-byte batches"
        );
        assert_eq!(for_1.iter().sum::<usize>(), 3);
        assert!(for_1.iter().all(|n| *n == 1));
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn unknown_leader_is_reported_and_kept() {
        let t0 = Instant::now();
        let mut a = acc(1000, 0, 10_000);
        add(&mut a, "t", 0, 10, t0);
        let d = a.drain(t0, false, |_, _| None, |_| true);
        assert_eq!(d.unknown_leaders, vec!["t".to_string()]);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn retries_go_back_in_order_and_wait_for_backoff() {
        let t0 = Instant::now();
        let mut a = acc(61 + 100, 0, 10_000);
        for _ in 0..3 {
            add(&mut a, "t", 0, 100, t0);
        }
        let first = a
            .drain(t0, false, leaders, |_| true)
            .requests
            .remove(0)
            .1
            .remove(0);
        let second = a
            .drain(t0, false, leaders, |_| true)
            .requests
            .remove(0)
            .1
            .remove(0);
        assert!(first.seq < second.seq);
        let mut second = second;
        second.retry_at = Some(t0 + 50 * MS);
        assert!(a.reenqueue(second).is_none());
        assert!(a.reenqueue(first).is_none());
        let d = a.drain(t0, false, leaders, |_| true);
        assert_eq!(d.requests[0].1[0].seq, 0, "the oldest batch goes first");
        let d = a.drain(t0, false, leaders, |_| true);
        assert!(
            d.requests.is_empty(),
            "the retried batch waits for its backoff"
        );
        assert_eq!(d.next_wake, Some(t0 + 50 * MS));
        assert_eq!(
            a.drain(t0 + 50 * MS, false, leaders, |_| true)
                .requests
                .len(),
            1
        );
    }

    #[test]
    fn idempotent_drain_waits_for_the_producer_id_and_sequences_in_order() {
        use crate::producer::idempotence::ProducerIdentity;
        let t0 = Instant::now();
        let mut a = Accumulator::idempotent(Limits {
            batch_size: 61 + 100,
            linger: Duration::ZERO,
            max_request_size: 10_000,
            delivery_timeout: Duration::from_secs(60),
        });
        for _ in 0..3 {
            add(&mut a, "t", 0, 100, t0);
        }
        assert!(a.drain(t0, true, leaders, |_| true).requests.is_empty());
        a.sequencer_mut().unwrap().set_identity(ProducerIdentity {
            producer_id: 9,
            epoch: 1,
        });
        let mut sent = Vec::new();
        for _ in 0..3 {
            let mut d = a.drain(t0, true, leaders, |_| true);
            sent.push(d.requests.remove(0).1.remove(0));
        }
        let seqs: Vec<Option<i32>> = sent.iter().map(|b| b.base_sequence()).collect();
        assert_eq!(seqs, vec![Some(0), Some(1), Some(2)]);
        // The first fails and goes back: it waits until the other two came back.
        let first = sent.remove(0);
        assert!(a.reenqueue(first).is_none());
        assert!(a.drain(t0, true, leaders, |_| true).requests.is_empty());
    }

    #[test]
    fn delivery_timeout_expires_waiting_batches() {
        let t0 = Instant::now();
        let mut a = acc(1000, 0, 10_000);
        add(&mut a, "t", 0, 10, t0);
        let d = a.drain(t0 + Duration::from_secs(61), false, |_, _| None, |_| true);
        assert_eq!(d.expired.len(), 1);
        assert!(a.is_empty());
    }
}
