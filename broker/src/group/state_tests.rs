//! Dynamic members: join, sync, heartbeat, leave, timers, protocols, limits, snapshots.
use super::test_util::*;
use super::*;

#[test]
fn three_members_join_one_generation_and_only_the_leader_sees_members() {
    let mut g = group();
    let out = form(&mut g, &["m1", "m2", "m3"]);

    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.generation_id(), 1);
    assert_eq!(g.leader(), Some("m1"));
    assert_eq!(g.protocol_name(), Some("range"));
    assert_eq!(joins(&out).len(), 3);
    let leader = join_for(&out, "m1");
    assert_eq!(leader.error, ErrorCode::None);
    assert_eq!(leader.generation_id, 1);
    assert_eq!(leader.leader, "m1");
    assert_eq!(leader.protocol_type.as_deref(), Some("consumer"));
    let seen: Vec<_> = leader
        .members
        .iter()
        .map(|m| (m.member_id.as_str(), m.metadata.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("m1", meta("range-m1")),
            ("m2", meta("range-m2")),
            ("m3", meta("range-m3"))
        ]
    );
    for follower in ["m2", "m3"] {
        let r = join_for(&out, follower);
        assert_eq!(
            (r.error, r.generation_id, r.leader.as_str()),
            (ErrorCode::None, 1, "m1")
        );
        assert_eq!(r.member_id, follower);
        assert!(r.members.is_empty());
    }
}

#[test]
fn leader_sync_completes_every_held_sync_and_fills_missing_assignments() {
    let mut g = group();
    form(&mut g, &["m1", "m2", "m3"]);

    assert!(g
        .sync(
            "m2",
            None,
            1,
            Some("consumer"),
            Some("range"),
            Vec::new(),
            6_100
        )
        .is_empty());
    assert!(g
        .sync("m3", None, 1, None, None, Vec::new(), 6_100)
        .is_empty());
    let assignments = vec![
        ("m1".to_string(), meta("a1")),
        ("m2".to_string(), meta("a2")),
    ];
    let mut out = g.sync("m1", None, 1, None, None, assignments, 6_200);
    out.sort_by(|a, b| a.0.cmp(&b.0));

    assert_eq!(g.state(), GroupState::Stable);
    let got: Vec<_> = out
        .iter()
        .map(|(id, r)| (id.as_str(), r.error, r.assignment.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("m1", ErrorCode::None, meta("a1")),
            ("m2", ErrorCode::None, meta("a2")),
            ("m3", ErrorCode::None, meta("")),
        ]
    );
    assert_eq!(out[0].1.protocol_name.as_deref(), Some("range"));
    assert_eq!(g.member("m3").unwrap().assignment, meta(""));
}

#[test]
fn sync_errors() {
    let mut g = group();
    form(&mut g, &["m1", "m2"]);

    let err = |out: Vec<(String, SyncResponse)>| out[0].1.error;
    assert_eq!(
        err(g.sync("nobody", None, 1, None, None, vec![], 3_000)),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        err(g.sync("m2", None, 7, None, None, vec![], 3_000)),
        ErrorCode::IllegalGeneration
    );
    let wrong_type = g.sync("m2", None, 1, Some("connect"), None, vec![], 3_000);
    assert_eq!(err(wrong_type), ErrorCode::InconsistentGroupProtocol);
    let wrong_name = g.sync("m2", None, 1, None, Some("sticky"), vec![], 3_000);
    assert_eq!(err(wrong_name), ErrorCode::InconsistentGroupProtocol);
}

#[test]
fn heartbeat_answers_by_state() {
    let mut g = group();
    assert_eq!(g.heartbeat("m1", None, 0, 0), ErrorCode::UnknownMemberId);

    form(&mut g, &["m1", "m2"]);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.heartbeat("m2", None, 1, 3_000), ErrorCode::None);
    assert_eq!(
        g.heartbeat("m2", None, 0, 3_000),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        g.heartbeat("m9", None, 1, 3_000),
        ErrorCode::UnknownMemberId
    );

    g.sync("m1", None, 1, None, None, vec![], 3_000);
    g.sync("m2", None, 1, None, None, vec![], 3_000);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.heartbeat("m1", None, 1, 4_000), ErrorCode::None);

    // The leader rejoining starts a rebalance.
    assert!(g
        .join(join_req("m1", &["range"]), "unused".into(), 5_000)
        .is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat("m2", None, 1, 5_000),
        ErrorCode::RebalanceInProgress
    );

    g.shut_down();
    assert_eq!(
        g.heartbeat("m2", None, 1, 5_000),
        ErrorCode::CoordinatorNotAvailable
    );
}

#[test]
fn leaving_member_triggers_rebalance_and_the_rest_rejoin_into_a_new_generation() {
    let mut g = group();
    form_stable(&mut g, &["m1", "m2", "m3"], FORMED_MS);

    let (errors, out) = g.leave(vec![("m3".into(), None), ("ghost".into(), None)], 4_000);
    assert_eq!(errors, vec![ErrorCode::None, ErrorCode::UnknownMemberId]);
    assert!(out.is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat("m1", None, 1, 4_100),
        ErrorCode::RebalanceInProgress
    );
    assert_eq!(
        g.heartbeat("m2", None, 1, 4_100),
        ErrorCode::RebalanceInProgress
    );
    let sync = g.sync("m2", None, 1, None, None, vec![], 4_100);
    assert_eq!(sync[0].1.error, ErrorCode::RebalanceInProgress);

    assert!(g
        .join(join_req("m2", &["range"]), "x".into(), 4_200)
        .is_empty());
    let out = g.join(join_req("m1", &["range"]), "x".into(), 4_300);
    assert_eq!(joins(&out).len(), 2);
    assert_eq!(join_for(&out, "m1").generation_id, 2);
    assert_eq!(join_for(&out, "m1").members.len(), 2);
    assert_eq!(join_for(&out, "m2").leader, "m1");
    assert_eq!(g.generation_id(), 2);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn leave_while_completing_rebalance_fails_held_syncs() {
    let mut g = group();
    form(&mut g, &["m1", "m2", "m3"]);
    assert!(g.sync("m2", None, 1, None, None, vec![], 3_100).is_empty());

    let (errors, out) = g.leave(vec![("m3".into(), None)], 3_200);
    assert_eq!(errors, vec![ErrorCode::None]);
    let failed = syncs(&out);
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].0, failed[0].1.error),
        ("m2", ErrorCode::RebalanceInProgress)
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn last_member_leaving_empties_the_group() {
    let mut g = group();
    form_stable(&mut g, &["m1"], 3_000);
    let (errors, out) = g.leave(vec![("m1".into(), None)], 4_000);
    assert_eq!(errors, vec![ErrorCode::None]);
    assert!(out.is_empty());
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation_id(), 2);
    assert_eq!(g.leader(), None);
    assert_eq!(g.protocol_name(), None);
    assert_eq!(g.check_deletable(), ErrorCode::None);
    assert_eq!(g.next_deadline(), None);
}

#[test]
fn session_expiry_drops_the_member_and_rebalances() {
    let mut g = group();
    form_stable(&mut g, &["m1", "m2", "m3"], FORMED_MS);
    assert_eq!(g.heartbeat("m1", None, 1, 11_000), ErrorCode::None);
    assert_eq!(g.heartbeat("m2", None, 1, 11_000), ErrorCode::None);
    let expiry = FORMED_MS + i64::from(SESSION_MS);
    assert_eq!(g.next_deadline(), Some(expiry));

    assert!(g.tick(expiry - 1).is_empty());
    assert_eq!(g.members().count(), 3);
    assert!(g.tick(expiry).is_empty());
    assert!(g.member("m3").is_none());
    assert_eq!(g.state(), GroupState::PreparingRebalance);

    g.join(join_req("m1", &["range"]), "x".into(), expiry + 100);
    let out = g.join(join_req("m2", &["range"]), "x".into(), expiry + 200);
    assert_eq!(joins(&out).len(), 2);
    assert_eq!(g.generation_id(), 2);
}

#[test]
fn rebalance_timeout_completes_with_rejoined_members_and_drops_the_rest() {
    let mut g = group();
    form_stable(&mut g, &["m1", "m2", "m3"], FORMED_MS);
    // m2 heartbeats throughout but never rejoins; m3 goes silent; m1 rejoins and waits
    // past its own session timeout, which must not expire it.
    let rejoined_at = FORMED_MS + 1_000;
    assert!(g
        .join(join_req("m1", &["range"]), "x".into(), rejoined_at)
        .is_empty());
    let rebalance_deadline = rejoined_at + i64::from(REBALANCE_MS);
    let mut now = rejoined_at;
    let mut expired = Vec::new();
    while now < rebalance_deadline {
        now += 5_000;
        expired.extend(g.tick(now.min(rebalance_deadline - 1)));
        assert_eq!(
            g.heartbeat("m2", None, 1, now.min(rebalance_deadline - 1)),
            ErrorCode::RebalanceInProgress
        );
    }
    assert!(expired.is_empty(), "{expired:?}");
    assert!(g.member("m3").is_none(), "m3's session ran out");
    assert_eq!(g.next_deadline(), Some(rebalance_deadline));

    let out = g.tick(rebalance_deadline);
    let leader = join_for(&out, "m1");
    assert_eq!((leader.generation_id, leader.leader.as_str()), (2, "m1"));
    assert_eq!(leader.members.len(), 1);
    assert!(g.member("m2").is_none());
    assert_eq!(
        g.heartbeat("m2", None, 2, rebalance_deadline),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn member_id_required_round_then_pending_id_expires() {
    let mut g = group();
    let mut req = new_req("m1", &["range"]);
    req.require_known_member_id = true;
    let out = g.join(req.clone(), "m1".into(), 0);
    let r = join_for(&out, "m1");
    assert_eq!(
        (r.error, r.member_id.as_str()),
        (ErrorCode::MemberIdRequired, "m1")
    );
    assert!(g.is_pending_member("m1"));
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.next_deadline(), Some(i64::from(SESSION_MS)));

    let mut rejoin = join_req("m1", &["range"]);
    rejoin.require_known_member_id = true;
    assert!(g.join(rejoin, "unused".into(), 100).is_empty());
    assert!(!g.is_pending_member("m1"));
    assert_eq!(g.next_deadline(), Some(100 + DELAY_MS));
    let out = g.tick(100 + DELAY_MS);
    assert_eq!(join_for(&out, "m1").generation_id, 1);
    assert_eq!(g.sync("m1", None, 1, None, None, vec![], 3_200).len(), 1);

    let out = g.join(req, "m2".into(), 3_500);
    assert_eq!(join_for(&out, "m2").error, ErrorCode::MemberIdRequired);
    assert_eq!(g.heartbeat("m1", None, 1, 12_000), ErrorCode::None);
    assert_eq!(g.next_deadline(), Some(3_500 + i64::from(SESSION_MS)));
    assert!(g.tick(13_500).is_empty());
    assert!(!g.is_pending_member("m2"));
    let out = g.join(join_req("m2", &["range"]), "unused".into(), 13_600);
    assert_eq!(join_for(&out, "m2").error, ErrorCode::UnknownMemberId);
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn protocol_is_chosen_by_majority_among_protocols_all_support() {
    let mut g = group();
    g.join(new_req("m1", &["range", "roundrobin"]), "m1".into(), 0);
    g.join(new_req("m2", &["roundrobin", "range"]), "m2".into(), 0);
    g.join(
        new_req("m3", &["roundrobin", "sticky", "range"]),
        "m3".into(),
        0,
    );
    let out = g.tick(FORMED_MS);

    assert_eq!(g.protocol_name(), Some("roundrobin"));
    let leader = join_for(&out, "m1");
    assert_eq!(leader.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(leader.members[2].metadata, meta("roundrobin-m3"));
}

#[test]
fn inconsistent_protocols_and_bad_session_timeouts_are_refused() {
    let mut g = group();
    let out = g.join(new_req("m0", &[]), "m0".into(), 0);
    assert_eq!(
        join_for(&out, "m0").error,
        ErrorCode::InconsistentGroupProtocol
    );
    form(&mut g, &["m1"]);

    let out = g.join(new_req("m2", &["sticky"]), "m2".into(), 3_000);
    assert_eq!(
        join_for(&out, "m2").error,
        ErrorCode::InconsistentGroupProtocol
    );
    let mut other_type = new_req("m3", &["range"]);
    other_type.protocol_type = "connect".into();
    let out = g.join(other_type, "m3".into(), 3_000);
    assert_eq!(
        join_for(&out, "m3").error,
        ErrorCode::InconsistentGroupProtocol
    );

    for timeout in [5_999, 1_800_001] {
        let mut req = new_req("m4", &["range"]);
        req.session_timeout_ms = timeout;
        let out = g.join(req, "m4".into(), 3_000);
        assert_eq!(join_for(&out, "m4").error, ErrorCode::InvalidSessionTimeout);
    }
    assert_eq!(g.members().count(), 1);
}

#[test]
fn follower_rejoining_stable_with_same_metadata_does_not_rebalance() {
    let mut g = group();
    form_stable(&mut g, &["m1", "m2"], FORMED_MS);

    let out = g.join(join_req("m2", &["range"]), "x".into(), 4_000);
    let r = join_for(&out, "m2");
    assert_eq!(
        (r.error, r.generation_id, r.leader.as_str()),
        (ErrorCode::None, 1, "m1")
    );
    assert_eq!(g.state(), GroupState::Stable);
    let sync = g.sync("m2", None, 1, None, None, vec![], 4_100);
    assert_eq!(sync[0].1.assignment, meta("a-m2"));

    // Changed metadata does rebalance.
    assert!(g
        .join(join_req("m2", &["range", "sticky"]), "x".into(), 5_000)
        .is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn group_max_size_is_enforced() {
    let mut g = Group::new(
        "g".into(),
        GroupConfig {
            max_size: 2,
            ..config()
        },
    );
    assert!(g.join(new_req("m1", &["range"]), "m1".into(), 0).is_empty());
    assert!(g.join(new_req("m2", &["range"]), "m2".into(), 0).is_empty());
    let out = g.join(new_req("m3", &["range"]), "m3".into(), 0);
    let r = join_for(&out, "m3");
    assert_eq!(
        (r.error, r.member_id.as_str()),
        (ErrorCode::GroupMaxSizeReached, "")
    );

    g.tick(FORMED_MS);
    let out = g.join(new_req("m4", &["range"]), "m4".into(), 6_100);
    assert_eq!(join_for(&out, "m4").error, ErrorCode::GroupMaxSizeReached);
    let out = g.join(join_req("m2", &["range"]), "x".into(), 6_100);
    assert_eq!(join_for(&out, "m2").error, ErrorCode::None);
    assert_eq!(g.members().count(), 2);
}

#[test]
fn unsynced_members_are_dropped_at_the_sync_deadline() {
    let mut g = group();
    form(&mut g, &["m1", "m2"]);
    // m2 syncs and waits; the leader heartbeats but never syncs.
    assert!(g.sync("m2", None, 1, None, None, vec![], 6_100).is_empty());
    let sync_deadline = FORMED_MS + i64::from(REBALANCE_MS);
    for now in [10_000, 20_000, 30_000] {
        assert_eq!(g.heartbeat("m1", None, 1, now), ErrorCode::None);
    }
    assert_eq!(g.next_deadline(), Some(sync_deadline));

    let out = g.tick(sync_deadline);
    assert!(g.member("m1").is_none());
    assert_eq!(g.leader(), Some("m2"));
    let failed = syncs(&out);
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].0, failed[0].1.error),
        ("m2", ErrorCode::RebalanceInProgress)
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn next_deadline_follows_the_initial_delay_and_its_extension() {
    let mut g = group();
    assert_eq!(g.next_deadline(), None);
    g.join(new_req("m1", &["range"]), "m1".into(), 0);
    assert_eq!(g.next_deadline(), Some(DELAY_MS));
    g.join(new_req("m2", &["range"]), "m2".into(), 1_000);

    // A member arrived during the delay, so the wait is extended once more.
    assert!(g.tick(DELAY_MS).is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.next_deadline(), Some(2 * DELAY_MS));
    let out = g.tick(2 * DELAY_MS);
    assert_eq!(joins(&out).len(), 2);

    // Now: sessions (from the join completion) come before the sync deadline.
    assert_eq!(
        g.next_deadline(),
        Some(2 * DELAY_MS + i64::from(SESSION_MS))
    );
    assert_eq!(g.heartbeat("m1", None, 1, 7_000), ErrorCode::None);
    assert_eq!(g.heartbeat("m2", None, 1, 8_000), ErrorCode::None);
    assert_eq!(g.next_deadline(), Some(7_000 + i64::from(SESSION_MS)));
}

#[test]
fn snapshot_round_trip_restores_generation_leader_and_assignments() {
    let mut g = group();
    form_stable(&mut g, &["m1", "m2", "m3"], FORMED_MS);
    let snapshot = g.snapshot();
    assert_eq!(snapshot.generation_id, 1);
    assert_eq!(snapshot.members[1].metadata, meta("range-m2"));

    let mut restored = Group::from_snapshot(snapshot.clone(), config(), 50_000);
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(restored.state(), GroupState::Stable);
    assert_eq!(restored.leader(), Some("m1"));
    assert_eq!(restored.protocol_name(), Some("range"));
    assert_eq!(
        restored.next_deadline(),
        Some(50_000 + i64::from(SESSION_MS))
    );
    assert_eq!(restored.heartbeat("m2", None, 1, 50_100), ErrorCode::None);
    let sync = restored.sync("m3", None, 1, None, None, vec![], 50_100);
    assert_eq!(sync[0].1.assignment, meta("a-m3"));

    // The restored group keeps working: a follower with the same metadata rejoins quietly.
    let out = restored.join(join_req("m2", &["range"]), "x".into(), 50_200);
    assert_eq!(join_for(&out, "m2").generation_id, 1);
    assert_eq!(restored.state(), GroupState::Stable);
}

#[test]
fn shut_down_answers_held_requests_with_not_coordinator() {
    let mut g = group();
    form(&mut g, &["m1", "m2"]);
    g.sync("m2", None, 1, None, None, vec![], 3_100);
    assert_eq!(g.check_deletable(), ErrorCode::NonEmptyGroup);

    let out = g.shut_down();
    let failed = syncs(&out);
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].0, failed[0].1.error),
        ("m2", ErrorCode::NotCoordinator)
    );
    assert_eq!(g.state(), GroupState::Dead);
    assert_eq!(g.next_deadline(), None);
    let out = g.join(new_req("m3", &["range"]), "m3".into(), 3_200);
    assert_eq!(
        join_for(&out, "m3").error,
        ErrorCode::CoordinatorNotAvailable
    );
    assert_eq!(g.check_deletable(), ErrorCode::GroupIdNotFound);
}

#[test]
fn shut_down_while_preparing_rebalance_answers_held_joins() {
    let mut g = group();
    g.join(new_req("m1", &["range"]), "m1".into(), 0);
    let out = g.shut_down();
    let r = join_for(&out, "m1");
    assert_eq!(r.error, ErrorCode::NotCoordinator);
}

#[test]
fn new_member_leads_when_the_old_leader_never_rejoins() {
    let mut g = group();
    form_stable(&mut g, &["m1"], 3_000);
    let out = g.join(new_req("m2", &["range"]), "m2".into(), 4_000);
    assert!(out.is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // m1 keeps heartbeating but never rejoins, so only the rebalance timeout ends it.
    for now in [10_000, 20_000, 30_000] {
        assert_eq!(
            g.heartbeat("m1", None, 1, now),
            ErrorCode::RebalanceInProgress
        );
    }
    let out = g.tick(4_000 + i64::from(REBALANCE_MS));
    assert_eq!(join_for(&out, "m2").generation_id, 2);
    assert_eq!(join_for(&out, "m2").leader, "m2");
    assert!(g.member("m1").is_none());
}

#[test]
fn new_member_whose_join_is_never_answered_times_out() {
    let mut g = Group::new(
        "g".into(),
        GroupConfig {
            new_member_join_timeout_ms: 20_000,
            ..config()
        },
    );
    // A static member that never rejoins holds the rebalance open round after round.
    let mut req = static_req("", "i1");
    req.rebalance_timeout_ms = 60_000;
    g.join(req, "s1".into(), 0);
    g.tick(DELAY_MS);
    g.sync("s1", Some("i1"), 1, None, None, vec![], DELAY_MS);
    g.join(new_req("m2", &["range"]), "m2".into(), 4_000);
    for now in (14_000..=24_000).step_by(5_000) {
        assert_eq!(
            g.heartbeat("s1", Some("i1"), 1, now),
            ErrorCode::RebalanceInProgress
        );
    }
    let out = g.tick(24_000);
    let r = join_for(&out, "m2");
    assert_eq!(
        (r.error, r.member_id.as_str()),
        (ErrorCode::UnknownMemberId, "")
    );
    assert!(g.member("m2").is_none());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn offset_commits_follow_kafkas_classic_group_rules_through_a_rebalance() {
    let mut g = group();
    // Empty group: commits from outside it (generation -1) are stored, with or without
    // a member id; a member id with a generation is not a member.
    assert_eq!(g.validate_offset_commit("", None, -1), ErrorCode::None);
    assert_eq!(g.validate_offset_commit("x", None, -1), ErrorCode::None);
    assert_eq!(
        g.validate_offset_commit("x", None, 0),
        ErrorCode::UnknownMemberId
    );

    form_stable(&mut g, &["m1", "m2"], FORMED_MS);
    assert_eq!(g.validate_offset_commit("m2", None, 1), ErrorCode::None);
    assert_eq!(
        g.validate_offset_commit("", None, -1),
        ErrorCode::UnknownMemberId,
        "outside commits only while the group is empty"
    );
    assert_eq!(
        g.validate_offset_commit("m9", None, 1),
        ErrorCode::UnknownMemberId
    );

    // A changed subscription starts a rebalance: the current generation's members may
    // still commit what they consumed (a cooperative consumer's revoke callback).
    assert!(g
        .join(join_req("m2", &["range", "sticky"]), "x".into(), 7_000)
        .is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.validate_offset_commit("m1", None, 1), ErrorCode::None);
    assert_eq!(g.validate_offset_commit("m2", None, 1), ErrorCode::None);
    assert_eq!(
        g.validate_offset_commit("m1", None, 0),
        ErrorCode::IllegalGeneration
    );

    // Everyone rejoined: generation 2, waiting for the leader's assignment.
    assert_eq!(
        joins(&g.join(join_req("m1", &["range"]), "x".into(), 7_100)).len(),
        2
    );
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(
        g.validate_offset_commit("m1", None, 2),
        ErrorCode::RebalanceInProgress
    );
    assert_eq!(
        g.validate_offset_commit("m1", None, 1),
        ErrorCode::IllegalGeneration,
        "a stale generation is illegal before it is a rebalance"
    );
}

#[test]
fn offset_commits_of_static_members_are_checked_by_instance_id() {
    let mut g = group();
    assert!(g.join(static_req("", "i1"), "s1".into(), 0).is_empty());
    g.tick(FORMED_MS);
    assert_eq!(
        g.validate_offset_commit("s1", Some("i1"), 1),
        ErrorCode::RebalanceInProgress
    );
    let assignments = vec![("s1".into(), meta("a-s1"))];
    g.sync("s1", Some("i1"), 1, None, None, assignments, FORMED_MS);
    assert_eq!(
        g.validate_offset_commit("s1", Some("i1"), 1),
        ErrorCode::None
    );
    assert_eq!(
        g.validate_offset_commit("old", Some("i1"), 1),
        ErrorCode::FencedInstanceId
    );
    assert_eq!(
        g.validate_offset_commit("s1", Some("i9"), 1),
        ErrorCode::UnknownMemberId
    );
}
