//! Deterministic tests of one transactional id's decisions: each request's transition is
//! "written" by completing it, as the coordinator does once the write commits.
use spate_metadata::ErrorCode;

use super::metadata::{EndStep, InitStep, TxnMetadata, TxnVersion, NO_PRODUCER_EPOCH};
use super::state::TxnState::{self, *};
use crate::topic_partition::TopicPartition;

const V2: TxnVersion = TxnVersion::V2;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.to_string(),
        partition,
    }
}

/// Producer ids handed out from 1000 up.
struct Ids(i64);

impl Ids {
    fn next(&mut self) -> Result<i64, ErrorCode> {
        self.0 += 1;
        Ok(self.0)
    }
}

fn init(m: &mut TxnMetadata, expected: Option<(i64, i16)>, ids: &mut Ids) -> (i64, i16) {
    match m
        .init_producer_id(60_000, expected, 10, &mut || ids.next())
        .unwrap()
    {
        InitStep::Ready(t) => {
            let answer = (t.producer_id, t.producer_epoch);
            m.complete(t).unwrap();
            answer
        }
        InitStep::AbortOpen(t) => panic!("unexpected abort {t:?}"),
    }
}

/// EndTxn, then the markers "written" and the Complete state committed; returns the
/// answer the client got.
fn end(m: &mut TxnMetadata, pid: i64, epoch: i16, commit: bool, ids: &mut Ids) -> (i64, i16) {
    match m
        .end_txn(pid, epoch, commit, V2, 20, &mut || ids.next())
        .unwrap()
    {
        EndStep::Prepare(t) => {
            m.complete(t).unwrap();
            let done = m.prepare_complete(30).unwrap();
            let answer = (done.producer_id, done.producer_epoch);
            m.complete(done).unwrap();
            answer
        }
        EndStep::Done {
            producer_id,
            producer_epoch,
        } => (producer_id, producer_epoch),
    }
}

fn add(m: &mut TxnMetadata, pid: i64, epoch: i16, parts: &[TopicPartition]) {
    if let Some(t) = m.add_partitions(pid, epoch, parts, V2, 15).unwrap() {
        m.complete(t).unwrap();
    }
}

#[test]
fn states_follow_kafkas_table() {
    let all = [
        Empty,
        Ongoing,
        PrepareCommit,
        PrepareAbort,
        CompleteCommit,
        CompleteAbort,
        Dead,
        PrepareEpochFence,
    ];
    for s in all {
        assert_eq!(TxnState::from_id(s.id()), Some(s));
    }
    assert_eq!(TxnState::from_id(8), None);
    assert_eq!(CompleteCommit.valid_previous(), &[PrepareCommit]);
    assert!(!PrepareCommit.valid_previous().contains(&Empty));
    // A transaction can only end by preparing, and only an open one can commit.
    for s in all {
        if s.is_complete() {
            assert!(s.valid_previous().iter().all(|p| p.is_prepare()));
        }
    }
    assert!(Empty.may_expire() && CompleteAbort.may_expire() && !Ongoing.may_expire());
}

#[test]
fn a_transaction_commits_one_epoch_up_and_a_retry_is_answered() {
    let mut ids = Ids(1000);
    let mut m = TxnMetadata::new("app", 1000, 60_000, 0);
    assert_eq!(init(&mut m, None, &mut ids), (1000, 0));
    add(&mut m, 1000, 0, &[tp("out", 0), tp("out", 1)]);
    assert_eq!(m.state, Ongoing);
    assert_eq!(m.start_ms, 15);
    // Adding what is in already writes nothing.
    assert_eq!(m.add_partitions(1000, 0, &[tp("out", 1)], V2, 16), Ok(None));
    assert_eq!(end(&mut m, 1000, 0, true, &mut ids), (1000, 1));
    assert_eq!(m.state, CompleteCommit);
    assert!(m.partitions.is_empty());
    // The client lost the answer and retries with its old epoch: the same answer.
    assert_eq!(end(&mut m, 1000, 0, true, &mut ids), (1000, 1));
    // An abort retried against the commit is refused.
    assert_eq!(
        m.end_txn(1000, 0, false, V2, 40, &mut || ids.next()),
        Err(ErrorCode::InvalidTxnState)
    );
    // The next transaction runs in the new epoch; the old one is fenced.
    assert_eq!(
        m.add_partitions(1000, 0, &[tp("out", 0)], V2, 50),
        Err(ErrorCode::ProducerFenced)
    );
    add(&mut m, 1000, 1, &[tp("out", 0)]);
    assert_eq!(end(&mut m, 1000, 1, false, &mut ids), (1000, 2));
    assert_eq!(m.state, CompleteAbort);
}

#[test]
fn a_new_instance_fences_the_old_one_and_aborts_its_open_transaction() {
    let mut ids = Ids(1000);
    let mut m = TxnMetadata::new("app", 1000, 60_000, 0);
    init(&mut m, None, &mut ids);
    add(&mut m, 1000, 0, &[tp("out", 0)]);
    // The second instance's InitProducerId aborts the open transaction one epoch up.
    let InitStep::AbortOpen(abort) = m
        .init_producer_id(60_000, None, 20, &mut || ids.next())
        .unwrap()
    else {
        panic!("expected an abort first")
    };
    assert_eq!((abort.state, abort.producer_epoch), (PrepareAbort, 1));
    assert_eq!(abort.partitions, [tp("out", 0)].into_iter().collect());
    // While it is written, everyone waits.
    assert_eq!(
        m.init_producer_id(60_000, None, 21, &mut || ids.next()),
        Err(ErrorCode::ConcurrentTransactions)
    );
    m.complete(abort).unwrap();
    // The zombie's writes and its commit are refused.
    assert_eq!(
        m.add_partitions(1000, 0, &[tp("out", 1)], V2, 22),
        Err(ErrorCode::ProducerFenced)
    );
    assert_eq!(
        m.end_txn(1000, 0, true, V2, 22, &mut || ids.next()),
        Err(ErrorCode::InvalidTxnState)
    );
    assert_eq!(
        m.verify_partitions(1000, 0, &[tp("out", 0)]),
        Err(ErrorCode::ProducerFenced)
    );
    // The new instance retries InitProducerId until the abort completed.
    assert_eq!(
        m.init_producer_id(60_000, None, 23, &mut || ids.next()),
        Err(ErrorCode::ConcurrentTransactions)
    );
    let done = m.prepare_complete(24).unwrap();
    m.complete(done).unwrap();
    assert_eq!(init(&mut m, None, &mut ids), (1000, 2));
    assert_eq!(m.state, Empty);
}

#[test]
fn init_producer_id_with_an_expected_epoch_is_kip_360() {
    let mut ids = Ids(1000);
    let mut m = TxnMetadata::new("app", 1000, 60_000, 0);
    assert_eq!(init(&mut m, Some((-1, -1)), &mut ids), (1000, 0));
    assert_eq!(init(&mut m, Some((1000, 0)), &mut ids), (1000, 1));
    assert_eq!(m.last_producer_epoch, 0);
    // The answer was lost: the retry with the epoch before gets the same epoch again.
    assert_eq!(init(&mut m, Some((1000, 0)), &mut ids), (1000, 1));
    // A producer id it never had, or an epoch it cannot have, is fenced.
    assert_eq!(
        m.init_producer_id(60_000, Some((77, 0)), 10, &mut || ids.next()),
        Err(ErrorCode::ProducerFenced)
    );
    assert_eq!(
        m.init_producer_id(60_000, Some((1000, 7)), 10, &mut || ids.next()),
        Err(ErrorCode::ProducerFenced)
    );
    assert_eq!(m.pending(), None, "a refusal leaves nothing pending");
}

#[test]
fn a_used_up_epoch_moves_the_producer_to_a_new_id() {
    let mut ids = Ids(2000);
    let mut m = TxnMetadata::new("app", 1000, 60_000, 0);
    init(&mut m, None, &mut ids);
    m.producer_epoch = i16::MAX - 1;
    // InitProducerId at a used-up epoch: a new id at epoch 0.
    assert_eq!(init(&mut m, None, &mut ids), (2001, 0));
    assert_eq!(m.previous_producer_id, 1000);
    // EndTxn at a used-up epoch: the transaction's markers use the old id one epoch up,
    // and the answer moves the client to a new id.
    m.producer_epoch = i16::MAX - 1;
    add(&mut m, 2001, i16::MAX - 1, &[tp("out", 0)]);
    let EndStep::Prepare(prepare) = m
        .end_txn(2001, i16::MAX - 1, true, V2, 20, &mut || ids.next())
        .unwrap()
    else {
        panic!("expected a prepare")
    };
    assert_eq!(
        (
            prepare.producer_id,
            prepare.producer_epoch,
            prepare.next_producer_id
        ),
        (2001, i16::MAX, 2002)
    );
    m.complete(prepare).unwrap();
    let done = m.prepare_complete(30).unwrap();
    assert_eq!((done.producer_id, done.producer_epoch), (2002, 0));
    m.complete(done).unwrap();
    // A retry from across the rotation is recognised.
    assert_eq!(end(&mut m, 2001, i16::MAX - 1, true, &mut ids), (2002, 0));
}

#[test]
fn an_abort_with_nothing_added_ends_the_epoch() {
    let mut ids = Ids(1000);
    let mut m = TxnMetadata::new("app", 1000, 60_000, 0);
    init(&mut m, None, &mut ids);
    assert_eq!(end(&mut m, 1000, 0, false, &mut ids), (1000, 1));
    assert_eq!(m.state, CompleteAbort);
    // A commit of nothing is not a transaction.
    assert_eq!(
        m.end_txn(1000, 1, true, V2, 40, &mut || ids.next()),
        Err(ErrorCode::InvalidTxnState)
    );
}

#[test]
fn the_original_protocol_keeps_its_epoch() {
    let mut ids = Ids(1000);
    let mut m = TxnMetadata::new("app", 1000, 60_000, 0);
    init(&mut m, None, &mut ids);
    let t = m
        .add_partitions(1000, 0, &[tp("out", 0)], TxnVersion::V0, 15)
        .unwrap()
        .unwrap();
    m.complete(t).unwrap();
    let EndStep::Prepare(t) = m
        .end_txn(1000, 0, true, TxnVersion::V0, 20, &mut || ids.next())
        .unwrap()
    else {
        panic!("expected a prepare")
    };
    assert_eq!(t.producer_epoch, 0);
    m.complete(t).unwrap();
    // EndTxn again while the markers are written: wait.
    assert_eq!(
        m.end_txn(1000, 0, true, TxnVersion::V0, 21, &mut || ids.next()),
        Err(ErrorCode::ConcurrentTransactions)
    );
    let done = m.prepare_complete(22).unwrap();
    m.complete(done).unwrap();
    assert_eq!((m.state, m.producer_epoch), (CompleteCommit, 0));
    assert_eq!(
        m.end_txn(1000, 0, true, TxnVersion::V0, 23, &mut || ids.next()),
        Ok(EndStep::Done {
            producer_id: -1,
            producer_epoch: NO_PRODUCER_EPOCH
        })
    );
}

#[test]
fn leaders_verify_partitions_against_the_open_transaction() {
    let mut ids = Ids(1000);
    let mut m = TxnMetadata::new("app", 1000, 60_000, 0);
    init(&mut m, None, &mut ids);
    add(&mut m, 1000, 0, &[tp("out", 0)]);
    assert_eq!(
        m.verify_partitions(1000, 0, &[tp("out", 0), tp("out", 1)]),
        Ok(vec![
            (tp("out", 0), ErrorCode::None),
            (tp("out", 1), ErrorCode::TransactionAbortable)
        ])
    );
    assert_eq!(
        m.verify_partitions(999, 0, &[tp("out", 0)]),
        Err(ErrorCode::InvalidProducerIdMapping)
    );
}

#[test]
fn timeouts_and_expiry_follow_the_clock() {
    let mut ids = Ids(1000);
    let mut m = TxnMetadata::new("app", 1000, 60_000, 0);
    init(&mut m, None, &mut ids);
    assert!(!m.timed_out(1_000_000), "nothing open");
    add(&mut m, 1000, 0, &[tp("out", 0)]);
    assert!(!m.timed_out(15 + 60_000));
    assert!(m.timed_out(15 + 60_001));
    let abort = m.fence_and_abort(15 + 60_001).unwrap();
    assert_eq!((abort.state, abort.producer_epoch), (PrepareAbort, 1));
    assert!(!m.timed_out(15 + 60_002), "its abort is being written");
    m.complete(abort).unwrap();
    let done = m.prepare_complete(70_000).unwrap();
    m.complete(done).unwrap();
    assert!(!m.expired(70_000 + 1000, 7 * 86_400_000));
    assert!(m.expired(70_000 + 7 * 86_400_000, 7 * 86_400_000));
}

#[test]
fn a_failed_write_leaves_the_state_and_completing_something_else_is_an_error() {
    let mut ids = Ids(1000);
    let mut m = TxnMetadata::new("app", 1000, 60_000, 0);
    init(&mut m, None, &mut ids);
    let before = m.clone();
    let t = m
        .add_partitions(1000, 0, &[tp("out", 0)], V2, 15)
        .unwrap()
        .unwrap();
    assert_eq!(
        m.add_partitions(1000, 0, &[tp("out", 1)], V2, 15),
        Err(ErrorCode::ConcurrentTransactions)
    );
    m.abandon();
    assert_eq!(m, before);
    // A transition that was never begun cannot complete.
    assert!(m.complete(t).is_err());
    assert_eq!(m, before);
}
