//! The admin-port HTTP client of `spate-client`, taking a socket address.
use std::net::SocketAddr;

pub use spate_client::http::HttpResponse;

/// `GET path` on `addr` with `Connection: close`.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<HttpResponse> {
    spate_client::http::get(&addr.to_string(), path).await
}
