//! Where the cluster under test runs and how faults reach it: local processes behind the
//! harness's proxies, the compose cluster in containers, or (for `spate verify`) a cluster
//! someone else runs, which the harness only reads and writes.
pub mod docker;
pub mod process;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

pub use docker::DockerCluster;
pub use process::ProcessCluster;

/// A cluster the harness runs no process of: workload and checks only.
pub struct External {
    /// Kafka bootstrap list.
    pub bootstrap: String,
}

/// The cluster under test.
pub enum Backend {
    /// Local processes.
    Process(ProcessCluster),
    /// The compose cluster.
    Docker(DockerCluster),
    /// Someone else's cluster (no faults).
    External(External),
}

/// What a fault needs from a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// SIGKILL / SIGTERM / restart a node.
    Kill,
    /// Freeze and thaw a node.
    Pause,
    /// Cut a node off from its peers.
    Isolate,
    /// Delay a node's links.
    Slow,
    /// Flip bytes in a stopped node's log.
    Corrupt,
    /// Cut a node's power (unsynced data lost) or fail its disk (simulated storage).
    StorageFaults,
}

impl Backend {
    /// `process`, `docker` or `external`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Process(_) => "process",
            Backend::Docker(_) => "docker",
            Backend::External(_) => "external",
        }
    }

    /// Whether faults of this kind can be injected.
    pub fn can(&self, what: Capability) -> bool {
        match self {
            Backend::Process(c) => what != Capability::StorageFaults || c.simulated_storage(),
            Backend::Docker(_) => !matches!(what, Capability::Slow | Capability::StorageFaults),
            Backend::External(_) => false,
        }
    }

    /// Node ids (empty for an external cluster).
    pub fn node_ids(&self) -> Vec<u32> {
        match self {
            Backend::Process(c) => c.node_ids(),
            Backend::Docker(c) => c.node_ids(),
            Backend::External(_) => Vec::new(),
        }
    }

    /// Kafka bootstrap list.
    pub fn bootstrap(&self) -> String {
        match self {
            Backend::Process(c) => c.bootstrap(),
            Backend::Docker(c) => c.bootstrap(),
            Backend::External(c) => c.bootstrap.clone(),
        }
    }

    /// Kafka address of each node the harness knows.
    pub fn kafka_addrs(&self) -> Vec<(u32, String)> {
        match self {
            Backend::Process(c) => c.kafka_addrs(),
            Backend::Docker(c) => c.kafka_addrs(),
            Backend::External(c) => c
                .bootstrap
                .split(',')
                .enumerate()
                .map(|(i, a)| (i as u32, a.trim().to_string()))
                .collect(),
        }
    }

    fn unsupported(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!("the {} backend cannot {what}", self.name())
    }

    /// SIGKILL (or `docker kill`).
    pub async fn kill(&self, id: u32) -> anyhow::Result<()> {
        match self {
            Backend::Process(c) => c.kill(id).await,
            Backend::Docker(c) => c.kill(id).await,
            Backend::External(_) => Err(self.unsupported("kill nodes")),
        }
    }

    /// Starts a stopped node.
    pub async fn start_node(&self, id: u32) -> anyhow::Result<()> {
        match self {
            Backend::Process(c) => c.start_node(id).await,
            Backend::Docker(c) => c.start_node(id).await,
            Backend::External(_) => Err(self.unsupported("start nodes")),
        }
    }

    /// SIGTERM: controlled shutdown, bounded by `timeout`.
    pub async fn stop(&self, id: u32, timeout: Duration) -> anyhow::Result<()> {
        match self {
            Backend::Process(c) => c.stop(id, timeout).await,
            Backend::Docker(c) => c.stop(id, timeout).await,
            Backend::External(_) => Err(self.unsupported("stop nodes")),
        }
    }

    /// Freezes a node.
    pub async fn pause(&self, id: u32) -> anyhow::Result<()> {
        match self {
            Backend::Process(c) => c.pause(id).await,
            Backend::Docker(c) => c.pause(id).await,
            Backend::External(_) => Err(self.unsupported("pause nodes")),
        }
    }

    /// Thaws a node.
    pub async fn resume(&self, id: u32) -> anyhow::Result<()> {
        match self {
            Backend::Process(c) => c.resume(id).await,
            Backend::Docker(c) => c.resume(id).await,
            Backend::External(_) => Err(self.unsupported("resume nodes")),
        }
    }

    /// Cuts a node off from its peers and the controllers.
    pub async fn isolate(&self, id: u32) -> anyhow::Result<()> {
        match self {
            Backend::Process(c) => {
                c.isolate(id);
                Ok(())
            }
            Backend::Docker(c) => c.isolate(id).await,
            Backend::External(_) => Err(self.unsupported("partition nodes")),
        }
    }

    /// Delays every link of a node.
    pub async fn slow(&self, id: u32, delay: Duration) -> anyhow::Result<()> {
        match self {
            Backend::Process(c) => {
                c.slow(id, delay);
                Ok(())
            }
            _ => Err(self.unsupported("delay links (no tc in the image)")),
        }
    }

    /// Removes every link fault.
    pub async fn heal(&self) -> anyhow::Result<()> {
        match self {
            Backend::Process(c) => {
                c.heal();
                Ok(())
            }
            Backend::Docker(c) => c.heal().await,
            Backend::External(_) => Ok(()),
        }
    }

    /// Flips bytes in the newest segment of `topic`-`partition` on a stopped node.
    pub async fn corrupt(
        &self,
        id: u32,
        topic: &str,
        partition: i32,
        seed: u64,
    ) -> anyhow::Result<String> {
        match self {
            Backend::Process(c) => {
                let dir = c
                    .data_dir(id)
                    .context("no such node")?
                    .join("logs")
                    .join(format!("{topic}-{partition}"));
                flip_bytes_in_newest_segment(&dir, seed)
            }
            Backend::Docker(c) => c.corrupt(id, topic, partition, seed).await,
            Backend::External(_) => Err(self.unsupported("corrupt logs")),
        }
    }

    /// Cuts a node's power (process backend on simulated storage).
    pub async fn power_cut(&self, id: u32, seed: u64) -> anyhow::Result<String> {
        match self {
            Backend::Process(c) if c.simulated_storage() => c.power_cut(id, seed).await,
            _ => Err(self.unsupported("cut power (needs simulated storage)")),
        }
    }

    /// Fails a node's writes or fsyncs under a path of its data directory with EIO.
    pub async fn disk_error(&self, id: u32, under: &str, on: &str) -> anyhow::Result<()> {
        match self {
            Backend::Process(c) if c.simulated_storage() => c.disk_error(id, under, on).await,
            _ => Err(self.unsupported("fail disks (needs simulated storage)")),
        }
    }

    /// Removes a node's injected disk errors.
    pub async fn clear_disk_errors(&self, id: u32) -> anyhow::Result<()> {
        match self {
            Backend::Process(c) if c.simulated_storage() => c.clear_disk_errors(id).await,
            _ => Err(self.unsupported("fail disks (needs simulated storage)")),
        }
    }

    /// The Raft leader of the controller quorum, if one answers.
    pub async fn active_controller(&self) -> Option<u32> {
        match self {
            Backend::Process(c) => c.active_controller().await,
            Backend::Docker(c) => c.active_controller().await,
            Backend::External(_) => None,
        }
    }

    /// The end of each node's log, for the report.
    pub async fn log_tails(&self, lines: usize) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for id in self.node_ids() {
            let tail = match self {
                Backend::Process(c) => c.log_tail(id, lines),
                Backend::Docker(c) => c.log_tail(id, lines).await,
                Backend::External(_) => String::new(),
            };
            out.push((id, tail));
        }
        out
    }

    /// Stops everything the harness started.
    pub async fn teardown(self) {
        match self {
            Backend::Process(c) => c.teardown().await,
            Backend::Docker(c) => c.teardown().await,
            Backend::External(_) => {}
        }
    }
}

/// Overwrites 16 bytes in the middle of the newest non-empty `.log` segment of a partition
/// directory with their complement; returns what it did. The node must not be running.
pub fn flip_bytes_in_newest_segment(dir: &Path, seed: u64) -> anyhow::Result<String> {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 64))
        .collect();
    segments.sort();
    let Some(segment) = segments.pop() else {
        bail!("{} has no segment with data", dir.display());
    };
    let mut bytes = std::fs::read(&segment)?;
    let len = bytes.len();
    // Somewhere in the middle half, chosen by the seed, so the damage hits record data.
    let at = len / 4 + (seed as usize % (len / 2).max(1));
    let end = (at + 16).min(len);
    for b in &mut bytes[at..end] {
        *b = !*b;
    }
    std::fs::write(&segment, &bytes)?;
    Ok(format!(
        "flipped bytes {at}..{end} of {} ({len} bytes)",
        segment.display()
    ))
}
