//! The active controller's background task: fences brokers whose session expired
//! (docs/architecture.md §4: a `FenceBroker` plus a `PartitionChange` for everything they led or were in
//! the ISR of).

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::ControllerService;
use crate::decisions;
use crate::error::ControllerError;

/// How often to look for expired sessions: a fraction of the timeout, so a dead broker is
/// fenced soon after its deadline, but never busier than every 50 ms.
pub(crate) fn tick_for(session_timeout: Duration) -> Duration {
    (session_timeout / 8).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Runs until `shutdown` turns true (or its sender is dropped).
pub(crate) async fn run(
    service: ControllerService,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = interval.tick() => {}
        }
        if service.leader_and_term().0 != Some(service.shared.node_id) {
            continue;
        }
        match service.fence_expired().await {
            Ok(())
            | Err(ControllerError::NotController { .. })
            | Err(ControllerError::ShuttingDown) => {}
            Err(e) => tracing::warn!(error = %e, "fencing expired brokers failed; will retry"),
        }
    }
}

impl ControllerService {
    /// Fences every broker whose session expired; one batch per broker.
    pub(crate) async fn fence_expired(&self) -> Result<(), ControllerError> {
        let mut st = self.lead().await?;
        for id in st.sessions.expired(Instant::now()) {
            let records = self
                .shared
                .view
                .with_image(|image| decisions::fence_broker(image, id));
            // Forget the session either way: a fenced broker gets a new one when it heartbeats.
            st.sessions.remove(id);
            if !records.is_empty() {
                tracing::info!(broker = %id, "broker session expired; fencing it");
                self.propose(&mut st, records).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_a_bounded_fraction_of_the_timeout() {
        assert_eq!(
            tick_for(Duration::from_secs(9)),
            Duration::from_millis(1125).min(Duration::from_secs(1))
        );
        assert_eq!(
            tick_for(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
        assert_eq!(tick_for(Duration::from_secs(2)), Duration::from_millis(250));
    }
}
