//! Transactions (docs/architecture.md §7): the transaction coordinator's pure pieces.
//! So far the state of one transactional id and the decisions on it ([`metadata`]);
//! the coordinator shard on `__transaction_state`, markers, the LSO and read_committed
//! fetch build on it.
pub mod metadata;
pub mod records;
pub mod state;
#[cfg(test)]
mod tests;

pub use metadata::{EndStep, InitStep, Transition, TxnMetadata, TxnVersion};
pub use state::TxnState;
