//! The wall clock, read in one place. Pure modules (replica state, producer state, group
//! state, the log) take the time as an argument; the I/O shells read it here and pass it in.

/// Wall-clock milliseconds since the epoch (Kafka timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
