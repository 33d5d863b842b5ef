"""Compacted topics through real clients: confluent-kafka (librdkafka), kafka-python and
kcat produce keyed records and tombstones, the broker's log cleaner keeps the latest value
of each key at its original offset, and a keyless record is refused as Kafka refuses it.
Raw-protocol versions are in tests/tests/compaction.rs."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError

from helpers import assert_all_delivered, consumer, create_topic, produce_and_wait, producer

# Small segments so the cleaner has sealed segments to work on; every dirty byte counts;
# tombstones may go on the pass after the one that first sees them.
COMPACTED = {"cleanup.policy": "compact", "segment.bytes": "2048",
             "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"}
KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def read_all(bootstrap: str, topic: str) -> dict[int, tuple[bytes | None, bytes | None]]:
    """Every record of partition 0 below the high watermark: offset -> (key, value)."""
    c = consumer(bootstrap)
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        out: dict[int, tuple[bytes | None, bytes | None]] = {}
        deadline = time.monotonic() + 30
        while high > 0 and (not out or max(out) < high - 1):
            assert time.monotonic() < deadline, f"could not read {topic} to {high}: {out}"
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        # Compaction may have removed the last records below the HW.
                        return out
                    raise AssertionError(f"consumer error: {m.error()}")
                if m.offset() < high:
                    out[m.offset()] = (m.key(), m.value())
        return out
    finally:
        c.close()


def wait_compacted(bootstrap: str, topic: str, expected: dict[bytes, bytes],
                   written: dict[int, tuple[bytes, bytes | None]], filler) -> None:
    """Until the topic's data keys hold exactly `expected` once each, writing a filler
    record each round (new segments give the cleaner more passes); every record read
    must be the one written at its offset."""
    deadline = time.monotonic() + 60
    while True:
        held = read_all(bootstrap, topic)
        for offset, record in held.items():
            if offset in written:
                assert written[offset] == record, f"offset {offset}: {record} != {written[offset]}"
        data = [(k, v) for k, v in held.values() if k is not None and k.startswith(b"k")]
        if dict(data) == expected and len(data) == len(expected):
            return
        assert time.monotonic() < deadline, f"not compacted after 60 s: {sorted(data)}"
        filler()
        time.sleep(0.2)


def test_confluent_kafka_reads_the_latest_value_of_each_key(broker, topic):
    create_topic(broker.bootstrap, topic, config=COMPACTED)
    p = producer(broker.bootstrap, **{"compression.type": "lz4"})
    messages = []
    for rnd in range(20):
        for k in range(8):
            messages.append({"key": f"k{k}".encode(), "value": f"k{k}-{rnd}".encode() * 8,
                             "partition": 0})
    messages.append({"key": b"k7", "value": None, "partition": 0})
    delivered = produce_and_wait(p, topic, messages)
    assert_all_delivered(delivered)
    written = {m.offset: (m.key, m.value) for m in delivered}
    expected = {f"k{k}".encode(): f"k{k}-19".encode() * 8 for k in range(7)}

    def filler():
        assert_all_delivered(produce_and_wait(p, topic, [
            {"key": b"filler", "value": b"f" * 200, "partition": 0}]))

    wait_compacted(broker.bootstrap, topic, expected, written, filler)


def test_kafka_python_producer_and_kcat_tombstones(broker, topic):
    create_topic(broker.bootstrap, topic, config=COMPACTED)
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    written = {}
    for rnd in range(15):
        for k in range(5):
            md = kp.send(topic, key=f"k{k}".encode(), value=f"{k}:{rnd}".encode() * 10,
                         partition=0).get(timeout=30)
            written[md.offset] = (f"k{k}".encode(), f"{k}:{rnd}".encode() * 10)
    expected = {f"k{k}".encode(): f"{k}:14".encode() * 10 for k in range(5)}
    if KCAT is not None:
        # kcat -Z sends an empty value as NULL: a tombstone for k0.
        r = subprocess.run([KCAT, "-b", broker.bootstrap, "-P", "-t", topic, "-p", "0", "-K:",
                            "-Z", "-X", "acks=all"], input="k0:\n", text=True,
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        del expected[b"k0"]

    def filler():
        kp.send(topic, key=b"filler", value=b"f" * 200, partition=0).get(timeout=30)

    try:
        wait_compacted(broker.bootstrap, topic, expected, written, filler)
    finally:
        kp.close()


def test_a_keyless_record_is_refused_by_both_clients(broker, topic):
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    delivered = produce_and_wait(producer(broker.bootstrap), topic,
                                 [{"value": b"no key", "partition": 0}])
    assert len(delivered) == 1 and isinstance(delivered[0], KafkaError), delivered
    assert delivered[0].code() == KafkaError.INVALID_RECORD, delivered[0]
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", retries=0)
    try:
        with pytest.raises(InvalidRecordError):
            kp.send(topic, value=b"no key", partition=0).get(timeout=30)
        # A keyed record is fine.
        assert kp.send(topic, key=b"k", value=b"v", partition=0).get(timeout=30).offset == 0
    finally:
        kp.close()
