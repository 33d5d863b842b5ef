//! A fault-injecting TCP proxy for the local-process cluster.
//!
//! Every node's controller and replication ports are reached through a [`Proxy`] owned by
//! the harness (the nodes advertise the proxy's port). Node N opens its outbound
//! connections from source IP `127.0.0.(10+N)` ([`node_source_ip`]), so a proxy learns
//! which node connected from the peer IP of the accepted socket, and knows which node it
//! fronts (`dst`). Faults are kept per directed link (`from -> to`) in one shared
//! [`LinkFaults`] table, so a fault applies at once to existing and new connections of
//! every proxy of the cluster.
//!
//! Semantics, chosen to look like a real network and never corrupt a byte stream:
//! - a *cut* link stalls: the pump stops reading from the sending side and holds what it
//!   already read, so nothing is lost or reordered and TCP back-pressure builds up as it
//!   would while a partition drops (and the kernel later retransmits) packets; new
//!   connections are accepted and stalled too (a partition does not send RST);
//! - a *delay* holds every chunk until its arrival time plus the delay, in order (a
//!   latency, not a bandwidth limit);
//! - [`LinkFaults::heal`] removes every fault and stalled or delayed bytes flow at once;
//! - connections from an unknown IP (a CLI on 127.0.0.1) are "external" and never faulted.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// The most bytes one read takes from a socket.
const CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction: bounds the memory a delayed link holds
/// (at most `CHUNK * IN_FLIGHT` bytes) while letting a delayed link keep its throughput.
const IN_FLIGHT: usize = 256;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// The last octet of node 0's source IP; node N uses `127.0.0.(BASE_OCTET + N)`.
const BASE_OCTET: u32 = 10;

/// A directed link: bytes sent by node `from` to node `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    /// The sending node.
    pub from: u32,
    /// The receiving node.
    pub to: u32,
}

impl Link {
    /// The link from `from` to `to`.
    pub fn new(from: u32, to: u32) -> Self {
        Self { from, to }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}", self.from, self.to)
    }
}

/// The faults in force.
#[derive(Default)]
struct Table {
    cuts: BTreeSet<Link>,
    delays: BTreeMap<Link, Duration>,
}

/// What [`LinkFaults`] clones share.
struct Shared {
    table: Mutex<Table>,
    /// Bumped after every change of `table` so that stalled or sleeping pumps re-check at
    /// once instead of polling.
    changed: watch::Sender<u64>,
    /// Bytes delivered per link, for logs.
    traffic: Mutex<BTreeMap<Link, u64>>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            table: Mutex::default(),
            // No receiver is kept: pumps subscribe, and `send_modify` works without any.
            changed: watch::channel(0).0,
            traffic: Mutex::default(),
        }
    }
}

/// Shared fault table for all proxies of a cluster. Clones share the same table.
#[derive(Clone, Default)]
pub struct LinkFaults {
    shared: Arc<Shared>,
}

impl LinkFaults {
    /// Bytes from node `from` to node `to` stop flowing (both for connections `from`
    /// opened to `to` — their forward direction — and connections `to` opened to `from` —
    /// their backward direction).
    pub fn cut(&self, from: u32, to: u32) {
        self.update(|t| {
            t.cuts.insert(Link::new(from, to));
        });
    }

    /// Both directions between every other node and `node`.
    pub fn isolate(&self, node: u32, all_nodes: &[u32]) {
        self.partition(&[node], all_nodes);
    }

    /// Cuts both directions between every node of `side_a` and every node of `side_b`
    /// (a node present on both sides keeps its links to itself).
    pub fn partition(&self, side_a: &[u32], side_b: &[u32]) {
        self.update(|t| {
            for &a in side_a {
                for &b in side_b.iter().filter(|&&b| b != a) {
                    t.cuts.insert(Link::new(a, b));
                    t.cuts.insert(Link::new(b, a));
                }
            }
        });
    }

    /// Adds `delay` to every byte chunk flowing from `from` to `to` (replacing an earlier
    /// delay of that link; a zero delay removes it).
    pub fn delay(&self, from: u32, to: u32, delay: Duration) {
        self.update(|t| {
            let link = Link::new(from, to);
            if delay.is_zero() {
                t.delays.remove(&link);
            } else {
                t.delays.insert(link, delay);
            }
        });
    }

    /// Removes every fault (stalled connections resume, delayed chunks are released).
    pub fn heal(&self) {
        self.update(|t| *t = Table::default());
    }

    /// Whether bytes from `from` to `to` are stalled.
    pub fn is_cut(&self, from: u32, to: u32) -> bool {
        self.shared.table.lock().cuts.contains(&Link::new(from, to))
    }

    /// The delay added to bytes from `from` to `to` (zero if none).
    pub fn delay_of(&self, from: u32, to: u32) -> Duration {
        self.state(Link::new(from, to)).1
    }

    /// Whether any fault is in force.
    pub fn is_healthy(&self) -> bool {
        let t = self.shared.table.lock();
        t.cuts.is_empty() && t.delays.is_empty()
    }

    /// The faults in force, for logs: `cut [1->2, 2->1]; delay [1->3 +200ms]` or
    /// `healthy`.
    pub fn describe(&self) -> String {
        let t = self.shared.table.lock();
        let mut parts = Vec::new();
        if !t.cuts.is_empty() {
            let cuts: Vec<String> = t.cuts.iter().map(Link::to_string).collect();
            parts.push(format!("cut [{}]", cuts.join(", ")));
        }
        if !t.delays.is_empty() {
            let delays: Vec<String> = t
                .delays
                .iter()
                .map(|(l, d)| format!("{l} +{d:?}"))
                .collect();
            parts.push(format!("delay [{}]", delays.join(", ")));
        }
        if parts.is_empty() {
            "healthy".to_string()
        } else {
            parts.join("; ")
        }
    }

    /// Bytes delivered per link since the table was created (external connections are
    /// not counted).
    pub fn traffic(&self) -> Vec<(Link, u64)> {
        self.shared
            .traffic
            .lock()
            .iter()
            .map(|(l, n)| (*l, *n))
            .collect()
    }

    /// [`Self::traffic`] as one log line: `1->2 1234B, 2->1 56B`.
    pub fn describe_traffic(&self) -> String {
        let parts: Vec<String> = self
            .traffic()
            .iter()
            .map(|(l, n)| format!("{l} {n}B"))
            .collect();
        parts.join(", ")
    }

    /// Applies `change` to the table, then wakes every pump so it re-checks its link.
    fn update(&self, change: impl FnOnce(&mut Table)) {
        change(&mut self.shared.table.lock());
        self.shared
            .changed
            .send_modify(|generation| *generation += 1);
    }

    /// Whether `link` is cut, and its delay.
    fn state(&self, link: Link) -> (bool, Duration) {
        let t = self.shared.table.lock();
        let delay = t.delays.get(&link).copied().unwrap_or_default();
        (t.cuts.contains(&link), delay)
    }

    /// A receiver that wakes on every change of the table.
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    /// Records `bytes` delivered over `link`.
    fn count(&self, link: Link, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let mut traffic = self.shared.traffic.lock();
        let total = traffic.entry(link).or_default();
        *total = total.saturating_add(bytes);
    }
}

impl fmt::Debug for LinkFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The source IP node `node` opens its outbound connections from: `127.0.0.(10+node)`.
///
/// # Panics
/// If `node` > 245 (the address would leave 127.0.0.0/24): a configuration error.
pub fn node_source_ip(node: u32) -> IpAddr {
    let octet = node
        .checked_add(BASE_OCTET)
        .and_then(|o| u8::try_from(o).ok())
        .unwrap_or_else(|| panic!("node id {node} too large for a 127.0.0.x source IP"));
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, octet))
}

/// The node whose source IP is `ip` (inverse of [`node_source_ip`]); `None` for any other
/// address, e.g. a CLI connecting from 127.0.0.1. IPv4-mapped IPv6 addresses are accepted.
pub fn node_of_source_ip(ip: IpAddr) -> Option<u32> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => match v4.octets() {
            [127, 0, 0, last] => u32::from(last).checked_sub(BASE_OCTET),
            _ => None,
        },
        IpAddr::V6(_) => None,
    }
}

/// A running proxy in front of node `dst`. Dropping it stops it too (without waiting).
pub struct Proxy {
    /// The address it listens on (the bound one: a port 0 request is resolved).
    pub listen: SocketAddr,
    /// The node it fronts.
    pub dst: u32,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// The address clients connect to (the actual port when started with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Closes the listener and every connection, and waits until they are closed.
    pub async fn stop(self) {
        let Proxy {
            stop,
            task,
            listen,
            dst,
        } = self;
        // An error only means the accept loop already ended.
        let _ = stop.send(());
        if let Err(e) = task.await {
            warn!(%listen, dst, "proxy task failed: {e}");
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.listen)
            .field("dst", &self.dst)
            .finish_non_exhaustive()
    }
}

/// Binds `listen` (port 0 = free) and forwards every connection to `target`, applying
/// `faults` for links into/out of node `dst`. `src_of` maps a peer IP to a node id.
pub async fn start(
    listen: SocketAddr,
    target: SocketAddr,
    dst: u32,
    faults: LinkFaults,
    src_of: fn(IpAddr) -> Option<u32>,
) -> io::Result<Proxy> {
    let listener = TcpListener::bind(listen).await?;
    let listen = listener.local_addr()?;
    info!(%listen, %target, dst, "proxy started");
    let (stop, stopped) = oneshot::channel();
    let route = Route {
        target,
        dst,
        faults,
        src_of,
    };
    let task = tokio::spawn(accept_loop(listener, route, stopped));
    Ok(Proxy {
        listen,
        dst,
        stop,
        task,
    })
}

/// What every connection of one proxy needs.
#[derive(Clone)]
struct Route {
    target: SocketAddr,
    dst: u32,
    faults: LinkFaults,
    src_of: fn(IpAddr) -> Option<u32>,
}

/// Accepts connections until `stopped` fires (or its sender is dropped), each served by
/// its own task so a slow target connect never blocks accepting; then closes them all.
async fn accept_loop(listener: TcpListener, route: Route, mut stopped: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    conns.spawn(serve(client, peer, route.clone()));
                }
                Err(e) => {
                    warn!(dst = route.dst, "proxy accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    warn!(dst = route.dst, "proxy connection task failed: {e}");
                }
            }
        }
    }
    drop(listener);
    // Aborting a connection task drops its sockets, which closes them.
    conns.shutdown().await;
    debug!(dst = route.dst, "proxy stopped");
}

/// Connects to the target and pumps both directions until both ended (each side closed
/// its sending half) or one failed (then both sockets are closed).
async fn serve(client: TcpStream, peer: SocketAddr, route: Route) {
    let src = (route.src_of)(peer.ip());
    let upstream = match TcpStream::connect(route.target).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // Dropping `client` closes it: the node sees the target as down.
            debug!(%peer, dst = route.dst, "proxy cannot reach {}: {e}", route.target);
            return;
        }
    };
    // Small gRPC frames must not wait for Nagle; failing to set it is harmless.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let forward = src.map(|s| Link::new(s, route.dst));
    let backward = src.map(|s| Link::new(route.dst, s));
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let result = tokio::try_join!(
        pump(client_read, upstream_write, forward, route.faults.clone()),
        pump(upstream_read, client_write, backward, route.faults),
    );
    if let Err(e) = result {
        debug!(%peer, dst = route.dst, "proxied connection ended: {e}");
    }
}

/// Bytes read from one side, waiting to be written to the other.
struct Chunk {
    arrived: Instant,
    data: Vec<u8>,
}

/// Moves bytes from `from` to `to` under the faults of `link` (`None`: external, never
/// faulted). The reader and writer run concurrently so that a delay is a latency (chunks
/// keep being read while earlier ones wait) and a cut holds already-read bytes.
async fn pump(
    from: OwnedReadHalf,
    to: OwnedWriteHalf,
    link: Option<Link>,
    faults: LinkFaults,
) -> io::Result<()> {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    tokio::try_join!(
        read_side(from, link, faults.clone(), tx),
        write_side(to, link, faults, rx),
    )?;
    Ok(())
}

/// Reads chunks while `link` is not cut; ends on EOF, dropping `tx` so the writer
/// forwards the half-close after the last chunk.
async fn read_side(
    mut from: OwnedReadHalf,
    link: Option<Link>,
    faults: LinkFaults,
    tx: mpsc::Sender<Chunk>,
) -> io::Result<()> {
    let mut changes = faults.subscribe();
    let mut buf = vec![0; CHUNK];
    loop {
        wait_open(&faults, link, &mut changes).await;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let chunk = Chunk {
            arrived: Instant::now(),
            data: buf[..n].to_vec(),
        };
        if tx.send(chunk).await.is_err() {
            // The writer is gone; `try_join` reports its error.
            return Ok(());
        }
    }
}

/// Writes chunks in order, each once `link` is not cut and its delay has passed since it
/// arrived; then shuts down the write half (propagating the half-close).
async fn write_side(
    mut to: OwnedWriteHalf,
    link: Option<Link>,
    faults: LinkFaults,
    mut rx: mpsc::Receiver<Chunk>,
) -> io::Result<()> {
    let mut changes = faults.subscribe();
    while let Some(chunk) = rx.recv().await {
        wait_deliverable(&faults, link, chunk.arrived, &mut changes).await;
        to.write_all(&chunk.data).await?;
        if let Some(link) = link {
            faults.count(link, chunk.data.len());
        }
    }
    // If the peer is already gone the other direction notices; nothing to deliver here.
    if let Err(e) = to.shutdown().await {
        debug!("proxy half-close failed: {e}");
    }
    Ok(())
}

/// Returns once `link` is not cut (at once for external connections), waking on table
/// changes rather than polling.
async fn wait_open(faults: &LinkFaults, link: Option<Link>, changes: &mut watch::Receiver<u64>) {
    let Some(link) = link else { return };
    loop {
        // Mark the current generation seen before reading the table, so a change made
        // after the read wakes `changed()` below.
        changes.borrow_and_update();
        if !faults.state(link).0 {
            return;
        }
        if changes.changed().await.is_err() {
            return; // Cannot happen: `faults` keeps the sender alive.
        }
    }
}

/// Returns once a chunk that arrived at `arrived` may be written: `link` is not cut and
/// its current delay has passed. Re-evaluated on every table change, so a heal releases
/// held chunks at once and a new delay applies to chunks already waiting.
async fn wait_deliverable(
    faults: &LinkFaults,
    link: Option<Link>,
    arrived: Instant,
    changes: &mut watch::Receiver<u64>,
) {
    let Some(link) = link else { return };
    loop {
        changes.borrow_and_update();
        let (cut, delay) = faults.state(link);
        if !cut {
            let due = arrived + delay;
            if Instant::now() >= due {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(due) => continue,
                changed = changes.changed() => if changed.is_err() { return },
            }
        } else if changes.changed().await.is_err() {
            return; // Cannot happen: `faults` keeps the sender alive.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpSocket;
    use tokio::time::timeout;

    /// Generous bound for bytes that must arrive.
    const ARRIVE: Duration = Duration::from_secs(1);
    /// How long bytes that must not arrive are watched for.
    const SILENT: Duration = Duration::from_millis(300);

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// An echo server on 127.0.0.1; every byte it receives is also reported on the
    /// channel. It half-closes when its client does.
    async fn echo_server() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0; 4096];
                    while let Ok(n @ 1..) = conn.read(&mut buf).await {
                        let _ = tx.send(buf[..n].to_vec());
                        if conn.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    let _ = conn.shutdown().await;
                });
            }
        });
        (addr, rx)
    }

    /// An echo server behind a proxy fronting node `dst`.
    async fn proxied_echo(
        dst: u32,
        faults: &LinkFaults,
    ) -> (Proxy, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (echo, received) = echo_server().await;
        let proxy = start(
            (LOCAL, 0).into(),
            echo,
            dst,
            faults.clone(),
            node_of_source_ip,
        )
        .await
        .unwrap();
        (proxy, received)
    }

    /// Connects to `addr` from `ip`, as node `node_of_source_ip(ip)` would.
    async fn connect_from(ip: IpAddr, addr: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind((ip, 0).into()).unwrap();
        timeout(ARRIVE, socket.connect(addr))
            .await
            .unwrap()
            .unwrap()
    }

    async fn write(conn: &mut TcpStream, data: &[u8]) {
        timeout(ARRIVE, conn.write_all(data))
            .await
            .unwrap()
            .unwrap();
    }

    /// Reads exactly `n` bytes, failing the test if they do not come within [`ARRIVE`].
    async fn read_n(conn: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        timeout(ARRIVE, conn.read_exact(&mut buf))
            .await
            .expect("bytes did not arrive")
            .unwrap();
        buf
    }

    /// Writes `data` and expects it echoed.
    async fn roundtrip(conn: &mut TcpStream, data: &[u8]) {
        write(conn, data).await;
        assert_eq!(read_n(conn, data.len()).await, data);
    }

    /// Asserts nothing can be read for [`SILENT`] (a cancelled `read` consumes nothing).
    async fn assert_silent(conn: &mut TcpStream) {
        let mut byte = [0; 1];
        let read = timeout(SILENT, conn.read(&mut byte)).await;
        assert!(read.is_err(), "expected a stall, read {read:?}");
    }

    /// Collects what the echo server received until it is `n` bytes long.
    async fn received_n(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(
                timeout(ARRIVE, rx.recv())
                    .await
                    .expect("server got nothing")
                    .unwrap(),
            );
        }
        got
    }

    #[test]
    fn source_ips_map_to_nodes_and_back() {
        for node in [0, 1, 2, 3, 245] {
            assert_eq!(node_of_source_ip(node_source_ip(node)), Some(node));
        }
        assert_eq!(node_source_ip(1), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)));
        assert_eq!(node_of_source_ip(LOCAL), None);
        assert_eq!(node_of_source_ip("10.0.0.11".parse().unwrap()), None);
        assert_eq!(
            node_of_source_ip("::ffff:127.0.0.12".parse().unwrap()),
            Some(2)
        );
        assert_eq!(node_of_source_ip("::1".parse().unwrap()), None);
    }

    #[test]
    fn describe_lists_faults() {
        let faults = LinkFaults::default();
        assert_eq!(faults.describe(), "healthy");
        faults.isolate(2, &[1, 2, 3]);
        faults.delay(1, 3, Duration::from_millis(200));
        assert_eq!(
            faults.describe(),
            "cut [1->2, 2->1, 2->3, 3->2]; delay [1->3 +200ms]"
        );
        assert!(faults.is_cut(3, 2) && !faults.is_cut(1, 3));
        faults.heal();
        assert!(faults.is_healthy());
    }

    #[tokio::test]
    async fn cut_stalls_forward_and_heal_resumes_in_order() {
        let faults = LinkFaults::default();
        let (proxy, mut received) = proxied_echo(2, &faults).await;
        let mut conn = connect_from(node_source_ip(1), proxy.local_addr()).await;
        roundtrip(&mut conn, b"hello").await;
        assert_eq!(received_n(&mut received, 5).await, b"hello");

        faults.cut(1, 2);
        write(&mut conn, b"abc").await;
        write(&mut conn, b"def").await;
        assert_silent(&mut conn).await;
        assert!(
            received.try_recv().is_err(),
            "the target got bytes over a cut link"
        );

        faults.heal();
        assert_eq!(read_n(&mut conn, 6).await, b"abcdef");
        assert!(faults.traffic().contains(&(Link::new(1, 2), 11)));
        assert!(faults.traffic().contains(&(Link::new(2, 1), 11)));
        proxy.stop().await;
    }

    #[tokio::test]
    async fn cut_stalls_only_its_direction() {
        let faults = LinkFaults::default();
        // Node 1 connects to node 2: 2->1 is the reply direction.
        let (proxy_2, mut received_2) = proxied_echo(2, &faults).await;
        let mut conn_1_to_2 = connect_from(node_source_ip(1), proxy_2.local_addr()).await;
        // Node 2 connects to node 1: 2->1 is the request direction.
        let (proxy_1, mut received_1) = proxied_echo(1, &faults).await;
        let mut conn_2_to_1 = connect_from(node_source_ip(2), proxy_1.local_addr()).await;

        faults.cut(2, 1);
        write(&mut conn_1_to_2, b"ping").await;
        assert_eq!(received_n(&mut received_2, 4).await, b"ping");
        write(&mut conn_2_to_1, b"pong").await;
        tokio::join!(
            assert_silent(&mut conn_1_to_2),
            assert_silent(&mut conn_2_to_1)
        );
        assert!(
            received_1.try_recv().is_err(),
            "node 1 got bytes over a cut link"
        );

        faults.heal();
        assert_eq!(read_n(&mut conn_1_to_2, 4).await, b"ping");
        assert_eq!(read_n(&mut conn_2_to_1, 4).await, b"pong");
        proxy_1.stop().await;
        proxy_2.stop().await;
    }

    #[tokio::test]
    async fn new_connections_on_a_cut_link_are_accepted_and_stalled() {
        let faults = LinkFaults::default();
        let (proxy, _received) = proxied_echo(2, &faults).await;
        faults.cut(1, 2);
        let mut conn = connect_from(node_source_ip(1), proxy.local_addr()).await;
        write(&mut conn, b"early").await;
        assert_silent(&mut conn).await;
        faults.heal();
        assert_eq!(read_n(&mut conn, 5).await, b"early");
        proxy.stop().await;
    }

    #[tokio::test]
    async fn isolate_stalls_every_node_but_not_external_clients() {
        let faults = LinkFaults::default();
        let (proxy, _received) = proxied_echo(2, &faults).await;
        let mut from_1 = connect_from(node_source_ip(1), proxy.local_addr()).await;
        let mut from_3 = connect_from(node_source_ip(3), proxy.local_addr()).await;
        let mut external = connect_from(LOCAL, proxy.local_addr()).await;

        faults.isolate(2, &[1, 2, 3]);
        faults.delay(1, 2, Duration::from_secs(10));
        write(&mut from_1, b"one").await;
        write(&mut from_3, b"three").await;
        roundtrip(&mut external, b"cli").await;
        tokio::join!(assert_silent(&mut from_1), assert_silent(&mut from_3));

        faults.heal();
        assert_eq!(read_n(&mut from_1, 3).await, b"one");
        assert_eq!(read_n(&mut from_3, 5).await, b"three");
        proxy.stop().await;
    }

    #[tokio::test]
    async fn delay_holds_chunks_in_order() {
        let faults = LinkFaults::default();
        let (proxy, _received) = proxied_echo(2, &faults).await;
        let mut conn = connect_from(node_source_ip(1), proxy.local_addr()).await;
        let delay = Duration::from_millis(200);
        faults.delay(1, 2, delay);

        let started = Instant::now();
        roundtrip(&mut conn, b"x").await;
        assert!(
            started.elapsed() >= delay,
            "reply after {:?}",
            started.elapsed()
        );

        // Many small writes: delivered in order, and the delay is a latency, not a
        // per-chunk cost (100 writes do not take 100 delays).
        let started = Instant::now();
        let mut sent = Vec::new();
        for i in 0..100u32 {
            write(&mut conn, &i.to_be_bytes()).await;
            sent.extend(i.to_be_bytes());
        }
        assert_eq!(read_n(&mut conn, sent.len()).await, sent);
        let elapsed = started.elapsed();
        assert!(elapsed >= delay && elapsed < 5 * delay, "took {elapsed:?}");
        proxy.stop().await;
    }

    #[tokio::test]
    async fn heal_releases_delayed_chunks_at_once() {
        let faults = LinkFaults::default();
        let (proxy, _received) = proxied_echo(2, &faults).await;
        let mut conn = connect_from(node_source_ip(1), proxy.local_addr()).await;
        faults.delay(2, 1, Duration::from_secs(30));
        write(&mut conn, b"slow").await;
        assert_silent(&mut conn).await;
        faults.heal();
        assert_eq!(read_n(&mut conn, 4).await, b"slow");
        proxy.stop().await;
    }

    #[tokio::test]
    async fn half_close_propagates() {
        let faults = LinkFaults::default();
        let (proxy, _received) = proxied_echo(2, &faults).await;
        let mut conn = connect_from(node_source_ip(1), proxy.local_addr()).await;
        write(&mut conn, b"bye").await;
        conn.shutdown().await.unwrap();
        let mut rest = Vec::new();
        timeout(ARRIVE, conn.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest, b"bye");
        proxy.stop().await;
    }

    #[tokio::test]
    async fn stop_closes_connections_and_listener() {
        let faults = LinkFaults::default();
        let (proxy, _received) = proxied_echo(2, &faults).await;
        let addr = proxy.local_addr();
        let mut conn = connect_from(node_source_ip(1), addr).await;
        let mut stalled = connect_from(node_source_ip(3), addr).await;
        roundtrip(&mut conn, b"hi").await;
        faults.cut(3, 2);

        proxy.stop().await;
        for c in [&mut conn, &mut stalled] {
            let mut buf = [0; 1];
            let read = timeout(ARRIVE, c.read(&mut buf))
                .await
                .expect("connection left open");
            assert!(matches!(read, Ok(0) | Err(_)), "read {read:?} after stop");
        }
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "listener still open"
        );
    }
}
