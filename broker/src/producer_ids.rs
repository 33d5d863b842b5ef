//! Producer ids for idempotent producers (InitProducerId): handed out one at a time
//! from blocks the controller allocates, so ids are unique across the cluster and
//! survive controller failover (docs/architecture.md §7).
use tokio::sync::Mutex;

use crate::error::{BrokerError, Result};
use crate::metadata::controller_link::ControllerLink;

/// The block being handed out: `next..end`.
#[derive(Debug, Default)]
pub struct ProducerIdBlocks {
    block: Mutex<(i64, i64)>,
}

impl ProducerIdBlocks {
    /// The next unused producer id, asking the controller for a new block when the
    /// current one is used up.
    pub async fn next_id(
        &self,
        controller: &ControllerLink,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<i64> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let mut client = controller.admin()?;
            let response = client
                .allocate_producer_ids(spate_proto::controller::AllocateProducerIdsRequest {
                    broker_id,
                    broker_epoch,
                })
                .await
                .map_err(crate::metadata::controller_link::unavailable)?;
            if response.error_code != 0 || response.count <= 0 {
                return Err(BrokerError::ControllerUnavailable(format!(
                    "producer id block refused (error {}): {}",
                    response.error_code, response.error_message
                )));
            }
            *block = (
                response.first_producer_id,
                response.first_producer_id + i64::from(response.count),
            );
            tracing::info!(first = block.0, end = block.1, "new producer id block");
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
