//! Deterministic tests of the partition core over a temporary directory: no tasks, no
//! clocks, no network; every effect is checked as returned.
use spate_log::test_util::client_batch;
use spate_log::LogConfig;
use spate_metadata::ids::{BrokerEpoch, NodeId};

use super::core::{Effects, PartitionCore};
use super::{
    Assignment, FollowerFetchRequest, Partition, PartitionSettings, Progress, RoleChange,
    TopicPartition,
};
use crate::error::{BrokerError, NotServing};

const NOW: i64 = 1_000_000;

fn tp() -> TopicPartition {
    TopicPartition {
        topic: "t".into(),
        partition: 0,
    }
}

fn open(dir: &std::path::Path, local: i32) -> PartitionCore {
    PartitionCore::open(
        spate_log::LogDir::local(dir),
        tp(),
        NodeId(local),
        LogConfig::default(),
        PartitionSettings::default(),
        NOW,
    )
    .unwrap()
}

fn assignment(leader: i32, leader_epoch: i32, replicas: &[i32], isr: &[i32]) -> Assignment {
    Assignment {
        replicas: replicas.iter().copied().map(NodeId).collect(),
        isr: isr.iter().copied().map(NodeId).collect(),
        leader: Some(NodeId(leader)),
        leader_epoch,
        partition_epoch: leader_epoch,
    }
}

/// Runs `f` with fresh effects and returns both.
fn with_fx<T>(f: impl FnOnce(&mut Effects) -> T) -> (T, Effects) {
    let mut fx = Effects::default();
    let out = f(&mut fx);
    (out, fx)
}

/// Completes the fsync the core asks for, as the flusher would.
fn flush(core: &mut PartitionCore) -> Effects {
    let job = core.flush_job().expect("something to flush");
    let upto = job.upto;
    let synced = job.run().map_err(|e| e.to_string());
    with_fx(|fx| core.complete_flush(upto, synced, fx)).1
}

/// A fetch by `follower` (broker epoch 7) at `current_leader_epoch` from `fetch_offset`.
fn fetch(
    follower: NodeId,
    current_leader_epoch: i32,
    fetch_offset: i64,
    max_bytes: usize,
) -> FollowerFetchRequest {
    FollowerFetchRequest {
        follower,
        broker_epoch: BrokerEpoch(7),
        current_leader_epoch,
        fetch_offset,
        max_bytes,
    }
}

fn published(fx: &Effects) -> &Progress {
    &fx.publish.as_ref().expect("progress published").1
}

#[test]
fn a_single_replica_leader_commits_once_the_append_is_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = open(dir.path(), 1);
    let (change, fx) = with_fx(|fx| core.apply_assignment(&assignment(1, 0, &[1], &[1]), NOW, fx));
    assert_eq!(change.unwrap(), RoleChange::Leading);
    assert_eq!(published(&fx).leading_epoch, Some(0));

    let (r, fx) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 3, None), Some(1), None, NOW, fx));
    let (info, epoch) = r.unwrap();
    assert_eq!((info.first_offset, info.last_offset, epoch), (0, 2, 0));
    // The LEO moves, the flusher is woken, and the high watermark waits for the fsync
    // (flush.messages=1).
    assert!(fx.flush, "acks wait on fsync: the flusher must be woken");
    assert_eq!(published(&fx).log_end_offset, 3);
    assert_eq!(published(&fx).high_watermark, 0);
    let (_, fx) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 2, None), None, None, NOW, fx));
    assert_eq!(published(&fx).log_end_offset, 5);

    let fx = flush(&mut core);
    let p = published(&fx);
    assert_eq!((p.durable, p.high_watermark), (5, 5));
    assert_eq!(core.read_committed(0, 1 << 20, true).unwrap().1, 5);
}

#[test]
fn flush_messages_above_one_fsyncs_every_n_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = open(dir.path(), 1);
    let configs = [("flush.messages".to_string(), "3".to_string())]
        .into_iter()
        .collect();
    let _ = with_fx(|fx| {
        core.update_config(
            LogConfig::default(),
            PartitionSettings::from_configs(&configs),
            fx,
        )
    });
    let (change, _) = with_fx(|fx| core.apply_assignment(&assignment(1, 0, &[1], &[1]), NOW, fx));
    assert_eq!(change.unwrap(), RoleChange::Leading);
    let (r, fx) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 2, None), Some(1), None, NOW, fx));
    r.unwrap();
    assert!(!fx.flush, "2 records: below flush.messages, no fsync yet");
    // Not waiting on fsync, acks=1 is answered from the LEO.
    assert_eq!(published(&fx).high_watermark, 2);
    let (r, fx) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 1, None), Some(1), None, NOW, fx));
    r.unwrap();
    assert!(fx.flush, "3 records not yet durable: the flusher is woken");
    let fx = flush(&mut core);
    assert_eq!(published(&fx).durable, 3);
}

#[test]
fn the_high_watermark_waits_for_every_isr_follower() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = open(dir.path(), 1);
    let _ = with_fx(|fx| core.apply_assignment(&assignment(1, 3, &[1, 2, 3], &[1, 2, 3]), NOW, fx));
    let _ = with_fx(|fx| core.append_as_leader(&client_batch(NOW, 4, None), None, None, NOW, fx))
        .0
        .unwrap();
    let _ = flush(&mut core);
    assert_eq!(
        core.progress().high_watermark,
        0,
        "followers hold nothing yet"
    );

    // Follower 2 fetches from 0 (has nothing) and gets the batch; then reports 4.
    let (fetched, _) =
        with_fx(|fx| core.serve_follower_fetch(&fetch(NodeId(2), 3, 0, 1 << 20), NOW, fx));
    let fetched = fetched.unwrap();
    assert!(!fetched.view.read(1 << 20, true).unwrap().is_empty());
    assert_eq!(fetched.log_end_offset, 4);
    let (_, fx) =
        with_fx(|fx| core.serve_follower_fetch(&fetch(NodeId(2), 3, 4, 1 << 20), NOW, fx));
    assert!(
        fx.publish.is_none(),
        "one ISR follower short: nothing moves"
    );
    assert_eq!(core.progress().high_watermark, 0);
    let (r, fx) =
        with_fx(|fx| core.serve_follower_fetch(&fetch(NodeId(3), 3, 4, 1 << 20), NOW, fx));
    assert!(r.unwrap().view.read(1 << 20, true).unwrap().is_empty());
    assert_eq!(published(&fx).high_watermark, 4);

    // A stale or future leader epoch in a follower fetch is refused (KIP-320).
    let (r, _) = with_fx(|fx| core.serve_follower_fetch(&fetch(NodeId(2), 2, 4, 1), NOW, fx));
    assert!(matches!(
        r,
        Err(BrokerError::FencedLeaderEpoch {
            given: 2,
            current: 3,
            ..
        })
    ));
    let (r, _) = with_fx(|fx| core.serve_follower_fetch(&fetch(NodeId(2), 4, 4, 1), NOW, fx));
    assert!(matches!(
        r,
        Err(BrokerError::UnknownLeaderEpoch {
            given: 4,
            current: 3,
            ..
        })
    ));
    // A fetch past the LEO is out of range; a non-replica is not a follower.
    let (r, _) = with_fx(|fx| core.serve_follower_fetch(&fetch(NodeId(2), 3, 5, 1), NOW, fx));
    assert!(matches!(
        r,
        Err(BrokerError::Log(
            spate_log::LogError::OffsetOutOfRange { .. }
        ))
    ));
    let (r, _) = with_fx(|fx| core.serve_follower_fetch(&fetch(NodeId(9), 3, 0, 1), NOW, fx));
    assert!(matches!(
        r,
        Err(BrokerError::NotLeaderOrFollower {
            why: NotServing::NotAReplica { replica: NodeId(9) },
            ..
        })
    ));
}

#[test]
fn acks_all_is_refused_before_appending_when_the_isr_is_too_small() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = open(dir.path(), 1);
    let _ = with_fx(|fx| core.apply_assignment(&assignment(1, 0, &[1, 2, 3], &[1]), NOW, fx));
    let (r, fx) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 1, None), Some(2), None, NOW, fx));
    assert!(matches!(
        r,
        Err(BrokerError::NotEnoughReplicas {
            isr_size: 1,
            min_insync: 2,
            ..
        })
    ));
    assert!(fx.publish.is_none() && !fx.flush);
    assert_eq!(core.log_end_offset(), 0, "nothing was written");
}

#[test]
fn only_the_leader_of_the_expected_epoch_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = open(dir.path(), 1);
    let (r, _) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 1, None), None, None, NOW, fx));
    assert!(
        matches!(
            r,
            Err(BrokerError::NotLeaderOrFollower {
                why: NotServing::NotLeader,
                ..
            })
        ),
        "a new replica leads nothing"
    );

    let _ = with_fx(|fx| core.apply_assignment(&assignment(1, 5, &[1], &[1]), NOW, fx));
    let (r, _) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 1, None), None, Some(4), NOW, fx));
    assert!(
        matches!(
            r,
            Err(BrokerError::NotLeaderOrFollower {
                why: NotServing::NotLeader,
                ..
            })
        ),
        "an internal writer of epoch 4"
    );
    let (r, _) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 1, None), None, Some(5), NOW, fx));
    assert_eq!(r.unwrap().1, 5);

    // A late, older image changes nothing.
    let (r, fx) = with_fx(|fx| core.apply_assignment(&assignment(2, 4, &[1, 2], &[1, 2]), NOW, fx));
    assert_eq!(r.unwrap(), RoleChange::Unchanged);
    assert!(fx.publish.is_none());
    assert!(core.leader_state().is_leader);
}

#[test]
fn a_retried_idempotent_batch_is_answered_with_its_first_placement() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = open(dir.path(), 1);
    let _ = with_fx(|fx| core.apply_assignment(&assignment(1, 0, &[1], &[1]), NOW, fx));
    let first = client_batch(NOW, 3, Some((42, 0, 0)));
    let (a, _) = with_fx(|fx| core.append_as_leader(&first, None, None, NOW, fx));
    let (a, _) = a.unwrap();
    let (b, fx) = with_fx(|fx| core.append_as_leader(&first, None, None, NOW, fx));
    let (b, _) = b.unwrap();
    assert_eq!(
        (b.first_offset, b.last_offset),
        (a.first_offset, a.last_offset)
    );
    assert!(fx.publish.is_none(), "a duplicate writes nothing");
    assert_eq!(core.log_end_offset(), 3);

    // A gap in the sequence is refused.
    let gap = client_batch(NOW, 1, Some((42, 0, 7)));
    let (r, _) = with_fx(|fx| core.append_as_leader(&gap, None, None, NOW, fx));
    assert!(matches!(r, Err(BrokerError::Sequence(_))));
    assert_eq!(core.producer_count(), 1);
}

#[test]
fn producer_state_and_high_watermark_survive_a_clean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let batch = client_batch(NOW, 2, Some((7, 1, 0)));
    {
        let mut core = open(dir.path(), 1);
        let _ = with_fx(|fx| core.apply_assignment(&assignment(1, 0, &[1], &[1]), NOW, fx));
        let _ = with_fx(|fx| core.append_as_leader(&batch, None, None, NOW, fx))
            .0
            .unwrap();
        let _ = flush(&mut core);
        let (r, fx) = with_fx(|fx| core.close(NOW, fx));
        r.unwrap();
        assert!(fx.flush, "the flusher is woken to see the partition closed");
        assert!(core.is_closed());
        let (r, _) = with_fx(|fx| core.append_as_leader(&batch, None, None, NOW, fx));
        assert!(
            matches!(
                r,
                Err(BrokerError::NotLeaderOrFollower {
                    why: NotServing::NotHosted,
                    ..
                })
            ),
            "closed: nothing more is written"
        );
    }
    let mut core = open(dir.path(), 1);
    assert_eq!(
        core.progress().high_watermark,
        2,
        "restored from the checkpoint"
    );
    assert_eq!(core.progress().leading_epoch, None);
    let _ = with_fx(|fx| core.apply_assignment(&assignment(1, 1, &[1], &[1]), NOW, fx));
    let (dup, _) = with_fx(|fx| core.append_as_leader(&batch, None, None, NOW, fx));
    assert_eq!(
        dup.unwrap().0.first_offset,
        0,
        "the retry is still known as a duplicate"
    );
    assert_eq!(core.log_end_offset(), 2);
}

#[test]
fn a_follower_appends_the_leaders_batches_and_truncates_when_told() {
    let leader_dir = tempfile::tempdir().unwrap();
    let mut leader = open(leader_dir.path(), 1);
    let _ = with_fx(|fx| leader.apply_assignment(&assignment(1, 2, &[1, 2], &[1, 2]), NOW, fx));
    for _ in 0..3 {
        let _ = with_fx(|fx| {
            leader.append_as_leader(&client_batch(NOW, 2, Some((9, 0, 0))), None, None, NOW, fx)
        });
    }
    // Only the first of those was new; the other two were retries of it.
    assert_eq!(leader.log_end_offset(), 2);
    let _ = with_fx(|fx| {
        leader.append_as_leader(&client_batch(NOW, 3, Some((9, 0, 2))), None, None, NOW, fx)
    })
    .0
    .unwrap();
    let records = leader
        .read_below(0, 1 << 20, leader.log_end_offset())
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut follower = open(dir.path(), 2);
    let (r, fx) =
        with_fx(|fx| follower.apply_assignment(&assignment(1, 2, &[1, 2], &[1, 2]), NOW, fx));
    assert_eq!(
        r.unwrap(),
        RoleChange::Follow {
            leader: NodeId(1),
            leader_epoch: 2
        }
    );
    assert_eq!(published(&fx).isr_size, 2);
    // Appends of an older leadership are refused.
    let (r, _) = with_fx(|fx| follower.append_as_follower(1, &records, 0, 0, NOW, fx));
    assert!(matches!(
        r,
        Err(BrokerError::NotLeaderOrFollower {
            why: NotServing::NoLongerFollowing { leader_epoch: 1 },
            ..
        })
    ));

    let (leo, fx) = with_fx(|fx| follower.append_as_follower(2, &records, 3, 0, NOW, fx));
    assert_eq!(leo.unwrap(), 5);
    assert!(fx.flush);
    let p = published(&fx);
    assert_eq!(
        (p.log_end_offset, p.high_watermark),
        (5, 3),
        "the leader's HW, capped by ours"
    );
    assert_eq!(follower.producer_count(), 1);
    assert_eq!(follower.latest_epoch(), Some(2));
    let _ = flush(&mut follower);

    let (leo, fx) = with_fx(|fx| follower.truncate_as_follower(2, 2, false, NOW, fx));
    assert_eq!(leo.unwrap(), 2);
    let p = published(&fx);
    assert_eq!((p.log_end_offset, p.durable, p.high_watermark), (2, 2, 2));
    // The producer's last batch is gone: its next sequence is 2 again.
    let (r, _) = with_fx(|fx| follower.apply_assignment(&assignment(2, 3, &[1, 2], &[2]), NOW, fx));
    assert_eq!(r.unwrap(), RoleChange::Leading);
    let (r, _) = with_fx(|fx| {
        follower.append_as_leader(&client_batch(NOW, 1, Some((9, 0, 2))), None, None, NOW, fx)
    });
    assert_eq!(r.unwrap().0.first_offset, 2);
}

#[test]
fn a_failed_fsync_takes_the_partition_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = open(dir.path(), 1);
    let _ = with_fx(|fx| core.apply_assignment(&assignment(1, 0, &[1], &[1]), NOW, fx));
    let _ = with_fx(|fx| core.append_as_leader(&client_batch(NOW, 1, None), None, None, NOW, fx))
        .0
        .unwrap();
    let upto = core.flush_job().unwrap().upto;
    let (_, fx) = with_fx(|fx| core.complete_flush(upto, Err("EIO".into()), fx));
    let p = published(&fx);
    assert!(p.failed.as_deref().is_some_and(|r| r.contains("EIO")));
    assert_eq!(p.durable, 0, "nothing is claimed durable");
    assert!(
        core.flush_job().is_none(),
        "a failed log is not flushed again"
    );
    let (r, _) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 1, None), None, None, NOW, fx));
    assert!(matches!(r, Err(BrokerError::StorageOffline { .. })));
    assert!(matches!(
        core.read_committed(0, 1, true),
        Err(BrokerError::StorageOffline { .. })
    ));
}

#[test]
fn the_handle_publishes_in_version_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = open(dir.path(), 1);
    let _ = with_fx(|fx| core.apply_assignment(&assignment(1, 0, &[1], &[1]), NOW, fx));
    let (_, first) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 1, None), None, None, NOW, fx));
    let (_, second) =
        with_fx(|fx| core.append_as_leader(&client_batch(NOW, 1, None), None, None, NOW, fx));
    let partition = Partition::new(core, [0; 16]);
    let rx = partition.subscribe();
    // The second append's effects arrive first (its caller unlocked later but ran
    // ahead); the first's must not move the LEO back.
    partition.apply(second);
    partition.apply(first);
    assert_eq!(rx.borrow().log_end_offset, 2);
}
