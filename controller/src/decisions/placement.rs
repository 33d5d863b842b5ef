//! Replica placement (docs/architecture.md §4): round-robin over unfenced brokers from a per-topic start,
//! so leaders (first replicas) spread; followers shift as in Kafka's
//! `AdminUtils.assignReplicasToBrokers`; rack-aware when every broker has a rack.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use crate::error::{ApiError, ErrorCode};
use spate_metadata::ids::NodeId;
use spate_metadata::MetadataImage;

/// A broker that may receive replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The broker.
    pub id: NodeId,
    /// Its rack, if any.
    pub rack: Option<String>,
}

/// Unfenced brokers, by id: the only ones new replicas go to.
pub fn candidates(image: &MetadataImage) -> Vec<Candidate> {
    image
        .unfenced_brokers()
        .into_iter()
        .map(|b| Candidate {
            id: b.id,
            rack: b.rack.clone(),
        })
        .collect()
}

/// Replicas for partitions `first_partition..first_partition + count`. `start` is the
/// per-topic random offset; the first replica of partition `p` is broker `(start + p) % n`.
pub fn place(
    brokers: &[Candidate],
    first_partition: i32,
    count: i32,
    replication_factor: i32,
    start: usize,
) -> Result<Vec<Vec<NodeId>>, ApiError> {
    let n = brokers.len();
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    if rf == 0 || rf > n {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            format!("replication factor {replication_factor} needs that many unfenced brokers; {n} available"),
        ));
    }
    let rack_aware = brokers.iter().all(|b| b.rack.is_some());
    let order = if rack_aware {
        interleave_racks(brokers)
    } else {
        brokers.to_vec()
    };
    let num_racks = order.iter().map(|b| &b.rack).collect::<BTreeSet<_>>().len();
    let mut out = Vec::new();
    for p in first_partition..first_partition.saturating_add(count) {
        let pos = start.wrapping_add(usize::try_from(p).unwrap_or(0));
        let first = pos % n;
        let shift = if n > 1 {
            (start + pos / n) % (n - 1)
        } else {
            0
        };
        out.push(replicas_for(
            &order, first, shift, rf, rack_aware, num_racks,
        ));
    }
    Ok(out)
}

/// Kafka's follower index: never the first replica, shifted so followers spread too.
fn follower_index(first: usize, shift: usize, k: usize, n: usize) -> usize {
    (first + 1 + (shift + k) % (n - 1)) % n
}

fn replicas_for(
    order: &[Candidate],
    first: usize,
    shift: usize,
    rf: usize,
    rack_aware: bool,
    num_racks: usize,
) -> Vec<NodeId> {
    let n = order.len();
    let mut chosen = vec![order[first].id];
    let mut racks: BTreeSet<&Option<String>> = BTreeSet::from([&order[first].rack]);
    let mut k = 0;
    while chosen.len() < rf {
        let c = &order[follower_index(first, shift, k, n)];
        k += 1;
        if chosen.contains(&c.id) {
            continue;
        }
        // Until every rack holds a replica, skip brokers in racks already used; the bound
        // on k keeps this total even if racks are very unbalanced.
        let rack_taken = racks.contains(&c.rack) && racks.len() < num_racks;
        if rack_aware && rack_taken && k < n * rf {
            continue;
        }
        chosen.push(c.id);
        racks.insert(&c.rack);
    }
    chosen
}

/// Orders brokers rack by rack in turn (r1b1, r2b1, r3b1, r1b2, ...), as Kafka does, so
/// consecutive brokers sit in different racks.
fn interleave_racks(brokers: &[Candidate]) -> Vec<Candidate> {
    let mut by_rack: BTreeMap<&Option<String>, Vec<&Candidate>> = BTreeMap::new();
    for b in brokers {
        by_rack.entry(&b.rack).or_default().push(b);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        for list in by_rack.values() {
            if let Some(b) = list.get(i) {
                out.push((*b).clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32], racks: Option<&[&str]>) -> Vec<Candidate> {
        ids.iter()
            .enumerate()
            .map(|(i, &id)| Candidate {
                id: NodeId(id),
                rack: racks.map(|r| r[i].to_string()),
            })
            .collect()
    }

    #[test]
    fn leaders_rotate_from_the_start_offset() {
        let b = brokers(&[1, 2, 3], None);
        let placed = place(&b, 0, 6, 2, 1).unwrap();
        let leaders: Vec<i32> = placed.iter().map(|r| r[0].0).collect();
        assert_eq!(leaders, vec![2, 3, 1, 2, 3, 1]);
        for r in &placed {
            assert_eq!(r.len(), 2);
            assert_ne!(r[0], r[1]);
        }
    }

    #[test]
    fn replicas_are_distinct_for_every_shift() {
        let b = brokers(&[1, 2, 3, 4, 5], None);
        for start in 0..10 {
            for r in place(&b, 0, 20, 3, start).unwrap() {
                let set: BTreeSet<_> = r.iter().collect();
                assert_eq!(set.len(), 3, "{r:?}");
            }
        }
    }

    #[test]
    fn rf_above_brokers_or_zero_is_invalid_replication_factor() {
        let b = brokers(&[1, 2], None);
        assert_eq!(
            place(&b, 0, 1, 3, 0).unwrap_err().code,
            ErrorCode::InvalidReplicationFactor
        );
        assert_eq!(
            place(&b, 0, 1, 0, 0).unwrap_err().code,
            ErrorCode::InvalidReplicationFactor
        );
        assert_eq!(
            place(&[], 0, 1, 1, 0).unwrap_err().code,
            ErrorCode::InvalidReplicationFactor
        );
    }

    #[test]
    fn rack_aware_spreads_replicas_over_racks() {
        let b = brokers(&[1, 2, 3, 4, 5, 6], Some(&["a", "a", "b", "b", "c", "c"]));
        let rack = |id: NodeId| b.iter().find(|c| c.id == id).and_then(|c| c.rack.clone());
        for start in 0..6 {
            for r in place(&b, 0, 12, 3, start).unwrap() {
                let racks: BTreeSet<_> = r.iter().map(|&id| rack(id)).collect();
                assert_eq!(racks.len(), 3, "{r:?}");
            }
        }
    }

    #[test]
    fn unbalanced_racks_still_fill_the_replication_factor() {
        let b = brokers(&[1, 2, 3, 4], Some(&["a", "a", "a", "b"]));
        for r in place(&b, 0, 8, 3, 0).unwrap() {
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3);
        }
    }

    #[test]
    fn later_partitions_continue_the_rotation() {
        let b = brokers(&[1, 2, 3], None);
        let all = place(&b, 0, 5, 1, 0).unwrap();
        let tail = place(&b, 3, 2, 1, 0).unwrap();
        assert_eq!(&all[3..], &tail[..]);
    }
}
