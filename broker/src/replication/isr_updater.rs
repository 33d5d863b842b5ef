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

/// First pause before resending a proposal the controller did not settle.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause between resends.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);

/// The pause after `attempts` unsettled sends in a row: doubling from
/// [`RETRY_BACKOFF`] up to [`MAX_RETRY_BACKOFF`].
fn retry_backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    (RETRY_BACKOFF * 2u32.pow(doublings)).min(MAX_RETRY_BACKOFF)
}

/// Sends queued proposals until shutdown.
pub async fn run(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let Some(mut rx) = state.isr_updater.take_receiver() else {
        return;
    };
    let mut queued: Vec<Proposal> = Vec::new();
    let mut attempts = 0u32;
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
        if queued.is_empty() {
            attempts = 0;
            continue;
        }
        // Resent after a backoff, unless a metadata image settles them first (the
        // filter above drops a proposal that is no longer pending); a new proposal
        // meanwhile goes out at once, with the others.
        attempts += 1;
        tokio::select! {
            _ = tokio::time::sleep(retry_backoff(attempts)) => {}
            item = rx.recv() => match item { Some(i) => queued.push(i), None => return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Sends one AlterPartition; returns the proposals to send again (controller
/// unreachable, or an answer that settles nothing).
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
    settle(state, batch, &response)
}

/// Applies the controller's answers; returns the proposals it did not settle. A change
/// refused for certain is dropped; any other refusal (INVALID_UPDATE_VERSION,
/// FENCED_LEADER_EPOCH, NOT_CONTROLLER, UNKNOWN_TOPIC_ID, no answer) may follow an
/// earlier attempt that did commit, or a controller that is behind: the proposed members
/// keep counting in the high watermark (Kafka's `handleAlterPartitionError`) and the
/// proposal is resent until it commits or a metadata image replaces it.
fn settle(
    state: &BrokerState,
    batch: Vec<Proposal>,
    response: &spate_proto::controller::AlterPartitionResponse,
) -> Vec<Proposal> {
    let mut unsettled = Vec::new();
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
            Some(r) => {
                tracing::info!(partition = %p.tp, code = r.error_code, message = %r.error_message, "ISR change not applied; resending unless metadata settles it");
                unsettled.push((p, change));
            }
            None => unsettled.push((p, change)),
        }
    }
    unsettled
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

#[cfg(test)]
mod tests {
    use spate_log::{LogConfig, LogDir};
    use spate_proto::controller::{
        AlterPartitionPartitionResult, AlterPartitionResponse, AlterPartitionTopicResult,
    };

    use super::*;
    use crate::partition::{Assignment, Partition, PartitionSettings, TopicPartition};

    /// Broker 1 leads a partition with ISR [1, 2] and proposes dropping the silent 2.
    fn leader_with_pending_shrink(dir: &std::path::Path) -> Proposal {
        let p = Partition::open(
            LogDir::local(dir),
            TopicPartition::new("t", 0),
            [7; 16],
            NodeId(1),
            LogConfig::default(),
            PartitionSettings::default(),
            0,
            None,
        )
        .unwrap();
        let assignment = Assignment {
            replicas: vec![NodeId(1), NodeId(2)],
            isr: vec![NodeId(1), NodeId(2)],
            leader: Some(NodeId(1)),
            leader_epoch: 3,
            partition_epoch: 5,
        };
        p.apply_assignment(&assignment, 0).unwrap();
        let change = p.maybe_shrink_isr(1_000_000, 10).expect("a shrink");
        assert_eq!(p.pending_isr_change().as_ref(), Some(&change));
        (p, change)
    }

    fn answer(code: ErrorCode, isr: &[i32], partition_epoch: i32) -> AlterPartitionResponse {
        AlterPartitionResponse {
            error_code: 0,
            error_message: String::new(),
            topics: vec![AlterPartitionTopicResult {
                topic_id: vec![7; 16],
                partitions: vec![AlterPartitionPartitionResult {
                    partition: 0,
                    error_code: code.proto_code(),
                    error_message: String::new(),
                    leader: 1,
                    leader_epoch: 3,
                    isr: isr.to_vec(),
                    partition_epoch,
                }],
            }],
            metadata_offset: 0,
        }
    }

    #[tokio::test]
    async fn an_answer_that_settles_nothing_is_resent_not_forgotten() {
        let tmp = tempfile::tempdir().unwrap();
        let state = BrokerState::unconnected(tmp.path());
        for code in [
            ErrorCode::NotController,
            ErrorCode::InvalidUpdateVersion,
            ErrorCode::FencedLeaderEpoch,
            ErrorCode::UnknownTopicId,
        ] {
            let dir = tmp.path().join(format!("{code:?}"));
            let (p, change) = leader_with_pending_shrink(&dir);
            let left = settle(
                &state,
                vec![(p.clone(), change.clone())],
                &answer(code, &[], 0),
            );
            assert_eq!(left.len(), 1, "{code:?} must be resent");
            assert_eq!(
                p.pending_isr_change(),
                Some(change),
                "{code:?} keeps it pending"
            );
            p.close().unwrap();
        }
    }

    #[tokio::test]
    async fn commits_and_certain_refusals_are_settled() {
        let tmp = tempfile::tempdir().unwrap();
        let state = BrokerState::unconnected(tmp.path());
        let (p, change) = leader_with_pending_shrink(&tmp.path().join("ok"));
        let left = settle(
            &state,
            vec![(p.clone(), change)],
            &answer(ErrorCode::None, &[1], 6),
        );
        assert!(left.is_empty());
        assert_eq!(p.pending_isr_change(), None);
        assert_eq!(p.leader_state().isr_size, 1);
        let (p, change) = leader_with_pending_shrink(&tmp.path().join("no"));
        let refused = answer(ErrorCode::IneligibleReplica, &[], 0);
        assert!(settle(&state, vec![(p.clone(), change)], &refused).is_empty());
        assert_eq!(p.pending_isr_change(), None);
        // A partition the answer does not mention is resent.
        let (p, change) = leader_with_pending_shrink(&tmp.path().join("missing"));
        let mut silent = answer(ErrorCode::None, &[1], 6);
        silent.topics.clear();
        assert_eq!(settle(&state, vec![(p, change)], &silent).len(), 1);
    }

    #[test]
    fn resends_back_off_exponentially_to_a_bound() {
        assert_eq!(retry_backoff(1), Duration::from_millis(200));
        assert_eq!(retry_backoff(2), Duration::from_millis(400));
        assert_eq!(retry_backoff(5), Duration::from_millis(3_200));
        assert_eq!(retry_backoff(6), MAX_RETRY_BACKOFF);
        assert_eq!(retry_backoff(u32::MAX), MAX_RETRY_BACKOFF);
    }
}
