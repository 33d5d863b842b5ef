//! The Kafka error codes the group state machine answers with.

/// A Kafka error code returned by JoinGroup, SyncGroup, Heartbeat, LeaveGroup or
/// DeleteGroups; [`ErrorCode::code`] is the value on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Success.
    None,
    /// Something unexpected went wrong on the coordinator.
    UnknownServerError,
    /// The group is dead (being unloaded or deleted); the client should rediscover.
    CoordinatorNotAvailable,
    /// This broker no longer coordinates the group.
    NotCoordinator,
    /// The request's generation is not the group's current one.
    IllegalGeneration,
    /// The protocol type or protocols do not match the group's.
    InconsistentGroupProtocol,
    /// The member id is not (or no longer) part of the group.
    UnknownMemberId,
    /// The session timeout is outside the broker's allowed range.
    InvalidSessionTimeout,
    /// The group is rebalancing; the member must rejoin.
    RebalanceInProgress,
    /// DeleteGroups on a group that still has members.
    NonEmptyGroup,
    /// The group does not exist.
    GroupIdNotFound,
    /// KIP-394: a new member must rejoin with the member id it was given.
    MemberIdRequired,
    /// The group already has `group.max.size` members.
    GroupMaxSizeReached,
    /// KIP-345: another member now owns this `group.instance.id`.
    FencedInstanceId,
}

impl ErrorCode {
    /// The Kafka error code on the wire.
    pub fn code(self) -> i16 {
        match self {
            ErrorCode::None => 0,
            ErrorCode::UnknownServerError => -1,
            ErrorCode::CoordinatorNotAvailable => 15,
            ErrorCode::NotCoordinator => 16,
            ErrorCode::IllegalGeneration => 22,
            ErrorCode::InconsistentGroupProtocol => 23,
            ErrorCode::UnknownMemberId => 25,
            ErrorCode::InvalidSessionTimeout => 26,
            ErrorCode::RebalanceInProgress => 27,
            ErrorCode::NonEmptyGroup => 68,
            ErrorCode::GroupIdNotFound => 69,
            ErrorCode::MemberIdRequired => 79,
            ErrorCode::GroupMaxSizeReached => 81,
            ErrorCode::FencedInstanceId => 82,
        }
    }

    /// Whether this is success.
    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }
}
