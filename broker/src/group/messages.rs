//! Inputs and outputs of the group state machine, shaped like the Kafka messages.
use bytes::Bytes;

use spate_metadata::ErrorCode;

/// Kafka's generation id for "no generation" in error responses.
pub const NO_GENERATION: i32 = -1;

/// One JoinGroup request, as far as the state machine cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The member's id, or `""` for a member joining for the first time.
    pub member_id: String,
    /// KIP-345 static membership: the stable `group.instance.id`, if any.
    pub group_instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// How long the member may go without a heartbeat.
    pub session_timeout_ms: i32,
    /// How long the member may take to rejoin during a rebalance.
    pub rebalance_timeout_ms: i32,
    /// For example `"consumer"` or `"connect"`.
    pub protocol_type: String,
    /// Supported protocols with their metadata, most preferred first.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ (KIP-394): a new member must first fetch a member id.
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814): the client understands `skip_assignment`.
    pub supports_skip_assignment: bool,
    /// Why the client is joining (v8+), for logs.
    pub reason: Option<String>,
}

/// One JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// The outcome.
    pub error: ErrorCode,
    /// The generation the member joined, or [`NO_GENERATION`] on error.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The member id the client must use from now on.
    pub member_id: String,
    /// All members and their metadata, for the leader only.
    pub members: Vec<JoinedMember>,
    /// KIP-814: the leader must not compute a new assignment (a static leader restarted).
    pub skip_assignment: bool,
}

impl JoinResponse {
    /// An error response carrying `member_id`.
    pub fn error(member_id: impl Into<String>, error: ErrorCode) -> Self {
        JoinResponse {
            error,
            generation_id: NO_GENERATION,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.into(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// The member's id.
    pub member_id: String,
    /// Its `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
}

/// One SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// The outcome.
    pub error: ErrorCode,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment from the leader.
    pub assignment: Bytes,
}

impl SyncResponse {
    /// An error response.
    pub fn error(error: ErrorCode) -> Self {
        SyncResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A response the coordinator must deliver now to the request it holds for a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Answer the JoinGroup held for this member id.
    Join(String, JoinResponse),
    /// Answer the SyncGroup held for this member id.
    Sync(String, SyncResponse),
}

impl Delivery {
    /// The member id whose held request this answers.
    pub fn member_id(&self) -> &str {
        match self {
            Delivery::Join(id, _) | Delivery::Sync(id, _) => id,
        }
    }
}
