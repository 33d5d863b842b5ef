"""A full disk: produce fails with KAFKA_STORAGE_ERROR and the partition goes offline on
this broker (docs/architecture.md §8), the broker stays up and keeps answering, and once there is room
again and the broker restarts, every record acknowledged before the disk filled is
readable at its offset and new writes continue after them.

The data dir sits on a small tmpfs the test mounts, so it needs root (CI runs as root);
elsewhere the test is skipped with the reason.
"""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from confluent_kafka import KafkaError, TopicPartition

from conftest import SpateBroker, spate_binary
from helpers import admin, consume_partitions, consumer, create_topic, producer, produce_and_wait

TMPFS_BYTES = 24 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount_point)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_fails_produce_and_loses_nothing_acknowledged(small_disk, tmp_path):
    b = SpateBroker(spate_binary(), small_disk / "data", tmp_path / "spate.log")
    b.start()
    try:
        topic = f"full-{uuid.uuid4().hex[:8]}"
        # Small segments so the disk fills with log data, not one preallocated file.
        create_topic(b.bootstrap, topic, partitions=1, config={"segment.bytes": "1048576"})
        p = producer(b.bootstrap, acks="all", **{"message.timeout.ms": 10000, "retries": 0,
                                                  "linger.ms": 0})
        value = b"x" * 1000
        acked: list[int] = []
        failure = None
        for round_no in range(100):  # at most ~100 MB, far above the 24 MB disk
            results = produce_and_wait(p, topic, [{"value": value, "partition": 0}] * 1000)
            for r in results:
                if isinstance(r, KafkaError):
                    failure = failure or r
                else:
                    acked.append(r.offset)
            if failure is not None:
                break
        assert failure is not None, "the disk never filled"
        assert failure.code() in (KafkaError.KAFKA_STORAGE_ERROR, KafkaError.NOT_LEADER_FOR_PARTITION), failure
        assert b.alive(), "the broker died when the disk filled"
        gaps = [(a, b) for a, b in zip(acked, acked[1:]) if b != a + 1][:5]
        assert acked == list(range(len(acked))), \
            f"acknowledged offsets are not dense from 0: {len(acked)} acked, first " \
            f"{acked[:1]}, jumps {gaps}, first failure {failure}"
        # Still serving: metadata answers while the partition is offline here.
        md = admin(b.bootstrap).list_topics(topic, timeout=30)
        assert topic in md.topics

        # Make room, restart: recovery keeps everything acknowledged.
        b.stop()
        subprocess.run(["mount", "-o", f"remount,size={4 * TMPFS_BYTES}", str(small_disk)], check=True)
        b.start()
        # Writes that failed or were never acknowledged may or may not be there (as in
        # Kafka); everything acknowledged must be, at its offset.
        c = consumer(b.bootstrap)
        try:
            _, end = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        finally:
            c.close()
        assert end >= len(acked), f"high watermark {end} below the {len(acked)} acknowledged records"
        got = consume_partitions(b.bootstrap, topic, {0: end}, timeout=60)
        assert [m.offset() for m in got[0]][:len(acked)] == acked
        assert all(m.value() == value for m in got[0])
        more = produce_and_wait(producer(b.bootstrap, acks="all"), topic, [{"value": b"after", "partition": 0}])
        assert not isinstance(more[0], KafkaError), more[0]
        assert more[0].offset == end
    finally:
        b.stop()
