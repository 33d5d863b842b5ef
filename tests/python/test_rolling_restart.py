"""Rolling restart of the 3-node local cluster (`deploy/local/cluster.sh roll`) under a
continuous acks=all load from a real client (confluent-kafka, idempotent, default
retries).

Each node in turn gets SIGTERM: a controlled shutdown moves leadership of its partitions
to the other in-sync replicas first, so the producer sees NOT_LEADER_OR_FOLLOWER and
switches over instead of timing out. The roll waits for every partition to be back in
sync before the next node. Nothing may fail and nothing acknowledged may be lost or
duplicated; preferred leaders return afterwards.
"""
from __future__ import annotations

import uuid

from confluent_kafka.admin import AdminClient, NewTopic

from test_local_cluster import cluster, wait_until  # noqa: F401 (fixture)
from test_replication import AcksAllProducer, describe, read_partition

PARTITIONS = 3


def ContinuousProducer(bootstrap: str, topic: str) -> AcksAllProducer:
    """An idempotent acks=all producer with default retries, paced (about 2,000/s): the
    point is continuity through the restarts, not load."""
    return AcksAllProducer(bootstrap, topic, overrides={
        "enable.idempotence": True,
        "retries": 2147483647,
        "linger.ms": 5,
        "message.timeout.ms": 120000,
    }, pause_every=20, flush_s=120)


def test_rolling_restart_under_acks_all_load_fails_and_loses_nothing(cluster):
    # Preferred leaders are checked every 5 s instead of Kafka's 300 s default.
    cluster.env["SPATE_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS"] = "5"
    bootstrap = cluster.run("up").strip().splitlines()[-1].split("=", 1)[1]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"roll-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})])[topic] \
        .result(timeout=30)
    wait_until(lambda: len(describe(bootstrap, topic)) == PARTITIONS
               and all(len(p["isr"]) == 3 for p in describe(bootstrap, topic).values()), 30, "full ISRs")
    preferred = {p: d["leader"] for p, d in describe(bootstrap, topic).items()}

    producer = ContinuousProducer(bootstrap, topic)
    producer.thread.start()
    try:
        wait_until(lambda: producer.count() >= 1000, 60, "1000 acknowledged sends")
        out = cluster.run("roll", timeout=400)
        for n in (1, 2, 3):
            assert f"node {n} restarted; all brokers up and every partition in sync" in out, out
        before = producer.count()
        wait_until(lambda: producer.count() >= before + 1000, 60, "writes after the roll")
    finally:
        producer.stop.set()
        producer.thread.join(150)

    assert producer.failed == 0, f"{producer.failed} sends failed: {producer.errors}"
    for partition in range(PARTITIONS):
        records = read_partition(bootstrap, topic, partition)
        by_offset = dict(records)
        values = [v for _, v in records]
        assert len(set(values)) == len(values), f"partition {partition}: a value appears twice"
        acked = [(o, v) for p, o, v in producer.acked if p == partition]
        lost = [(o, v) for o, v in acked if by_offset.get(o) != v]
        assert not lost, f"partition {partition}: {len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    # Leadership goes home again (the controller's preferred-leader election).
    wait_until(lambda: {p: d["leader"] for p, d in describe(bootstrap, topic).items()} == preferred,
               120, f"preferred leaders {preferred} back")
    print(f"acked={producer.count()} failed={producer.failed}")
