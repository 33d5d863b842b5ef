//! The HTTP admin port (docs/architecture.md §9, `admin.listener`): liveness, readiness, Prometheus
//! metrics and a read-only JSON view of the cluster, topics and groups, for operators and
//! orchestrators that do not speak Kafka.
//!
//! Readiness is decided by [`broker_checks`] and [`controller_checks`], each check a
//! named boolean so a 503 says which one failed.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use spate_controller::node::ControllerHandle;
use spate_metadata::ids::NodeId;
use spate_metadata::MetadataImage;
use tokio::net::TcpListener;
use tokio::sync::watch;

use spate_broker::group::coordinator::OFFSETS_TOPIC;
use spate_broker::BrokerState;

/// Prometheus text exposition format 0.0.4.
/// What `prometheus-client` writes: the OpenMetrics text format (ends in `# EOF`).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long `/v1/cluster` waits for a remote controller's quorum state.
const REMOTE_QUORUM_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers read: the roles this node runs.
#[derive(Clone)]
struct Admin {
    broker: Option<Arc<BrokerState>>,
    controller: Option<Arc<ControllerHandle>>,
}

/// Serves the admin routes on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    broker: Option<Arc<BrokerState>>,
    controller: Option<Arc<ControllerHandle>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/cluster", get(cluster))
        .route("/v1/topics", get(topics))
        .route("/v1/groups", get(groups))
        .route("/v1/drain", axum::routing::post(drain));
    #[cfg(feature = "fault-injection")]
    let app = app.merge(crate::fault_injection::routes());
    let app = app.with_state(Admin { broker, controller });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

/// `timeout_ms` of `POST /v1/drain`.
#[derive(serde::Deserialize)]
struct DrainParams {
    timeout_ms: Option<u64>,
}

/// `POST /v1/drain[?timeout_ms=N]`: controlled shutdown without stopping (what a
/// Kubernetes preStop hook runs): leadership moves to other in-sync replicas and the
/// broker is fenced for good; 200 once it leads nothing, 504 if the wait (default 30 s)
/// ran out, 404 on a controller-only node.
async fn drain(
    State(admin): State<Admin>,
    axum::extract::Query(params): axum::extract::Query<DrainParams>,
) -> Response {
    let Some(state) = &admin.broker else {
        let body = json!({"error": "this node has no broker role; nothing to drain"});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    let timeout = Duration::from_millis(params.timeout_ms.unwrap_or(30_000).min(600_000));
    let outcome = spate_broker::controlled_shutdown::run(state, timeout).await;
    let status = if outcome.completed() {
        StatusCode::OK
    } else {
        StatusCode::GATEWAY_TIMEOUT
    };
    let body = json!({
        "drained": outcome.completed(),
        "fenced": outcome.fenced,
        "leaders_left": outcome.leaders_left,
        "elapsed_ms": outcome.elapsed.as_millis() as u64,
    });
    (status, Json(body)).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(admin): State<Admin>) -> Response {
    let mut checks = Vec::new();
    if let Some(state) = &admin.broker {
        checks.extend(broker_checks(state));
    }
    if let Some(controller) = &admin.controller {
        checks.extend(controller_checks(controller));
    }
    let ready = checks.iter().all(|(_, ok)| *ok);
    let checks: Map<String, Value> = checks
        .into_iter()
        .map(|(name, ok)| (name.to_string(), Value::Bool(ok)))
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready, "checks": checks }))).into_response()
}

/// The broker's readiness checks:
/// - `registered`: the controller gave us a broker epoch;
/// - `unfenced`: the image we follow has us unfenced (the controller unfences a broker
///   only once it has caught up with the metadata log);
/// - `metadata_applied`: we have applied at least one image from the controller;
/// - `controller_contact`: a heartbeat got an answer within the session timeout — an
///   isolated broker cannot see its own fencing, since the stream carrying it is cut;
/// - `logs_recovered`: every partition assigned to us in the image is open here;
/// - `logs_online`: no partition log failed here (I/O or fsync error).
pub fn broker_checks(state: &BrokerState) -> Vec<(&'static str, bool)> {
    let me = state.config.node_id;
    let image = state.metadata.image();
    let logs_recovered = image.topics().values().all(|t| {
        t.partitions.iter().all(|(index, p)| {
            !p.replicas.contains(&NodeId(me)) || state.replicas.get(&t.name, *index).is_some()
        })
    });
    vec![
        (
            "registered",
            state.broker_epoch.load(std::sync::atomic::Ordering::SeqCst) >= 0,
        ),
        (
            "unfenced",
            image.broker(NodeId(me)).is_some_and(|b| !b.fenced),
        ),
        ("metadata_applied", state.metadata.version() > 0),
        (
            "controller_contact",
            heartbeat_fresh(
                state.controller.since_heartbeat_ok(),
                state.config.controller.session_timeout,
            ),
        ),
        ("logs_recovered", logs_recovered),
        // A failed log (I/O or fsync error) needs an operator: the broker serves its other
        // partitions, but it should not count as healthy (nor a rolling restart go on).
        ("logs_online", state.replicas.offline_replicas().is_empty()),
        // A draining broker (controlled shutdown) must leave load balancers at once.
        ("not_draining", !*state.draining.borrow()),
    ]
}

/// Whether the last answered heartbeat is recent enough that the controller has not
/// fenced us for silence.
pub fn heartbeat_fresh(since_ok: Option<Duration>, session_timeout: Duration) -> bool {
    since_ok.is_some_and(|since| since <= session_timeout)
}

/// The controller's readiness check: `quorum_leader`, a leader is known to this voter.
pub fn controller_checks(controller: &ControllerHandle) -> Vec<(&'static str, bool)> {
    vec![("quorum_leader", controller.describe_quorum().has_leader)]
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let sources = admin.broker.as_deref().map(|b| (b, b.scrape_sources()));
    let broker = sources.as_ref().map(|(b, s)| (&b.metrics, s));
    let body = spate_broker::metrics::render_node(broker, |out| {
        if let Some(controller) = admin.controller.as_deref() {
            crate::controller_metrics::encode(controller, out);
        }
    });
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response()
}

/// The image this node answers from: the broker's followed image, else the controller's.
fn image_of(admin: &Admin) -> Arc<MetadataImage> {
    match (&admin.broker, &admin.controller) {
        (Some(state), _) => state.metadata.image(),
        (None, Some(controller)) => Arc::new(controller.image()),
        (None, None) => Arc::new(MetadataImage::default()),
    }
}

use spate_broker::replication::fetcher::REPLICATION_LISTENER;

async fn cluster(State(admin): State<Admin>) -> Json<Value> {
    let image = image_of(&admin);
    let node_id = match (&admin.broker, &admin.controller) {
        (Some(state), _) => Some(state.config.node_id as i64),
        (None, Some(c)) => Some(c.node_id() as i64),
        (None, None) => None,
    };
    let quorum = match (&admin.controller, &admin.broker) {
        (Some(c), _) => Some(c.describe_quorum()),
        (None, Some(state)) => remote_quorum(state).await,
        (None, None) => None,
    };
    let brokers: Vec<Value> = image
        .brokers()
        .values()
        .map(|b| {
            // Kafka endpoints in registration order: the first is the inter-broker one.
            let kafka: serde_json::Map<String, Value> = b
                .endpoints
                .iter()
                .filter(|e| e.listener != REPLICATION_LISTENER)
                .map(|e| (e.listener.clone(), json!(format!("{}:{}", e.host, e.port))))
                .collect();
            let first = b
                .endpoints
                .iter()
                .find(|e| e.listener != REPLICATION_LISTENER);
            json!({
                "id": b.id.0,
                "endpoint": first.map(|e| format!("{}:{}", e.host, e.port)),
                "endpoints": kafka,
                "rack": b.rack.clone().filter(|r| !r.is_empty()),
                "fenced": b.fenced,
                "epoch": b.epoch.0,
            })
        })
        .collect();
    let partitions = image.topics().values().flat_map(|t| t.partitions.values());
    let (mut total, mut offline, mut under_replicated) = (0, 0, 0);
    for p in partitions {
        total += 1;
        offline += usize::from(p.leader.is_none());
        under_replicated += usize::from(p.isr.len() < p.replicas.len());
    }
    Json(json!({
        "cluster_id": admin.broker.as_ref().map(|s| s.config.cluster_id.clone()),
        "node_id": node_id,
        "controller": quorum.map(|q| json!({
            "leader_id": q.has_leader.then_some(q.leader_id),
            "term": q.term,
            "commit_index": q.commit_index,
            "applied_index": q.applied_index,
        })),
        "metadata_offset": image.offset(),
        "brokers": brokers,
        "topics": image.topics().len(),
        "partitions": total,
        "offline_partitions": offline,
        "under_replicated_partitions": under_replicated,
    }))
}

/// The quorum as a remote controller reports it (a broker-only node), if it answers soon.
async fn remote_quorum(
    state: &BrokerState,
) -> Option<spate_proto::controller::DescribeQuorumResponse> {
    let mut client = state.controller.lifecycle().ok()?;
    tokio::time::timeout(REMOTE_QUORUM_TIMEOUT, client.describe_quorum())
        .await
        .ok()?
        .ok()
}

async fn topics(State(admin): State<Admin>) -> Json<Value> {
    let image = image_of(&admin);
    let topics: Vec<Value> = image
        .topics()
        .values()
        .map(|t| {
            let partitions: Vec<Value> = t
                .partitions
                .iter()
                .map(|(index, p)| {
                    let mut out = json!({
                        "partition": index,
                        "leader": p.leader.map(|l| l.0),
                        "leader_epoch": p.leader_epoch.0,
                        "replicas": p.replicas.iter().map(|n| n.0).collect::<Vec<_>>(),
                        "isr": p.isr.iter().map(|n| n.0).collect::<Vec<_>>(),
                    });
                    let local = admin
                        .broker
                        .as_ref()
                        .and_then(|s| s.replicas.get(&t.name, *index))
                        .filter(|r| r.leader_state().is_leader);
                    if let Some(replica) = local {
                        out["high_watermark"] = json!(replica.high_watermark());
                        out["log_end_offset"] = json!(replica.log_end_offset());
                    }
                    out
                })
                .collect();
            json!({ "name": t.name, "id": t.id.to_string(), "partitions": partitions })
        })
        .collect();
    Json(json!({ "topics": topics }))
}

async fn groups(State(admin): State<Admin>) -> Json<Value> {
    let Some(state) = &admin.broker else {
        return Json(json!({ "groups": [] }));
    };
    let partitions = state
        .metadata
        .image()
        .topic_by_name(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
        .unwrap_or(state.config.topics.offsets_topic_partitions);
    let groups: Vec<Value> = state
        .groups
        .list()
        .into_iter()
        .map(|(id, protocol_type, group_state)| {
            let members = state
                .groups
                .describe(&id, partitions)
                .ok()
                .map(|g| g.members.len());
            json!({
                "group_id": id,
                "state": group_state,
                "protocol_type": protocol_type,
                "members": members,
            })
        })
        .collect();
    Json(json!({ "groups": groups }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_freshness_follows_the_session_timeout() {
        let session = Duration::from_secs(3);
        assert!(!heartbeat_fresh(None, session));
        assert!(heartbeat_fresh(Some(Duration::from_millis(200)), session));
        assert!(heartbeat_fresh(Some(session), session));
        assert!(!heartbeat_fresh(Some(Duration::from_secs(4)), session));
    }
}
