//! `spate cluster info`: the controller quorum (leader, term, commit index, voters) and
//! every registered broker with its epoch and state, read from the controllers over gRPC
//! (Kafka clients cannot see broker epochs or fencing), then each live broker's log
//! directories (DescribeLogDirs on the Kafka port).
use anyhow::Context;
use spate_controller_client::ControllerClient;
use spate_metadata::ids::NodeId;
use spate_metadata::{MetadataImage, PartitionImage};

use super::init_logging;

/// Flags of `spate cluster`.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    cmd: ClusterCmd,
    /// Controller addresses, host:port[,host:port].
    #[arg(
        long,
        env = "SPATE_CONTROLLERS",
        default_value = "127.0.0.1:9093",
        global = true
    )]
    controllers: String,
    /// Kafka addresses to ask, host:port[,host:port].
    #[arg(
        long,
        env = "SPATE_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    bootstrap: String,
}

#[derive(clap::Subcommand, Debug)]
enum ClusterCmd {
    /// Quorum state, brokers (epoch, fenced or not, endpoint), partition health and each
    /// live broker's log directories (volume space, replica count and bytes).
    Info,
    /// Wait until every listed broker's Metadata answer shows at least N brokers (and,
    /// with --in-sync, every partition led and fully in sync).
    Wait {
        /// Brokers each of them must list.
        #[arg(long, default_value_t = 3)]
        brokers: usize,
        /// Also wait until every partition has a leader and its ISR holds every replica
        /// (what a rolling restart waits for before the next node).
        #[arg(long)]
        in_sync: bool,
        /// Give up (exit non-zero) after this long.
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
    },
}

/// Runs `spate cluster`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    init_logging();
    let addrs: Vec<String> = args
        .controllers
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    match args.cmd {
        ClusterCmd::Info => {
            let mut client =
                ControllerClient::connect(addrs.clone()).context("bad --controllers")?;
            info(&mut client, &addrs, &args.bootstrap).await
        }
        ClusterCmd::Wait {
            brokers,
            in_sync,
            timeout_ms,
        } => {
            wait(
                &args.bootstrap,
                brokers,
                in_sync,
                std::time::Duration::from_millis(timeout_ms),
            )
            .await
        }
    }
}

/// Polls each broker until its own metadata lists `want` brokers: the controller may
/// have unfenced a broker before every other broker has applied that change.
async fn wait(
    bootstrap: &str,
    want: usize,
    in_sync: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    for addr in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        loop {
            let mut config = spate_client::ClientConfig::new(addr.to_string());
            config.client_id = "spate-cli".to_string();
            let (seen, lagging) = match spate_client::Cluster::connect(config).await {
                Ok(cluster) => {
                    // `connect` loads brokers only; --in-sync needs every topic.
                    let metadata = match in_sync {
                        true => cluster.refresh(None).await.unwrap_or_default(),
                        false => cluster.metadata(),
                    };
                    let n = metadata.brokers.len();
                    let lagging = not_in_sync(&metadata);
                    cluster.close();
                    (n, lagging)
                }
                Err(_) => (0, Vec::new()),
            };
            if seen >= want && (!in_sync || lagging.is_empty()) {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "after {timeout:?}, broker {addr} lists {seen} brokers (want {want}){}",
                match lagging.is_empty() {
                    true => String::new(),
                    false => format!("; not in sync: {}", lagging.join(", ")),
                }
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    match in_sync {
        true => println!(
            "every broker of {bootstrap} lists at least {want} brokers and every partition in sync"
        ),
        false => println!("every broker of {bootstrap} lists at least {want} brokers"),
    }
    Ok(())
}

/// `topic-partition` of every partition without a leader or with an ISR smaller than
/// its replica set, in name order.
fn not_in_sync(metadata: &spate_client::metadata::Metadata) -> Vec<String> {
    let mut out: Vec<String> = metadata
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.leader.is_none() || p.isr.len() < p.replicas.len())
                .map(move |p| format!("{}-{}", t.name, p.partition))
        })
        .collect();
    out.sort();
    out
}

async fn info(
    client: &mut ControllerClient,
    addrs: &[String],
    bootstrap: &str,
) -> anyhow::Result<()> {
    let quorum = client
        .describe_quorum()
        .await
        .with_context(|| format!("cannot reach a controller at {}", addrs.join(",")))?;
    let image = fetch_image(client).await?;
    println!("Controller quorum");
    let leader = if quorum.has_leader {
        quorum.leader_id.to_string()
    } else {
        "none".to_string()
    };
    println!(
        "  leader: {leader}  term: {}  commit index: {}  applied: {}",
        quorum.term, quorum.commit_index, quorum.applied_index
    );
    for v in &quorum.voters {
        println!(
            "  voter {} at {} (matched index {})",
            v.node_id, v.address, v.matched_index
        );
    }
    println!("Brokers");
    for b in image.brokers().values() {
        let endpoint = b
            .endpoints
            .first()
            .map(|e| format!("{}:{}", e.host, e.port))
            .unwrap_or_default();
        let state = if b.fenced { "fenced" } else { "unfenced" };
        let rack = b
            .rack
            .as_deref()
            .map(|r| format!(" rack {r}"))
            .unwrap_or_default();
        println!(
            "  broker {} epoch {} {state} at {endpoint}{rack}",
            b.id.0, b.epoch.0
        );
    }
    let health = classify(image.topics().values().flat_map(|t| {
        t.partitions
            .iter()
            .map(move |(index, p)| (t.name.as_str(), *index, p))
    }));
    println!("Partitions");
    println!(
        "  {} topics, {} partitions, {} offline, {} under-replicated (ISR smaller than replicas)",
        image.topics().len(),
        health.total,
        health.offline.len(),
        health.under_replicated.len()
    );
    println!(
        "Under-replicated partitions: {}",
        health.under_replicated.len()
    );
    for p in &health.under_replicated {
        println!("  {p}");
    }
    println!("Offline partitions: {}", health.offline.len());
    for p in &health.offline {
        println!("  {p}");
    }
    println!("Metadata offset: {}", image.offset());
    log_dirs(&image, bootstrap).await;
    Ok(())
}

/// Each unfenced broker's log directories, asked on the Kafka port; a broker that does
/// not answer is reported, not fatal (the rest of `info` came from the controllers).
async fn log_dirs(image: &MetadataImage, bootstrap: &str) {
    println!("Log directories");
    let mut config = spate_client::ClientConfig::new(bootstrap.to_string());
    config.client_id = "spate-cli".to_string();
    let admin = match spate_client::admin::Admin::connect(config).await {
        Ok(a) => a,
        Err(e) => {
            println!("  not available: cannot reach {bootstrap}: {e}");
            return;
        }
    };
    for b in image.brokers().values().filter(|b| !b.fenced) {
        match admin
            .describe_log_dirs(spate_client::types::NodeId(b.id.0))
            .await
        {
            Ok(dirs) => {
                for d in dirs {
                    println!("  broker {} {}", b.id.0, log_dir_line(&d));
                }
            }
            Err(e) => println!("  broker {}: not available: {e}", b.id.0),
        }
    }
    admin.cluster().close();
}

/// One log directory as `cluster info` prints it.
fn log_dir_line(d: &spate_client::admin::LogDirDescription) -> String {
    let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
    let space = match (d.total_bytes, d.usable_bytes) {
        (total, usable) if total >= 0 && usable >= 0 => {
            format!(" volume {:.0} MiB, {:.0} MiB free", mib(total), mib(usable))
        }
        _ => String::new(),
    };
    let bytes: i64 = d.replicas.iter().map(|r| r.size_bytes.max(0)).sum();
    let lagging = d.replicas.iter().filter(|r| r.offset_lag > 0).count();
    let error = d
        .error
        .as_ref()
        .map(|e| format!(" ERROR {e}"))
        .unwrap_or_default();
    format!(
        "{}:{space}, {} replicas, {:.1} MiB of logs, {lagging} behind the high watermark{error}",
        d.path,
        d.replicas.len(),
        mib(bytes)
    )
}

/// A partition that needs attention.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionIssue {
    topic: String,
    partition: i32,
    replicas: Vec<NodeId>,
    isr: Vec<NodeId>,
}

impl std::fmt::Display for PartitionIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |nodes: &[NodeId]| {
            nodes
                .iter()
                .map(|n| n.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(
            f,
            "{}-{} replicas={} isr={}",
            self.topic,
            self.partition,
            ids(&self.replicas),
            ids(&self.isr)
        )
    }
}

/// Partition health across the cluster; the lists are in topic, then partition order.
#[derive(Debug, Default, PartialEq, Eq)]
struct PartitionHealth {
    total: usize,
    /// ISR smaller than the replica set (Kafka's `--under-replicated-partitions`).
    under_replicated: Vec<PartitionIssue>,
    /// No leader (Kafka's `--unavailable-partitions`); such a partition may be in both lists.
    offline: Vec<PartitionIssue>,
}

/// Sorts (topic, partition, state) triples into under-replicated and offline partitions.
fn classify<'a>(
    partitions: impl IntoIterator<Item = (&'a str, i32, &'a PartitionImage)>,
) -> PartitionHealth {
    let mut health = PartitionHealth::default();
    for (topic, partition, p) in partitions {
        health.total += 1;
        let issue = || PartitionIssue {
            topic: topic.to_string(),
            partition,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
        };
        if p.isr.len() < p.replicas.len() {
            health.under_replicated.push(issue());
        }
        if p.leader.is_none() {
            health.offline.push(issue());
        }
    }
    let order = |a: &PartitionIssue, b: &PartitionIssue| {
        (&a.topic, a.partition).cmp(&(&b.topic, b.partition))
    };
    health.under_replicated.sort_by(order);
    health.offline.sort_by(order);
    health
}

/// The committed image: the first message of the metadata stream is a full snapshot.
async fn fetch_image(client: &mut ControllerClient) -> anyhow::Result<MetadataImage> {
    let mut stream = client
        .watch_metadata(0)
        .await
        .context("cannot read the metadata log")?;
    let batch = stream
        .message()
        .await
        .context("metadata stream broke")?
        .context("metadata stream ended before its snapshot")?;
    let mut image = MetadataImage::default();
    let errors = image.apply_batch(&batch);
    anyhow::ensure!(
        errors.is_empty(),
        "metadata snapshot did not apply: {errors:?}"
    );
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(leader: Option<i32>, replicas: &[i32], isr: &[i32]) -> PartitionImage {
        PartitionImage {
            replicas: replicas.iter().copied().map(NodeId).collect(),
            isr: isr.iter().copied().map(NodeId).collect(),
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            leader: leader.map(NodeId),
            leader_epoch: Default::default(),
            partition_epoch: Default::default(),
        }
    }

    #[test]
    fn classify_lists_under_replicated_and_offline_in_order() {
        let healthy = partition(Some(1), &[1, 2, 3], &[1, 2, 3]);
        let shrunk = partition(Some(1), &[1, 2, 3], &[1, 2]);
        let headless = partition(None, &[2, 3], &[3]);
        let health = classify([
            ("t", 1, &shrunk),
            ("a", 0, &healthy),
            ("t", 0, &shrunk),
            ("b", 4, &headless),
        ]);
        assert_eq!(health.total, 4);
        let names: Vec<String> = health
            .under_replicated
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "b-4 replicas=2,3 isr=3",
                "t-0 replicas=1,2,3 isr=1,2",
                "t-1 replicas=1,2,3 isr=1,2"
            ]
        );
        assert_eq!(health.offline.len(), 1);
        assert_eq!(health.offline[0].to_string(), "b-4 replicas=2,3 isr=3");
    }

    #[test]
    fn a_log_dir_line_sums_its_replicas_and_counts_the_lagging_ones() {
        use spate_client::admin::{LogDirDescription, ReplicaLogDir};
        let replica = |p: i32, size: i64, lag: i64| ReplicaLogDir {
            partition: spate_client::types::TopicPartition::new("t", p),
            size_bytes: size,
            offset_lag: lag,
        };
        let d = LogDirDescription {
            path: "/data/logs".into(),
            error: None,
            total_bytes: 10 << 30,
            usable_bytes: 4 << 30,
            replicas: vec![replica(0, 1 << 20, 0), replica(1, 3 << 20, 12)],
        };
        assert_eq!(
            log_dir_line(&d),
            "/data/logs: volume 10240 MiB, 4096 MiB free, 2 replicas, 4.0 MiB of logs, \
             1 behind the high watermark"
        );
    }

    #[test]
    fn classify_healthy_cluster_is_empty() {
        let p = partition(Some(2), &[2], &[2]);
        let health = classify([("x", 0, &p)]);
        assert_eq!(health.total, 1);
        assert!(health.under_replicated.is_empty() && health.offline.is_empty());
    }
}
