//! A single-node, in-memory Kafka broker that is just real enough to exercise the client:
//! it keeps produced batches per partition, serves Fetch/ListOffsets from them, and answers
//! the admin APIs. Test-only code: it unwraps freely.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{
    decode_request_header_from_buffer, Decodable, Encodable, HeaderVersion, StrBytes,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One partition's log: (base offset, batch bytes) in order.
#[derive(Default)]
pub struct Log {
    pub batches: Vec<(i64, Bytes)>,
    pub next_offset: i64,
    pub log_start: i64,
}

/// Everything the broker knows.
#[derive(Default)]
pub struct State {
    pub topics: BTreeMap<String, Vec<Log>>,
    pub configs: HashMap<String, BTreeMap<String, String>>,
    /// Error code to answer the next N Produce partitions with (retry tests).
    pub produce_errors: Vec<i16>,
    /// Stop answering anything (timeout tests).
    pub stall: bool,
    /// Answer the next request with garbage (bad-input tests).
    pub garbage: bool,
    pub produce_requests: usize,
    /// Every Produce attempt's (partition, producer id, base sequence, error code sent,
    /// producer epoch).
    pub produce_attempts: Vec<(i32, i64, i32, i16, i16)>,
    pub init_producer_id_requests: usize,
    /// Idempotent producers: the epoch and next base sequence each partition accepts.
    pub expected_sequence: HashMap<(String, i32), (i16, i32)>,
    pub auto_create: bool,
    /// Act like an old broker that only knows ApiVersions v0.
    pub api_versions_v0_only: bool,
}

/// A running mock broker.
pub struct MockBroker {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
}

impl MockBroker {
    pub async fn start() -> MockBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let port = addr.port() as i32;
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, s.clone(), port));
            }
        });
        MockBroker {
            addr: addr.to_string(),
            state,
        }
    }

    pub fn create_topic(&self, name: &str, partitions: usize) {
        let mut st = self.state.lock().unwrap();
        st.topics.insert(
            name.to_string(),
            (0..partitions).map(|_| Log::default()).collect(),
        );
    }
}

async fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>, port: i32) {
    loop {
        let Ok(size) = sock.read_i32().await else {
            return;
        };
        let mut body = vec![0u8; size as usize];
        if sock.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut body = Bytes::from(body);
        let header = decode_request_header_from_buffer(&mut body).unwrap();
        let (stall, garbage) = {
            let mut st = state.lock().unwrap();
            let g = st.garbage;
            st.garbage = false;
            (st.stall, g)
        };
        if stall {
            continue;
        }
        if garbage {
            let _ = sock
                .write_all(&[0, 0, 0, 8, 0, 0, 0x7f, 0x7f, 1, 2, 3, 4])
                .await;
            continue;
        }
        let reply = handle(&header, body, &state, port);
        if let Some(frame) = reply {
            if sock.write_all(&frame).await.is_err() {
                return;
            }
        }
    }
}

fn frame<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    resp: &R,
) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    let mut h = ResponseHeader::default();
    h.correlation_id = correlation_id;
    h.encode(&mut buf, R::header_version(version)).unwrap();
    resp.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Some(buf.freeze())
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn handle(h: &RequestHeader, mut body: Bytes, state: &Mutex<State>, port: i32) -> Option<Bytes> {
    let v = h.request_api_version;
    let c = h.correlation_id;
    let mut st = state.lock().unwrap();
    match ApiKey::try_from(h.request_api_key).unwrap() {
        ApiKey::ApiVersions => {
            let ranges = [
                (0, 3, 12),
                (1, 4, 12),
                (2, 1, 10),
                (3, 1, 12),
                (18, 0, 3),
                (19, 2, 7),
                (20, 1, 6),
                (21, 0, 2),
                (32, 1, 4),
                (37, 0, 3),
                (44, 0, 1),
                (60, 0, 1),
                (22, 0, 5),
            ];
            let old_broker = st.api_versions_v0_only;
            let mut resp = ApiVersionsResponse::default();
            resp.api_keys = ranges
                .iter()
                .map(|&(k, lo, hi)| {
                    ApiVersion::default()
                        .with_api_key(k)
                        .with_min_version(lo)
                        .with_max_version(if old_broker && k == 18 { 0 } else { hi })
                })
                .filter(|a| !(old_broker && a.api_key == 60))
                .collect();
            if old_broker && v > 0 {
                // Kafka's rule: UNSUPPORTED_VERSION, in the v0 layout, with the full list.
                resp.error_code = 35;
                return frame(c, 0, &resp);
            }
            frame(c, v, &resp)
        }
        ApiKey::Metadata => {
            let req = MetadataRequest::decode(&mut body, v).unwrap();
            let names: Vec<String> = match &req.topics {
                None => st.topics.keys().cloned().collect(),
                Some(ts) => ts
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .collect(),
            };
            if st.auto_create && req.allow_auto_topic_creation {
                for n in &names {
                    st.topics
                        .entry(n.clone())
                        .or_insert_with(|| vec![Log::default()]);
                }
            }
            let mut resp = MetadataResponse::default();
            resp.controller_id = BrokerId(1);
            resp.cluster_id = Some(StrBytes::from_static_str("mock-cluster"));
            resp.brokers = vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(port)];
            resp.topics = names
                .iter()
                .map(|n| match st.topics.get(n) {
                    None => MetadataResponseTopic::default()
                        .with_name(Some(name(n)))
                        .with_error_code(3),
                    Some(parts) => MetadataResponseTopic::default()
                        .with_name(Some(name(n)))
                        .with_partitions(
                            (0..parts.len() as i32)
                                .map(|i| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(i)
                                        .with_leader_id(BrokerId(1))
                                        .with_leader_epoch(0)
                                        .with_replica_nodes(vec![BrokerId(1)])
                                        .with_isr_nodes(vec![BrokerId(1)])
                                })
                                .collect(),
                        ),
                })
                .collect();
            frame(c, v, &resp)
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut body, v).unwrap();
            st.produce_requests += 1;
            let mut resp = ProduceResponse::default();
            for t in &req.topic_data {
                let mut tr = TopicProduceResponse::default().with_name(t.name.clone());
                for p in &t.partition_data {
                    let mut pr = PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_log_append_time_ms(-1);
                    let injected =
                        (!st.produce_errors.is_empty()).then(|| st.produce_errors.remove(0));
                    // RecordBatch v2 header: producer id at 43, epoch at 51, base sequence at 53.
                    let raw = p.records.as_ref().unwrap();
                    let pid = (&raw[43..51]).get_i64();
                    let epoch = (&raw[51..53]).get_i16();
                    let base_seq = (&raw[53..57]).get_i32();
                    let key = (t.name.0.to_string(), p.index);
                    let (known_epoch, expected) =
                        *st.expected_sequence.get(&key).unwrap_or(&(epoch, 0));
                    // Like Kafka: an older epoch is fenced (47); a newer one starts at 0; in
                    // the same epoch a gap is out of order (45), an old sequence a duplicate
                    // (46).
                    let injected = injected.or(match pid >= 0 {
                        true if epoch < known_epoch => Some(47),
                        true if epoch > known_epoch && base_seq != 0 => Some(45),
                        true if epoch > known_epoch => None,
                        true if base_seq > expected => Some(45),
                        true if base_seq < expected => Some(46),
                        _ => None,
                    });
                    st.produce_attempts.push((
                        p.index,
                        pid,
                        base_seq,
                        injected.unwrap_or(0),
                        epoch,
                    ));
                    if pid >= 0 && injected.is_none() {
                        let records = (&raw[23..27]).get_i32() + 1;
                        st.expected_sequence
                            .insert(key, (epoch, base_seq + records));
                    }
                    if let Some(code) = injected {
                        pr.error_code = code;
                        pr.base_offset = -1;
                    } else if let Some(log) = st
                        .topics
                        .get_mut(t.name.0.as_str())
                        .and_then(|l| l.get_mut(p.index as usize))
                    {
                        let mut batch = BytesMut::from(&p.records.as_ref().unwrap()[..]);
                        batch[..8].copy_from_slice(&log.next_offset.to_be_bytes());
                        let delta = (&batch[23..27]).get_i32();
                        pr.base_offset = log.next_offset;
                        log.batches.push((log.next_offset, batch.freeze()));
                        log.next_offset += i64::from(delta) + 1;
                    } else {
                        pr.error_code = 3;
                    }
                    tr.partition_responses.push(pr);
                }
                resp.responses.push(tr);
            }
            if req.acks == 0 {
                return None;
            }
            frame(c, v, &resp)
        }
        ApiKey::InitProducerId => {
            let req = InitProducerIdRequest::decode(&mut body, v).unwrap();
            assert!(req.transactional_id.is_none());
            st.init_producer_id_requests += 1;
            let resp = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(1000))
                .with_producer_epoch(0);
            frame(c, v, &resp)
        }
        ApiKey::Fetch => {
            let req = FetchRequest::decode(&mut body, v).unwrap();
            let mut resp = FetchResponse::default();
            for t in &req.topics {
                let mut tr = FetchableTopicResponse::default().with_topic(t.topic.clone());
                for p in &t.partitions {
                    let mut pd = PartitionData::default().with_partition_index(p.partition);
                    match st
                        .topics
                        .get(t.topic.0.as_str())
                        .and_then(|l| l.get(p.partition as usize))
                    {
                        None => pd.error_code = 3,
                        Some(log)
                            if p.fetch_offset > log.next_offset
                                || p.fetch_offset < log.log_start =>
                        {
                            pd.error_code = 1
                        }
                        Some(log) => {
                            pd.high_watermark = log.next_offset;
                            pd.log_start_offset = log.log_start;
                            let mut out = BytesMut::new();
                            for (base, b) in &log.batches {
                                let last = base + i64::from((&b[23..27]).get_i32());
                                if last < p.fetch_offset {
                                    continue;
                                }
                                // KIP-74: the first batch always, later ones within the limit.
                                if !out.is_empty()
                                    && out.len() + b.len() > p.partition_max_bytes as usize
                                {
                                    break;
                                }
                                out.extend_from_slice(b);
                            }
                            pd.records = Some(out.freeze());
                        }
                    }
                    tr.partitions.push(pd);
                }
                resp.responses.push(tr);
            }
            frame(c, v, &resp)
        }
        ApiKey::ListOffsets => {
            let req = ListOffsetsRequest::decode(&mut body, v).unwrap();
            assert_eq!(
                req.replica_id,
                BrokerId(-1),
                "consumers must send replica_id -1"
            );
            let mut resp = ListOffsetsResponse::default();
            for t in &req.topics {
                let mut tr = ListOffsetsTopicResponse::default().with_name(t.name.clone());
                for p in &t.partitions {
                    let mut pr = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1);
                    match st
                        .topics
                        .get(t.name.0.as_str())
                        .and_then(|l| l.get(p.partition_index as usize))
                    {
                        None => pr.error_code = 3,
                        Some(log) => {
                            pr.offset = match p.timestamp {
                                -2 => log.log_start,
                                -1 => log.next_offset,
                                ts => log
                                    .batches
                                    .iter()
                                    .find(|(_, b)| (&b[35..43]).get_i64() >= ts)
                                    .map_or(-1, |(base, _)| *base),
                            };
                        }
                    }
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
            frame(c, v, &resp)
        }
        ApiKey::CreateTopics => {
            let req = CreateTopicsRequest::decode(&mut body, v).unwrap();
            let mut resp = CreateTopicsResponse::default();
            for t in &req.topics {
                let n = t.name.0.to_string();
                let mut r = CreatableTopicResult::default().with_name(t.name.clone());
                if st.topics.contains_key(&n) {
                    r.error_code = 36;
                    r.error_message = Some(StrBytes::from_string(format!(
                        "Topic '{n}' already exists."
                    )));
                } else if t.replication_factor > 1 {
                    r.error_code = 38;
                    r.error_message = Some(StrBytes::from_static_str(
                        "Replication factor is larger than 1 broker.",
                    ));
                } else if !req.validate_only {
                    let parts = if t.num_partitions < 0 {
                        1
                    } else {
                        t.num_partitions as usize
                    };
                    st.topics
                        .insert(n.clone(), (0..parts).map(|_| Log::default()).collect());
                    let cfg = t
                        .configs
                        .iter()
                        .map(|c| {
                            (
                                c.name.to_string(),
                                c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                            )
                        })
                        .collect();
                    st.configs.insert(n, cfg);
                }
                resp.topics.push(r);
            }
            frame(c, v, &resp)
        }
        ApiKey::DeleteTopics => {
            let req = DeleteTopicsRequest::decode(&mut body, v).unwrap();
            let names: Vec<TopicName> = if v >= 6 {
                req.topics.iter().filter_map(|t| t.name.clone()).collect()
            } else {
                req.topic_names.clone()
            };
            let mut resp = DeleteTopicsResponse::default();
            for n in names {
                let code = if st.topics.remove(n.0.as_str()).is_some() {
                    0
                } else {
                    3
                };
                resp.responses.push(
                    DeletableTopicResult::default()
                        .with_name(Some(n))
                        .with_error_code(code),
                );
            }
            frame(c, v, &resp)
        }
        ApiKey::CreatePartitions => {
            let req = CreatePartitionsRequest::decode(&mut body, v).unwrap();
            let mut resp = CreatePartitionsResponse::default();
            for t in &req.topics {
                let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
                match st.topics.get_mut(t.name.0.as_str()) {
                    None => r.error_code = 3,
                    Some(parts) if t.count as usize <= parts.len() => r.error_code = 37,
                    Some(parts) => parts.resize_with(t.count as usize, Log::default),
                }
                resp.results.push(r);
            }
            frame(c, v, &resp)
        }
        ApiKey::DescribeConfigs => {
            let req = DescribeConfigsRequest::decode(&mut body, v).unwrap();
            let mut resp = DescribeConfigsResponse::default();
            for r in &req.resources {
                let n = r.resource_name.to_string();
                let mut result = DescribeConfigsResult::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone());
                if !st.topics.contains_key(&n) {
                    result.error_code = 3;
                } else {
                    let overrides = st.configs.get(&n).cloned().unwrap_or_default();
                    let mut entries = vec![DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("604800000")))
                        .with_config_source(5)];
                    for (k, val) in overrides {
                        entries.push(
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_string(k))
                                .with_value(Some(StrBytes::from_string(val)))
                                .with_config_source(1),
                        );
                    }
                    result.configs = entries;
                }
                resp.results.push(result);
            }
            frame(c, v, &resp)
        }
        ApiKey::IncrementalAlterConfigs => {
            let req = IncrementalAlterConfigsRequest::decode(&mut body, v).unwrap();
            let mut resp = IncrementalAlterConfigsResponse::default();
            for r in &req.resources {
                let n = r.resource_name.to_string();
                let cfg = st.configs.entry(n).or_default();
                for op in &r.configs {
                    let key = op.name.to_string();
                    match op.config_operation {
                        0 => {
                            cfg.insert(
                                key,
                                op.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                            );
                        }
                        1 => {
                            cfg.remove(&key);
                        }
                        _ => {}
                    }
                }
                resp.responses.push(
                    AlterConfigsResourceResponse::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone()),
                );
            }
            frame(c, v, &resp)
        }
        ApiKey::DeleteRecords => {
            let req = DeleteRecordsRequest::decode(&mut body, v).unwrap();
            let mut resp = DeleteRecordsResponse::default();
            for t in &req.topics {
                let mut tr = DeleteRecordsTopicResult::default().with_name(t.name.clone());
                for p in &t.partitions {
                    let mut pr = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match st
                        .topics
                        .get_mut(t.name.0.as_str())
                        .and_then(|l| l.get_mut(p.partition_index as usize))
                    {
                        None => pr.error_code = 3,
                        Some(log) => {
                            let target = if p.offset < 0 {
                                log.next_offset
                            } else {
                                p.offset.min(log.next_offset)
                            };
                            log.log_start = log.log_start.max(target);
                            pr.low_watermark = log.log_start;
                        }
                    }
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
            frame(c, v, &resp)
        }
        ApiKey::DescribeCluster => {
            let mut resp = DescribeClusterResponse::default();
            resp.cluster_id = StrBytes::from_static_str("mock-cluster");
            resp.controller_id = BrokerId(1);
            resp.brokers = vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(port)];
            frame(c, v, &resp)
        }
        other => panic!("mock broker does not handle {other:?}"),
    }
}
