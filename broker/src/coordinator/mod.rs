//! The coordinator runtime (docs/architecture.md §7), Kafka's `CoordinatorRuntime`
//! idea: the machinery every coordinator backed by an internal topic needs, apart from
//! what it coordinates.
//!
//! - one **shard** per partition of the internal topic that this broker leads, created
//!   when it becomes leader and resigned when leadership moves;
//! - **load by replay**: a new shard reads its partition from the log start to the LEO
//!   and hands every chunk of batches to the shard before it may serve;
//! - **write, then wait for the high watermark**: records are appended in the shard's
//!   leader epoch and an operation answers only once they are committed (like acks=all);
//! - **hand-over**: a resigned shard answers NOT_COORDINATOR, and a write whose
//!   leadership ended fails the same way, so clients find the new coordinator;
//! - **timers**: every shard is ticked, and the writes its timers ask for run one batch
//!   at a time, off the tick.
//!
//! The group coordinator ([`crate::group::coordinator`]) is its first user; the
//! transaction coordinator will be the second.
pub mod records;
mod runtime;
#[cfg(test)]
mod runtime_tests;

pub use runtime::{CoordinatorRuntime, CoordinatorShard, ShardHandle, TimerWrite};
