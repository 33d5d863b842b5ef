//! Spate patch: a bound on the memory one decode may reserve for arrays.
//!
//! Counts read from the wire are already checked against the bytes remaining, but an
//! element can take far more memory decoded than encoded (an empty topic name is two bytes
//! on the wire and a whole struct in memory), so a large frame of tiny elements could still
//! reserve gigabytes. [`with_budget`] runs a decode with a limit on the bytes its arrays
//! may reserve (element count times element size, summed over every array); decoding fails
//! once the limit is crossed. Outside [`with_budget`] nothing is limited.
use std::cell::Cell;

use anyhow::Result;

/// The error a decode fails with when its arrays need more than its budget: a typed
/// error, so that the caller can tell a limit from a malformed frame (`downcast_ref`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetExceeded {
    /// Elements of the array that crossed the limit.
    pub count: usize,
    /// Bytes they need decoded.
    pub needed: usize,
    /// Bytes that were left of the budget.
    pub left: usize,
}

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "an array of {} elements needs {} bytes decoded, more than the {} bytes left of this request's decode budget",
            self.count, self.needed, self.left
        )
    }
}

impl std::error::Error for BudgetExceeded {}

thread_local! {
    /// Bytes the decode running on this thread may still reserve (None: unlimited).
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `decode` allowing its arrays to reserve at most `limit` bytes in total.
pub fn with_budget<R>(limit: usize, decode: impl FnOnce() -> R) -> R {
    let outer = LEFT.with(|left| left.replace(Some(limit)));
    let result = decode();
    LEFT.with(|left| left.set(outer));
    result
}

/// Charges an array of `count` elements of `T` against the running budget.
pub(crate) fn charge<T>(count: usize) -> Result<()> {
    let bytes = count.saturating_mul(std::mem::size_of::<T>().max(1));
    LEFT.with(|left| match left.get() {
        None => Ok(()),
        Some(remaining) if bytes <= remaining => {
            left.set(Some(remaining - bytes));
            Ok(())
        }
        Some(remaining) => Err(BudgetExceeded {
            count,
            needed: bytes,
            left: remaining,
        }
        .into()),
    })
}
