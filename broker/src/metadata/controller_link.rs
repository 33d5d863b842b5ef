//! How the broker reaches the active controller: gRPC to the configured controller
//! addresses (over loopback in combined mode too, so there is one code path).
use std::time::Duration;

use parking_lot::Mutex;
use spate_proto::controller::controller_client::ControllerClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{BrokerError, Result};

/// Error code the controller answers with when it is not the active one.
pub const NOT_CONTROLLER: i32 = 41;

/// A lazily connected client to the controller quorum.
pub struct ControllerLink {
    addrs: Vec<String>,
    current: Mutex<(usize, Option<ControllerClient<Channel>>)>,
}

impl ControllerLink {
    /// A link to the controllers at `addrs` (`host:port`).
    pub fn new(addrs: Vec<String>) -> Self {
        ControllerLink { addrs, current: Mutex::new((0, None)) }
    }

    /// A client for the controller currently believed active.
    pub fn client(&self) -> Result<ControllerClient<Channel>> {
        let mut current = self.current.lock();
        if let Some(client) = &current.1 {
            return Ok(client.clone());
        }
        let addr = self
            .addrs
            .get(current.0 % self.addrs.len().max(1))
            .ok_or_else(|| BrokerError::ControllerUnavailable("no controller configured".into()))?;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| BrokerError::ControllerUnavailable(format!("bad controller address '{addr}': {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30));
        let client = ControllerClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024);
        current.1 = Some(client.clone());
        Ok(client)
    }

    /// Forgets the current client and moves to the next address (after an error or
    /// NOT_CONTROLLER).
    pub fn rotate(&self) {
        let mut current = self.current.lock();
        current.0 = current.0.wrapping_add(1);
        current.1 = None;
    }

    /// Maps a transport error, rotating to the next controller.
    pub fn unavailable(&self, status: tonic::Status) -> BrokerError {
        self.rotate();
        BrokerError::ControllerUnavailable(status.message().to_string())
    }
}
