//! Broker lifecycle towards the controller: register (getting a broker epoch), heartbeat,
//! and follow the committed metadata log as a stream, applying each batch to the local
//! image and reconciling hosted partitions with it.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use spate_metadata::ids::NodeId;
use spate_metadata::MetadataImage;
use spate_proto::controller::{BrokerHeartbeatRequest, RegisterBrokerRequest};
use spate_proto::metadata::{Endpoint, ReplicaRef};
use tokio::sync::watch;

use super::persist;
use crate::clock::now_ms;
use crate::replication::fetcher::{FetcherContext, REPLICATION_LISTENER};
use crate::state::BrokerState;

/// How often the applied image is saved (it is cheap to refetch, so not on every batch).
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Runs registration, heartbeats and the metadata stream until shutdown.
pub async fn run(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let incarnation = uuid::Uuid::new_v4().to_string();
    let mut backoff = Duration::from_millis(50);
    loop {
        if *shutdown.borrow() {
            return;
        }
        match register(&state, &incarnation).await {
            Ok(epoch) => {
                state.broker_epoch.store(epoch, Ordering::SeqCst);
                backoff = Duration::from_millis(50);
                tracing::info!(broker_epoch = epoch, "registered with the controller");
                tokio::select! {
                    _ = heartbeat_loop(state.clone()) => {}
                    _ = follow(state.clone(), shutdown.clone()) => {}
                    _ = shutdown.changed() => return,
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot register with the controller; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The replicas whose log failed here, as the controller names them.
fn offline_replicas(state: &BrokerState) -> Vec<ReplicaRef> {
    replica_refs(state.replicas.offline_replicas())
}

/// Partitions as the controller names them.
fn replica_refs(replicas: std::collections::BTreeSet<([u8; 16], i32)>) -> Vec<ReplicaRef> {
    replicas
        .into_iter()
        .map(|(topic_id, partition)| ReplicaRef {
            topic_id: topic_id.to_vec(),
            partition,
        })
        .collect()
}

async fn register(state: &BrokerState, incarnation: &str) -> Result<i64, String> {
    let request = RegisterBrokerRequest {
        broker_id: state.config.node_id,
        incarnation_id: incarnation.to_string(),
        // Every Kafka listener, then replication on the inter-broker listener's host.
        endpoints: state
            .endpoints
            .iter()
            .cloned()
            .chain(state.endpoints.first().map(|inter| {
                Endpoint {
                    listener: REPLICATION_LISTENER.to_string(),
                    host: state
                        .config
                        .replication
                        .advertised_host
                        .clone()
                        .unwrap_or_else(|| inter.host.clone()),
                    port: state.replication_port as i32,
                }
            }))
            .collect(),
        rack: state.config.rack.clone().unwrap_or_default(),
        offline_replicas: offline_replicas(state),
        log_dir_id: state.log_dir_id.clone(),
    };
    let mut client = state.controller.lifecycle().map_err(|e| e.to_string())?;
    let response = client
        .register_broker(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.error_code != 0 {
        return Err(format!(
            "error {}: {}",
            response.error_code, response.error_message
        ));
    }
    Ok(response.broker_epoch)
}

/// Heartbeats until the controller says our registration is gone. While draining
/// (controlled shutdown) every heartbeat asks to be fenced and shut down, the first one
/// at once and then every 200 ms until the controller has acted.
async fn heartbeat_loop(state: Arc<BrokerState>) {
    let mut image_changes = state.metadata.subscribe();
    let mut draining = state.draining.subscribe();
    let mut sent_drain = false;
    loop {
        let me = NodeId(state.config.node_id);
        let fenced = state.metadata.image().broker(me).is_none_or(|b| b.fenced);
        let drain = *draining.borrow_and_update();
        if drain && !sent_drain {
            // First heartbeat of the drain: no wait.
        } else if drain {
            let interval = state.config.controller.heartbeat_interval;
            let pause = if fenced {
                interval
            } else {
                interval.min(Duration::from_millis(200))
            };
            tokio::time::sleep(pause).await;
        } else if fenced {
            // While fenced, heartbeat as soon as our metadata moves: the controller
            // unfences us once we have caught up with it, and start-up should not wait a
            // whole interval.
            tokio::select! {
                _ = tokio::time::timeout(state.config.controller.heartbeat_interval, image_changes.changed()) => {}
                _ = draining.changed() => {}
                _ = state.replicas.failures().next() => {}
            }
        } else {
            // A failed log is reported at once: leadership must move off this disk.
            tokio::select! {
                _ = tokio::time::sleep(state.config.controller.heartbeat_interval) => {}
                _ = draining.changed() => {}
                _ = state.replicas.failures().next() => {}
            }
        }
        let drain = *draining.borrow();
        sent_drain |= drain;
        let request = BrokerHeartbeatRequest {
            broker_id: state.config.node_id,
            broker_epoch: state.broker_epoch.load(Ordering::SeqCst),
            metadata_offset: state.metadata.image().offset(),
            want_fence: false,
            want_shutdown: drain,
            offline_replicas: offline_replicas(&state),
            cut_replicas: replica_refs(state.replicas.recovered_with_loss()),
        };
        let Ok(mut client) = state.controller.lifecycle() else {
            continue;
        };
        match client.broker_heartbeat(request).await {
            // STALE_BROKER_EPOCH (77) or an unknown broker (69): register again.
            Ok(response) if response.error_code == 77 || response.error_code == 69 => {
                tracing::warn!(
                    code = response.error_code,
                    "controller rejected our heartbeat; re-registering"
                );
                return;
            }
            Ok(_) => state.controller.record_heartbeat_ok(&client),
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
    }
}

/// Follows the metadata stream, reconnecting from our last applied offset on errors. The
/// image saved by an earlier run is the starting point, but nothing acts on it until the
/// active controller's first message confirms it (or replaces it with a snapshot).
async fn follow(state: Arc<BrokerState>, shutdown: watch::Receiver<bool>) {
    let saved_dir = persist::dir(&state.config.data());
    let mut image = persist::load(&saved_dir).unwrap_or_default();
    let mut first = true;
    let mut last_saved = std::time::Instant::now() - SAVE_INTERVAL;
    loop {
        let stream = match state.controller.lifecycle() {
            Ok(mut client) => {
                let opened = client
                    .watch_metadata(image.offset())
                    .await
                    .map_err(|e| e.to_string());
                if opened.is_ok() {
                    state.controller.note_answered(&client);
                }
                opened
            }
            Err(e) => Err(e.to_string()),
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow metadata; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let batch = match stream.message().await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(status) => {
                    tracing::warn!(error = %status, "metadata stream broke; reconnecting");
                    break;
                }
            };
            if batch.snapshot && batch.offset < image.offset() {
                // Metadata never goes backwards here: an older snapshot (a controller that
                // had not caught up) is ignored; the stream moves on from there.
                tracing::warn!(
                    snapshot = batch.offset,
                    ours = image.offset(),
                    "ignoring a metadata snapshot older than our image"
                );
                continue;
            }
            let unfenced_before: Vec<NodeId> = image
                .brokers()
                .values()
                .filter(|b| !b.fenced)
                .map(|b| b.id)
                .collect();
            let errors = image.apply_batch(&batch);
            if !errors.is_empty() {
                // Our copy diverged from the controller's: start over from a snapshot.
                tracing::error!(offset = batch.offset, errors = ?errors, "cannot apply metadata batch; refetching");
                image = MetadataImage::default();
                break;
            }
            // Fence events: brokers unfenced before this batch and fenced after it (a
            // snapshot replacing the image counts the same way).
            for id in unfenced_before {
                if image.broker(id).is_some_and(|b| b.fenced) {
                    state.metrics.broker_fenced();
                }
            }
            let shared = Arc::new(image.clone());
            let replicas_state = state.clone();
            // The first image of this run, and every snapshot, is complete and current:
            // partition directories it does not know are deleted topics.
            let snapshot = batch.snapshot || first;
            first = false;
            let applied = shared.clone();
            // Opening logs does file I/O: keep it off the async workers.
            let changes = tokio::task::spawn_blocking(move || {
                let changes = replicas_state.replicas.apply_image(&applied, now_ms());
                if snapshot {
                    replicas_state.replicas.remove_orphans(&applied);
                }
                changes
            })
            .await
            .unwrap_or_default();
            let context: Arc<dyn FetcherContext> = state.clone();
            state.fetchers.apply(&context, &changes, &shutdown);
            state.groups.on_role_changes(&changes);
            if last_saved.elapsed() >= SAVE_INTERVAL {
                if let Err(e) = persist::save(&saved_dir, &shared) {
                    tracing::warn!(error = %e, "cannot save the metadata image; a restart will fetch it anew");
                }
                last_saved = std::time::Instant::now();
            }
            state.metadata.publish(shared);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
