//! The `Raft` gRPC service: decodes a peer's RPC, hands it to the local openraft node and
//! returns openraft's `Result` as JSON, so a remote Raft error reaches the caller intact.

use serde::de::DeserializeOwned;
use serde::Serialize;
use spate_proto::raft::raft_server::{Raft, RaftServer};
use spate_proto::raft::RaftPayload;
use tonic::{Request, Response, Status};

use super::MAX_MESSAGE_BYTES;
use crate::types::SpateRaft;

/// Serves Raft RPCs from peers.
#[derive(Clone)]
pub struct RaftService {
    raft: SpateRaft,
}

/// The tonic server for [`RaftService`], with raised message size limits.
pub fn raft_server(raft: SpateRaft) -> RaftServer<RaftService> {
    RaftServer::new(RaftService { raft })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn decode<T: DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(value)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|e| Status::internal(format!("cannot encode raft response: {e}")))
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}
