//! Link faults injected at this broker's transports, for tests that cut a broker off
//! without containers: isolation from peers and controllers (both directions), and a
//! delay on replication traffic (a slow follower or leader). Production never sets them;
//! every check is one atomic load.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// The faults currently injected.
#[derive(Debug, Default)]
pub struct LinkFaults {
    isolated: AtomicBool,
    replication_delay_ms: AtomicU64,
    changed: watch::Sender<u64>,
}

impl LinkFaults {
    /// Cuts (or restores) every link to other brokers and to the controllers: outgoing
    /// calls fail, incoming replication requests are refused, open streams break.
    pub fn set_isolated(&self, isolated: bool) {
        self.isolated.store(isolated, Ordering::SeqCst);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Whether this broker is cut off.
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
    }

    /// Delays every replication request this broker sends or serves by `delay`.
    pub fn set_replication_delay(&self, delay: Duration) {
        self.replication_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        self.changed.send_modify(|v| *v += 1);
    }

    /// The injected replication delay.
    pub fn replication_delay(&self) -> Duration {
        Duration::from_millis(self.replication_delay_ms.load(Ordering::SeqCst))
    }

    /// Changes whenever a fault is set or cleared.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Resolves once this broker is isolated (at once if it is).
    pub async fn isolated(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|_| self.is_isolated()).await;
    }
}
