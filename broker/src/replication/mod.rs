//! Broker-to-broker replication (docs/architecture.md §5): the leader's gRPC service
//! ([`server`]), the follower fetchers ([`fetcher`]), and the path of ISR changes to
//! the controller ([`isr_queue`] holds them, [`isr_updater`] sends them). The decisions themselves (HW, ISR, truncation) are
//! the pure [`crate::partition::replica_state`].
pub mod fetcher;
pub mod isr_queue;
pub mod isr_updater;
pub mod server;

/// Largest replication message (a fetch response carries up to `max_bytes` of batches).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
