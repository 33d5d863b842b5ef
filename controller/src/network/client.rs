//! openraft's `RaftNetworkFactory` over tonic: one cached channel per peer, openraft
//! errors chosen so it backs off from dead peers and retries transient failures.

use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use spate_proto::raft::raft_client::RaftClient;
use spate_proto::raft::RaftPayload;
use tonic::transport::{Channel, Endpoint};

use super::MAX_MESSAGE_BYTES;
use crate::types::{RaftNodeId, TypeConfig};

/// How long to wait for a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

type RpcResult<T, E> = Result<T, RPCError<RaftNodeId, BasicNode, E>>;

/// Creates peer clients; channels are cached per peer and shared by every client.
#[derive(Clone, Default)]
pub struct NetworkFactory {
    me: RaftNodeId,
    channels: Arc<Mutex<HashMap<RaftNodeId, (String, Channel)>>>,
}

impl NetworkFactory {
    /// A factory for node `me` (used in timeout errors).
    pub fn new(me: RaftNodeId) -> NetworkFactory {
        NetworkFactory {
            me,
            channels: Default::default(),
        }
    }

    /// The cached channel to `target`, replaced if its address changed. Channels connect
    /// lazily and reconnect on their own, so a peer that is down now is fine later.
    fn channel(&self, target: RaftNodeId, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock();
        if let Some((cached, ch)) = channels.get(&target) {
            if cached == addr {
                return Ok(ch.clone());
            }
        }
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| format!("bad address '{addr}' for node {target}: {e}"))?;
        let ch = spate_controller_client::source::bind(endpoint)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // A peer behind a partition keeps the connection open but silent: pings find
            // out, so the channel reconnects once the partition heals.
            .http2_keep_alive_interval(spate_controller_client::KEEPALIVE_INTERVAL)
            .keep_alive_timeout(spate_controller_client::KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(target, (addr.to_string(), ch.clone()));
        Ok(ch)
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            me: self.me,
            target,
            channel: self.channel(target, &node.addr),
        }
    }
}

/// Sends Raft RPCs to one peer.
pub struct PeerClient {
    me: RaftNodeId,
    target: RaftNodeId,
    channel: Result<Channel, String>,
}

/// An unrecoverable address problem, reported as `Unreachable` so openraft backs off.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadAddress(String);

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
        entries: usize,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let channel = self
            .channel
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&BadAddress(e))))?;
        let mut client = RaftClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let data = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(option.hard_ttl());
        let response = match action {
            RPCTypes::AppendEntries => client.append_entries(request).await,
            RPCTypes::Vote => client.vote(request).await,
            RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
        }
        .map_err(|status| self.status_error(status, action, option, entries))?;
        let result: Result<Resp, E> = serde_json::from_slice(&response.into_inner().data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn status_error<E: Error>(
        &self,
        status: tonic::Status,
        action: RPCTypes,
        option: &RPCOption,
        entries: usize,
    ) -> RPCError<RaftNodeId, BasicNode, E> {
        match status.code() {
            // Connection refused / peer down: openraft backs off before retrying.
            tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Timeout(Timeout {
                action,
                id: self.me,
                target: self.target,
                timeout: option.hard_ttl(),
            }),
            // Over the message limit: ask openraft to send fewer entries per request.
            tonic::Code::ResourceExhausted if action == RPCTypes::AppendEntries && entries > 1 => {
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2) as u64))
            }
            _ => RPCError::Network(NetworkError::new(&status)),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<RaftNodeId>, RaftError<RaftNodeId>> {
        let entries = rpc.entries.len();
        self.call(RPCTypes::AppendEntries, &rpc, &option, entries)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<RaftNodeId>, RaftError<RaftNodeId, InstallSnapshotError>>
    {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option, 0).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<RaftNodeId>, RaftError<RaftNodeId>> {
        self.call(RPCTypes::Vote, &rpc, &option, 0).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_cached_per_peer_and_address() {
        let f = NetworkFactory::new(1);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        f.channel(2, "127.0.0.1:1").unwrap();
        f.channel(2, "127.0.0.1:1").unwrap();
        assert_eq!(f.channels.lock().len(), 1);
        f.channel(2, "127.0.0.1:2").unwrap();
        assert_eq!(f.channels.lock()[&2].0, "127.0.0.1:2");
        assert!(f.channel(3, "not a uri ^^").is_err());
    }

    #[tokio::test]
    async fn unreachable_peer_maps_to_unreachable() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut f = NetworkFactory::new(1);
        let mut peer = f
            .new_client(
                2,
                &BasicNode {
                    addr: format!("127.0.0.1:{port}"),
                },
            )
            .await;
        let vote = VoteRequest {
            vote: openraft::Vote::new(1, 1),
            last_log_id: None,
        };
        let err = peer
            .vote(vote, RPCOption::new(Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
        let mut bad = f
            .new_client(
                3,
                &BasicNode {
                    addr: "bad addr ^".into(),
                },
            )
            .await;
        let vote = VoteRequest {
            vote: openraft::Vote::new(1, 1),
            last_log_id: None,
        };
        assert!(matches!(
            bad.vote(vote, RPCOption::new(Duration::from_secs(1))).await,
            Err(RPCError::Unreachable(_))
        ));
    }
}
