//! Kafka framing: a 4-byte big-endian size, then the header, then the body.
//!
//! Pure functions so the wire format is tested without sockets.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::error::{Error, Result};

/// Encodes one request frame, size prefix included, in a single allocation.
pub fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<Bytes> {
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(client_id.clone());
    let header_version = R::header_version(version);
    let header_size = header
        .compute_size(header_version)
        .map_err(Error::protocol)?;
    let body_size = req.compute_size(version).map_err(Error::protocol)?;
    let size = header_size + body_size;
    let size_i32 = i32::try_from(size)
        .map_err(|_| Error::InvalidArgument(format!("request of {size} bytes is too large")))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size_i32);
    header
        .encode(&mut buf, header_version)
        .map_err(Error::protocol)?;
    req.encode(&mut buf, version).map_err(Error::protocol)?;
    Ok(buf.freeze())
}

/// The correlation id at the start of a response frame (after the size prefix).
pub fn correlation_id(frame: &[u8]) -> Option<i32> {
    let head: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(head))
}

/// Strips the response header (whose version depends on the API version) from a frame.
pub fn strip_response_header<R: Request>(frame: &mut Bytes, version: i16) -> Result<()> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    ResponseHeader::decode(frame, header_version).map_err(Error::protocol)?;
    Ok(())
}

/// Decodes a response frame (size prefix already removed) for request type `R`.
pub fn decode_response<R: Request>(mut frame: Bytes, version: i16) -> Result<R::Response> {
    strip_response_header::<R>(&mut frame, version)?;
    // Trailing bytes are tolerated: a newer broker may append tagged fields we skip.
    R::Response::decode(&mut frame, version).map_err(|e| {
        Error::protocol(format!(
            "cannot decode {} v{version} response: {e}",
            api_name(R::KEY)
        ))
    })
}

/// The API's name for messages, e.g. `Produce`.
pub fn api_name(key: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(_) => format!("api {key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    #[test]
    fn request_frame_has_size_prefix_and_decodable_header() {
        let req = MetadataRequest::default().with_topics(None);
        let frame = encode_request(&req, 12, 77, &StrBytes::from_static_str("t")).unwrap();
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        let mut body = frame.slice(4..);
        let header =
            kafka_protocol::protocol::decode_request_header_from_buffer(&mut body).unwrap();
        assert_eq!(header.correlation_id, 77);
        assert_eq!(header.request_api_version, 12);
        assert_eq!(MetadataRequest::decode(&mut body, 12).unwrap(), req);
    }

    #[test]
    fn response_round_trip_with_flexible_header() {
        let mut resp = MetadataResponse::default();
        resp.cluster_id = Some(StrBytes::from_static_str("c1"));
        let mut buf = BytesMut::new();
        let mut header = ResponseHeader::default();
        header.correlation_id = 5;
        header.encode(&mut buf, 1).unwrap();
        resp.encode(&mut buf, 12).unwrap();
        let frame = buf.freeze();
        assert_eq!(correlation_id(&frame), Some(5));
        let back = decode_response::<MetadataRequest>(frame, 12).unwrap();
        assert_eq!(back.cluster_id.as_deref(), Some("c1"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(correlation_id(&[1, 2]), None);
        let r = decode_response::<MetadataRequest>(Bytes::from_static(&[0, 0, 0, 1, 0xff]), 12);
        assert!(matches!(r, Err(Error::Protocol(_))));
    }
}
