"""Replication on the 3-node local cluster (deploy/local/cluster.sh), with a real client.

A confluent-kafka producer with acks=all keeps sending to an RF=3, min.insync.replicas=2
topic while the leader of partition 0 is killed with SIGKILL, twice. Every acknowledged
record is then read back exactly once, at the offset its acknowledgement named; `spate
topic describe` shows the ISR shrink when a broker dies and re-expand after it restarts.

That producer does not retry (retries=0, no idempotence), so a send that failed is
indeterminate and may or may not be in the log; an acknowledged one must be there exactly
once. With the idempotent producer the same kills leave each partition holding exactly
the sequence sent. Committed group offsets survive killing the group's coordinator.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import spate_binary
from test_local_cluster import cluster, partitions_of, wait_until  # noqa: F401 (fixture)

PARTITIONS = 3


class AcksAllProducer:
    """Sends unique values round-robin over the partitions until stopped. By default it
    does not retry (a failed send is indeterminate); `overrides` change the producer
    settings and `pause_every` polls for 10 ms after that many sends (pacing)."""

    def __init__(self, bootstrap: str, topic: str, overrides: dict | None = None,
                 pause_every: int = 50, flush_s: float = 30):
        self.topic = topic
        self.pause_every = pause_every
        self.flush_s = flush_s
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "retries": 0,
            "linger.ms": 2,
            "request.timeout.ms": 10000,
            "message.timeout.ms": 15000,
            "topic.metadata.refresh.interval.ms": 1000,
            **(overrides or {}),
        })
        self.acked: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, err, msg):
        with self.lock:
            if err is None:
                self.acked.append((msg.partition(), msg.offset(), msg.value()))
            else:
                self.failed += 1
                self.errors[err.name()] = self.errors.get(err.name(), 0) + 1

    def _run(self):
        n = 0
        deadline = time.monotonic() + 300  # bounded even if the test forgets to stop it
        while not self.stop.is_set() and time.monotonic() < deadline:
            value = f"v-{n}".encode()
            try:
                self.producer.produce(self.topic, value, partition=n % PARTITIONS,
                                      on_delivery=self._on_delivery)
                n += 1
            except BufferError:
                self.producer.poll(0.05)
                continue
            if n % self.pause_every == 0:
                self.producer.poll(0.01)
            else:
                self.producer.poll(0)
        self.producer.flush(self.flush_s)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def acked_on(self, partition: int) -> int:
        with self.lock:
            return sum(1 for p, _, _ in self.acked if p == partition)


def describe(bootstrap: str, topic: str) -> dict[int, dict]:
    """`spate topic describe`, parsed: partition -> {leader, isr}."""
    r = subprocess.run([str(spate_binary()), "topic", "describe", topic, "--bootstrap", bootstrap],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        m = re.search(r"Partition: (\d+)\s+Leader: (\S+).*Isr: ([\d,]*)", line)
        if m:
            isr = sorted(int(x) for x in m.group(3).split(",") if x)
            leader = int(m.group(2)) if m.group(2).isdigit() else None
            out[int(m.group(1))] = {"leader": leader, "isr": isr, "line": line}
    return out


def read_partition(bootstrap: str, topic: str, partition: int) -> list[tuple[int, bytes]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        tp = TopicPartition(topic, partition)
        _, high = consumer.get_watermark_offsets(tp, timeout=30)
        consumer.assign([TopicPartition(topic, partition, 0)])
        records = []
        deadline = time.monotonic() + 60
        while (not records or records[-1][0] < high - 1) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            records.append((msg.offset(), msg.value()))
        assert not records or records[-1][0] >= high - 1, f"read stopped at {records[-1][0]} < {high - 1}"
        return records
    finally:
        consumer.close()


def test_acks_all_loses_nothing_when_the_leader_is_killed_twice(cluster):
    bootstrap = cluster.run("up").strip().splitlines()[-1].split("=", 1)[1]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"repl-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})])[topic] \
        .result(timeout=30)
    wait_until(lambda: all(len(p["isr"]) == 3 for p in describe(bootstrap, topic).values())
               and len(describe(bootstrap, topic)) == PARTITIONS, 30, "full ISRs")

    producer = AcksAllProducer(bootstrap, topic)
    producer.thread.start()
    try:
        wait_until(lambda: producer.count() >= 2000, 60, "2000 acknowledged sends")
        for round_ in (1, 2):
            victim = describe(bootstrap, topic)[0]["leader"]
            assert victim in (1, 2, 3)
            cluster.run("kill", str(victim))
            # A new leader from the ISR; the dead broker leaves the ISR (fenced after the
            # session timeout).
            wait_until(lambda: (p := describe(bootstrap, topic)[0])["leader"] not in (None, victim)
                       and victim not in p["isr"], 30, f"round {round_}: new leader, shrunk ISR")
            shrunk = describe(bootstrap, topic)[0]
            assert len(shrunk["isr"]) == 2, shrunk["line"]
            before = producer.acked_on(0)
            wait_until(lambda: producer.acked_on(0) >= before + 500, 60,
                       f"round {round_}: acks=all writes to partition 0 after the kill")
            # The broker restarts, catches up, and the ISR re-expands.
            cluster.run("start", str(victim))
            wait_until(lambda: all(len(p["isr"]) == 3 for p in describe(bootstrap, topic).values()), 60,
                       f"round {round_}: ISR re-expanded")
        wait_until(lambda: producer.acked_on(0) >= before + 1000, 60, "more writes after the second restart")
    finally:
        producer.stop.set()
        producer.thread.join(60)

    assert producer.count() > 0
    for partition in range(PARTITIONS):
        records = read_partition(bootstrap, topic, partition)
        by_offset = dict(records)
        assert len(by_offset) == len(records), "an offset was read twice"
        values = [v for _, v in records]
        assert len(set(values)) == len(values), f"partition {partition}: a value appears twice"
        acked = [(o, v) for p, o, v in producer.acked if p == partition]
        missing = [(o, v) for o, v in acked if by_offset.get(o) != v]
        assert not missing, f"partition {partition}: {len(missing)} acknowledged records lost, e.g. {missing[:5]}"
    print(f"acked={producer.count()} failed={producer.failed} errors={producer.errors}")


def test_idempotent_producer_leaves_no_duplicate_and_no_gap_across_two_leader_kills(cluster):
    """enable.idempotence=true retries through leader failover; each partition then holds
    exactly the sequence sent, in order: no duplicate, no gap."""
    bootstrap = cluster.run("up").strip().splitlines()[-1].split("=", 1)[1]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"idem-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})])[topic] \
        .result(timeout=30)
    wait_until(lambda: len(describe(bootstrap, topic)) == PARTITIONS
               and all(len(p["isr"]) == 3 for p in describe(bootstrap, topic).values()), 30, "full ISRs")
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 2, "message.timeout.ms": 120000,
                         "topic.metadata.refresh.interval.ms": 1000})
    delivered: list[tuple[int, int, bytes]] = []
    failed: list[str] = []

    def on_delivery(err, msg):
        if err is None:
            delivered.append((msg.partition(), msg.offset(), msg.value()))
        else:
            failed.append(err.name())

    stop = threading.Event()
    sent = [0] * PARTITIONS

    def run():
        deadline = time.monotonic() + 200
        n = 0
        while not stop.is_set() and time.monotonic() < deadline:
            part = n % PARTITIONS
            try:
                producer.produce(topic, f"{part}-{sent[part]}".encode(), partition=part,
                                 on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.05)
                continue
            sent[part] += 1
            n += 1
            producer.poll(0)
            if n % 200 == 0:
                time.sleep(0.01)  # a steady stream, not a flood
        producer.flush(120)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(delivered) >= 2000, 60, "2000 deliveries")
        for round_ in (1, 2):
            victim = describe(bootstrap, topic)[0]["leader"]
            cluster.run("kill", str(victim))
            wait_until(lambda: describe(bootstrap, topic)[0]["leader"] not in (None, victim), 30,
                       f"round {round_}: new leader")
            before = len(delivered)
            wait_until(lambda: len(delivered) >= before + 1000, 60, f"round {round_}: deliveries resume")
            cluster.run("start", str(victim))
            wait_until(lambda: all(len(p["isr"]) == 3 for p in describe(bootstrap, topic).values()), 60,
                       f"round {round_}: ISR re-expanded")
    finally:
        stop.set()
        thread.join(150)
    assert not failed, f"deliveries failed: {failed[:5]}"
    for part in range(PARTITIONS):
        values = [v for _, v in read_partition(bootstrap, topic, part)]
        expected = [f"{part}-{i}".encode() for i in range(sent[part])]
        assert len(values) == len(expected), \
            f"partition {part}: {len(values)} records for {len(expected)} sent"
        assert values == expected, f"partition {part}: duplicates, gaps or reordering"


def test_committed_offsets_survive_killing_the_coordinator(cluster):
    bootstrap = cluster.run("up").strip().splitlines()[-1].split("=", 1)[1]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"co-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 2, 3)])[topic].result(timeout=30)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    offsets = [TopicPartition(topic, 0, 17), TopicPartition(topic, 1, 23)]
    # The first commit may meet COORDINATOR_NOT_AVAILABLE while __consumer_offsets is created.
    wait_until(lambda: [tp.error for tp in c.commit(offsets=offsets, asynchronous=False)] == [None, None],
               60, "a commit")
    c.close()
    # The coordinator: the broker FindCoordinator names.
    out = subprocess.run([str(spate_binary()), "group", "describe", group, "--bootstrap", bootstrap],
                         capture_output=True, text=True, timeout=30)
    m = re.search(r"[Cc]oordinator\D*(\d+)", out.stdout)
    assert m, out.stdout + out.stderr
    coordinator = int(m.group(1))
    cluster.run("kill", str(coordinator))

    def committed():
        c2 = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        try:
            got = c2.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
            return [(tp.partition, tp.offset) for tp in got]
        finally:
            c2.close()

    assert wait_until(lambda: committed() == [(0, 17), (1, 23)], 60,
                      "committed offsets from the new coordinator")
