"""kcat (librdkafka's command-line client) against spate: metadata, produce, consume."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(
    KCAT is None, reason="kcat/kafkacat not installed (apt-get install kcat; .ci/run does)")


def kcat(broker, *args, stdin: str | None = None, timeout: float = 60) -> str:
    cmd = [KCAT, "-b", broker.bootstrap, "-X", "socket.timeout.ms=10000", *args]
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, \
        f"{' '.join(cmd)} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def produce(broker, topic, lines: list[str], *extra: str) -> None:
    kcat(broker, "-P", "-t", topic, "-p", "0", "-X", "message.timeout.ms=30000",
         "-X", "acks=all", *extra, stdin="".join(line + "\n" for line in lines))


def consume_json(broker, topic, *extra: str) -> list[dict]:
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-e", "-q", "-J", *extra)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_metadata_lists_exactly_one_broker(broker):
    md = json.loads(kcat(broker, "-L", "-J"))
    brokers = md["brokers"]
    assert len(brokers) == 1, brokers
    assert brokers[0]["name"] == broker.bootstrap, \
        f"broker advertised as {brokers[0]['name']}, clients use {broker.bootstrap}"
    assert md["controllerid"] == brokers[0]["id"]


def test_metadata_for_topic(broker, topic):
    produce(broker, topic, ["x"])
    md = json.loads(kcat(broker, "-L", "-J", "-t", topic))
    (t,) = md["topics"]
    assert t["topic"] == topic
    assert "error" not in t, t
    (p,) = t["partitions"]
    bid = md["brokers"][0]["id"]
    assert (p["partition"], p["leader"]) == (0, bid)
    assert [r["id"] for r in p["replicas"]] == [bid]
    assert [r["id"] for r in p["isrs"]] == [bid]


def test_produce_and_consume_keys_in_order(broker, topic):
    lines = [f"key-{i}:value {i} with spaces" for i in range(25)]
    produce(broker, topic, lines, "-K:")
    msgs = consume_json(broker, topic, "-o", "beginning")
    assert [(m["offset"], m["key"], m["payload"]) for m in msgs] == \
        [(i, f"key-{i}", f"value {i} with spaces") for i in range(25)]
    assert all(m["partition"] == 0 and m["tstype"] == "create" for m in msgs)

    # The plain formatter agrees.
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-e", "-q", "-o", "beginning",
               "-f", "%k=%s@%o\\n")
    assert out.splitlines() == [f"key-{i}=value {i} with spaces@{i}" for i in range(25)]


def test_headers(broker, topic):
    produce(broker, topic, ["k1:v1", "k2:v2"], "-K:", "-H", "trace=abc", "-H", "n=1",
            "-H", "n=2")
    msgs = consume_json(broker, topic, "-o", "beginning")
    assert len(msgs) == 2
    for m in msgs:
        assert m["headers"] == ["trace", "abc", "n", "1", "n", "2"], m
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-e", "-q", "-o", "beginning",
               "-f", "%h|%s\\n")
    assert out.splitlines() == ["trace=abc,n=1,n=2|v1", "trace=abc,n=1,n=2|v2"]


def test_null_values_with_Z(broker, topic):
    produce(broker, topic, ["k0:", "k1:not-null", "k2:"], "-K:", "-Z")
    msgs = consume_json(broker, topic, "-o", "beginning")
    assert [(m["key"], m["payload"]) for m in msgs] == \
        [("k0", None), ("k1", "not-null"), ("k2", None)]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce(broker, topic, codec):
    lines = [f"{codec}-{i}-" + "abc" * i for i in range(40)]
    produce(broker, topic, lines, "-z", codec)
    msgs = consume_json(broker, topic, "-o", "beginning")
    assert [(m["offset"], m["payload"]) for m in msgs] == list(enumerate(lines))


def test_offsets(broker, topic):
    produce(broker, topic, [f"m{i}" for i in range(20)])
    def offsets(*args):
        return [(m["offset"], m["payload"]) for m in consume_json(broker, topic, *args)]
    assert offsets("-o", "5", "-c", "3") == [(5, "m5"), (6, "m6"), (7, "m7")]
    assert offsets("-o", "-3") == [(17, "m17"), (18, "m18"), (19, "m19")]
    assert offsets("-o", "beginning", "-c", "2") == [(0, "m0"), (1, "m1")]
    assert offsets("-o", "19") == [(19, "m19")]
    assert offsets("-o", "end") == []
    # Appending more keeps offsets going.
    produce(broker, topic, ["m20"])
    assert offsets("-o", "-1") == [(20, "m20")]


def test_start_at_timestamp(broker, topic):
    produce(broker, topic, ["early"])
    msgs = consume_json(broker, topic, "-o", "beginning")
    ts0 = msgs[0]["ts"]
    time.sleep(0.05)
    produce(broker, topic, ["late-1", "late-2"])
    later = consume_json(broker, topic, "-o", "beginning")
    ts_late = later[1]["ts"]
    assert ts_late > ts0
    assert [m["payload"] for m in consume_json(broker, topic, "-o", f"s@{ts_late}")] == \
        ["late-1", "late-2"]
