//! Group commit: one task per partition fsyncs whatever was appended since the last
//! fsync, outside the log's lock, then publishes the new durable offset.
use std::sync::Arc;

use super::Partition;

/// Runs until the partition is closed.
pub async fn run(partition: Arc<Partition>) {
    loop {
        partition.flush_wanted.notified().await;
        if partition.progress.borrow().failed.is_some() {
            return;
        }
        loop {
            let job = partition.log.lock().flush_job();
            let Some(job) = job else { break };
            let upto = job.upto;
            let started = std::time::Instant::now();
            let synced = tokio::task::spawn_blocking(move || job.run()).await;
            crate::metrics::LOG_METRICS.fsync(started.elapsed().as_secs_f64());
            // Publish what the log now records as durable, not the job's target: a
            // truncation while the job ran caps what the job may claim.
            let result = match synced {
                Ok(Ok(())) => {
                    let mut log = partition.log.lock();
                    log.complete_flush(upto)
                        .map(|()| log.recovery_point())
                        .map_err(|e| e.to_string())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("fsync task failed: {e}")),
            };
            let durable = match result {
                Ok(durable) => durable,
                Err(reason) => {
                    partition.fail(format!("fsync failed: {reason}"));
                    return;
                }
            };
            partition.on_flushed(durable);
        }
        if partition.is_closed() {
            return;
        }
    }
}
