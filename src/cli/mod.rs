//! The command-line tools, built on `spate-client` (the Kafka protocol).
pub mod bench;
pub mod consume;
pub mod produce;
pub mod topic;
