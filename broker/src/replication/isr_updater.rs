//! Sends the ISR changes leaders propose (expand on catch-up, shrink on lag) to the
//! controller as `AlterPartition` requests, batching whatever is queued, and applies the
//! answers: the committed ISR on success, dropping the proposal on refusal. A leader acts
//! on a new ISR only once the controller has committed it (docs/architecture.md §5). The queue itself
//! is [`super::isr_queue`]; these are the tasks the broker's wiring runs on it.
use std::sync::Arc;
use std::time::Duration;

use spate_metadata::ids::NodeId;
use spate_metadata::ErrorCode;
use spate_proto::controller::{
    AlterPartitionData, AlterPartitionRequest, AlterPartitionTopic, IsrMember,
};
use tokio::sync::watch;

use super::isr_queue::Proposal;
use crate::partition::replica_state::IsrChangeKind;
use crate::state::BrokerState;

/// Answers that mean the change was certainly not made and may be dropped at once.
const ABANDON: [ErrorCode; 2] = [
    ErrorCode::IneligibleReplica,
    ErrorCode::OperationNotAttempted,
];

/// Pause before resending after the controller could not be reached.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Sends queued proposals until shutdown.
pub async fn run(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let Some(mut rx) = state.isr_updater.take_receiver() else {
        return;
    };
    let mut queued: Vec<Proposal> = Vec::new();
    loop {
        if queued.is_empty() {
            tokio::select! {
                item = rx.recv() => match item { Some(i) => queued.push(i), None => return },
                _ = shutdown.changed() => return,
            }
        }
        while let Ok(more) = rx.try_recv() {
            queued.push(more);
        }
        // Only a partition's proposal still in flight matters (a newer one, a committed
        // one or a new leadership replaced the others); one per partition.
        queued.retain(|(p, c)| p.pending_isr_change().as_ref() == Some(c));
        queued.dedup_by(|a, b| Arc::ptr_eq(&a.0, &b.0) && a.1 == b.1);
        if queued.is_empty() {
            continue;
        }
        queued = send(&state, std::mem::take(&mut queued)).await;
        if !queued.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(RETRY_BACKOFF) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Sends one AlterPartition; returns the proposals to retry (controller unreachable).
async fn send(state: &BrokerState, batch: Vec<Proposal>) -> Vec<Proposal> {
    let mut topics: Vec<AlterPartitionTopic> = Vec::new();
    for (p, change) in &batch {
        let data = AlterPartitionData {
            partition: p.tp.partition,
            leader_epoch: change.leader_epoch.0,
            partition_epoch: change.partition_epoch.0,
            new_isr: change
                .new_isr
                .iter()
                .map(|&id| IsrMember {
                    broker_id: id.0,
                    broker_epoch: match &change.kind {
                        IsrChangeKind::Expand {
                            added,
                            broker_epoch: Some(e),
                        } if *added == id => e.0,
                        _ => -1,
                    },
                })
                .collect(),
        };
        match topics.iter_mut().find(|t| t.topic_id == p.topic_id) {
            Some(t) => t.partitions.push(data),
            None => topics.push(AlterPartitionTopic {
                topic_id: p.topic_id.to_vec(),
                partitions: vec![data],
            }),
        }
    }
    let request = AlterPartitionRequest {
        broker_id: state.config.node_id,
        broker_epoch: state.broker_epoch.load(std::sync::atomic::Ordering::SeqCst),
        topics,
    };
    let response = match state.controller.lifecycle() {
        Ok(mut client) => client
            .alter_partition(request)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let response = match response {
        Ok(r) if r.error_code == 0 => r,
        Ok(r) => {
            // STALE_BROKER_EPOCH, NOT_CONTROLLER: nothing was decided; send again once our
            // registration or the quorum has settled.
            tracing::warn!(code = r.error_code, message = %r.error_message, "AlterPartition refused; retrying");
            return batch;
        }
        Err(e) => {
            tracing::debug!(error = %e, "AlterPartition failed; retrying");
            return batch;
        }
    };
    for (p, change) in batch {
        let result = response
            .topics
            .iter()
            .filter(|t| t.topic_id == p.topic_id)
            .flat_map(|t| t.partitions.iter())
            .find(|r| r.partition == p.tp.partition);
        match result {
            Some(r) if r.error_code == 0 => {
                let isr: Vec<NodeId> = r.isr.iter().map(|&id| NodeId(id)).collect();
                state.metrics.isr_change(match change.kind {
                    IsrChangeKind::Expand { .. } => "expand",
                    _ => "shrink",
                });
                p.on_isr_committed(r.leader_epoch, isr, r.partition_epoch);
            }
            Some(r) if ABANDON.contains(&ErrorCode::from_wire(r.error_code)) => {
                tracing::info!(partition = %p.tp, code = r.error_code, message = %r.error_message, "ISR change refused");
                p.on_isr_change_rejected(&change);
            }
            // Any other answer (INVALID_UPDATE_VERSION, FENCED_LEADER_EPOCH, no answer) may
            // follow an earlier attempt that did commit: keep counting the proposed members
            // in the high watermark until a metadata image settles the partition (Kafka's
            // `handleAlterPartitionError`).
            Some(r) => {
                tracing::info!(partition = %p.tp, code = r.error_code, message = %r.error_message, "ISR change not applied; waiting for metadata");
            }
            None => {}
        }
    }
    Vec::new()
}

/// Every `interval`, asks each led partition whether followers lagged too long.
pub async fn expire_lagging(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let lag = state.config.replication.lag_time_max;
    let interval = (lag / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = crate::clock::now_ms();
        for p in state.replicas.all() {
            if let Some(change) = p.maybe_shrink_isr(now, lag.as_millis() as i64) {
                state.isr_updater.propose(p, change);
            }
        }
    }
}
