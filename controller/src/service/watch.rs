//! `WatchMetadata`: a snapshot of the image, then every applied batch after it. A watcher
//! that falls behind the broadcast buffer gets a fresh snapshot instead of a gap.

use std::sync::Arc;

use spate_proto::metadata::MetadataBatch;
use tokio::sync::{broadcast, mpsc, watch};
use tonic::Status;

use crate::store::MetadataView;

/// Batches buffered per watcher between the forwarding task and gRPC.
pub(crate) const WATCH_BUFFER: usize = 64;

/// Forwards applied batches newer than `from_offset` to one watcher until it disconnects,
/// the node shuts down, or `lost_leadership` resolves (the watcher must then find the new
/// active controller).
pub(crate) async fn forward(
    view: MetadataView,
    from_offset: u64,
    mut shutdown: watch::Receiver<bool>,
    lost_leadership: impl std::future::Future<Output = ()>,
    tx: mpsc::Sender<Result<MetadataBatch, Status>>,
) {
    tokio::pin!(lost_leadership);
    let (snapshot, mut events) = view.subscribe(from_offset);
    let mut last = from_offset;
    // The first message always says where the watcher stands: a snapshot when it is
    // behind, else an empty batch at its own offset ("you are caught up"), so a broker that
    // restarted with a current image knows it may act on it.
    let first = snapshot.unwrap_or(MetadataBatch {
        offset: from_offset,
        records: Vec::new(),
        snapshot: false,
    });
    last = last.max(first.offset);
    if tx.send(Ok(first)).await.is_err() {
        return;
    }
    loop {
        let batch: Arc<MetadataBatch> = tokio::select! {
            // The guard `wait_for` returns must not live across the send below.
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                let _ = tx.send(Err(Status::unavailable("controller is shutting down; reconnect"))).await;
                return;
            }
            _ = tx.closed() => return,
            _ = &mut lost_leadership => {
                let _ = tx.send(Err(Status::unavailable("no longer the active controller; reconnect"))).await;
                return;
            }
            ev = events.recv() => match ev {
                Ok(batch) => batch,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "metadata watcher lagged; sending a snapshot");
                    Arc::new(view.snapshot())
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        // Snapshots always go out (they replace the image); deltas only if newer, which
        // also drops the ones a snapshot already covered.
        if batch.snapshot || batch.offset > last {
            last = batch.offset;
            if tx.send(Ok((*batch).clone())).await.is_err() {
                return;
            }
        }
    }
}
