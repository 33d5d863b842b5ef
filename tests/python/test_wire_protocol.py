"""Protocol details that real clients silently rely on, checked byte by byte over raw
sockets: ApiVersions layouts, Metadata v1, Produce v3, in-order responses, acks=0."""
from __future__ import annotations

import time

import confluent_kafka
from confluent_kafka import TopicPartition

import kafka_wire as w
from helpers import consume_partitions, consumer, create_topic

# APIs any Kafka client needs, with a version every current client can use.
REQUIRED = {w.PRODUCE: 3, w.FETCH: 4, w.LIST_OFFSETS: 1, w.METADATA: 1,
            w.API_VERSIONS: 3, w.CREATE_TOPICS: 2}


def test_api_versions_v0_to_v3(broker):
    seen = {}
    with w.connect(broker.bootstrap) as s:
        for version in range(4):
            corr, body = w.roundtrip(s, w.api_versions_request(version, 100 + version))
            assert corr == 100 + version
            r = w.parse_api_versions_response(body, version)
            assert r.error_code == 0, f"ApiVersions v{version}: error {r.error_code}"
            assert r.trailing == 0, f"ApiVersions v{version}: {r.trailing} stray bytes"
            if version >= 1:
                assert r.throttle_time_ms == 0
            for key, (lo, hi) in r.api_keys.items():
                assert 0 <= lo <= hi, f"api {key}: bad range {lo}..{hi}"
            for key, v in REQUIRED.items():
                assert key in r.api_keys, f"ApiVersions v{version} lacks api key {key}"
                lo, hi = r.api_keys[key]
                assert lo <= v <= hi, f"api {key}: range {lo}..{hi} excludes v{v}"
            seen[version] = r.api_keys
    assert seen[0] == seen[1] == seen[2] == seen[3], "versions disagree on the API list"


def test_produce_is_advertised_from_v0_as_kafka_4_does(broker):
    # Kafka 4 removed Produce v0-2 (KIP-896) yet still advertises them: older librdkafka
    # derives its message-format features from Produce's advertised range. The requests
    # themselves are refused (test_bad_input.test_unsupported_produce_version).
    with w.connect(broker.bootstrap) as s:
        _, body = w.roundtrip(s, w.api_versions_request(3, 7))
        r = w.parse_api_versions_response(body, 3)
        assert r.api_keys[w.PRODUCE] == (0, 12), r.api_keys[w.PRODUCE]


def test_metadata_v1(broker, topic):
    with w.connect(broker.bootstrap) as s:
        corr, body = w.roundtrip(s, w.metadata_request_v1(5, None))
        assert corr == 5
        md = w.parse_metadata_v1_response(body)
        assert md.trailing == 0
        assert len(md.brokers) == 1, md.brokers
        node_id, host, port, _rack = md.brokers[0]
        assert (host, port) == (broker.host, broker.port)
        assert md.controller_id == node_id

        # Naming an unknown topic in Metadata v1 auto-creates it (dev default: 1 partition).
        deadline = time.monotonic() + 15
        while True:
            corr, body = w.roundtrip(s, w.metadata_request_v1(6, [topic]))
            md = w.parse_metadata_v1_response(body)
            err, internal, parts = md.topics[topic]
            if err == 0 and parts and all(p[0] == 0 for p in parts.values()):
                break
            # LEADER_NOT_AVAILABLE (5) while the new topic settles is what Kafka does.
            assert err in (0, 5), f"metadata for auto-created topic: error {err}"
            assert time.monotonic() < deadline, f"topic not ready: {md.topics[topic]}"
            time.sleep(0.1)
        assert internal is False
        assert parts == {0: (0, node_id, [node_id], [node_id])}


def test_pipelined_requests_are_answered_in_order(broker, topic):
    """The Java client requires responses in request order on a connection."""
    create_topic(broker.bootstrap, topic)
    now = int(time.time() * 1000)
    reqs = []
    for i in range(12):
        corr = 1000 + i
        kind = i % 3
        if kind == 0:
            reqs.append(w.api_versions_request(i % 4, corr))
        elif kind == 1:
            reqs.append(w.metadata_request_v1(corr, [topic]))
        else:
            batch = w.encode_record_batch([w.Record(None, f"pipe-{i}".encode())], now)
            reqs.append(w.produce_request_v3(corr, topic, 0, batch, acks=-1))
    with w.connect(broker.bootstrap) as s:
        assert w.send_all(s, b"".join(w.frame(r) for r in reqs))
        got = [w.split_response(w.read_frame(s, 20))[0] for _ in reqs]
    assert got == [1000 + i for i in range(12)]


def test_produce_acks0_sends_no_response(broker, topic):
    create_topic(broker.bootstrap, topic)
    now = int(time.time() * 1000)
    with w.connect(broker.bootstrap) as s:
        for i in range(3):
            batch = w.encode_record_batch([w.Record(None, f"fire-{i}".encode())], now)
            assert w.send_all(s, w.frame(w.produce_request_v3(10 + i, topic, 0, batch,
                                                              acks=0)))
        corr, body = w.roundtrip(s, w.api_versions_request(0, 99))
        assert corr == 99, f"first response after acks=0 produces has correlation id " \
                           f"{corr}: the broker answered an acks=0 request"
    got = consume_partitions(broker.bootstrap, topic, {0: 3})[0]
    assert [m.value() for m in got] == [b"fire-0", b"fire-1", b"fire-2"]


def test_raw_batch_roundtrip_to_a_real_consumer(broker, topic):
    """A batch we encode by hand comes back intact through librdkafka: offsets, keys,
    null values, headers and per-record timestamps."""
    create_topic(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 10_000
    recs = [w.Record(b"k0", b"v0", [("a", b"1"), ("b", None)]),
            w.Record(None, b"v1", [], 10),
            w.Record(b"k2", None, [("c", b"")], 20),
            w.Record(b"k3", b"v3" * 1000, [], 30)]
    with w.connect(broker.bootstrap) as s:
        for attempt in range(2):
            corr, body = w.roundtrip(s, w.produce_request_v3(
                7 + attempt, topic, 0, w.encode_record_batch(recs, base), acks=1))
            assert corr == 7 + attempt
            (r,), _, _ = w.parse_produce_v3_response(body)
            assert (r.error_code, r.base_offset, r.log_append_time_ms) == \
                (0, 4 * attempt, -1), r
    got = consume_partitions(broker.bootstrap, topic, {0: 8})[0]
    for m in got:
        rec = recs[m.offset() % 4]
        assert (m.key(), m.value()) == (rec.key, rec.value), m.offset()
        assert (m.headers() or []) == rec.headers, m.offset()
        assert m.timestamp() == (confluent_kafka.TIMESTAMP_CREATE_TIME,
                                 base + rec.timestamp_delta)
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 8)
    finally:
        c.close()
