"""Bad input on the Kafka port, sent over raw sockets (docs/architecture.md §8).

Every case ends by checking that the broker process is still running and that a fresh
confluent-kafka client can still create a topic, produce and consume: one bad
connection must never take the broker (or other clients) down.
"""
from __future__ import annotations

import random
import socket
import time

import pytest

from confluent_kafka import TopicPartition

import kafka_wire as w
from helpers import assert_broker_healthy, consume_partitions, consumer, create_topic

MiB = 1 << 20


def still_serving(broker) -> None:
    assert broker.alive(), f"broker died (exit status {broker.proc.returncode})"
    assert_broker_healthy(broker.bootstrap)
    assert broker.alive(), "broker died during the health check"


def vm_peak_kb(broker) -> int | None:
    return broker.proc_status("VmPeak")


def warm_up(broker) -> None:
    """One normal request first, so lazily started threads and allocator arenas do not
    count as growth caused by the bad input."""
    with w.connect(broker.bootstrap) as s:
        corr, _ = w.roundtrip(s, w.api_versions_request(0, 1))
        assert corr == 1


def test_random_bytes(fresh_broker):
    rng = random.Random(20240611)
    # Unframed garbage: the first 4 bytes are read as some size, the rest as whatever.
    for n in (1, 3, 7, 64, 4096, 65536):
        with w.connect(fresh_broker.bootstrap) as s:
            w.send_all(s, rng.randbytes(n))
            w.wait_closed(s, 0.3)
    # Correctly framed garbage, half of it with a plausible API key and version so the
    # body decoders of real APIs get exercised.
    for i in range(60):
        body = rng.randbytes(rng.choice([0, 1, 2, 5, 8, 13, 40, 300, 5000]))
        if i % 2:
            body = (w.int16(rng.randrange(0, 70)) + w.int16(rng.randrange(0, 13))
                    + w.int32(i) + body)
        with w.connect(fresh_broker.bootstrap) as s:
            w.send_all(s, w.frame(body))
            w.wait_closed(s, 0.2)
    still_serving(fresh_broker)


@pytest.mark.parametrize("size", [-1, -2**31, -100])
def test_negative_frame_size_closes_connection(fresh_broker, size):
    with w.connect(fresh_broker.bootstrap) as s:
        w.send_all(s, w.int32(size) + b"\x00" * 16)
        closed, got = w.wait_closed(s, 5)
        assert closed, "connection left open after a negative frame size"
        assert got == b"", f"broker answered a negative-size frame with {got[:64]!r}"
    still_serving(fresh_broker)


@pytest.mark.parametrize("size", [2**31 - 1, 1 << 30, 100 * MiB + 1])
def test_huge_frame_size_closes_without_allocating(fresh_broker, size):
    warm_up(fresh_broker)
    peak_before = vm_peak_kb(fresh_broker)
    with w.connect(fresh_broker.bootstrap) as s:
        # Announce a huge frame, then start sending it: the broker must refuse on the
        # size alone (default limit 100 MiB), not buffer or wait for the rest.
        w.send_all(s, w.int32(size) + w.request_header(w.API_VERSIONS, 0, 1) + b"\x00" * 4096)
        closed, got = w.wait_closed(s, 5)
        assert closed, f"connection still open 5s after announcing a {size}-byte frame"
        assert got == b""
    peak_after = vm_peak_kb(fresh_broker)
    if size >= 1 << 30 and peak_before is not None and peak_after is not None:
        grew = (peak_after - peak_before) * 1024
        # An allocation of the announced size shows up in the peak virtual size even if
        # the pages were never touched (smaller sizes would drown in allocator noise).
        assert grew < 512 * MiB, \
            f"broker's peak virtual memory grew by {grew >> 20} MiB for a {size >> 20} MiB frame"
    still_serving(fresh_broker)


@pytest.mark.parametrize("api_key", [32000, 999, -1])
def test_unknown_api_key(fresh_broker, api_key):
    with w.connect(fresh_broker.bootstrap) as s:
        w.send_all(s, w.frame(w.request_header(api_key, 0, 4242) + b"\x00" * 8))
        kind, payload = w.response_or_close(s, 10)
        if kind == "response":
            corr, body = w.split_response(payload)
            assert corr == 4242, f"response to an unknown API carries correlation id {corr}"
    still_serving(fresh_broker)


@pytest.mark.parametrize("version", [99, 32767])
def test_api_versions_unsupported_version(fresh_broker, version):
    with w.connect(fresh_broker.bootstrap) as s:
        corr, body = w.roundtrip(s, w.api_versions_request(version, 77))
        assert corr == 77
        # Answered as v0, whatever version was asked for.
        r = w.parse_api_versions_response(body, 0)
        assert r.error_code == w.UNSUPPORTED_VERSION, f"error code {r.error_code}, expected 35"
        assert r.trailing == 0, \
            f"{r.trailing} bytes after the v0 body: the error response is not encoded as v0"
        assert w.API_VERSIONS in r.api_keys, \
            f"UNSUPPORTED_VERSION response lacks the ApiVersions range: {r.api_keys}"
        lo, hi = r.api_keys[w.API_VERSIONS]
        assert lo == 0 and 3 <= hi < version, (lo, hi)
        # A client (librdkafka does) now retries on the same connection with the highest
        # version the broker named. That must work.
        retry = min(hi, 3)
        corr, body = w.roundtrip(s, w.api_versions_request(retry, 78))
        assert corr == 78
        r2 = w.parse_api_versions_response(body, retry)
        assert r2.error_code == 0 and w.PRODUCE in r2.api_keys
    still_serving(fresh_broker)


# v2 is advertised (Kafka 4's quirk, see test_produce_is_advertised_from_v0) but refused.
@pytest.mark.parametrize("version", [99, -1, 2])
def test_unsupported_produce_version(fresh_broker, topic, version):
    create_topic(fresh_broker.bootstrap, topic)
    batch = w.encode_record_batch([w.Record(None, b"should-not-land")],
                                  int(time.time() * 1000))
    body = (w.nullable_string(None) + w.int16(-1) + w.int32(5000) + w.int32(1)
            + w.string(topic) + w.int32(1) + w.int32(0) + w.nullable_bytes(batch))
    hdr = w.request_header(w.PRODUCE, version, 555, flexible=version >= 9)
    with w.connect(fresh_broker.bootstrap) as s:
        w.send_all(s, w.frame(hdr + body))
        kind, payload = w.response_or_close(s, 10)
        if kind == "response":
            corr, _ = w.split_response(payload)
            assert corr == 555
    # Nothing was appended.
    c = consumer(fresh_broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0)
    finally:
        c.close()
    still_serving(fresh_broker)


def test_truncated_frame_then_close(fresh_broker):
    req = w.frame(w.metadata_request_v1(9, None))
    for cut in (1, 3, 4, 6, len(req) - 1):
        with w.connect(fresh_broker.bootstrap) as s:
            w.send_all(s, req[:cut])
    # A connection that stops mid-frame and stays open must not block anyone else.
    with w.connect(fresh_broker.bootstrap) as stuck:
        w.send_all(stuck, w.int32(1000) + b"\x00" * 10)
        still_serving(fresh_broker)
    still_serving(fresh_broker)


def test_array_counts_larger_than_the_frame(fresh_broker):
    """Counts inside a request that promise more than the frame holds: the decoder must
    fail on the short read, not reserve memory for the promised elements."""
    warm_up(fresh_broker)
    peak_before = vm_peak_kb(fresh_broker)
    cases = [
        # Metadata v1 with 2^31-1 topics announced and none present.
        w.request_header(w.METADATA, 1, 1) + w.int32(2**31 - 1),
        # Produce v3 whose records field claims 2 GiB.
        w.request_header(w.PRODUCE, 3, 2) + w.nullable_string(None) + w.int16(1)
        + w.int32(1000) + w.int32(1) + w.string("t") + w.int32(1) + w.int32(0)
        + w.int32(2**31 - 1) + b"\x00" * 16,
        # Produce v3 with 2^31-1 topics.
        w.request_header(w.PRODUCE, 3, 3) + w.nullable_string(None) + w.int16(1)
        + w.int32(1000) + w.int32(2**31 - 1),
        # A string length beyond the frame.
        w.request_header(w.METADATA, 1, 4) + w.int32(1) + w.int16(32767) + b"abc",
    ]
    for payload in cases:
        with w.connect(fresh_broker.bootstrap) as s:
            w.send_all(s, w.frame(payload))
            kind, resp = w.response_or_close(s, 10)
            if kind == "response":
                corr, _ = w.split_response(resp)
                assert corr == w.Reader(payload[4:8]).int32()
    peak_after = vm_peak_kb(fresh_broker)
    if peak_before is not None and peak_after is not None:
        assert (peak_after - peak_before) * 1024 < 512 * MiB, \
            f"peak virtual memory grew by {(peak_after - peak_before) >> 10} MiB"
    still_serving(fresh_broker)


def produce_raw(s, topic: str, batch: bytes, corr: int, partition: int = 0):
    corr_back, body = w.roundtrip(s, w.produce_request_v3(corr, topic, partition, batch,
                                                          acks=-1))
    assert corr_back == corr
    results, _, trailing = w.parse_produce_v3_response(body)
    assert trailing == 0
    assert [(r.topic, r.partition) for r in results] == [(topic, partition)], results
    return results[0]


def test_corrupt_batches_are_rejected_per_partition(fresh_broker, topic):
    create_topic(fresh_broker.bootstrap, topic)
    now = int(time.time() * 1000)
    good = [w.Record(b"k", f"good-{i}".encode()) for i in range(3)]
    with w.connect(fresh_broker.bootstrap) as s:
        r = produce_raw(s, topic, w.encode_record_batch(good, now), 1)
        assert (r.error_code, r.base_offset) == (0, 0), r

        valid = w.encode_record_batch([w.Record(b"k", b"corrupt")], now)
        bad_crc = w.encode_record_batch([w.Record(b"k", b"corrupt")], now,
                                        crc_override=w.batch_crc(valid) ^ 0x5A5A5A5A)
        r = produce_raw(s, topic, bad_crc, 2)
        assert r.error_code == w.CORRUPT_MESSAGE, \
            f"batch with a wrong CRC: error {r.error_code}, expected CORRUPT_MESSAGE (2)"

        # A flipped bit in the records, CRC left as it was.
        flipped = bytearray(valid)
        flipped[-3] ^= 0x01
        r = produce_raw(s, topic, bytes(flipped), 3)
        assert r.error_code == w.CORRUPT_MESSAGE, f"bit flip: error {r.error_code}"

        # Structural lies with a CRC that matches them.
        two = w.encode_record_batch([w.Record(None, b"a"), w.Record(None, b"b")], now)
        count_lie = bytearray(two)
        count_lie[57:61] = w.int32(5)  # record count field
        count_lie[17:21] = w.uint32(w.crc32c(bytes(count_lie[21:])))
        r = produce_raw(s, topic, bytes(count_lie), 4)
        assert r.error_code in (w.CORRUPT_MESSAGE, w.INVALID_RECORD), \
            f"record count lie: error {r.error_code}"

        length_lie = bytearray(valid)
        length_lie[8:12] = w.int32(len(valid) - 12 + 100)  # batchLength beyond the data
        r = produce_raw(s, topic, bytes(length_lie), 5)
        assert r.error_code in (w.CORRUPT_MESSAGE, w.INVALID_RECORD), \
            f"batch length lie: error {r.error_code}"

        bad_magic = bytearray(valid)
        bad_magic[16] = 7
        r = produce_raw(s, topic, bytes(bad_magic), 6)
        assert r.error_code != 0, "batch with magic 7 accepted"

        # The same connection still works, and none of the bad batches took an offset.
        r = produce_raw(s, topic, w.encode_record_batch([w.Record(b"k", b"good-3")], now), 7)
        assert (r.error_code, r.base_offset) == (0, 3), r

        # A partition that does not exist.
        r = produce_raw(s, topic, w.encode_record_batch([w.Record(None, b"x")], now), 8,
                        partition=7)
        assert r.error_code == 3, f"unknown partition: error {r.error_code}, expected 3"

    got = consume_partitions(fresh_broker.bootstrap, topic, {0: 4})[0]
    assert [(m.offset(), m.value()) for m in got] == \
        [(i, f"good-{i}".encode()) for i in range(4)]
    still_serving(fresh_broker)


def test_slowloris_does_not_block_others(fresh_broker):
    """Many idle connections and one that dribbles a request byte by byte."""
    idle = [w.connect(fresh_broker.bootstrap) for _ in range(50)]
    try:
        with w.connect(fresh_broker.bootstrap) as slow:
            req = w.frame(w.api_versions_request(0, 31))
            for b in req[:-1]:
                w.send_all(slow, bytes([b]))
                time.sleep(0.002)
            still_serving(fresh_broker)
            w.send_all(slow, req[-1:])
            corr, body = w.split_response(w.read_frame(slow, 10))
            assert corr == 31 and w.parse_api_versions_response(body, 0).error_code == 0
    finally:
        for s in idle:
            try:
                s.close()
            except OSError:
                pass
    still_serving(fresh_broker)


def test_client_reset_mid_request(fresh_broker, topic):
    create_topic(fresh_broker.bootstrap, topic)
    batch = w.encode_record_batch([w.Record(None, b"x" * 100_000)], int(time.time() * 1000))
    req = w.frame(w.produce_request_v3(1, topic, 0, batch))
    for _ in range(5):
        s = w.connect(fresh_broker.bootstrap)
        w.send_all(s, req[: len(req) // 2])
        # RST instead of FIN.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    still_serving(fresh_broker)
