//! Broker-wide settings of the group coordinator.

/// Limits and delays that apply to every classic group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`: smallest session timeout a member may ask for.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`: largest session timeout a member may ask for.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long an Empty group waits for more members
    /// before completing its first join.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`: most members a group accepts.
    pub max_size: usize,
    /// How long a new member may wait for its first join response before it is dropped
    /// (Kafka's fixed `NewMemberJoinTimeoutMs`); new members cannot heartbeat yet.
    pub new_member_join_timeout_ms: i64,
}

impl Default for GroupConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
        }
    }
}
