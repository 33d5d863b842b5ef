//! The queue of ISR changes leaders propose; [`super::isr_updater`]'s task sends them.
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::partition::{IsrChange, Partition};

/// A leader's proposal: the partition and the change it asks for.
pub(crate) type Proposal = (Arc<Partition>, IsrChange);

/// The queue leaders put ISR proposals on.
pub struct IsrUpdater {
    tx: mpsc::UnboundedSender<Proposal>,
    rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<Proposal>>>,
}

impl Default for IsrUpdater {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        IsrUpdater {
            tx,
            rx: parking_lot::Mutex::new(Some(rx)),
        }
    }
}

impl IsrUpdater {
    /// The receiving end, once (the sending task takes it at start).
    pub(crate) fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<Proposal>> {
        self.rx.lock().take()
    }

    /// Queues a proposal.
    pub fn propose(&self, partition: Arc<Partition>, change: IsrChange) {
        tracing::info!(partition = %partition.tp, ?change.kind, new_isr = ?change.new_isr, "proposing ISR change");
        let _ = self.tx.send((partition, change));
    }
}
