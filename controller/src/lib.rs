//! Spate's controller: a KRaft-style metadata quorum on openraft, sled and tonic.
//!
//! Layout:
//! - [`ids`]: newtypes for node ids, epochs and topic ids.
//! - [`error`]: the crate's error enum and the one mapping to Kafka error codes.
//! - [`metadata`]: the metadata image and its pure `apply` over records (shared with brokers).
//! - [`config_defs`]: the topic config keys, defaults and validators (shared with brokers).
//! - [`decisions`]: pure controller decisions returning records + response.
//! - [`types`]: openraft type configuration and the proposed record batch.
//! - [`store`]: openraft log storage and state machine on sled.
//! - [`network`]: the Raft transport over tonic (client factory and server).
//! - [`service`]: the `Controller` gRPC service (decide, commit, reply; watch; liveness).
//! - [`node`]: config, `start` and the running node's handle.
//! - [`client`]: a retrying client of the controller quorum for brokers and the CLI.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config_defs;
pub mod decisions;
pub mod error;
pub mod ids;
pub mod metadata;
pub mod network;
pub mod node;
pub mod service;
pub mod store;
pub mod types;

pub use client::{ControllerClient, RetryPolicy};
pub use error::{ApiError, ControllerError, ErrorCode};
pub use metadata::MetadataImage;
pub use node::{start, ControllerConfig, ControllerHandle, RaftTuning};
