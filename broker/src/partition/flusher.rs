//! Group commit: one task per partition fsyncs whatever was appended since the last
//! fsync, outside the core's lock, then publishes the new durable offset.
use std::sync::Arc;

use super::Partition;

/// Runs until the partition is closed or its log failed.
pub async fn run(partition: Arc<Partition>) {
    loop {
        partition.flush_wanted.notified().await;
        loop {
            let Some(job) = partition.query(|c| c.flush_job()) else {
                break;
            };
            let upto = job.upto;
            let started = std::time::Instant::now();
            let synced = match tokio::task::spawn_blocking(move || job.run()).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(e) => Err(format!("fsync task failed: {e}")),
            };
            crate::metrics::LOG_METRICS.fsync(started.elapsed().as_secs_f64());
            partition.run(|c, fx| c.complete_flush(upto, synced, fx));
        }
        if partition.query(|c| c.is_closed() || c.is_failed()) {
            return;
        }
    }
}
