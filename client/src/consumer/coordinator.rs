//! The member's side of the coordinator: which broker it is (cached, found again when it
//! moves), what a group error asks the member to do, and the heartbeat task.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, GroupId, HeartbeatRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::admin::groups::{find_coordinator, is_coordinator_error};
use crate::cluster::Cluster;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::types::NodeId;

/// What a group error asks the member to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Join again with the same member id (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION).
    Rejoin,
    /// Join again as a new member (UNKNOWN_MEMBER_ID: the coordinator expelled us).
    RejoinAsNewMember,
    /// Ask FindCoordinator again, after a backoff.
    FindCoordinator,
    /// Give up and report the error.
    Fatal,
}

/// The member's reaction to an error from a group request.
pub fn reaction(e: &Error) -> Reaction {
    if is_coordinator_error(e) {
        return Reaction::FindCoordinator;
    }
    match e.kafka_code() {
        Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
            Reaction::Rejoin
        }
        Some(ResponseError::UnknownMemberId) => Reaction::RejoinAsNewMember,
        _ => Reaction::Fatal,
    }
}

/// The coordinator of one group, cached until it fails.
#[derive(Clone)]
pub(crate) struct Coordinator {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) group: String,
    pub(crate) node: Option<NodeId>,
}

impl Coordinator {
    /// Runs `op` on the coordinator's connection, finding it again (with backoff) on
    /// NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS or a
    /// transport error, up to the client's retry count.
    pub(crate) async fn call<T, F, Fut>(&mut self, mut op: F) -> Result<T>
    where
        F: FnMut(Arc<Connection>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            let r = match self.connection().await {
                Ok(conn) => op(conn).await,
                Err(e) => Err(e),
            };
            match r {
                Err(e) if is_coordinator_error(&e) && attempt < self.cluster.config().retries => {
                    tracing::debug!(group = %self.group, error = %e, "finding the coordinator again");
                    self.node = None;
                    tokio::time::sleep(self.cluster.config().backoff(attempt)).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn connection(&mut self) -> Result<Arc<Connection>> {
        let node = match self.node {
            Some(n) => n,
            None => {
                let n = find_coordinator(&self.cluster, &self.group).await?;
                self.node = Some(n);
                n
            }
        };
        self.cluster.connection(node).await
    }
}

/// The heartbeat task of one generation; it ends when the generation does.
pub(crate) struct Heartbeat {
    pub(crate) coordinator: Coordinator,
    pub(crate) member_id: String,
    pub(crate) generation_id: i32,
    pub(crate) interval: Duration,
    pub(crate) pending: Arc<Mutex<Option<Error>>>,
}

impl Heartbeat {
    pub(crate) async fn run(mut self) {
        let group = self.coordinator.group.clone();
        let mut failures = 0u32;
        loop {
            tokio::time::sleep(self.interval).await;
            let r = self.beat(&group).await;
            let Err(e) = r else {
                failures = 0;
                continue;
            };
            match reaction(&e) {
                Reaction::FindCoordinator => {
                    // `call` already retried; keep trying until the session would expire,
                    // when the coordinator answers UNKNOWN_MEMBER_ID and we rejoin.
                    failures += 1;
                    tracing::debug!(%group, error = %e, failures, "heartbeat failed");
                    self.coordinator.node = None;
                }
                _ => {
                    if let Ok(mut p) = self.pending.lock() {
                        p.get_or_insert(e);
                    }
                    return;
                }
            }
        }
    }

    async fn beat(&mut self, group: &str) -> Result<()> {
        let (member_id, generation_id) = (&self.member_id, self.generation_id);
        self.coordinator
            .call(|conn| async move {
                let version = conn.api_version(ApiKey::Heartbeat)?;
                let req = HeartbeatRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                    .with_generation_id(generation_id)
                    .with_member_id(StrBytes::from_string(member_id.clone()));
                let resp = conn.request(version, &req).await?;
                match Error::from_code(
                    resp.error_code,
                    None,
                    format!("heartbeat of group '{group}'"),
                ) {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: ResponseError) -> Error {
        Error::kafka(code, None, "x")
    }

    #[test]
    fn reactions_follow_the_java_client() {
        assert_eq!(
            reaction(&err(ResponseError::RebalanceInProgress)),
            Reaction::Rejoin
        );
        assert_eq!(
            reaction(&err(ResponseError::IllegalGeneration)),
            Reaction::Rejoin
        );
        assert_eq!(
            reaction(&err(ResponseError::UnknownMemberId)),
            Reaction::RejoinAsNewMember
        );
        for c in [
            ResponseError::NotCoordinator,
            ResponseError::CoordinatorNotAvailable,
            ResponseError::CoordinatorLoadInProgress,
        ] {
            assert_eq!(reaction(&err(c)), Reaction::FindCoordinator);
        }
        assert_eq!(
            reaction(&err(ResponseError::GroupAuthorizationFailed)),
            Reaction::Fatal
        );
        assert_eq!(
            reaction(&err(ResponseError::InconsistentGroupProtocol)),
            Reaction::Fatal
        );
    }
}
