"""Hand-written Kafka wire-protocol encoders and decoders for the raw-socket tests.

Only what the raw tests need: request headers v1/v2, ApiVersions v0..v3, Metadata v1,
Produce v3 with a v2 RecordBatch, CRC-32C, and a few response decoders. No client
library is used here on purpose: the point of the raw tests is to send bytes a client
library would never send (corrupt CRCs, bogus versions, broken frames).

References: the Kafka protocol guide (https://kafka.apache.org/protocol) and the
RecordBatch format (https://kafka.apache.org/documentation/#recordbatch).
"""
from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass, field

# --- API keys and error codes used by the tests -------------------------------------------
PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
API_VERSIONS = 18
CREATE_TOPICS = 19

NONE = 0
CORRUPT_MESSAGE = 2
UNSUPPORTED_VERSION = 35
INVALID_RECORD = 87

CLIENT_ID = "spate-raw-tests"

# --- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 --------------------------------


def _make_crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- primitive encoders ---------------------------------------------------------------------


def int8(v: int) -> bytes:
    return struct.pack(">b", v)


def int16(v: int) -> bytes:
    return struct.pack(">h", v)


def int32(v: int) -> bytes:
    return struct.pack(">i", v)


def uint32(v: int) -> bytes:
    return struct.pack(">I", v)


def int64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str) -> bytes:
    raw = s.encode()
    return int16(len(raw)) + raw


def nullable_string(s: str | None) -> bytes:
    return int16(-1) if s is None else string(s)


def nullable_bytes(b: bytes | None) -> bytes:
    return int32(-1) if b is None else int32(len(b)) + b


def uvarint(v: int) -> bytes:
    if v < 0:
        raise ValueError("uvarint must be >= 0")
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Signed zig-zag varint (varint and varlong share the encoding)."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str) -> bytes:
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


EMPTY_TAGGED_FIELDS = b"\x00"


def frame(payload: bytes) -> bytes:
    """A Kafka frame: 4-byte big-endian size, then the payload."""
    return int32(len(payload)) + payload


# --- request headers ------------------------------------------------------------------------


def request_header(api_key: int, api_version: int, correlation_id: int,
                   client_id: str | None = CLIENT_ID, flexible: bool = False) -> bytes:
    """Request header v1 (non-flexible) or v2 (flexible: adds an empty tagged-field section).

    client_id stays a classic nullable INT16 string even in header v2.
    """
    hdr = int16(api_key) + int16(api_version) + int32(correlation_id) + nullable_string(client_id)
    if flexible:
        hdr += EMPTY_TAGGED_FIELDS
    return hdr


# --- requests -------------------------------------------------------------------------------


def api_versions_request(version: int, correlation_id: int,
                         software_name: str = "spate-raw-tests",
                         software_version: str = "1.0") -> bytes:
    """ApiVersions request payload (without the size prefix).

    v0..v2: header v1, empty body. v3 and later: header v2 (flexible) and a body of
    client_software_name, client_software_version (compact strings) and tagged fields.
    For versions above 3 the v3 layout is used, which is what a newer client would send.
    """
    if version < 3:
        return request_header(API_VERSIONS, version, correlation_id)
    body = compact_string(software_name) + compact_string(software_version) + EMPTY_TAGGED_FIELDS
    return request_header(API_VERSIONS, version, correlation_id, flexible=True) + body


def metadata_request_v1(correlation_id: int, topics: list[str] | None) -> bytes:
    """Metadata v1. topics=None asks for all topics (null array); a list names topics
    (which the broker auto-creates when auto-creation is on: v1 has no opt-out flag)."""
    if topics is None:
        body = int32(-1)
    else:
        body = int32(len(topics)) + b"".join(string(t) for t in topics)
    return request_header(METADATA, 1, correlation_id) + body


def produce_request(version: int, correlation_id: int, topic: str, partition: int,
                    records: bytes | None, acks: int = -1, timeout_ms: int = 10_000,
                    transactional_id: str | None = None) -> bytes:
    """Produce v3..v8 (all non-flexible, same request layout): one topic, one partition."""
    if not 3 <= version <= 8:
        raise ValueError("only the non-flexible v3..v8 layout is encoded here")
    body = (nullable_string(transactional_id) + int16(acks) + int32(timeout_ms)
            + int32(1) + string(topic)
            + int32(1) + int32(partition) + nullable_bytes(records))
    return request_header(PRODUCE, version, correlation_id) + body


def produce_request_v3(correlation_id: int, topic: str, partition: int, records: bytes | None,
                       acks: int = -1, timeout_ms: int = 10_000) -> bytes:
    return produce_request(3, correlation_id, topic, partition, records, acks, timeout_ms)


# --- RecordBatch v2 -------------------------------------------------------------------------


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_delta: int = 0


def encode_record(offset_delta: int, rec: Record) -> bytes:
    body = bytearray()
    body += int8(0)  # attributes (unused)
    body += varint(rec.timestamp_delta)
    body += varint(offset_delta)
    if rec.key is None:
        body += varint(-1)
    else:
        body += varint(len(rec.key)) + rec.key
    if rec.value is None:
        body += varint(-1)
    else:
        body += varint(len(rec.value)) + rec.value
    body += varint(len(rec.headers))
    for hk, hv in rec.headers:
        raw = hk.encode()
        body += varint(len(raw)) + raw
        if hv is None:
            body += varint(-1)
        else:
            body += varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def encode_record_batch(records: list[Record], base_timestamp: int, base_offset: int = 0,
                        producer_id: int = -1, producer_epoch: int = -1,
                        base_sequence: int = -1, attributes: int = 0,
                        partition_leader_epoch: int = -1,
                        crc_override: int | None = None) -> bytes:
    """An uncompressed magic-2 RecordBatch. crc_override replaces the computed CRC
    (to send a corrupt batch); everything else stays valid."""
    if not records:
        raise ValueError("a RecordBatch needs at least one record")
    recs = b"".join(encode_record(i, r) for i, r in enumerate(records))
    max_ts = base_timestamp + max(r.timestamp_delta for r in records)
    # Everything the CRC covers: attributes through the end of the records.
    after_crc = (int16(attributes) + int32(len(records) - 1) + int64(base_timestamp)
                 + int64(max_ts) + int64(producer_id) + int16(producer_epoch)
                 + int32(base_sequence) + int32(len(records)) + recs)
    crc = crc32c(after_crc) if crc_override is None else crc_override
    # batchLength counts the bytes after the batchLength field itself:
    # partitionLeaderEpoch(4) + magic(1) + crc(4) + after_crc.
    batch_length = 4 + 1 + 4 + len(after_crc)
    return (int64(base_offset) + int32(batch_length) + int32(partition_leader_epoch)
            + int8(2) + uint32(crc) + after_crc)


def batch_crc(batch: bytes) -> int:
    """The CRC stored in a v2 batch (bytes 17..21)."""
    return struct.unpack_from(">I", batch, 17)[0]


# --- decoding -------------------------------------------------------------------------------


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"truncated response: need {size} bytes at {self.pos}, "
                             f"have {len(self.data) - self.pos}")
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return v

    def int8(self) -> int:
        return self._unpack(">b")

    def int16(self) -> int:
        return self._unpack(">h")

    def int32(self) -> int:
        return self._unpack(">i")

    def int64(self) -> int:
        return self._unpack(">q")

    def bool(self) -> bool:
        return self.int8() != 0

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"truncated response: need {n} bytes at {self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def string(self) -> str:
        n = self.int16()
        if n < 0:
            raise ValueError("unexpected null string")
        return self.raw(n).decode()

    def nullable_string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self.raw(n).decode()

    def uvarint(self) -> int:
        shift = 0
        result = 0
        while True:
            b = self.raw(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def array_len(self) -> int:
        return self.int32()

    def compact_array_len(self) -> int:
        """-1 for null, else the element count."""
        return self.uvarint() - 1

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.raw(self.uvarint())


def split_response(payload: bytes) -> tuple[int, bytes]:
    """Response header v0: correlation id, then the body."""
    if len(payload) < 4:
        raise ValueError(f"response of {len(payload)} bytes has no correlation id")
    return struct.unpack_from(">i", payload)[0], payload[4:]


@dataclass
class ApiVersionsResponse:
    error_code: int
    api_keys: dict[int, tuple[int, int]]
    throttle_time_ms: int | None
    trailing: int  # bytes left after the fields this version defines


def parse_api_versions_response(body: bytes, version: int) -> ApiVersionsResponse:
    """ApiVersions response body. An error response is always encoded as v0, whatever
    version was asked for (that is how clients read it), so pass version=0 for those."""
    r = Reader(body)
    error_code = r.int16()
    keys: dict[int, tuple[int, int]] = {}
    throttle = None
    if version >= 3:
        n = r.compact_array_len()
        for _ in range(max(n, 0)):
            k, lo, hi = r.int16(), r.int16(), r.int16()
            r.skip_tagged_fields()
            keys[k] = (lo, hi)
        throttle = r.int32()
        r.skip_tagged_fields()
    else:
        n = r.array_len()
        for _ in range(max(n, 0)):
            k, lo, hi = r.int16(), r.int16(), r.int16()
            keys[k] = (lo, hi)
        if version >= 1:
            throttle = r.int32()
    return ApiVersionsResponse(error_code, keys, throttle, r.remaining())


@dataclass
class MetadataV1:
    brokers: list[tuple[int, str, int, str | None]]
    controller_id: int
    # name -> (error_code, is_internal, {partition: (error_code, leader, replicas, isr)})
    topics: dict[str, tuple[int, bool, dict[int, tuple[int, int, list[int], list[int]]]]]
    trailing: int


def parse_metadata_v1_response(body: bytes) -> MetadataV1:
    r = Reader(body)
    brokers = []
    for _ in range(r.array_len()):
        brokers.append((r.int32(), r.string(), r.int32(), r.nullable_string()))
    controller_id = r.int32()
    topics = {}
    for _ in range(r.array_len()):
        err = r.int16()
        name = r.string()
        internal = r.bool()
        parts = {}
        for _ in range(r.array_len()):
            perr = r.int16()
            idx = r.int32()
            leader = r.int32()
            replicas = [r.int32() for _ in range(r.array_len())]
            isr = [r.int32() for _ in range(r.array_len())]
            parts[idx] = (perr, leader, replicas, isr)
        topics[name] = (err, internal, parts)
    return MetadataV1(brokers, controller_id, topics, r.remaining())


@dataclass
class ProducePartitionResult:
    topic: str
    partition: int
    error_code: int
    base_offset: int
    log_append_time_ms: int


def parse_produce_v3_response(body: bytes) -> tuple[list[ProducePartitionResult], int, int]:
    """Returns (partition results, throttle_time_ms, trailing bytes)."""
    r = Reader(body)
    out = []
    for _ in range(r.array_len()):
        name = r.string()
        for _ in range(r.array_len()):
            out.append(ProducePartitionResult(name, r.int32(), r.int16(), r.int64(), r.int64()))
    throttle = r.int32()
    return out, throttle, r.remaining()


# --- socket helpers -------------------------------------------------------------------------


class Closed(Exception):
    """The peer closed (or reset) the connection."""


def connect(bootstrap: str, timeout: float = 10.0) -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {len(buf)} of {n} bytes")
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise TimeoutError(f"timed out after {len(buf)} of {n} bytes") from None
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed(str(e)) from e
        if not chunk:
            raise Closed(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket, timeout: float = 10.0, max_size: int = 64 << 20) -> bytes:
    deadline = time.monotonic() + timeout
    (size,) = struct.unpack(">i", recv_exact(sock, 4, deadline))
    if size < 0 or size > max_size:
        raise ValueError(f"broker sent a frame of size {size}")
    return recv_exact(sock, size, deadline)


def send_all(sock: socket.socket, data: bytes) -> bool:
    """Send; returns False if the peer already closed the connection."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def roundtrip(sock: socket.socket, payload: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send one framed request, read one response: (correlation id, body)."""
    if not send_all(sock, frame(payload)):
        raise Closed("connection closed while sending")
    return split_response(read_frame(sock, timeout))


def response_or_close(sock: socket.socket, timeout: float = 10.0):
    """After sending something the broker should reject: wait for either a response frame
    or the connection being closed. Returns ("closed", reason) or ("response", payload).
    Raises AssertionError if neither happens in time (the broker hangs on the input)."""
    try:
        return "response", read_frame(sock, timeout)
    except Closed as e:
        return "closed", str(e)
    except TimeoutError as e:
        raise AssertionError(f"broker neither answered nor closed the connection within "
                             f"{timeout}s ({e})") from None


def wait_closed(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Read until the peer closes or timeout; returns (closed, bytes received meanwhile)."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, bytes(got)
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True, bytes(got)
        if not chunk:
            return True, bytes(got)
        got += chunk
