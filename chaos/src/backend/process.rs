//! The `process` backend: three `spate server` processes on 127.0.0.1, each a controller
//! voter and a broker. Faults: SIGKILL, SIGTERM, SIGSTOP/SIGCONT, and link faults through
//! the harness's proxies in front of every node's controller and replication ports (node
//! N's outbound connections start from 127.0.0.(10+N), so a proxy knows who is calling).
//! Kafka clients reach the brokers directly: an isolated leader is cut off from its peers
//! and the controllers, not from clients, which is the dangerous case for acknowledged
//! writes.
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use parking_lot::Mutex;
use tokio::process::{Child, Command};

use crate::proxy::{self, LinkFaults, Proxy};

/// Ports and paths of one node.
#[derive(Debug, Clone)]
struct NodeSpec {
    id: u32,
    kafka: SocketAddr,
    controller: SocketAddr,
    replication: SocketAddr,
    admin: SocketAddr,
    data: PathBuf,
    log: PathBuf,
}

/// A running local cluster.
pub struct ProcessCluster {
    bin: PathBuf,
    nodes: Vec<NodeSpec>,
    voters: String,
    faults: LinkFaults,
    proxies: Vec<Proxy>,
    /// Replication proxy address per node (what peers fetch from).
    replication_proxy: BTreeMap<u32, SocketAddr>,
    children: Mutex<BTreeMap<u32, Child>>,
    /// Nodes keep their data on simulated storage (a `fault-injection` build): power
    /// cuts and disk errors can be injected through their admin ports.
    simulated_storage: bool,
}

/// A free address, held (the listener stays in `reserved`) until the nodes start, so the
/// proxies bound meanwhile on port 0 cannot be handed the same port.
fn free_addr(reserved: &mut Vec<StdListener>) -> anyhow::Result<SocketAddr> {
    let l = StdListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    reserved.push(l);
    Ok(addr)
}

impl ProcessCluster {
    /// Starts nodes 1-3 with data under `dir`, using the `spate` binary at `bin`; with
    /// `simulated_storage`, `bin` must be a `fault-injection` build.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        simulated_storage: bool,
    ) -> anyhow::Result<ProcessCluster> {
        anyhow::ensure!(bin.exists(), "no spate binary at {}", bin.display());
        std::fs::create_dir_all(dir)?;
        let faults = LinkFaults::default();
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
        let mut voters = Vec::new();
        let mut replication_proxy = BTreeMap::new();
        let mut reserved = Vec::new();
        for id in 1..=3u32 {
            let spec = NodeSpec {
                id,
                kafka: free_addr(&mut reserved)?,
                controller: free_addr(&mut reserved)?,
                replication: free_addr(&mut reserved)?,
                admin: free_addr(&mut reserved)?,
                data: dir.join(format!("node{id}")),
                log: dir.join(format!("node{id}.log")),
            };
            let any: SocketAddr = "127.0.0.1:0".parse()?;
            let cp = proxy::start(
                any,
                spec.controller,
                id,
                faults.clone(),
                proxy::node_of_source_ip,
            )
            .await?;
            let rp = proxy::start(
                any,
                spec.replication,
                id,
                faults.clone(),
                proxy::node_of_source_ip,
            )
            .await?;
            voters.push(format!("{id}@{}", cp.local_addr()));
            replication_proxy.insert(id, rp.local_addr());
            proxies.push(cp);
            proxies.push(rp);
            nodes.push(spec);
        }
        let cluster = ProcessCluster {
            bin: bin.to_path_buf(),
            nodes,
            voters: voters.join(","),
            faults,
            proxies,
            replication_proxy,
            children: Mutex::new(BTreeMap::new()),
            simulated_storage,
        };
        drop(reserved);
        for id in cluster.node_ids() {
            cluster.start_node(id).await?;
        }
        Ok(cluster)
    }

    /// Node ids.
    pub fn node_ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn spec(&self, id: u32) -> anyhow::Result<&NodeSpec> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    /// Kafka bootstrap list.
    pub fn bootstrap(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(|n| n.kafka.to_string()).collect();
        addrs.join(",")
    }

    /// Kafka address of each node.
    pub fn kafka_addrs(&self) -> Vec<(u32, String)> {
        self.nodes
            .iter()
            .map(|n| (n.id, n.kafka.to_string()))
            .collect()
    }

    /// Admin HTTP address of a node.
    pub fn admin_addr(&self, id: u32) -> Option<String> {
        self.spec(id).ok().map(|n| n.admin.to_string())
    }

    /// The Raft leader of the controller quorum, asked of any node's admin port.
    pub async fn active_controller(&self) -> Option<u32> {
        for n in &self.nodes {
            let got = tokio::time::timeout(
                Duration::from_secs(2),
                spate_client::http::get(&n.admin.to_string(), "/v1/cluster"),
            )
            .await;
            let Ok(Ok(response)) = got else { continue };
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&response.body) else {
                continue;
            };
            if let Some(id) = json["controller"]["leader_id"].as_u64() {
                return Some(id as u32);
            }
        }
        None
    }

    /// Whether the node's process runs (it may be paused).
    pub fn is_running(&self, id: u32) -> bool {
        self.children
            .lock()
            .get_mut(&id)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts node `id` (no-op if it runs).
    pub async fn start_node(&self, id: u32) -> anyhow::Result<()> {
        if self.is_running(id) {
            return Ok(());
        }
        let n = self.spec(id)?.clone();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        let replication_advertised = self.replication_proxy[&id];
        let mut command = Command::new(&self.bin);
        command.arg("server");
        if self.simulated_storage {
            command.arg("--simulated-storage");
        }
        let child = command
            .args(["--node-id", &id.to_string()])
            .args(["--listeners", &format!("PLAINTEXT://{}", n.kafka)])
            .args(["--controller-listener", &n.controller.to_string()])
            .args(["--replication-listener", &n.replication.to_string()])
            .args([
                "--replication-advertised-listener",
                &replication_advertised.to_string(),
            ])
            .args(["--admin-listener", &n.admin.to_string()])
            .args(["--controller-quorum-voters", &self.voters])
            .args(["--data-dir", &n.data.display().to_string()])
            .args([
                "--outbound-source-ip",
                &proxy::node_source_ip(id).to_string(),
            ])
            .args(["--default-replication-factor", "3"])
            .args(["--leader-imbalance-check-interval-seconds", "10"])
            .env("RUST_LOG", "info,openraft=warn,sled=warn")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.children.lock().insert(id, child);
        Ok(())
    }

    fn pid(&self, id: u32) -> anyhow::Result<u32> {
        self.children
            .lock()
            .get(&id)
            .and_then(Child::id)
            .with_context(|| format!("node {id} is not running"))
    }

    /// Sends a signal with the `kill` command (no unsafe code here).
    async fn signal(&self, id: u32, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid(id)?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .await?;
        if !status.success() {
            bail!("kill -{signal} {pid} (node {id}) failed");
        }
        Ok(())
    }

    /// SIGKILL and reap.
    pub async fn kill(&self, id: u32) -> anyhow::Result<()> {
        let child = self.children.lock().remove(&id);
        if let Some(mut child) = child {
            // A paused process dies on SIGKILL too.
            child.start_kill()?;
            let _ = child.wait().await;
        }
        Ok(())
    }

    /// SIGTERM (controlled shutdown) and wait up to `timeout`, then SIGKILL.
    pub async fn stop(&self, id: u32, timeout: Duration) -> anyhow::Result<()> {
        if !self.is_running(id) {
            return Ok(());
        }
        self.signal(id, "TERM").await?;
        let child = self.children.lock().remove(&id);
        if let Some(mut child) = child {
            if tokio::time::timeout(timeout, child.wait()).await.is_err() {
                tracing::warn!(node = id, "did not stop after SIGTERM; killing it");
                child.start_kill()?;
                let _ = child.wait().await;
            }
        }
        Ok(())
    }

    /// Whether nodes run on simulated storage (power cuts and disk errors possible).
    pub fn simulated_storage(&self) -> bool {
        self.simulated_storage
    }

    async fn admin_request(&self, id: u32, method: &str, path: &str) -> anyhow::Result<String> {
        let addr = self.spec(id)?.admin.to_string();
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            spate_client::http::request(&addr, method, path),
        )
        .await
        .with_context(|| format!("node {id}: {method} {path} timed out"))??;
        if response.status != 200 {
            bail!(
                "node {id}: {method} {path} answered {}: {}",
                response.status,
                response.body
            );
        }
        Ok(response.body)
    }

    /// Cuts node `id`'s power: its storage drops what was not durable (chosen by `seed`)
    /// and the process aborts; returns what the node reported undoing.
    pub async fn power_cut(&self, id: u32, seed: u64) -> anyhow::Result<String> {
        let report = self
            .admin_request(id, "POST", &format!("/v1/faults/power-cut?seed={seed}"))
            .await?;
        let child = self.children.lock().remove(&id);
        if let Some(mut child) = child {
            // It aborts on its own; SIGKILL only if it has not within the bound.
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                tracing::warn!(node = id, "still running after its power cut; killing it");
                child.start_kill()?;
                let _ = child.wait().await;
            }
        }
        Ok(report)
    }

    /// Fails `on` (`writes` or `syncs`) under `under` (relative to the node's data
    /// directory) with EIO.
    pub async fn disk_error(&self, id: u32, under: &str, on: &str) -> anyhow::Result<()> {
        self.admin_request(
            id,
            "POST",
            &format!("/v1/faults/disk-error?under={under}&on={on}"),
        )
        .await
        .map(|_| ())
    }

    /// Removes node `id`'s injected disk errors.
    pub async fn clear_disk_errors(&self, id: u32) -> anyhow::Result<()> {
        self.admin_request(id, "DELETE", "/v1/faults/disk-error")
            .await
            .map(|_| ())
    }

    /// SIGSTOP.
    pub async fn pause(&self, id: u32) -> anyhow::Result<()> {
        self.signal(id, "STOP").await
    }

    /// SIGCONT.
    pub async fn resume(&self, id: u32) -> anyhow::Result<()> {
        self.signal(id, "CONT").await
    }

    /// Cuts node `id` off from the other nodes (both directions, controller and
    /// replication traffic).
    pub fn isolate(&self, id: u32) {
        self.faults.isolate(id, &self.node_ids());
    }

    /// Delays all traffic between `id` and the other nodes.
    pub fn slow(&self, id: u32, delay: Duration) {
        for other in self.node_ids().into_iter().filter(|o| *o != id) {
            self.faults.delay(id, other, delay);
            self.faults.delay(other, id, delay);
        }
    }

    /// Removes every link fault.
    pub fn heal(&self) {
        self.faults.heal();
    }

    /// The data directory of a node.
    pub fn data_dir(&self, id: u32) -> Option<PathBuf> {
        self.spec(id).ok().map(|n| n.data.clone())
    }

    /// The last lines of a node's log.
    pub fn log_tail(&self, id: u32, lines: usize) -> String {
        let Ok(n) = self.spec(id) else {
            return String::new();
        };
        let text = std::fs::read_to_string(&n.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills every node and stops the proxies.
    pub async fn teardown(self) {
        for id in self.node_ids() {
            let _ = self.kill(id).await;
        }
        for p in self.proxies {
            p.stop().await;
        }
    }
}
