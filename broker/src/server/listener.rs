//! Accepts Kafka client connections and spawns one [`Connection`] task each.
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::connection::Connection;
use crate::broker::BrokerState;

/// Accept loop; returns when `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = Connection::new(stream, peer, state.clone());
                    let shutdown = shutdown.clone();
                    tokio::spawn(conn.serve(shutdown));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return; }
            }
        }
    }
}
