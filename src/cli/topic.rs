//! `spate topic`: create, list, describe, delete topics; alter configs; add partitions.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use spate_client::admin::{
    AlterConfigOp, AlterOpType, ConfigResource, ConfigSource, NewTopic, OffsetSpec,
};
use spate_client::metadata::PartitionInfo;
use spate_client::{Admin, NodeId, TopicPartition};

use super::{init_logging, parse_kv, Conn};

/// Flags of `spate topic`.
#[derive(clap::Args, Debug)]
pub struct TopicArgs {
    #[command(subcommand)]
    cmd: TopicCmd,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Subcommand, Debug)]
enum TopicCmd {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions (-1: broker default).
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replication factor (-1: broker default).
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Topic config, repeatable: --config retention.ms=60000.
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
        /// Only ask the broker whether the topic could be created.
        #[arg(long)]
        validate_only: bool,
    },
    /// List topic names.
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
    },
    /// Show partitions (leader, replicas, ISR, high watermark, each replica's log end
    /// offset) and configs.
    Describe {
        /// Topic name.
        name: String,
        /// List every config with its source, not only the topic's overrides.
        #[arg(long)]
        all_configs: bool,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Change topic configs (IncrementalAlterConfigs).
    AlterConfig {
        /// Topic name.
        name: String,
        /// Set a config, repeatable: --set retention.ms=60000.
        #[arg(long, value_parser = parse_kv)]
        set: Vec<(String, String)>,
        /// Remove an override (back to the default), repeatable.
        #[arg(long)]
        delete: Vec<String>,
        /// Append to a list config, repeatable: --append cleanup.policy=compact.
        #[arg(long, value_parser = parse_kv)]
        append: Vec<(String, String)>,
        /// Remove from a list config, repeatable.
        #[arg(long, value_parser = parse_kv)]
        subtract: Vec<(String, String)>,
    },
    /// Raise the partition count.
    AddPartitions {
        /// Topic name.
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        total: i32,
    },
}

/// Runs `spate topic ...`.
pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    init_logging();
    let admin = Admin::connect(args.conn.client_config())
        .await
        .with_context(|| format!("cannot reach the cluster at {}", args.conn.bootstrap))?;
    match args.cmd {
        TopicCmd::Create {
            name,
            partitions,
            replication_factor,
            configs,
            validate_only,
        } => {
            let topic = NewTopic {
                name: name.clone(),
                num_partitions: partitions,
                replication_factor,
                configs,
            };
            for (_, r) in admin.create_topics(&[topic], validate_only).await? {
                r?;
            }
            if validate_only {
                println!("Topic '{name}' could be created (validate only).");
            } else {
                println!("Created topic '{name}'.");
            }
        }
        TopicCmd::List { internal } => {
            for name in admin.list_topics(internal).await? {
                println!("{name}");
            }
        }
        TopicCmd::Describe { name, all_configs } => describe(&admin, &name, all_configs).await?,
        TopicCmd::Delete { name } => {
            admin.delete_topic(&name).await?;
            println!("Deleted topic '{name}'.");
        }
        TopicCmd::AlterConfig {
            name,
            set,
            delete,
            append,
            subtract,
        } => {
            let ops = alter_ops(set, delete, append, subtract);
            if ops.is_empty() {
                anyhow::bail!("nothing to change: give --set, --delete, --append or --subtract");
            }
            admin
                .incremental_alter_configs(&ConfigResource::Topic(name.clone()), &ops, false)
                .await?;
            println!("Updated {} config(s) of topic '{name}'.", ops.len());
        }
        TopicCmd::AddPartitions { name, total } => {
            admin.create_partitions(&name, total, false).await?;
            println!("Topic '{name}' now has {total} partitions.");
        }
    }
    Ok(())
}

fn alter_ops(
    set: Vec<(String, String)>,
    delete: Vec<String>,
    append: Vec<(String, String)>,
    subtract: Vec<(String, String)>,
) -> Vec<AlterConfigOp> {
    let with = |op: AlterOpType| {
        move |(name, value): (String, String)| AlterConfigOp {
            name,
            op,
            value: Some(value),
        }
    };
    set.into_iter()
        .map(with(AlterOpType::Set))
        .chain(delete.into_iter().map(AlterConfigOp::delete))
        .chain(append.into_iter().map(with(AlterOpType::Append)))
        .chain(subtract.into_iter().map(with(AlterOpType::Subtract)))
        .collect()
}

/// How long `describe` waits for a broker's offsets before printing `?` for them.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Prints in the layout of `kafka-topics --describe` plus each partition's high watermark
/// and every replica's log end offset, then configs.
async fn describe(admin: &Admin, name: &str, all_configs: bool) -> anyhow::Result<()> {
    let topic = admin.describe_topic(name).await?;
    let hws = high_watermarks(admin, name, &topic.partitions).await;
    let leos = replica_log_end_offsets(admin, name, &topic.partitions).await;
    let configs = admin.describe_topic_configs(name).await?;
    let overrides: Vec<String> = configs
        .iter()
        .filter(|c| c.source == ConfigSource::DynamicTopic)
        .map(|c| format!("{}={}", c.name, c.value.as_deref().unwrap_or("<hidden>")))
        .collect();
    let rf = topic.partitions.first().map_or(0, |p| p.replicas.len());
    println!(
        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
        topic.name,
        topic.topic_id,
        topic.partitions.len(),
        rf,
        overrides.join(",")
    );
    for p in &topic.partitions {
        let progress = replication_suffix(p, hws.get(&p.partition).copied(), |node| {
            leos.get(&(node, p.partition)).copied()
        });
        println!("{}", partition_line(&topic.name, p, &progress));
    }
    if all_configs {
        println!("Configs:");
        for c in &configs {
            let value = if c.sensitive {
                "<hidden>"
            } else {
                c.value.as_deref().unwrap_or("null")
            };
            println!("\t{}={}\t({})", c.name, value, c.source);
        }
    }
    Ok(())
}

/// One partition as `kafka-topics --describe` prints it (with the ELR and last-known
/// ELR of KIP-966 when the broker reports them), then `suffix`.
fn partition_line(topic: &str, p: &PartitionInfo, suffix: &str) -> String {
    let leader = p.leader.map_or("none".to_string(), |l| l.to_string());
    let elr = match (&p.elr, &p.last_known_elr) {
        (Some(elr), Some(last)) => format!("\tElr: {}\tLastKnownElr: {}", ids(elr), ids(last)),
        _ => String::new(),
    };
    let offline = if p.offline_replicas.is_empty() {
        String::new()
    } else {
        format!("\tOffline: {}", ids(&p.offline_replicas))
    };
    format!(
        "\tTopic: {topic}\tPartition: {}\tLeader: {leader}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}{elr}{offline}{suffix}",
        p.partition,
        p.leader_epoch.0,
        ids(&p.replicas),
        ids(&p.isr),
    )
}

/// Each led partition's high watermark (ListOffsets latest as a consumer); partitions
/// whose leader does not answer within [`PROBE_TIMEOUT`] are missing.
async fn high_watermarks(
    admin: &Admin,
    topic: &str,
    partitions: &[PartitionInfo],
) -> BTreeMap<i32, i64> {
    let specs: Vec<(TopicPartition, OffsetSpec)> = partitions
        .iter()
        .filter(|p| p.leader.is_some())
        .map(|p| (TopicPartition::new(topic, p.partition), OffsetSpec::Latest))
        .collect();
    match tokio::time::timeout(PROBE_TIMEOUT, admin.list_offsets(&specs)).await {
        Ok(Ok(results)) => results
            .into_iter()
            .filter_map(|(tp, r)| Some((tp.partition, r.ok()?.offset)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Every replica's log end offset by (broker, partition), asked of each broker at once
/// (ListOffsets with the debugging replica id); brokers that do not answer within
/// [`PROBE_TIMEOUT`] are missing.
async fn replica_log_end_offsets(
    admin: &Admin,
    topic: &str,
    partitions: &[PartitionInfo],
) -> BTreeMap<(NodeId, i32), i64> {
    let mut by_node: BTreeMap<NodeId, Vec<TopicPartition>> = BTreeMap::new();
    for p in partitions {
        for node in &p.replicas {
            by_node
                .entry(*node)
                .or_default()
                .push(TopicPartition::new(topic, p.partition));
        }
    }
    let mut asks = tokio::task::JoinSet::new();
    for (node, tps) in by_node {
        let admin = admin.clone();
        asks.spawn(async move {
            let answer =
                tokio::time::timeout(PROBE_TIMEOUT, admin.replica_log_end_offsets(node, &tps))
                    .await;
            (node, answer)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = asks.join_next().await {
        let Ok((node, Ok(Ok(results)))) = joined else {
            continue;
        };
        for (tp, r) in results {
            if let Ok(leo) = r {
                out.insert((node, tp.partition), leo);
            }
        }
    }
    out
}

/// `\tHW: 1200\tLEO: 2=1200,3=1200,1=?` plus `(under-replicated)` when the ISR is smaller
/// than the replica set and `(offline)` without a leader; `?` marks what did not answer.
fn replication_suffix(
    p: &PartitionInfo,
    hw: Option<i64>,
    leo: impl Fn(NodeId) -> Option<i64>,
) -> String {
    let show = |v: Option<i64>| v.map_or("?".to_string(), |v| v.to_string());
    let leos: Vec<String> = p
        .replicas
        .iter()
        .map(|n| format!("{n}={}", show(leo(*n))))
        .collect();
    let mut out = format!("\tHW: {}\tLEO: {}", show(hw), leos.join(","));
    if p.isr.len() < p.replicas.len() {
        out.push_str(" (under-replicated)");
    }
    if p.leader.is_none() {
        out.push_str(" (offline)");
    }
    out
}

fn ids(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_ops_keep_kinds() {
        let ops = alter_ops(
            vec![("a".into(), "1".into())],
            vec!["b".into()],
            vec![("c".into(), "x".into())],
            vec![("d".into(), "y".into())],
        );
        let kinds: Vec<AlterOpType> = ops.iter().map(|o| o.op).collect();
        assert_eq!(
            kinds,
            vec![
                AlterOpType::Set,
                AlterOpType::Delete,
                AlterOpType::Append,
                AlterOpType::Subtract
            ]
        );
        assert_eq!(ops[1].value, None);
    }

    fn partition(leader: Option<i32>, replicas: &[i32], isr: &[i32]) -> PartitionInfo {
        PartitionInfo {
            partition: 0,
            leader: leader.map(NodeId),
            leader_epoch: spate_client::LeaderEpoch(3),
            replicas: replicas.iter().copied().map(NodeId).collect(),
            isr: isr.iter().copied().map(NodeId).collect(),
            offline_replicas: Vec::new(),
            elr: None,
            last_known_elr: None,
            error: None,
        }
    }

    #[test]
    fn a_partition_line_shows_the_elr_when_the_broker_reports_it() {
        let mut p = partition(None, &[1, 2, 3], &[]);
        p.offline_replicas = vec![NodeId(1)];
        assert_eq!(
            partition_line("t", &p, ""),
            "\tTopic: t\tPartition: 0\tLeader: none\tLeaderEpoch: 3\tReplicas: 1,2,3\tIsr: \tOffline: 1"
        );
        p.elr = Some(vec![NodeId(2)]);
        p.last_known_elr = Some(vec![NodeId(1)]);
        assert_eq!(
            partition_line("t", &p, "\tHW: 5"),
            "\tTopic: t\tPartition: 0\tLeader: none\tLeaderEpoch: 3\tReplicas: 1,2,3\tIsr: \tElr: 2\tLastKnownElr: 1\tOffline: 1\tHW: 5"
        );
    }

    #[test]
    fn suffix_lists_hw_and_each_replica_leo_in_replica_order() {
        let p = partition(Some(2), &[2, 3, 1], &[2, 3]);
        let leo = |n: NodeId| (n != NodeId(1)).then_some(1200);
        assert_eq!(
            replication_suffix(&p, Some(1200), leo),
            "\tHW: 1200\tLEO: 2=1200,3=1200,1=? (under-replicated)"
        );
    }

    #[test]
    fn suffix_marks_offline_and_unknown_hw() {
        let p = partition(None, &[1, 2], &[1]);
        assert_eq!(
            replication_suffix(&p, None, |_| None),
            "\tHW: ?\tLEO: 1=?,2=? (under-replicated) (offline)"
        );
        let healthy = partition(Some(1), &[1, 2], &[1, 2]);
        assert_eq!(
            replication_suffix(&healthy, Some(5), |_| Some(5)),
            "\tHW: 5\tLEO: 1=5,2=5"
        );
    }
}
