//! Broker-to-broker replication (DESIGN §5): the leader's gRPC service
//! ([`server`]), the follower fetchers ([`fetcher`]), and the path of ISR changes to
//! the controller ([`isr_updater`]). The decisions themselves (HW, ISR, truncation) are
//! the pure [`crate::partition::replica_state`].
pub mod fetcher;
pub mod isr_updater;
pub mod server;
