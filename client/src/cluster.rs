//! The client's view of a cluster: bootstrap, cached metadata, one connection per broker,
//! and bounded retry-with-refresh for requests that hit stale metadata.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::config::ClientConfig;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::types::NodeId;

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

/// Shared cluster state; every client (admin, producer, consumer) holds one in an `Arc`.
pub struct Cluster {
    config: ClientConfig,
    bootstrap: Vec<String>,
    metadata: RwLock<Arc<Metadata>>,
    brokers: Mutex<HashMap<NodeId, Slot>>,
    bootstrap_conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// Topics the last refresh covered (`None` = all), so waiters can skip a duplicate one.
    refresh_state: tokio::sync::Mutex<Option<Vec<String>>>,
    generation: AtomicU64,
}

/// Splits `host:port[,host:port]`, checking every entry has a numeric port.
pub fn parse_bootstrap(s: &str) -> Result<Vec<String>> {
    let addrs: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    if addrs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "bootstrap '{s}' names no broker (expected host:port[,host:port])"
        )));
    }
    for a in &addrs {
        let port = a.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
        if !matches!(port, Some(Ok(_))) {
            return Err(Error::InvalidArgument(format!(
                "bootstrap entry '{a}' is not host:port"
            )));
        }
    }
    Ok(addrs)
}

impl Cluster {
    /// Parses the bootstrap list and loads the broker list from the first reachable broker.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        let bootstrap = parse_bootstrap(&config.bootstrap)?;
        let cluster = Arc::new(Cluster {
            config,
            bootstrap,
            metadata: RwLock::new(Arc::new(Metadata::default())),
            brokers: Mutex::new(HashMap::new()),
            bootstrap_conn: tokio::sync::Mutex::new(None),
            refresh_state: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        });
        cluster.refresh(Some(&[])).await?;
        Ok(cluster)
    }

    /// The settings this cluster was opened with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The current metadata snapshot (cheap: an `Arc` clone).
    pub fn metadata(&self) -> Arc<Metadata> {
        match self.metadata.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Fetches metadata for `topics` (`None` = all topics, `Some(&[])` = brokers only) and
    /// merges it into the cache. Concurrent callers share one refresh when it covers them.
    pub async fn refresh(&self, topics: Option<&[String]>) -> Result<Arc<Metadata>> {
        let seen = self.generation.load(Ordering::Acquire);
        let mut covered = self.refresh_state.lock().await;
        if self.generation.load(Ordering::Acquire) != seen && covers(covered.as_deref(), topics) {
            // Someone refreshed while we waited, and it covered our topics.
            return Ok(self.metadata());
        }
        let fresh = self.fetch_metadata(topics).await?;
        let merged = Arc::new(self.metadata().merge(fresh, topics));
        match self.metadata.write() {
            Ok(mut m) => *m = merged.clone(),
            Err(poisoned) => *poisoned.into_inner() = merged.clone(),
        }
        *covered = topics.map(<[String]>::to_vec);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(merged)
    }

    async fn fetch_metadata(&self, topics: Option<&[String]>) -> Result<Metadata> {
        let mut last_err = None;
        // A broker can die between calls: try another connection before giving up.
        for _ in 0..3 {
            let conn = self.any_connection().await?;
            match self.metadata_from(&conn, topics).await {
                Ok(m) => return Ok(m),
                Err(e) if e.is_retriable() => {
                    tracing::debug!(addr = conn.addr(), error = %e, "metadata request failed");
                    conn.close();
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::NoBrokers(self.bootstrap.join(","))))
    }

    async fn metadata_from(
        &self,
        conn: &Connection,
        topics: Option<&[String]>,
    ) -> Result<Metadata> {
        let version = conn.api_version(ApiKey::Metadata)?;
        let mut req = MetadataRequest::default();
        req.topics = topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                })
                .collect()
        });
        if version >= 4 {
            req.allow_auto_topic_creation = self.config.allow_auto_topic_creation;
        }
        let resp = conn.request(version, &req).await?;
        Ok(Metadata::from_response(&resp))
    }

    /// The connection to broker `node`, opened on first use and reopened after it died.
    pub async fn connection(&self, node: NodeId) -> Result<Arc<Connection>> {
        let slot = {
            let mut map = self.brokers.lock().map_err(|_| Error::Closed)?;
            map.entry(node).or_default().clone()
        };
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let addr = self.metadata().broker_addr(node).ok_or_else(|| {
            Error::kafka(
                kafka_protocol::ResponseError::BrokerNotAvailable,
                None,
                format!("broker {node} is not in metadata"),
            )
        })?;
        let conn = Arc::new(Connection::connect(&addr, &self.config).await?);
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Some live connection: an open broker connection, else a known broker, else bootstrap.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        let open: Vec<Slot> = match self.brokers.lock() {
            Ok(map) => map.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for slot in open {
            if let Ok(guard) = slot.try_lock() {
                if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
                    return Ok(c.clone());
                }
            }
        }
        let known: Vec<NodeId> = self.metadata().brokers.keys().copied().collect();
        for node in known {
            if let Ok(c) = self.connection(node).await {
                return Ok(c);
            }
        }
        let mut guard = self.bootstrap_conn.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let mut errors = Vec::new();
        for addr in &self.bootstrap {
            match Connection::connect(addr, &self.config).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    *guard = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        Err(Error::NoBrokers(errors.join("; ")))
    }

    /// The connection admin requests go to: the controller Metadata names, else any broker.
    pub async fn controller_connection(&self) -> Result<Arc<Connection>> {
        match self.metadata().controller {
            Some(id) => match self.connection(id).await {
                Ok(c) => Ok(c),
                Err(_) => self.any_connection().await,
            },
            None => self.any_connection().await,
        }
    }

    /// The leader of a partition, refreshing metadata (bounded, with backoff) until known.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<NodeId> {
        let topics = [topic.to_string()];
        self.cached_or_refresh(&topics, |m| m.leader(topic, partition))
            .await
    }

    /// The partition count of a topic, refreshing metadata (bounded, with backoff) until known.
    pub async fn partition_count(&self, topic: &str) -> Result<usize> {
        let topics = [topic.to_string()];
        self.cached_or_refresh(&topics, |m| m.partition_count(topic))
            .await
    }

    async fn cached_or_refresh<T>(
        &self,
        topics: &[String],
        look: impl Fn(&Metadata) -> Result<T>,
    ) -> Result<T> {
        if let Ok(v) = look(&self.metadata()) {
            return Ok(v);
        }
        let mut attempt = 0;
        loop {
            let meta = self.refresh(Some(topics)).await?;
            match look(&meta) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() && attempt < self.config.retries => {
                    tokio::time::sleep(self.config.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `op` until it succeeds, fails for good, or retries run out; refreshes metadata of
    /// `topics` between attempts when the error says it is stale.
    pub async fn with_retries<T, F, Fut>(&self, topics: Option<&[String]>, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() && attempt < self.config.retries => {
                    tracing::debug!(error = %e, attempt, "retrying");
                    tokio::time::sleep(self.config.backoff(attempt)).await;
                    if e.needs_metadata_refresh() {
                        // A failed refresh is not fatal: the next attempt reports the real error.
                        let _ = self.refresh(topics).await;
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes every connection; in-flight requests fail with `ConnectionClosed`.
    pub fn close(&self) {
        let slots: Vec<Slot> = match self.brokers.lock() {
            Ok(map) => map.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for slot in slots {
            if let Ok(guard) = slot.try_lock() {
                if let Some(c) = guard.as_ref() {
                    c.close();
                }
            }
        }
        if let Ok(guard) = self.bootstrap_conn.try_lock() {
            if let Some(c) = guard.as_ref() {
                c.close();
            }
        }
    }
}

/// Whether a refresh of `done` topics also answers a request for `wanted`.
fn covers(done: Option<&[String]>, wanted: Option<&[String]>) -> bool {
    match (done, wanted) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(done), Some(wanted)) => wanted.iter().all(|w| done.contains(w)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_parsing() {
        assert_eq!(
            parse_bootstrap("a:1, b:2,").ok(),
            Some(vec!["a:1".to_string(), "b:2".to_string()])
        );
        assert_eq!(
            parse_bootstrap("[::1]:9092").ok(),
            Some(vec!["[::1]:9092".to_string()])
        );
        assert!(parse_bootstrap("").is_err());
        assert!(parse_bootstrap("host").is_err());
        assert!(parse_bootstrap("host:port").is_err());
    }

    #[test]
    fn refresh_coverage() {
        let a = vec!["a".to_string()];
        assert!(covers(None, Some(&a)));
        assert!(covers(Some(&a), Some(&a)));
        assert!(!covers(Some(&[]), Some(&a)));
        assert!(!covers(Some(&a), None));
    }
}
