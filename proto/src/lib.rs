//! Generated protobuf and gRPC code for Spate's internal interfaces.
//!
//! Layout:
//! - [`metadata`]: the typed records of the controller's metadata log (and its snapshots).
//! - [`controller`]: the controller service brokers and admin tools call (port 9093).
//! - [`raft`]: the Raft transport between controller voters.
//! - [`replication`]: the broker-to-broker replication service (port 9094).
//! - [`groups`]: the records of the `__consumer_offsets` topic.
#![allow(clippy::all, missing_docs)]

/// Metadata log records.
pub mod metadata {
    tonic::include_proto!("spate.metadata");
}

/// Controller service.
pub mod controller {
    tonic::include_proto!("spate.controller");
}

/// Raft transport.
pub mod raft {
    tonic::include_proto!("spate.raft");
}

/// Records of the `__consumer_offsets` topic.
pub mod groups {
    tonic::include_proto!("spate.groups");
}

/// Records of the `__transaction_state` topic.
pub mod transactions {
    tonic::include_proto!("spate.transactions");
}

/// Broker replication.
pub mod replication {
    tonic::include_proto!("spate.replication");
}
