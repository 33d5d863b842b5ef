//! Deterministic tests of a group shard as the coordinator runtime drives it: replay,
//! load, timers. No partition, no tasks: records are encoded as the runtime would
//! append them and handed to the shard directly.
use bytes::Bytes;

use super::*;

fn offset(group: &str, partition: i32, value: Option<i64>, committed_at: i64) -> OffsetsRecord {
    OffsetsRecord::Offset {
        group: group.into(),
        topic: "t".into(),
        partition,
        value: value.map(|offset| CommittedOffset {
            offset,
            leader_epoch: 0,
            metadata: String::new(),
            commit_timestamp: committed_at,
        }),
    }
}

fn chunk(records: &[OffsetsRecord]) -> Bytes {
    <GroupShard as CoordinatorShard>::encode(records, 0).unwrap()
}

fn committed(shard: &GroupShard, group: &str, partition: i32) -> Option<i64> {
    let entry = shard.groups.get(group)?;
    entry
        .offsets
        .get(&("t".to_string(), partition))
        .map(|(c, _)| c.offset)
}

#[test]
fn replay_rebuilds_offsets_in_log_order_and_honours_tombstones() {
    let mut shard = GroupShard::new(GroupConfig::default(), i64::MAX);
    shard.replay(
        chunk(&[offset("g1", 0, Some(5), 0), offset("g2", 0, Some(3), 0)]),
        1,
    );
    shard.replay(
        chunk(&[offset("g1", 0, Some(9), 0), offset("g1", 1, Some(1), 0)]),
        3,
    );
    shard.replay(chunk(&[offset("g1", 1, None, 0)]), 4);
    // Deleting a group removes its offsets with it.
    shard.replay(
        chunk(&[OffsetsRecord::Group {
            group: "g2".into(),
            value: None,
        }]),
        5,
    );
    assert!(
        shard.groups.is_empty(),
        "nothing serves before the load ends"
    );
    shard.on_loaded(0);
    assert_eq!(committed(&shard, "g1", 0), Some(9));
    assert_eq!(committed(&shard, "g1", 1), None);
    assert!(!shard.groups.contains_key("g2"));
    let (_, at) = &shard.groups["g1"].offsets[&("t".to_string(), 0)];
    assert_eq!(*at, 3, "an offset remembers the log offset that set it");
}

#[test]
fn records_that_do_not_decode_are_skipped() {
    let mut shard = GroupShard::new(GroupConfig::default(), i64::MAX);
    // Keyless records, as a client producing into the internal topic would write.
    let foreign = Bytes::from(spate_log::test_util::client_batch(0, 2, None));
    shard.replay(foreign, 1);
    shard.replay(chunk(&[offset("g", 0, Some(7), 0)]), 2);
    shard.on_loaded(0);
    assert_eq!(
        shard.loading.skipped, 0,
        "the load's state is dropped once loaded"
    );
    assert_eq!(committed(&shard, "g", 0), Some(7));
}

#[test]
fn offsets_of_a_group_empty_for_the_retention_time_expire() {
    let retention = 1_000;
    let mut shard = GroupShard::new(GroupConfig::default(), retention);
    shard.replay(
        chunk(&[offset("g", 0, Some(5), 0), offset("g", 1, Some(6), 1_500)]),
        1,
    );
    shard.on_loaded(0);
    // A group known only from its offsets gets its (Empty) metadata written once.
    let writes = shard.tick(0);
    assert_eq!(writes.len(), 1);
    assert!(matches!(
        &writes[0].records[..],
        [OffsetsRecord::Group { value: Some(_), .. }]
    ));
    for w in writes {
        (w.then)(&mut shard, Ok(2));
    }
    assert!(
        shard.tick(999).is_empty(),
        "empty for less than the retention time"
    );

    // Empty for the retention time: offsets committed before now - retention go.
    let mut writes = shard.tick(2_000);
    assert_eq!(writes.len(), 1);
    let w = writes.pop().unwrap();
    assert_eq!(w.records, vec![offset("g", 0, None, 0)]);
    (w.then)(&mut shard, Ok(10));
    assert_eq!(committed(&shard, "g", 0), None);
    assert_eq!(committed(&shard, "g", 1), Some(6));

    // A failed write changes nothing; the next tick asks again.
    let mut writes = shard.tick(3_000);
    let w = writes.pop().unwrap();
    (w.then)(&mut shard, Err(ErrorCode::NotCoordinator));
    assert_eq!(committed(&shard, "g", 1), Some(6));
    assert_eq!(shard.tick(3_100).len(), 1);
}
