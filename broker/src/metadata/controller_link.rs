//! How the broker reaches the active controller: the controller crate's retrying gRPC
//! client (over loopback in combined mode too, so there is one code path), with a short
//! retry policy for heartbeats and a patient one for admin requests.
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use spate_controller_client::{ControllerClient, RetryPolicy};

use crate::config::ControllerLinkConfig;
use crate::error::{BrokerError, Result};
use crate::faults::{FaultLayer, LinkFaults};

/// Clients to the controller quorum, by purpose.
pub struct ControllerLink {
    template: Option<ControllerClient>,
    error: String,
    /// How many controllers there are: a call must be able to try each of them.
    controllers: u32,
    /// When a heartbeat last got an answer: readiness (`/readyz`) needs a signal that
    /// works even when the metadata stream that would carry our fencing is cut.
    last_heartbeat_ok: Mutex<Option<Instant>>,
    /// The controller that answered last: calls start there instead of at the first
    /// voter, which may be the one a partition cut off (each call to it would wait for
    /// its timeout before trying the next).
    preferred: std::sync::atomic::AtomicUsize,
}

impl ControllerLink {
    /// A link to the controllers of `section` (`host:port` addresses); connections are lazy.
    pub fn new(section: &ControllerLinkConfig, faults: Arc<LinkFaults>) -> Self {
        let addrs = section.addrs.clone();
        let controllers = addrs.len().max(1) as u32;
        // Injected link faults act on the channels themselves (crate::faults).
        match ControllerClient::connect_through(addrs, FaultLayer::new(faults)) {
            Ok(client) => ControllerLink {
                template: Some(client),
                error: String::new(),
                controllers,
                last_heartbeat_ok: Mutex::new(None),
                preferred: Default::default(),
            },
            Err(e) => ControllerLink {
                template: None,
                error: e.to_string(),
                controllers,
                last_heartbeat_ok: Mutex::new(None),
                preferred: Default::default(),
            },
        }
    }

    fn with(&self, retry: RetryPolicy) -> Result<ControllerClient> {
        let start = self.preferred.load(std::sync::atomic::Ordering::Relaxed);
        self.template
            .clone()
            .map(|c| c.with_retry(retry).starting_at(start))
            .ok_or_else(|| BrokerError::ControllerUnavailable(self.error.clone()))
    }

    /// Notes that the controller just answered a heartbeat through `client`: later calls
    /// start at the controller that answered.
    pub fn record_heartbeat_ok(&self, client: &ControllerClient) {
        *self.last_heartbeat_ok.lock() = Some(Instant::now());
        self.note_answered(client);
    }

    /// Later calls start at the controller `client` reached last.
    pub fn note_answered(&self, client: &ControllerClient) {
        self.preferred
            .store(client.current_index(), std::sync::atomic::Ordering::Relaxed);
    }

    /// How long ago a heartbeat last got an answer (`None`: never).
    pub fn since_heartbeat_ok(&self) -> Option<Duration> {
        self.last_heartbeat_ok.lock().map(|t| t.elapsed())
    }

    /// For admin requests forwarded from clients: retries for up to ~10 s.
    pub fn admin(&self) -> Result<ControllerClient> {
        self.with(RetryPolicy {
            attempts: 15.max(2 * self.controllers),
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
        })
    }

    /// For registration, heartbeats and the metadata stream: one pass over the
    /// controllers (finding the active one), then the caller loops.
    pub fn lifecycle(&self) -> Result<ControllerClient> {
        self.with(RetryPolicy {
            attempts: self.controllers + 1,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            request_timeout: Duration::from_secs(5),
        })
    }
}

/// The broker error for a failed controller call.
pub fn unavailable(e: spate_controller_client::ClientError) -> BrokerError {
    BrokerError::ControllerUnavailable(e.to_string())
}
