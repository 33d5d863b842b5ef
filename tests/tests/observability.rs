//! The HTTP admin port on an in-process three-node cluster: liveness, readiness (and its
//! flip while a broker is cut off from the controllers), metrics and the topic view.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use spate_tests::cluster::{create_topic, Cluster};
use spate_tests::http::{get, HttpResponse};

/// The harness's `broker.session.timeout.ms`.
const SESSION: Duration = Duration::from_secs(3);

/// Polls `GET path` until `done(response)` or the timeout; returns the last response.
async fn poll(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    done: impl Fn(&HttpResponse) -> bool,
) -> HttpResponse {
    let deadline = Instant::now() + timeout;
    loop {
        let response = get(addr, path).await.unwrap();
        if done(&response) || Instant::now() >= deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn json(response: &HttpResponse) -> Value {
    serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_serves_health_metrics_and_topics() {
    let cluster = Cluster::start().await;
    let admin = cluster.admin_addr(1);

    let health = get(admin, "/healthz").await.unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));

    let ready = poll(admin, "/readyz", Duration::from_secs(15), |r| {
        r.status == 200
    })
    .await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let body = json(&ready);
    assert_eq!(body["ready"], true);
    for check in [
        "registered",
        "unfenced",
        "controller_contact",
        "quorum_leader",
    ] {
        assert_eq!(body["checks"][check], true, "{check}: {body}");
    }

    let metrics = get(admin, "/metrics").await.unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        metrics.headers
    );
    assert!(metrics.body.contains("spate_"), "{}", metrics.body);

    let mut conn = cluster.connect(1).await;
    assert_eq!(create_topic(&mut conn, "observed", 2, 3, &[]).await, 0);
    let leader = cluster.wait_partition_ready("observed", 0, 3).await;
    cluster.wait_partition_ready("observed", 1, 3).await;

    // Every node's view lists the topic with its full ISR once its image has it.
    let topics = poll(
        cluster.admin_addr(1),
        "/v1/topics",
        Duration::from_secs(10),
        |r| {
            json(r)["topics"].as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    t["name"] == "observed"
                        && t["partitions"].as_array().is_some_and(|ps| {
                            ps.iter().all(|p| p["isr"].as_array().unwrap().len() == 3)
                        })
                })
            })
        },
    )
    .await;
    let body = json(&topics);
    let topic = body["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "observed")
        .unwrap_or_else(|| panic!("no topic 'observed' in {body}"));
    let partitions = topic["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2, "{topic}");
    let mut isr: Vec<i64> = partitions[0]["isr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_i64().unwrap())
        .collect();
    isr.sort();
    assert_eq!(isr, [1, 2, 3], "{topic}");

    // The leader reports its high watermark and log end offset for the partitions it leads
    // (once its own image has the topic: it may trail node 1's by a moment).
    let on_leader = json(
        &poll(
            cluster.admin_addr(leader),
            "/v1/topics",
            Duration::from_secs(10),
            |r| {
                json(r)["topics"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|t| t["name"] == "observed"))
            },
        )
        .await,
    );
    let p0 = on_leader["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "observed")
        .map(|t| t["partitions"][0].clone())
        .unwrap();
    assert_eq!(p0["leader"], leader, "{p0}");
    assert_eq!(p0["high_watermark"], 0, "{p0}");
    assert_eq!(p0["log_end_offset"], 0, "{p0}");

    let view = json(&get(admin, "/v1/cluster").await.unwrap());
    assert_eq!(view["brokers"].as_array().unwrap().len(), 3, "{view}");
    assert!(view["controller"]["leader_id"].is_u64(), "{view}");
    let groups = get(admin, "/v1/groups").await.unwrap();
    assert_eq!(groups.status, 200);
    assert!(json(&groups)["groups"].is_array());

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_a_broker_is_cut_off_and_recovers_after() {
    let cluster = Cluster::start().await;
    let active = cluster.active_controller().unwrap();
    let victim = (1..=3).find(|id| *id != active).unwrap();
    let admin = cluster.admin_addr(victim);
    let ready = poll(admin, "/readyz", Duration::from_secs(15), |r| {
        r.status == 200
    })
    .await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    // Cut off, the broker's heartbeats stop and the controller fences it; the broker
    // cannot see that in its own image (the stream is cut too), so it goes unready once
    // no heartbeat has been answered for a session timeout.
    cluster.isolate(victim, true);
    let unready = poll(admin, "/readyz", SESSION + Duration::from_secs(10), |r| {
        r.status == 503
    })
    .await;
    assert_eq!(unready.status, 503, "{}", unready.body);
    let body = json(&unready);
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["controller_contact"], false, "{body}");
    // The process itself is alive.
    assert_eq!(get(admin, "/healthz").await.unwrap().status, 200);
    // The controller did fence it.
    cluster
        .wait_image(Duration::from_secs(10), |i| {
            i.broker(spate_metadata::ids::NodeId(victim))
                .is_some_and(|b| b.fenced)
        })
        .await
        .expect("the controller fences the silent broker");

    cluster.isolate(victim, false);
    let ready = poll(admin, "/readyz", Duration::from_secs(30), |r| {
        r.status == 200
    })
    .await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    cluster.shutdown().await;
}

/// A restarted node serves its admin port before its broker has registered, caught up
/// and reopened its logs: readiness is false until then, and true after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_false_while_a_restarted_broker_recovers() {
    let mut cluster = Cluster::start().await;
    let mut conn = cluster.connect(1).await;
    assert_eq!(create_topic(&mut conn, "recovering", 3, 3, &[]).await, 0);
    cluster.wait_partition_ready("recovering", 0, 3).await;
    let active = cluster.active_controller().unwrap();
    let victim = (1..=3).find(|id| *id != active).unwrap();
    cluster.stop(victim).await;
    cluster.restart(victim).await;
    let admin = cluster.admin_addr(victim);
    let first = get(admin, "/readyz").await.unwrap();
    assert_eq!(
        first.status, 503,
        "ready before registering: {}",
        first.body
    );
    let ready = poll(admin, "/readyz", Duration::from_secs(30), |r| {
        r.status == 200
    })
    .await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let body = json(&ready);
    assert_eq!(body["checks"]["logs_recovered"], true, "{body}");
    cluster.shutdown().await;
}

/// `name{labels} value` samples of a scrape, by the part before the value.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sample(text: &str, key: &str) -> f64 {
    samples(text).get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_what_was_produced_and_consumed() {
    use kafka_protocol::records::Compression;
    let cluster = Cluster::start().await;
    let mut conn = cluster.connect(1).await;
    assert_eq!(create_topic(&mut conn, "metered", 1, 3, &[]).await, 0);
    let leader = cluster.wait_partition_ready("metered", 0, 3).await;
    let admin = cluster.admin_addr(leader);
    let before = get(admin, "/metrics").await.unwrap().body;
    let mut to_leader = cluster.connect(leader).await;
    let value = [b'x'; 100];
    let mut bytes = 0usize;
    for _ in 0..50 {
        let batch = spate_tests::encode_batch(&[&value[..]], Compression::None).unwrap();
        bytes += batch.len();
        let (code, _) =
            spate_tests::cluster::produce(&mut to_leader, "metered", 0, -1, 10_000, batch)
                .await
                .unwrap();
        assert_eq!(code, 0);
    }
    let read = spate_tests::cluster::read_all(&mut to_leader, "metered", 0)
        .await
        .unwrap();
    assert_eq!(read.len(), 50);
    // A produce to a partition that does not exist is answered with an error code.
    let batch = spate_tests::encode_batch(&[&value[..]], Compression::None).unwrap();
    let (code, _) = spate_tests::cluster::produce(&mut to_leader, "metered", 7, -1, 10_000, batch)
        .await
        .unwrap();
    assert_eq!(code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let after = get(admin, "/metrics").await.unwrap().body;
    let delta = |key: &str| sample(&after, key) - sample(&before, key);
    assert_eq!(
        delta(r#"spate_topic_records_in_total{topic="metered"}"#),
        50.0
    );
    assert_eq!(
        delta(r#"spate_topic_bytes_in_total{topic="metered"}"#),
        bytes as f64
    );
    assert_eq!(
        delta(r#"spate_topic_records_out_total{topic="metered"}"#),
        50.0
    );
    assert_eq!(
        delta(r#"spate_kafka_requests_total{api="Produce",version="9"}"#),
        51.0
    );
    assert_eq!(
        delta(r#"spate_kafka_request_errors_total{api="Produce",version="9"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"spate_kafka_request_duration_seconds_count{api="Produce",version="9"}"#),
        51.0
    );
    assert!(sample(&after, "spate_partitions_led") >= 1.0, "{after}");
    assert_eq!(sample(&after, "spate_partitions_under_replicated"), 0.0);
    assert_eq!(sample(&after, "spate_produce_purgatory_size"), 0.0);
    assert!(delta("spate_log_fsyncs_total") >= 1.0);
    cluster.shutdown().await;
}

/// Every metric the Grafana dashboard queries exists in a live scrape of a cluster that
/// has served produce, fetch and group traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_only_metrics_that_exist() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::Compression;

    let cluster = Cluster::start().await;
    let mut conn = cluster.connect(1).await;
    assert_eq!(create_topic(&mut conn, "dash", 1, 3, &[]).await, 0);
    let leader = cluster.wait_partition_ready("dash", 0, 3).await;
    let mut to_leader = cluster.connect(leader).await;
    for _ in 0..20 {
        let batch = spate_tests::encode_batch(&[b"v"], Compression::None).unwrap();
        let (code, _) = spate_tests::cluster::produce(&mut to_leader, "dash", 0, -1, 10_000, batch)
            .await
            .unwrap();
        assert_eq!(code, 0);
    }
    spate_tests::cluster::read_all(&mut to_leader, "dash", 0)
        .await
        .unwrap();
    // A group with a committed offset (lag 15): find its coordinator, then commit there.
    let group = "dash-group";
    let coordinator = spate_tests::cluster::find_coordinator(&mut conn, group).await;
    let mut to_coordinator = cluster.connect(coordinator).await;
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(spate_tests::cluster::topic_name("dash"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(5)])]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp: OffsetCommitResponse = to_coordinator
            .request(ApiKey::OffsetCommit, 8, &commit)
            .await
            .unwrap();
        let code = resp.topics[0].partitions[0].error_code;
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "commit failed: {code}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/spate.json"),
    )
    .unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let mut wanted = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("spate_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                wanted.insert(name);
            }
        }
    }
    assert!(wanted.len() >= 20, "{wanted:?}");
    // Group lag is published by the coordinator for partitions it leads: poll until every
    // name shows up somewhere in the cluster.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut exposed = std::collections::BTreeSet::new();
        for id in 1..=3 {
            let text = get(cluster.admin_addr(id), "/metrics").await.unwrap().body;
            for key in samples(&text).keys() {
                exposed.insert(key.split('{').next().unwrap().to_string());
            }
        }
        let missing: Vec<&String> = wanted.iter().filter(|n| !exposed.contains(*n)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard queries metrics no node exposes: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cluster.shutdown().await;
}
