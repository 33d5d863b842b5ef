"""Offline checks of the hand-written wire encoders in kafka_wire.py (no broker needed).

The raw-socket tests are only as good as the bytes they send, so the encoders are checked
against a CRC-32C test vector and against kafka-python's schema-generated codec (built
from Kafka's own JSON message definitions): our requests must decode there to the same
fields, and responses that kafka-python encodes must decode here to the same fields.
"""
import pytest

import kafka_wire as w

kp_protocol = pytest.importorskip("kafka.protocol.metadata", reason="kafka-python >= 3 needed")
from kafka.protocol.metadata import (  # noqa: E402
    ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse)
from kafka.protocol.producer import ProduceRequest, ProduceResponse  # noqa: E402
from kafka.record.default_records import DefaultRecordBatch  # noqa: E402


def test_crc32c_known_vectors():
    # RFC 3720 B.4 / the usual check value of CRC-32C.
    assert w.crc32c(b"123456789") == 0xE3069283
    assert w.crc32c(b"") == 0
    assert w.crc32c(bytes(32)) == 0x8A9136AA
    assert w.crc32c(b"\xff" * 32) == 0x62A8AB43


@pytest.mark.parametrize("value,encoded", [
    (0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (63, b"\x7e"), (-64, b"\x7f"),
    (64, b"\x80\x01"), (300, b"\xd8\x04"), (-2**31, b"\xff\xff\xff\xff\x0f"),
])
def test_zigzag_varint(value, encoded):
    assert w.varint(value) == encoded


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions_request_matches_kafka_schema(version):
    ours = w.api_versions_request(version, correlation_id=7)
    theirs = ApiVersionsRequest.decode(ours, version=version, header=True)
    assert theirs.header.request_api_key == w.API_VERSIONS
    assert theirs.header.request_api_version == version
    assert theirs.header.correlation_id == 7
    assert theirs.header.client_id == w.CLIENT_ID
    if version >= 3:
        assert theirs.client_software_name == "spate-raw-tests"
        assert theirs.client_software_version == "1.0"
    # And byte-for-byte what kafka-python would send.
    kw = {"client_software_name": "spate-raw-tests", "client_software_version": "1.0"} \
        if version >= 3 else {}
    req = ApiVersionsRequest[version](**kw)
    req.with_header(7, w.CLIENT_ID)
    assert bytes(req.encode(header=True)) == ours


@pytest.mark.parametrize("topics", [None, [], ["a"], ["topic-1", "topic.2_x"]])
def test_metadata_v1_request_matches_kafka_schema(topics):
    ours = w.metadata_request_v1(3, topics)
    theirs = MetadataRequest.decode(ours, version=1, header=True)
    assert theirs.header.request_api_key == w.METADATA
    assert theirs.header.request_api_version == 1
    if topics is None:
        assert theirs.topics is None
    else:
        assert [t.name for t in theirs.topics] == topics


def _sample_records():
    return [
        w.Record(b"k0", b"v0", [("h", b"x"), ("null-header", None)]),
        w.Record(None, None, [], timestamp_delta=5),
        w.Record(b"k2", b"x" * 300, [], timestamp_delta=7),
    ]


def test_record_batch_and_produce_v3_match_kafka_schema():
    batch = w.encode_record_batch(_sample_records(), base_timestamp=1_700_000_000_000)
    ours = w.produce_request_v3(11, "topic-a", 2, batch, acks=-1, timeout_ms=5000)
    req = ProduceRequest.decode(ours, version=3, header=True)
    assert req.header.request_api_key == w.PRODUCE and req.header.request_api_version == 3
    assert req.header.correlation_id == 11
    assert req.transactional_id is None and req.acks == -1 and req.timeout_ms == 5000
    assert len(req.topic_data) == 1 and req.topic_data[0].name == "topic-a"
    (pd,) = req.topic_data[0].partition_data
    assert pd.index == 2 and bytes(pd.records) == batch

    rb = DefaultRecordBatch(batch)
    assert rb.validate_crc()
    assert (rb.magic, rb.base_offset, rb.last_offset_delta) == (2, 0, 2)
    assert (rb.first_timestamp, rb.max_timestamp) == (1_700_000_000_000, 1_700_000_000_007)
    assert (rb.producer_id, rb.producer_epoch, rb.base_sequence) == (-1, -1, -1)
    got = [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in rb]
    assert got == [
        (0, 1_700_000_000_000, b"k0", b"v0", [("h", b"x"), ("null-header", None)]),
        (1, 1_700_000_000_005, None, None, []),
        (2, 1_700_000_000_007, b"k2", b"x" * 300, []),
    ]
    # batchLength covers everything after the length field.
    assert int.from_bytes(batch[8:12], "big") == len(batch) - 12


def test_corrupt_crc_is_detected_by_a_real_decoder():
    batch = w.encode_record_batch(_sample_records(), base_timestamp=1_700_000_000_000)
    bad = w.encode_record_batch(_sample_records(), base_timestamp=1_700_000_000_000,
                                crc_override=w.batch_crc(batch) ^ 0xDEADBEEF)
    assert len(bad) == len(batch) and bad != batch
    assert bad[21:] == batch[21:]  # only the CRC differs
    assert not DefaultRecordBatch(bad).validate_crc()


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions_response_decoder(version):
    keys = [(0, 3, 9), (1, 4, 12), (18, 0, 3)]
    resp = ApiVersionsResponse[version](
        error_code=0,
        api_keys=[ApiVersionsResponse.ApiVersion(api_key=k, min_version=lo, max_version=hi)
                  for k, lo, hi in keys],
        throttle_time_ms=25)
    resp.with_header(5)
    payload = bytes(resp.encode(header=True))
    corr, body = w.split_response(payload)
    assert corr == 5
    parsed = w.parse_api_versions_response(body, version)
    assert parsed.error_code == 0
    assert parsed.api_keys == {k: (lo, hi) for k, lo, hi in keys}
    assert parsed.throttle_time_ms == (None if version == 0 else 25)
    assert parsed.trailing == 0


def test_metadata_v1_response_decoder():
    R = MetadataResponse
    resp = R[1](
        brokers=[R.MetadataResponseBroker(node_id=1, host="127.0.0.1", port=9092, rack=None)],
        controller_id=1,
        topics=[R.MetadataResponseTopic(
            error_code=0, name="t", is_internal=False,
            partitions=[R.MetadataResponseTopic.MetadataResponsePartition(
                error_code=0, partition_index=0, leader_id=1, replica_nodes=[1],
                isr_nodes=[1], offline_replicas=[])])])
    resp.with_header(9)
    corr, body = w.split_response(bytes(resp.encode(header=True)))
    assert corr == 9
    md = w.parse_metadata_v1_response(body)
    assert md.brokers == [(1, "127.0.0.1", 9092, None)]
    assert md.controller_id == 1
    assert md.topics == {"t": (0, False, {0: (0, 1, [1], [1])})}
    assert md.trailing == 0


def test_produce_v3_response_decoder():
    R = ProduceResponse
    resp = R[3](
        responses=[R.TopicProduceResponse(name="t", partition_responses=[
            R.TopicProduceResponse.PartitionProduceResponse(
                index=0, error_code=2, base_offset=-1, log_append_time_ms=-1)])],
        throttle_time_ms=0)
    resp.with_header(4)
    corr, body = w.split_response(bytes(resp.encode(header=True)))
    assert corr == 4
    results, throttle, trailing = w.parse_produce_v3_response(body)
    assert [(r.topic, r.partition, r.error_code, r.base_offset) for r in results] == \
        [("t", 0, 2, -1)]
    assert throttle == 0 and trailing == 0
