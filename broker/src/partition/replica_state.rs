//! Replica state of one partition as pure decisions (docs/architecture.md §5, STYLE "Decisions as pure
//! functions"): the leader's view of its followers (LEO, caught-up time), the ISR and its
//! pending change, and the high watermark; plus the follower-side truncation rule.
//!
//! No I/O, no clock, no async: time is an explicit `now_ms`. Callers feed events
//! (append, flush, follower fetch, AlterPartition result) and act on what comes back
//! (publish the new HW, send the proposed `AlterPartition`).

use std::collections::BTreeMap;

use spate_metadata::ids::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch};

use spate_log::{EpochEntry, LeaderEpochCache};

/// A decision input the replica state cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaStateError {
    /// The leader must be one of the replicas and in the ISR it is handed.
    #[error("broker {leader} cannot lead: it is not in replicas {replicas:?} and ISR {isr:?}")]
    LeaderNotInIsr {
        /// This broker.
        leader: NodeId,
        /// Assigned replicas.
        replicas: Vec<NodeId>,
        /// ISR handed over.
        isr: Vec<NodeId>,
    },
    /// A fetch came from a broker that is not a follower of this partition.
    #[error("broker {0} is not a follower replica of this partition; check the assignment")]
    NotAFollower(NodeId),
    /// A follower fetched beyond the leader's log end (Kafka: OFFSET_OUT_OF_RANGE).
    #[error("fetch offset {fetch_offset} is outside the leader log [0, {log_end_offset}]")]
    FetchOffsetOutOfRange {
        /// Offset asked for.
        fetch_offset: i64,
        /// Leader LEO at the time.
        log_end_offset: i64,
    },
    /// The leader's log end offset moved backwards (the leader never truncates).
    #[error("leader log end offset went back from {previous} to {new}")]
    LeoWentBackwards {
        /// LEO before.
        previous: i64,
        /// LEO reported.
        new: i64,
    },
    /// An ISR update older than what this leader already holds.
    #[error("ISR update at partition epoch {got} is older than the known epoch {known}")]
    StalePartitionEpoch {
        /// Epoch held.
        known: PartitionEpoch,
        /// Epoch offered.
        got: PartitionEpoch,
    },
    /// Two different ISRs claimed the same partition epoch.
    #[error("partition epoch {epoch} already holds ISR {known:?}, not {got:?}")]
    ConflictingIsr {
        /// Epoch both claim.
        epoch: PartitionEpoch,
        /// ISR held.
        known: Vec<NodeId>,
        /// ISR offered.
        got: Vec<NodeId>,
    },
    /// A committed ISR that drops the leader: this broker no longer leads.
    #[error("committed ISR {0:?} does not contain the leader; wait for the leader change")]
    IsrWithoutLeader(Vec<NodeId>),
    /// The leader answered OffsetForLeaderEpoch with an epoch above the one asked.
    #[error("leader answered epoch {answered} to a request for epoch {asked}")]
    EpochAnswerTooNew {
        /// Epoch asked.
        asked: LeaderEpoch,
        /// Epoch answered.
        answered: LeaderEpoch,
    },
}

/// acks=all cannot start: the committed ISR is below `min.insync.replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ISR has {isr_size} members, below min.insync.replicas={min_insync} (NOT_ENOUGH_REPLICAS)")]
pub struct NotEnough {
    /// Members of the committed ISR.
    pub isr_size: usize,
    /// Configured `min.insync.replicas`.
    pub min_insync: usize,
}

/// How an acks=all produce waiting on the HW stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksAll {
    /// The HW has not reached the batch yet.
    Waiting,
    /// The HW passed the batch with enough replicas in the ISR.
    Done,
    /// The HW passed the batch, but the ISR shrank below min.insync meanwhile.
    NotEnoughReplicasAfterAppend,
}

/// What a proposed ISR change does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrChangeKind {
    /// A follower caught up: add it (KIP-903: with the broker epoch it fetched under).
    Expand {
        /// The follower joining.
        added: NodeId,
        /// Its broker epoch as reported with its fetches.
        broker_epoch: Option<BrokerEpoch>,
    },
    /// Followers fell behind for longer than the lag time: remove them.
    Shrink {
        /// The followers leaving.
        removed: Vec<NodeId>,
    },
}

/// A proposed `AlterPartition`: compare-and-set against `partition_epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    /// Expansion or shrink.
    pub kind: IsrChangeKind,
    /// The full ISR asked for.
    pub new_isr: Vec<NodeId>,
    /// Leader epoch the leader holds.
    pub leader_epoch: LeaderEpoch,
    /// Partition epoch the change is based on.
    pub partition_epoch: PartitionEpoch,
}

/// Result of a follower fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The new HW when it advanced.
    pub high_watermark: Option<i64>,
    /// An expansion to send to the controller.
    pub isr_change: Option<IsrChange>,
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerState {
    /// Follower LEO (its last fetch offset); `None` until it fetches under this leader.
    pub log_end_offset: Option<i64>,
    /// Last time it had reached the leader's LEO.
    pub last_caught_up_ms: i64,
    /// Time of its last fetch.
    pub last_fetch_ms: Option<i64>,
    /// Leader LEO at its last fetch (Kafka's `lastFetchLeaderLogEndOffset`).
    pub last_fetch_leader_leo: i64,
    /// Its broker epoch as reported with its fetches.
    pub broker_epoch: Option<BrokerEpoch>,
}

/// Everything `become_leader` needs from the metadata image and the local log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderStart {
    /// This broker.
    pub local_id: NodeId,
    /// New leader epoch.
    pub leader_epoch: LeaderEpoch,
    /// Partition epoch of the committed state.
    pub partition_epoch: PartitionEpoch,
    /// Assigned replicas, leader included.
    pub replicas: Vec<NodeId>,
    /// Committed ISR, leader included.
    pub isr: Vec<NodeId>,
    /// Local LEO when leadership starts.
    pub log_end_offset: i64,
    /// Local fsynced offset.
    pub durable_offset: i64,
    /// Local HW (from the checkpoint or as follower).
    pub high_watermark: i64,
    /// First offset of this leader epoch (the LEO when it began).
    pub leader_epoch_start_offset: i64,
    /// Whether acks wait on fsync: then the leader counts only its durable prefix.
    pub fsync_before_ack: bool,
    /// The topic's `min.insync.replicas`: the HW stands still while the committed ISR is
    /// smaller (KIP-966's strict min-ISR, what keeps the ELR's promise).
    pub min_insync: usize,
}

/// Leader-side state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    local_id: NodeId,
    leader_epoch: LeaderEpoch,
    partition_epoch: PartitionEpoch,
    replicas: Vec<NodeId>,
    isr: Vec<NodeId>,
    followers: BTreeMap<NodeId, FollowerState>,
    leader_leo: i64,
    durable: i64,
    fsync_before_ack: bool,
    min_insync: usize,
    high_watermark: i64,
    leader_epoch_start_offset: i64,
    pending: Option<IsrChange>,
}

impl ReplicaState {
    /// Takes leadership: follower state is reset (Kafka `Replica.resetReplicaState`).
    pub fn become_leader(start: LeaderStart, now_ms: i64) -> Result<Self, ReplicaStateError> {
        if !start.isr.contains(&start.local_id) || !start.replicas.contains(&start.local_id) {
            return Err(ReplicaStateError::LeaderNotInIsr {
                leader: start.local_id,
                replicas: start.replicas,
                isr: start.isr,
            });
        }
        // Followers start with an unknown LEO (they hold the HW until they fetch) but
        // "caught up now", so a fresh leader does not shrink the ISR at once.
        let followers = start
            .replicas
            .iter()
            .filter(|&&id| id != start.local_id)
            .map(|&id| {
                let state = FollowerState {
                    log_end_offset: None,
                    last_caught_up_ms: now_ms,
                    last_fetch_ms: None,
                    last_fetch_leader_leo: start.log_end_offset,
                    broker_epoch: None,
                };
                (id, state)
            })
            .collect();
        let mut state = ReplicaState {
            local_id: start.local_id,
            leader_epoch: start.leader_epoch,
            partition_epoch: start.partition_epoch,
            replicas: start.replicas,
            isr: start.isr,
            followers,
            leader_leo: start.log_end_offset,
            durable: start.durable_offset,
            fsync_before_ack: start.fsync_before_ack,
            min_insync: start.min_insync.max(1),
            high_watermark: start.high_watermark,
            leader_epoch_start_offset: start.leader_epoch_start_offset,
            pending: None,
        };
        state.maybe_advance_hw();
        Ok(state)
    }

    /// The leader appended up to `new_leo`; returns the new HW if it advanced.
    pub fn on_leader_append(&mut self, new_leo: i64) -> Result<Option<i64>, ReplicaStateError> {
        if new_leo < self.leader_leo {
            return Err(ReplicaStateError::LeoWentBackwards {
                previous: self.leader_leo,
                new: new_leo,
            });
        }
        self.leader_leo = new_leo;
        Ok(self.maybe_advance_hw())
    }

    /// Everything below `durable` is fsynced; returns the new HW if it advanced.
    pub fn on_leader_flushed(&mut self, durable: i64) -> Option<i64> {
        self.durable = self.durable.max(durable);
        self.maybe_advance_hw()
    }

    /// A follower fetched at `fetch_offset`: it holds everything below it.
    pub fn on_follower_fetch(
        &mut self,
        follower: NodeId,
        fetch_offset: i64,
        broker_epoch: BrokerEpoch,
        now_ms: i64,
    ) -> Result<FetchOutcome, ReplicaStateError> {
        let leader_leo = self.leader_leo;
        if fetch_offset < 0 || fetch_offset > leader_leo {
            return Err(ReplicaStateError::FetchOffsetOutOfRange {
                fetch_offset,
                log_end_offset: leader_leo,
            });
        }
        let f = self
            .followers
            .get_mut(&follower)
            .ok_or(ReplicaStateError::NotAFollower(follower))?;
        // Kafka `Replica.updateFetchStateOrThrow`: at the leader's LEO it is caught up
        // now; at the LEO the leader had at its previous fetch, it was caught up then.
        if fetch_offset >= leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if let Some(prev) = f
            .last_fetch_ms
            .filter(|_| fetch_offset >= f.last_fetch_leader_leo)
        {
            f.last_caught_up_ms = f.last_caught_up_ms.max(prev);
        }
        f.last_fetch_leader_leo = leader_leo;
        f.last_fetch_ms = Some(now_ms);
        f.log_end_offset = Some(fetch_offset);
        f.broker_epoch = Some(broker_epoch);

        // Kafka `Partition.maybeExpandIsr` runs before `maybeIncrementLeaderHW`.
        let isr_change = self.maybe_expand_isr(follower, fetch_offset, broker_epoch);
        Ok(FetchOutcome {
            high_watermark: self.maybe_advance_hw(),
            isr_change,
        })
    }

    /// Kafka `isFollowerInSync`: the follower reached the HW and the start of this
    /// leader epoch, so it holds every record this leader may have committed.
    fn maybe_expand_isr(
        &mut self,
        follower: NodeId,
        follower_leo: i64,
        broker_epoch: BrokerEpoch,
    ) -> Option<IsrChange> {
        let eligible = self.pending.is_none()
            && !self.isr.contains(&follower)
            && follower_leo >= self.high_watermark
            && follower_leo >= self.leader_epoch_start_offset;
        if !eligible {
            return None;
        }
        let mut new_isr = self.isr.clone();
        new_isr.push(follower);
        self.propose(
            IsrChangeKind::Expand {
                added: follower,
                broker_epoch: Some(broker_epoch),
            },
            new_isr,
        )
    }

    /// Proposes removing ISR followers that have not caught up within the lag time
    /// (Kafka `getOutOfSyncReplicas`): one at the leader's LEO is never out of sync.
    pub fn maybe_shrink_isr(
        &mut self,
        now_ms: i64,
        replica_lag_time_max_ms: i64,
    ) -> Option<IsrChange> {
        if self.pending.is_some() {
            return None;
        }
        let removed: Vec<NodeId> = self
            .isr
            .iter()
            .filter(|&&id| id != self.local_id)
            .filter(|id| {
                self.followers.get(id).is_some_and(|f| {
                    f.log_end_offset != Some(self.leader_leo)
                        && now_ms - f.last_caught_up_ms > replica_lag_time_max_ms
                })
            })
            .copied()
            .collect();
        if removed.is_empty() {
            return None;
        }
        let new_isr = self
            .isr
            .iter()
            .filter(|id| !removed.contains(id))
            .copied()
            .collect();
        self.propose(IsrChangeKind::Shrink { removed }, new_isr)
    }

    fn propose(&mut self, kind: IsrChangeKind, new_isr: Vec<NodeId>) -> Option<IsrChange> {
        let change = IsrChange {
            kind,
            new_isr,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
        };
        self.pending = Some(change.clone());
        Some(change)
    }

    /// The controller committed `new_isr` (AlterPartition answer or metadata record);
    /// returns the new HW if it advanced (a shrink can release it).
    pub fn on_isr_committed(
        &mut self,
        new_isr: Vec<NodeId>,
        new_partition_epoch: PartitionEpoch,
    ) -> Result<Option<i64>, ReplicaStateError> {
        if new_partition_epoch < self.partition_epoch {
            return Err(ReplicaStateError::StalePartitionEpoch {
                known: self.partition_epoch,
                got: new_partition_epoch,
            });
        }
        if new_partition_epoch == self.partition_epoch {
            // The same commit seen twice (response and metadata log) is fine.
            return if same_members(&new_isr, &self.isr) {
                Ok(None)
            } else {
                Err(ReplicaStateError::ConflictingIsr {
                    epoch: self.partition_epoch,
                    known: self.isr.clone(),
                    got: new_isr,
                })
            };
        }
        if !new_isr.contains(&self.local_id) {
            return Err(ReplicaStateError::IsrWithoutLeader(new_isr));
        }
        self.isr = new_isr;
        self.partition_epoch = new_partition_epoch;
        self.pending = None;
        Ok(self.maybe_advance_hw())
    }

    /// The controller refused the pending change (e.g. INVALID_UPDATE_VERSION): drop it
    /// so a later event can propose again; returns the new HW if it advanced.
    pub fn on_isr_change_rejected(&mut self) -> Option<i64> {
        self.pending = None;
        self.maybe_advance_hw()
    }

    /// HW = min LEO over the maximal ISR, the leader counting `min(LEO, durable)` when
    /// acks wait on fsync; never moves backwards (Kafka `maybeIncrementLeaderHW`). It
    /// does not move at all while the committed ISR is below `min.insync.replicas`
    /// (strict min-ISR, KIP-966): the replicas that left meanwhile are eligible leaders
    /// because they hold everything below it.
    fn maybe_advance_hw(&mut self) -> Option<i64> {
        if self.isr.len() < self.min_insync {
            return None;
        }
        let mut candidate = self.leader_contribution();
        for id in self.maximal_isr() {
            if id == self.local_id {
                continue;
            }
            // A member that has not fetched under this leader holds the HW.
            match self.followers.get(&id).and_then(|f| f.log_end_offset) {
                Some(leo) => candidate = candidate.min(leo),
                None => return None,
            }
        }
        (candidate > self.high_watermark).then(|| {
            self.high_watermark = candidate;
            candidate
        })
    }

    fn leader_contribution(&self) -> i64 {
        if self.fsync_before_ack {
            self.leader_leo.min(self.durable)
        } else {
            self.leader_leo
        }
    }

    /// The leader's high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The ISR as last committed by the controller.
    pub fn isr(&self) -> &[NodeId] {
        &self.isr
    }

    /// Committed ISR plus pending additions (KIP-497): what the HW waits on.
    pub fn maximal_isr(&self) -> Vec<NodeId> {
        let mut out = self.isr.clone();
        if let Some(p) = &self.pending {
            out.extend(p.new_isr.iter().filter(|id| !self.isr.contains(id)));
        }
        out
    }

    /// The ISR change in flight, if any.
    pub fn pending_isr_change(&self) -> Option<&IsrChange> {
        self.pending.as_ref()
    }

    /// The leader epoch held.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    /// The partition epoch of the committed state.
    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }

    /// The leader's LEO.
    pub fn log_end_offset(&self) -> i64 {
        self.leader_leo
    }

    /// Whether the leader counts only its fsynced prefix (topic config changed).
    pub fn set_fsync_before_ack(&mut self, fsync_before_ack: bool) {
        self.fsync_before_ack = fsync_before_ack;
    }

    /// The topic's `min.insync.replicas` changed; returns the new HW if it advanced.
    pub fn set_min_insync(&mut self, min_insync: usize) -> Option<i64> {
        self.min_insync = min_insync.max(1);
        self.maybe_advance_hw()
    }

    /// Every follower and what the leader knows of it.
    pub fn followers(&self) -> impl Iterator<Item = (NodeId, &FollowerState)> {
        self.followers.iter().map(|(id, f)| (*id, f))
    }

    /// What the leader knows of `follower`.
    pub fn follower(&self, follower: NodeId) -> Option<&FollowerState> {
        self.followers.get(&follower)
    }

    /// acks=all may append only when the committed ISR meets `min.insync.replicas`.
    pub fn can_accept_acks_all(&self, min_insync: usize) -> Result<(), NotEnough> {
        if self.isr.len() < min_insync {
            return Err(NotEnough {
                isr_size: self.isr.len(),
                min_insync,
            });
        }
        Ok(())
    }

    /// Whether the HW has passed a batch ending (exclusively) at `end_offset`.
    pub fn acks_all_done(&self, end_offset: i64) -> bool {
        self.high_watermark >= end_offset
    }

    /// acks=all status after append (Kafka `checkEnoughReplicasReachOffset`).
    /// Below min.insync the HW stands still, so a batch not yet committed never will be
    /// under this ISR: it is answered at once rather than left to time out.
    pub fn acks_all_status(&self, end_offset: i64, min_insync: usize) -> AcksAll {
        if self.isr.len() < min_insync {
            AcksAll::NotEnoughReplicasAfterAppend
        } else if !self.acks_all_done(end_offset) {
            AcksAll::Waiting
        } else {
            AcksAll::Done
        }
    }
}

fn same_members(a: &[NodeId], b: &[NodeId]) -> bool {
    a.len() == b.len() && a.iter().all(|id| b.contains(id))
}

/// A follower's HW: the leader's, capped by what it holds.
pub fn follower_high_watermark(leader_hw: i64, own_leo: i64) -> i64 {
    leader_hw.min(own_leo)
}

/// One round of follower truncation (KIP-101, KIP-279).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Truncate to this offset and start fetching.
    Done(i64),
    /// Truncate to this offset, then ask the leader again for the (now) latest epoch.
    Partial(i64),
}

/// The epoch to ask the leader about: our latest. `None`: no epochs, truncate to the HW.
pub fn epoch_to_ask(local: &[EpochEntry]) -> Option<LeaderEpoch> {
    local.last().map(|e| LeaderEpoch(e.epoch))
}

/// One round of Kafka's `AbstractFetcherThread.getOffsetTruncationState`.
///
/// `leader_answer` is the OffsetForLeaderEpoch reply, `None` when the leader knows no
/// end offset (-1): then truncate to our HW. Otherwise find our largest epoch at or
/// below the one answered: if it is that epoch, truncate to min(leader end, our end,
/// LEO); if not, truncate to our end of it and ask again (KIP-279).
pub fn truncation_step(
    local: &[EpochEntry],
    local_leo: i64,
    local_hw: i64,
    asked: LeaderEpoch,
    leader_answer: Option<(LeaderEpoch, i64)>,
) -> Result<Truncation, ReplicaStateError> {
    let Some((answered, leader_end)) = leader_answer.filter(|&(e, o)| e.0 >= 0 && o >= 0) else {
        return Ok(Truncation::Done(local_hw.min(local_leo)));
    };
    if answered > asked {
        return Err(ReplicaStateError::EpochAnswerTooNew { asked, answered });
    }
    let cache = LeaderEpochCache::from_entries(local.to_vec());
    match cache.end_offset_for(answered.0, local_leo) {
        // We hold no epoch at or below the leader's: its end offset decides.
        (_, own_end) if own_end < 0 => Ok(Truncation::Done(leader_end.min(local_leo))),
        (own_epoch, own_end) if own_epoch == answered.0 => {
            Ok(Truncation::Done(leader_end.min(own_end).min(local_leo)))
        }
        (_, own_end) => Ok(Truncation::Partial(own_end.min(local_leo))),
    }
}

/// Runs the truncation rounds against `ask` (the OffsetForLeaderEpoch call) and returns
/// the offset to truncate the log to. Each partial round drops our epochs from the
/// truncation point on, so the epoch asked strictly decreases and the loop ends.
pub fn truncation_offset(
    local: &[EpochEntry],
    local_leo: i64,
    local_hw: i64,
    mut ask: impl FnMut(LeaderEpoch) -> Option<(LeaderEpoch, i64)>,
) -> Result<i64, ReplicaStateError> {
    let mut cache = LeaderEpochCache::from_entries(local.to_vec());
    let mut leo = local_leo;
    loop {
        let Some(asked) = epoch_to_ask(cache.entries()) else {
            return Ok(local_hw.min(leo));
        };
        match truncation_step(cache.entries(), leo, local_hw, asked, ask(asked))? {
            Truncation::Done(offset) => return Ok(offset),
            Truncation::Partial(offset) => {
                cache.truncate_from_end(offset);
                leo = offset;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: NodeId = NodeId(1);
    const F2: NodeId = NodeId(2);
    const F3: NodeId = NodeId(3);
    const BE: BrokerEpoch = BrokerEpoch(7);
    const LAG: i64 = 10_000;

    fn start(isr: &[i32], leo: i64, epoch_start: i64, fsync: bool) -> LeaderStart {
        LeaderStart {
            local_id: L,
            leader_epoch: LeaderEpoch(5),
            partition_epoch: PartitionEpoch(10),
            replicas: vec![L, F2, F3],
            isr: isr.iter().map(|&i| NodeId(i)).collect(),
            log_end_offset: leo,
            durable_offset: leo,
            high_watermark: 0,
            leader_epoch_start_offset: epoch_start,
            fsync_before_ack: fsync,
            min_insync: 1,
        }
    }

    fn leader(isr: &[i32], leo: i64) -> ReplicaState {
        ReplicaState::become_leader(start(isr, leo, 0, false), 0).unwrap()
    }

    fn fetch(s: &mut ReplicaState, f: NodeId, off: i64, now: i64) -> FetchOutcome {
        s.on_follower_fetch(f, off, BE, now).unwrap()
    }

    fn entries(e: &[(i32, i64)]) -> Vec<EpochEntry> {
        e.iter()
            .map(|&(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect()
    }

    #[test]
    fn hw_is_min_of_isr_leos() {
        let mut s = leader(&[1, 2, 3], 100);
        assert_eq!(
            fetch(&mut s, F2, 100, 1).high_watermark,
            None,
            "F3 unknown holds it"
        );
        assert_eq!(fetch(&mut s, F3, 60, 1).high_watermark, Some(60));
        assert_eq!(fetch(&mut s, F3, 90, 2).high_watermark, Some(90));
        assert_eq!(s.high_watermark(), 90);
    }

    #[test]
    fn hw_ignores_non_isr_followers() {
        let mut s = ReplicaState::become_leader(start(&[1, 2], 100, 100, false), 0).unwrap();
        assert_eq!(
            fetch(&mut s, F3, 0, 1).isr_change,
            None,
            "below the epoch start"
        );
        assert_eq!(fetch(&mut s, F2, 80, 1).high_watermark, Some(80));
    }

    #[test]
    fn hw_waits_for_leader_durable_offset_when_fsyncing() {
        let mut st = start(&[1, 2], 100, 0, true);
        st.durable_offset = 40;
        let mut s = ReplicaState::become_leader(st, 0).unwrap();
        assert_eq!(fetch(&mut s, F2, 100, 1).high_watermark, Some(40));
        assert_eq!(s.on_leader_flushed(100), Some(100));
        // Without fsync-before-ack the leader counts its whole LEO.
        let mut st = start(&[1, 2], 100, 0, false);
        st.durable_offset = 40;
        let mut s = ReplicaState::become_leader(st, 0).unwrap();
        assert_eq!(fetch(&mut s, F2, 100, 1).high_watermark, Some(100));
    }

    #[test]
    fn single_replica_hw_follows_appends() {
        let mut s = leader(&[1], 0);
        assert_eq!(s.on_leader_append(5), Ok(Some(5)));
        assert!(matches!(
            s.on_leader_append(4),
            Err(ReplicaStateError::LeoWentBackwards { .. })
        ));
    }

    #[test]
    fn hw_never_moves_backwards() {
        let mut s = leader(&[1, 2], 100);
        fetch(&mut s, F2, 80, 1);
        assert_eq!(s.high_watermark(), 80);
        // A follower restarting lower (or a later ISR commit) must not pull it back.
        assert_eq!(fetch(&mut s, F2, 50, 2).high_watermark, None);
        assert_eq!(s.high_watermark(), 80);
        let mut st = start(&[1, 2], 100, 0, false);
        st.high_watermark = 70;
        let mut s = ReplicaState::become_leader(st, 0).unwrap();
        fetch(&mut s, F2, 30, 1);
        assert_eq!(s.high_watermark(), 70);
    }

    #[test]
    fn hw_counts_pending_expansion_in_maximal_isr() {
        let mut s = leader(&[1, 2], 100);
        fetch(&mut s, F2, 100, 1);
        assert_eq!(s.high_watermark(), 100);
        s.on_leader_append(150).unwrap();
        let out = fetch(&mut s, F3, 100, 2);
        assert!(
            matches!(out.isr_change.unwrap().kind, IsrChangeKind::Expand { added, .. } if added == F3)
        );
        assert_eq!(s.isr(), &[L, F2]);
        assert_eq!(s.maximal_isr(), vec![L, F2, F3]);
        assert_eq!(
            fetch(&mut s, F2, 150, 3).high_watermark,
            None,
            "F3 at 100 holds the HW"
        );
        assert_eq!(fetch(&mut s, F3, 150, 3).high_watermark, Some(150));
    }

    #[test]
    fn shrink_exactly_after_lag_time() {
        let mut s = leader(&[1, 2, 3], 100);
        fetch(&mut s, F2, 100, 1_000);
        fetch(&mut s, F3, 100, 1_000);
        s.on_leader_append(200).unwrap();
        fetch(&mut s, F2, 200, 5_000);
        assert_eq!(
            s.maybe_shrink_isr(1_000 + LAG, LAG),
            None,
            "exactly the lag time: in sync"
        );
        let change = s.maybe_shrink_isr(1_000 + LAG + 1, LAG).unwrap();
        assert_eq!(change.kind, IsrChangeKind::Shrink { removed: vec![F3] });
        assert_eq!(change.new_isr, vec![L, F2]);
        assert_eq!(change.partition_epoch, PartitionEpoch(10));
        assert_eq!(change.leader_epoch, LeaderEpoch(5));
    }

    #[test]
    fn fresh_leader_does_not_shrink_at_once() {
        let mut s =
            ReplicaState::become_leader(start(&[1, 2, 3], 100, 100, false), 50_000).unwrap();
        assert_eq!(s.maybe_shrink_isr(50_000 + LAG, LAG), None);
        assert!(s.maybe_shrink_isr(50_000 + LAG + 1, LAG).is_some());
    }

    #[test]
    fn follower_at_leader_leo_is_never_out_of_sync() {
        let mut s = leader(&[1, 2], 100);
        fetch(&mut s, F2, 100, 0);
        assert_eq!(
            s.maybe_shrink_isr(10 * LAG, LAG),
            None,
            "no appends: still caught up"
        );
    }

    #[test]
    fn caught_up_to_previous_fetch_leo_counts_from_previous_fetch() {
        let mut s = leader(&[1, 2], 100);
        fetch(&mut s, F2, 50, 1_000); // leader LEO 100 at this fetch
        s.on_leader_append(200).unwrap();
        fetch(&mut s, F2, 100, 3_000); // reached the LEO of its previous fetch
        assert_eq!(s.follower(F2).unwrap().last_caught_up_ms, 1_000);
        assert_eq!(s.follower(F2).unwrap().broker_epoch, Some(BE));
    }

    #[test]
    fn expand_only_past_leader_epoch_start() {
        let mut s = ReplicaState::become_leader(start(&[1, 2], 100, 80, false), 0).unwrap();
        assert_eq!(fetch(&mut s, F3, 79, 1).isr_change, None);
        let change = fetch(&mut s, F3, 80, 2).isr_change.unwrap();
        assert_eq!(
            change.kind,
            IsrChangeKind::Expand {
                added: F3,
                broker_epoch: Some(BE)
            }
        );
        assert_eq!(change.new_isr, vec![L, F2, F3]);
    }

    #[test]
    fn expand_needs_follower_at_hw() {
        let mut s = leader(&[1, 2], 100);
        fetch(&mut s, F2, 100, 1);
        assert_eq!(fetch(&mut s, F3, 99, 2).isr_change, None);
        assert!(fetch(&mut s, F3, 100, 3).isr_change.is_some());
    }

    #[test]
    fn one_pending_change_at_a_time() {
        let mut s = leader(&[1, 2], 100);
        assert!(fetch(&mut s, F3, 100, 1).isr_change.is_some());
        assert_eq!(
            s.maybe_shrink_isr(10 * LAG, LAG),
            None,
            "expansion in flight"
        );
        assert_eq!(fetch(&mut s, F3, 100, 2).isr_change, None);
        assert!(s.pending_isr_change().is_some());
    }

    #[test]
    fn rejection_clears_pending_change() {
        let mut s = leader(&[1, 2], 100);
        fetch(&mut s, F2, 100, 1);
        s.on_leader_append(120).unwrap();
        fetch(&mut s, F3, 100, 1);
        assert_eq!(
            fetch(&mut s, F2, 120, 2).high_watermark,
            None,
            "pending F3 holds HW"
        );
        assert_eq!(s.on_isr_change_rejected(), Some(120));
        assert_eq!(s.pending_isr_change(), None);
        assert_eq!(s.maximal_isr(), vec![L, F2]);
        assert!(
            fetch(&mut s, F3, 120, 3).isr_change.is_some(),
            "may propose again"
        );
    }

    #[test]
    fn commit_applies_isr_and_can_release_hw() {
        let mut s = leader(&[1, 2, 3], 100);
        fetch(&mut s, F2, 100, 0);
        fetch(&mut s, F3, 40, 0);
        let change = s.maybe_shrink_isr(LAG + 1, LAG).unwrap();
        assert_eq!(s.high_watermark(), 40);
        assert_eq!(
            s.on_isr_committed(change.new_isr.clone(), PartitionEpoch(11)),
            Ok(Some(100))
        );
        assert_eq!(s.isr(), &[L, F2]);
        assert_eq!(s.partition_epoch(), PartitionEpoch(11));
        assert_eq!(s.pending_isr_change(), None);
        assert_eq!(
            s.on_isr_committed(vec![F2, L], PartitionEpoch(11)),
            Ok(None),
            "replay is fine"
        );
        assert!(matches!(
            s.on_isr_committed(vec![L], PartitionEpoch(11)),
            Err(ReplicaStateError::ConflictingIsr { .. })
        ));
        assert!(matches!(
            s.on_isr_committed(vec![L], PartitionEpoch(9)),
            Err(ReplicaStateError::StalePartitionEpoch { .. })
        ));
        assert!(matches!(
            s.on_isr_committed(vec![F2], PartitionEpoch(12)),
            Err(ReplicaStateError::IsrWithoutLeader(_))
        ));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut s = leader(&[1, 2], 100);
        assert_eq!(
            s.on_follower_fetch(NodeId(9), 0, BE, 0),
            Err(ReplicaStateError::NotAFollower(NodeId(9)))
        );
        assert_eq!(
            s.on_follower_fetch(L, 0, BE, 0),
            Err(ReplicaStateError::NotAFollower(L))
        );
        assert!(matches!(
            s.on_follower_fetch(F2, 101, BE, 0),
            Err(ReplicaStateError::FetchOffsetOutOfRange { .. })
        ));
        assert!(ReplicaState::become_leader(start(&[2, 3], 0, 0, false), 0).is_err());
    }

    #[test]
    fn hw_stands_still_while_the_committed_isr_is_below_min_insync() {
        let mut st = start(&[1], 100, 0, false);
        st.min_insync = 2;
        let mut s = ReplicaState::become_leader(st, 0).unwrap();
        // A lone leader would otherwise commit its whole log at once.
        assert_eq!(s.high_watermark(), 0);
        assert_eq!(s.on_leader_append(150).unwrap(), None);
        // A pending expansion is not enough: the controller's ELR follows the committed ISR.
        let out = fetch(&mut s, F2, 150, 1);
        assert!(out.isr_change.is_some());
        assert_eq!(out.high_watermark, None);
        assert_eq!(
            s.on_isr_committed(vec![L, F2], PartitionEpoch(11)).unwrap(),
            Some(150)
        );
        // Back below min.insync: what is already committed stays, nothing more is.
        s.on_isr_committed(vec![L], PartitionEpoch(12)).unwrap();
        assert_eq!(s.on_leader_append(200).unwrap(), None);
        assert_eq!(s.high_watermark(), 150);
        // Lowering min.insync.replicas releases it.
        assert_eq!(s.set_min_insync(1), Some(200));
    }

    #[test]
    fn min_insync_uses_committed_isr() {
        let mut s = leader(&[1, 2], 100);
        assert_eq!(s.can_accept_acks_all(2), Ok(()));
        assert_eq!(
            s.can_accept_acks_all(3),
            Err(NotEnough {
                isr_size: 2,
                min_insync: 3
            })
        );
        fetch(&mut s, F3, 100, 0); // pending expansion does not count
        assert!(s.can_accept_acks_all(3).is_err());
        s.on_isr_committed(vec![L, F2, F3], PartitionEpoch(11))
            .unwrap();
        assert_eq!(s.can_accept_acks_all(3), Ok(()));
    }

    #[test]
    fn acks_all_done_when_hw_passes_batch() {
        let mut s = leader(&[1, 2], 100);
        s.on_leader_append(110).unwrap();
        fetch(&mut s, F2, 105, 0);
        assert!(s.acks_all_done(105));
        assert!(!s.acks_all_done(110));
        assert_eq!(s.acks_all_status(110, 2), AcksAll::Waiting);
        // Not committed with the ISR below min.insync: it never will be under this ISR.
        assert_eq!(
            s.acks_all_status(110, 3),
            AcksAll::NotEnoughReplicasAfterAppend
        );
        fetch(&mut s, F2, 110, 0);
        assert_eq!(s.acks_all_status(110, 2), AcksAll::Done);
        assert_eq!(
            s.acks_all_status(110, 3),
            AcksAll::NotEnoughReplicasAfterAppend
        );
    }

    #[test]
    fn truncates_to_leader_epoch_end_offset() {
        // Same history, but our last epoch-3 records after 40 never reached the leader.
        let local = entries(&[(1, 0), (3, 20)]);
        assert_eq!(epoch_to_ask(&local), Some(LeaderEpoch(3)));
        let step = truncation_step(&local, 50, 10, LeaderEpoch(3), Some((LeaderEpoch(3), 40)));
        assert_eq!(step, Ok(Truncation::Done(40)));
        // The leader has more of epoch 3 than we do: keep our whole log.
        let step = truncation_step(&local, 50, 10, LeaderEpoch(3), Some((LeaderEpoch(3), 70)));
        assert_eq!(step, Ok(Truncation::Done(50)));
    }

    #[test]
    fn divergent_tails_across_two_epochs() {
        // We led epoch 4 briefly (offsets 30..45) unreplicated; the leader went from
        // epoch 2 straight to 5, and it ended epoch 2 at 33. Epoch 3 never existed.
        let local = entries(&[(1, 0), (2, 10), (4, 30)]);
        let leader = LeaderEpochCache::from_entries(entries(&[(1, 0), (2, 10), (5, 33)]));
        let ask = |e: LeaderEpoch| Some(leader_answer(&leader, e, 60));
        assert_eq!(truncation_offset(&local, 45, 5, ask), Ok(30));
        // Leader went 1 -> 3 (epoch 3 from 15): we must drop our epoch-2 suffix too,
        // in two rounds (KIP-279): first to our end of epoch 2, then to epoch 1's end.
        let leader = LeaderEpochCache::from_entries(entries(&[(1, 0), (3, 15), (5, 30)]));
        let mut asked = vec![];
        let ask = |e: LeaderEpoch| {
            asked.push(e);
            Some(leader_answer(&leader, e, 60))
        };
        assert_eq!(truncation_offset(&local, 45, 5, ask), Ok(10));
        assert_eq!(asked, vec![LeaderEpoch(4), LeaderEpoch(2)]);
        let step = truncation_step(&local, 45, 5, LeaderEpoch(4), Some((LeaderEpoch(3), 30)));
        assert_eq!(step, Ok(Truncation::Partial(30)));
    }

    fn leader_answer(cache: &LeaderEpochCache, e: LeaderEpoch, leo: i64) -> (LeaderEpoch, i64) {
        let (epoch, end) = cache.end_offset_for(e.0, leo);
        (LeaderEpoch(epoch), end)
    }

    #[test]
    fn leader_without_our_latest_epoch() {
        // Our epoch 6 is unknown to the leader; it answers its floor epoch 5's end.
        let local = entries(&[(2, 0), (5, 10), (6, 25)]);
        let leader = LeaderEpochCache::from_entries(entries(&[(2, 0), (5, 10), (7, 22)]));
        let ask = |e: LeaderEpoch| Some(leader_answer(&leader, e, 40));
        assert_eq!(truncation_offset(&local, 30, 0, ask), Ok(22));
        // The leader knows no end offset at all: fall back to our HW.
        assert_eq!(truncation_offset(&local, 30, 12, |_| None), Ok(12));
        assert_eq!(truncation_offset(&[], 30, 12, |_| unreachable!()), Ok(12));
        // A leader answering a newer epoch than asked is a protocol error, not a loop.
        let err = truncation_step(&local, 30, 0, LeaderEpoch(6), Some((LeaderEpoch(7), 22)));
        assert!(matches!(
            err,
            Err(ReplicaStateError::EpochAnswerTooNew { .. })
        ));
    }

    #[test]
    fn follower_hw_is_capped_by_own_leo() {
        assert_eq!(follower_high_watermark(100, 80), 80);
        assert_eq!(follower_high_watermark(70, 80), 70);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(i64),
        Flush(i64),
        Fetch(usize, i64),
        Shrink(i64),
        Commit,
        Reject,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..20).prop_map(Op::Append),
            (0i64..20).prop_map(Op::Flush),
            (0usize..2, 0i64..20).prop_map(|(f, d)| Op::Fetch(f, d)),
            (0i64..5_000).prop_map(Op::Shrink),
            Just(Op::Commit),
            Just(Op::Reject),
        ]
    }

    proptest! {
        #[test]
        fn hw_monotonic_and_below_maximal_isr_leos(
            ops in proptest::collection::vec(op(), 0..200),
            fsync in any::<bool>(),
            isr3 in any::<bool>(),
        ) {
            let isr: &[i32] = if isr3 { &[1, 2, 3] } else { &[1, 2] };
            let mut s = ReplicaState::become_leader(start(isr, 10, 10, fsync), 0).unwrap();
            let (mut now, mut durable, mut epoch) = (0i64, 10i64, 10);
            let mut follower_leo = [0i64; 2];
            for op in ops {
                let before = s.high_watermark();
                match op {
                    Op::Append(n) => { s.on_leader_append(s.log_end_offset() + n).unwrap(); }
                    Op::Flush(n) => {
                        durable = (durable + n).min(s.log_end_offset());
                        s.on_leader_flushed(durable);
                    }
                    Op::Fetch(i, d) => {
                        now += 100;
                        follower_leo[i] = (follower_leo[i] + d).min(s.log_end_offset());
                        fetch(&mut s, [F2, F3][i], follower_leo[i], now);
                    }
                    Op::Shrink(dt) => { now += dt; s.maybe_shrink_isr(now, LAG); }
                    Op::Commit => {
                        if let Some(p) = s.pending_isr_change().cloned() {
                            epoch += 1;
                            s.on_isr_committed(p.new_isr, PartitionEpoch(epoch)).unwrap();
                        }
                    }
                    Op::Reject => { s.on_isr_change_rejected(); }
                }
                let hw = s.high_watermark();
                prop_assert!(hw >= before, "HW went back from {} to {}", before, hw);
                let leader_part = if fsync { s.log_end_offset().min(durable) } else { s.log_end_offset() };
                prop_assert!(hw <= leader_part.max(0));
                for id in s.maximal_isr().into_iter().filter(|&id| id != L) {
                    if let Some(leo) = s.follower(id).unwrap().log_end_offset {
                        prop_assert!(hw <= leo, "HW {} above {}'s LEO {}", hw, id, leo);
                    }
                }
            }
        }
    }
}
