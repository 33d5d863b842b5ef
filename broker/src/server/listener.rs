//! Accepts Kafka client connections and spawns one [`Connection`] task each.
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::connection::Connection;
use crate::state::BrokerState;

/// Accept loop of the listener called `name`; returns when `shutdown` turns true. Clients are served only once the
/// broker holds a metadata image from the controller (as Kafka brokers wait for their
/// initial catch-up): before that it would answer "unknown topic" for topics that exist.
pub async fn run(
    listener: TcpListener,
    name: Arc<str>,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut images = state.metadata.subscribe();
    while state.metadata.image().offset() == 0 {
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over max.connections or max.connections.per.ip: closed at once (the
                    // client sees the connection drop and retries with backoff).
                    let slot = match state.limits.admit(peer.ip()) {
                        Ok(slot) => slot,
                        Err(limit) => {
                            state.limits.hit(&state.metrics, limit, format_args!(
                                "closing a new connection from {peer}: {} reached", limit.name()));
                            drop(stream);
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let conn = Connection::new(stream, peer, name.clone(), state.clone());
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        conn.serve(shutdown).await;
                        drop(slot);
                    });
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
