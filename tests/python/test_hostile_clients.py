"""Hostile and careless clients all at once, against one `spate dev` broker, while a
well-behaved producer and consumer keep working:

- greedy librdkafka consumers asking for the largest fetch sizes librdkafka allows,
  reading a large partition over and over;
- raw connections that pipeline huge fetches and never read the answers;
- connections that announce a frame and trickle it in (slowloris) or send nothing;
- Metadata requests listing millions of empty topic names (tiny on the wire, huge
  decoded).

The test checks what must hold whatever the machine: every probe record is acknowledged
and consumed, the hostile element-count requests are refused by closing their connection,
and the broker is alive at the end. It reports the broker's peak RSS and the probe's
produce p99 (printed, and written as JSON to $SPATE_HOSTILE_OUT if set); the figures in
docs/benchmarks.md come from a release build with larger settings:

    SPATE_BIN=target/release/spate SPATE_HOSTILE_MB=256 SPATE_HOSTILE_GREEDY=16 \\
    SPATE_HOSTILE_SECONDS=30 SPATE_HOSTILE_OUT=out.json \\
    .venv/bin/pytest tests/python/test_hostile_clients.py -s
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time

from confluent_kafka import KafkaError

import kafka_wire as kw
from helpers import consumer, create_topic, producer

MB = int(os.environ.get("SPATE_HOSTILE_MB", "32"))
GREEDY = int(os.environ.get("SPATE_HOSTILE_GREEDY", "4"))
SECONDS = float(os.environ.get("SPATE_HOSTILE_SECONDS", "12"))
SLOWLORIS = int(os.environ.get("SPATE_HOSTILE_SLOWLORIS", "100"))
NON_READERS = int(os.environ.get("SPATE_HOSTILE_NON_READERS", "4"))
FETCH = 1


def fetch_request_v4(correlation_id: int, topic: str, offset: int) -> bytes:
    """Fetch v4 for one partition asking for everything (i32::MAX bytes)."""
    body = (kw.int32(-1) + kw.int32(500) + kw.int32(1) + kw.int32(2**31 - 1) + kw.int8(0)
            + kw.int32(1) + kw.string(topic)
            + kw.int32(1) + kw.int32(0) + kw.int64(offset) + kw.int32(2**31 - 1))
    return kw.request_header(FETCH, 4, correlation_id) + body


def empty_names_metadata(names: int) -> bytes:
    """Metadata v1 naming `names` empty topics: two bytes each on the wire."""
    return kw.frame(kw.request_header(kw.METADATA, 1, 1) + kw.int32(names) + b"\0\0" * names)


def fill(bootstrap: str, topic: str, megabytes: int) -> None:
    p = producer(bootstrap, **{"acks": "1", "linger.ms": 20, "batch.size": 1_000_000,
                               "compression.type": "none"})
    value = os.urandom(16 * 1024)
    for _ in range(megabytes * 64):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(120) == 0


class Hostiles:
    """Runs every hostile client until `stop` is set; each loop is bounded by it."""

    def __init__(self, bootstrap: str, host: str, port: int, topic: str):
        self.bootstrap, self.addr, self.topic = bootstrap, (host, port), topic
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.refused_metadata = 0
        self.greedy_bytes = 0
        self.lock = threading.Lock()

    def start(self) -> None:
        targets = ([self.greedy] * GREEDY + [self.non_reader] * NON_READERS
                   + [self.slowloris_pack, self.element_bomb])
        for t in targets:
            th = threading.Thread(target=t, daemon=True)
            th.start()
            self.threads.append(th)

    def join(self) -> None:
        self.stop.set()
        for th in self.threads:
            th.join(timeout=30)

    def greedy(self) -> None:
        c = consumer(self.bootstrap, **{
            "fetch.max.bytes": 2147483135, "max.partition.fetch.bytes": 1_000_000_000,
            "receive.message.max.bytes": 2147483647, "fetch.wait.max.ms": 500,
            "queued.max.messages.kbytes": 2097151, "enable.partition.eof": False})
        c.subscribe([self.topic])
        try:
            while not self.stop.is_set():
                for m in c.consume(num_messages=1000, timeout=0.5):
                    if m.error() is None:
                        with self.lock:
                            self.greedy_bytes += len(m.value())
        finally:
            c.close()

    def non_reader(self) -> None:
        """Pipelines 50 fetches of everything and never reads an answer."""
        try:
            s = socket.create_connection(self.addr, timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            for i in range(50):
                s.sendall(kw.frame(fetch_request_v4(i + 1, self.topic, 0)))
        except OSError:
            return
        self.stop.wait()
        s.close()

    def slowloris_pack(self) -> None:
        socks = []
        for i in range(SLOWLORIS):
            try:
                s = socket.create_connection(self.addr, timeout=5)
                if i % 2 == 0:
                    s.sendall(kw.int32(1000))  # a frame announced, trickled below
                socks.append(s)
            except OSError:
                break
        while not self.stop.wait(1.0):
            for s in socks[::2]:
                try:
                    s.sendall(b"\0")
                except OSError:
                    pass
        for s in socks:
            s.close()

    def element_bomb(self) -> None:
        bomb = empty_names_metadata(2_500_000)
        while not self.stop.is_set():
            try:
                s = socket.create_connection(self.addr, timeout=10)
                s.sendall(bomb)
                if s.recv(1) == b"":
                    with self.lock:
                        self.refused_metadata += 1
                s.close()
            except OSError:
                pass
            self.stop.wait(0.5)


def probe(bootstrap: str, topic: str, seconds: float) -> tuple[list[float], int]:
    """A well-behaved acks=all producer: one record every 20 ms; returns the produce
    latencies (seconds) and how many records were acknowledged."""
    p = producer(bootstrap, **{"acks": "all", "linger.ms": 0})
    latencies: list[float] = []
    errors: list[KafkaError] = []

    def done(err, _msg, sent=None):
        if err is not None:
            errors.append(err)
        else:
            latencies.append(time.monotonic() - sent)

    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        sent = time.monotonic()
        p.produce(topic, f"probe-{n}".encode(),
                  on_delivery=lambda e, m, sent=sent: done(e, m, sent))
        n += 1
        p.poll(0.02)
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    return latencies, n


def test_a_well_behaved_client_is_served_while_hostile_clients_are_bounded(fresh_broker):
    b = fresh_broker
    big, probe_topic = "hostile-big", "hostile-probe"
    create_topic(b.bootstrap, big)
    create_topic(b.bootstrap, probe_topic)
    fill(b.bootstrap, big, MB)
    rss_before = b.proc_status("VmRSS")

    hostiles = Hostiles(b.bootstrap, b.host, b.port, big)
    peak = [0]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.25):
            peak[0] = max(peak[0], b.proc_status("VmRSS") or 0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    hostiles.start()
    try:
        latencies, sent = probe(b.bootstrap, probe_topic, SECONDS)
    finally:
        hostiles.join()
        sampling.set()
        sampler.join(timeout=5)
    assert b.alive(), b.log_text()

    # Everything the probe sent was acknowledged (probe() asserts no errors) and can be
    # read back in order.
    c = consumer(b.bootstrap)
    c.subscribe([probe_topic])
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < sent and time.monotonic() < deadline:
        for m in c.consume(num_messages=500, timeout=1.0):
            if m.error() is None:
                seen.append(m.value())
    c.close()
    assert seen == [f"probe-{i}".encode() for i in range(sent)]
    assert hostiles.refused_metadata > 0, "the element-count bombs were refused"

    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    result = {
        "partition_mb": MB, "greedy_consumers": GREEDY, "non_readers": NON_READERS,
        "slowloris": SLOWLORIS, "seconds": SECONDS,
        "rss_before_hostiles_kib": rss_before, "rss_peak_kib": peak[0],
        "vm_hwm_kib": b.proc_status("VmHWM"),
        "probe_records": sent, "probe_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "probe_p99_ms": round(p99 * 1000, 2),
        "greedy_mb_read": round(hostiles.greedy_bytes / 2**20, 1),
        "metadata_bombs_refused": hostiles.refused_metadata,
    }
    print("hostile clients:", json.dumps(result))
    out = os.environ.get("SPATE_HOSTILE_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=2)
