//! Acting as the active controller: taking the decision lock, checking leadership, and
//! proposing records through Raft. Kafka's controller is single threaded; here one async
//! mutex plays that role, so two decisions never race on the same image.

use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, RaftError};
use openraft::BasicNode;
use spate_proto::metadata::MetadataRecord;
use tokio::sync::MutexGuard;

use super::{ControllerService, DecisionState};
use crate::decisions::ControllerResult;
use crate::error::ControllerError;
use crate::types::{RaftNodeId, RecordBatch};
use spate_metadata::MetadataImage;

/// How long a proposal may wait for commit before the request answers REQUEST_TIMED_OUT.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a new leader may take to confirm leadership and catch its image up; bounded
/// so a leader that lost its quorum does not hold the decision lock forever.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

fn fatal(e: Fatal<RaftNodeId>) -> ControllerError {
    match e {
        Fatal::Stopped => ControllerError::ShuttingDown,
        other => ControllerError::Raft(other.to_string()),
    }
}

fn write_error(
    e: RaftError<RaftNodeId, ClientWriteError<RaftNodeId, BasicNode>>,
) -> ControllerError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ControllerError::NotController {
                leader: f.leader_id,
            }
        }
        RaftError::APIError(other) => ControllerError::Raft(other.to_string()),
        RaftError::Fatal(f) => fatal(f),
    }
}

fn check_leader_error(
    e: RaftError<RaftNodeId, CheckIsLeaderError<RaftNodeId, BasicNode>>,
) -> ControllerError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
            ControllerError::NotController {
                leader: f.leader_id,
            }
        }
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            ControllerError::Timeout(q.to_string())
        }
        RaftError::Fatal(f) => fatal(f),
    }
}

impl ControllerService {
    /// The current leader and term as this node sees them.
    pub(crate) fn leader_and_term(&self) -> (Option<RaftNodeId>, u64) {
        let rx = self.shared.raft.metrics();
        let m = rx.borrow();
        (m.current_leader, m.current_term)
    }

    /// Takes the decision lock as the active controller, or fails with `NotController`.
    pub(crate) async fn lead(&self) -> Result<MutexGuard<'_, DecisionState>, ControllerError> {
        let mut st = self.shared.decider.lock().await;
        let (leader, term) = self.leader_and_term();
        if leader != Some(self.shared.node_id) {
            return Err(ControllerError::NotController { leader });
        }
        if st.active_term != Some(term) {
            // First decision in this term: make sure the image holds everything earlier
            // leaders committed, then give every broker a fresh session, since their
            // heartbeats went to the previous leader (docs/architecture.md §4).
            let sync = self.shared.raft.ensure_linearizable();
            tokio::time::timeout(SYNC_TIMEOUT, sync)
                .await
                .map_err(|_| {
                    ControllerError::Timeout(format!(
                        "no quorum confirmed leadership within {SYNC_TIMEOUT:?}"
                    ))
                })?
                .map_err(check_leader_error)?;
            // Fenced brokers hold no session (they have nothing to lose by expiring), so
            // one that stopped cleanly re-registers at once; a live fenced broker gets
            // its session back with its next heartbeat.
            let brokers: Vec<_> = self.shared.view.with_image(|i| {
                i.brokers()
                    .iter()
                    .filter(|(_, b)| !b.fenced)
                    .map(|(id, _)| *id)
                    .collect()
            });
            st.sessions.activate(brokers, Instant::now());
            st.active_term = Some(term);
            tracing::info!(term, "active controller: broker sessions reset");
        }
        // Decide only on an image holding every entry this leader has appended: a proposal
        // whose wait timed out may still commit, and deciding without it could, e.g.,
        // create the same topic twice. Normally this holds at once (each proposal waits for
        // its apply); otherwise wait, bounded, and refuse to decide if it does not come.
        let last_appended = self.shared.raft.metrics().borrow().last_log_index;
        if let Some(last) = last_appended {
            self.shared
                .raft
                .wait(Some(SYNC_TIMEOUT))
                .applied_index_at_least(Some(last), "earlier proposals applied")
                .await
                .map_err(|e| {
                    ControllerError::Timeout(format!(
                        "earlier metadata proposals not applied within {SYNC_TIMEOUT:?}: {e}"
                    ))
                })?;
        }
        Ok(st)
    }

    /// Commits records as one batch; returns its metadata offset once applied here.
    pub(crate) async fn propose(
        &self,
        st: &mut DecisionState,
        records: Vec<MetadataRecord>,
    ) -> Result<u64, ControllerError> {
        let write = self.shared.raft.client_write(RecordBatch::encode(&records));
        match tokio::time::timeout(PROPOSE_TIMEOUT, write).await {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => {
                st.active_term = None;
                Err(write_error(e))
            }
            Err(_) => {
                // The batch may still commit later; re-syncing on the next decision keeps
                // us from deciding on an image that misses it for longer than needed.
                st.active_term = None;
                Err(ControllerError::Timeout(format!(
                    "metadata commit took longer than {PROPOSE_TIMEOUT:?}"
                )))
            }
        }
    }

    /// Decides against the current image under the decision lock and commits the records;
    /// returns the response and the commit offset (`None` if there was nothing to commit).
    pub(crate) async fn decide<R>(
        &self,
        decide: impl FnOnce(&MetadataImage, &mut DecisionState) -> ControllerResult<R>,
    ) -> Result<(R, Option<u64>), ControllerError> {
        let mut st = self.lead().await?;
        let result = self.shared.view.with_image(|image| decide(image, &mut st));
        if result.records.is_empty() {
            return Ok((result.response, None));
        }
        let offset = self.propose(&mut st, result.records).await?;
        Ok((result.response, Some(offset)))
    }
}
