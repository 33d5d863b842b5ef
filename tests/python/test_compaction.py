"""Compacted topics through real clients: confluent-kafka (librdkafka), kafka-python and
kcat produce keyed records and tombstones, the broker's log cleaner keeps the latest value
of each key at its original offset, and a keyless record is refused as Kafka refuses it.
Raw-protocol versions are in tests/tests/compaction.rs."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError

from conftest import _new_broker
from helpers import admin, assert_all_delivered, consumer, create_topic, produce_and_wait, producer

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


def test_a_consumer_reads_correct_records_while_segments_are_cleaned(broker, topic):
    """librdkafka consumers read the partition from offset 0 over and over while a
    producer keeps rewriting keys and the cleaner swaps segments under them: every record
    a reader gets is the one written at its offset, offsets only grow within a read, and
    some reads see the log already compacted (the reads overlapped the cleaning)."""
    create_topic(broker.bootstrap, topic, config=COMPACTED)
    p = producer(broker.bootstrap)
    written: dict[int, tuple[bytes, bytes]] = {}
    stop = threading.Event()
    errors: list[str] = []

    def produce():
        rnd = 0
        try:
            while not stop.is_set() and rnd < 400:
                batch = [{"key": f"k{k}".encode(), "value": f"{k}:{rnd}".encode() * 20,
                          "partition": 0} for k in range(10)]
                for m in produce_and_wait(p, topic, batch):
                    if isinstance(m, KafkaError):
                        errors.append(str(m))
                        return
                    written[m.offset] = (m.key, m.value)
                rnd += 1
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    reads: list[dict[int, tuple[bytes | None, bytes | None]]] = []
    deadline = time.monotonic() + 60
    try:
        # Until the reads have overlapped the cleaner for a while (or the time runs out).
        while time.monotonic() < deadline and not errors:
            reads.append(read_all(broker.bootstrap, topic))
            gapped = [r for r in reads if r and len(r) < max(r) + 1]
            if len(gapped) >= 5 and len(reads) >= 8:
                break
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not errors, errors
    gapped = [r for r in reads if r and len(r) < max(r) + 1]
    assert len(gapped) >= 5, f"the cleaner removed nothing under {len(reads)} reads"
    for r in reads:
        for offset, record in r.items():
            assert written.get(offset) == record, f"offset {offset}: read {record}, wrote {written.get(offset)}"


def test_a_broker_default_cleanup_policy_compacts_new_topics(tmp_path_factory, topic):
    """`log.cleanup.policy=compact` as the broker's default (Kafka's server.properties
    name, `spate dev --topic-default`): a topic created without its own policy is
    compacted, DescribeConfigs says the value comes from the broker's static config, and a
    topic that sets `delete` itself is not."""
    b = _new_broker(tmp_path_factory, "default-policy", extra_args=[
        "--topic-default", "log.cleanup.policy=compact",
        "--topic-default", "log.cleaner.min.cleanable.ratio=0.01",
        "--topic-default", "log.segment.bytes=2048",
        "--topic-default", "log.cleaner.delete.retention.ms=0"])
    b.start()
    try:
        create_topic(b.bootstrap, topic)
        plain = f"{topic}-delete"
        create_topic(b.bootstrap, plain, config={"cleanup.policy": "delete"})
        a = admin(b.bootstrap)
        res = ConfigResource(ResourceType.TOPIC, topic)
        entry = a.describe_configs([res])[res].result(timeout=30)["cleanup.policy"]
        # Kafka's ConfigSource 4: STATIC_BROKER_CONFIG, named by its broker-level key.
        assert (entry.value, int(entry.source)) == ("compact", 4), entry
        assert "log.cleanup.policy" in entry.synonyms, entry.synonyms
        plain_res = ConfigResource(ResourceType.TOPIC, plain)
        plain_entry = a.describe_configs([plain_res])[plain_res].result(timeout=30)
        assert plain_entry["cleanup.policy"].value == "delete"
        md = a.list_topics(timeout=10)
        broker_res = ConfigResource(ResourceType.BROKER, str(next(iter(md.brokers))))
        broker_cfg = a.describe_configs([broker_res])[broker_res].result(timeout=30)
        got = broker_cfg["log.cleanup.policy"]
        assert (got.value, int(got.source)) == ("compact", 4), got
        got = broker_cfg["log.cleaner.min.compaction.lag.ms"]
        assert (got.value, int(got.source)) == ("0", 5), got
        kp = KafkaProducer(bootstrap_servers=b.bootstrap, acks="all", retries=0)
        try:
            with pytest.raises(InvalidRecordError):
                kp.send(topic, value=b"no key", partition=0).get(timeout=30)
            assert kp.send(plain, value=b"no key", partition=0).get(timeout=30).offset == 0
            written = {}
            for rnd in range(15):
                for k in range(5):
                    v = f"{k}:{rnd}".encode() * 10
                    md = kp.send(topic, key=f"k{k}".encode(), value=v, partition=0).get(timeout=30)
                    written[md.offset] = (f"k{k}".encode(), v)
            expected = {f"k{k}".encode(): f"{k}:14".encode() * 10 for k in range(5)}

            def filler():
                kp.send(topic, key=b"filler", value=b"f" * 200, partition=0).get(timeout=30)

            wait_compacted(b.bootstrap, topic, expected, written, filler)
        finally:
            kp.close()
    finally:
        b.stop()
