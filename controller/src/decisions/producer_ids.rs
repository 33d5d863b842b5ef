//! Producer id blocks (docs/architecture.md §7): brokers hand out producer ids from blocks the
//! controller allocates, so ids are unique cluster-wide without a round trip per producer.

use spate_proto::controller::{AllocateProducerIdsRequest, AllocateProducerIdsResponse};

use super::ControllerResult;
use crate::error::ErrorCode;
use spate_metadata::ids::NodeId;
use spate_metadata::{records, MetadataImage};

/// Ids per block, as Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`.
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;

/// Allocates the next block to a registered broker with its current epoch.
pub fn allocate_producer_ids(
    image: &MetadataImage,
    req: &AllocateProducerIdsRequest,
) -> ControllerResult<AllocateProducerIdsResponse> {
    let fail = |code: ErrorCode, message: String| {
        ControllerResult::response_only(AllocateProducerIdsResponse {
            error_code: code.proto_code(),
            first_producer_id: -1,
            count: 0,
            error_message: message,
        })
    };
    let id = NodeId(req.broker_id);
    match image.broker(id) {
        Some(b) if b.epoch.0 == req.broker_epoch => {}
        _ => {
            return fail(
                ErrorCode::StaleBrokerEpoch,
                format!(
                    "broker {id} with epoch {} is not the current registration",
                    req.broker_epoch
                ),
            )
        }
    }
    let first = image.next_producer_id();
    let Some(next) = first.checked_add(i64::from(PRODUCER_ID_BLOCK_SIZE)) else {
        return fail(
            ErrorCode::UnknownServerError,
            "all producer ids are exhausted".to_string(),
        );
    };
    ControllerResult {
        records: vec![records::producer_id_block(
            id,
            spate_metadata::ids::BrokerEpoch(req.broker_epoch),
            next,
        )],
        response: AllocateProducerIdsResponse {
            error_code: 0,
            first_producer_id: first,
            count: PRODUCER_ID_BLOCK_SIZE,
            error_message: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_metadata::ids::BrokerEpoch;
    use spate_metadata::BrokerRegistration;

    fn image() -> MetadataImage {
        let mut img = MetadataImage::new();
        let b = BrokerRegistration {
            id: NodeId(1),
            epoch: BrokerEpoch(-1),
            incarnation_id: "i".into(),
            endpoints: vec![],
            rack: None,
            fenced: false,
            offline_replicas: Default::default(),
            log_dir_id: String::new(),
        };
        img.apply(5, &records::register_broker(&b, None)).unwrap();
        img
    }

    #[test]
    fn blocks_are_consecutive() {
        let mut img = image();
        let req = AllocateProducerIdsRequest {
            broker_id: 1,
            broker_epoch: 5,
        };
        let first = allocate_producer_ids(&img, &req);
        assert_eq!(
            (first.response.first_producer_id, first.response.count),
            (0, 1000)
        );
        for r in &first.records {
            img.apply(6, r).unwrap();
        }
        let second = allocate_producer_ids(&img, &req);
        assert_eq!(second.response.first_producer_id, 1000);
        assert_eq!(img.next_producer_id(), 1000);
    }

    #[test]
    fn stale_epoch_and_unknown_broker_are_rejected() {
        let img = image();
        for (broker_id, broker_epoch) in [(1, 4), (2, 5)] {
            let r = allocate_producer_ids(
                &img,
                &AllocateProducerIdsRequest {
                    broker_id,
                    broker_epoch,
                },
            );
            assert_eq!(
                r.response.error_code,
                ErrorCode::StaleBrokerEpoch.proto_code()
            );
            assert!(r.records.is_empty());
        }
    }

    #[test]
    fn exhaustion_is_an_error_not_an_overflow() {
        let mut img = image();
        img.apply(
            6,
            &records::producer_id_block(NodeId(1), BrokerEpoch(5), i64::MAX - 10),
        )
        .unwrap();
        let r = allocate_producer_ids(
            &img,
            &AllocateProducerIdsRequest {
                broker_id: 1,
                broker_epoch: 5,
            },
        );
        assert_eq!(
            r.response.error_code,
            ErrorCode::UnknownServerError.proto_code()
        );
    }
}
