"""Consumer groups with real clients on the 3-node local cluster (deploy/local/cluster.sh):
three confluent-kafka consumers share a 6-partition topic two partitions each; when one
leaves, or is killed, the others take its partitions (the killed one within the session
timeout); cooperative-sticky rebalances work; a static member restarts without a
rebalance; kafka-python consumers in a group split partitions and commit; `spate group`
shows lag, resets and deletes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

from confluent_kafka import Consumer
from kafka import KafkaConsumer

import pytest

from helpers import create_topic
from test_local_cluster import SCRIPT, LocalCluster

SESSION_TIMEOUT_MS = 6000


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """One 3-node cluster for the whole module (it stands in for the single broker the
    other modules use: tests only need its `bootstrap`)."""
    cluster = LocalCluster(tmp_path_factory.mktemp("groups"))
    try:
        cluster.bootstrap = cluster.run("up").strip().splitlines()[-1].split("=", 1)[1]
        yield cluster
    finally:
        subprocess.run(["bash", str(SCRIPT), "down", "--purge"], env=cluster.env,
                       capture_output=True, timeout=120)


class GroupMember:
    """A confluent-kafka consumer polling in a thread, recording its assignment."""

    def __init__(self, bootstrap: str, group: str, topic: str, strategy: str = "range",
                 instance_id: str | None = None):
        config = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": strategy,
            "auto.offset.reset": "earliest",
        }
        if instance_id:
            config["group.instance.id"] = instance_id
        self.consumer = Consumer(config)
        self.assigned: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.rebalances = 0

        def on_assign(c, parts):
            with self.lock:
                self.rebalances += 1
                if strategy == "cooperative-sticky":
                    self.assigned |= {p.partition for p in parts}
                else:
                    self.assigned = {p.partition for p in parts}

        def on_revoke(c, parts):
            with self.lock:
                self.assigned -= {p.partition for p in parts}

        self.consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 180
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.consumer.poll(0.2)

    def partitions(self) -> set[int]:
        with self.lock:
            return set(self.assigned)

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.consumer.close()


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def spread_evenly(members: list[GroupMember], partitions: int) -> bool:
    sets = [m.partitions() for m in members]
    every = set().union(*sets)
    per = partitions // len(members)
    return every == set(range(partitions)) and all(len(s) == per for s in sets) and \
        sum(len(s) for s in sets) == partitions


def test_three_consumers_split_six_partitions_and_take_over_on_leave(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=6, replication_factor=3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    members = [GroupMember(broker.bootstrap, group, topic) for _ in range(3)]
    try:
        wait_for(lambda: spread_evenly(members, 6), 60, "two partitions each")
        leaving = members.pop()
        leaving.close()
        wait_for(lambda: spread_evenly(members, 6), 30, "three partitions each after a leave")
    finally:
        for m in members:
            m.close()


KILLABLE = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
                  "session.timeout.ms": %d, "heartbeat.interval.ms": 500,
                  "auto.offset.reset": "earliest"})
    c.subscribe([sys.argv[3]])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        c.poll(0.2)
""" % SESSION_TIMEOUT_MS)


def test_a_killed_consumer_s_partitions_move_within_the_session_timeout(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=6, replication_factor=3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    members = [GroupMember(broker.bootstrap, group, topic) for _ in range(2)]
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, broker.bootstrap, group, topic],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Two in this process, one in the child: 2 + 2 here means the child holds 2.
        wait_for(lambda: all(len(m.partitions()) == 2 for m in members)
                 and len(members[0].partitions() | members[1].partitions()) == 4, 60,
                 "the child consumer holding two partitions")
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: spread_evenly(members, 6), SESSION_TIMEOUT_MS / 1000 + 10,
                 "the survivors taking the killed consumer's partitions")
        # Detected by session expiry, then one rebalance (bounded by the rebalance wait).
        assert time.monotonic() - killed_at <= SESSION_TIMEOUT_MS / 1000 + 10
    finally:
        proc.kill()
        proc.wait(10)
        for m in members:
            m.close()


def test_cooperative_sticky_rebalances(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=6, replication_factor=3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = GroupMember(broker.bootstrap, group, topic, strategy="cooperative-sticky")
    members = [first]
    try:
        wait_for(lambda: first.partitions() == set(range(6)), 60, "one member holding all six")
        members.append(GroupMember(broker.bootstrap, group, topic, strategy="cooperative-sticky"))
        members.append(GroupMember(broker.bootstrap, group, topic, strategy="cooperative-sticky"))
        wait_for(lambda: spread_evenly(members, 6), 60, "two each after incremental rebalances")
        # Sticky: the first member kept partitions it had (it only gave some away).
        assert first.partitions() <= set(range(6))
    finally:
        for m in members:
            m.close()


def test_static_member_restart_keeps_its_partitions_without_a_rebalance(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=4, replication_factor=3)
    group = f"static-{uuid.uuid4().hex[:8]}"
    a = GroupMember(broker.bootstrap, group, topic, instance_id="a")
    b = GroupMember(broker.bootstrap, group, topic, instance_id="b")
    members = [a, b]
    try:
        wait_for(lambda: spread_evenly(members, 4), 60, "two partitions each")
        time.sleep(1)
        before_a, rebalances_a = a.partitions(), a.rebalances
        before_b = b.partitions()
        # A static member closing does not leave the group (KIP-345): its replacement with
        # the same group.instance.id gets the same partitions and `a` is not disturbed.
        b.close()
        members = [a]
        b2 = GroupMember(broker.bootstrap, group, topic, instance_id="b")
        members.append(b2)
        wait_for(lambda: b2.partitions() == before_b, 30, "the restarted static member's partitions")
        assert a.partitions() == before_a
        assert a.rebalances == rebalances_a, "the other member went through a rebalance"
    finally:
        for m in members:
            m.close()


def test_kafka_python_group_consumers_split_and_commit(broker, topic):
    from kafka import KafkaProducer
    create_topic(broker.bootstrap, topic, partitions=4, replication_factor=3)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for i in range(40):
        p.send(topic, value=f"k{i}".encode(), partition=i % 4)
    p.flush(timeout=30)
    p.close()
    group = f"kp-{uuid.uuid4().hex[:8]}"
    consumers = [KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                               auto_offset_reset="earliest", enable_auto_commit=False,
                               session_timeout_ms=10000, heartbeat_interval_ms=1000)
                 for _ in range(2)]
    try:
        # At-least-once: a rebalance while the second consumer joins may hand a partition
        # over before anything was committed, so a record can be read twice.
        got: set[bytes] = set()
        deadline = time.monotonic() + 60
        while len(got) < 40 and time.monotonic() < deadline:
            for c in consumers:
                for records in c.poll(timeout_ms=200).values():
                    got.update(r.value for r in records)
        assert got == {f"k{i}".encode() for i in range(40)}
        parts = [{tp.partition for tp in c.assignment()} for c in consumers]
        assert parts[0] | parts[1] == {0, 1, 2, 3} and not parts[0] & parts[1], parts
        for c in consumers:
            c.commit()
        committed = {tp.partition: consumers[0].committed(tp) for tp in consumers[0].assignment()}
        assert all(v == 10 for v in committed.values()), committed
    finally:
        for c in consumers:
            c.close()


def test_spate_group_cli_shows_lag_resets_and_deletes(broker, topic):
    from confluent_kafka import Producer, TopicPartition
    from conftest import spate_binary

    def spate(*args: str) -> str:
        r = subprocess.run([str(spate_binary()), *args, "--bootstrap", broker.bootstrap],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    create_topic(broker.bootstrap, topic, partitions=2, replication_factor=3)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce(topic, f"v{i}".encode(), partition=i % 2)
    p.flush(30)
    group = f"cli-{uuid.uuid4().hex[:8]}"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    wait_for(lambda: [tp.error for tp in c.commit(offsets=[TopicPartition(topic, 0, 3),
                                                             TopicPartition(topic, 1, 5)],
                                                  asynchronous=False)] == [None, None], 30, "a commit")
    c.close()

    def lag_rows() -> dict[int, tuple[int, int, int]]:
        rows = {}
        for line in spate("group", "describe", group).splitlines():
            cols = line.split()
            if len(cols) >= 5 and cols[0] == topic:
                rows[int(cols[1])] = (int(cols[2]), int(cols[3]), int(cols[4]))
        return rows

    assert lag_rows() == {0: (3, 5, 2), 1: (5, 5, 0)}
    assert group in spate("group", "list")
    spate("group", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute")
    assert lag_rows() == {0: (0, 5, 5), 1: (0, 5, 5)}
    spate("group", "delete", group)
    assert group not in spate("group", "list")
