//! One member of a classic group.
use bytes::Bytes;

/// A member of a classic group: who it is, what it supports and what it was assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The id the coordinator gave it.
    pub member_id: String,
    /// KIP-345 static membership: its `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// How long it may go without a heartbeat.
    pub session_timeout_ms: i32,
    /// How long it may take to rejoin during a rebalance.
    pub rebalance_timeout_ms: i32,
    /// Its protocol type.
    pub protocol_type: String,
    /// Supported protocols with metadata, most preferred first.
    pub protocols: Vec<(String, Bytes)>,
    /// Its assignment from the last completed SyncGroup.
    pub assignment: Bytes,
    /// A JoinGroup from it is held by the coordinator.
    pub(super) awaiting_join: bool,
    /// A SyncGroup from it is held by the coordinator.
    pub(super) awaiting_sync: bool,
    /// Joined but has not yet received its first join response.
    pub(super) is_new: bool,
    /// When it expires unless it heartbeats (see [`Member::heartbeat_satisfied`]).
    pub(super) heartbeat_deadline_ms: i64,
}

impl Member {
    /// Its metadata for `protocol`, if it supports it.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata)
    }

    /// Whether the coordinator holds a JoinGroup from it.
    pub fn is_awaiting_join(&self) -> bool {
        self.awaiting_join
    }

    /// Whether the coordinator holds a SyncGroup from it.
    pub fn is_awaiting_sync(&self) -> bool {
        self.awaiting_sync
    }

    /// When its session expires, unless it is waiting on a rebalance.
    pub fn heartbeat_deadline_ms(&self) -> i64 {
        self.heartbeat_deadline_ms
    }

    pub(super) fn supports(&self, protocol: &str) -> bool {
        self.metadata(protocol).is_some()
    }

    /// Same protocols, same order, same metadata: rejoining changes nothing.
    pub(super) fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// Its most preferred protocol among `candidates`.
    pub(super) fn vote<'a>(&'a self, candidates: &[String]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| candidates.iter().any(|c| c == name))
    }

    /// Kafka's `hasSatisfiedHeartbeat`: a member whose join or sync is held is waiting on
    /// the rebalance, not failing, so its session does not run out; a new member is the
    /// exception (it has no id to heartbeat with, so its join itself times out).
    pub(super) fn heartbeat_satisfied(&self) -> bool {
        !self.is_new && (self.awaiting_join || self.awaiting_sync)
    }
}
