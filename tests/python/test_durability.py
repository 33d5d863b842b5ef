"""The main scenario: acknowledged records survive a crash, at the offsets they were given.

A confluent-kafka producer sends 100,000 distinct 1 KiB records with acks=all to a
3-partition topic; every delivery report must succeed. A consumer reads exactly those
records back in per-partition order, each at its acknowledged offset. Then the broker is
killed with SIGKILL, restarted on the same data dir, and everything is read again.
"""
from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition

from helpers import consumer, create_topic, producer

N_RECORDS = int(os.environ.get("SPATE_DURABILITY_RECORDS", "100000"))
RECORD_SIZE = 1024
PARTITIONS = 3


def payload(seq: int) -> bytes:
    head = f"{seq:010d}|".encode()
    filler = hashlib.blake2b(seq.to_bytes(8, "big"), digest_size=64).digest()
    body = head + filler * (RECORD_SIZE // len(filler) + 1)
    return body[:RECORD_SIZE]


def key(seq: int) -> bytes:
    return f"key-{seq}".encode()


class AckLog:
    """Delivery reports: (partition, offset) -> seq for every acknowledged record."""

    def __init__(self):
        self.acked: dict[tuple[int, int], int] = {}
        self.errors: list[tuple[int, KafkaError]] = []

    def callback(self, seq):
        def cb(err, msg):
            if err is not None:
                self.errors.append((seq, err))
            else:
                where = (msg.partition(), msg.offset())
                assert where not in self.acked, f"offset {where} acknowledged twice"
                self.acked[where] = seq
        return cb


def durable_producer(bootstrap: str):
    # No retries and no idempotence: the client never resends, so every record in the log
    # was produced exactly once and "exactly those records" is a strict check.
    return producer(bootstrap, **{
        "acks": "all", "enable.idempotence": False, "retries": 0,
        "linger.ms": 10, "batch.size": 512 * 1024, "compression.type": "none",
        "message.timeout.ms": 120_000, "request.timeout.ms": 60_000,
        "queue.buffering.max.messages": 200_000,
    })


def produce_range(p, topic: str, seqs, log: AckLog, poll_every: int = 1000):
    for seq in seqs:
        while True:
            try:
                p.produce(topic, value=payload(seq), key=key(seq),
                          partition=seq % PARTITIONS, on_delivery=log.callback(seq))
                break
            except BufferError:
                p.poll(0.05)
        if seq % poll_every == 0:
            p.poll(0)


def read_all(bootstrap: str, topic: str, ends: dict[int, int], timeout: float = 300):
    """Read every partition from offset 0 to its end; returns {(partition, offset): msg
    fields} and checks offsets are dense and in order, with no consumer errors."""
    c = consumer(bootstrap, **{"group.id": f"durability-{topic}", "enable.auto.commit": False,
                               "enable.partition.eof": True, "fetch.max.bytes": 8 << 20})
    seen: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    try:
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        nxt = {p: 0 for p in ends}
        deadline = time.monotonic() + timeout
        while any(nxt[p] < ends[p] for p in ends):
            assert time.monotonic() < deadline, \
                f"timed out: read up to {nxt}, expected ends {ends}"
            for m in c.consume(num_messages=2000, timeout=0.5):
                err = m.error()
                if err is not None:
                    assert err.code() == KafkaError._PARTITION_EOF, f"consumer error: {err}"
                    continue
                p, off = m.partition(), m.offset()
                assert off == nxt[p], \
                    f"partition {p}: got offset {off}, expected {nxt[p]} (gap, duplicate " \
                    f"or reordering)"
                assert off < ends[p], f"partition {p}: record at {off} beyond end {ends[p]}"
                nxt[p] = off + 1
                seen[(p, off)] = (m.key(), m.value())
        for p, end in ends.items():
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assert (lo, hi) == (0, end), f"partition {p}: watermarks {(lo, hi)}, expected " \
                                         f"(0, {end})"
    finally:
        c.close()
    return seen


def check_exactly(seen, acked: dict[tuple[int, int], int], what: str):
    assert len(seen) == len(acked), f"{what}: read {len(seen)} records, {len(acked)} acked"
    bad = []
    for where, seq in acked.items():
        got = seen.get(where)
        if got != (key(seq), payload(seq)):
            bad.append((where, seq, None if got is None else got[0]))
            if len(bad) >= 5:
                break
    assert not bad, f"{what}: records differ from the acknowledged ones, e.g. " \
                    f"(partition, offset), seq, key read: {bad}"


@pytest.mark.timeout(1200)
def test_acked_records_survive_sigkill(fresh_broker, topic):
    create_topic(fresh_broker.bootstrap, topic, partitions=PARTITIONS)
    log = AckLog()
    p = durable_producer(fresh_broker.bootstrap)
    t0 = time.monotonic()
    produce_range(p, topic, range(N_RECORDS), log)
    left = p.flush(300)
    produce_s = time.monotonic() - t0
    assert left == 0, f"{left} records not delivered after 300s"
    assert not log.errors, f"{len(log.errors)} deliveries failed, first: {log.errors[:3]}"
    assert len(log.acked) == N_RECORDS

    # Offsets are dense per partition and follow produce order.
    ends = {}
    for part in range(PARTITIONS):
        mine = sorted((off, seq) for (pp, off), seq in log.acked.items() if pp == part)
        assert [o for o, _ in mine] == list(range(len(mine))), f"partition {part} offsets"
        assert [s for _, s in mine] == list(range(part, N_RECORDS, PARTITIONS)), \
            f"partition {part}: offsets not in produce order"
        ends[part] = len(mine)

    check_exactly(read_all(fresh_broker.bootstrap, topic, ends), log.acked, "before crash")

    fresh_broker.kill()
    fresh_broker.restart()
    check_exactly(read_all(fresh_broker.bootstrap, topic, ends), log.acked,
                  "after SIGKILL + restart")

    # The log end survived too: new records continue after the old ones.
    log2 = AckLog()
    p2 = durable_producer(fresh_broker.bootstrap)
    produce_range(p2, topic, range(N_RECORDS, N_RECORDS + PARTITIONS), log2)
    assert p2.flush(60) == 0 and not log2.errors, log2.errors
    assert sorted(log2.acked) == [(part, ends[part]) for part in range(PARTITIONS)]
    print(f"produced {N_RECORDS} x {RECORD_SIZE} B with acks=all in {produce_s:.1f}s")


@pytest.mark.timeout(600)
def test_sigkill_during_produce_keeps_every_acked_record(fresh_broker, topic):
    """Kill the broker while records are in flight: whatever was acknowledged before (or
    after the restart) must be in the log at its acknowledged offset."""
    n = max(N_RECORDS // 4, 1000)
    create_topic(fresh_broker.bootstrap, topic, partitions=PARTITIONS)
    log = AckLog()
    p = durable_producer(fresh_broker.bootstrap)
    produce_range(p, topic, range(n), log, poll_every=100)
    deadline = time.monotonic() + 120
    while len(log.acked) < n // 3:
        assert time.monotonic() < deadline, f"only {len(log.acked)} acks after 120s"
        p.poll(0.01)
    fresh_broker.kill()
    acked_before_kill = len(log.acked)
    fresh_broker.restart()
    p.flush(180)  # the rest either fail (in flight at the kill) or go to the new process
    assert acked_before_kill > 0

    # Partition ends may include unacknowledged records; read up to the high watermark.
    c = consumer(fresh_broker.bootstrap)
    try:
        ends = {part: c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)[1]
                for part in range(PARTITIONS)}
    finally:
        c.close()
    for (part, off) in log.acked:
        assert off < ends[part], f"acked offset {off} of partition {part} is at or beyond " \
                                 f"the high watermark {ends[part]} after restart"
    seen = read_all(fresh_broker.bootstrap, topic, ends)
    bad = [(w, s) for w, s in log.acked.items() if seen.get(w) != (key(s), payload(s))]
    assert not bad, f"{len(bad)} acknowledged records lost or changed, e.g. {bad[:5]}"
    # Whatever else is in the log is one of ours, whole (no torn or foreign records).
    for (part, off), (k, v) in seen.items():
        seq = int(v[:10])
        assert seq % PARTITIONS == part and (k, v) == (key(seq), payload(seq)), (part, off)
    print(f"{acked_before_kill} acked before SIGKILL, {len(log.acked)} in total, "
          f"{len(log.errors)} failed")


def test_sigterm_is_a_clean_shutdown(fresh_broker, topic):
    create_topic(fresh_broker.bootstrap, topic)
    log = AckLog()
    p = durable_producer(fresh_broker.bootstrap)
    # Multiples of PARTITIONS all map to partition 0, the topic's only partition.
    produce_range(p, topic, range(0, 50 * PARTITIONS, PARTITIONS), log)
    assert p.flush(60) == 0 and not log.errors
    t0 = time.monotonic()
    rc = fresh_broker.stop(signal.SIGTERM, timeout=20)
    assert rc == 0, f"SIGTERM: exit status {rc} after {time.monotonic() - t0:.1f}s " \
                    f"(None = had to SIGKILL after 20s)"
    fresh_broker.start()
    seen = read_all(fresh_broker.bootstrap, topic, {0: 50})
    check_exactly(seen, log.acked, "after SIGTERM + restart")
    rc = fresh_broker.stop(signal.SIGINT, timeout=20)
    assert rc == 0, f"SIGINT: exit status {rc}"
