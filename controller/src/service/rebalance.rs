//! The active controller's periodic preferred-leader election (Kafka's
//! `auto.leader.rebalance.enable`, every `leader.imbalance.check.interval.seconds`): after
//! brokers come back, leadership drifts to whoever survived; this moves it home again.

use std::time::Duration;

use tokio::sync::watch;

use super::ControllerService;
use crate::decisions;
use crate::error::ControllerError;

/// Runs until `shutdown` turns true (or its sender is dropped).
pub(crate) async fn run(
    service: ControllerService,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; a freshly started quorum has nothing to rebalance.
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = ticks.tick() => {}
        }
        if service.leader_and_term().0 != Some(service.shared.node_id) {
            continue;
        }
        match service.elect_preferred_everywhere().await {
            Ok(_)
            | Err(ControllerError::NotController { .. })
            | Err(ControllerError::ShuttingDown) => {}
            Err(e) => tracing::warn!(error = %e, "preferred leader election failed; will retry"),
        }
    }
}

impl ControllerService {
    /// Commits a preferred-leader election for every partition where one is possible;
    /// returns how many partitions changed leader.
    pub(crate) async fn elect_preferred_everywhere(&self) -> Result<usize, ControllerError> {
        let (elected, _) = self
            .decide(|image, _| {
                let result = decisions::elect_preferred_leaders(image, None);
                let elected = result.records.len();
                decisions::ControllerResult {
                    records: result.records,
                    response: elected,
                }
            })
            .await?;
        if elected > 0 {
            tracing::info!(
                partitions = elected,
                "moved leadership back to preferred replicas"
            );
        }
        Ok(elected)
    }
}
