//! Broker registration, heartbeats and fencing (docs/architecture.md §4).
//!
//! The broker epoch is the offset of the `RegisterBroker` record. It is unknown until the
//! record commits, so `register_broker` proposes epoch -1, `MetadataImage::apply` fills in
//! the offset, and the service answers with the offset the batch was committed at.

use std::collections::BTreeSet;
use std::time::Instant;

use spate_proto::controller::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, RegisterBrokerRequest, RegisterBrokerResponse,
};
use spate_proto::metadata::{MetadataRecord, ReplicaRef};

use super::election::{
    on_broker_fenced, on_broker_logs_lost, on_broker_unfenced, on_replicas_cut, on_replicas_offline,
};
use super::sessions::BrokerSessions;
use super::ControllerResult;
use crate::error::{ApiError, ErrorCode};
use spate_metadata::ids::{NodeId, TopicId};
use spate_metadata::{records, BrokerRegistration, MetadataImage};

/// Registers (or re-registers) a broker. The response's `broker_epoch` is -1 here; the
/// caller fills in the commit offset. A new registration is fenced until the broker has
/// caught up with metadata (it says so in a heartbeat).
pub fn register_broker(
    image: &MetadataImage,
    sessions: &BrokerSessions,
    req: &RegisterBrokerRequest,
    now: Instant,
) -> ControllerResult<RegisterBrokerResponse> {
    match check_registration(image, sessions, req, now) {
        Err(e) => ControllerResult::response_only(RegisterBrokerResponse {
            error_code: e.code.proto_code(),
            error_message: e.message,
            broker_epoch: -1,
        }),
        Ok(id) => {
            let registration = BrokerRegistration {
                id,
                epoch: spate_metadata::ids::BrokerEpoch(-1),
                incarnation_id: req.incarnation_id.clone(),
                endpoints: req.endpoints.clone(),
                rack: (!req.rack.is_empty()).then(|| req.rack.clone()),
                fenced: true,
                offline_replicas: reported_offline(&req.offline_replicas),
                log_dir_id: req.log_dir_id.clone(),
            };
            let mut out = vec![records::register_broker(&registration, None)];
            // A restarted broker that was still unfenced must give up leadership and ISR
            // membership: its new incarnation has to catch up first.
            if image.is_unfenced(id) {
                out.extend(on_broker_fenced(image, id));
            }
            if logs_lost(image, id, &req.log_dir_id) {
                tracing::warn!(
                    broker = id.0,
                    log_dir_id = %req.log_dir_id,
                    "broker registers with a new log directory: its logs are gone, so it leaves every ISR and ELR"
                );
                match applied(image, &out) {
                    Ok(next) => out.extend(on_broker_logs_lost(&next, id)),
                    Err(e) => {
                        return ControllerResult::response_only(RegisterBrokerResponse {
                            error_code: ErrorCode::UnknownServerError.proto_code(),
                            error_message: format!("registration does not apply: {e}"),
                            broker_epoch: -1,
                        })
                    }
                }
            }
            ControllerResult {
                records: out,
                response: RegisterBrokerResponse {
                    error_code: 0,
                    error_message: String::new(),
                    broker_epoch: -1,
                },
            }
        }
    }
}

/// Whether `id` registered before with another log directory: the logs it had are gone.
/// A first registration, or one from a broker that names no directory, loses nothing.
fn logs_lost(image: &MetadataImage, id: NodeId, log_dir_id: &str) -> bool {
    image.broker(id).is_some_and(|b| {
        !b.log_dir_id.is_empty() && !log_dir_id.is_empty() && b.log_dir_id != log_dir_id
    })
}

/// The image after `records`, for decisions that build on them in one batch.
fn applied(
    image: &MetadataImage,
    records: &[MetadataRecord],
) -> Result<MetadataImage, spate_metadata::MetadataError> {
    let mut next = image.clone();
    for r in records {
        next.apply(image.offset(), r)?;
    }
    Ok(next)
}

fn check_registration(
    image: &MetadataImage,
    sessions: &BrokerSessions,
    req: &RegisterBrokerRequest,
    now: Instant,
) -> Result<NodeId, ApiError> {
    let id = NodeId::from_wire(req.broker_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("broker id {} is negative", req.broker_id),
        )
    })?;
    if req.incarnation_id.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "incarnation_id must be set (a fresh id per broker start)",
        ));
    }
    if let Some(existing) = image.broker(id) {
        // Kafka: another process with this id is still heartbeating, so this is a
        // misconfigured second broker rather than a restart.
        if existing.incarnation_id != req.incarnation_id && sessions.is_alive(id, now) {
            return Err(ApiError::new(
                ErrorCode::DuplicateBrokerRegistration,
                format!("broker {id} is already registered by a live process (incarnation {}); check broker ids", existing.incarnation_id),
            ));
        }
    }
    Ok(id)
}

/// Handles a heartbeat: renews the session, and fences or unfences the broker as asked
/// or as its metadata progress allows.
pub fn broker_heartbeat(
    image: &MetadataImage,
    sessions: &mut BrokerSessions,
    req: &BrokerHeartbeatRequest,
    now: Instant,
) -> ControllerResult<BrokerHeartbeatResponse> {
    let id = NodeId(req.broker_id);
    let broker = match image.broker(id) {
        Some(b) if b.epoch.0 == req.broker_epoch => b,
        other => {
            let message = match other {
                Some(b) => format!(
                    "broker {id} has epoch {}, the heartbeat carries {}; re-register",
                    b.epoch, req.broker_epoch
                ),
                None => format!("broker {id} is not registered; register first"),
            };
            return ControllerResult::response_only(BrokerHeartbeatResponse {
                error_code: ErrorCode::StaleBrokerEpoch.proto_code(),
                is_fenced: true,
                error_message: message,
                ..Default::default()
            });
        }
    };
    if req.want_shutdown {
        // Controlled shutdown: the broker is fenced and is never unfenced again in this
        // incarnation, so its session ends now. As in Kafka, where a fenced broker holds
        // no session, it may register again the moment it restarts; only a broker that
        // crashed while unfenced is refused until its session expires.
        sessions.remove(id);
    } else {
        sessions.touch(id, now);
    }
    // Caught up once it has applied its own registration (the metadata offset is the log index).
    let caught_up = i64::try_from(req.metadata_offset).is_ok_and(|o| o >= broker.epoch.0);
    let mut response = BrokerHeartbeatResponse {
        error_code: 0,
        is_fenced: broker.fenced,
        is_caught_up: caught_up,
        should_shutdown: false,
        error_message: String::new(),
    };
    let reported = reported_offline(&req.offline_replicas);
    let mut records = Vec::new();
    if !reported.is_subset(&broker.offline_replicas) {
        // Logs failed on the broker: they stay offline for this registration (the set
        // only grows until the broker restarts and opens them again).
        let offline: BTreeSet<_> = broker.offline_replicas.union(&reported).copied().collect();
        let newly: BTreeSet<_> = reported
            .difference(&broker.offline_replicas)
            .copied()
            .collect();
        tracing::warn!(
            broker = id.0,
            replicas = newly.len(),
            "broker reports failed partition logs; moving leadership and ISR membership away"
        );
        records.push(records::broker_replicas_offline(id, broker.epoch, &offline));
        records.extend(on_replicas_offline(image, id, &newly));
    }
    // Replicas whose log was cut in recovery leave the ELR before this heartbeat may
    // unfence the broker (and so before an election could pick them).
    let cut = reported_offline(&req.cut_replicas);
    if !cut.is_empty() {
        let base = match applied(image, &records) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "offline-replica change does not apply; not committing it");
                return ControllerResult::response_only(response);
            }
        };
        let dropped = on_replicas_cut(&base, id, &cut);
        if !dropped.is_empty() {
            tracing::warn!(
                broker = id.0,
                partitions = dropped.len(),
                "broker's logs lost their tail in recovery; it is no longer an eligible leader of them"
            );
        }
        records.extend(dropped);
    }
    // Later decisions of this heartbeat build on the offline changes, not beside them.
    let updated;
    let image = if records.is_empty() {
        image
    } else {
        match applied(image, &records) {
            Ok(next) => {
                updated = next;
                &updated
            }
            Err(e) => {
                tracing::error!(error = %e, "offline-replica change does not apply; not committing it");
                return ControllerResult::response_only(response);
            }
        }
    };
    let more = if req.want_shutdown || req.want_fence {
        // Controlled shutdown: leadership moves away now; once that is committed the
        // broker leads nothing and may stop.
        response.is_fenced = true;
        response.should_shutdown = req.want_shutdown;
        fence_broker(image, id)
    } else if broker.fenced && caught_up {
        response.is_fenced = false;
        unfence_broker(image, id)
    } else {
        Vec::new()
    };
    records.extend(more);
    ControllerResult { records, response }
}

/// The partitions a broker reports offline; malformed topic ids are ignored (a broker
/// never sends them).
fn reported_offline(refs: &[ReplicaRef]) -> BTreeSet<(TopicId, i32)> {
    refs.iter()
        .filter_map(|r| Some((TopicId::from_bytes(&r.topic_id).ok()?, r.partition)))
        .collect()
}

/// Records that fence a broker and move leadership and ISR membership away from it;
/// empty if it is unknown or already fenced.
pub fn fence_broker(image: &MetadataImage, id: NodeId) -> Vec<MetadataRecord> {
    match image.broker(id) {
        Some(b) if !b.fenced => {
            let mut out = vec![records::fence_broker(id, b.epoch)];
            out.extend(on_broker_fenced(image, id));
            out
        }
        _ => Vec::new(),
    }
}

/// Records that unfence a broker and bring back partitions it can lead; empty if it is
/// unknown or not fenced.
pub fn unfence_broker(image: &MetadataImage, id: NodeId) -> Vec<MetadataRecord> {
    match image.broker(id) {
        Some(b) if b.fenced => {
            let mut out = vec![records::unfence_broker(id, b.epoch)];
            out.extend(on_broker_unfenced(image, id));
            out
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use spate_proto::metadata::metadata_record::Record;

    use super::*;
    use spate_metadata::ids::{BrokerEpoch, LeaderEpoch, PartitionEpoch, TopicId};
    use spate_metadata::PartitionImage;

    const TIMEOUT: Duration = Duration::from_secs(9);

    fn register_req(id: i32, inc: &str) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            broker_id: id,
            incarnation_id: inc.into(),
            endpoints: vec![],
            rack: String::new(),
            offline_replicas: vec![],
            log_dir_id: format!("dir-{id}"),
        }
    }

    fn heartbeat(id: i32, epoch: i64, offset: u64) -> BrokerHeartbeatRequest {
        BrokerHeartbeatRequest {
            broker_id: id,
            broker_epoch: epoch,
            metadata_offset: offset,
            ..Default::default()
        }
    }

    /// Commits a decision's records at `offset`, as the state machine would.
    fn commit(img: &mut MetadataImage, offset: u64, records: &[MetadataRecord]) {
        for r in records {
            img.apply(offset, r).unwrap();
        }
    }

    fn kinds(records: &[MetadataRecord]) -> Vec<&'static str> {
        records
            .iter()
            .map(|r| match r.record {
                Some(Record::RegisterBroker(_)) => "register",
                Some(Record::FenceBroker(_)) => "fence",
                Some(Record::UnfenceBroker(_)) => "unfence",
                Some(Record::PartitionChange(_)) => "change",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn registration_is_fenced_and_gets_the_commit_offset_as_epoch() {
        let t0 = Instant::now();
        let mut img = MetadataImage::new();
        let sessions = BrokerSessions::new(TIMEOUT);
        let res = register_broker(&img, &sessions, &register_req(1, "a"), t0);
        assert_eq!(res.response.error_code, 0);
        assert_eq!(kinds(&res.records), vec!["register"]);
        commit(&mut img, 12, &res.records);
        let b = img.broker(NodeId(1)).unwrap();
        assert_eq!((b.epoch, b.fenced), (BrokerEpoch(12), true));
    }

    #[test]
    fn registration_errors() {
        let t0 = Instant::now();
        let mut img = MetadataImage::new();
        let mut sessions = BrokerSessions::new(TIMEOUT);
        let res = register_broker(&img, &sessions, &register_req(-1, "a"), t0);
        assert_eq!(
            res.response.error_code,
            ErrorCode::InvalidRequest.proto_code()
        );
        let res = register_broker(&img, &sessions, &register_req(1, ""), t0);
        assert_eq!(
            res.response.error_code,
            ErrorCode::InvalidRequest.proto_code()
        );
        let recs = register_broker(&img, &sessions, &register_req(1, "a"), t0).records;
        commit(&mut img, 3, &recs);
        sessions.touch(NodeId(1), t0);
        let dup = register_broker(&img, &sessions, &register_req(1, "b"), t0);
        assert_eq!(
            dup.response.error_code,
            ErrorCode::DuplicateBrokerRegistration.proto_code()
        );
        assert!(dup.records.is_empty());
        // Same incarnation (a retry) or an expired session (a restart) is fine.
        assert_eq!(
            register_broker(&img, &sessions, &register_req(1, "a"), t0)
                .response
                .error_code,
            0
        );
        assert_eq!(
            register_broker(&img, &sessions, &register_req(1, "b"), t0 + TIMEOUT)
                .response
                .error_code,
            0
        );
    }

    #[test]
    fn a_broker_that_shut_down_cleanly_registers_again_at_once() {
        let img = two_brokers();
        let mut s = BrokerSessions::new(TIMEOUT);
        let t0 = Instant::now();
        s.touch(NodeId(1), t0);
        let mut req = heartbeat(1, 1, 20);
        req.want_shutdown = true;
        let r = broker_heartbeat(&img, &mut s, &req, t0);
        assert!(r.response.should_shutdown);
        assert!(
            !s.is_alive(NodeId(1), t0),
            "controlled shutdown ends the session"
        );
        let mut after = img.clone();
        commit(&mut after, 21, &r.records);
        // Heartbeats go on until the process exits; they do not revive the session.
        let r = broker_heartbeat(&after, &mut s, &req, t0);
        assert!(r.response.should_shutdown && !s.is_alive(NodeId(1), t0));
        // The restarted process (a new incarnation) is accepted before the old session
        // would have run out.
        let again = register_broker(&after, &s, &register_req(1, "restarted"), t0);
        assert_eq!(again.response.error_code, 0);
        // A crashed broker (still heartbeating a moment ago) is not.
        s.touch(NodeId(2), t0);
        let dup = register_broker(&after, &s, &register_req(2, "other"), t0);
        assert_eq!(
            dup.response.error_code,
            ErrorCode::DuplicateBrokerRegistration.proto_code()
        );
    }

    /// Broker 1 (epoch 1) and 2 (epoch 2), both unfenced; "t" p0 led by 1 with ISR [1, 2].
    fn two_brokers() -> MetadataImage {
        let mut img = MetadataImage::new();
        let s = BrokerSessions::new(TIMEOUT);
        let t0 = Instant::now();
        for id in [1, 2] {
            let recs = register_broker(&img, &s, &register_req(id, "x"), t0).records;
            commit(&mut img, id as u64, &recs);
            let recs = unfence_broker(&img, NodeId(id));
            commit(&mut img, 10 + id as u64, &recs);
        }
        let t = TopicId::from_random([3; 16]);
        let p = PartitionImage {
            replicas: vec![NodeId(1), NodeId(2)],
            isr: vec![NodeId(1), NodeId(2)],
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            leader: Some(NodeId(1)),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
        };
        commit(
            &mut img,
            20,
            &[records::topic("t", t), records::partition(t, 0, &p)],
        );
        img
    }

    #[test]
    fn heartbeat_with_wrong_epoch_or_unknown_broker_is_stale() {
        let img = two_brokers();
        let mut s = BrokerSessions::new(TIMEOUT);
        let t0 = Instant::now();
        let r = broker_heartbeat(&img, &mut s, &heartbeat(1, 99, 50), t0);
        assert_eq!(
            r.response.error_code,
            ErrorCode::StaleBrokerEpoch.proto_code()
        );
        let r = broker_heartbeat(&img, &mut s, &heartbeat(9, 1, 50), t0);
        assert_eq!(
            r.response.error_code,
            ErrorCode::StaleBrokerEpoch.proto_code()
        );
        assert!(
            s.is_empty(),
            "a stale heartbeat does not keep a session alive"
        );
    }

    #[test]
    fn fenced_broker_is_unfenced_once_caught_up() {
        let t0 = Instant::now();
        let mut img = MetadataImage::new();
        let mut s = BrokerSessions::new(TIMEOUT);
        let recs = register_broker(&img, &s, &register_req(1, "a"), t0).records;
        commit(&mut img, 7, &recs);
        let behind = broker_heartbeat(&img, &mut s, &heartbeat(1, 7, 6), t0);
        assert!(behind.records.is_empty());
        assert!(behind.response.is_fenced && !behind.response.is_caught_up);
        assert!(s.is_alive(NodeId(1), t0));
        let caught_up = broker_heartbeat(&img, &mut s, &heartbeat(1, 7, 7), t0);
        assert_eq!(kinds(&caught_up.records), vec!["unfence"]);
        assert!(!caught_up.response.is_fenced && caught_up.response.is_caught_up);
        commit(&mut img, 8, &caught_up.records);
        assert!(img.is_unfenced(NodeId(1)));
        assert!(broker_heartbeat(&img, &mut s, &heartbeat(1, 7, 8), t0)
            .records
            .is_empty());
    }

    #[test]
    fn want_fence_and_controlled_shutdown_move_leadership() {
        let img = two_brokers();
        let mut s = BrokerSessions::new(TIMEOUT);
        let t0 = Instant::now();
        let mut req = heartbeat(1, 1, 20);
        req.want_shutdown = true;
        let r = broker_heartbeat(&img, &mut s, &req, t0);
        assert_eq!(kinds(&r.records), vec!["fence", "change"]);
        assert!(r.response.should_shutdown && r.response.is_fenced);
        let mut after = img.clone();
        commit(&mut after, 21, &r.records);
        let p = after.topic_by_name("t").unwrap().partitions[&0].clone();
        assert_eq!((p.leader, p.isr), (Some(NodeId(2)), vec![NodeId(2)]));
        let mut req = heartbeat(2, 2, 21);
        req.want_fence = true;
        let r = broker_heartbeat(&after, &mut s, &req, t0);
        assert!(r.response.is_fenced && !r.response.should_shutdown);
        commit(&mut after, 22, &r.records);
        let p = &after.topic_by_name("t").unwrap().partitions[&0];
        assert_eq!(
            (p.leader, p.isr.len(), &p.elr),
            (None, 0, &vec![NodeId(2)]),
            "the last ISR member stays eligible"
        );
    }

    #[test]
    fn fencing_an_expired_broker_and_unfencing_it_again() {
        let mut img = two_brokers();
        assert_eq!(
            kinds(&fence_broker(&img, NodeId(2))),
            vec!["fence", "change"]
        );
        let recs = fence_broker(&img, NodeId(2));
        commit(&mut img, 30, &recs);
        assert!(fence_broker(&img, NodeId(2)).is_empty(), "already fenced");
        assert!(fence_broker(&img, NodeId(5)).is_empty(), "unknown");
        let recs = fence_broker(&img, NodeId(1));
        commit(&mut img, 31, &recs);
        assert_eq!(img.topic_by_name("t").unwrap().partitions[&0].leader, None);
        // Broker 1 is the last ISR member, so it leads again when it comes back.
        let back = unfence_broker(&img, NodeId(1));
        assert_eq!(kinds(&back), vec!["unfence", "change"]);
        commit(&mut img, 32, &back);
        let p = &img.topic_by_name("t").unwrap().partitions[&0];
        assert_eq!(
            (p.leader, p.leader_epoch),
            (Some(NodeId(1)), LeaderEpoch(2))
        );
    }

    #[test]
    fn re_registering_a_live_leader_moves_its_partitions() {
        let img = two_brokers();
        let s = BrokerSessions::new(TIMEOUT);
        let r = register_broker(&img, &s, &register_req(1, "y"), Instant::now());
        assert_eq!(kinds(&r.records), vec!["register", "change"]);
        let mut after = img.clone();
        commit(&mut after, 40, &r.records);
        assert_eq!(after.broker(NodeId(1)).unwrap().epoch, BrokerEpoch(40));
        assert_eq!(
            after.topic_by_name("t").unwrap().partitions[&0].leader,
            Some(NodeId(2))
        );
    }

    fn offline(topic: TopicId, partition: i32) -> ReplicaRef {
        ReplicaRef {
            topic_id: topic.to_bytes(),
            partition,
        }
    }

    #[test]
    fn a_failed_log_moves_leadership_and_isr_membership_away_for_good() {
        let img = two_brokers();
        let t = img.topic_by_name("t").unwrap().id;
        let mut s = BrokerSessions::new(TIMEOUT);
        let t0 = Instant::now();
        let mut req = heartbeat(1, 1, 20);
        req.offline_replicas = vec![offline(t, 0)];
        let r = broker_heartbeat(&img, &mut s, &req, t0);
        assert_eq!(kinds(&r.records), vec!["other", "change"]);
        assert_eq!(r.response.error_code, 0);
        let mut after = img.clone();
        commit(&mut after, 21, &r.records);
        let p = after.topic_by_name("t").unwrap().partitions[&0].clone();
        assert_eq!((p.leader, p.isr), (Some(NodeId(2)), vec![NodeId(2)]));
        assert!(!after.can_serve(NodeId(1), t, 0));
        assert!(
            after.is_unfenced(NodeId(1)),
            "the broker keeps serving the rest"
        );
        // Reported again: nothing new to commit.
        let again = broker_heartbeat(&after, &mut s, &req, t0);
        assert!(again.records.is_empty());
        // Broker 2 goes away: the partition goes offline rather than back to broker 1.
        let recs = fence_broker(&after, NodeId(2));
        commit(&mut after, 22, &recs);
        let p = after.topic_by_name("t").unwrap().partitions[&0].clone();
        assert_eq!(p.leader, None);
        // And the offline replica may not rejoin the ISR.
        let back = unfence_broker(&after, NodeId(2));
        commit(&mut after, 23, &back);
        assert_eq!(
            after.topic_by_name("t").unwrap().partitions[&0].leader,
            Some(NodeId(2))
        );
    }

    /// [`two_brokers`] after 2 fell out of sync and 1, the last ISR member, was fenced:
    /// ISR empty, 1 eligible.
    fn last_member_fenced() -> (MetadataImage, TopicId) {
        let mut img = two_brokers();
        let t = img.topic_by_name("t").unwrap().id;
        commit(
            &mut img,
            30,
            &[records::partition_change(t, 0, None, Some(&[NodeId(1)]))],
        );
        let recs = fence_broker(&img, NodeId(1));
        commit(&mut img, 31, &recs);
        (img, t)
    }

    /// The "last replica standing" hole: broker 1, the partition's last ISR member, dies
    /// and comes back with an empty disk. It must not lead the partition it held.
    #[test]
    fn a_broker_back_with_a_new_log_directory_is_not_elected_over_the_records_it_lost() {
        let (mut img, t) = last_member_fenced();
        let s = BrokerSessions::new(TIMEOUT);
        let p = img.partition(t, 0).unwrap();
        assert_eq!(
            (p.leader, p.isr.len(), p.elr.clone()),
            (None, 0, vec![NodeId(1)])
        );
        // Back with its own log directory: eligible, and leads once unfenced.
        let same = register_broker(&img, &s, &register_req(1, "again"), Instant::now());
        assert_eq!(kinds(&same.records), vec!["register"]);
        // Back with a new one: it leaves the ELR.
        let mut req = register_req(1, "again");
        req.log_dir_id = "a-new-disk".into();
        let r = register_broker(&img, &s, &req, Instant::now());
        assert_eq!(kinds(&r.records), vec!["register", "change"]);
        commit(&mut img, 32, &r.records);
        let p = img.partition(t, 0).unwrap();
        assert!(p.elr.is_empty());
        assert_eq!(p.last_known_elr, vec![NodeId(1)]);
        assert_eq!(img.broker(NodeId(1)).unwrap().log_dir_id, "a-new-disk");
        let recs = unfence_broker(&img, NodeId(1));
        commit(&mut img, 33, &recs);
        assert_eq!(img.partition(t, 0).unwrap().leader, None);
    }

    /// The same with a broker whose disk survived but whose log recovery cut a garbled
    /// tail: it reports the cut in the heartbeat that unfences it, and is not elected.
    #[test]
    fn a_broker_whose_log_lost_its_tail_in_recovery_is_not_elected_from_the_elr() {
        let run = |cut: bool| {
            let (mut img, t) = last_member_fenced();
            let mut s = BrokerSessions::new(TIMEOUT);
            let r = register_broker(&img, &s, &register_req(1, "again"), Instant::now());
            commit(&mut img, 32, &r.records);
            let mut req = heartbeat(1, 32, 40);
            if cut {
                req.cut_replicas = vec![offline(t, 0)];
            }
            let r = broker_heartbeat(&img, &mut s, &req, Instant::now());
            assert!(!r.response.is_fenced);
            commit(&mut img, 41, &r.records);
            img.partition(t, 0).unwrap().clone()
        };
        let intact = run(false);
        assert_eq!(intact.leader, Some(NodeId(1)), "{intact:?}");
        let cut = run(true);
        assert_eq!(cut.leader, None, "{cut:?}");
        assert!(cut.elr.is_empty());
        assert_eq!(cut.last_known_elr, vec![NodeId(1)]);
    }

    #[test]
    fn a_registration_carries_its_failed_logs_and_a_restart_clears_them() {
        let mut img = two_brokers();
        let t = img.topic_by_name("t").unwrap().id;
        let s = BrokerSessions::new(TIMEOUT);
        let mut req = register_req(1, "restarted");
        req.offline_replicas = vec![offline(t, 0)];
        let r = register_broker(&img, &s, &req, Instant::now());
        commit(&mut img, 30, &r.records);
        assert!(!img.can_serve(NodeId(1), t, 0));
        // Unfencing it does not make it leader of the failed partition.
        let mut only_one = img.clone();
        let recs = fence_broker(&only_one, NodeId(2));
        commit(&mut only_one, 31, &recs);
        let recs = unfence_broker(&only_one, NodeId(1));
        commit(&mut only_one, 32, &recs);
        assert_eq!(
            only_one.topic_by_name("t").unwrap().partitions[&0].leader,
            None
        );
        // A later registration whose logs opened fine serves it again.
        let r = register_broker(&img, &s, &register_req(1, "fixed"), Instant::now());
        commit(&mut img, 40, &r.records);
        assert!(img.can_serve(NodeId(1), t, 0) || img.broker(NodeId(1)).unwrap().fenced);
        assert!(img.broker(NodeId(1)).unwrap().offline_replicas.is_empty());
    }
}
