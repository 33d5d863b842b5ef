//! Raft transport over tonic (`raft.proto`): the client side openraft uses to reach peers
//! ([`NetworkFactory`]) and the server side that feeds their RPCs to the local node
//! ([`RaftService`]). Payloads are openraft's own request/response types as JSON.

mod client;
mod server;

pub use client::{NetworkFactory, PeerClient};
pub use server::{raft_server, RaftService};

/// gRPC message size limit for Raft traffic, the same as the controller service's.
pub use spate_controller_client::MAX_MESSAGE_BYTES;
