//! Controlled shutdown (Kafka's, KIP-841 in KRaft terms): before a broker stops, it asks
//! the controller to fence it, which moves leadership of its partitions to other in-sync
//! replicas and takes it out of every ISR in one committed batch. Clients then get
//! `NOT_LEADER_OR_FOLLOWER` and move to the new leaders instead of timing out against a
//! dead one, and acks=all writes never wait on a broker that is going away.
//!
//! Once draining starts it does not stop: every heartbeat carries `want_shutdown`, so the
//! controller never unfences this broker again in this incarnation. `/readyz` reports
//! not ready from the start of the drain.
use std::time::{Duration, Instant};

use spate_metadata::ids::NodeId;
use spate_metadata::MetadataImage;

use crate::state::BrokerState;

/// What a controlled shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlledShutdown {
    /// The controller fenced us (in the image we follow).
    pub fenced: bool,
    /// Partitions still led here when the wait ended: 0 unless the wait timed out.
    pub leaders_left: usize,
    /// How long it took.
    pub elapsed: Duration,
}

impl ControlledShutdown {
    /// Leadership moved away completely.
    pub fn completed(&self) -> bool {
        self.fenced && self.leaders_left == 0
    }
}

/// Partitions `broker` leads in `image`.
pub fn partitions_led(image: &MetadataImage, broker: NodeId) -> usize {
    image
        .topics()
        .values()
        .flat_map(|t| t.partitions.values())
        .filter(|p| p.leader == Some(broker))
        .count()
}

fn drained(image: &MetadataImage, me: NodeId) -> bool {
    image.broker(me).is_none_or(|b| b.fenced) && partitions_led(image, me) == 0
}

/// Starts draining (idempotent) and waits at most `timeout` until the controller has
/// fenced us and we lead nothing. A broker the controller does not know, or one that
/// cannot reach it, returns when the timeout ends with what it could see.
pub async fn run(state: &BrokerState, timeout: Duration) -> ControlledShutdown {
    let started = Instant::now();
    let me = NodeId(state.config.node_id);
    if !state.draining.send_replace(true) {
        let image = state.metadata.image();
        tracing::info!(
            leaders = partitions_led(&image, me),
            "controlled shutdown: asking the controller to move leadership away"
        );
    }
    let image = state.metadata.wait_until(timeout, |i| drained(i, me)).await;
    let outcome = ControlledShutdown {
        fenced: image.broker(me).is_none_or(|b| b.fenced),
        leaders_left: partitions_led(&image, me),
        elapsed: started.elapsed(),
    };
    if outcome.completed() {
        tracing::info!(
            ms = outcome.elapsed.as_millis() as u64,
            "controlled shutdown: leadership moved away"
        );
    } else {
        tracing::warn!(
            fenced = outcome.fenced,
            leaders_left = outcome.leaders_left,
            "controlled shutdown incomplete after {timeout:?}; stopping anyway"
        );
    }
    outcome
}
