//! The local address outbound gRPC connections of this process start from
//! (`outbound.source.ip`): Raft to peer controllers, brokers to the controller, followers
//! to leaders. Unset, the operating system picks it. Setting it lets a multi-homed host
//! choose an interface, and lets a fault-injection proxy in front of a node tell which
//! node a connection comes from (each node of a local cluster gets its own 127.0.0.x).
//!
//! It is process-wide because it describes the process's host identity: one node per
//! process. In-process test clusters leave it unset.
use std::net::IpAddr;
use std::sync::OnceLock;

use tonic::transport::Endpoint;

static SOURCE_IP: OnceLock<IpAddr> = OnceLock::new();

/// Sets the source address once; a second, different value is refused.
pub fn set_source_ip(ip: IpAddr) -> Result<(), String> {
    match SOURCE_IP.get_or_init(|| ip) {
        set if *set == ip => Ok(()),
        set => Err(format!("outbound source IP already set to {set}")),
    }
}

/// The configured source address, if any.
pub fn source_ip() -> Option<IpAddr> {
    SOURCE_IP.get().copied()
}

/// `endpoint` bound to the configured source address.
pub fn bind(endpoint: Endpoint) -> Endpoint {
    endpoint.local_address(source_ip())
}
