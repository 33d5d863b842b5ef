//! InitProducerId for idempotent producers: a fresh producer id at epoch 0 (as Kafka
//! answers producers without a transactional id). Transactions are not supported: a
//! transactional id is refused.
use std::sync::atomic::Ordering;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use spate_metadata::ErrorCode;

use crate::server::context::RequestContext;

/// Allocates a producer id.
pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let failed = |code: ErrorCode| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        tracing::debug!(
            "InitProducerId with a transactional id refused: transactions are not supported"
        );
        return failed(ErrorCode::TransactionalIdAuthorizationFailed);
    }
    let state = &ctx.state;
    let next = state
        .producer_ids
        .next_id(
            &state.controller,
            state.config.node_id,
            state.broker_epoch.load(Ordering::SeqCst),
        )
        .await;
    match next {
        Ok(id) => InitProducerIdResponse::default()
            .with_error_code(0)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            // Retriable for every client (Kafka answers the same while ids are unavailable).
            failed(ErrorCode::CoordinatorLoadInProgress)
        }
    }
}
