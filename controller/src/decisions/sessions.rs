//! Broker liveness sessions, kept in memory by the active controller only (docs/architecture.md §4:
//! heartbeats are not committed). Time is an argument so tests need no clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use spate_metadata::ids::NodeId;

/// Session deadlines per broker.
#[derive(Debug, Clone)]
pub struct BrokerSessions {
    timeout: Duration,
    deadlines: BTreeMap<NodeId, Instant>,
}

impl BrokerSessions {
    /// Sessions that expire `timeout` after the last heartbeat.
    pub fn new(timeout: Duration) -> BrokerSessions {
        BrokerSessions {
            timeout,
            deadlines: BTreeMap::new(),
        }
    }

    /// The session timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Records a heartbeat (or registration): the session now lasts until `now + timeout`.
    pub fn touch(&mut self, broker: NodeId, now: Instant) {
        self.deadlines.insert(broker, now + self.timeout);
    }

    /// Forgets a broker (after it is fenced, so it is not fenced again every tick).
    pub fn remove(&mut self, broker: NodeId) {
        self.deadlines.remove(&broker);
    }

    /// Whether the broker has a session that has not expired.
    pub fn is_alive(&self, broker: NodeId, now: Instant) -> bool {
        self.deadlines.get(&broker).is_some_and(|&d| d > now)
    }

    /// On becoming the active controller: every broker gets a fresh, full session, since
    /// heartbeats sent to the previous leader were never seen here.
    pub fn activate(&mut self, brokers: impl IntoIterator<Item = NodeId>, now: Instant) {
        self.deadlines.clear();
        for b in brokers {
            self.touch(b, now);
        }
    }

    /// Brokers whose session ran out at `now`, by id.
    pub fn expired(&self, now: Instant) -> Vec<NodeId> {
        self.deadlines
            .iter()
            .filter(|(_, &d)| d <= now)
            .map(|(&b, _)| b)
            .collect()
    }

    /// How many brokers have a session.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether no broker has a session.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn sessions_expire_after_the_timeout_without_heartbeats() {
        let t0 = Instant::now();
        let mut s = BrokerSessions::new(9 * SEC);
        s.touch(NodeId(1), t0);
        s.touch(NodeId(2), t0 + 5 * SEC);
        assert!(s.expired(t0 + 8 * SEC).is_empty());
        assert_eq!(s.expired(t0 + 9 * SEC), vec![NodeId(1)]);
        assert!(!s.is_alive(NodeId(1), t0 + 9 * SEC));
        assert!(s.is_alive(NodeId(2), t0 + 9 * SEC));
        s.touch(NodeId(1), t0 + 9 * SEC);
        assert!(s.expired(t0 + 10 * SEC).is_empty());
        assert_eq!(s.expired(t0 + 20 * SEC), vec![NodeId(1), NodeId(2)]);
        s.remove(NodeId(1));
        assert_eq!(s.expired(t0 + 20 * SEC), vec![NodeId(2)]);
    }

    #[test]
    fn activation_grants_everyone_a_fresh_grace_period() {
        let t0 = Instant::now();
        let mut s = BrokerSessions::new(2 * SEC);
        s.touch(NodeId(7), t0);
        s.activate([NodeId(1), NodeId(2)], t0 + 10 * SEC);
        assert_eq!(s.len(), 2, "old sessions are dropped");
        assert!(s.expired(t0 + 11 * SEC).is_empty());
        assert_eq!(s.expired(t0 + 12 * SEC), vec![NodeId(1), NodeId(2)]);
        assert!(!s.is_alive(NodeId(7), t0 + 10 * SEC));
    }
}
