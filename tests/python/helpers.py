"""Shared helpers for the client tests (confluent-kafka based)."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# librdkafka's log goes to stderr by default; keep it, pytest captures it per test.
COMMON = {"socket.timeout.ms": 10_000}


def admin(bootstrap: str, **conf) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **COMMON, **conf})


def producer(bootstrap: str, **conf) -> Producer:
    base = {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 60_000,
            **COMMON}
    base.update(conf)
    return Producer(base)


def consumer(bootstrap: str, **conf) -> Consumer:
    base = {"bootstrap.servers": bootstrap,
            "group.id": f"spate-tests-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            **COMMON}
    base.update(conf)
    return Consumer(base)


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None,
                 timeout: float = 30, replication_factor: int = 1) -> None:
    a = admin(bootstrap)
    fut = a.create_topics([NewTopic(name, num_partitions=partitions,
                                    replication_factor=replication_factor,
                                    config=config or {})], operation_timeout=timeout)[name]
    fut.result(timeout=timeout)
    wait_for_topic(a, name, partitions, timeout)


def wait_for_topic(a: AdminClient, name: str, partitions: int, timeout: float = 30) -> None:
    """Wait until metadata shows the topic with all partitions led (creation propagates
    asynchronously, as in Kafka)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(timeout=10)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions and \
                all(p.leader >= 0 and p.error is None for p in t.partitions.values()):
            return
        last = t
        time.sleep(0.1)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions after "
                         f"{timeout}s; last metadata: {last and vars(last)}")


@dataclass
class Delivered:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list | None
    timestamp: int


def produce_and_wait(p: Producer, topic: str, messages: list[dict], timeout: float = 60
                     ) -> list[Delivered | KafkaError]:
    """Produce each message (dict of produce() kwargs) and return, in input order, the
    delivery result: Delivered on success, the KafkaError otherwise."""
    results: list = [None] * len(messages)

    def cb_for(i):
        def cb(err, msg):
            if err is not None:
                results[i] = err
            else:
                results[i] = Delivered(msg.partition(), msg.offset(), msg.key(), msg.value(),
                                       msg.headers(), msg.timestamp()[1])
        return cb

    for i, m in enumerate(messages):
        while True:
            try:
                p.produce(topic, on_delivery=cb_for(i), **m)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    missing = [i for i, r in enumerate(results) if r is None]
    assert not missing, f"no delivery report for messages {missing[:10]}"
    return results


def assert_all_delivered(results) -> list[Delivered]:
    errors = [(i, r) for i, r in enumerate(results) if isinstance(r, KafkaError)]
    assert not errors, f"{len(errors)} deliveries failed, first: {errors[:3]}"
    return results


def consume_partitions(bootstrap: str, topic: str, partitions: dict[int, int],
                       start: int | dict[int, int] = 0, timeout: float = 60, **conf):
    """Read partitions from `start` until each reaches its expected end offset
    (`partitions` maps partition -> end offset, exclusive). Returns {partition: [Message]}.
    Fails on any consumer error, and on any record beyond the expected end."""
    c = consumer(bootstrap, **conf)
    try:
        starts = {p: (start[p] if isinstance(start, dict) else start) for p in partitions}
        c.assign([TopicPartition(topic, p, starts[p]) for p in partitions])
        got: dict[int, list] = {p: [] for p in partitions}
        nxt = dict(starts)
        done = {p for p, end in partitions.items() if starts[p] >= end}
        deadline = time.monotonic() + timeout
        while len(done) < len(partitions):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out reading {topic}: next offsets {nxt}, expected ends "
                    f"{partitions}")
            for m in c.consume(num_messages=500, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consumer error on {topic}: {err}")
                got[m.partition()].append(m)
                nxt[m.partition()] = m.offset() + 1
                if m.offset() >= partitions[m.partition()]:
                    raise AssertionError(
                        f"unexpected record at {topic}[{m.partition()}]@{m.offset()}, "
                        f"expected the partition to end at {partitions[m.partition()]}")
                if nxt[m.partition()] >= partitions[m.partition()]:
                    done.add(m.partition())
        return got
    finally:
        c.close()


def assert_broker_healthy(bootstrap: str, timeout: float = 60) -> None:
    """A fresh confluent-kafka client can still produce and consume on this broker."""
    name = f"health-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, name, partitions=1, timeout=timeout)
    p = producer(bootstrap, acks="all")
    values = [f"health-{i}".encode() for i in range(10)]
    res = assert_all_delivered(produce_and_wait(p, name, [{"value": v, "partition": 0}
                                                          for v in values], timeout))
    assert [r.offset for r in res] == list(range(10))
    got = consume_partitions(bootstrap, name, {0: 10}, timeout=timeout)
    assert [m.value() for m in got[0]] == values


def kafka_error_code(exc: BaseException) -> int | None:
    """The Kafka error code carried by an exception from a confluent-kafka future."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].code()
    return None
