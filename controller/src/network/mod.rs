//! Raft transport over tonic (`raft.proto`): the client side openraft uses to reach peers
//! ([`NetworkFactory`]) and the server side that feeds their RPCs to the local node
//! ([`RaftService`]). Payloads are openraft's own request/response types as JSON.

mod client;
mod server;
pub mod source;

pub use client::{NetworkFactory, PeerClient};
pub use server::{raft_server, RaftService};

/// gRPC message size limit for Raft traffic (tonic's 4 MiB default is too small for a
/// batch of entries or a snapshot chunk).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
