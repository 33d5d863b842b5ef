//! Produce validates what it stores, as Kafka's LogValidator: compressed batches are
//! decompressed (bounded) and their records walked; a bad record is reported by its
//! index (Produce v8+ `record_errors`); control and transactional batches from a client
//! without transactions are refused. Nothing refused is stored.
use std::io::Write;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::records::Compression;
use spate_log::batch::RecordBatchMut;
use spate_tests::cluster::{self, topic_name};
use spate_tests::{encode_batch, encode_one_batch, RawConnection, TestNode};

const INVALID_RECORD: i16 = 87;
const CORRUPT_MESSAGE: i16 = 2;

/// Rebuilds an uncompressed batch with its records run through `compress` under
/// `codec`, and `extra_attributes` set; the CRC is recomputed so only the contents are
/// wrong, never the framing.
fn rebuild(
    plain: &[u8],
    codec: i16,
    extra_attributes: i16,
    compress: impl Fn(&[u8]) -> Vec<u8>,
) -> Bytes {
    let (header, records) = plain.split_at(61);
    let mut out = header.to_vec();
    out.extend(compress(records));
    let length = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = i16::from_be_bytes([out[21], out[22]]) | codec | extra_attributes;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let max_ts = i64::from_be_bytes(out[35..43].try_into().unwrap());
    RecordBatchMut::new(&mut out)
        .unwrap()
        .set_max_timestamp(max_ts);
    Bytes::from(out)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn produce_v9(
    conn: &mut RawConnection,
    topic: &str,
    records: Bytes,
) -> PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let resp: ProduceResponse = conn.request(ApiKey::Produce, 9, &req).await.unwrap();
    resp.responses[0].partition_responses[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_looks_inside_compressed_batches_and_names_the_bad_record() {
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    assert_eq!(
        cluster::create_topic(&mut conn, "checked", 1, 1, &[]).await,
        0
    );
    let values: [&[u8]; 3] = [b"one", b"two", b"three"];
    let plain = encode_one_batch(&values, Compression::None)
        .unwrap()
        .to_vec();
    assert_eq!(spate_log::batch::batches(&plain).count(), 1);

    // A real client's compressed batches go through.
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = encode_batch(&values, codec).unwrap();
        let p = produce_v9(&mut conn, "checked", batch).await;
        assert_eq!(p.error_code, 0, "{codec:?}: {:?}", p.error_message);
    }

    // The third record is cut short inside the gzip stream: INVALID_RECORD, record 2.
    let cut = rebuild(&plain, 1, 0, |r| gzip(&r[..r.len() - 1]));
    let p = produce_v9(&mut conn, "checked", cut).await;
    assert_eq!(p.error_code, INVALID_RECORD, "{:?}", p.error_message);
    assert_eq!(p.record_errors.len(), 1);
    assert_eq!(p.record_errors[0].batch_index, 2, "{:?}", p.error_message);
    assert!(p.error_message.is_some());

    // Not gzip at all: CORRUPT_MESSAGE.
    let garbage = rebuild(&plain, 1, 0, |r| vec![0x5a; r.len()]);
    assert_eq!(
        produce_v9(&mut conn, "checked", garbage).await.error_code,
        CORRUPT_MESSAGE
    );

    // A zstd bomb: a few KiB that would expand past the 64 MiB bound.
    let bomb = rebuild(&plain, 4, 0, |_| {
        zstd::stream::encode_all(&vec![0u8; 80 << 20][..], 3).unwrap()
    });
    assert!(bomb.len() < 1 << 20);
    let p = produce_v9(&mut conn, "checked", bomb).await;
    assert_eq!(p.error_code, INVALID_RECORD, "{:?}", p.error_message);

    // Transactional and control batches from a client without transactions.
    for (flag, what) in [(0x10, "transactional"), (0x20, "control")] {
        let batch = rebuild(&plain, 0, flag, |r| r.to_vec());
        let p = produce_v9(&mut conn, "checked", batch).await;
        assert_eq!(p.error_code, INVALID_RECORD, "{what}");
        let message = p.error_message.map(|m| m.to_string()).unwrap_or_default();
        assert!(message.contains(what), "{message}");
    }

    // Only the four good batches were stored.
    let stored = cluster::read_all(&mut conn, "checked", 0).await.unwrap();
    assert_eq!(stored.len(), 12, "{stored:?}");
    node.stop().await;
}
