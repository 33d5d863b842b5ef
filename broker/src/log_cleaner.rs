//! The log cleaner (docs/architecture.md §6): every `log.cleaner.backoff.ms` it looks at
//! the compacted partitions hosted here, leader and follower replicas alike (replicas
//! compact independently, as in Kafka; offsets are kept, so they still serve the same
//! records at the same offsets), and cleans the dirtiest ones, up to
//! `log.cleaner.threads` at once, each on a blocking thread. A log is worth cleaning once
//! its dirty share reaches `min.cleanable.dirty.ratio`, or at once when its oldest dirty
//! record is older than `max.compaction.lag.ms`. A pass that fails leaves its log as it
//! was; the log is then skipped (uncleanable) until the broker restarts, and counted in
//! the metrics. The pass itself is `spate_log`'s compaction.
use std::collections::HashMap;
use std::sync::Arc;

use spate_log::{CleanerConfig, Dirtiness};
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::config::LogCleanerConfig;
use crate::partition::settings::CompactionSettings;
use crate::partition::TopicPartition;
use crate::state::BrokerState;

/// The logs to clean now, most urgent first: those past `max.compaction.lag.ms`, then
/// by dirty ratio (at least `min.cleanable.dirty.ratio`), at most `threads` of them.
pub fn choose<K: Clone>(
    candidates: &[(K, Dirtiness, CompactionSettings)],
    now_ms: i64,
    threads: usize,
) -> Vec<K> {
    let mut due: Vec<(bool, f64, &K)> = candidates
        .iter()
        .filter(|(_, d, _)| d.dirty_bytes > 0)
        .filter_map(|(k, d, s)| {
            let overdue = d.first_dirty_timestamp >= 0
                && now_ms.saturating_sub(d.first_dirty_timestamp) >= s.max_compaction_lag_ms;
            let ratio = d.ratio();
            (overdue || ratio >= s.min_cleanable_dirty_ratio).then_some((overdue, ratio, k))
        })
        .collect();
    due.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    due.into_iter()
        .take(threads.max(1))
        .map(|(_, _, k)| k.clone())
        .collect()
}

/// A pass's settings from the broker's cleaner settings (the key map shared by the
/// threads, as Kafka divides `log.cleaner.dedupe.buffer.size`).
fn pass_config(config: &LogCleanerConfig) -> CleanerConfig {
    CleanerConfig {
        dedupe_buffer_bytes: config.dedupe_buffer_bytes / config.threads.max(1),
        io_max_bytes_per_second: config.io_max_bytes_per_second,
        ..CleanerConfig::default()
    }
}

/// Runs the cleaner until `shutdown`.
pub async fn run(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let config = state.config.log_cleaner.clone();
    if !config.enabled {
        return;
    }
    let pass = pass_config(&config);
    let mut uncleanable: HashMap<TopicPartition, String> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.backoff) => {}
            _ = shutdown.changed() => return,
        }
        let now = now_ms();
        let partitions = state.replicas.all();
        let candidates: Vec<_> = partitions
            .iter()
            .filter(|p| !uncleanable.contains_key(&p.tp))
            .filter_map(|p| {
                let (dirtiness, settings) = p.cleaning_state(now, &pass)?;
                Some((p.clone(), dirtiness, settings))
            })
            .collect();
        let chosen = choose(&candidates, now, config.threads);
        let passes = chosen.into_iter().map(|p| {
            let pass = pass.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let result = p.clean(now_ms(), &pass);
                (p, result, started.elapsed().as_secs_f64())
            })
        });
        for finished in futures::future::join_all(passes).await {
            let Ok((p, result, seconds)) = finished else {
                continue;
            };
            match result {
                Ok(Some(stats)) => {
                    state.metrics.cleaner_pass(&stats, seconds);
                    tracing::info!(
                        partition = %p.tp,
                        removed = stats.records_removed,
                        read = stats.bytes_read,
                        written = stats.bytes_written,
                        segments_before = stats.segments_before,
                        segments_after = stats.segments_after,
                        seconds,
                        "cleaned log"
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(partition = %p.tp, error = %e, "log cleaning failed; the log is uncleanable until restart");
                    uncleanable.insert(p.tp.clone(), e.to_string());
                    state.metrics.cleaner_failed(uncleanable.len());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ratio: f64, max_lag: i64) -> CompactionSettings {
        CompactionSettings {
            delete_retention_ms: 0,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: max_lag,
            min_cleanable_dirty_ratio: ratio,
        }
    }

    fn dirty(clean: u64, dirty: u64, first_dirty_ts: i64) -> Dirtiness {
        Dirtiness {
            clean_bytes: clean,
            dirty_bytes: dirty,
            first_dirty_timestamp: first_dirty_ts,
        }
    }

    #[test]
    fn the_dirtiest_logs_above_their_ratio_go_first_and_overdue_ones_before_them() {
        let candidates = vec![
            ("below-ratio", dirty(90, 10, 1_000), settings(0.5, i64::MAX)),
            ("dirtiest", dirty(10, 90, 1_000), settings(0.5, i64::MAX)),
            ("dirty", dirty(40, 60, 1_000), settings(0.5, i64::MAX)),
            ("overdue", dirty(99, 1, 1_000), settings(0.5, 5_000)),
            ("clean", dirty(100, 0, -1), settings(0.0, 1)),
        ];
        assert_eq!(
            choose(&candidates, 10_000, 8),
            vec!["overdue", "dirtiest", "dirty"]
        );
        assert_eq!(choose(&candidates, 10_000, 1), vec!["overdue"]);
        // Not yet overdue: only the ratio counts.
        assert_eq!(choose(&candidates, 5_000, 8), vec!["dirtiest", "dirty"]);
    }
}
