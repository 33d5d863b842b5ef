//! `spate dev`: a single-node cluster in one process — a one-voter controller quorum and
//! a broker that reaches it over loopback gRPC, exactly as in a multi-node deployment.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use spate::node::{Node, NodeConfig};
use spate_metadata::topic_defaults::TopicDefaults;

/// Flags of `spate dev`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Where logs and controller state live.
    #[arg(long, default_value = "./spate-data", env = "SPATE_DATA_DIR")]
    data_dir: PathBuf,
    /// Kafka listener address.
    #[arg(long, default_value = "127.0.0.1:9092", env = "SPATE_KAFKA_ADDR")]
    kafka_addr: SocketAddr,
    /// Controller gRPC address (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9093", env = "SPATE_CONTROLLER_ADDR")]
    controller_addr: SocketAddr,
    /// HTTP admin address: /healthz, /readyz, /metrics, /v1/* (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9095", env = "SPATE_ADMIN_ADDR")]
    admin_addr: SocketAddr,
    /// Host advertised to clients (default: the Kafka listener's IP).
    #[arg(long)]
    advertised_host: Option<String>,
    /// Partitions of auto-created topics and of CreateTopics without a count.
    #[arg(long, default_value_t = 1)]
    num_partitions: i32,
    /// Do not create unknown topics on Metadata requests.
    #[arg(long)]
    no_auto_create_topics: bool,
    /// Pause between the log cleaner's looks for a compacted log to clean
    /// (`log.cleaner.backoff.ms`).
    #[arg(long, default_value_t = 15_000, value_name = "MS")]
    log_cleaner_backoff_ms: u64,
    /// A topic config's broker-wide default under Kafka's broker-level name, e.g.
    /// `log.cleanup.policy=compact` (repeatable).
    #[arg(long = "topic-default", value_name = "KEY=VALUE", value_parser = parse_topic_default)]
    topic_defaults: Vec<(String, String)>,
    /// Log output format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// How long a stopping dev node waits for its controlled shutdown (the default of
/// `controlled.shutdown.timeout.ms`); alone, it completes as soon as the fence commits.
const DEV_CONTROLLED_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One `--topic-default KEY=VALUE`, checked as the server config checks it.
fn parse_topic_default(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    TopicDefaults::default()
        .set(key.trim(), value)
        .map_err(|e| e.to_string())?;
    Ok((key.trim().to_string(), value.to_string()))
}

/// The node `spate dev` runs: Kafka's defaults, except what Kafka's own development
/// config (its shipped `server.properties`) changes.
fn node_config(args: &DevArgs) -> NodeConfig {
    let mut topic_defaults = TopicDefaults::default();
    for (key, value) in &args.topic_defaults {
        // Each was checked as it was parsed.
        if let Err(e) = topic_defaults.set(key, value) {
            tracing::warn!(%key, error = %e, "topic default ignored");
        }
    }
    NodeConfig {
        topic_defaults,
        data_dir: args.data_dir.clone(),
        kafka_addr: args.kafka_addr,
        controller_addr: args.controller_addr,
        admin_addr: Some(args.admin_addr),
        advertised_host: args.advertised_host.clone(),
        num_partitions: args.num_partitions,
        auto_create_topics: !args.no_auto_create_topics,
        // As the server.properties Kafka ships for development and testing: a new group's
        // first rebalance does not wait for more members (the server's default is 3 s).
        groups: spate_broker::config::GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..Default::default()
        },
        log_cleaner: spate_broker::config::LogCleanerConfig {
            backoff: std::time::Duration::from_millis(args.log_cleaner_backoff_ms.max(1)),
            ..Default::default()
        },
        ..NodeConfig::ephemeral(&args.data_dir)
    }
}

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    crate::logging::init(&args.log_format, "info,openraft=warn,sled=warn");
    let started = Instant::now();
    let node = Node::start(node_config(&args)).await?;
    let show = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    println!(
        "spate dev ready: kafka={} controller={} admin={} data={} ({} ms)",
        show(node.kafka_addr),
        show(node.controller_addr),
        show(node.admin_addr),
        args.data_dir.display(),
        started.elapsed().as_millis()
    );
    crate::wait_for_shutdown_signal().await?;
    // As `spate server` and Kafka's combined mode: the broker is fenced before it stops,
    // which ends its session, so the next start on this data registers at once.
    node.controlled_shutdown(DEV_CONTROLLED_SHUTDOWN_TIMEOUT)
        .await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        dev: DevArgs,
    }

    #[test]
    fn a_dev_node_starts_new_groups_without_the_initial_rebalance_delay() {
        let args = Cli::try_parse_from(["dev", "--data-dir", "/tmp/x"])
            .unwrap()
            .dev;
        let config = node_config(&args);
        assert_eq!(config.groups.initial_rebalance_delay_ms, 0);
        assert_eq!(config.groups.min_session_timeout_ms, 6_000, "Kafka's");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
    }
}
