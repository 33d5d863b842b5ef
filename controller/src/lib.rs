//! Spate's controller: a KRaft-style metadata quorum on openraft, sled and tonic.
//!
//! Layout:
//! - [`error`]: the crate's error enum and its one mapping to a Kafka error code.
//! - the metadata image, ids, config definitions and error codes live in the
//!   `spate-metadata` crate (shared with brokers); the client of the quorum in
//!   `spate-controller-client`.
//! - [`decisions`]: pure controller decisions returning records + response.
//! - [`types`]: openraft type configuration and the proposed record batch.
//! - [`store`]: openraft log storage and state machine on sled.
//! - [`network`]: the Raft transport over tonic (client factory and server).
//! - [`service`]: the `Controller` gRPC service (decide, commit, reply; watch; liveness).
//! - [`node`]: config, `start` and the running node's handle.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod decisions;
pub mod error;
pub mod network;
pub mod node;
pub mod service;
pub mod store;
pub mod types;

pub use error::{ApiError, ControllerError, ErrorCode};
pub use node::{start, ControllerConfig, ControllerHandle, RaftTuning};
pub use spate_metadata::MetadataImage;
