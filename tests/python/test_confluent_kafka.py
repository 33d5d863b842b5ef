"""confluent-kafka (librdkafka) against spate: admin, produce/consume, offsets, limits.

librdkafka is the client most non-JVM Kafka users run (Python, Go, .NET, Node, kcat), so
each test drives a real code path of it and checks what the broker answered.
"""
from __future__ import annotations

import os
import time
import uuid

import confluent_kafka
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewPartitions, NewTopic, ResourceType)

from helpers import (admin, assert_all_delivered, consume_partitions, consumer, create_topic,
                     kafka_error_code, produce_and_wait, producer, wait_for_topic)

# Not built yet (consumer groups and the idempotent producer are the groups/idempotence
# issue). strict=True: once the feature lands these pass, and the marker must go.


DEFAULTISH_SOURCES = {ConfigSource.DEFAULT_CONFIG, ConfigSource.STATIC_BROKER_CONFIG,
                      ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG}
KNOWN_TOPIC_CONFIGS = ["cleanup.policy", "compression.type", "max.message.bytes",
                       "message.timestamp.type", "min.insync.replicas", "retention.bytes",
                       "retention.ms", "segment.bytes"]


def only_broker_id(bootstrap: str) -> int:
    md = admin(bootstrap).list_topics(timeout=10)
    assert len(md.brokers) == 1, f"expected exactly one broker, got {md.brokers}"
    return next(iter(md.brokers))


# Note: an AdminClient must stay referenced until its futures resolve; a temporary one
# gets destroyed and fails them with _DESTROY.


def with_enum_sources(configs: dict[str, ConfigEntry]) -> dict[str, ConfigEntry]:
    """confluent-kafka hands ConfigEntry.source over as a bare int; make it the enum so
    comparisons with ConfigSource members mean something."""
    for e in configs.values():
        e.source = ConfigSource(e.source)
    return configs


def describe_topic_configs(bootstrap: str, topic: str) -> dict[str, ConfigEntry]:
    a = admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    return with_enum_sources(a.describe_configs([res])[res].result(timeout=30))


def alter_incremental(bootstrap: str, topic: str, *entries: ConfigEntry) -> None:
    a = admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=list(entries))
    a.incremental_alter_configs([res])[res].result(timeout=30)


def create_error_code(bootstrap: str, new_topic: NewTopic, **kwargs) -> int | None:
    a = admin(bootstrap)
    fut = a.create_topics([new_topic], operation_timeout=30, **kwargs)
    try:
        fut[new_topic.topic].result(timeout=30)
    except KafkaException as e:
        return kafka_error_code(e)
    return None


def topic_names(bootstrap: str) -> set[str]:
    return set(admin(bootstrap).list_topics(timeout=10).topics)


# --- admin ------------------------------------------------------------------------------


def test_create_describe_delete_topic(broker, topic):
    a = admin(broker.bootstrap)
    a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                              config={"retention.ms": "3600000"})])[topic].result(timeout=30)
    wait_for_topic(a, topic, 3)

    md = a.list_topics(topic=topic, timeout=10)
    assert len(md.brokers) == 1
    (bid, b) = next(iter(md.brokers.items()))
    assert (b.host, b.port) == (broker.host, broker.port), \
        f"broker advertises {b.host}:{b.port}, clients connect to {broker.bootstrap}"
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2]
    for p in t.partitions.values():
        assert p.error is None
        assert (p.leader, list(p.replicas), list(p.isrs)) == (bid, [bid], [bid])

    assert create_error_code(broker.bootstrap, NewTopic(topic, 1, 1)) == \
        KafkaError.TOPIC_ALREADY_EXISTS

    a.delete_topics([topic], operation_timeout=30)[topic].result(timeout=30)
    deadline = time.monotonic() + 15
    while topic in topic_names(broker.bootstrap):
        assert time.monotonic() < deadline, f"{topic} still listed 15s after DeleteTopics"
        time.sleep(0.2)

    # The name is free again, and the new topic starts empty with the new layout.
    create_topic(broker.bootstrap, topic, partitions=1)
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0)
    finally:
        c.close()


@pytest.mark.parametrize("name", ["bad name", "..", ".", "a" * 250, "slash/topic",
                                  "star*", "umlaut-\u00fc"],
                         ids=["space", "dotdot", "dot", "250-chars", "slash", "star",
                              "non-ascii"])
def test_invalid_topic_name_is_rejected(broker, name):
    code = create_error_code(broker.bootstrap, NewTopic(name, 1, 1))
    assert code == KafkaError.TOPIC_EXCEPTION, \
        f"CreateTopics({name!r}) gave error {code}, expected INVALID_TOPIC_EXCEPTION (17)"
    assert name not in topic_names(broker.bootstrap)


def test_longest_valid_topic_name_is_accepted(broker):
    name = ("t-" + uuid.uuid4().hex).ljust(249, "x")
    create_topic(broker.bootstrap, name)
    assert name in topic_names(broker.bootstrap)


@pytest.mark.parametrize("config", [{"retention.ms": "not-a-number"},
                                    {"cleanup.policy": "shred"},
                                    {"no.such.config": "1"}])
def test_invalid_topic_config_is_rejected(broker, topic, config):
    code = create_error_code(broker.bootstrap, NewTopic(topic, 1, 1, config=config))
    assert code == KafkaError.INVALID_CONFIG, f"got error {code}, expected INVALID_CONFIG (40)"
    assert topic not in topic_names(broker.bootstrap)


def test_replication_factor_above_live_brokers_is_rejected(broker, topic):
    code = create_error_code(broker.bootstrap, NewTopic(topic, 1, 3))
    assert code == KafkaError.INVALID_REPLICATION_FACTOR, f"got error {code}"
    assert topic not in topic_names(broker.bootstrap)


def test_create_topics_validate_only(broker, topic):
    assert create_error_code(broker.bootstrap, NewTopic(topic, 2, 1),
                             validate_only=True) is None
    time.sleep(1)
    assert topic not in topic_names(broker.bootstrap), "validate_only created the topic"
    # validate_only still validates.
    assert create_error_code(broker.bootstrap, NewTopic("bad name", 1, 1),
                             validate_only=True) == KafkaError.TOPIC_EXCEPTION


def test_describe_configs_every_entry_has_value_and_source(broker, topic):
    create_topic(broker.bootstrap, topic, config={"retention.ms": "3600000",
                                                  "cleanup.policy": "delete"})
    configs = describe_topic_configs(broker.bootstrap, topic)
    missing = [k for k in KNOWN_TOPIC_CONFIGS if k not in configs]
    assert not missing, f"DescribeConfigs lacks {missing}; got {sorted(configs)}"
    for name, e in configs.items():
        assert e.source != ConfigSource.UNKNOWN_CONFIG, f"{name} has source UNKNOWN"
        assert e.value is not None or e.is_sensitive, f"{name} has no value"
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG
    mmb = configs["max.message.bytes"]
    assert (mmb.value, mmb.source in DEFAULTISH_SOURCES) == ("1048588", True), vars(mmb)
    assert configs["retention.bytes"].value == "-1"
    assert configs["retention.bytes"].source in DEFAULTISH_SOURCES


def test_describe_broker_configs(broker):
    bid = only_broker_id(broker.bootstrap)
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.BROKER, str(bid))
    configs = with_enum_sources(a.describe_configs([res])[res].result(timeout=30))
    for key in ["num.partitions", "default.replication.factor", "auto.create.topics.enable",
                "log.retention.ms", "message.max.bytes"]:
        assert key in configs, f"broker DescribeConfigs lacks {key}; got {sorted(configs)}"
    assert configs["num.partitions"].value == "1"
    assert configs["default.replication.factor"].value == "1"
    assert configs["auto.create.topics.enable"].value == "true"


def test_incremental_alter_configs_set_then_delete(broker, topic):
    create_topic(broker.bootstrap, topic, config={"retention.bytes": "123456789"})
    default_retention = describe_topic_configs(broker.bootstrap, topic)["retention.ms"]
    assert default_retention.source in DEFAULTISH_SOURCES
    assert default_retention.value == "604800000"  # 7 days, as Kafka

    alter_incremental(broker.bootstrap, topic, ConfigEntry(
        "retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET))
    c = describe_topic_configs(broker.bootstrap, topic)
    assert (c["retention.ms"].value, c["retention.ms"].source) == \
        ("7200000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    # Incremental: the other dynamic config is untouched.
    assert (c["retention.bytes"].value, c["retention.bytes"].source) == \
        ("123456789", ConfigSource.DYNAMIC_TOPIC_CONFIG)

    alter_incremental(broker.bootstrap, topic, ConfigEntry(
        "retention.ms", None, incremental_operation=AlterConfigOpType.DELETE))
    c = describe_topic_configs(broker.bootstrap, topic)
    assert c["retention.ms"].value == "604800000"
    assert c["retention.ms"].source in DEFAULTISH_SOURCES
    assert c["retention.bytes"].value == "123456789"


def test_incremental_alter_configs_append_subtract(broker, topic):
    # APPEND and SUBTRACT apply to list configs; the throttled-replica lists are Kafka's.
    key = "leader.replication.throttled.replicas"
    create_topic(broker.bootstrap, topic, config={key: "0:1"})
    alter_incremental(broker.bootstrap, topic, ConfigEntry(
        key, "1:2", incremental_operation=AlterConfigOpType.APPEND))
    value = describe_topic_configs(broker.bootstrap, topic)[key].value
    assert sorted(value.split(",")) == ["0:1", "1:2"]
    alter_incremental(broker.bootstrap, topic, ConfigEntry(
        key, "0:1", incremental_operation=AlterConfigOpType.SUBTRACT))
    assert describe_topic_configs(broker.bootstrap, topic)[key].value == "1:2"


def test_incremental_alter_configs_invalid_value(broker, topic):
    create_topic(broker.bootstrap, topic)
    with pytest.raises(KafkaException) as ei:
        alter_incremental(broker.bootstrap, topic, ConfigEntry(
            "retention.ms", "soon", incremental_operation=AlterConfigOpType.SET))
    assert kafka_error_code(ei.value) == KafkaError.INVALID_CONFIG
    assert describe_topic_configs(broker.bootstrap, topic)["retention.ms"].value == "604800000"


def test_create_partitions(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    a = admin(broker.bootstrap)
    a.create_partitions([NewPartitions(topic, 5)])[topic].result(timeout=30)
    wait_for_topic(a, topic, 5)
    p = producer(broker.bootstrap, acks="all")
    res = assert_all_delivered(produce_and_wait(
        p, topic, [{"value": f"p{i}".encode(), "partition": i} for i in range(5)]))
    assert [(r.partition, r.offset) for r in res] == [(i, 0) for i in range(5)]
    got = consume_partitions(broker.bootstrap, topic, {i: 1 for i in range(5)})
    assert {i: [m.value() for m in got[i]] for i in got} == {i: [f"p{i}".encode()]
                                                             for i in range(5)}
    # Fewer partitions than now: INVALID_PARTITIONS.
    with pytest.raises(KafkaException) as ei:
        a.create_partitions([NewPartitions(topic, 3)])[topic].result(timeout=30)
    assert kafka_error_code(ei.value) == KafkaError.INVALID_PARTITIONS


def test_auto_create_on_produce_uses_num_partitions(broker, topic):
    p = producer(broker.bootstrap, acks="all")
    (res,) = assert_all_delivered(produce_and_wait(p, topic, [{"value": b"auto"}]))
    assert (res.partition, res.offset) == (0, 0)
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert len(md.topics[topic].partitions) == 1


# --- produce / consume ------------------------------------------------------------------


def sample_messages(n: int, partitions: int, tag: str) -> list[dict]:
    msgs = []
    for i in range(n):
        m = {"partition": i % partitions, "key": f"key-{i}".encode()}
        if i % 10 == 3:
            m["value"] = None  # a tombstone
        else:
            # Compressible but distinct values, some empty.
            m["value"] = b"" if i % 10 == 7 else f"{tag}-value-{i}-".encode() * (1 + i % 13)
        if i % 5 == 0:
            m["key"] = None
        if i % 4 == 0:
            m["headers"] = [("seq", str(i).encode()), ("dup", b"1"), ("dup", b"2"),
                            ("nullh", None)]
        msgs.append(m)
    return msgs


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_every_codec(broker, topic, codec):
    create_topic(broker.bootstrap, topic, partitions=3)
    msgs = sample_messages(600, 3, codec)
    p = producer(broker.bootstrap, acks="all", **{"compression.type": codec,
                                                 "linger.ms": 20})
    results = assert_all_delivered(produce_and_wait(p, topic, msgs))

    per_part: dict[int, list[tuple[int, dict]]] = {0: [], 1: [], 2: []}
    for m, r in zip(msgs, results):
        assert r.partition == m["partition"]
        per_part[r.partition].append((r.offset, m))
    for part, lst in per_part.items():
        assert [o for o, _ in lst] == list(range(len(lst))), \
            f"partition {part}: delivery offsets not 0..n-1 in produce order"

    got = consume_partitions(broker.bootstrap, topic, {p_: len(v) for p_, v in per_part.items()})
    for part, lst in per_part.items():
        recs = got[part]
        assert [r.offset() for r in recs] == [o for o, _ in lst]
        for rec, (off, m) in zip(recs, lst):
            where = f"{codec} partition {part} offset {off}"
            assert rec.key() == m.get("key"), where
            assert rec.value() == m.get("value"), where
            assert (rec.headers() or []) == (m.get("headers") or []), where
            assert rec.timestamp()[0] == confluent_kafka.TIMESTAMP_CREATE_TIME, where


def test_idempotent_producer(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap, **{"enable.idempotence": True, "acks": "all"})
    msgs = [{"partition": i % 2, "value": f"idem-{i}".encode()} for i in range(200)]
    res = assert_all_delivered(produce_and_wait(p, topic, msgs))
    got = consume_partitions(broker.bootstrap, topic, {0: 100, 1: 100})
    for part in (0, 1):
        assert [m.value() for m in got[part]] == [f"idem-{i}".encode()
                                                  for i in range(part, 200, 2)]
        assert sorted(r.offset for r in res if r.partition == part) == list(range(100))


def test_acks_all_one_zero(broker, topic):
    create_topic(broker.bootstrap, topic)
    expected = []
    for acks in ["all", "1", "0"]:
        p = producer(broker.bootstrap, acks=acks)
        values = [f"acks-{acks}-{i}".encode() for i in range(50)]
        res = assert_all_delivered(produce_and_wait(p, topic, [{"value": v, "partition": 0}
                                                               for v in values]))
        if acks != "0":
            assert [r.offset for r in res] == list(range(len(expected), len(expected) + 50))
        expected += values
    got = consume_partitions(broker.bootstrap, topic, {0: len(expected)})
    assert [m.value() for m in got[0]] == expected
    assert [m.offset() for m in got[0]] == list(range(len(expected)))


def test_record_near_max_message_bytes(broker, topic):
    create_topic(broker.bootstrap, topic)
    assert describe_topic_configs(broker.bootstrap, topic)["max.message.bytes"].value == \
        "1048588"
    # Raise the client's own limit so the broker, not librdkafka, does the rejecting.
    p = producer(broker.bootstrap, acks="all", **{"message.max.bytes": 4_000_000,
                                                 "compression.type": "none",
                                                 "linger.ms": 0})
    big = os.urandom(1_000_000)
    (ok,) = produce_and_wait(p, topic, [{"value": big, "key": b"big", "partition": 0}])
    assert not isinstance(ok, KafkaError), f"1,000,000-byte record rejected: {ok}"
    assert ok.offset == 0
    (too_big,) = produce_and_wait(p, topic, [{"value": os.urandom(1_100_000), "partition": 0}])
    assert isinstance(too_big, KafkaError), "a 1,100,000-byte record was accepted"
    assert too_big.code() == KafkaError.MSG_SIZE_TOO_LARGE, too_big
    (after,) = assert_all_delivered(produce_and_wait(p, topic, [{"value": b"x",
                                                                 "partition": 0}]))
    assert after.offset == 1, "the rejected record took an offset"
    got = consume_partitions(broker.bootstrap, topic, {0: 2})
    assert got[0][0].value() == big and got[0][0].key() == b"big"
    assert got[0][1].value() == b"x"


def test_topic_max_message_bytes_is_enforced(broker, topic):
    create_topic(broker.bootstrap, topic, config={"max.message.bytes": "20000"})
    p = producer(broker.bootstrap, acks="all", **{"compression.type": "none", "linger.ms": 0})
    (ok,) = produce_and_wait(p, topic, [{"value": os.urandom(15_000), "partition": 0}])
    assert not isinstance(ok, KafkaError), ok
    (bad,) = produce_and_wait(p, topic, [{"value": os.urandom(30_000), "partition": 0}])
    assert isinstance(bad, KafkaError) and bad.code() == KafkaError.MSG_SIZE_TOO_LARGE, bad


def test_fetch_returns_oversized_first_batch_kip74(broker, topic):
    """A consumer whose fetch limits are smaller than a record still makes progress."""
    create_topic(broker.bootstrap, topic)
    values = [os.urandom(50_000) for _ in range(3)]
    p = producer(broker.bootstrap, acks="all", **{"compression.type": "none", "linger.ms": 0})
    for v in values:
        assert_all_delivered(produce_and_wait(p, topic, [{"value": v, "partition": 0}]))
    got = consume_partitions(broker.bootstrap, topic, {0: 3}, timeout=30, **{
        "fetch.max.bytes": 1000, "max.partition.fetch.bytes": 1000,
        "message.max.bytes": 1000})
    assert [m.value() for m in got[0]] == values


def test_fetch_from_the_middle_of_a_batch(broker, topic):
    create_topic(broker.bootstrap, topic)
    # One produce burst with a long linger: librdkafka packs these into one batch.
    p = producer(broker.bootstrap, acks="all", **{"linger.ms": 500, "compression.type": "lz4"})
    values = [f"mid-{i}".encode() for i in range(100)]
    assert_all_delivered(produce_and_wait(p, topic, [{"value": v, "partition": 0}
                                                     for v in values]))
    got = consume_partitions(broker.bootstrap, topic, {0: 100}, start=57)
    assert [m.offset() for m in got[0]] == list(range(57, 100))
    assert [m.value() for m in got[0]] == values[57:]


def test_log_append_time_topic(broker, topic):
    create_topic(broker.bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    p = producer(broker.bootstrap, acks="all")
    before = int(time.time() * 1000)
    assert_all_delivered(produce_and_wait(p, topic, [
        {"value": b"x", "partition": 0, "timestamp": 1_000_000_000_000}]))
    after = int(time.time() * 1000)
    (m,) = consume_partitions(broker.bootstrap, topic, {0: 1})[0]
    ts_type, ts = m.timestamp()
    assert ts_type == confluent_kafka.TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= after + 1000, (before, ts, after)


# --- offsets ----------------------------------------------------------------------------


def lookup_offsets(bootstrap: str, topic: str, timestamps: list[int]) -> list[int]:
    c = consumer(bootstrap)
    try:
        out = []
        for ts in timestamps:
            (tp,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert tp.error is None, tp.error
            out.append(tp.offset)
        return out
    finally:
        c.close()


def test_offsets_for_times_one_batch_per_record(broker, topic):
    create_topic(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 600_000
    p = producer(broker.bootstrap, acks="all", **{"linger.ms": 0})
    for i in range(10):
        assert_all_delivered(produce_and_wait(p, topic, [
            {"value": f"t{i}".encode(), "partition": 0, "timestamp": base + i * 1000}]))
    got = consume_partitions(broker.bootstrap, topic, {0: 10})[0]
    assert [m.timestamp() for m in got] == [(confluent_kafka.TIMESTAMP_CREATE_TIME,
                                             base + i * 1000) for i in range(10)]
    queries = [base - 5000, base, base + 1, base + 2500, base + 3000, base + 9000,
               base + 9001, base + 10 ** 9]
    assert lookup_offsets(broker.bootstrap, topic, queries) == [0, 0, 1, 3, 3, 9, -1, -1]


def test_offsets_for_times_inside_one_batch(broker, topic):
    """Kafka answers with the first *record* whose timestamp >= t, even inside a batch."""
    create_topic(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 600_000
    p = producer(broker.bootstrap, acks="all", **{"linger.ms": 500})
    assert_all_delivered(produce_and_wait(p, topic, [
        {"value": f"t{i}".encode(), "partition": 0, "timestamp": base + i * 1000}
        for i in range(10)]))
    queries = [base, base + 2500, base + 3000, base + 9000, base + 9001]
    assert lookup_offsets(broker.bootstrap, topic, queries) == [0, 3, 3, 9, -1]


def test_watermarks_and_list_offsets(broker, topic):
    create_topic(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 60_000
    # Record 7 carries the largest timestamp (KIP-734 max-timestamp lookup).
    stamps = [base + i for i in range(20)]
    stamps[7] = base + 50_000
    p = producer(broker.bootstrap, acks="all", **{"linger.ms": 0})
    for i, ts in enumerate(stamps):
        assert_all_delivered(produce_and_wait(p, topic, [
            {"value": f"w{i}".encode(), "partition": 0, "timestamp": ts}]))
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 20)
    finally:
        c.close()
    from confluent_kafka.admin import OffsetSpec
    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    for spec, want in [(OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 20),
                       (OffsetSpec.max_timestamp(), 7)]:
        res = a.list_offsets({tp: spec})[tp].result(timeout=30)
        assert res.offset == want, f"{spec}: got {res.offset}, expected {want}"
    res = a.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result(timeout=30)
    assert res.timestamp == base + 50_000


def test_delete_records_moves_log_start_offset(broker, topic):
    a = admin(broker.bootstrap)
    if not hasattr(a, "delete_records"):
        pytest.skip("this confluent-kafka has no AdminClient.delete_records (needs >= 2.4)")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, acks="all")
    assert_all_delivered(produce_and_wait(p, topic, [{"value": f"d{i}".encode(),
                                                      "partition": 0} for i in range(20)]))
    tp = TopicPartition(topic, 0, 5)
    res = a.delete_records([tp])
    (fut,) = res.values()
    deleted = fut.result(timeout=30)
    assert deleted.low_watermark == 5
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (5, 20)
    finally:
        c.close()
    # Reading from the beginning starts at the new log start offset; reading below it is
    # out of range and (auto.offset.reset=earliest) lands there too.
    for start in (confluent_kafka.OFFSET_BEGINNING, 2):
        got = consume_partitions(broker.bootstrap, topic, {0: 20}, start=start)[0]
        assert [m.offset() for m in got] == list(range(5, 20)), f"start={start}"
        assert [m.value() for m in got] == [f"d{i}".encode() for i in range(5, 20)]


# --- consumer groups --------------------------------------------------------------------


def test_commit_metadata_roundtrip(broker, topic):
    create_topic(broker.bootstrap, topic)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 5, "checkpoint-a")], asynchronous=False)
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        assert (tp.offset, tp.metadata, tp.error) == (5, "checkpoint-a", None)
    finally:
        c.close()


def test_subscribe_consume_commit_resume(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap, acks="all")
    first = [{"value": f"a{i}".encode(), "partition": i % 2} for i in range(20)]
    assert_all_delivered(produce_and_wait(p, topic, first))
    group = f"g-{uuid.uuid4().hex[:8]}"

    def read_group(n):
        c = consumer(broker.bootstrap, **{"group.id": group, "enable.partition.eof": False,
                                           "session.timeout.ms": 10_000})
        try:
            c.subscribe([topic])
            got = []
            deadline = time.monotonic() + 60
            while len(got) < n:
                assert time.monotonic() < deadline, f"group read {len(got)} of {n}"
                m = c.poll(0.5)
                if m is None:
                    continue
                assert m.error() is None, m.error()
                got.append(m.value())
            # Nothing beyond n arrives.
            extra = c.poll(2.0)
            assert extra is None or extra.error() is not None, extra.value()
            c.commit(asynchronous=False)
            return got
        finally:
            c.close()

    assert sorted(read_group(20)) == sorted(m["value"] for m in first)
    second = [{"value": f"b{i}".encode(), "partition": i % 2} for i in range(6)]
    assert_all_delivered(produce_and_wait(p, topic, second))
    assert sorted(read_group(6)) == sorted(m["value"] for m in second)
