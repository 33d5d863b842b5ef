//! Kafka's classic consumer group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup)
//! as a pure, deterministic state machine: no I/O, no clock, no randomness. Time is an
//! explicit `now_ms`, new member ids come from the caller, and every method returns the
//! responses to deliver now; the async coordinator holds the pending requests.
//!
//! Layout:
//! - [`state`]: [`Group`], its [`GroupState`], and the rebalance steps (prepare,
//!   complete the join, remove a member) everything else uses.
//! - `join`: JoinGroup, including KIP-394 member-id-required and KIP-345 static members.
//! - `membership`: SyncGroup, Heartbeat, LeaveGroup.
//! - `timers`: [`Group::tick`], [`Group::next_deadline`], [`Group::shut_down`].
//! - [`snapshot`]: what is persisted and restored on a new coordinator.
//! - [`member`], [`messages`], [`config`]: the data they exchange; error codes are the
//!   shared table (`spate_metadata::ErrorCode`).

pub mod coordinator;
mod join;
pub mod member;
mod membership;
pub mod messages;
pub mod records;
pub mod snapshot;
pub mod state;
mod timers;

#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod static_tests;
#[cfg(test)]
mod test_util;

pub use crate::config::GroupConfig;
pub use member::Member;
pub use messages::{Delivery, JoinRequest, JoinResponse, JoinedMember, SyncResponse};
pub use snapshot::{GroupSnapshot, MemberSnapshot};
pub use spate_metadata::ErrorCode;
pub use state::{Group, GroupState};
