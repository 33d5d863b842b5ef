//! KIP-345 static members: restart without rebalance, fencing, leave by instance id.
use super::test_util::*;
use super::*;

/// Static members `s1` (instance `i1`, leader) and `s2` (`i2`), Stable with
/// assignments `a-s1`, `a-s2`, at [`FORMED_MS`].
fn stable_static_group() -> Group {
    let mut g = group();
    assert!(g.join(static_req("", "i1"), "s1".into(), 0).is_empty());
    assert!(g.join(static_req("", "i2"), "s2".into(), 0).is_empty());
    assert_eq!(joins(&g.tick(FORMED_MS)).len(), 2);
    assert!(g
        .sync("s2", Some("i2"), 1, None, None, vec![], FORMED_MS)
        .is_empty());
    let assignments = vec![("s1".into(), meta("a-s1")), ("s2".into(), meta("a-s2"))];
    assert_eq!(
        g.sync("s1", Some("i1"), 1, None, None, assignments, FORMED_MS)
            .len(),
        2
    );
    assert_eq!(g.state(), GroupState::Stable);
    g
}

#[test]
fn static_follower_restart_keeps_its_assignment_without_rebalance_and_fences_the_old_id() {
    let mut g = stable_static_group();

    let out = g.join(static_req("", "i2"), "s2b".into(), 7_000);
    let r = join_for(&out, "s2b");
    assert_eq!(
        (r.error, r.generation_id, r.leader.as_str()),
        (ErrorCode::None, 1, "s1")
    );
    assert_eq!(r.member_id, "s2b");
    assert!(r.members.is_empty() && !r.skip_assignment);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.generation_id(), 1);

    let sync = g.sync("s2b", Some("i2"), 1, None, None, vec![], 7_100);
    assert_eq!(
        (sync[0].1.error, sync[0].1.assignment.clone()),
        (ErrorCode::None, meta("a-s2"))
    );
    assert_eq!(
        g.heartbeat("s2", Some("i2"), 1, 7_200),
        ErrorCode::FencedInstanceId
    );
    let stale = g.sync("s2", Some("i2"), 1, None, None, vec![], 7_200);
    assert_eq!(stale[0].1.error, ErrorCode::FencedInstanceId);
    let out = g.join(static_req("s2", "i2"), "x".into(), 7_300);
    assert_eq!(join_for(&out, "s2").error, ErrorCode::FencedInstanceId);
    assert_eq!(g.heartbeat("s2b", Some("i2"), 1, 7_300), ErrorCode::None);
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn static_leader_restart_is_told_to_skip_assignment() {
    let mut g = stable_static_group();
    let out = g.join(static_req("", "i1"), "s1b".into(), 7_000);
    let r = join_for(&out, "s1b");
    assert_eq!((r.leader.as_str(), r.skip_assignment), ("s1b", true));
    assert_eq!(r.members.len(), 2);
    assert_eq!(g.leader(), Some("s1b"));
    assert_eq!(g.state(), GroupState::Stable);

    // A pre-KIP-814 client is given the old leader id so it does not act as leader.
    let mut old_client = static_req("", "i1");
    old_client.supports_skip_assignment = false;
    let out = g.join(old_client, "s1c".into(), 7_100);
    let r = join_for(&out, "s1c");
    assert_eq!((r.leader.as_str(), r.skip_assignment), ("s1b", false));
    assert!(r.members.is_empty());
    assert_eq!(g.leader(), Some("s1c"));
}

#[test]
fn static_restart_with_new_protocols_keeps_the_selected_one_or_is_refused() {
    let mut g = stable_static_group();
    let mut req = static_req("", "i2");
    req.protocols = vec![
        ("roundrobin".into(), meta("x")),
        ("range".into(), meta("y")),
    ];
    // s1 votes range, s2b roundrobin: the tie goes to the first vote in join order, so
    // the selected protocol stays "range" and there is no rebalance.
    let out = g.join(req, "s2b".into(), 7_000);
    assert_eq!(join_for(&out, "s2b").error, ErrorCode::None);
    assert_eq!(g.state(), GroupState::Stable);

    let mut req = static_req("", "i2");
    req.protocols = vec![("roundrobin".into(), meta("x"))];
    // "range" is no longer supported by everyone: refused as inconsistent.
    let out = g.join(req, "s2c".into(), 7_100);
    assert_eq!(
        join_for(&out, "s2c").error,
        ErrorCode::InconsistentGroupProtocol
    );
}

#[test]
fn static_restart_while_completing_rebalance_fences_the_held_sync_and_rebalances() {
    let mut g = group();
    g.join(static_req("", "i1"), "s1".into(), 0);
    g.join(static_req("", "i2"), "s2".into(), 0);
    g.tick(FORMED_MS);
    assert!(g
        .sync("s2", Some("i2"), 1, None, None, vec![], 6_100)
        .is_empty());

    let out = g.join(static_req("", "i2"), "s2b".into(), 6_200);
    let fenced = syncs(&out);
    assert_eq!(fenced.len(), 1);
    assert_eq!(
        (fenced[0].0, fenced[0].1.error),
        ("s2", ErrorCode::FencedInstanceId)
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert!(g.member("s2b").unwrap().is_awaiting_join());
}

#[test]
fn static_member_leaves_by_instance_id() {
    let mut g = stable_static_group();
    let (errors, out) = g.leave(
        vec![
            ("".into(), Some("i9".into())),
            ("s1b".into(), Some("i1".into())),
            ("".into(), Some("i2".into())),
        ],
        7_000,
    );
    assert_eq!(
        errors,
        vec![
            ErrorCode::UnknownMemberId,
            ErrorCode::FencedInstanceId,
            ErrorCode::None
        ]
    );
    assert!(out.is_empty());
    assert!(g.member("s2").is_none());
    assert_eq!(g.state(), GroupState::PreparingRebalance);

    let out = g.join(static_req("s1", "i1"), "x".into(), 7_100);
    let r = join_for(&out, "s1");
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
}

#[test]
fn static_member_that_does_not_rejoin_stays_in_the_group() {
    let mut g = stable_static_group();
    assert!(g.join(static_req("s1", "i1"), "x".into(), 7_000).is_empty());
    for now in [10_000, 20_000, 30_000] {
        assert_eq!(
            g.heartbeat("s2", Some("i2"), 1, now),
            ErrorCode::RebalanceInProgress
        );
    }
    let out = g.tick(7_000 + i64::from(REBALANCE_MS));
    let r = join_for(&out, "s1");
    assert_eq!((r.generation_id, r.members.len()), (2, 2));
    // It keeps its old assignment until the leader's next sync replaces it.
    assert_eq!(g.member("s2").unwrap().assignment, meta("a-s2"));
    assert_eq!(
        g.heartbeat("s2", Some("i2"), 1, 37_100),
        ErrorCode::IllegalGeneration
    );
}
