//! Whether a response reports an error anywhere (top level or any topic, partition,
//! group or member), so request metrics count errors per API and version without
//! decoding what was sent. Each API's scan is part of its entry in the request table
//! ([`super::apis`]).

/// A response that may carry Kafka error codes.
pub trait ResponseErrors {
    /// True when any error code in the response is not NONE.
    fn has_error(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{HeartbeatResponse, ProduceResponse};

    #[test]
    fn nested_error_codes_count() {
        let ok = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_partition_responses(vec![PartitionProduceResponse::default()])]);
        assert!(!ok.has_error());
        let failed =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_partition_responses(vec![
                    PartitionProduceResponse::default(),
                    PartitionProduceResponse::default().with_error_code(6),
                ])]);
        assert!(failed.has_error());
        assert!(HeartbeatResponse::default().with_error_code(27).has_error());
    }
}
