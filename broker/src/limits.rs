//! The Kafka front end's resource limits (used by `server`), with Kafka's names: how many connections are
//! open (in all, and per client address), how long an idle connection lives, how many
//! request bytes may be in flight broker-wide (`queued.max.request.bytes`), how many
//! response bytes one connection may have outstanding, how much memory consumer fetch
//! responses take broker-wide (`fetch.memory.max.bytes`), and how much memory one request
//! may decode into. Each limit, when hit, is counted in `spate_limit_hits_total{limit}`
//! and logged once per limit (the counter keeps counting after that).
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ConnectionLimits;
use crate::metrics::Metrics;

/// A limit that was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `max.connections`: a new connection beyond it is closed at once.
    MaxConnections,
    /// `max.connections.per.ip`: likewise, per client address.
    MaxConnectionsPerIp,
    /// `connections.max.idle.ms`: a connection without a complete request (and with no
    /// response owed) this long is closed, including one trickling a frame (slowloris).
    ConnectionsMaxIdle,
    /// `queued.max.request.bytes`: reading stops until request bytes in flight fall.
    QueuedMaxRequestBytes,
    /// A connection's outstanding response bytes (`fetch.max.bytes`): its next fetch
    /// waits until earlier responses are written.
    ConnectionResponseBytes,
    /// A request decodes into more memory than [`DECODED_REQUEST_MAX_BYTES`]: closed.
    DecodedRequestBytes,
    /// `fetch.memory.max.bytes`: a fetch got a smaller response than it asked for.
    FetchMemory,
}

impl Limit {
    const ALL: [Limit; 7] = [
        Limit::MaxConnections,
        Limit::MaxConnectionsPerIp,
        Limit::ConnectionsMaxIdle,
        Limit::QueuedMaxRequestBytes,
        Limit::ConnectionResponseBytes,
        Limit::DecodedRequestBytes,
        Limit::FetchMemory,
    ];

    /// The setting's name, as the metric label and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max.connections",
            Limit::MaxConnectionsPerIp => "max.connections.per.ip",
            Limit::ConnectionsMaxIdle => "connections.max.idle.ms",
            Limit::QueuedMaxRequestBytes => "queued.max.request.bytes",
            Limit::ConnectionResponseBytes => "fetch.max.bytes",
            Limit::DecodedRequestBytes => "decoded.request.max.bytes",
            Limit::FetchMemory => "fetch.memory.max.bytes",
        }
    }

    fn index(self) -> usize {
        Limit::ALL.iter().position(|l| *l == self).unwrap_or(0)
    }
}

/// The most memory one request's arrays may decode into (element count times element
/// size): 64 MiB holds about 900 000 topic entries of a Metadata request.
pub const DECODED_REQUEST_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The limits' live state, shared by the listeners and connections of one broker.
pub struct NetworkLimits {
    config: ConnectionLimits,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// `queued.max.request.bytes` as permits of one byte (None: unlimited).
    request_bytes: Option<Arc<Semaphore>>,
    request_bytes_capacity: usize,
    /// `fetch.memory.max.bytes` as permits of one byte.
    fetch_memory: Arc<Semaphore>,
    fetch_memory_capacity: usize,
    logged: [AtomicBool; 7],
}

/// What a fetch may always read, whatever the memory pressure: Kafka's default
/// `max.message.bytes` (one batch), so every consumer keeps making progress and none
/// waits for memory another connection holds.
pub const FETCH_MEMORY_FLOOR: usize = 1024 * 1024 + 12;

/// One admitted connection; its slot is given back when dropped.
pub struct ConnectionSlot {
    limits: Arc<NetworkLimits>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::SeqCst);
        let mut per_ip = self.limits.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Request bytes held from the moment a frame's size is read until its response is ready.
pub struct RequestBytes {
    _permit: Option<OwnedSemaphorePermit>,
}

impl NetworkLimits {
    /// Limits as configured.
    pub fn new(config: ConnectionLimits) -> Arc<NetworkLimits> {
        let request_bytes = config
            .queued_max_request_bytes
            .map(|bytes| Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))));
        let fetch_memory_capacity = config
            .fetch_memory_max_bytes
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Arc::new(NetworkLimits {
            request_bytes_capacity: config.queued_max_request_bytes.unwrap_or(usize::MAX),
            fetch_memory: Arc::new(Semaphore::new(fetch_memory_capacity)),
            fetch_memory_capacity,
            config,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            request_bytes,
            logged: Default::default(),
        })
    }

    /// `connections.max.idle.ms`.
    pub fn idle_timeout(&self) -> Duration {
        self.config.idle_timeout
    }

    /// Admits a new connection from `ip`, or names the limit that refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Limit> {
        let mut per_ip = self.per_ip.lock();
        if self.open.load(Ordering::SeqCst) >= self.config.max_connections {
            return Err(Limit::MaxConnections);
        }
        let from_ip = per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.config.max_connections_per_ip {
            if *from_ip == 0 {
                per_ip.remove(&ip);
            }
            return Err(Limit::MaxConnectionsPerIp);
        }
        *from_ip += 1;
        self.open.fetch_add(1, Ordering::SeqCst);
        Ok(ConnectionSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Reserves `bytes` of the request budget, waiting (and so not reading from this
    /// connection) while it is spent; `true` with it when it had to wait. A frame larger
    /// than the whole budget waits for all of it.
    pub async fn reserve_request(&self, bytes: usize) -> (RequestBytes, bool) {
        let Some(budget) = &self.request_bytes else {
            return (RequestBytes { _permit: None }, false);
        };
        let want = bytes
            .min(self.request_bytes_capacity)
            .min(u32::MAX as usize) as u32;
        if let Ok(permit) = budget.clone().try_acquire_many_owned(want) {
            return (
                RequestBytes {
                    _permit: Some(permit),
                },
                false,
            );
        }
        // Closed never: the semaphore lives as long as these limits.
        let permit = budget.clone().acquire_many_owned(want).await.ok();
        (RequestBytes { _permit: permit }, true)
    }

    /// Takes up to `want` bytes of the broker-wide fetch memory for one read of a fetch
    /// (kept, with the answer, until the response is written): what is free, but never
    /// less than [`FETCH_MEMORY_FLOOR`] (or `want`, if smaller). It never waits, so a
    /// client that does not read its answers cannot stall other consumers: under
    /// pressure they get smaller responses ([`FetchMemory::cut`]).
    pub fn take_fetch_memory(&self, want: usize) -> FetchMemory {
        let mut taken = None;
        for _ in 0..4 {
            let free = self.fetch_memory.available_permits();
            let take = want.min(free).min(u32::MAX as usize) as u32;
            if take == 0 {
                break;
            }
            if let Ok(permit) = self.fetch_memory.clone().try_acquire_many_owned(take) {
                taken = Some((take as usize, permit));
                break;
            }
        }
        let got = taken.as_ref().map_or(0, |(n, _)| *n);
        let bytes = got.max(FETCH_MEMORY_FLOOR.min(want));
        FetchMemory {
            bytes,
            cut: bytes < want,
            _permit: taken.map(|(_, p)| p),
        }
    }

    /// Fetch response bytes held now, of `fetch.memory.max.bytes`.
    pub fn fetch_memory_in_use(&self) -> usize {
        self.fetch_memory_capacity
            .saturating_sub(self.fetch_memory.available_permits())
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Request bytes in flight now.
    pub fn queued_request_bytes(&self) -> usize {
        match &self.request_bytes {
            Some(budget) => self
                .request_bytes_capacity
                .min(Semaphore::MAX_PERMITS)
                .saturating_sub(budget.available_permits()),
            None => 0,
        }
    }

    /// Whether this is the first time `limit` was hit (it is then logged; later hits are
    /// only counted).
    pub fn first_hit(&self, limit: Limit) -> bool {
        !self.logged[limit.index()].swap(true, Ordering::Relaxed)
    }

    /// Counts a hit of `limit` and logs the first one, with what happened (`detail`).
    pub fn hit(&self, metrics: &Metrics, limit: Limit, detail: std::fmt::Arguments<'_>) {
        metrics.limit_hit(limit.name());
        if self.first_hit(limit) {
            tracing::warn!(
                limit = limit.name(),
                "{detail} (logged once; spate_limit_hits_total{{limit=\"{}\"}} counts every time)",
                limit.name()
            );
        }
    }
}

/// The response bytes one connection may have outstanding (computed or being written):
/// a fetch reserves its bound before it reads, and gives it back once its response is
/// written, so a client that pipelines fetches without reading the answers holds at
/// most this much of the broker's memory.
#[derive(Debug)]
pub struct ResponseBudget {
    capacity: usize,
    budget: Arc<Semaphore>,
}

/// Response bytes of the connection's budget, held until the response is written (with
/// the broker's fetch memory the response took, once it has it).
pub struct ResponseBytes {
    _permit: Option<OwnedSemaphorePermit>,
    fetch_memory: Option<FetchMemory>,
}

impl ResponseBytes {
    /// Keeps `memory` (what the response's read took) until the response is written.
    pub fn with_fetch_memory(mut self, memory: FetchMemory) -> ResponseBytes {
        self.fetch_memory = Some(memory);
        self
    }
}

/// Bytes of the broker's fetch memory one read may fill.
#[derive(Debug)]
pub struct FetchMemory {
    /// How much the read may return.
    pub bytes: usize,
    /// Whether that is less than it asked for (memory pressure).
    pub cut: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl ResponseBudget {
    /// A budget of `capacity` bytes.
    pub fn new(capacity: usize) -> ResponseBudget {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        ResponseBudget {
            capacity,
            budget: Arc::new(Semaphore::new(capacity)),
        }
    }

    /// Reserves `bytes` (at most the whole budget), waiting for earlier responses to be
    /// written; `true` with it when it had to wait.
    pub async fn reserve(&self, bytes: usize) -> (ResponseBytes, bool) {
        let want = bytes.min(self.capacity) as u32;
        if let Ok(permit) = self.budget.clone().try_acquire_many_owned(want) {
            return (
                ResponseBytes {
                    _permit: Some(permit),
                    fetch_memory: None,
                },
                false,
            );
        }
        let permit = self.budget.clone().acquire_many_owned(want).await.ok();
        (
            ResponseBytes {
                _permit: permit,
                fetch_memory: None,
            },
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_ip: usize, queued: Option<usize>) -> Arc<NetworkLimits> {
        NetworkLimits::new(ConnectionLimits {
            max_connections: max,
            max_connections_per_ip: per_ip,
            idle_timeout: Duration::from_secs(600),
            queued_max_request_bytes: queued,
            fetch_memory_max_bytes: 4 * FETCH_MEMORY_FLOOR,
        })
    }

    #[test]
    fn fetch_memory_cuts_reads_under_pressure_but_never_below_the_floor() {
        let l = limits(10, 10, None);
        let floor = FETCH_MEMORY_FLOOR;
        let a = l.take_fetch_memory(3 * floor);
        assert_eq!((a.bytes, a.cut), (3 * floor, false));
        let b = l.take_fetch_memory(3 * floor);
        assert_eq!(
            (b.bytes, b.cut),
            (floor, true),
            "one floor's worth was free"
        );
        let c = l.take_fetch_memory(3 * floor);
        assert_eq!(
            (c.bytes, c.cut),
            (floor, true),
            "nothing free: the floor, at once"
        );
        let d = l.take_fetch_memory(100);
        assert_eq!((d.bytes, d.cut), (100, false), "a small read is never cut");
        assert_eq!(l.fetch_memory_in_use(), 4 * floor);
        drop((a, b));
        assert_eq!(l.fetch_memory_in_use(), 0, "given back once written");
    }

    #[test]
    fn connections_are_bounded_in_all_and_per_address_and_slots_come_back() {
        let l = limits(3, 2, None);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Limit::MaxConnectionsPerIp));
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).err(), Some(Limit::MaxConnections));
        assert_eq!(l.open_connections(), 3);
        drop(a1);
        assert_eq!(l.open_connections(), 2);
        let _a3 = l.admit(a).expect("a's slot came back");
    }

    #[test]
    fn a_refused_address_leaves_no_entry_behind() {
        let l = limits(10, 0, None);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(l.admit(a).err(), Some(Limit::MaxConnectionsPerIp));
        assert!(l.per_ip.lock().is_empty());
    }

    #[tokio::test]
    async fn request_bytes_wait_for_the_budget_and_a_huge_frame_takes_all_of_it() {
        let l = limits(10, 10, Some(100));
        let (first, waited) = l.reserve_request(60).await;
        assert!(!waited);
        assert_eq!(l.queued_request_bytes(), 60);
        let l2 = l.clone();
        let second = tokio::spawn(async move { l2.reserve_request(1000).await.1 });
        tokio::task::yield_now().await;
        assert!(
            !second.is_finished(),
            "waits while 60 of 100 bytes are held"
        );
        drop(first);
        assert!(
            second.await.unwrap(),
            "then gets the whole budget, having waited"
        );
        assert_eq!(l.queued_request_bytes(), 0);
    }

    #[tokio::test]
    async fn response_bytes_wait_until_earlier_responses_are_written() {
        let budget = Arc::new(ResponseBudget::new(100));
        let (first, _) = budget.reserve(80).await;
        let b = budget.clone();
        let second = tokio::spawn(async move { b.reserve(500).await.1 });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        drop(first);
        assert!(second.await.unwrap());
    }

    #[test]
    fn each_limit_is_logged_once() {
        let l = limits(1, 1, None);
        assert!(l.first_hit(Limit::MaxConnections));
        assert!(!l.first_hit(Limit::MaxConnections));
        assert!(l.first_hit(Limit::DecodedRequestBytes));
    }
}
