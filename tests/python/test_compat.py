"""Answers that must be Kafka's, found by running the clients' own test suites against
spate: each test drives a real client (confluent-kafka / librdkafka, kafka-python) and
asserts what a Kafka 4 broker does. Raw-protocol versions are in tests/tests/compat.rs.
"""
from __future__ import annotations

import logging
import re
import signal
import subprocess
import time
import uuid

from confluent_kafka import KafkaError, KafkaException, TopicPartition
import pytest
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic)
from kafka import KafkaConsumer
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import KafkaAdminClient

from conftest import spate_binary
from helpers import (admin, assert_all_delivered, consume_partitions, consumer, create_topic,
                     kafka_error_code, produce_and_wait, producer, wait_for_topic)

DAY_MS = 24 * 60 * 60 * 1000


def only_broker_id(bootstrap: str) -> int:
    md = admin(bootstrap).list_topics(timeout=10)
    assert len(md.brokers) == 1, f"expected exactly one broker, got {md.brokers}"
    return next(iter(md.brokers))


def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    a = admin(bootstrap)  # referenced until the future resolves
    (fut,) = a.describe_configs([res]).values()
    return {k: e.value for k, e in fut.result(timeout=30).items()}


def test_backfilled_records_with_old_timestamps_are_kept_until_a_retention_check(broker, topic):
    # Kafka checks retention every log.retention.check.interval.ms (5 minutes): a backfill
    # of month-old events is readable after it is acknowledged, not deleted at once.
    create_topic(broker.bootstrap, topic, config={"retention.ms": "3600000",
                                                  "segment.ms": "1000"})
    old = int(time.time() * 1000) - 30 * DAY_MS
    messages = [{"value": f"event-{i}".encode(), "partition": 0, "timestamp": old + i}
                for i in range(20)]
    assert_all_delivered(produce_and_wait(producer(broker.bootstrap), topic, messages))
    # The broker's maintenance runs every 500 ms; before the fix retention deleted the
    # records within two of its rounds. Give it several before reading back.
    time.sleep(3)
    got = consume_partitions(broker.bootstrap, topic, {0: 20})
    assert [m.value() for m in got[0]] == [m["value"] for m in messages]


def test_subtract_that_empties_a_list_config_is_accepted(broker, topic):
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "delete"})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete",
                    incremental_operation=AlterConfigOpType.SUBTRACT)])
    a = admin(broker.bootstrap)
    (fut,) = a.incremental_alter_configs([res]).values()
    fut.result(timeout=30)
    assert topic_configs(broker.bootstrap, topic)["cleanup.policy"] == ""


def test_offset_commit_for_an_unknown_topic_is_refused(broker, topic):
    create_topic(broker.bootstrap, topic)
    c = consumer(broker.bootstrap)
    try:
        missing = f"never-created-{uuid.uuid4().hex[:8]}"
        offsets = [TopicPartition(topic, 0, 1), TopicPartition(missing, 0, 5)]
        try:
            result = c.commit(offsets=offsets, asynchronous=False)
            errors = {(tp.topic, tp.partition): tp.error for tp in result}
        except KafkaException as e:
            # librdkafka raises when any partition failed; the per-partition errors are
            # not in the exception, so look them up again.
            assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e
            errors = {(missing, 0): e.args[0]}
        assert errors[(missing, 0)] is not None
        assert errors[(missing, 0)].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        (stored,) = c.committed([TopicPartition(topic, 0)], timeout=30)
        assert stored.offset == 1
    finally:
        c.close()


def test_legacy_alter_configs_replaces_the_topic_overrides(broker, topic):
    # kafka-python's alter_configs(incremental=False) sends the legacy AlterConfigs (API
    # 33), which replaces the topic's whole set of overrides; kafka-python sends the other
    # overrides along so they survive (tests/tests/compat.rs checks the replacing itself).
    create_topic(broker.bootstrap, topic, config={"retention.ms": "3600000",
                                                  "segment.bytes": "1048576"})
    kadmin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="spate-tests",
                              request_timeout_ms=30_000)
    try:
        res = kadmin.alter_configs([KConfigResource("TOPIC", topic,
                                                    configs={"retention.ms": "7200000"})],
                                   incremental=False)
        assert res["topic"][topic] == "OK", res
        bad = kadmin.alter_configs([KConfigResource("TOPIC", topic,
                                                    configs={"retention.ms": "soon"})],
                                   incremental=False)
        assert bad["topic"][topic] != "OK", bad
    finally:
        kadmin.close()
    configs = topic_configs(broker.bootstrap, topic)
    assert configs["retention.ms"] == "7200000"
    assert configs["segment.bytes"] == "1048576"


def test_a_clean_stop_releases_the_registration(fresh_broker):
    # SIGTERM runs a controlled shutdown, which ends the broker's session: the next start
    # on the same data registers at once instead of being refused as a live duplicate
    # until the old session expires.
    assert fresh_broker.stop(signal.SIGTERM) == 0
    fresh_broker.start()
    second_start = fresh_broker.log_text(tail=1 << 20).split("===== start #2")[-1]
    assert "already registered" not in second_start, second_start
    assert "cannot register" not in second_start, second_start


def test_explicit_replica_assignments_for_new_topics_and_partitions(broker, topic):
    bid = only_broker_id(broker.bootstrap)
    a = admin(broker.bootstrap)
    a.create_topics([NewTopic(topic, num_partitions=2, replication_factor=-1,
                              replica_assignment=[[bid], [bid]])])[topic].result(
        timeout=30)
    wait_for_topic(a, topic, 2)
    a.create_partitions([NewPartitions(topic, 4, replica_assignment=[[bid], [bid]])]
                        )[topic].result(timeout=30)
    wait_for_topic(a, topic, 4)
    md = a.list_topics(topic=topic, timeout=10).topics[topic]
    assert {p: (m.leader, m.replicas) for p, m in md.partitions.items()} == \
        {p: (bid, [bid]) for p in range(4)}
    # Validated as Kafka does: a list per new partition, known brokers only.
    for assignment in ([[bid]], [[bid + 100], [bid]], [[bid, bid], [bid]]):
        with pytest.raises(KafkaException) as ei:
            a.create_partitions([NewPartitions(topic, 6, replica_assignment=assignment)]
                                )[topic].result(timeout=30)
        assert kafka_error_code(ei.value) == KafkaError.INVALID_REPLICA_ASSIGNMENT, assignment
    assert len(a.list_topics(topic=topic, timeout=10).topics[topic].partitions) == 4


def test_kafka_python_infers_a_kafka_4_broker(broker):
    # kafka-python derives the broker's release from ApiVersions and turns features on or
    # off by it; before the version ranges reached Kafka 4.0's it inferred 3.2.
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, client_id="spate-tests",
                      request_timeout_ms=30_000)
    try:
        assert c.config["api_version"] >= (4, 0), c.config["api_version"]
    finally:
        c.close()


def test_four_kafka_python_consumers_settle_on_one_generation_at_once(broker, topic):
    # `spate dev` starts a new group's first rebalance without the 3 s initial delay (as
    # the server.properties Kafka ships for development does), so consumers that join a
    # new group together settle within a few seconds, all on one generation.
    import threading
    create_topic(broker.bootstrap, topic, partitions=8)
    group = f"settle-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    seen: dict[int, tuple[int | None, frozenset]] = {}
    lock = threading.Lock()

    def run(i: int) -> None:
        c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                          session_timeout_ms=6000, heartbeat_interval_ms=1000,
                          client_id=f"spate-tests-{i}", request_timeout_ms=30_000)
        try:
            while not stop.is_set():
                c.poll(timeout_ms=200)
                generation = c._coordinator._generation  # what kafka-python joined with
                with lock:
                    seen[i] = (generation.generation_id if generation else None,
                               frozenset(tp.partition for tp in c.assignment()))
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()

    def settled() -> bool:
        with lock:
            if len(seen) < 4:
                return False
            generations = {g for g, _ in seen.values()}
            parts = [p for _, p in seen.values()]
        return (len(generations) == 1 and None not in generations and all(parts)
                and sum(len(p) for p in parts) == 8 and frozenset().union(*parts) == set(range(8)))

    try:
        while not settled():
            assert time.monotonic() - started < 15, f"not settled in 15 s: {seen}"
            time.sleep(0.1)
        # And it stays settled: no member starts another rebalance.
        first = dict(seen)
        time.sleep(3)
        assert dict(seen) == first, (first, seen)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)


def test_log_dirs_and_metadata_quorum_through_kafka_python_admin(broker, topic):
    from kafka import TopicPartitionReplica
    bid = only_broker_id(broker.bootstrap)
    create_topic(broker.bootstrap, topic, partitions=2)
    messages = [{"value": b"x" * 1000, "partition": 0} for _ in range(50)]
    assert_all_delivered(produce_and_wait(producer(broker.bootstrap), topic, messages))
    kadmin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="spate-tests",
                              request_timeout_ms=30_000)
    try:
        # DescribeLogDirs: the one log directory, each partition's size, the volume's space.
        (answer,) = kadmin.describe_log_dirs({topic: [0, 1]})
        (log_dir,) = answer["log_dirs"]
        assert log_dir["error_code"] == 0, log_dir
        assert log_dir["log_dir"].startswith(str(broker.data_dir)), log_dir["log_dir"]
        assert log_dir["total_bytes"] > 0 and 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
        (t,) = log_dir["topics"]
        sizes = {p["partition_index"]: p["partition_size"] for p in t["partitions"]}
        assert sizes[0] >= 50 * 1000 and sizes[1] == 0, sizes
        assert all(p["offset_lag"] == 0 for p in t["partitions"])

        # AlterReplicaLogDirs: there is one directory; moving into it is a no-op, into
        # one the broker does not have is LOG_DIR_NOT_FOUND.
        res = kadmin.alter_replica_log_dirs({
            TopicPartitionReplica(topic, 0, bid): log_dir["log_dir"],
            TopicPartitionReplica(topic, 1, bid): "/no/such/log/dir",
        })
        codes = {tpr.partition: err.__name__ for tpr, err in res.items()}
        assert codes == {0: "NoError", 1: "LogDirNotFoundError"}, codes

        # DescribeQuorum, answered by the broker for the controller quorum.
        quorum = kadmin.describe_metadata_quorum()
        (part,) = quorum["topics"][0]["partitions"]
        assert part["error"] is None, part
        assert part["leader_id"] == bid and part["high_watermark"] > 0, part
        assert [v["replica_id"] for v in part["current_voters"]] == [bid], part
    finally:
        kadmin.close()


def test_librdkafka_fetches_by_topic_id(broker, topic):
    # Spate advertises Fetch v17, as Kafka 4.0 does; librdkafka then names topics by id
    # (Fetch v13+, KIP-516) in an incremental fetch session, and reads every record back.
    create_topic(broker.bootstrap, topic, partitions=2)
    messages = [{"value": f"v{i}".encode(), "partition": i % 2} for i in range(40)]
    assert_all_delivered(produce_and_wait(producer(broker.bootstrap), topic, messages))
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    log = logging.getLogger(f"rdkafka.{topic}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(Capture())
    got = consume_partitions(broker.bootstrap, topic, {0: 20, 1: 20}, debug="protocol",
                             logger=log)
    for p in (0, 1):
        assert [m.value() for m in got[p]] == [m["value"] for m in messages
                                               if m["partition"] == p]
    versions = {int(v) for v in re.findall(r"Sent FetchRequest \(v(\d+)", "\n".join(lines))}
    assert versions, "librdkafka logged no FetchRequest"
    assert min(versions) >= 13, f"fetched with versions {sorted(versions)}"


def test_cluster_info_shows_each_brokers_log_directories(broker, topic):
    # `spate cluster info` reads DescribeLogDirs from each live broker: the data
    # directory, its volume's space, and the replicas and bytes it holds.
    create_topic(broker.bootstrap, topic, partitions=2)
    messages = [{"value": b"x" * 1000, "partition": i % 2} for i in range(100)]
    assert_all_delivered(produce_and_wait(producer(broker.bootstrap), topic, messages))
    r = subprocess.run([str(spate_binary()), "cluster", "info", "--controllers",
                        broker.controller, "--bootstrap", broker.bootstrap],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    dirs = lines[lines.index("Log directories") + 1:]
    broker_id = only_broker_id(broker.bootstrap)
    assert len(dirs) == 1, r.stdout
    m = re.fullmatch(rf"  broker {broker_id} (\S+): volume (\d+) MiB, (\d+) MiB free, "
                     r"(\d+) replicas, ([\d.]+) MiB of logs, 0 behind the high watermark", dirs[0])
    assert m, dirs[0]
    assert m.group(1).startswith(str(broker.data_dir)), m.group(1)
    assert int(m.group(2)) > 0 and int(m.group(3)) > 0
    # This module's broker holds other tests' topics too: at least this one's two.
    assert int(m.group(4)) >= 2
    assert float(m.group(5)) >= 0.1
