//! Incremental fetch sessions (KIP-227), as the Java client uses them: the first fetch
//! names every partition and gets a session id; later fetches send only what changed,
//! and responses carry only partitions with news.
//!
//! Fetch v13 and later name topics by id (KIP-516). A session keeps the naming of the
//! request that created it: an incremental fetch of the other kind gets
//! FETCH_SESSION_TOPIC_ID_ERROR, as in Kafka. A session names ids, not the names they
//! stood for, so each fetch resolves them afresh (an id deleted meanwhile is answered
//! UNKNOWN_TOPIC_ID, not served from a recreated topic of the same name).
use std::collections::HashMap;
use std::time::Instant;

use indexmap::IndexMap;
use parking_lot::Mutex;
use spate_metadata::ErrorCode;

/// How a fetch names a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicRef {
    /// By name (Fetch v12 and older).
    Name(String),
    /// By topic id (Fetch v13 and later).
    Id([u8; 16]),
}

/// One partition as a fetch names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchPartition {
    /// The topic, by name or by id.
    pub topic: TopicRef,
    /// Partition index.
    pub partition: i32,
}

/// What a fetch asks of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTarget {
    /// Fetch position.
    pub fetch_offset: i64,
    /// Per-partition byte limit.
    pub max_bytes: i32,
    /// Leader epoch the client believes current (-1: unknown).
    pub current_leader_epoch: i32,
}

/// What was last sent for a partition, to decide whether it has news.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastSent {
    /// High watermark last reported.
    pub high_watermark: i64,
    /// Log start offset last reported.
    pub log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    /// Whether the creating request named topics by id.
    uses_topic_ids: bool,
    partitions: IndexMap<FetchPartition, (FetchTarget, Option<LastSent>)>,
    last_used: Instant,
}

/// How a request relates to sessions, once resolved.
#[derive(Debug)]
pub struct Resolved {
    /// Session id to put in the response (0: none).
    pub session_id: i32,
    /// Whether the response may omit partitions without news.
    pub incremental: bool,
    /// Every partition this fetch covers, in order.
    pub targets: Vec<(FetchPartition, FetchTarget, Option<LastSent>)>,
}

/// Bounded cache of fetch sessions; the least recently used is evicted when full.
pub struct FetchSessionCache {
    slots: usize,
    inner: Mutex<(i32, HashMap<i32, Session>)>,
}

impl FetchSessionCache {
    /// A cache holding up to `slots` sessions (0 disables sessions).
    pub fn new(slots: usize) -> Self {
        FetchSessionCache {
            slots,
            inner: Mutex::new((0, HashMap::new())),
        }
    }

    /// Resolves a request: `session_id`/`epoch` as sent, `uses_topic_ids` whether it
    /// names topics by id, `requested` the partitions in the request, `forgotten` the
    /// ones to drop from the session. Errors are Kafka codes.
    pub fn resolve(
        &self,
        session_id: i32,
        epoch: i32,
        uses_topic_ids: bool,
        requested: Vec<(FetchPartition, FetchTarget)>,
        forgotten: Vec<FetchPartition>,
    ) -> Result<Resolved, i16> {
        let mut inner = self.inner.lock();
        let (next_id, sessions) = &mut *inner;
        if epoch == -1 {
            // FINAL_EPOCH: sessionless full fetch, closing any session named.
            sessions.remove(&session_id);
            return Ok(full(0, requested));
        }
        if epoch == 0 {
            sessions.remove(&session_id);
            if self.slots == 0 {
                return Ok(full(0, requested));
            }
            if sessions.len() >= self.slots {
                let oldest = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(id, _)| *id);
                if let Some(id) = oldest {
                    sessions.remove(&id);
                }
            }
            let id = loop {
                *next_id = next_id.wrapping_add(1).max(1);
                if !sessions.contains_key(next_id) {
                    break *next_id;
                }
            };
            let partitions = requested
                .iter()
                .map(|(tp, t)| (tp.clone(), (t.clone(), None)))
                .collect();
            sessions.insert(
                id,
                Session {
                    next_epoch: 1,
                    uses_topic_ids,
                    partitions,
                    last_used: Instant::now(),
                },
            );
            return Ok(full(id, requested));
        }
        let session = sessions
            .get_mut(&session_id)
            .ok_or(ErrorCode::FetchSessionIdNotFound.code())?;
        if session.next_epoch != epoch {
            return Err(ErrorCode::InvalidFetchSessionEpoch.code());
        }
        if session.uses_topic_ids != uses_topic_ids {
            return Err(ErrorCode::FetchSessionTopicIdError.code());
        }
        session.next_epoch = session.next_epoch.wrapping_add(1).max(1);
        session.last_used = Instant::now();
        for tp in forgotten {
            session.partitions.shift_remove(&tp);
        }
        for (tp, target) in requested {
            match session.partitions.get_mut(&tp) {
                Some(entry) => entry.0 = target,
                None => {
                    session.partitions.insert(tp, (target, None));
                }
            }
        }
        let targets = session
            .partitions
            .iter()
            .map(|(tp, (t, last))| (tp.clone(), t.clone(), last.clone()))
            .collect();
        Ok(Resolved {
            session_id,
            incremental: true,
            targets,
        })
    }

    /// Records what was sent for each partition of a session.
    pub fn record_sent(&self, session_id: i32, sent: Vec<(FetchPartition, LastSent)>) {
        if session_id == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        if let Some(session) = inner.1.get_mut(&session_id) {
            for (tp, last) in sent {
                if let Some(entry) = session.partitions.get_mut(&tp) {
                    entry.1 = Some(last);
                }
            }
        }
    }
}

fn full(session_id: i32, requested: Vec<(FetchPartition, FetchTarget)>) -> Resolved {
    Resolved {
        session_id,
        incremental: false,
        targets: requested.into_iter().map(|(tp, t)| (tp, t, None)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> FetchPartition {
        FetchPartition {
            topic: TopicRef::Name("t".into()),
            partition: p,
        }
    }

    fn by_id(id: u8, p: i32) -> FetchPartition {
        FetchPartition {
            topic: TopicRef::Id([id; 16]),
            partition: p,
        }
    }

    fn target(offset: i64) -> FetchTarget {
        FetchTarget {
            fetch_offset: offset,
            max_bytes: 1024,
            current_leader_epoch: -1,
        }
    }

    #[test]
    fn sessionless_fetch_gets_no_session() {
        let cache = FetchSessionCache::new(10);
        let r = cache
            .resolve(0, -1, false, vec![(tp(0), target(0))], vec![])
            .unwrap();
        assert_eq!(r.session_id, 0);
        assert!(!r.incremental);
    }

    #[test]
    fn incremental_fetch_keeps_unmentioned_partitions_and_forgets() {
        let cache = FetchSessionCache::new(10);
        let r = cache
            .resolve(
                0,
                0,
                false,
                vec![(tp(0), target(0)), (tp(1), target(5))],
                vec![],
            )
            .unwrap();
        let id = r.session_id;
        assert!(id > 0);
        let r = cache
            .resolve(id, 1, false, vec![(tp(0), target(3))], vec![])
            .unwrap();
        assert!(r.incremental);
        assert_eq!(r.targets.len(), 2);
        assert_eq!(r.targets[0].1.fetch_offset, 3);
        assert_eq!(r.targets[1].1.fetch_offset, 5);
        let r = cache.resolve(id, 2, false, vec![], vec![tp(1)]).unwrap();
        assert_eq!(r.targets.len(), 1);
    }

    #[test]
    fn wrong_epoch_and_unknown_session_are_errors() {
        let cache = FetchSessionCache::new(10);
        let id = cache
            .resolve(0, 0, false, vec![(tp(0), target(0))], vec![])
            .unwrap()
            .session_id;
        assert_eq!(
            cache.resolve(id, 5, false, vec![], vec![]).unwrap_err(),
            ErrorCode::InvalidFetchSessionEpoch.code()
        );
        assert_eq!(
            cache
                .resolve(id + 100, 1, false, vec![], vec![])
                .unwrap_err(),
            ErrorCode::FetchSessionIdNotFound.code()
        );
    }

    #[test]
    fn full_cache_evicts_least_recently_used() {
        let cache = FetchSessionCache::new(2);
        let a = cache
            .resolve(0, 0, false, vec![], vec![])
            .unwrap()
            .session_id;
        let b = cache
            .resolve(0, 0, false, vec![], vec![])
            .unwrap()
            .session_id;
        assert!(cache.resolve(b, 1, false, vec![], vec![]).is_ok());
        let _c = cache
            .resolve(0, 0, false, vec![], vec![])
            .unwrap()
            .session_id;
        assert_eq!(
            cache.resolve(a, 1, false, vec![], vec![]).unwrap_err(),
            ErrorCode::FetchSessionIdNotFound.code()
        );
        assert!(cache.resolve(b, 2, false, vec![], vec![]).is_ok());
    }

    #[test]
    fn a_session_keeps_the_topic_naming_it_was_created_with() {
        let cache = FetchSessionCache::new(10);
        let named = cache
            .resolve(0, 0, false, vec![(tp(0), target(0))], vec![])
            .unwrap()
            .session_id;
        let ids = cache
            .resolve(0, 0, true, vec![(by_id(1, 0), target(0))], vec![])
            .unwrap()
            .session_id;
        assert_eq!(
            cache.resolve(named, 1, true, vec![], vec![]).unwrap_err(),
            ErrorCode::FetchSessionTopicIdError.code()
        );
        assert_eq!(
            cache.resolve(ids, 1, false, vec![], vec![]).unwrap_err(),
            ErrorCode::FetchSessionTopicIdError.code()
        );
        // A refused fetch does not use up the epoch.
        assert!(cache.resolve(named, 1, false, vec![], vec![]).is_ok());
        assert!(cache.resolve(ids, 1, true, vec![], vec![]).is_ok());
    }

    #[test]
    fn topics_named_by_id_are_kept_and_forgotten_by_id() {
        let cache = FetchSessionCache::new(10);
        let r = cache
            .resolve(
                0,
                0,
                true,
                vec![(by_id(1, 0), target(0)), (by_id(2, 0), target(7))],
                vec![],
            )
            .unwrap();
        let id = r.session_id;
        let r = cache
            .resolve(id, 1, true, vec![(by_id(1, 0), target(4))], vec![])
            .unwrap();
        let offsets: Vec<_> = r.targets.iter().map(|t| t.1.fetch_offset).collect();
        assert_eq!(offsets, vec![4, 7]);
        let r = cache
            .resolve(id, 2, true, vec![], vec![by_id(1, 0)])
            .unwrap();
        let left: Vec<_> = r.targets.iter().map(|t| t.0.clone()).collect();
        assert_eq!(left, vec![by_id(2, 0)]);
    }
}
